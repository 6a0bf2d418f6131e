"""A quick read of JSON lines that one writer wrote alike: every line the same keys in the same order,
each value of the same shape (nginx ``escape=json`` templates, Caddy, Traefik, most app loggers).

From the first lines of a chunk that are flat JSON objects, the key order and each value's shape (a
quoted string, a bare number, ``true``/``false``, ``null``) make a template: the literal text between
the values, split by the engine's first-occurrence split (:func:`pipeline.formats.compiled.split`
where the compiled loops are loaded, else ``engine._fast_spans``). A line the template takes is then a
valid JSON object with exactly the template's keys, its strings without escapes (the split takes only
printable ASCII without a backslash) and its bare values checked token by token.

The read gives what Arrow's JSON reader gives the key map (:func:`pipeline.formats.jsonl._read`): a
string column per key path, typed afterwards as before. Arrow types a column by all its values: a
string column whose every value is an ISO 8601 time becomes a timestamp, a number column with a
fraction anywhere becomes float64. Where that can happen (the values of a string key that could all
be times, a number key with a fraction or ``-0``), the key's raw values are read by Arrow's reader
on their own, which types them as it would in the whole line; elsewhere the value is its text. Where
the template took every line of the chunk, those texts are typed where they are in the chunk
(:func:`pipeline.formats.jsonl._units`: the engine's typing over the template's spans), without a
string column of their own.

The lines the template does not take (another key order, a key missing or added, an escape, a byte
beyond ASCII, a nested value, a number in exponent form) are read by Arrow's reader apart, where that
gives them what the whole chunk's read gives (:func:`_others`); else Arrow reads the whole chunk. Arrow
types each column by all the lines it reads at once and stops at a line whose value changes type, so a
line read apart could be typed apart: the check is that Arrow reads those lines in one go, that no
value of them is an object or a list, and that each key's values there are of the type the template's
lines give it (or of none).

Key maps of top-level keys only: a nested path (``request.headers["User-Agent"][0]``) is the compiled
read's (:mod:`pipeline.formats.jsonl_nested`), which also takes a chunk before the template where the
compiled loops are loaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.arrays import int64_array, repeat_string
from pipeline.formats import compiled, compiled_types, jsonpath
from pipeline.formats.spec import TEMPLATE, Field, FormatPlan
from pipeline.formats.vector import BoolArray, ByteArray, IntArray, fast_candidates, string_columns, windows

STRING, NUMBER, BOOL, NULL = "string", "number", "bool", "null"

# A flat object's parts as one writer writes them (spaces allowed where JSON allows whitespace; a tab
# or a line end there is a special byte the split does not take). A key or a string value: printable
# ASCII without a quote or a backslash.
_KEY = re.compile(rb' *"([ !#-\[\]-~]*)" *: *')
_VALUE = re.compile(rb'"[ !#-\[\]-~]*"|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null')
_AFTER = re.compile(rb" *([,}])")

# What a bare value of each shape must be for its line to be taken: a number without an exponent
# that Arrow reads exactly (an int of at most 18 digits fits int64; one past int64 would make the
# column float64), or the shape's words (:func:`tokens`).
_MAX_INT_DIGITS = 18
_WORDS = {BOOL: (b"true", b"false"), NULL: (b"null",)}
_FIRST_LINES = 4  # object lines of a chunk tried, in order, for a template
_VALUE_KEY = jsonpath.parse("v")  # the one key of the lines a key's raw values are read again as


@dataclass(frozen=True)
class Template:
    """The keys of a writer's lines in their order, each value's shape, and the literal text around
    the values as a plan for the engine's split (one string field per key; a quoted value's field is
    the text between its quotes)."""

    keys: tuple[str, ...]
    shapes: tuple[str, ...]
    plan: FormatPlan


def infer(line: bytes) -> Template | None:
    """The template of ``line`` (without its line end), or None where it is not a flat JSON object of
    printable ASCII without escapes, with at least one key and no key twice."""
    if not line.startswith(b"{"):
        return None
    literals: list[bytes] = []
    keys: list[str] = []
    shapes: list[str] = []
    pos, cut = 1, 0
    while True:
        key = _KEY.match(line, pos)
        value = _VALUE.match(line, key.end()) if key else None
        after = _AFTER.match(line, value.end()) if value else None
        if key is None or value is None or after is None:
            return None
        token = value.group()
        quoted = token.startswith(b'"')
        literals.append(line[cut : value.start() + quoted])
        cut = value.end() - quoted
        keys.append(key.group(1).decode("ascii"))
        shapes.append(_shape(token))
        pos = after.end()
        if after.group(1) == b"}":
            break
    if pos != len(line) or len(set(keys)) != len(keys):
        return None
    literals.append(line[cut:])
    fields = tuple(
        Field(k, "string", f"v{n}", s == STRING) for n, (k, s) in enumerate(zip(keys, shapes, strict=True))
    )
    plan = FormatPlan("jsonl", "", TEMPLATE, "json", tuple(literals), fields)
    return Template(tuple(keys), tuple(shapes), plan)


def _shape(token: bytes) -> str:
    if token.startswith(b'"'):
        return STRING
    if token in (b"true", b"false"):
        return BOOL
    return NULL if token == b"null" else NUMBER


def top_keys(paths: Sequence[jsonpath.KeyPath]) -> tuple[str, ...] | None:
    """Each path's top-level key, or None where a path goes deeper (nested values are Arrow's)."""
    if not all(len(p.steps) == 1 and isinstance(p.steps[0], str) for p in paths):
        return None
    return tuple(str(p.steps[0]) for p in paths)


@dataclass(frozen=True)
class Bounds:
    """A chunk's bytes and line bounds (:func:`~pipeline.formats.vector.line_bounds`)."""

    data: bytes | memoryview
    a: ByteArray
    starts: IntArray
    ends: IntArray
    newlines: IntArray
    crlf: BoolArray


