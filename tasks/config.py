"""Load the card and municipality YAML files; turn every mistake into a ConfigError naming file, line, field and fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from tasks.errors import ConfigError
from tasks.models import MunicipalityConfig, TaskCard

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CARDS_DIR = PROJECT_ROOT / "config" / "cards"
TEMPLATES_DIR = PROJECT_ROOT / "templates"

M = TypeVar("M", bound=BaseModel)

# Why pydantic's own wording is not enough: a project leader needs to know what to write instead.
_FIXES = {
    "missing": "add this field",
    "extra_forbidden": "remove it or fix its spelling",
    "date_from_datetime_parsing": "write the date as YYYY-MM-DD, e.g. 2026-12-14",
    "date_parsing": "write the date as YYYY-MM-DD, e.g. 2026-12-14",
    "date_type": "write the date as YYYY-MM-DD, e.g. 2026-12-14",
    "url_parsing": "write a full address such as https://example.dk/side",
    "url_scheme": "write a full address such as https://example.dk/side",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "literal_error": "use one of the allowed values",
    "enum": "use one of the allowed values",
    "value_error": "",
    "string_type": "write text in quotes",
    "list_type": "write a list (lines starting with '- ')",
    "model_type": "write a mapping (indented 'key: value' lines)",
    "dict_type": "write a mapping (indented 'key: value' lines)",
}


def _node_line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a 1-based line number."""
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None) or next(
                (k for k, _ in node.value if k.value == str(part)), None
            )
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _known_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found at `loc`, to suggest the right spelling of an unknown key."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        # Unwrap `X | None` and `list[X]` to reach the nested model.
        args = [a for a in get_args(annotation) if a is not type(None)]
        current = args[0] if args else annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _describe(
    error: dict[str, Any], path: Path, root: yaml.Node | None, model: type[BaseModel]
) -> str:
    # pydantic adds the name of a validator or union branch to loc; those are not fields.
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p[:1].isupper()))
    loc = tuple(p for p in loc if p not in ("function-after", "str"))
    field = ".".join(str(p) for p in loc) or "(top level)"
    line = _node_line(root, loc)
    where = f"{path}:{line}" if line else str(path)
    msg = str(error["msg"]).removeprefix("Value error, ")
    fix = _FIXES.get(error["type"], "")
    if error["type"] in ("literal_error", "enum") and "expected" in error.get("ctx", {}):
        fix = f"use one of {error['ctx']['expected']}"
    if "outside expected range" in str(error.get("ctx", {}).get("error", "")):
        # A date such as 2026-02-30: the format is right, the day is not in the calendar.
        fix = "write a date that exists, as YYYY-MM-DD (February has 28 days, 29 in a leap year)"
    if error["type"] == "extra_forbidden" and len(loc) >= 1:
        known = ", ".join(_known_fields(model, loc[:-1]))
        fix = f"'{loc[-1]}' is not a known field here; remove it or fix its spelling" + (
            f" (known: {known})" if known else ""
        )
    return f"{where}: {field}: {msg}" + (f" (fix: {fix})" if fix else "")


# Far deeper than a card or a municipality config nests (four levels), and far from Python's
# recursion limit: composing recurses two frames a level, and some 450 levels deep PyYAML
# raised RecursionError, a traceback instead of a message.
MAX_DEPTH = 32


