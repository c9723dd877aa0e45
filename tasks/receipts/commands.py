"""The `fbsflow receipts ...` and `fbsflow suppressions` commands; operator text in Danish.

fbsflow receipts serve CONFIG [--host H] [--port P]     run the receiver
fbsflow receipts import CONFIG FILE                     events from a downloaded file
fbsflow receipts not-reached CONFIG --audience CSV      a 0600 list for a paper follow-up
fbsflow suppressions CONFIG [--lift ADDRESS]            the suppression list's counts
"""

from __future__ import annotations

import argparse
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.errors import ConfigError

if TYPE_CHECKING:
    from tasks.ledger import Ledger

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


def register(sub: Any) -> None:
    """Add the commands to `fbsflow`'s subparsers."""
    receipts = sub.add_parser(
        "receipts", help="leveringskvitteringer: modtag, importér, lav liste over ikke nåede"
    )
    what = receipts.add_subparsers(dest="receipts_command", required=True)
    serve = what.add_parser("serve", help="kør modtageren af SendGrids og GatewayAPIs hændelser")
    serve.add_argument("config")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"adresse (standard {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    serve.set_defaults(func=serve_command)
    imported = what.add_parser("import", help="importér hændelser fra en hentet JSON-fil")
    imported.add_argument("config")
    imported.add_argument("file")
    imported.set_defaults(func=import_command)
    missed = what.add_parser(
        "not-reached", help="skriv de ikke nåede modtagere til en fil kun ejeren kan læse"
    )
    missed.add_argument("config")
    missed.add_argument("--audience", metavar="CSV", required=True, help="lånereksporten")
    missed.add_argument("--output", metavar="FILE", help="filen (standard: i datamappen)")
    missed.set_defaults(func=not_reached_command)
    suppressions = sub.add_parser(
        "suppressions", help="spærrelisten: antal, og ophæv en adresse med --lift"
    )
    suppressions.add_argument("config")
    suppressions.add_argument(
        "--lift", metavar="ADDRESS", help="tag denne e-mailadresse eller dette nummer af listen"
    )
    suppressions.set_defaults(func=suppressions_command)


def _open(config_path: str) -> tuple[Any, str, Ledger]:
    from tasks.config import load_municipality
    from tasks.ledger import Ledger
    from tasks.plan import campaign_id
    from tasks.steps import data_dir

    config = load_municipality(config_path)
    return config, campaign_id(config), Ledger.open(data_dir(config_path))


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    from tasks.receipts.app import make_app
    from tasks.receipts.ingest import Receipts
    from tasks.receipts.signatures import sendgrid_public_key
    from tasks.settings import ReceiptSettings, plain, settings

    given = settings(ReceiptSettings)
    key = (
        sendgrid_public_key(given.sendgrid_webhook_public_key)
        if given.sendgrid_webhook_public_key
        else None
    )
    secret = plain(given.gatewayapi_webhook_secret) or None
    if key is None and secret is None:
        raise ConfigError(
            "neither SENDGRID_WEBHOOK_PUBLIC_KEY nor GATEWAYAPI_WEBHOOK_SECRET is set, so every "
            "event would be refused; fix: export the key or the secret of the provider whose "
            "events this receiver takes"
        )
    config, campaign, ledger = _open(args.config)
    with ledger:
        app = make_app(
            Receipts(ledger, config.municipality.slug, campaign),
            sendgrid_key=key,
            gatewayapi_secret=secret,
            max_age=given.receipts_max_age,
        )
        _log_to_stderr()
        print(
            f"Modtager kvitteringer for {config.municipality.name} på http://{args.host}:{args.port}"
        )
        # access_log off: an access line is harmless, but nothing about requests needs keeping.
        uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="info")
    return 0


def _log_to_stderr() -> None:
    """The receiver's own lines (endpoint and counts, nothing from a body) on stderr."""
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    receiver_log = logging.getLogger("fbsflow.receipts")
    receiver_log.addHandler(handler)
    receiver_log.setLevel(logging.INFO)
    receiver_log.propagate = False


