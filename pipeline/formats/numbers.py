"""The numbers of a chunk's fields, typed for all lines at once: whole numbers (``$body_bytes_sent``) and
decimals (``$request_time``), each also a list that nginx writes after upstream retries (``0.012, 0.034``,
``1 : -``: its total).

Where the compiled loops are loaded (:func:`pipeline.formats.compiled.loaded`) one loop reads each field
(:func:`pipeline.formats.compiled_types.numbers`) and leaves what it does not know (an exponent, a list
with other separators) to the numpy code here, which otherwise reads every value: Arrow's string casts in
C++, then the lists one by one. Both give the same values to the last bit and the same rejects.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.formats import compiled, compiled_types
from pipeline.formats.vector import (
    MAX_DIGITS,
    BoolArray,
    ByteArray,
    IntArray,
    all_digits,
    cast_spans,
    find,
    span_strings,
)

_NUMBER = re.compile(rb"\d+(?:\.\d+)?")
_SEPARATORS = re.compile(rb"\s*[,:]\s*")  # nginx's lists after upstream retries: "0.012, 0.034", "1 : 2"
FITS, TOO_BIG, NO_NUMBER = 0, 1, 2  # why a whole number does not fit (see :func:`whole_numbers`)
Spans = tuple[IntArray, IntArray, BoolArray]  # a field's starts, ends and nulls


def whole_numbers(
    a: ByteArray, data: bytes | memoryview, fields: list[Spans]
) -> list[tuple[IntArray, BoolArray, Any]]:
    """Integers (a list after upstream retries: its total) of every field (its spans and nulls): for
    each field the values, which are not null, and why each line does not fit (:data:`FITS`,
    :data:`TOO_BIG` beyond int64, :data:`NO_NUMBER`)."""
    if not compiled.loaded():
        return _whole_numpy(a, data, fields)
    out = []
    for lo, hi, null in fields:
        values, state = compiled_types.numbers(a, lo, hi, null, True, True)
        valid = state != compiled_types.NULL
        why = np.where(state == compiled_types.TOO_BIG, TOO_BIG, FITS).astype(np.int8)
        for j in np.flatnonzero(state == compiled_types.UNREAD):
            _read_whole(data, int(lo[j]), int(hi[j]), int(j), values, valid, why)
        out.append((values, valid, why))
    return out


def _whole_numpy(
    a: ByteArray, data: bytes | memoryview, fields: list[Spans]
) -> list[tuple[IntArray, BoolArray, Any]]:
    """:func:`whole_numbers` of every field at once: one Arrow pass over all of them, line by line."""
    count = len(fields)
    if count == 0:
        return []
    lo, hi, null = (np.stack([f[i] for f in fields], axis=1).ravel() for i in range(3))
    single = all_digits(a, lo, hi) & ~null
    short = single & ((hi - lo) <= MAX_DIGITS)
    values = np.where(short, cast_spans(data, lo, hi, short, np.int64), 0)
    valid = ~null
    why = np.full(len(lo), FITS, dtype=np.int8)
    for j in np.flatnonzero(single & ~short):  # beyond 18 digits: may not fit int64
        big = int(bytes(data[lo[j] : hi[j]]))
        if big > np.iinfo(np.int64).max:
            why[j] = TOO_BIG
        else:
            values[j] = big
    for j in np.flatnonzero(~single & ~null):  # lists after upstream retries: their total
        _read_whole(data, int(lo[j]), int(hi[j]), int(j), values, valid, why)
    return [(values[f::count].copy(), valid[f::count].copy(), why[f::count].copy()) for f in range(count)]


def _read_whole(
    data: bytes | memoryview, lo: int, hi: int, j: int, values: IntArray, valid: BoolArray, why: Any
) -> None:
    """Value ``j``, a list after upstream retries (or no number at all), read on its own."""
    total = list_total(bytes(data[lo:hi]), int)
    if total is None:
        why[j] = NO_NUMBER
    elif total is NULL_LIST:
        valid[j] = False
    elif total > np.iinfo(np.int64).max:
        why[j] = TOO_BIG
    else:
        values[j] = total


def decimals(
    a: ByteArray, data: bytes | memoryview, fields: list[Spans], multi: bool
) -> list[tuple[Any, BoolArray, BoolArray]]:
    """Decimal numbers (``12``, ``0.034``); with ``multi``, lists are summed. For each field (its spans
    and nulls), the values, the null mask and which lines hold a number (or a null)."""
    count = len(fields)
    if count == 0:
        return []
    if not compiled.loaded():
        lo, hi, null = (np.stack([f[i] for f in fields], axis=1).ravel() for i in range(3))
        values, null, good = _decimals_numpy(a, data, lo, hi, null.copy(), multi)
        return [(values[f::count].copy(), null[f::count].copy(), good[f::count].copy()) for f in range(count)]
    read = [compiled_types.numbers(a, lo, hi, null, False, multi) for lo, hi, null in fields]
    unread = [state == compiled_types.UNREAD for _, state in read]
    if not any(u.any() for u in unread):
        return [
            (values, state == compiled_types.NULL, ~u)
            for (values, state), u in zip(read, unread, strict=True)
        ]
    # the rest the numpy way, in order through the chunk (line by line, field by field)
    flat_unread = np.stack(unread, axis=1).ravel()
    flat_values = np.stack([values for values, _ in read], axis=1).ravel()
    flat_null = np.stack([state for _, state in read], axis=1).ravel() == compiled_types.NULL
    good = ~flat_unread
    which = np.flatnonzero(flat_unread)
    lo, hi = (np.stack([f[i] for f in fields], axis=1).ravel()[which] for i in range(2))
    # their bytes one after the other: the compiled loops take spans in any order (a JSON read's), the
    # numpy code's string arrays over the chunk only spans in order
    parts = [bytes(data[x:y]) for x, y in zip(lo.tolist(), hi.tolist(), strict=True)]
    own = b"".join(parts) + b"\n"  # and a byte after the last, as a chunk has
    ends = np.cumsum([len(p) for p in parts], dtype=np.int64)
    starts = ends - [len(p) for p in parts]
    v, n, g = _decimals_numpy(
        np.frombuffer(own, dtype=np.uint8), own, starts, ends, np.zeros(len(which), bool), multi
    )
    flat_values[which], flat_null[which], good[which] = v, n, g
    return [
        (flat_values[f::count].copy(), flat_null[f::count].copy(), good[f::count].copy())
        for f in range(count)
    ]


def _decimals_numpy(
    a: ByteArray, data: bytes | memoryview, lo: IntArray, hi: IntArray, null: BoolArray, multi: bool
) -> tuple[Any, BoolArray, BoolArray]:
    """:func:`decimals` of spans in order through the chunk, cast by Arrow at once: their values, nulls
    (``null``, and lists of nothing but ``-``) and which hold a number or a null."""
    import pyarrow.compute as pc  # lazily: see pipeline.formats.vector

    n = len(lo)
    values = np.zeros(n, dtype=np.float64)
    good = np.ones(n, dtype=bool)
    if n == 0:
        return values, null, good
    # Lists (after upstream retries) are summed one by one below; every other value is cast by Arrow at
    # once, and only if that cast fails (garbage somewhere) is each value's kind sorted out first.
    lists = (find(a, lo, hi, ",") >= 0) | (find(a, lo, hi, ":") >= 0)
    plain_ok = ~null & ~lists & _decimal(a, lo, hi)
    try:
        cast = pc.cast(span_strings(data, lo, hi, plain_ok), pa.float64())
        values = np.frombuffer(cast.buffers()[1], dtype=np.float64, count=2 * n - 1)[0::2].copy()
    except pa.ArrowInvalid:
        values = _cast_floats(data, lo, hi, plain_ok).copy()
    plain_ok &= np.isfinite(values) & (values >= 0)  # Arrow also reads "inf", "nan" and "-1"
    if multi:
        plain_ok |= _sum_lists(data, lo, hi, lists & ~null, values)
    for j in np.flatnonzero(~plain_ok & ~null):
        total = list_total(bytes(data[lo[j] : hi[j]]), float) if multi else None
        if total is None:
            good[j] = False
        elif total is NULL_LIST:
            null[j] = True
        else:
            values[j] = total
    values[null | ~good] = 0.0
    return values, null, good


def _decimal(a: ByteArray, lo: IntArray, hi: IntArray) -> BoolArray:
    """Whether each span starts and ends with a digit. Arrow's float cast also reads ``+1``, ``.5``,
    ``5.``, ``-0`` and ``inf``, which the value-by-value cast (taken when some value of the chunk does
    not cast) refuses: a line with such a value must be a reject in every chunk. What both read beyond
    plain decimals is an exponent (``1e3``)."""
    first, last = a.take(lo, mode="clip") - np.uint8(48), a.take(hi - 1, mode="clip") - np.uint8(48)
    ok: BoolArray = (hi > lo) & (first <= 9) & (last <= 9)
    return ok


def _sum_lists(
    data: bytes | memoryview, lo: IntArray, hi: IntArray, lists: BoolArray, values: Any
) -> BoolArray:
    """The totals of the plainest lists (``0.012, 0.034``: numbers and ", ") written into ``values``,
    which of them were; any other list is left to :func:`list_total`, one by one. Summed item by item
    from the left, as :func:`list_total` does, so the totals are the same to the last bit."""
    import pyarrow.compute as pc  # lazily: see pipeline.formats.vector

    summed = np.zeros(len(lo), dtype=bool)
    which = np.flatnonzero(lists)
    if len(which) == 0:
        return summed
    strings = span_strings(data, lo[which], hi[which], None)
    plain = pc.match_substring_regex(strings, r"^\d+(\.\d+)?(, \d+(\.\d+)?)+$")
    bits = np.unpackbits(
        np.frombuffer(plain.buffers()[1], dtype=np.uint8), count=2 * len(which) - 1, bitorder="little"
    )[0::2].astype(bool)
    which = which[bits]
    if len(which) == 0:
        return summed
    parts = pc.split_pattern(span_strings(data, lo[which], hi[which], None), ", ")
    try:
        items = pc.cast(parts.values, pa.float64()).to_numpy()
    except pa.ArrowInvalid:  # a number Arrow does not read: all of them one by one
        return summed
    offsets = np.frombuffer(parts.buffers()[1], dtype=np.int32, count=2 * len(which))
    first, count = offsets[0::2], offsets[1::2] - offsets[0::2]
    total = np.zeros(len(which), dtype=np.float64)
    for p in range(int(count.max())):
        has = count > p
        total[has] += items[first[has] + p]
    values[which] = total
    summed[which] = True
    return summed


def _cast_floats(data: bytes | memoryview, lo: IntArray, hi: IntArray, plain_ok: BoolArray) -> Any:
    """The numbers where ``plain_ok`` (narrowed in place to the values that look like decimal numbers)
    when some value does not cast: what the cast reads of the values that start and end with a digit
    (see :func:`_decimal`), cast again."""
    import pyarrow.compute as pc  # lazily: see pipeline.formats.vector

    n = len(lo)
    strings = span_strings(data, lo, hi, plain_ok)
    plain = pc.match_substring_regex(strings, r"^\d+(\.\d*)?([eE][+-]?\d+)?$")
    bits = np.unpackbits(
        np.frombuffer(plain.buffers()[1], dtype=np.uint8), count=2 * n - 1, bitorder="little"
    )[0::2].astype(bool)
    plain_ok &= bits
    cast = pc.cast(span_strings(data, lo, hi, plain_ok), pa.float64())
    return np.frombuffer(cast.buffers()[1], dtype=np.float64, count=2 * n - 1)[0::2]


NULL_LIST = object()  # a list of nothing but "-"


def list_total(text: bytes, kind: type[int] | type[float]) -> Any:
    """The total of a list nginx writes after upstream retries (``0.012, 0.034``, ``1 : -``);
    :data:`NULL_LIST` when every item is "-", None when it is not such a list."""
    total: int | float = 0
    seen = False
    for item in _SEPARATORS.split(text.strip()):
        if item == b"-":
            continue
        if not _NUMBER.fullmatch(item) or (kind is int and b"." in item):
            return None
        total += kind(item)
        seen = True
    return total if seen else NULL_LIST
