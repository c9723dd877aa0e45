"""The decision model: every fact optional, contradictions refused with the fix, and a config
written for the old `payment:` block explained field by field (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.config import OLD_PAYMENT_FIELDS, load_municipality
from tasks.decisions import Decisions, free_text_warnings, local_texts
from tasks.errors import ConfigError

from .channels.helpers import DROP, raw_example, write_variant
from .conftest import ROOT

# The example's payment block as the model before `decisions:` had it.
OLD_PAYMENT = {
    "self_service": {
        "name": "Mit betalingsoverblik",
        "url": "https://www.eksempel.dk/betalingsoverblik",
        "requires_mitid": True,
    },
    "invoices": {"digital_post": True, "payment_days": 30},
    "paper_invoice": True,
    "bank_transfer": True,
    "betalingsservice": True,
    "borgerservice": True,
    "old_debts": {"payable_at_library": True, "until": "2027-03-31"},
    "library_pages_show": "old_only",
    "reminder_fee_kr": 250,
}


def _old_config(folder: Path) -> Path:
    return write_variant(folder, {"decisions": DROP, "payment": OLD_PAYMENT}, "old-model")


def test_every_decision_is_optional() -> None:
    empty = Decisions()
    assert empty.new_debts.portal is None and empty.new_debts.payment_days is None
    assert empty.old_debts.payable is None and empty.children is None
    assert local_texts(empty) == []


def test_a_config_for_the_old_model_names_each_field_and_its_new_name(tmp_path: Path) -> None:
    path = _old_config(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_municipality(path)
    message = str(caught.value)
    assert f"{path}:" in message and "written for the old model" in message
    for old, new in OLD_PAYMENT_FIELDS.items():
        assert f"payment.{old}: now {new}" in message, old
    assert "decisions.new_debts.payment_days" in message


def test_fbsflow_check_on_an_old_config_exits_2_without_traceback(tmp_path: Path) -> None:
    path = _old_config(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "check", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "payment.reminder_fee_kr: now decisions.new_debts.reminder_fee_kr" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"decisions.old_debts": {"payable": "until"}}, "add `until: YYYY-MM-DD`"),
        ({"decisions.old_debts": {"payable": "open_ended", "until": "2027-01-01"}},
         "set `payable: until` or remove `until`"),
        ({"decisions.old_debts": {"payable": "no", "where": ["library_counter"]}},
         "remove `where` and `methods`"),
        ({"decisions.old_debts": {"before": "2027-01-01"}}, "decisions.old_debts.before is after"),
        ({"decisions.payment_methods": [{"method": "card"}, {"method": "card"}]}, "twice"),
        ({"decisions.payment_methods": [{"method": "cheque"}]}, "decisions.payment_methods.0.method"),
        ({"decisions.children": {"adult_invoiced_under_age": 21}}, "less than or equal to 18"),
        ({"decisions.new_debts.portal.login": "nemid2"}, "'mitid', 'nemid' or 'none'"),
        ({"decisions.payment_methods": [{"method": "card", "restriction": {"da": "Ikke Amex."}}]},
         "decisions.payment_methods.0.restriction has no `en:` text"),
        ({"decisions.extra.sentences": {"sms": {"da": "Læs mere på vores side — nu", "en": "x"}}},
         "GSM-7"),
        ({"decisions.extra.sentences": {"sms": {"da": "a" * 71, "en": "b"}}}, "more than 70"),
    ],
)  # fmt: skip
def test_contradictions_are_refused_with_the_fix(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_municipality(write_variant(tmp_path, changes))
    assert expected in str(caught.value)


def test_english_may_be_left_out_in_a_danish_only_config(tmp_path: Path) -> None:
    restriction = {"da": "American Express kan ikke bruges."}
    changes = {"languages": ["da"],
               "decisions.payment_methods": [{"method": "card", "restriction": restriction}]}  # fmt: skip
    config = load_municipality(write_variant(tmp_path, changes))
    assert config.decisions.payment_methods[0].restriction is not None


def test_hard_free_text_gets_a_lix_warning() -> None:
    long_words = "Kommunalbestyrelsens opkrævningsafdeling administrerer betalingsordninger."
    decisions = Decisions.model_validate(
        {"extra": {"sentences": {"website": {"da": long_words, "en": "Easy words here."}}}}
    )
    [warning] = free_text_warnings(decisions)
    assert warning.startswith("decisions.extra.sentences.website.da: LIX")


def test_the_example_holds_every_part_of_the_model() -> None:
    decisions = raw_example()["decisions"]
    assert set(decisions) == {
        "old_debts", "new_debts", "payment_methods", "without_mitid", "children", "fees",
        "not_paying", "routing",
    }  # fmt: skip
    assert yaml.safe_dump(decisions)  # plain YAML, no anchors
