"""A compiled read of JSON lines for any key map (nested paths such as ``request.headers["User-Agent"][0]``,
keys in any order: Caddy's log, most app loggers'), where the compiled loops are loaded; it goes before
the template read (:mod:`pipeline.formats.jsonl_template`), which is slower where both take a chunk.

One pass over each line's bytes (:func:`pipeline.formats.kernels_json.json_paths`) checks that it is
strict JSON and finds each wanted value's span, following the key map's paths as a trie. The read gives
what Arrow's JSON reader gives the key map (:func:`pipeline.formats.jsonl._read`): a string column per
path, typed afterwards. So it takes a chunk only where Arrow's reader would read the whole chunk in one
go: every object-shaped line strict JSON, no object with a key twice, every key (lists' elements as
one) of one kind of value on all lines (null goes with any). Else, or where a wanted value is one it
does not read (an object or a list, a number with an exponent), the chunk is the template's or Arrow's.
A wanted string with an escape is decoded (``json.loads``, as Arrow's reader decodes it) and put after
the chunk, where its span points.

Arrow types a column by all its values: a column whose every value is an ISO 8601 time becomes a
timestamp, a number column with a fraction anywhere becomes float64. Those columns are typed by
Arrow's reader from their raw values (:func:`pipeline.formats.jsonl_template._again`), as the template
read does, but for paths read only as numbers (a duration, the time), whose text gives the same number;
every other column is its values' text, which the engine types where it is in the chunk. An absent value
(or ``null``) is the span of a ``-`` put after the chunk: the log's empty value, which is what the Arrow
read's absent value is typed as (``jsonl._typed``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.formats import compiled, jsonl_template
from pipeline.formats.compiled import KERNELS
from pipeline.formats.jsonpath import KeyPath
from pipeline.formats.vector import BoolArray, ByteArray, IntArray

_TABLE = 1 << 13  # slots of the kernel's tables of keys (a chunk with more is given up)
# What a wanted path holds on a line (the kernel's ``shapes``; ESCAPED: a string with an escape)
ABSENT, STRING, INT, FLOAT, BOOL, NULL, ESCAPED = 0, 1, 2, 3, 4, 5, 6
# What a line or the chunk gives the kernel's read up for (the chunk is then the template's or Arrow's)
DONE, INVALID, CONFLICT, DUPLICATE, UNREAD, DEEP, FULL = 0, 1, 2, 3, 4, 5, 6
# The kinds of value a key (its type path: lists' elements as one) holds, as bits
K_BOOL, K_NUMBER, K_FLOAT, K_STRING, K_OBJECT, K_LIST = 1, 2, 4, 8, 16, 32
LITERAL = -2  # a trie node of a dotted path's top-level key: its presence gives the chunk up
# The hashes of keys and type paths, here and in the kernel: FNV-1a, and a list's element in a type path
PRIME, OFFSET, ITEM = 0x100000001B3, 0xCBF29CE484222325, 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class Trie:
    """Key paths as the kernel's trie (:func:`pipeline.formats.kernels_json.json_paths`): node 0 the
    root; ``children``, a table of each node's children by key or list index (``kernels_json._child``);
    ``out``, the path each node ends (-1 none, -2 a dotted path's top-level key, whose presence gives
    the chunk up). ``same``: for each path, the path read in its place (an earlier one with the same
    steps, or itself); ``listed``: whether it steps into a list."""

    children: Any
    out: IntArray
    same: tuple[int, ...]
    listed: tuple[bool, ...]


def _mix(h: int, x: int) -> int:
    return (((h ^ x) * PRIME) & _MASK) | 1


def _key_hash(key: bytes) -> int:
    """FNV-1a of a key's bytes, as the kernel hashes a key it reads."""
    h = OFFSET
    for c in key:
        h = ((h ^ c) * PRIME) & _MASK
    return h


@lru_cache(maxsize=64)
def trie(paths: tuple[KeyPath, ...]) -> Trie | None:
    """The trie of ``paths``; None where a dotted path's top-level key is also a wanted path."""
    edges: dict[tuple[int, str | int], int] = {}
    out = [-1]

    def child(node: int, step: str | int) -> int:
        if (node, step) not in edges:
            edges[(node, step)] = len(out)
            out.append(-1)
        return edges[(node, step)]

    same = []
    for p, path in enumerate(paths):
        node = 0
        for step in path.steps:
            node = child(node, step)
        if out[node] < 0:
            out[node] = p
        same.append(out[node])
    for path in paths:
        if path.literal is not None:
            node = child(0, path.literal)
            if out[node] >= 0:
                return None
            out[node] = LITERAL
    size = 1 << max(4, (4 * len(edges)).bit_length())  # at most a quarter full: short probes
    children = np.zeros((size, 2), dtype=np.uint64)
    for (node, step), kid in edges.items():
        h = _mix(node, _key_hash(step.encode()) if isinstance(step, str) else _mix(ITEM, step))
        s = (h >> 40) & (size - 1)
        while children[s, 0]:
            s = (s + 1) & (size - 1)
        children[s] = (h, kid)
    return Trie(
        children,
        np.array(out, dtype=np.int64),
        tuple(same),
        tuple(any(isinstance(s, int) for s in path.steps) for path in paths),
    )