@dataclass(frozen=True)
class Quick:
    """Each key's string column (as Arrow's read gives it) of the lines that could be objects, and,
    where the template took every such line, each key's spans in the chunk (start and end rows, one
    column a line) when its column is that text: the engine types those spans as they are, and
    the column (None) is made only where it is asked for (:func:`text_column`)."""

    columns: list[pa.Array | Callable[[], pa.Array] | None]  # a callable: a column made where asked for
    spans: list[IntArray | None]
    present: list[BoolArray | None]  # the lines a key's spans or callable have a value on (None: every line)
    # what the spans are in where not the chunk alone: the chunk, a "-" and decoded values (jsonl_nested)
    text: bytes | None = None


def read(
    bounds: Bounds, shape: BoolArray, keys: tuple[str, ...], max_line_bytes: int, arrow: ArrowReads
) -> Quick | None:
    """Each key's values (as :func:`pipeline.formats.jsonl._read` gives them) of the lines ``shape``
    (those that could be JSON objects): the template's lines by the template, the others by Arrow's
    reader apart. None (then Arrow reads the whole chunk) where no template takes a line, or where
    the others could read otherwise in the whole chunk (:func:`_others`)."""
    lines = np.flatnonzero(shape)
    template = None
    for i in lines[:_FIRST_LINES]:
        template = infer(bytes(bounds.data[bounds.starts[i] : bounds.ends[i]]))
        if template is not None:
            break
    if template is None:
        return None
    taken, spans = _split(template.plan, bounds, max_line_bytes)
    buf = pa.py_buffer(bounds.data)
    fits = shape[taken]  # every line the split takes is printable ASCII: one that could be an object
    bare = [k for k, s in enumerate(template.shapes) if s != STRING]
    good, plain = tokens(bounds.a, spans, bare, [template.shapes[k] for k in bare])
    fits &= good.all(axis=0)
    taken, spans, plain = taken[fits], spans[:, :, fits], plain[:, fits]
    if len(taken) == 0:
        return None
    ints = {
        template.keys[k] for k, p in zip(bare, plain, strict=True) if template.shapes[k] == NUMBER and p.all()
    }
    quick = _columns(template, bounds, buf, spans, keys, ints, arrow)
    if quick is None or len(taken) == len(lines):
        return None if quick is None else Quick(quick[0], quick[2], [None] * len(keys))
    others = np.setdiff1d(lines, taken, assume_unique=True)
    rest = _others(template, quick[1], bounds, others, keys, arrow)
    if rest is None:
        return None
    order = int64_array(np.argsort(np.concatenate([taken, others]), kind="stable"))
    ours = [_strings(buf, *t) if c is None and t is not None else c for c, t in zip(*quick[::2], strict=True)]
    columns: list[pa.Array | None] = [
        pa.concat_arrays([a, b]).take(order) for a, b in zip(ours, rest, strict=True)
    ]
    return Quick(columns, [None] * len(keys), [None] * len(keys))


