"""Key paths of JSON lines' key maps: ``request.remote_ip``, ``request.headers["User-Agent"][0]``.

A path is a key, then any number of ``.key``, ``["key"]`` and ``[N]`` steps:

- ``.key``: a key of an object, written as is; it holds no ``.``, ``[``, ``]`` or ``"``.
- ``["key"]``: any key, quoted as a JSON string (dots, brackets and escapes included); a path may
  start with one: ``["request.method"]`` is the top-level key ``request.method``.
- ``[N]``: the element ``N`` (0, 1, ...) of a list.

A step that finds nothing (a key the object lacks, an index past the list's end, a key of something
that is not an object, an index into something that is not a list) makes the value null, as an absent
key does: a path never rejects a line.

Some loggers write dotted names as one top-level key (``{"http.method": "GET"}``). So that a key map
written for those keeps its meaning, a path written without brackets whose whole text is a top-level
key of the line reads that key (where it has a value), and the nested path otherwise.

The values are found in Arrow's nested columns for a chunk that Arrow's JSON reader reads (struct
fields, list elements: vectorised, :func:`arrow_value`), and in ``json.loads``'s objects line by line
for one it stops in (:func:`record_value`); both give the same value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

Step = str | int
_NAME = re.compile(r'[^.\[\]"]+')
_INDEX = re.compile(r"\[(\d+)\]")


class PathError(ValueError):
    """A key path that does not parse; the message says where."""


@dataclass(frozen=True)
class KeyPath:
    """A parsed key path: its text as written, its steps, and the top-level key that the whole text
    names when it is written without brackets (see the module's text)."""

    text: str
    steps: tuple[Step, ...]

    @property
    def literal(self) -> str | None:
        """The whole text as one top-level key: for a dotted path written without brackets."""
        return self.text if len(self.steps) > 1 and "[" not in self.text else None


def parse(text: str) -> KeyPath:
    """The :class:`KeyPath` of ``text``; raises :class:`PathError` naming what is wrong and where."""
    if not text:
        raise PathError("an empty key")
    steps: list[Step] = []
    k = 0
    while k < len(text):
        if text[k] == "[":
            k = _bracket(text, k, steps)
            continue
        if steps:
            if text[k] != ".":
                raise PathError(f"expected '.' or '[' at character {k + 1} of {text!r}")
            k += 1
        m = _NAME.match(text, k)
        if m is None:
            raise PathError(
                f'expected a key at character {k + 1} of {text!r} (write a key holding . [ ] or " as ["key"])'
            )
        steps.append(m.group())
        k = m.end()
    return KeyPath(text, tuple(steps))


def _bracket(text: str, k: int, steps: list[Step]) -> int:
    """Read the ``[N]`` or ``["key"]`` step at ``k``; where it ends."""
    m = _INDEX.match(text, k)
    if m is not None:
        if not steps:
            raise PathError(f"{text!r} starts with a list index: start with the key of the list")
        steps.append(int(m.group(1)))
        return m.end()
    if not text.startswith('["', k):
        raise PathError(f'expected [N] or ["key"] at character {k + 1} of {text!r}')
    try:
        key, end = json.JSONDecoder().raw_decode(text, k + 1)
    except ValueError as exc:
        raise PathError(f'an unterminated ["key"] at character {k + 1} of {text!r}') from exc
    if not text.startswith("]", end):
        raise PathError(f"expected ']' at character {end + 1} of {text!r}")
    steps.append(key)
    return end + 1


# --- values in Python objects (json.loads) -------------------------------------------------------------


def record_value(record: dict[str, Any], path: KeyPath) -> Any:
    """The value at ``path`` in one line's object; None where a step finds nothing."""
    if path.literal is not None and record.get(path.literal) is not None:
        return record[path.literal]
    value: Any = record
    for step in path.steps:
        if isinstance(step, str):
            value = value.get(step) if isinstance(value, dict) else None
        else:
            value = value[step] if isinstance(value, list) and step < len(value) else None
        if value is None:
            return None
    return value


# --- values in Arrow's columns (pyarrow.json) ----------------------------------------------------------


def arrow_value(table: pa.Table, path: KeyPath) -> pa.Array:
    """The values at ``path`` in a table that Arrow's JSON reader made, one per row; null where a step
    finds nothing. Vectorised: struct fields and list elements of the whole column at once."""
    n = table.num_rows
    first = path.steps[0]
    assert isinstance(first, str)
    value = _top(table, first, n)
    for step in path.steps[1:]:
        value = _step(value, step, n)
    if path.literal is not None and path.literal in table.column_names:
        import pyarrow.compute as pc  # lazily: see pipeline.formats.vector

        literal = table.column(path.literal).combine_chunks()
        if value.type != literal.type:  # another type than the nested value's: the literal's rows first
            return _either(literal, value)
        return pc.coalesce(literal, value)
    return value


def _top(table: pa.Table, key: str, n: int) -> pa.Array:
    # Arrow keeps the last of a repeated key, as json.loads does
    matches = [i for i, name in enumerate(table.column_names) if name == key]
    return table.column(matches[-1]).combine_chunks() if matches else pa.nulls(n)


def _step(value: pa.Array, step: Step, n: int) -> pa.Array:
    import pyarrow.compute as pc

    if isinstance(step, str):
        if not pa.types.is_struct(value.type):
            return pa.nulls(n)
        names = [value.type.field(i).name for i in range(value.type.num_fields)]
        if step not in names:
            return pa.nulls(n)
        return pc.struct_field(value, [len(names) - 1 - names[::-1].index(step)])
    if not pa.types.is_list(value.type):
        return pa.nulls(n)
    lengths = pc.fill_null(pc.list_value_length(value), 0).to_numpy(zero_copy_only=False)
    offsets = value.offsets.to_numpy()[: len(value)]
    present = lengths > step
    at = np.where(present, offsets + step, 0)
    return value.values.take(pa.array(at, mask=~present))


def _either(first: pa.Array, second: pa.Array) -> pa.Array:
    """``first`` where it has a value, ``second`` elsewhere, for two columns of different types (a
    struct's literal key beside its nested path): the rows of ``first`` with a value go the slow way."""
    has = first.is_valid().to_numpy(zero_copy_only=False)
    if not has.any():
        return second
    if has.all():
        return first
    raise ValueError("a dotted key is a top-level key in some lines and a nested path in others")
