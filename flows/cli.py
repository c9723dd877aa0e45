"""The `fbsflow` command: check a municipality's config, show its plan, run the card."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from flows import exits
from tasks import operator_text
from tasks.errors import ConfigError, FbsflowError
from tasks.operator_text import say

if TYPE_CHECKING:
    from tasks.ledger import Ledger
    from tasks.models import MunicipalityConfig

# Embedded mode starts a temporary Prefect server; on a busy 2-core machine it can take longer
# than Prefect's default 20 s to answer, and a timeout there would fail the whole run.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# Prefect's server sends usage analytics to Prefect's servers unless told not to: nothing leaves
# a municipal server unless its operator turns it on (PREFECT_SERVER_ANALYTICS_ENABLED=true).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _check(args: argparse.Namespace) -> int:
    from tasks.config import load_card, load_municipality
    from tasks.operator_text import day

    config = load_municipality(args.config)
    operator_text.adopt(config)
    card = load_card(config.card)
    channels = ", ".join(c.value for c in config.channels.enabled())
    print(
        say(
            "cli.check_ok",
            path=args.config,
            name=config.municipality.name,
            title=card.title,
            day=day(config.go_live),
            channels=channels,
        )
    )
    for channel, reason in config.channels.not_used().items():
        if reason is not None:  # switched off: say so, with the config's reason
            print(say("cli.check_off", channel=channel.value, reason=reason))
    _print_warnings(config)
    return 0


def _print_warnings(config: MunicipalityConfig) -> None:
    """Likely mistakes in a valid config (tasks/config_warnings.py): told, never an exit code."""
    from tasks.config_warnings import config_warnings
    from tasks.plan import SEND_TIME

    for warning in config_warnings(config, sms_send_time=SEND_TIME):
        print(f"Advarsel: {warning}")


def _audience_path(args: argparse.Namespace, config_path: Path) -> Path | None:
    from tasks.config import load_municipality, resolve_relative

    if args.audience:
        path = Path(args.audience)
    else:
        config = load_municipality(config_path)
        if config.audience.file is None:
            return None
        path = resolve_relative(config_path, config.audience.file)
    if not path.is_file():
        raise ConfigError(
            f"{path}: audience file not found (fix: give --audience CSV, or set audience.file "
            f"in {config_path} to the borrower export)"
        )
    return path


def _plan(args: argparse.Namespace) -> int:
    from tasks.audience import import_audience
    from tasks.channels import render_channel
    from tasks.config import load_card, load_municipality
    from tasks.steps import build_plan

    config_path = Path(args.config)
    config = load_municipality(config_path)
    operator_text.adopt(config)
    audience_path = _audience_path(args, config_path)
    audience = (
        import_audience(audience_path, columns=config.audience.columns) if audience_path else None
    )
    contents = {c: render_channel(c, config) for c in config.channels.enabled()}
    print(build_plan(config, load_card(config.card), contents, audience).to_markdown())
    return 0


def _run(args: argparse.Namespace) -> int:
    from tasks.config import load_municipality

    config_path = Path(args.config)
    # Validate before Prefect starts, so a user's mistake gets a message, not a traceback.
    config = load_municipality(config_path)
    operator_text.adopt(config)
    audience_path = _audience_path(args, config_path)
    approve = args.approve
    if not approve:
        _print_review(config, audience_path)
    if not approve and sys.stdin.isatty() and not _server():
        approve = _yes(input(say("cli.approve_prompt")))
    from tasks.speed.heartbeat import run_heartbeats
    from tasks.speed.prefetch import Prefetch

    audience = str(audience_path) if audience_path else None
    # Against a Prefect server, a forked child starts parsing most of the borrower file now,
    # before Prefect is imported (~1 s), and this process parses the rest after. Without a
    # server, Prefect's temporary server boots in a process of its own on the other core, and
    # this process parses the whole file meanwhile.
    prefetch = Prefetch.start(config, str(config_path), audience, split=True) if _server() else None
    try:
        # Booting first: Prefect's server module (~1.1 s to import) is what the boot needs,
        # and most of the flow's own imports come with it.
        booting = _boot_temporary_server()
        from flows.communicate_externally import communicate_externally

        _follow_prefect_logging()

        if booting is not None and prefetch is None:
            prefetch = Prefetch.start(config, str(config_path), audience)
        if prefetch is not None:
            prefetch.finish(config, str(config_path), audience)
        if booting is not None:
            booting.result()  # a server that failed to start fails the run now, once
    finally:
        if prefetch is not None:
            prefetch.close()
    # The modules and a million borrowers were built with the cycle collector off (see
    # `entry`); left to it, its next full runs walk them all only to find nothing.
    _collect_from_here()
    server = _server()
    mode = say("cli.mode_server", server=server) if server else say("cli.mode_embedded")
    _crash_dead_flow_runs()
    print(say("cli.running", name=config.municipality.name, mode=mode), flush=True)
    # Against a server, the flow sends its own heartbeats, which end with it; on its own
    # temporary server, none (tasks/speed/heartbeat.py).
    with run_heartbeats(temporary_server=booting is not None):
        from flows.run_states import record_of
        from tasks.steps import triggered_by

        state = communicate_externally(
            config_path=str(config_path),
            audience=audience,
            approve=approve,
            # Who typed --approve (or answered yes): the user at this terminal.
            approved_by=triggered_by() if approve else None,
            output_root=args.output,
            at_least_once=args.at_least_once,
            confirm=args.confirm or None,
            confirmed_by=args.by,
            confirm_note=args.note,
            return_state=True,
        )
        record = record_of(state)
    out = Path(args.output) / config.municipality.slug
    status = operator_text.word("card", record["status"]).upper()
    print("\n" + say("cli.card_status", title=record["card_title"], status=status))
    for name, channel in record["channels"].items():
        counts = ", ".join(
            f"{operator_text.word('delivery', k)} {v}" for k, v in channel["counts"].items() if v
        )
        said = operator_text.word("status", channel["status"])
        print(f"  {name:<13} {said:<20} {channel['provider']:<10} {counts}")
    for name, unused in record.get("channels_not_used", {}).items():
        if unused["switched_off"]:
            print(f"  {name:<13} {say('channel.off', reason=unused['reason'])}")
    for reason in record["reasons"]:
        print(say("cli.open_reason", reason=reason))
    print(say("cli.output", out=out))
    code, line = exits.run_outcome(record, str(config_path))
    if code == exits.OK:
        print(line)
    else:
        where = current.log.where() if (current := exits.session()) else ""
        print(f"{line} ({where})" if where else line, file=sys.stderr)
    return code


def _print_review(config: MunicipalityConfig, audience_path: Path | None) -> None:
    """What approval would send, before anyone is asked: per channel and language the SMS
    whole, the subject lines and the number of recipients (the full texts: the output folder)."""
    from tasks.audience import import_audience
    from tasks.channels import render_channel
    from tasks.review import review_lines
    from tasks.steps import reach_of

    audience = (
        import_audience(audience_path, columns=config.audience.columns) if audience_path else None
    )
    contents = {c: render_channel(c, config) for c in config.channels.enabled()}
    lines = review_lines(contents, reach_of(config, contents, audience), list(config.languages))
    if lines:
        print("Gennemsyn: dette sendes, når udsendelsen godkendes", flush=True)
        print("\n".join(f"  {line}" for line in lines), flush=True)
        print("De fulde tekster: plan.md, gallery.html og kanalmapperne i outputmappen.\n")


def _follow_prefect_logging() -> None:
    if (current := exits.session()) is not None:
        current.follow_prefect_logging()


def _crash_dead_flow_runs() -> None:
    """Mark the card's flow runs whose process died as Crashed (see tasks/flowruns.py)."""
    from tasks.flowruns import crash_dead_flow_runs

    try:
        crashed = crash_dead_flow_runs()
    except Exception:  # housekeeping: it must never keep a run from starting
        logging.getLogger(__name__).warning("flow runs of dead processes not swept", exc_info=True)
        return
    if crashed:
        key = "cli.crashed_one" if len(crashed) == 1 else "cli.crashed_many"
        print(say(key, count=len(crashed), runs=", ".join(crashed)), flush=True)