@dataclass(frozen=True)
class ArrowReads:
    """What the quick read needs of the Arrow read (:mod:`pipeline.formats.jsonl`): lines read into
    a table, a table's key paths as string columns, and the exceptions that stop the reader."""

    table: Callable[[bytes | memoryview, int], pa.Table]
    columns: Callable[[pa.Table, tuple[jsonpath.KeyPath, ...]], list[pa.Array]]
    stops: tuple[type[Exception], ...]


def _others(
    template: Template,
    types: list[pa.DataType],
    bounds: Bounds,
    others: IntArray,
    keys: tuple[str, ...],
    arrow: ArrowReads,
) -> list[pa.Array] | None:
    """The values of the lines the template does not take, read by Arrow apart, where that gives
    what the whole chunk's read gives them and the template's lines: Arrow reads them in one go (no
    malformed line, no value that changes type among them), no value is an object or a list, each
    template key's values are of a type its shape joins without a stop, and each key's values are of
    the type the template's lines give it (or of none: absent or null). Else None."""
    data = b"".join(bytes(bounds.data[bounds.starts[i] : bounds.ends[i]]) + b"\n" for i in others)
    try:
        table = arrow.table(data, len(others))
    except arrow.stops:
        return None
    found = {f.name: f.type for f in table.schema}
    if any(pa.types.is_nested(t) for t in found.values()):
        return None
    for key, shape in zip(template.keys, template.shapes, strict=True):
        if key in found and not _joins(shape, found[key]):
            return None
    for key, typ in zip(keys, types, strict=True):
        other = found.get(key, pa.null())
        if not (pa.types.is_null(typ) or pa.types.is_null(other) or typ == other):
            return None
    return arrow.columns(table, tuple(jsonpath.KeyPath(k, (k,)) for k in keys))


def _joins(shape: str, typ: pa.DataType) -> bool:
    """Whether Arrow's reader reads a column of ``typ`` values and ``shape`` values in one go."""
    if shape == NULL or pa.types.is_null(typ):
        return True
    if shape == STRING:
        return bool(pa.types.is_string(typ) or pa.types.is_timestamp(typ))
    if shape == NUMBER:
        return bool(pa.types.is_int64(typ) or pa.types.is_float64(typ))
    return bool(pa.types.is_boolean(typ))


def _split(plan: FormatPlan, bounds: Bounds, max_line_bytes: int) -> tuple[IntArray, IntArray]:
    """The lines the template takes and their spans, by the compiled split where it is loaded."""
    a = bounds.a
    if compiled.loaded():
        starts, ends, _, taken, spans = compiled.split(plan, a, max_line_bytes)
        if not (np.array_equal(starts, bounds.starts) and np.array_equal(ends, bounds.ends)):
            raise RuntimeError("the compiled split's line bounds differ from the chunk's")
        return taken, spans
    from pipeline.formats import engine

    too_long = (bounds.ends - bounds.starts) > max_line_bytes
    cand = fast_candidates(a, bounds.starts, bounds.newlines, bounds.crlf) & ~too_long
    return engine._fast_spans(plan, a, engine._Positions(a), bounds.starts, bounds.ends, cand)


