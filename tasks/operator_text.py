"""The words fbsflow says to the people who run it (project leader, IT), in Danish or English.

One catalog keyed by message id, each entry `{da: ..., en: ...}` with `str.format` fields.
The operator language is Danish unless the municipality's config says `operator_language: en`
or the command line says `--lang en` (which wins). Times are shown in Europe/Copenhagen with
the language's date format (Babel), never in UTC: the project leader reads them on a wall clock.
Citizen texts are not here: they live in templates/. Machine-readable keys (completion.json's
field names, step ids, state values) stay English; this module only words what a person reads.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

OperatorLanguage = Literal["da", "en"]
LANGUAGES: tuple[OperatorLanguage, ...] = ("da", "en")
DEFAULT: OperatorLanguage = "da"
TIMEZONE = ZoneInfo("Europe/Copenhagen")
_LOCALES = {"da": "da_DK", "en": "en_GB"}

# The command line's choice (`--lang`), which wins over every config; None: the config decides.
_chosen: OperatorLanguage | None = None
# The language of the config this command works on, for words said without the config at
# hand (a command's last line, its error); set by `adopt`.
_adopted: OperatorLanguage = DEFAULT


def choose(lang: str | None) -> None:
    """Set (or with None, clear) the command line's choice; forget any adopted config's."""
    global _chosen, _adopted
    if lang is not None and lang not in LANGUAGES:
        raise ValueError(f"operator language must be one of {list(LANGUAGES)}, not {lang!r}")
    _chosen, _adopted = lang, DEFAULT  # type: ignore[assignment]


def adopt(config: Any) -> OperatorLanguage:
    """Make `config`'s operator language this process's default (the CLI, once it has loaded
    the config); returns the language now in force."""
    global _adopted
    _adopted = _configured(config) or DEFAULT
    return language()


def _configured(config: Any) -> OperatorLanguage | None:
    value = getattr(config, "operator_language", None)
    value = getattr(value, "value", value)
    return value if value in LANGUAGES else None


def language(config: Any = None) -> OperatorLanguage:
    """The operator language: `--lang`, else `config`'s `operator_language`, else the adopted
    config's, else Danish."""
    return _chosen or _configured(config) or _adopted


def say(key: str, lang: str | None = None, /, **fields: Any) -> str:
    """The message `key` in `lang` (default: the current operator language), fields filled in."""
    entry = CATALOG[key]
    return entry[lang if lang in LANGUAGES else language()].format(**fields)


def when(at: datetime | str | None, lang: str | None = None) -> str:
    """A moment as the project leader reads it: "7. dec. 2026 kl. 00.30" (Copenhagen time).

    Accepts an ISO 8601 text (the checklist stores UTC text); a naive time counts as UTC.
    Anything that is not a time is returned as given, so a hand-edited row still shows.
    """
    from babel.dates import format_datetime

    if not at:
        return ""
    if isinstance(at, str):
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            return at
    else:
        moment = at
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    lang = lang if lang in LANGUAGES else language()
    pattern = "d. MMM y 'kl.' HH.mm" if lang == "da" else "d MMM y HH:mm"
    return format_datetime(moment, pattern, tzinfo=TIMEZONE, locale=_LOCALES[lang])


def day(d: date, lang: str | None = None, *, weekday: bool = False) -> str:
    """A date as the project leader reads it: "14. december 2026" (with weekday: "mandag d. ...")."""
    from babel.dates import format_date

    lang = lang if lang in LANGUAGES else language()
    if weekday:
        pattern = "EEEE 'd.' d. MMMM y" if lang == "da" else "EEEE d MMMM y"
    else:
        pattern = "d. MMMM y" if lang == "da" else "d MMMM y"
    return format_date(d, pattern, locale=_LOCALES[lang])


def short_day(d: date, lang: str | None = None) -> str:
    """A date in a table column: "14.12.2026" in Danish, "2026-12-14" in English."""
    lang = lang if lang in LANGUAGES else language()
    return f"{d:%d.%m.%Y}" if lang == "da" else d.isoformat()


def number(value: float | int | str | None, lang: str | None = None) -> str:
    """A figure as the operator reads it: "1.234" and "27,7" in Danish, "1,234" and "27.7" in
    English; empty for None, a text as it is."""
    from babel.numbers import format_decimal

    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    lang = lang if lang in LANGUAGES else language()
    return format_decimal(value, locale=_LOCALES[lang])


# --- The catalog -----------------------------------------------------------------------------
# Keys: <where>.<what>. Keep both languages in one entry so a missing translation shows here.

