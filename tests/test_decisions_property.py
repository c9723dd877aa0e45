"""Property-based: over the space of decisions, every claim in every output rests on a set
decision, and no output names a date, amount, number of days or hours, or place the config does
not hold."""

from __future__ import annotations

import re
from datetime import date, timedelta
from functools import cache
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.config import load_municipality
from tasks.content import FIXED, format_day, format_kr, is_set, resolve
from tasks.decisions import Method
from tasks.errors import ConfigError
from tasks.models import Language, MunicipalityConfig

from .channels.helpers import channel_texts, uncovered
from .conftest import EXAMPLE_CONFIG

GO_LIVE = date(2026, 12, 14)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def _local(da: str, en: str) -> st.SearchStrategy[dict[str, str]]:
    return st.just({"da": da, "en": en})


@st.composite
def old_debts(draw: st.DrawFn) -> dict[str, Any]:
    payable = draw(_maybe(st.sampled_from(["until", "open_ended", "no"])))
    out: dict[str, Any] = {}
    before = draw(_maybe(st.integers(0, 1500)))
    if before is not None:
        out["before"] = GO_LIVE - timedelta(days=before)
    if payable is not None:
        out["payable"] = payable
    if payable == "until":
        out["until"] = GO_LIVE + timedelta(days=draw(st.integers(0, 700)))
    if payable != "no":
        places = ["library_counter", "library_website", "municipality"]
        out["where"] = draw(st.lists(st.sampled_from(places), unique=True, max_size=3))
        out["methods"] = draw(st.lists(st.sampled_from([m.value for m in Method]),
                                       unique=True, max_size=3))  # fmt: skip
    return out


