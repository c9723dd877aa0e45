"""The municipality's suppression list applied to a channel's recipients before they are registered.

An address or number a provider reported as a hard bounce, a complaint or an unsubscribe is
kept as its ledger key (`suppression` table, tasks/ledger/outcomes.py). Every later campaign
and channel that delivers to borrowers drops those keys here, before the ledger registers them;
recipients of the running campaign who were registered before they were suppressed are
withdrawn (pending -> failed), so the channel does not wait for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tasks.delivery.keying import KeyedPart
from tasks.ledger import Ledger
from tasks.ledger.outcomes import suppressed_keys, withdraw_suppressed


def honour_suppressions(
    ledger: Ledger, municipality: str, campaign: str, channel: str, parts: Iterable[KeyedPart]
) -> Iterator[KeyedPart]:
    """`parts` without the keys on the municipality's suppression list (still sorted by key).

    The list is read, and this campaign's suppressed recipients withdrawn, here and now: the
    parts are then consumed while the ledger registers them in another thread's transaction.
    """
    suppressed = suppressed_keys(ledger, municipality)
    if not suppressed:
        return iter(parts)
    withdraw_suppressed(ledger, municipality, campaign, channel)
    return _without(parts, suppressed)


def _without(parts: Iterable[KeyedPart], suppressed: set[str]) -> Iterator[KeyedPart]:
    for language, keys, addresses in parts:
        kept = [(k, a) for k, a in zip(keys, addresses, strict=True) if k not in suppressed]
        yield language, [k for k, _ in kept], [a for _, a in kept]