def read(
    bounds: jsonl_template.Bounds,
    shape: BoolArray,
    paths: tuple[KeyPath, ...],
    numeric: frozenset[str],
    arrow: jsonl_template.ArrowReads,
) -> jsonl_template.Quick | None:
    """Each path's values of the lines ``shape`` (as :func:`pipeline.formats.jsonl._read` gives them),
    or None where the compiled loops are not loaded, or the chunk is Arrow's (see the module's text).
    ``numeric``: paths whose numbers are read as numbers only, which Arrow's float64 (a fraction in the
    column) gives the same value as their text."""
    t = trie(paths) if compiled.loaded() else None
    if t is None:
        return None
    kernels = sys.modules[KERNELS].kernels_json
    lines = np.flatnonzero(shape)
    count, n = len(paths), len(lines)
    spans = np.zeros((count, 2, n), dtype=np.int64)
    shapes = np.zeros((count, n), dtype=np.int8)
    path_type = np.zeros(count, dtype=np.uint64)
    table = np.zeros((_TABLE, 3), dtype=np.uint64)  # type paths: hash, kinds, the last object with it
    code, _ = kernels.json_paths(
        bounds.a, bounds.starts, bounds.ends, lines, t.children, t.out, spans, shapes, path_type, table,
    )  # fmt: skip
    if code != DONE:
        return None
    same = list(t.same)
    spans, shapes = spans[same], shapes[same]
    present = (shapes != ABSENT) & (shapes != NULL)
    dash = len(bounds.data)  # an absent value's span: the "-" after the chunk (see the module's text)
    text, extra = _decoded(bounds, spans, shapes, dash + 1)
    strings, floats = ((shapes == STRING) | (shapes == ESCAPED)).any(axis=1), (shapes == FLOAT).any(axis=1)
    texts: list[IntArray | None] = list(np.where(present[:, None, :], text, np.array([[dash], [dash + 1]])))
    whole = bytes(bounds.data) + b"-" + extra if extra else None  # the typing's text (jsonl._Columns)
    a = bounds.a if whole is None else np.frombuffer(whole, dtype=np.uint8)
    presents: list[BoolArray | None] = list(present)
    columns: list[pa.Array | None] = [None] * count
    buf = pa.py_buffer(bounds.data)
    for p in range(count):
        lo, hi, has = spans[p, 0], spans[p, 1], present[p]
        if t.listed[p] and not floats[p] and has.any():  # a list's elements are one column to Arrow
            floats[p] = int(table[table[:, 0] == path_type[t.same[p]], 1].max(initial=0)) & K_FLOAT
        if strings[p] and _times(a, text[p, 0][has], text[p, 1][has]):
            raw = (lo - 1, hi + 1)  # ISO 8601 times, which Arrow's reader makes a timestamp column
        elif floats[p] and paths[p].text not in numeric:
            raw = (lo, hi)  # a number column with a fraction somewhere: Arrow's float64
        else:
            continue
        if t.listed[p]:  # Arrow types a list's elements together: the others may type them otherwise
            return None
        texts[p] = None
        columns[p] = _Again(jsonl_template._strings(buf, raw[0][has], raw[1][has]), has, arrow)
    return jsonl_template.Quick(columns, texts, presents, whole)


class _Again:
    """A column typed by Arrow's reader from its raw values (``jsonl_template._again``), made where it is
    asked for: the time's later keys are not, where its first has a value on every line (Traefik's
    ``time`` after ``StartUTC``). The values are strings (their escapes of no surrogate) and numbers of the
    kernel's grammar, which Arrow's reader reads in one go."""

    def __init__(self, raw: pa.Array, present: BoolArray, arrow: jsonl_template.ArrowReads):
        self.raw, self.present, self.arrow = raw, present, arrow

    def __call__(self) -> pa.Array:
        again = jsonl_template._again(self.raw, self.arrow)
        if again is None:
            raise ValueError("Arrow's reader refused values the compiled JSON read took")
        return _scatter(again[0], self.present)


def _decoded(bounds: jsonl_template.Bounds, spans: IntArray, shapes: Any, at: int) -> tuple[IntArray, bytes]:
    """The spans of the values' text: a string with an escape (``\\"``, ``\\u00e9``, Go's ``\\u0026``)
    decoded and put after the chunk, from ``at`` on (``extra``: those bytes); the others where they are."""
    escaped = np.argwhere(shapes == ESCAPED)
    if not len(escaped):
        return spans, b""
    p, j = escaped.T
    lo, hi = spans[p, 0, j].tolist(), spans[p, 1, j].tolist()
    raw = [bytes(bounds.data[x - 1 : y + 1]) for x, y in zip(lo, hi, strict=True)]  # with their quotes
    values = [v.encode() for v in json.loads(b"[" + b",".join(raw) + b"]")]  # one parse for all of them
    ends = at + np.cumsum([len(v) for v in values], dtype=np.int64)
    text = spans.copy()
    text[p, 1, j] = ends
    text[p, 0, j] = ends - [len(v) for v in values]
    return text, b"".join(values)


def _times(a: ByteArray, lo: IntArray, hi: IntArray) -> bool:
    """Whether every value could be an ISO 8601 time (``jsonl_template._maybe_times``): the first
    value's dashes looked at first, which rules out most columns."""
    if not len(lo) or hi[0] - lo[0] < 10 or a[lo[0] + 4] != 45 or a[lo[0] + 7] != 45:
        return False
    return bool(jsonl_template._maybe_times(a, lo[None, :], hi[None, :])[0])


def _scatter(column: pa.Array, present: BoolArray) -> pa.Array:
    """``column``'s values at the rows ``present``, null elsewhere."""
    at = np.cumsum(present) - 1
    return column.take(pa.array(at, mask=~present))