@st.composite
def new_debts(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["portal"] = {
            "name": draw(st.sampled_from(["Mit betalingsoverblik", "Betalingsoverblik"])),
            "url": "https://www.kommune.dk/betal",
            "login": draw(_maybe(st.sampled_from(["mitid", "nemid", "none"]))),
            "shows_old_debts": draw(st.booleans()),
        }
    if draw(st.booleans()):
        invoice: dict[str, Any] = {"digital_post": draw(st.booleans())}
        if (sent := draw(_maybe(st.sampled_from(["next_weekday", "monthly"])))) is not None:
            invoice["sent"] = sent
        if (above := draw(_maybe(st.integers(1, 500)))) is not None:
            invoice["above_kr"] = above
        out["invoice"] = invoice
    for key, low, high in (
        ("shows_after_days", 0, 30),
        ("payment_shows_within_hours", 1, 720),
        ("payment_days", 1, 365),
        ("reminder_fee_kr", 1, 2000),
    ):
        if (value := draw(_maybe(st.integers(low, high)))) is not None:
            out[key] = value
    if draw(st.booleans()):
        out["lost_items"] = {
            k: v
            for k, v in (
                ("lost_after_days", draw(_maybe(st.integers(1, 365)))),
                ("refund_if_returned_within_days", draw(_maybe(st.integers(1, 730)))),
            )
            if v is not None
        }
    return out


@st.composite
def decisions(draw: st.DrawFn) -> dict[str, Any]:
    methods = draw(st.lists(st.sampled_from([m.value for m in Method]), unique=True, max_size=7))
    payment_methods = []
    for method in methods:
        entry: dict[str, Any] = {"method": method}
        if draw(st.booleans()):
            entry["restriction"] = draw(_local("Ikke alle kort.", "Not every card."))
        payment_methods.append(entry)
    out: dict[str, Any] = {
        "old_debts": draw(old_debts()),
        "new_debts": draw(new_debts()),
        "payment_methods": payment_methods,
        "without_mitid": {
            k: v
            for k, v in (
                ("paper_invoice", draw(_maybe(st.booleans()))),
                ("exemption_at_borgerservice", draw(_maybe(st.booleans()))),
            )
            if v is not None
        },
        "fees": {"unchanged": draw(_maybe(st.booleans()))},
        "not_paying": {
            "gaeldsstyrelsen": draw(_maybe(st.booleans())),
            "offsetting": draw(_maybe(st.booleans())),
            "blocked_from_kr": draw(_maybe(st.integers(1, 1000))),
            "blocked_notice_days": draw(_maybe(st.integers(1, 90))),
        },
        "routing": {
            "account_page": draw(_maybe(st.sampled_from(["Mine sider", "Min side"]))),
            "account_page_shows": draw(_maybe(st.sampled_from(["old_only", "all"]))),
        },
    }
    if draw(st.booleans()):
        out["children"] = {"adult_invoiced_under_age": draw(st.integers(12, 18))}
    if draw(st.booleans()):
        out["fees"]["rates"] = [{"what": {"da": "Sen aflevering", "en": "Late return"},
                                 "amount_kr": draw(st.integers(1, 500))}]  # fmt: skip
    return out


@cache
def _base() -> dict[str, Any]:
    data = load_municipality(EXAMPLE_CONFIG).model_dump(mode="json", exclude={"decisions"})
    # The drawn pictures and PDFs are tested elsewhere; their words are read here.
    return data


def _config(drawn: dict[str, Any]) -> MunicipalityConfig:
    return MunicipalityConfig.model_validate({**_base(), "decisions": drawn})


_DATE = {
    Language.DA: re.compile(r"\d{1,2}\. [a-z]+ \d{4}"),
    Language.EN: re.compile(r"\d{1,2} [A-Z][a-z]+ \d{4}"),
}
_AMOUNT = {
    Language.DA: re.compile(r"[\d.]+ kr\."),
    Language.EN: re.compile(r"DKK [\d,]+"),
}
_COUNT = {
    Language.DA: re.compile(r"(\d+) (dage|timer|år)"),
    Language.EN: re.compile(r"(\d+) (days|hours)|[Ff]rom (\d+),|under (\d+)"),
}


def _held(config: MunicipalityConfig, language: Language) -> dict[str, set[str]]:
    """Every date, amount and number the config holds, as the texts would write them."""
    d = config.decisions
    dates = {config.go_live, d.old_debts.before, d.old_debts.until}
    amounts = {
        d.new_debts.reminder_fee_kr,
        d.new_debts.invoice.above_kr if d.new_debts.invoice else None,
        d.not_paying.blocked_from_kr,
        *(r.amount_kr for r in d.fees.rates),
    }
    lost = d.new_debts.lost_items
    numbers = {
        d.new_debts.payment_days,
        d.new_debts.shows_after_days,
        d.new_debts.payment_shows_within_hours,
        d.not_paying.blocked_notice_days,
        lost.lost_after_days if lost else None,
        lost.refund_if_returned_within_days if lost else None,
        d.children.adult_invoiced_under_age if d.children else None,
    }
    return {
        "dates": {format_day(x, language) for x in dates if x is not None},
        "amounts": {format_kr(x, language) for x in amounts if x is not None},
        "numbers": {str(x) for x in numbers if x is not None},
    }


def _places(config: MunicipalityConfig) -> dict[str, bool]:
    """Places and bodies a text may name only when the config names them."""
    d = config.decisions
    methods = {m.method.value for m in d.payment_methods} | {m.value for m in d.old_debts.methods}
    where = {w.value for w in d.old_debts.where}
    portal = d.new_debts.portal
    login = portal.login.value if portal is not None and portal.login is not None else None
    return {
        "Borgerservice": "cash_borgerservice" in methods
        or bool(d.without_mitid.exemption_at_borgerservice),
        "Gældsstyrelsen": bool(d.not_paying.gaeldsstyrelsen),
        "MobilePay": "mobilepay" in methods,
        "Betalingsservice": "betalingsservice" in methods,
        "netbank": "netbank" in methods,
        "NemID": login == "nemid",
        # Unset, the login is named nowhere: no default MitID (and no heading says it).
        "MitID": login == "mitid",
        "betale på biblioteket": "library_counter" in where,
        "pay them at the library": "library_counter" in where,
        "skat": bool(d.not_paying.offsetting),
        "rykker": d.new_debts.reminder_fee_kr is not None,
    }


# Derandomized: the same 150 draws on every run, so CI cannot turn red by chance; widen the search
# by hand with HYPOTHESIS settings (e.g. max_examples=2000) when changing the texts.
@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(decisions())
def test_every_claim_rests_on_a_set_decision_and_nothing_is_invented(
    drawn: dict[str, Any],
) -> None:
    try:
        config = _config(drawn)
    except ValueError:
        return  # refused by the model (e.g. a cut-off after go-live): tested in test_decisions
    try:
        texts = channel_texts(config)
    except ConfigError as exc:
        # Only the SMS may refuse, and only for length, saying how to fix it.
        assert "SMS text" in str(exc) and "parts" in str(exc), exc
        return
    places = _places(config)
    for (channel, lang), (text, claims) in texts.items():
        language = Language(lang)
        where = f"{channel}/{lang}"
        # Every sentence is a recorded claim; every claim's fields are set, or it is fixed.
        assert uncovered(text, claims) == "", where
        for claim in claims:
            if claim.fixed is None:
                assert claim.fields and all(is_set(resolve(config, f)) for f in claim.fields)
            else:
                assert claim.fixed in FIXED and not claim.fields
        # No date, amount or count the config does not hold.
        held = _held(config, language)
        assert set(_DATE[language].findall(text)) <= held["dates"], where
        assert set(_AMOUNT[language].findall(text)) <= held["amounts"], where
        for match in _COUNT[language].finditer(text):
            number = next(g for g in match.groups() if g and g.isdigit())
            assert number in held["numbers"], (where, match.group(0))
        # No place, body or cost the config does not name.
        for word, named in places.items():
            if not named:
                assert word not in text, (where, word)
        if config.decisions.new_debts.payment_days is None:
            assert "dage til at betale" not in text and "days to pay" not in text, where
        if (
            config.decisions.children is None
            or config.decisions.children.adult_invoiced_under_age != 18
        ):
            assert "under 18" not in text, where
