"""A W3C log chunk's lines split into their fields, and the fields' values typed and decoded
(:mod:`pipeline.formats.w3c` reads a chunk with these).

Each step runs the engine's compiled loops where this process has them loaded
(:func:`pipeline.formats.compiled.loaded`): the lines' split into their fields in one pass over their
bytes, the dates and times, numbers and string columns each in one loop over their spans. Every other
process runs the numpy code here, which gives the same spans, values and failures
(tests/fuzz_formats.py, ``w3c_compiled``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.arrays import string_buffers, string_from_buffers
from pipeline.formats import compiled, compiled_types
from pipeline.formats.compiled_types import NULL, TOO_BIG, UNREAD, VALUE
from pipeline.formats.vector import (
    MAX_DIGITS,
    BoolArray,
    ByteArray,
    IntArray,
    all_digits,
    cast_spans,
    civil_seconds,
    is_dash,
    line_bounds,
    span_strings,
    string_columns,
    windows,
)

# a decimal the numbers loop reads is one the pattern takes where it is at most this long: up to 11
# digits before the dot and up to 9 after it (longer ones are held to the pattern one by one)
_SHORT_DECIMAL = 11


class SeparatedLines:
    """A chunk's lines (bounds), the lines that hold a NUL byte and those that hold a byte above 127
    (``nul``, ``wide``: line numbers, ascending); :meth:`split` splits lines into their fields."""

    def __init__(self, a: ByteArray, sep: int):
        self.a, self.sep = a, sep
        self.starts, self.ends, _, _ = line_bounds(a)
        self.nul = np.unique(self._line_of(np.flatnonzero(a == 0)))
        self.wide = np.unique(self._line_of(np.flatnonzero(a >= 128)))
        self._seps: IntArray | None = None

    def _line_of(self, at: IntArray) -> IntArray:
        line: IntArray = np.searchsorted(self.starts, at, side="right") - 1
        return line

    def split(self, lines: IntArray, count: int) -> tuple[BoolArray, IntArray, IntArray]:
        """Which of ``lines`` hold ``count`` fields (``count - 1`` separators), and the spans (fields,
        lines) of those lines' fields."""
        if compiled.loaded():
            return compiled.split_separated(self.a, self.sep, self.starts, self.ends, lines, count)
        if self._seps is None:  # every separator, and its line, for all the groups of lines
            self._seps = np.flatnonzero(self.a == self.sep)
            self._sep_line = self._line_of(self._seps)
            self._counts = np.bincount(self._sep_line, minlength=len(self.starts))
        match = self._counts[lines] == count - 1
        good = lines[match]
        if len(good) == 0:
            return match, np.zeros((count, 0), dtype=np.int64), np.zeros((count, 0), dtype=np.int64)
        split = np.zeros(len(self.starts), dtype=bool)  # the lines that split into these fields
        split[good] = True
        inner = self._seps[split[self._sep_line]].reshape(len(good), count - 1).T
        lo = np.concatenate([self.starts[good][None, :], inner + 1])
        hi = np.concatenate([inner, self.ends[good][None, :]])
        return match, lo, hi


def nulls(a: ByteArray, lo: IntArray, hi: IntArray) -> BoolArray:
    """Whether each span is ``-`` or empty."""
    if compiled.loaded():
        return compiled_types.nulls(a, lo, hi, (), True)
    null: BoolArray = is_dash(a, lo, hi) | (hi == lo)
    return null


def integers(
    a: ByteArray, data: bytes | memoryview, lo: IntArray, hi: IntArray, null: BoolArray
) -> tuple[IntArray, BoolArray, BoolArray]:
    """The whole numbers at the spans not ``null`` (0 elsewhere), the spans that are not one and those
    too big for int64 (a ``-`` not ``null`` is not a number: the loop reads it as a null)."""
    if compiled.loaded():
        values, state = compiled_types.numbers(a, lo, hi, null, True, False)
        return values, (state == UNREAD) | ((state == NULL) & ~null), state == TOO_BIG
    digits = all_digits(a, lo, hi) & ~null
    values, fits = _integers(data, lo, hi, digits)
    return values, ~null & ~digits, digits & ~fits