def _strings(buf: pa.Buffer, lo: IntArray, hi: IntArray, valid: BoolArray | None = None) -> pa.Array:
    """The string column of the spans ``lo`` to ``hi`` of the chunk ``buf`` (null where not ``valid``),
    by the compiled gather where it is loaded (which refuses a span outside the chunk)."""
    if compiled.loaded():
        a = np.frombuffer(buf, dtype=np.uint8)
        (column,) = compiled_types.string_columns(a, lo[None, :], hi[None, :], np.arange(len(lo)), [valid])
    else:
        (column,) = string_columns(buf, lo[None, :], hi[None, :], np.arange(len(lo)), [valid])
    return column


def tokens(
    a: ByteArray, spans: IntArray, fields: list[int], shapes: list[str]
) -> tuple[BoolArray, BoolArray]:
    """For each of ``fields`` (rows of ``spans``: field, start/end, line) of each line: whether its
    span is a bare value of its shape that the template takes (a number ``-?(0|[1-9][0-9]{0,17})
    (\\.[0-9]+)?``, ``true``/``false``, ``null``), and whether it is a number that Arrow writes back
    as it is (an int, not ``-0``). One pass over the bytes of all the fields' spans."""
    n = spans.shape[2]
    good, plain = np.zeros((len(fields), n), dtype=bool), np.zeros((len(fields), n), dtype=bool)
    numbers = [r for r, s in enumerate(shapes) if s == NUMBER]
    for r, s in enumerate(shapes):
        if s != NUMBER:
            good[r] = _words(a, spans[fields[r], 0], spans[fields[r], 1], _WORDS[s])
    if numbers:
        rows = [fields[r] for r in numbers]
        lo, hi = spans[rows, 0].ravel(), spans[rows, 1].ravel()
        number, integer = _numbers(a, lo, hi)
        good[numbers], plain[numbers] = number.reshape(len(rows), n), integer.reshape(len(rows), n)
    return good, plain


def _words(a: ByteArray, lo: IntArray, hi: IntArray, words: tuple[bytes, ...]) -> BoolArray:
    """Whether each span is one of ``words``."""
    size = hi - lo
    found = np.zeros(len(lo), dtype=bool)
    for word in words:
        same = size == len(word)  # such a span lies within the chunk: its window is not clipped
        rows = windows(a, lo, len(word))
        found |= same & (rows == np.frombuffer(word, dtype=np.uint8)).all(axis=1)
    return found


def _numbers(a: ByteArray, lo: IntArray, hi: IntArray) -> tuple[BoolArray, BoolArray]:
    """Whether each span is a number the template takes (see :func:`tokens`), and an int but ``-0``."""
    size = np.maximum(hi - lo, 0)
    ends = np.cumsum(size)
    which = np.repeat(np.arange(len(lo)), size)
    pos = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - size, size) + np.repeat(lo, size)
    b = a[pos]
    digit, dot, minus = (b - 48) < 10, b == 46, b == 45
    count = len(lo)
    digits = np.bincount(which[digit], minlength=count)
    dots = np.bincount(which[dot], minlength=count)
    minuses = np.bincount(which[minus], minlength=count)
    first = a.take(lo, mode="clip")
    neg = (size > 0) & (first == 45)
    dot_at = hi.copy()  # where the int part ends: the one dot, or the span's end
    dot_at[which[dot]] = pos[dot]
    start = lo + neg
    int_len = dot_at - start
    lead = a.take(start, mode="clip")
    number = (
        (digits + dots + minuses == size)
        & (minuses == neg)
        & (dots <= 1)
        & (int_len >= 1)
        & (int_len <= _MAX_INT_DIGITS)
        & ((int_len == 1) | (lead != 48))
        & ((dots == 0) | (hi - dot_at >= 2))
    )
    return number, number & (dots == 0) & ~(neg & (size == 2) & (lead == 48))


