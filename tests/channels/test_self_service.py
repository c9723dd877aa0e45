"""The self-service settings, read back as DPL CMS (config sync) and DDB CMS (drush) read them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tasks.channels import spec
from tasks.models import Channel

from .helpers import example, raw_example, variant

render_self_service = spec(Channel.SELF_SERVICE).render

DPL_KEYS = {"fees_and_replacement_costs_url", "payment_site_url", "payment_site_button_label",
            "fee_list_body_text", "blocked_patron_e_link_url"}  # fmt: skip
DDB_KEYS = {"ding_debt_show_introtext", "ding_debt_introtext", "ding_debt_enable_internal",
            "ding_debt_enable_external", "ding_debt_enable_external_button",
            "ding_debt_external_button_text", "ding_debt_external_button_url",
            "ding_debt_external_show_extra_information", "ding_debt_external_extra_information"}  # fmt: skip


def test_dpl_config_holds_exactly_the_real_keys_with_the_config_urls() -> None:
    out = render_self_service(example())
    raw = raw_example()
    dpl = yaml.safe_load(out.files["dpl/dpl_fees.settings.yml"])
    assert set(dpl) == DPL_KEYS
    assert all(isinstance(v, str) and v for v in dpl.values())
    portal_url = raw["decisions"]["new_debts"]["portal"]["url"]
    assert dpl["payment_site_url"] == portal_url
    assert dpl["blocked_patron_e_link_url"] == portal_url
    assert dpl["fees_and_replacement_costs_url"] == raw["channels"]["faq"]["page_url"]
    assert raw["decisions"]["new_debts"]["portal"]["name"] in dpl["payment_site_button_label"]
    assert "MitID" in dpl["fee_list_body_text"] and "gebyr" in dpl["fee_list_body_text"]

    english = yaml.safe_load(out.files["dpl/language/en/dpl_fees.settings.yml"])
    assert english and set(english) <= DPL_KEYS
    assert english["payment_site_button_label"].startswith("Go to")
    assert "fee" in english["fee_list_body_text"]


def test_dpl_without_english_has_no_translation_file(variants: Path) -> None:
    out = render_self_service(variant(variants, {"languages": ["da"]}, "da-only"))
    assert not any(name.startswith("dpl/language/") for name in out.files)


def test_ddb_variables_are_the_real_ding_debt_ones() -> None:
    out = render_self_service(example())
    ddb = json.loads(out.files["ddb/ding_debt.json"])
    assert set(ddb) == DDB_KEYS
    assert (
        ddb["ding_debt_external_button_url"]
        == raw_example()["decisions"]["new_debts"]["portal"]["url"]
    )
    flags = [k for k in DDB_KEYS if k.startswith(("ding_debt_enable", "ding_debt_show"))
             or k.endswith("show_extra_information")]  # fmt: skip
    assert all(ddb[k] in (0, 1) for k in flags)
    # Old debts are payable at the library until March in the example: internal payment stays on.
    assert ddb["ding_debt_enable_internal"] == 1


def _run_drush_script(script: str, work: Path) -> dict[str, str]:
    """Run the generated script with a stand-in `drush` that records its arguments."""
    (work / "bin").mkdir(parents=True)
    stub = work / "bin" / "drush"
    stub.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "with open(os.environ['DRUSH_LOG'], 'a', encoding='utf-8') as log:\n"
        "    log.write(json.dumps(sys.argv[1:]) + '\\n')\n",
        encoding="utf-8",
    )
    stub.chmod(0o755)
    (work / "ding_debt.drush.sh").write_text(script, encoding="utf-8")
    log = work / "drush.log"
    env = {**os.environ, "PATH": f"{work / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "DRUSH_LOG": str(log), "HOME": "/nonexistent-home"}  # fmt: skip
    subprocess.run(["sh", "-n", str(work / "ding_debt.drush.sh")], check=True, timeout=10)
    subprocess.run(["sh", str(work / "ding_debt.drush.sh")], check=True, env=env, cwd=work,
                   timeout=30)  # fmt: skip
    values = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        args = json.loads(line)
        assert args[:3] == ["-y", "vset", "--exact"], args
        assert len(args) == 5, f"a value was split into several arguments: {args}"
        values[args[3]] = args[4]
    return values


def test_drush_script_sets_every_variable_exactly(tmp_path: Path) -> None:
    out = render_self_service(example())
    values = _run_drush_script(out.files["ddb/ding_debt.drush.sh"], tmp_path)
    ddb = json.loads(out.files["ddb/ding_debt.json"])
    assert values == {k: str(v) for k, v in ddb.items()}


def test_drush_script_quotes_texts_with_quotes_and_shell_characters(tmp_path: Path) -> None:
    tricky = 'Kim\'s "Betaling"; $HOME $(id) \\ ø'
    config = variant(tmp_path, {"decisions.new_debts.portal.name": tricky,
                                "contacts.billing.name": "Opkrævningen's team"})  # fmt: skip
    out = render_self_service(config)
    values = _run_drush_script(out.files["ddb/ding_debt.drush.sh"], tmp_path / "run")
    assert values["ding_debt_external_button_text"] == f"Gå til {tricky}"
    assert "Opkrævningen's team" in values["ding_debt_introtext"]
    assert values == {k: str(v) for k, v in json.loads(out.files["ddb/ding_debt.json"]).items()}
    assert yaml.safe_load(out.files["dpl/dpl_fees.settings.yml"])["payment_site_button_label"] == (
        f"Gå til {tricky}"
    )