class _Refused(Exception):
    """Something a config never needs, refused while reading, before it can cost anything."""

    def __init__(self, mark: yaml.Mark, field: str, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.line, self.field, self.problem, self.fix = mark.line + 1, field, problem, fix


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing anchors and aliases, duplicate keys and deep nesting.

    Each is refused where the parser first meets it, so a file costs what its text costs:
    an alias bomb (`&a [x, x]`, `&b [*a, *a]`, ...) nine levels deep took 88 s and 1.4 GB
    in validation before the first error, and a repeated `go_live:` silently won over the
    first. Anchors are refused too, not only aliases: a config has no use for either.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        # The key or index of each node being composed; None for the root and for keys.
        self._path: list[object] = []

    def _field(self, *more: object, limit: int = 6) -> str:
        parts = [str(p) for p in (*self._path, *more) if p is not None]
        shown = ".".join(parts[:limit]) + (".…" if len(parts) > limit else "")
        return shown or "(top level)"

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()
        self._path.append(index.value if isinstance(index, yaml.ScalarNode) else index)
        try:
            if event.anchor is not None:  # an alias event's anchor is the name it refers to
                alias = isinstance(event, yaml.AliasEvent)
                raise _Refused(
                    event.start_mark,
                    self._field(),
                    f"YAML {'alias *' if alias else 'anchor &'}{event.anchor} is not allowed",
                    "write the value out in full where it is used",
                )
            if len(self._path) > MAX_DEPTH:
                raise _Refused(
                    event.start_mark,
                    self._field(),
                    f"nested more than {MAX_DEPTH} levels deep",
                    "a config nests a few levels at most; look for brackets [ or { that are "
                    "never closed, or remove the extra levels",
                )
            return super().compose_node(parent, index)
        finally:
            self._path.pop()

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node: yaml.MappingNode = super().compose_mapping_node(anchor)
        first: dict[tuple[str, str], yaml.Node] = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                seen = first.setdefault((key.tag, key.value), key)
                if seen is not key:
                    raise _Refused(
                        key.start_mark,
                        self._field(key.value),
                        f"'{key.value}' is given twice (first on line {seen.start_mark.line + 1})",
                        "keep one of the two and delete the other",
                    )
        return node

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        """A date, or the text as written if it is none (2026-02-30): the model then refuses
        it with its field and line, where PyYAML raised a bare ValueError."""
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            return self.construct_scalar(node)


_ConfigLoader.add_constructor("tag:yaml.org,2002:timestamp", _ConfigLoader.construct_yaml_timestamp)


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file, returning the data and its node tree (for line numbers)."""
    if not path.is_file():
        raise ConfigError(
            f"{path}: file not found (fix: check the path, or copy config/municipalities/eksempel-kommune.yaml)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text at byte {exc.start} (fix: save the file as UTF-8)"
        ) from None
    loader = _ConfigLoader(text)
    try:
        root = loader.get_single_node()
        return (None if root is None else loader.construct_document(root)), root
    except _Refused as exc:
        raise ConfigError(
            f"{path}:{exc.line}: {exc.field}: {exc.problem} (fix: {exc.fix})"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(
            f"{where}: {problem} (fix: check indentation and quotes around this line)"
        ) from None
    finally:
        loader.dispose()


# The old `payment:` block's fields and where each lives now (decisions, tasks/decisions.py).
OLD_PAYMENT_FIELDS = {
    "self_service": "decisions.new_debts.portal (name, url, login: mitid | nemid | none)",
    "self_service.requires_mitid": "decisions.new_debts.portal.login (mitid | none)",
    "invoices": "decisions.new_debts.invoice (digital_post, sent, above_kr)",
    "invoices.payment_days": "decisions.new_debts.payment_days (leave it out if none is set)",
    "paper_invoice": "decisions.without_mitid.paper_invoice",
    "bank_transfer": "decisions.payment_methods: - method: netbank",
    "betalingsservice": "decisions.payment_methods: - method: betalingsservice",
    "borgerservice": "decisions.payment_methods: - method: cash_borgerservice",
    "old_debts.payable_at_library": (
        "decisions.old_debts.payable (until | open_ended | no) and old_debts.where "
        "(library_counter | library_website | municipality)"
    ),
    "old_debts.until": "decisions.old_debts.until",
    "library_pages_show": "decisions.routing.account_page_shows (old_only | all)",
    "reminder_fee_kr": "decisions.new_debts.reminder_fee_kr",
}


def _old_payment_block(path: Path, data: dict[str, Any], root: yaml.Node | None) -> None:
    """A config written for the model before `decisions:`: name each old field and its new home."""
    payment = data.get("payment")
    if payment is None:
        return
    line = _node_line(root, ("payment",))
    where = f"{path}:{line}" if line else str(path)
    problems = []
    for dotted, new in OLD_PAYMENT_FIELDS.items():
        node: Any = payment
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            field_line = _node_line(root, ("payment", *dotted.split(".")))
            at = f"{path}:{field_line}" if field_line else str(path)
            problems.append(f"{at}: payment.{dotted}: now {new}")
    raise ConfigError(
        f"{where}: payment: this config is written for the old model; the payment decisions "
        "are now under `decisions:` (fix: move each field below to its new name, see "
        "config/municipalities/eksempel-kommune.yaml)",
        problems,
    )


def load_model(path: Path, model: type[M]) -> M:
    """Load one YAML file into `model`, or raise a ConfigError listing every problem."""
    data, root = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of 'key: value' lines at the top level")
    if model.__name__ == "MunicipalityConfig":
        _old_payment_block(path, data, root)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(e, path, root, model) for e in exc.errors()]
        raise ConfigError(
            f"{path}: {len(problems)} problem(s) in {model.__name__}", problems
        ) from None


def load_card(card_id_or_path: str | Path) -> TaskCard:
    """Load a task card by id (from config/cards/) or by path."""
    path = Path(card_id_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CARDS_DIR / f"{card_id_or_path}.yaml"
    return load_model(path, TaskCard)


def load_municipality(path: str | Path) -> MunicipalityConfig:
    """Load and validate a municipality config, including the card it refers to."""
    path = Path(path)
    config = load_model(path, MunicipalityConfig)
    try:
        load_card(config.card)
    except ConfigError as exc:
        raise ConfigError(
            f"{path}: card '{config.card}' could not be loaded (fix: use a card id from {CARDS_DIR})",
            [str(exc)],
        ) from None
    return config


def resolve_relative(config_path: Path, file: str) -> Path:
    """Resolve a file named in a config relative to that config's folder."""
    candidate = Path(file)
    return candidate if candidate.is_absolute() else (config_path.parent / candidate)
