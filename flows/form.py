"""The card's run form in the Prefect UI: Danish titles and help, the municipality as a list.

Prefect builds a deployment's run form from the flow's signature. It titles each field with the
parameter's name, but copies a `Field`'s `json_schema_extra` over what it makes, so a title given
there is the one the UI shows. The parameter names stay English: the CLI and tests call the flow
with them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field, WithJsonSchema

from tasks.models import Channel

PROJECT = Path(__file__).resolve().parents[1]
MUNICIPALITIES = Path("config") / "municipalities"
ADVANCED = "Avanceret: "

# A parameter that may be None shows in the UI as a choice between its type and "None" ("Property
# is type None"); the form shows a plain text field instead, left empty for "not given".
TEXT_OR_EMPTY = WithJsonSchema({"type": "string"})
LIST_OR_EMPTY = WithJsonSchema({"type": "array", "items": {"type": "string"}})
CHANNELS_OR_ALL = WithJsonSchema(
    {"type": "array", "items": {"type": "string", "enum": [c.value for c in Channel]}}
)


def known_configs(folder: Path | None = None) -> list[str]:
    """The municipality configs a deployment offers: the YAML files in `folder`, by absolute path
    (`fbsflow serve`), else those in config/municipalities/ relative to the project folder
    (`prefect deploy`, whose worker runs in FBSFLOW_PROJECT_DIR)."""
    if folder is not None:
        return sorted(str(p.resolve()) for p in folder.glob("*.yaml"))
    return sorted(str(MUNICIPALITIES / p.name) for p in (PROJECT / MUNICIPALITIES).glob("*.yaml"))


def municipality_schema(choices: Iterable[str]) -> dict[str, Any]:
    """The JSON schema of `config_path` in the form: a list to pick from, not a path to type."""
    return {
        "type": "string",
        "title": "Kommune",
        "description": (
            "Kommunens konfiguration: vælg din kommune på listen. Filen siger, hvad borgerne får "
            "at vide, og hvornår hver kanal sender."
        ),
        "enum": list(dict.fromkeys(choices)),
    }


def field(
    default: Any,
    title: str,
    description: str,
    *,
    advanced: bool = False,
    empty: Any = None,
) -> Any:
    """A parameter's default with its Danish title and help text for the run form.

    `advanced`: a switch the project leader should leave alone; its title starts "Avanceret:".
    `empty`: what the form starts with for a parameter whose default is None ("" or []): the UI
    sends its field's start value, and the server refuses None for a text or list field.
    """
    extra: dict[str, Any] = {"title": ADVANCED + title if advanced else title}
    if empty is not None:
        extra["default"] = empty
    return Field(default, description=description, json_schema_extra=extra)


def given(value: Any) -> Any:
    """None for what the form sends for "not given" ("" or []): the flow's own meaning of None."""
    return value or None


# What the form offers for `config_path` when the flow is imported (`prefect deploy`);
# `fbsflow serve` replaces the list with the configs beside the one it serves.
MUNICIPALITY = WithJsonSchema(municipality_schema(known_configs()))