def _server() -> str | None:
    """The Prefect server PREFECT_API_URL names (tasks.settings.prefect_server), if any."""
    from tasks.settings import prefect_server

    return prefect_server()


def _boot_temporary_server() -> Future[None] | None:
    """Start booting Prefect's temporary server, when this run will use one; None if not.

    The same server the flow would start on its first API call (Prefect keeps one per
    process), started early so its seconds of start-up overlap our own work.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    # prefect.main sets up Prefect's logging, so that the boot's "Starting temporary server"
    # line is shown; the flow needs it anyway, and it shares most imports with the server's.
    import prefect.main  # noqa: F401
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    booting: Future[None] = Future()

    def boot() -> None:
        try:
            server.start()
        except BaseException as exc:  # handed to the main thread, which raises it
            booting.set_exception(exc)
        else:
            booting.set_result(None)

    threading.Thread(target=boot, name="fbsflow-prefect-boot", daemon=True).start()
    return booting


def _ledger(args: argparse.Namespace) -> int:
    from tasks.channels import borrower_channels
    from tasks.config import load_municipality
    from tasks.ledger import Ledger
    from tasks.plan import campaign_id
    from tasks.steps import data_dir

    config = load_municipality(args.config)
    operator_text.adopt(config)
    campaign = campaign_id(config)
    if args.expect is not None and not args.accept_unknown:
        raise ConfigError("--expect N goes with --accept-unknown CHANNEL --by NAME")
    if args.repair and not args.audience:
        raise ConfigError(
            "--repair needs --audience CSV: the borrower export whose recipients the ledger's "
            "rows are checked against"
        )
    with Ledger.open(data_dir(args.config)) as ledger:
        if args.accept_unknown:
            if not (args.by or "").strip():
                raise ConfigError(
                    "--accept-unknown needs --by NAME: who checked with the provider that the "
                    "unknown recipients were delivered"
                )
            accepted = ledger.accept_unknown(
                campaign, args.accept_unknown, by=args.by.strip(), expect=args.expect
            )
            print(
                say(
                    "cli.accepted_unknown",
                    count=accepted,
                    channel=args.accept_unknown,
                    by=args.by.strip(),
                )
            )
        if args.audience:
            _check_rows(args, config, campaign, ledger)
        print(say("cli.campaign", campaign=campaign))
        for channel in (c.value for c in borrower_channels()):
            counts = ledger.counts(campaign, channel)
            print(f"  {channel:<11} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
            _print_outcomes(ledger, campaign, channel)
    return 0


def _print_outcomes(ledger: Ledger, campaign: str, channel: str) -> None:
    """The providers' outcomes of a channel under its states (tasks/receipts/)."""
    from tasks.receipts.commands import outcome_line

    print(f"  {'':<11} udfald: {outcome_line(ledger, campaign, channel)}")


