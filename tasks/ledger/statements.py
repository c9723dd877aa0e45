"""Conditions and sources the ledger's statements share: keys and ids as one bound parameter each."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import BigInteger, ColumnElement, Text, any_, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import FromClause

from tasks.ledger.schema import deliveries
from tasks.speed import ledger_sql

# Keys per SQL statement: large enough that 1M keys take 20 statements, small enough that one
# statement's parameter (a JSON text or an array) stays a few MB.
CHUNK = 50_000
# Joins keys into one PostgreSQL parameter; no key from recipient_key can contain it.
_SEPARATOR = "\x1f"
_c = deliveries.c
_T = TypeVar("_T")


def chunks(keys: Iterable[_T], size: int = CHUNK) -> Iterator[list[_T]]:
    """`keys` in lists of up to `size`, one statement's worth each."""
    it = iter(keys)
    while chunk := list(islice(it, size)):
        yield chunk


def chunks_of_parts(
    parts: Iterable[Sequence[str]], seen: list[str], size: int = CHUNK
) -> Iterator[list[str]]:
    """`chunks` of each part in turn, as the parts arrive; `seen` collects every key."""
    for part in parts:
        seen.extend(part)
        yield from chunks(part, size)


class Statements:
    """The conditions of one dialect: PostgreSQL arrays, or SQLite's json_each."""

    def __init__(self, *, postgres: bool) -> None:
        self.postgres = postgres

    def by_keys(self, stream: int, keys: list[str]) -> ColumnElement[bool]:
        """Rows of these keys, found through the unique index, with one bound parameter."""
        if self.postgres:
            # `= ANY(array)` is an index condition whatever the statistics say; a fresh table
            # without them would otherwise get a plan that scans the campaign once per key.
            in_keys = _c.recipient_key == any_(self.pg_array(keys, Text))
        else:
            in_keys = _c.recipient_key.in_(select(self.values(keys).c.value))
        return (_c.stream == stream) & in_keys

    def by_ids(self, ids: list[int]) -> ColumnElement[bool]:
        """Rows of these ids: one range when they are consecutive (the usual batch)."""
        low, high = min(ids), max(ids)
        if high - low + 1 == len(set(ids)):
            # The usual case (a batch of a key-ordered audience): one range scan, no id list.
            return _c.id.between(low, high)
        if self.postgres:
            return _c.id == any_(self.pg_array(ids, BigInteger))
        return _c.id.in_(select(self.values(ids).c.value))

    def values(self, values: list[str] | list[int]) -> FromClause:
        """`values` as a table with a column `value` (and on SQLite `key`, its position), sent
        as one parameter (not one per value)."""
        if self.postgres:
            return func.unnest(self.pg_array(values, Text)).table_valued("value").render_derived()
        strings = bool(values) and isinstance(values[0], str)
        text = ledger_sql.json_array(values) if strings else json.dumps(values)  # type: ignore[arg-type]
        return func.json_each(bindparam("values_json", text)).table_valued("value", "key")

    @staticmethod
    def pg_array(values: list[str] | list[int], item: type[Text] | type[BigInteger]) -> Any:
        """A PostgreSQL array from one text parameter, split by the server.

        psycopg's encoding of a Python list costs more than the UPDATE it feeds (~8 us a key).
        """
        joined = _SEPARATOR.join(map(str, values))
        if values and joined.count(_SEPARATOR) != len(values) - 1:
            raise ValueError("a recipient key contains the ASCII unit separator (0x1f)")
        array = func.string_to_array(bindparam("values_text", joined, type_=Text), _SEPARATOR)
        return cast(array, ARRAY(item()))