def _columns(
    template: Template,
    bounds: Bounds,
    buf: pa.Buffer,
    spans: IntArray,
    keys: tuple[str, ...],
    ints: set[str],
    arrow: ArrowReads,
) -> tuple[list[pa.Array | None], list[pa.DataType], list[IntArray | None]] | None:
    """The string column of each key: its text where Arrow's reader would keep it, else its raw values
    read by Arrow; null for a key the template does not have. The type Arrow's reader gives each key's
    values, and the spans of the keys whose column is their text (their column: None, made where asked)."""
    n = spans.shape[2]
    out: list[pa.Array | None] = []
    types: list[pa.DataType] = []
    texts: list[IntArray | None] = []
    named = [template.keys.index(key) for key in keys if key in template.keys]
    strings = [k for k in named if template.shapes[k] == STRING]
    times = dict(zip(strings, _maybe_times(bounds.a, spans[strings, 0], spans[strings, 1]), strict=True))
    for key in keys:
        k = template.keys.index(key) if key in template.keys else -1
        shape = template.shapes[k] if k >= 0 else NULL
        lo, hi = spans[k, 0], spans[k, 1]
        texts.append(None if shape == NULL else spans[k])
        if shape == NULL:
            out.append(pa.nulls(n, pa.string()))
            types.append(pa.null())
        elif shape == BOOL or key in ints or (shape == STRING and not times[k]):
            out.append(None)
            types.append({BOOL: pa.bool_(), NUMBER: pa.int64()}.get(shape, pa.string()))
        else:
            texts[-1] = None
            quote = int(shape == STRING)
            again = _again(_strings(buf, lo - quote, hi + quote), arrow)
            if again is None:
                return None
            out.append(again[0])
            types.append(again[1])
    return out, types, texts


def text_column(data: bytes | memoryview, span: IntArray, present: BoolArray | None = None) -> pa.Array:
    """The string column of a key's spans (start and end rows) in the chunk ``data``, null where not
    ``present``."""
    return _strings(pa.py_buffer(data), span[0], span[1], present)


def _maybe_times(a: ByteArray, lo: IntArray, hi: IntArray) -> BoolArray:
    """For each row of spans (keys, lines): whether every value could be an ISO 8601 time
    (``YYYY-MM-DD...``, which Arrow's reader makes a timestamp column when every value of the column
    is one). Arrow's reader types such strings as timestamps in seconds, which take no fraction: one
    value with a dot after the seconds (``YYYY-MM-DDThh:mm:ss.``) keeps the column strings."""
    size = hi - lo
    long = (size >= 10).all(axis=1)  # a shorter span's bytes below are clipped reads, ruled out here
    dashes = ((a.take(lo + 4, mode="clip") == 45) & (a.take(lo + 7, mode="clip") == 45)).all(axis=1)
    fraction = ((size > 19) & (a.take(lo + 19, mode="clip") == 46)).any(axis=1)
    found: BoolArray = long & dashes & ~fraction
    return found


def _again(raw: pa.Array, arrow: ArrowReads) -> tuple[pa.Array, pa.DataType] | None:
    """Raw JSON values read by Arrow's reader as ``{"v": value}`` lines: typed as in the whole lines,
    since the reader types each column by that column's values alone. The strings, and that type."""
    import pyarrow.compute as pc

    n = len(raw)
    joined = pc.binary_join_element_wise(
        repeat_string('{"v":', n), raw, repeat_string("}\n", n), repeat_string("", n)
    )
    _, offsets, data = joined.buffers()
    first, last = np.frombuffer(offsets, dtype=np.int32, count=n + 1 + joined.offset)[[joined.offset, -1]]
    try:
        table = arrow.table(memoryview(data)[first:last], n)
        (column,) = arrow.columns(table, (_VALUE_KEY,))
    except arrow.stops:
        return None  # read as a whole by Arrow, as any chunk the template does not take
    return column, table.schema.field("v").type


__all__ = ["ArrowReads", "Bounds", "Quick", "Template", "infer", "read", "text_column", "top_keys"]
