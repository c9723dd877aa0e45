"""What the project leader reads: the plan, its timeline, the checklist, the completion record and
the command line, in Danish by default (English by config or --lang), with nothing left out."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.cli import main as fbsflow
from flows.communicate_externally import communicate_externally
from tasks import operator_text
from tasks.channels import render_channel
from tasks.config import load_card, load_municipality
from tasks.ledger import DB_FILE_NAME as LEDGER_FILE
from tasks.ledger import KEY_FILE_NAME, Ledger
from tasks.models import Channel
from tasks.plan import campaign_id
from tasks.steps import build_plan

from .channels.helpers import DROP, example, needs_pdf_tools, write_variant
from .conftest import EXAMPLE_AUDIENCE

SMS_OFF = "Kommunen har ingen sms-ordning for biblioteket"
# Drawing posters, slides and images costs seconds a run, and they are not what this shows.
LIGHT = {
    "channels.poster.enabled": False,
    "channels.poster.reason": "Plakaterne hænger allerede",
    "channels.info_screen": DROP,  # left out of the config entirely
    "channels.social_post.enabled": False,
    "channels.social_post.reason": "Biblioteket er ikke på sociale medier",
}


@pytest.fixture(autouse=True)
def _fresh_language() -> Iterator[None]:
    operator_text.choose(None)
    yield
    operator_text.choose(None)


def _light(folder: Path) -> Path:
    """The example with SMS, posters and social media switched off (with reasons) and the info
    screens left out of the config."""
    return write_variant(
        folder, {**LIGHT, "channels.sms.enabled": False, "channels.sms.reason": SMS_OFF}
    )


def _plan_of(config_path: Path | None = None):
    config = load_municipality(config_path) if config_path else example()
    contents = {c: render_channel(c, config) for c in (Channel.WEBSITE, Channel.NEWSLETTER)}
    contents = {c: v for c, v in contents.items() if c in config.channels.enabled()}
    return build_plan(config, load_card(config.card), contents, None)


# --- The plan --------------------------------------------------------------------------------


def test_the_plan_is_in_danish_with_danish_dates() -> None:
    markdown = _plan_of().to_markdown()
    assert markdown.startswith("# Kommunikationsplan: ")
    assert "Debitorintegrationen går i drift: **mandag d. 14. december 2026**" in markdown
    assert "| Dato | Kanal | Målgruppe | Modtagere | Ansvarlig | Hovedbudskab |" in markdown
    # The website article goes out 21 days before go-live: 23 November, as a Danish date.
    assert "| 23.11.2026 | Artikel på hjemmesiden | Alle, der besøger bibliotekets" in markdown
    for english in ("Communication plan", "Go-live", "Key message", "Readability"):
        assert english not in markdown


def test_the_plan_is_in_english_when_the_operator_chose_it(tmp_path: Path) -> None:
    markdown = _plan_of(write_variant(tmp_path, {"operator_language": "en"})).to_markdown()
    assert markdown.startswith("# Communication plan: ")
    assert "Go-live of the debtor integration: **Monday 14 December 2026**" in markdown
    assert "| 2026-11-23 | Website article | Everyone visiting the library website" in markdown


def test_a_switched_off_channel_is_in_the_plan_with_its_reason(tmp_path: Path) -> None:
    markdown = _plan_of(_light(tmp_path)).to_markdown()
    section = markdown.split("## Kanaler, der ikke bruges\n", 1)[1].split("\n## ", 1)[0]
    assert f"- SMS (`sms`): slået fra: {SMS_OFF}" in section
    assert "- Plakat (`poster`): slået fra: Plakaterne hænger allerede" in section
    assert "- Infoskærm (`info_screen`): ikke sat op i konfigurationen" in section


def test_a_channel_switched_off_without_a_reason_is_refused_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_variant(tmp_path, {"channels.sms.enabled": False})
    assert fbsflow(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "channels.sms" in err and "reason:" in err
    assert "Traceback" not in err


def test_an_sms_channel_switched_off_needs_no_sender_but_one_that_is_on_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    off = write_variant(
        tmp_path,
        {"channels.sms": {"enabled": False, "reason": SMS_OFF}},
        name="off",
    )
    assert fbsflow(["check", str(off)]) == 0
    assert f"slået fra: sms: {SMS_OFF}" in capsys.readouterr().out
    on = write_variant(tmp_path, {"channels.sms.sender": DROP}, name="on")
    assert fbsflow(["check", str(on)]) == 2
    err = capsys.readouterr().err
    assert "channels.sms" in err and "add `sender:`" in err


def test_check_says_which_channels_are_switched_off_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fbsflow(["check", str(_light(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "driftsstart 14. december 2026" in out
    assert f"  slået fra: sms: {SMS_OFF}" in out


# --- The timeline ----------------------------------------------------------------------------


def test_the_timeline_puts_each_channel_on_its_date_and_marks_go_live() -> None:
    config = example()
    contents = {c: render_channel(c, config) for c in (Channel.WEBSITE, Channel.SMS)}
    plan = build_plan(config, load_card(config.card), contents, None)
    svg, width, height = plan.timeline_svg("da")
    assert "Artikel på hjemmesiden" in svg and ">SMS<" in svg
    assert "Driftsstart 14.12.2026" in svg
    dots = [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', svg)]
    [go_live] = [float(x) for x in re.findall(r'<line x1="([\d.]+)"[^>]*stroke="#b00020"', svg)]
    # The website weeks before go-live, the SMS days before: both left of the line, in that
    # order, their distances on one scale of days.
    web, sms = config.channels.website.offset_days, config.channels.sms.offset_days
    assert web < sms < 0
    assert dots[0] < dots[1] < go_live
    assert (dots[1] - dots[0]) / (go_live - dots[1]) == pytest.approx((sms - web) / -sms)
    assert width == 1200 and height > 100


@needs_pdf_tools
def test_the_timeline_png_shows_the_go_live_line() -> None:
    from PIL import Image

    plan = _plan_of()
    png = plan.timeline_png("da")
    image = Image.open(io.BytesIO(png)).convert("RGB")
    _svg, width, height = plan.timeline_svg("da")
    assert image.size == (width, height)
    red = [
        x
        for x in range(width)
        if sum(
            1
            for y in range(0, height, 4)
            if (p := image.getpixel((x, y)))[0] > 150 and p[1] < 60 and p[2] < 80
        )
        > 5
    ]
    assert red, "no go-live line in the picture"


# --- A run: plan.md, the checklist and completion.json ---------------------------------------


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FBSFLOW_DATA_DIR", str(tmp_path / "data"))
    for name in (
        "SENDGRID_API_KEY",
        "GATEWAYAPI_TOKEN",
        "FBSFLOW_SMTP_HOST",
        "FBSFLOW_DATABASE_URL",
        "PREFECT_API_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


class _Terminal(io.StringIO):
    """A terminal's input: what the person types, and a tty."""

    def isatty(self) -> bool:
        return True


