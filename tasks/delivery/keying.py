"""Who a channel reaches, keyed by the ledger's hash of their address, in the order they are sent."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from operator import itemgetter

from tasks.audience import Audience
from tasks.channels import spec
from tasks.ledger import Ledger
from tasks.models import Channel, Language, MunicipalityConfig
from tasks.providers.base import Recipient

# A large language group is keyed and sorted in this many parts, each handed to the ledger as
# soon as it is ready: while the ledger inserts one (SQLite works without the GIL), the caller
# keys and sorts the next (see `tasks.delivery.pending`). Parts below MIN_PART recipients are
# not worth the split.
KEY_PARTS = 4
MIN_PART = 50_000
# One language's keys and addresses, both sorted by key.
KeyedPart = tuple[Language, list[str], list[str]]


def borrower_recipients(
    channel: Channel, audience: Audience, ledger: Ledger, languages: Sequence[Language]
) -> list[Recipient]:
    """The consenting borrowers of a channel, keyed by the ledger's hash of their address.

    Grouped by language, and each group in up to KEY_PARTS parts, each sorted by key: the
    order they are registered and sent in. Each batch is then one language and one run of
    neighbouring ledger rows, and the ledger's key index is filled in a few sorted runs (as fast
    as one, twice as fast as at random). A borrower whose language the municipality does not
    publish in gets the Danish text.
    """
    return recipients_of(keyed_parts(channel, audience, ledger, languages))


def keyed_parts(
    channel: Channel, audience: Audience, ledger: Ledger, languages: Sequence[Language]
) -> Iterator[KeyedPart]:
    """(language, keys, addresses) parts, both sorted by key: see borrower_recipients."""
    delivery = spec(channel).delivers
    assert delivery is not None and delivery.address is not None  # a channel in DELIVERED
    chosen, attr = audience.recipients(channel.value), delivery.address
    offered = set(languages)
    groups: dict[Language, list[str]] = {}
    for borrower in chosen:
        language = borrower.language if borrower.language in offered else Language.DA
        groups.setdefault(language, []).append(getattr(borrower, attr))
    del chosen
    for language, addresses in groups.items():
        size = max(MIN_PART, -(-len(addresses) // KEY_PARTS))
        for start in range(0, len(addresses), size):
            part = addresses[start : start + size]
            # The import's addresses are in the ledger's normal form already (tested).
            keys = ledger.recipient_keys(part, normalised=True)
            pairs = sorted(zip(keys, part, strict=True), key=itemgetter(0))
            yield language, list(map(itemgetter(0), pairs)), list(map(itemgetter(1), pairs))


def recipients_of(keyed: Iterable[KeyedPart]) -> list[Recipient]:
    """The Recipients of keyed parts, in their order."""
    make = Recipient._make  # from a tuple, in C: a quarter faster than Recipient(k, a, l)
    recipients: list[Recipient] = []
    for language, keys, addresses in keyed:
        recipients.extend(map(make, zip(keys, addresses, repeat(language))))
    return recipients


def branch_recipients(config: MunicipalityConfig, ledger: Ledger) -> list[Recipient]:
    """Branch contacts who print and put up the posters (staff, not borrowers)."""
    emails = [str(b.contact_email) for b in config.library.branches if b.contact_email]
    return [Recipient(ledger.recipient_key(e), e, Language.DA) for e in emails]