CATALOG: dict[str, dict[str, str]] = {
    # The communication plan (tasks/plan.py: plan.md and the plan artifact).
    "plan.title": {"da": "Kommunikationsplan: {title}", "en": "Communication plan: {title}"},
    "plan.municipality": {
        "da": "Kommune: **{name}** ({library})",
        "en": "Municipality: **{name}** ({library})",
    },
    "plan.go_live": {
        "da": "Debitorintegrationen går i drift: **{day}**",
        "en": "Go-live of the debtor integration: **{day}**",
    },
    "plan.campaign": {"da": "Kampagne-id: `{campaign}`", "en": "Campaign id: `{campaign}`"},
    "plan.languages": {"da": "Sprog: {languages}", "en": "Languages: {languages}"},
    "plan.goal": {"da": "Mål: {goal}", "en": "Goal: {goal}"},
    "plan.columns": {
        "da": "| Dato | Kanal | Målgruppe | Modtagere | Ansvarlig | Hovedbudskab |",
        "en": "| Date | Channel | Audience | Recipients | Responsible | Key message |",
    },
    "plan.timeline": {"da": "Tidslinje", "en": "Timeline"},
    "plan.timeline_alt": {
        "da": "Tidslinje: kanalerne efter dato, driftsstart markeret",
        "en": "Timeline: channels by date, go-live marked",
    },
    "plan.timeline_file": {
        "da": "Tidslinjen som billede: `{file}` (også i gallery.html).",
        "en": "The timeline as an image: `{file}` (also in gallery.html).",
    },
    "plan.metrics": {"da": "Læsbarhed og SMS-pris", "en": "Readability and SMS cost"},
    "plan.metrics_columns": {
        "da": "| Kanal | Sprog | LIX | Tegn | SMS-dele | Betalte dele |",
        "en": "| Channel | Language | LIX | Characters | SMS parts | Billed parts |",
    },
    "plan.excluded": {"da": "Udeladt (kun antal)", "en": "Left out (counts only)"},
    "plan.not_used": {"da": "Kanaler, der ikke bruges", "en": "Channels not used"},
    "plan.lix_bands": {
        "da": "LIX: under 25 meget let, 25-34 let, 35-44 middel, 45+ svær.",
        "en": "LIX: under 25 very easy, 25-34 easy, 35-44 medium, 45+ hard.",
    },
    "plan.go_live_mark": {"da": "Driftsstart", "en": "Go-live"},
    "channel.off": {"da": "slået fra: {reason}", "en": "switched off: {reason}"},
    "channel.absent": {"da": "ikke sat op i konfigurationen", "en": "not set up in the config"},
    # The checklist (tasks/checklist.py render_table, `fbsflow checklist`).
    "checklist.columns": {
        "da": "TRIN|STATUS|TYPE|AF|HVORNÅR|TEKST",
        "en": "STEP|STATE|KIND|BY|WHEN|TEXT",
    },
    "checklist.artifact_columns": {
        "da": "trin|status|type|kanal|af|tidspunkt|hvordan|note|tekst",
        "en": "step|state|kind|channel|by|at|how|note|text",
    },
    "state.open": {"da": "åben", "en": "open"},
    "state.in_progress": {"da": "i gang", "en": "in progress"},
    "state.done": {"da": "udført", "en": "done"},
    "state.skipped": {"da": "sprunget over", "en": "skipped"},
    "kind.automated": {"da": "automatisk", "en": "automated"},
    "kind.manual": {"da": "manuelt", "en": "manual"},
    "checklist.rollup": {
        "da": "{settled} af {total} undertrin udført eller sprunget over",
        "en": "{settled} of {total} sub-steps done or skipped",
    },
    "checklist.off_by": {"da": "konfigurationen", "en": "the config"},
    "checklist.complete": {"da": "Færdig.", "en": "Complete."},
    "checklist.open": {"da": "Åbne trin: {steps}", "en": "Open: {steps}"},
    "checklist.not_reached": {"da": "ikke nået: {count}", "en": "not reached: {count}"},
    # The completion record's human-readable reasons (tasks/steps.py mark_complete).
    "complete.channel_reason": {"da": "{channel}: {status}", "en": "{channel}: {status}"},
    "complete.step_open": {
        "da": "trin {step} er ikke udført: venter på bekræftelse",
        "en": "step {step} is not done: awaiting confirmation",
    },
    "complete.delivery": {
        "da": "Opgavekort '{title}': {status} (kun antal, ingen persondata)",
        "en": "Card '{title}': {status} (counts only, no personal data)",
    },
    "delivery.channel": {"da": "kanal", "en": "channel"},
    "delivery.status": {"da": "status", "en": "status"},
    "delivery.provider": {"da": "udbyder", "en": "provider"},
    "delivery.pending": {"da": "venter", "en": "pending"},
    "delivery.sending": {"da": "sendes", "en": "sending"},
    "delivery.sent": {"da": "sendt", "en": "sent"},
    "delivery.failed": {"da": "fejlet", "en": "failed"},
    "delivery.unknown": {"da": "ukendt", "en": "unknown"},
    "gallery.title": {
        "da": "{name}: forhåndsvisning før godkendelse",
        "en": "{name}: previews before approval",
    },
    "card.complete": {"da": "færdig", "en": "complete"},
    "card.incomplete": {"da": "ikke færdig", "en": "incomplete"},
    "status.done": {"da": "udført", "en": "done"},
    "status.failed": {"da": "fejlet", "en": "failed"},
    "status.in_progress": {"da": "i gang", "en": "in progress"},
    "status.unconfirmed": {"da": "ubekræftet", "en": "unconfirmed"},
    "status.awaiting_approval": {"da": "afventer godkendelse", "en": "awaiting approval"},
    "status.rejected": {"da": "afvist", "en": "rejected"},
    "artifact.plan": {"da": "Kommunikationsplan", "en": "Communication plan"},
    "artifact.sms": {"da": "SMS: dele og LIX", "en": "SMS: parts and LIX"},
    "artifact.checklist": {"da": "Tjekliste: {title}", "en": "Checklist: {title}"},
    # The command line (flows/cli.py) and how a command ends (flows/exits.py).
    "cli.check_ok": {
        "da": "OK: {path}: {name}, opgavekort '{title}', driftsstart {day}, kanaler: {channels}",
        "en": "OK: {path}: {name}, card '{title}', go-live {day}, channels: {channels}",
    },
    "cli.check_off": {
        "da": "  slået fra: {channel}: {reason}",
        "en": "  switched off: {channel}: {reason}",
    },
    "cli.approve_prompt": {
        "da": "Intet når borgerne uden godkendelse. Send nyhedsbrev og SMS nu? [j/N] ",
        "en": "Nothing reaches citizens without approval. Send the newsletter and SMS now? [y/N] ",
    },
    "cli.running": {
        "da": "Kører opgavekortet for {name} på {mode} ...",
        "en": "Running card for {name} on {mode} ...",
    },
    "cli.mode_server": {"da": "Prefect-server {server}", "en": "Prefect server {server}"},
    "cli.mode_embedded": {
        "da": "indlejret Prefect (ingen server)",
        "en": "embedded Prefect (no server)",
    },
    "cli.card_status": {"da": "Opgavekort '{title}': {status}", "en": "Card '{title}': {status}"},
    "cli.open_reason": {"da": "  åben: {reason}", "en": "  open: {reason}"},
    "cli.output": {
        "da": "Resultat: {out}/ (plan.md, completion.json, en mappe pr. kanal)",
        "en": "Output: {out}/ (plan.md, completion.json, one folder per channel)",
    },
    "cli.crashed_one": {
        "da": "1 flow-kørsel er markeret som crashed: dens proces var død ({runs})",
        "en": "Marked 1 flow run crashed: the process had died ({runs})",
    },
    "cli.crashed_many": {
        "da": "{count} flow-kørsler er markeret som crashed: deres proces var død ({runs})",
        "en": "Marked {count} flow runs crashed: the process had died ({runs})",
    },
    "cli.step_set": {"da": "{step}: {state} af {by}", "en": "{step}: {state} by {by}"},
    "cli.card_done": {"da": "Opgavekortet er færdigt.", "en": "The card is complete."},
    "cli.completion_updated": {"da": "Opdateret: {path}", "en": "Updated: {path}"},
    "cli.card_run_settled": {
        "da": "Kortkørslen {run} står nu som Fuldført i Prefect.",
        "en": "The card run {run} is now Completed in Prefect.",
    },
    "cli.still_open": {"da": "Stadig åbne: {steps}", "en": "Still open: {steps}"},
    "cli.accepted_unknown": {
        "da": "{count} ukendte {channel}-modtagere er registreret som leveret (af {by}). Næste "
        "godkendte kørsel med {channel} registrerer kanalen som udført.",
        "en": "Accepted {count} unknown {channel} recipients as delivered (by {by}). The next "
        "approved run that includes {channel} records the channel as done.",
    },
    "cli.campaign": {"da": "Kampagne {campaign}", "en": "Campaign {campaign}"},
    "cli.checked_against": {
        "da": "Kontrolleret mod {audience} ({how}):",
        "en": "Checked against {audience} ({how}):",
    },
    "cli.repairing": {"da": "repareres", "en": "repairing"},
    "cli.changing_nothing": {"da": "intet ændres", "en": "changing nothing"},
    "cli.every_row_a_recipient": {
        "da": "{channel}: hver række er en modtager i denne låneroversigt",
        "en": "{channel}: every row is a recipient of this audience",
    },
    "cli.scheduled_run": {"da": "flow-kørsel {id}", "en": "flow run {id}"},
    "cli.date_passed": {"da": "datoen er passeret", "en": "date has passed"},
    "cli.reset_ask": {
        "da": "Slet tjeklistens tilstand for {name} ({slug}), {count} trin? Leveringsloggen og "
        "dens nøgle bevares. [j/N] ",
        "en": "Clear the checklist state of {name} ({slug}), {count} steps? The delivery ledger "
        "and its key are kept. [y/N] ",
    },
    "cli.reset_done": {
        "da": "Tjeklistens tilstand for {slug} er slettet ({count} trin). Leveringsloggen og dens "
        "nøgle er urørt.",
        "en": "Checklist state of {slug} cleared ({count} steps). The delivery ledger and its key "
        "are untouched.",
    },
    "cli.reset_kept": {"da": "Intet slettet.", "en": "Nothing cleared."},
    "exit.complete": {
        "da": "Færdig: opgavekortet er fuldført.",
        "en": "Done: the card is complete.",
    },
    "exit.rejected": {
        "da": "Afvist: intet blev sendt til borgerne; opgavekortet forbliver åbent.",
        "en": "Rejected: nothing was sent to citizens; the card stays open.",
    },
    "exit.waiting": {"da": "Venter på {what}.", "en": "Waiting for {what}."},
    "exit.and": {"da": " og ", "en": " and "},
    "exit.wait_approval": {
        "da": "godkendelse (kør igen med --approve, eller godkend i Prefects brugerflade)",
        "en": "approval (rerun with --approve, or approve in the Prefect UI)",
    },
    "exit.wait_other_run": {
        "da": "en anden kørsel af kampagnen, der stadig sender (kør igen bagefter)",
        "en": "another run of this campaign that is still sending (run again after it)",
    },
    "exit.wait_confirmations": {
        "da": "{count} bekræftelser (fbsflow done {config} TRIN --by NAVN)",
        "en": "{count} confirmations (fbsflow done {config} STEP --by NAME)",
    },
    "exit.wait_steps": {"da": "trinene ovenfor", "en": "the steps above"},
    # The failure notice (tasks/notify.py).
    "notify.subject": {
        "da": "fbsflow: {flow} fejlede for {municipality}",
        "en": "fbsflow: {flow} failed for {municipality}",
    },
    "notify.ended": {
        "da": "Flowet '{flow}' endte i tilstanden {state} for {municipality}.",
        "en": "The flow '{flow}' ended in state {state} for {municipality}.",
    },
    "notify.run": {"da": "Flow-kørsel: {name} (id {id})", "en": "Flow run: {name} (id {id})"},
    "notify.time": {"da": "Tidspunkt: {time}", "en": "Time: {time}"},
    "notify.message": {
        "da": "Besked (e-mailadresser og telefonnumre fjernet):",
        "en": "Message (e-mail addresses and phone numbers removed):",
    },
    "notify.no_message": {"da": "(ingen besked)", "en": "(no message)"},
    "notify.open_run": {"da": "Åbn kørslen: {url}", "en": "Open the run: {url}"},
    "notify.no_link": {
        "da": "Intet link til kørslen: sæt PREFECT_UI_URL til adressen på Prefects brugerflade.",
        "en": "No link to the run: set PREFECT_UI_URL to the Prefect UI's address.",
    },
    "notify.advice": {
        "da": "Kørslen er stoppet. Se dens log, ret årsagen, og start den igen; leveringsloggen "
        "sørger for, at lånere, der allerede har fået beskeden, ikke får den to gange.",
        "en": "This run has stopped. Check its logs, fix the cause and start it again; the "
        "delivery ledger keeps borrowers already sent to from being sent to twice.",
    },
    "notify.unknown_municipality": {"da": "ukendt kommune", "en": "unknown municipality"},
}


def word(group: str, value: str, lang: str | None = None) -> str:
    """A value fbsflow keeps in English (a step state, a channel status, a step kind, a card
    status) as a word in the operator language: `word("state", "done")` -> "udført". A value
    the catalog does not know is shown as it is, so a new status never breaks a command."""
    key = f"{group}.{value}"
    return say(key, lang) if key in CATALOG else value