def decimals(
    a: ByteArray, data: bytes | memoryview, lo: IntArray, hi: IntArray, null: BoolArray
) -> tuple[IntArray, BoolArray]:
    """The decimals (``0.002``, :data:`_DECIMAL`) at the spans not ``null`` (0.0 elsewhere), and the
    spans that are not one."""
    if not compiled.loaded():
        ok, values = _decimals(data, lo, hi, ~null)
        return values, ~null & ~ok
    values, state = compiled_types.numbers(a, lo, hi, null, False, False)
    ok = state == VALUE
    # what the loop leaves unread, and what it reads that the pattern may refuse (too many digits)
    again = np.flatnonzero(~null & ((state == UNREAD) | (ok & (hi - lo > _SHORT_DECIMAL))))
    if len(again):
        ok[again], values[again] = _decimals(data, lo[again], hi[again], np.ones(len(again), dtype=bool))
    return values, ~null & ~ok


def date_time(
    a: ByteArray, dlo: IntArray, dhi: IntArray, tlo: IntArray, thi: IntArray
) -> tuple[IntArray, IntArray, BoolArray]:
    """:func:`parse_date_time`, compiled where the loops are loaded."""
    if compiled.loaded():
        return compiled_types.time_w3c(a, dlo, dhi, tlo, thi)
    return parse_date_time(a, dlo, dhi, tlo, thi)


def strings(
    a: ByteArray,
    data: bytes | memoryview,
    lo: IntArray,
    hi: IntArray,
    take: IntArray,
    fields: list[int],
    valid: list[Any],
) -> list[pa.Array]:
    """String columns of the fields ``fields`` (rows of the spans ``lo``/``hi``: fields, lines) of the
    lines ``take`` (:func:`pipeline.formats.vector.string_columns`)."""
    if compiled.loaded():
        return compiled_types.string_columns(a, lo, hi, take, valid, np.array(fields, dtype=np.int64))
    return string_columns(pa.py_buffer(data), lo[fields], hi[fields], take, valid)


def decode_plus(values: pa.Array) -> pa.Array:
    """A space written as ``+`` (IIS), decoded: one byte for another over the values' bytes at once (a
    vectorised numpy pass, where the loops are loaded too), so the offsets and the nulls stay (and
    UTF-8 stays UTF-8)."""
    if len(values) == 0 or values.null_count == len(values):
        return values
    values = values if values.offset == 0 else pa.concat_arrays([values])  # its bitmap from bit 0
    validity, rel, text = string_buffers(values)
    plus = text == 43
    if not plus.any():
        return values
    return string_from_buffers(
        len(values), rel.astype(np.int32), np.where(plus, np.uint8(32), text), validity
    )


def _hex(b: IntArray) -> tuple[IntArray, IntArray]:
    """Whether each byte is a hex digit, and its value."""
    low = b | 0x20
    digit = (b >= 48) & (b <= 57)
    letter = (low >= 97) & (low <= 102)
    return digit | letter, np.where(digit, b - 48, low - 87)


def decode_percent(values: pa.Array) -> pa.Array:
    """``%XX`` decoded in every value, for all values at once (a compiled loop, or numpy over the
    array's bytes). A value whose decoded bytes are not UTF-8 is kept as logged."""
    if len(values) == 0 or values.null_count == len(values):
        return values
    values = values if values.offset == 0 else pa.concat_arrays([values])
    decoded = compiled_types.decode_percent(values) if compiled.loaded() else _percent(values)
    if decoded is None:
        return values
    try:
        decoded.validate(full=True)
    except pa.ArrowInvalid:  # a %XX that is not UTF-8: those values stay as logged
        return _keep_undecodable(values, decoded)
    return decoded


def _percent(values: pa.Array) -> pa.Array | None:
    """:func:`decode_percent`'s decoding with numpy (None where no value holds a ``%XX``)."""
    validity, rel, data = string_buffers(values)
    pct = np.flatnonzero(data == 37)
    if len(pct) == 0:
        return None
    value_end = rel[np.searchsorted(rel, pct, side="right")]
    pct = pct[pct + 2 < value_end]
    ok1, v1 = _hex(data[pct + 1].astype(np.int64))
    ok2, v2 = _hex(data[pct + 2].astype(np.int64))
    pct, v1, v2 = pct[ok1 & ok2], v1[ok1 & ok2], v2[ok1 & ok2]
    if len(pct) == 0:
        return None
    out = data.copy()
    out[pct] = (v1 * 16 + v2).astype(np.uint8)
    drop = np.concatenate([pct + 1, pct + 2])
    keep = np.ones(len(out), dtype=bool)
    keep[drop] = False
    new_offsets = (rel - np.searchsorted(np.sort(drop), rel, side="left")).astype(np.int32)
    return string_from_buffers(len(values), new_offsets, out[keep], validity)