def _add_receipt_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`fbsflow receipts ...` and `fbsflow suppressions` (tasks/receipts/commands.py)."""
    from tasks.receipts.commands import register

    register(sub)


def _check_rows(
    args: argparse.Namespace, config: MunicipalityConfig, campaign: str, ledger: Ledger
) -> None:
    """`fbsflow ledger --audience CSV [--repair]`: rows that are no recipients of the audience,
    and rows outbox runs wrote, per delivering channel; repaired with --repair."""
    from tasks.audience import import_audience
    from tasks.channels import all_channels
    from tasks.delivery.keying import borrower_recipients, branch_recipients
    from tasks.ledger.repair import check, repair

    audience = import_audience(Path(args.audience), columns=config.audience.columns)
    keys = {
        s.channel: (
            branch_recipients(config, ledger)
            if s.reaches_branches
            else borrower_recipients(s.channel, audience, ledger, config.languages)
        )
        for s in all_channels()
        if s.delivers is not None
    }
    how = say("cli.repairing") if args.repair else say("cli.changing_nothing")
    print(say("cli.checked_against", audience=args.audience, how=how))
    for channel, recipients in keys.items():
        found = check(ledger, campaign, channel.value, (r.key for r in recipients))
        if args.repair:
            removed, requeued = repair(ledger, campaign, found)
            lines = found.lines(removed=removed, requeued=requeued)
        else:
            lines = found.lines()
        for line in lines or [say("cli.every_row_a_recipient", channel=channel.value)]:
            print(f"  {line}")


def _print_not_reached(config_path: str, config: MunicipalityConfig) -> None:
    """ "ikke nået: N" under the checklist, once a provider has reported on the campaign."""
    from tasks.plan import campaign_id
    from tasks.receipts.reach import not_reached_total, reach_record
    from tasks.steps import data_dir

    reach = reach_record(data_dir(config_path), campaign_id(config))
    if reach is not None:
        print("\n" + say("checklist.not_reached", count=not_reached_total(reach)))


def _checklist(args: argparse.Namespace) -> int:
    from tasks.checklist import Checklist, render_table
    from tasks.config import load_card, load_municipality
    from tasks.steps import data_dir

    config = load_municipality(args.config)
    operator_text.adopt(config)
    card = load_card(config.card)
    with Checklist.open(data_dir(args.config)) as checklist:
        steps = checklist.steps(card, config)
        complete, open_steps = checklist.complete(card, config)
    print(f"{card.title} ({config.municipality.name})\n")
    print(render_table(steps))
    _print_not_reached(args.config, config)
    print(
        "\n" + say("checklist.complete")
        if complete
        else "\n" + say("checklist.open", steps=", ".join(open_steps))
    )
    return exits.OK if complete else exits.OPEN_STEPS


def _done(args: argparse.Namespace) -> int:
    """Record manual steps done (or skipped) as typed, then bring completion.json up to date:
    no card run, no new approval."""
    from tasks.config import load_card, load_municipality
    from tasks.steps import data_dir, open_steps_of, record_confirmations, refresh_completion

    config = load_municipality(args.config)
    operator_text.adopt(config)
    card = load_card(config.card)
    data = data_dir(args.config)
    steps = record_confirmations(
        config, card, data, args.step, by=args.by, note=args.note, how="cli", skip=args.skip
    )
    for step in steps:
        shown = operator_text.word("state", step.state.value)
        said = say("cli.step_set", step=step.id, state=shown, by=step.by)
        print(said + (f" ({step.note})" if step.note else ""))
    record = refresh_completion(config, card, args.output, data)
    still_open = open_steps_of(config, card, data)
    print(
        say("cli.card_done")
        if not still_open
        else say("cli.still_open", steps=", ".join(still_open))
    )
    if record is not None:
        path = Path(args.output) / config.municipality.slug / "completion.json"
        print(say("cli.completion_updated", path=path))
    if record is not None and not still_open and _server():
        from flows.run_states import settle_card_run

        if settle_card_run(record, args.by.strip()):
            print(say("cli.card_run_settled", run=record["flow_run_id"]))
    return 0


def _yes(answer: str) -> bool:
    """A yes on the terminal, in Danish or English; anything else (Enter too) is a no."""
    return answer.strip().lower() in ("y", "yes", "j", "ja")


def _reset(args: argparse.Namespace) -> int:
    """Forget a municipality's checklist state (who confirmed what), after asking; never the
    delivery ledger or its key: without them the next run would send to every borrower again."""
    from tasks.checklist import Checklist
    from tasks.config import load_card, load_municipality
    from tasks.steps import data_dir

    config = load_municipality(args.config)
    operator_text.adopt(config)
    card = load_card(config.card)
    slug = config.municipality.slug
    with Checklist.open(data_dir(args.config)) as checklist:
        stored = checklist.stored(config, card)
        if not args.yes:
            if not sys.stdin.isatty():
                raise ConfigError(
                    f"reset asks before it clears {slug}'s checklist, but nobody can answer "
                    "here (fix: add --yes)"
                )
            question = say("cli.reset_ask", name=config.municipality.name, slug=slug, count=stored)
            if not _yes(input(question)):
                print(say("cli.reset_kept"))
                return 0
        removed = checklist.reset(config, card)
    print(say("cli.reset_done", slug=slug, count=removed))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from flows.deployments import resolve, serve_all

    if not _server():
        raise ConfigError(
            "serve needs a Prefect server (fix: start one with `prefect server start` and "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api)"
        )
    _collect_from_here()  # a long-lived process: the cycle collector must run
    _follow_prefect_logging()
    _crash_dead_flow_runs()
    serve_all(resolve(args.config))
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from flows.deployments import resolve, schedule_channel_runs

    for run in schedule_channel_runs(resolve(args.config)):
        note = (
            say("cli.scheduled_run", id=run.flow_run_id)
            if run.flow_run_id
            else say("cli.date_passed")
        )
        print(f"{run.deployment:<28} {operator_text.when(run.at):<24}  {note}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fbsflow",
        description="Run the FBS card 'Forbered og kommunikér eksternt' for a municipality.",
        epilog="Exit codes: 0 done (or waiting for approval or confirmations), 1 failed (one "
        "line and the log's path), 2 a mistake in the input, 3 checklist steps open.",
    )
    debug = "print tracebacks on the terminal too (they always go to the log)"
    parser.add_argument("--debug", action="store_true", help=debug)
    lang = "the language fbsflow speaks to you in: da or en (default: operator_language in the config, else da)"
    parser.add_argument("--lang", choices=operator_text.LANGUAGES, help=lang)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a municipality config")
    check.add_argument("config")
    check.set_defaults(func=_check)
    plan = sub.add_parser("plan", help="print the communication plan")
    plan.add_argument("config")
    plan.add_argument(
        "--audience", help="borrower CSV export (default: audience.file in the config)"
    )
    plan.set_defaults(func=_plan)
    run = sub.add_parser("run", help="run the card: plan, inform per channel, mark complete")
    run.add_argument("config")
    run.add_argument(
        "--audience", help="borrower CSV export (default: audience.file in the config)"
    )
    run.add_argument("--approve", action="store_true", help="approve sending to citizens up front")
    run.add_argument(
        "--at-least-once",
        action="store_true",
        help="re-send to recipients whose earlier delivery is unknown",
    )
    run.add_argument("--output", default="outbox", help="output root (default: outbox)")
    run.add_argument(
        "--confirm",
        action="append",
        metavar="STEP",
        help="a manual step that is done (repeatable), e.g. inform.website",
    )
    run.add_argument("--by", help="who confirms the steps (default: the user running it)")
    run.add_argument("--note", help="a note recorded with the confirmed steps")
    run.set_defaults(func=_run)
    ledger = sub.add_parser("ledger", help="print delivery counts per state")
    ledger.add_argument("config")
    ledger.add_argument(
        "--accept-unknown",
        choices=("newsletter", "sms"),
        metavar="CHANNEL",
        help="record a channel's unknown recipients as delivered, after checking with the "
        "provider (newsletter or sms; needs --by)",
    )
    ledger.add_argument("--by", help="who checked with the provider (with --accept-unknown)")
    ledger.add_argument(
        "--audience",
        metavar="CSV",
        help="borrower export: report rows that are not its recipients, and rows written by "
        "outbox runs (which deliver to nobody)",
    )
    ledger.add_argument(
        "--repair",
        action="store_true",
        help="with --audience: remove rows that record no delivery (never sent, or written by "
        "an outbox run) and put recipients only an outbox run 'sent' back to pending; rows "
        "that may record a real delivery are left as they are. Run it while no run is going",
    )
    ledger.add_argument(
        "--expect",
        type=int,
        metavar="N",
        help="with --accept-unknown: accept only if exactly N are unknown (the number you "
        "checked); refuses, changing nothing, if another run changed them since",
    )
    ledger.set_defaults(func=_ledger)
    checklist = sub.add_parser(
        "checklist", help="print the card's checklist with each step's state"
    )
    checklist.add_argument("config")
    checklist.set_defaults(func=_checklist)
    done = sub.add_parser("done", help="mark a manual step done (or skipped, with --skip)")
    done.add_argument("config")
    done.add_argument("step", nargs="+", help="step ids, as `fbsflow checklist` shows them")
    done.add_argument("--by", required=True, help="who did it")
    done.add_argument("--note", help="a note; required with --skip")
    done.add_argument(
        "--output", default="outbox", help="output root whose completion.json is updated"
    )
    done.add_argument("--skip", action="store_true", help="skip the step (say why in --note)")
    done.set_defaults(func=_done)
    serve = sub.add_parser(
        "serve", help="serve the card's and channels' deployments (needs a server)"
    )
    serve.add_argument("config")
    serve.set_defaults(func=_serve)
    schedule = sub.add_parser("schedule", help="schedule channel runs on the plan's dates")
    schedule.add_argument("config")
    schedule.set_defaults(func=_schedule)
    reset = sub.add_parser(
        "reset",
        help="clear a municipality's checklist state (who confirmed what), after asking; "
        "never the delivery ledger or its key",
    )
    reset.add_argument("config")
    reset.add_argument("--yes", action="store_true", help="do not ask")
    reset.set_defaults(func=_reset)
    _add_receipt_commands(sub)
    for command in sub.choices.values():
        # After the command too; SUPPRESS: left out, it keeps the value given before the command.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug)
        command.add_argument(
            "--lang", choices=operator_text.LANGUAGES, default=argparse.SUPPRESS, help=lang
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    operator_text.choose(args.lang)

    def places() -> list[Path]:
        """The folders this command writes, data dir first (see exits.run_command)."""
        from tasks.steps import data_dir

        data: list[Path] = []
        # A data folder that cannot be used is the command's own error, said once, not here.
        with contextlib.suppress(FbsflowError):
            if config := getattr(args, "config", None):
                data.append(data_dir(config))
        return data + ([Path(args.output)] if getattr(args, "output", None) else [])

    try:
        return exits.run_command(
            args.command, lambda: args.func(args), debug=args.debug, places=places
        )
    finally:
        operator_text.choose(None)  # the next command in this process chooses afresh


def entry() -> NoReturn:
    """The `fbsflow` program: `main()`, with the cycle collector kept off the imports and, at
    exit, off the heap (`tasks.speed.gcpause`); commands that go on running turn it back on
    (`_collect_from_here`), short ones end first."""
    from tasks.speed import gcpause

    gcpause.start_without_collector()
    code = main()
    gcpause.freeze_for_exit()
    sys.exit(code)


def _collect_from_here() -> None:
    """Turn the cycle collector back on, leaving out what exists now (see `entry`)."""
    from tasks.speed.gcpause import collect_from_here

    collect_from_here()


if __name__ == "__main__":
    entry()