@needs_pdf_tools
def test_a_run_shows_a_switched_off_channel_everywhere_in_danish_and_reset_keeps_the_ledger(
    prefect_harness: None,
    isolated: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config_path = _light(isolated)
    record = communicate_externally(
        config_path=str(config_path),
        audience=str(EXAMPLE_AUDIENCE),
        output_root=str(isolated / "outbox"),
        approve=True,
        # A switched-off channel's step given too (as a script confirming every manual step
        # would): it stays skipped with its reason, and the run goes on.
        confirm=["inform.website", "inform.social_post"],
        confirmed_by="Test Leder",
    )
    out = isolated / "outbox" / "eksempel-kommune"

    # plan.md: Danish, the switched-off channel with its reason, the timeline beside it.
    plan = (out / "plan.md").read_text(encoding="utf-8")
    assert plan.startswith("# Kommunikationsplan: ")
    assert f"SMS (`sms`): slået fra: {SMS_OFF}" in plan
    assert "![Tidslinje: kanalerne efter dato, driftsstart markeret](plan-timeline.png)" in plan
    assert (out / "plan-timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'id="timeline"' in (out / "gallery.html").read_text(encoding="utf-8")

    # completion.json: English keys, the reason as the config gives it, Danish words for people.
    completion = json.loads((out / "completion.json").read_text(encoding="utf-8"))
    assert completion == record
    assert completion["channels_not_used"]["sms"] == {"switched_off": True, "reason": SMS_OFF}
    assert completion["channels_not_used"]["info_screen"] == {
        "switched_off": False,
        "reason": "ikke sat op i konfigurationen",
    }
    assert "sms" not in completion["channels"]
    social = completion["steps"]["inform.social_post"]
    assert (social["state"], social["note"]) == ("skipped", "Biblioteket er ikke på sociale medier")
    sms_step = completion["steps"]["inform.sms"]
    assert (sms_step["state"], sms_step["note"], sms_step["how"]) == ("skipped", SMS_OFF, "config")
    assert "trin inform.faq er ikke udført: venter på bekræftelse" in completion["reasons"]

    # The checklist on the terminal: Danish, the step skipped with the reason, Copenhagen time.
    capsys.readouterr()
    assert fbsflow(["checklist", str(config_path)]) == 3  # steps are open
    shown = capsys.readouterr().out
    assert shown.splitlines()[2].split() == ["TRIN", "STATUS", "TYPE", "AF", "HVORNÅR", "TEKST"]
    [sms_line] = [line for line in shown.splitlines() if line.startswith("  inform.sms ")]
    assert "sprunget over" in sms_line and SMS_OFF in sms_line
    [website] = [line for line in shown.splitlines() if line.startswith("  inform.website ")]
    assert "udført" in website and "Test Leder" in website and " kl. " in website
    assert "Åbne trin: inform.faq" in shown and "UTC" not in shown

    # --lang en, before or after the command.
    for argv in (["--lang", "en", "checklist", str(config_path)],
                 ["checklist", str(config_path), "--lang", "en"]):  # fmt: skip
        assert fbsflow(argv) == 3
        english = capsys.readouterr().out
        assert english.splitlines()[2].split() == ["STEP", "STATE", "KIND", "BY", "WHEN", "TEXT"]
        assert "Open: inform.faq" in english

    # reset: asks, and a no (or just Enter) keeps everything.
    # (An outbox run keeps no ledger of its own: open one, so that there is one to keep.)
    data = isolated / "data"
    with Ledger.open(data) as ledger:
        ledger.counts(campaign_id(load_municipality(config_path)), "newsletter")
    kept = {name: (data / name).read_bytes() for name in (KEY_FILE_NAME, LEDGER_FILE)}
    monkeypatch.setattr("sys.stdin", _Terminal("\n"))
    assert fbsflow(["reset", str(config_path)]) == 0
    assert "Intet slettet." in capsys.readouterr().out
    assert fbsflow(["checklist", str(config_path)]) == 3
    assert "Test Leder" in capsys.readouterr().out

    # Nobody to ask (no terminal) and no --yes: refused, naming the fix.
    monkeypatch.setattr("sys.stdin", io.StringIO("j\n"))
    assert fbsflow(["reset", str(config_path)]) == 2
    assert "--yes" in capsys.readouterr().err

    # A yes clears the checklist, and only it: the ledger and its key stay as they were.
    monkeypatch.setattr("sys.stdin", _Terminal("j\n"))
    assert fbsflow(["reset", str(config_path)]) == 0
    said = capsys.readouterr().out
    assert "Slet tjeklistens tilstand for Eksempel Kommune" in said
    assert "Tjeklistens tilstand for eksempel-kommune er slettet" in said
    assert fbsflow(["checklist", str(config_path)]) == 3
    assert "Test Leder" not in capsys.readouterr().out
    assert {name: (data / name).read_bytes() for name in kept} == kept
    # --yes asks nobody.
    assert fbsflow(["reset", str(config_path), "--yes"]) == 0
    assert "(0 trin)" in capsys.readouterr().out


def test_make_run_keeps_the_demo_state_apart_from_real_runs() -> None:
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text(encoding="utf-8")
    [run] = re.findall(r"(?m)^run:.*\n((?:\t.*\n)+)", makefile)
    assert "FBSFLOW_DATA_DIR=$(DEMO_DATA_DIR)" in run and "Projektleder (demo)" in run
    [demo] = re.findall(r"(?m)^DEMO_DATA_DIR := (.*)$", makefile)
    assert demo.endswith(".fbsflow-demo")


def test_the_gallery_shows_the_timeline_first_with_its_words_in_danish() -> None:
    from tasks.gallery import build_gallery

    config = example()
    contents = {Channel.SMS: render_channel(Channel.SMS, config)}
    png = b"\x89PNG\r\n\x1a\n" + b"timeline"  # the gallery embeds the bytes as they are
    html = build_gallery(contents, title="Eksempel Kommune", lang="da", timeline=png)
    timeline = html.index('id="timeline"')
    assert timeline < html.index('id="sms"')
    assert '<h2 id="timeline-h">Tidslinje</h2>' in html
    assert 'alt="Planens kanaler efter dato, driftsstart markeret"' in html
    assert "data:image/png;base64,iVBORw0KGgp0aW1lbGluZQ==" in html
    assert 'id="timeline"' not in build_gallery(contents, title="Eksempel Kommune", lang="da")


def test_a_channel_switched_off_after_a_run_is_skipped_with_its_reason_in_the_next(
    prefect_harness: None, isolated: Path
) -> None:
    before = write_variant(isolated, LIGHT, name="kommune")
    run = {"audience": str(EXAMPLE_AUDIENCE), "output_root": str(isolated / "outbox")}
    first = communicate_externally(config_path=str(before), approve=False, **run)
    assert first["channels"]["sms"]["status"] == "awaiting_approval"
    after = write_variant(
        isolated,
        {**LIGHT, "channels.sms.enabled": False, "channels.sms.reason": SMS_OFF},
        name="kommune",
    )
    second = communicate_externally(config_path=str(after), approve=False, **run)
    assert second["channels_not_used"]["sms"] == {"switched_off": True, "reason": SMS_OFF}
    assert second["steps"]["inform.sms"]["state"] == "skipped"
    assert second["steps"]["inform.sms"]["note"] == SMS_OFF
    # The first run's SMS outcome (awaiting approval) no longer holds the card open.
    assert "sms" not in second["channels"]
    assert not [r for r in second["reasons"] if r.startswith("sms")]