def import_command(args: argparse.Namespace) -> int:
    from tasks.receipts.ingest import Receipts

    path = Path(args.file)
    if not path.is_file():
        raise ConfigError(f"{path}: filen findes ikke (fix: giv stien til den hentede fil)")
    config, campaign, ledger = _open(args.config)
    with ledger:
        done = Receipts(ledger, config.municipality.slug, campaign).import_file(path)
    print(
        f"Importeret fra {path}: {done.events} hændelser, {done.duplicates} set før, "
        f"{done.unmatched} uden modtager i ledgeren, {done.settled} ukendte afklaret som sendt, "
        f"{done.suppressed} nye på spærrelisten"
    )
    return 0


def suppressions_command(args: argparse.Namespace) -> int:
    from tasks.ledger.outcomes import lift, suppression_counts

    config, _campaign, ledger = _open(args.config)
    slug = config.municipality.slug
    with ledger:
        if args.lift:
            removed = lift(ledger, slug, ledger.recipient_key(args.lift))
            print(
                "Adressen er taget af spærrelisten."
                if removed
                else "Adressen står ikke på spærrelisten: intet ændret."
            )
        counts = suppression_counts(ledger, slug)
    print(f"Spærreliste for {config.municipality.name}: {sum(counts.values())} i alt")
    for (medium, reason), count in sorted(counts.items()):
        print(f"  {medium:<6} {reason:<14} {count}")
    return 0


def not_reached_command(args: argparse.Namespace) -> int:
    from tasks.audience import import_audience
    from tasks.channels import spec
    from tasks.ledger.outcomes import NOT_REACHED, outcomes
    from tasks.models import Channel
    from tasks.output import PrivateFiles
    from tasks.steps import data_dir

    config, campaign, ledger = _open(args.config)
    audience = import_audience(Path(args.audience), columns=config.audience.columns)
    lines = ["kanal;udfald;række;adresse"]
    with ledger:
        for channel in (Channel.NEWSLETTER, Channel.SMS):
            delivery = spec(channel).delivers
            assert delivery is not None and delivery.address is not None
            outcome = _outcomes_of(ledger, campaign, channel.value, outcomes, NOT_REACHED)
            if not outcome:
                continue
            borrowers = audience.recipients(channel.value)
            addresses = [getattr(b, delivery.address) for b in borrowers]
            keys = ledger.recipient_keys(addresses, normalised=True)
            for borrower, address, key in zip(borrowers, addresses, keys, strict=True):
                if key in outcome:
                    lines.append(f"{channel.value};{outcome[key]};{borrower.row};{address}")
    target = (
        Path(args.output)
        if args.output
        else data_dir(args.config) / f"ikke-naaet-{datetime.now():%Y%m%d-%H%M%S}.csv"
    )
    # Written only as the owner's file (0600), never to an artifact or a log.
    private = PrivateFiles(target.parent)
    private.write(target.name, ("\n".join(lines) + "\n").encode("utf-8"))
    private.publish(target.parent)
    print(f"{len(lines) - 1} ikke nåede modtagere skrevet til {target} (kun læsbar for ejeren)")
    return 0


def _outcomes_of(
    ledger: Ledger, campaign: str, channel: str, table: Any, wanted: frozenset[str]
) -> dict[str, str]:
    """key -> outcome of a channel's recipients whose outcome is in `wanted`."""
    from sqlalchemy import select

    from tasks.ledger.schema import streams

    named = select(streams.c.id).where(streams.c.campaign == campaign, streams.c.channel == channel)
    stmt = select(table.c.recipient_key, table.c.outcome).where(
        table.c.stream.in_(named), table.c.outcome.in_(sorted(wanted))
    )
    with ledger._engine.connect() as conn:
        return {key: outcome for key, outcome in conn.execute(stmt)}


def outcome_line(ledger: Ledger, campaign: str, channel: str) -> str:
    """One line of the providers' outcomes for `fbsflow ledger` (every outcome, zeros too)."""
    from tasks.ledger.outcomes import RANKS, outcome_counts

    counts = outcome_counts(ledger, campaign, channel)
    return "  ".join(f"{outcome} {counts.get(outcome, 0)}" for outcome in RANKS)