def _keep_undecodable(values: pa.Array, decoded: pa.Array) -> pa.Array:
    """``decoded``, with the values whose bytes are not UTF-8 taken from ``values`` (a rare path)."""
    raw = decoded.cast(pa.binary())
    out = []
    for before, after in zip(values.to_pylist(), raw.to_pylist(), strict=True):
        try:
            out.append(None if after is None else after.decode())
        except UnicodeDecodeError:
            out.append(before)
    return pa.array(out, pa.string())


_DECIMAL = r"^[0-9]{1,15}(\.[0-9]{1,9})?$"


def decode(values: pa.Array, how: str) -> pa.Array:
    if how == "plus":
        return decode_plus(values)
    if how == "percent":
        return decode_percent(values)
    if how == "percent2":
        return decode_percent(decode_percent(values))
    return values


def _decimals(data: bytes | memoryview, lo: IntArray, hi: IntArray, valid: Any) -> tuple[Any, Any]:
    """Which spans are decimal numbers (``0.002``), and their values (float64)."""
    import pyarrow.compute as pc  # lazily: see pipeline.formats.vector

    n = len(lo)
    if n == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    spans = span_strings(data, lo, hi, valid)
    matched = pc.match_substring_regex(spans, _DECIMAL)
    bitmap = np.frombuffer(matched.buffers()[1], dtype=np.uint8)
    bits = np.unpackbits(bitmap, count=2 * n - 1, bitorder="little")
    ok = bits[0::2].astype(bool) & valid
    parsed = pc.cast(span_strings(data, lo, hi, ok), pa.float64())
    values = np.frombuffer(parsed.buffers()[1], dtype=np.float64, count=2 * n - 1)[0::2]
    return ok, np.where(ok, values, 0.0)


def _integers(data: bytes | memoryview, lo: IntArray, hi: IntArray, digits: Any) -> tuple[Any, Any]:
    """The values of the spans of digits (``digits``), and which fit int64."""
    values = np.zeros(len(lo), dtype=np.int64)
    fits = np.ones(len(lo), dtype=bool)
    short = digits & ((hi - lo) <= MAX_DIGITS)
    if short.any():
        values[short] = cast_spans(data, lo, hi, short, np.int64)[short]
    for j in np.flatnonzero(digits & ((hi - lo) > MAX_DIGITS)):
        v = int(bytes(data[lo[j] : hi[j]]))
        fits[j] = v <= np.iinfo(np.int64).max
        values[j] = v if fits[j] else 0
    return values, fits


_DATE_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9])
_TIME_DIGITS = np.array([0, 1, 3, 4, 6, 7])


def parse_date_time(
    a: Any, dlo: IntArray, dhi: IntArray, tlo: IntArray, thi: IntArray
) -> tuple[IntArray, IntArray, Any]:
    """``yyyy-mm-dd`` and ``HH:MM:SS[.f]`` (UTC; up to six digits of fraction) for every line at once:
    microseconds since the epoch, the UTC day and a validity mask."""
    d = windows(a, dlo, 10)
    t = windows(a, tlo, 8)
    dd, td = d[:, _DATE_DIGITS] - 48, t[:, _TIME_DIGITS] - 48  # uint8: non-digits wrap above 9
    ok = ((dhi - dlo) == 10) & (d[:, 4] == 45) & (d[:, 7] == 45) & (dd <= 9).all(axis=1)
    ok &= ((thi - tlo) >= 8) & (t[:, 2] == 58) & (t[:, 5] == 58) & (td <= 9).all(axis=1)
    extra = thi - tlo - 9  # digits after the dot
    whole = thi - tlo == 8
    ok &= whole | ((extra >= 1) & (extra <= 6) & (a.take(tlo + 8, mode="clip") == 46))
    micros = np.zeros(len(dlo), dtype=np.int64)
    for p in range(6):
        inside = ~whole & (p < extra)
        digit = a.take(tlo + 9 + p, mode="clip").astype(np.int64) - 48
        ok &= ~inside | ((digit >= 0) & (digit <= 9))
        micros += np.where(inside, digit, 0) * 10 ** (5 - p)
    y, tt = dd.T.astype(np.int64), td.T.astype(np.int64)
    year = y[0] * 1000 + y[1] * 100 + y[2] * 10 + y[3]
    zero = np.zeros(len(dlo), dtype=np.int64)
    us, days, ok = civil_seconds(
        ok,
        year,
        y[4] * 10 + y[5],
        y[6] * 10 + y[7],
        tt[0] * 10 + tt[1],
        tt[2] * 10 + tt[3],
        tt[4] * 10 + tt[5],
        zero,
        zero,
        zero,
    )
    return us + np.where(ok, micros, 0), days, ok
