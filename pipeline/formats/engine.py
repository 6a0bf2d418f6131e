"""Compiled formats: a :class:`~pipeline.formats.spec.FormatPlan` run over a chunk with vectorised numpy.

A plan is the server's format string taken apart: the literal text between its variables, and each
variable's kind. The literal text gives every field's boundaries for all lines at once: a field starts
where the literal before it ends and ends at the first place where the literal after it begins. So
the *fast path* needs, per field, one ``searchsorted`` of every line's cursor into the positions of
the next literal's first byte (found once per chunk with ``np.flatnonzero``), and a comparison of the
literal's bytes there; no regex, no Python object per line. After a field that holds no punctuation the
search is replaced by counting occurrences on through the literals (checked, see ``_GUESSED``). It
takes lines of plain printable ASCII without backslashes whose literals are all where the
first-occurrence split puts them.

Every other line (non-ASCII, escapes, a field that holds its terminator) goes to the *slow path*: the
plan's reference regex (one ``fullmatch`` per line), which is the ground truth and agrees with the
fast path wherever both take a line. Both give byte spans; values are then typed by kind for all lines
at once (:mod:`pipeline.formats.vector`), and a line whose value does not fit its kind (a bad date, a
status that is not three digits, a number too big for int64) is rejected with the reason.

:class:`Plans` is the family of these formats (``pipeline.formats.base.Family``): the built-in names and
the servers' format strings.

Where this process has the compiled loops (:mod:`pipeline.formats.compiled`), the line bounds, the fast
path's candidates and its split are one compiled pass (:func:`pipeline.formats.compiled.split`), which
gives what the numpy functions below give.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.arrays import binary_array, bool_array, from_buffers
from pipeline.formats import compiled, compiled_types, numbers
from pipeline.formats.base import Family, Format, FormatKey, Planned, Reason, RejectRows, Rows
from pipeline.formats.spec import (
    BUILTINS,
    DIALECTS,
    TIME_KINDS,
    Field,
    FormatPlan,
    fixed_width,
    listy,
    plan_for,
    spaceless,
)
from pipeline.formats.vector import (
    MAX_DIGITS,
    BoolArray,
    ByteArray,
    IntArray,
    civil_seconds,
    epoch_times,
    fast_candidates,
    find,
    is_bot,
    is_dash,
    line_bounds,
    merge_lines,
    parse_time_clf_ms,
    parse_time_local,
    parse_time_rfc3339,
    reject_blank_and_long,
    reject_lines,
    string_columns,
    windows,
)

STRING_KINDS = frozenset({"ip", "user", "string", "agent"})
# Kinds whose values hold no punctuation but their own (digits, dots, dashes): after such a field the
# occurrences of a byte are counted on through the literals instead of searched for again. The count
# is checked (it can only fall short, when a field held the byte after all), so this is a guess about
# speed only, never about the split.
_GUESSED = frozenset({"ip", "user", "status", "int", "float", "duration", "epoch"})
_REASONS = (Reason.NO_MATCH, *(r for r in Reason if r != Reason.NO_MATCH))  # what a line fails with first
_FEW = 64  # lines of a chunk that the quick split could not take, that the regex gets one by one
_ISO_WIDTH = 25  # len("2026-11-01T10:00:00+00:00")
_ISO_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24])
_ISO_SEP_POS = np.array([4, 7, 10, 13, 16, 22])
_ISO_SEP_VAL = np.frombuffer(b"--T:::", dtype=np.uint8)


class PlanFormat(Planned[FormatPlan]):
    """A format string's plan, run by this engine."""

    def scan(self, data: bytes | memoryview, first_line: int, max_line_bytes: int, reject_bytes: int) -> Rows:
        return scan(self.plan, data, first_line, max_line_bytes, reject_bytes)


class Plans(Family):
    """The built-in formats and the servers' own format strings, ``{nginx = ...}`` or ``{apache = ...}``:
    compiled into a plan (:mod:`pipeline.formats.spec`)."""

    names = tuple(BUILTINS)
    tables = DIALECTS

    def key(self, setting: str | Mapping[str, Any]) -> FormatKey:
        plan_for(setting)
        if isinstance(setting, str):
            return setting
        ((dialect, text),) = setting.items()
        return (dialect, text)

    def load(self, key: FormatKey) -> Format:
        plan = plan_for(key) if isinstance(key, str) else plan_for({key[0]: key[1]})
        return PlanFormat(key, plan)


def scan(
    plan: FormatPlan,
    data: bytes | memoryview,
    first_line: int,
    max_line_bytes: int,
    reject_bytes: int,
    split: Split | None = None,
    schema: pa.Schema | None = None,
) -> Rows:
    """The rows and rejects of a chunk of complete ``\\n``-terminated lines with ``plan`` (see
    ``Format.parse``: every line becomes a row or a reject with its reason). ``split``: the spans of
    every line of the chunk by :func:`_fast_spans`, when the caller has them. ``schema``: the
    batch's columns when not the plan's own (a server format's variants share the union of theirs):
    those the plan lacks are null."""
    if split is None:
        a = np.frombuffer(data, dtype=np.uint8)
        where = _Positions(a)
        if compiled.loaded():
            starts, ends, status, idx, spans = compiled.split(plan, a, max_line_bytes)
            too_long = (ends - starts) > max_line_bytes
            cand, tried = status == compiled.OK, status <= compiled.TRIED
        else:
            starts, ends, newlines, crlf = line_bounds(a)
            too_long = (ends - starts) > max_line_bytes
            cand = fast_candidates(a, starts, newlines, crlf) & ~too_long
            tried = cand.copy()
            idx, spans = _fast_spans(plan, a, where, starts, ends, cand)
    else:
        spans, where, (starts, ends, newlines, crlf) = split.spans, split.where, split.bounds
        a = where.a
        if spans.shape[2] != len(starts) or len(a) != len(data):
            raise ValueError("a split given to scan must take every line of the chunk")
        idx = np.arange(len(starts))
        too_long = np.zeros(len(starts), dtype=bool)  # the split took every line: none is too long
        cand = tried = np.ones(len(starts), dtype=bool)
    length = ends - starts
    rejects = RejectRows()
    settings = (first_line, reject_bytes)
    slow = _Slow(plan)
    todo = ~cand & (length > 0) & ~too_long
    failed = tried & ~cand
    if exact(plan) and np.count_nonzero(failed) > _FEW:
        # Many lines the quick split could not take (the file is not in this format, most likely): the
        # regex's own split, vectorised; what it cannot take, the regex would not match either. A few
        # such lines go to the regex one by one, which costs less than setting the split up.
        again = failed.copy()
        more, more_spans = _whole_split(plan, a, where, starts, ends, again, max_line_bytes)
        reject_lines(rejects, np.flatnonzero(failed & ~again), Reason.NO_MATCH, data, starts, ends, *settings)
        idx, spans = merge_lines(idx, spans, more, more_spans)
        todo &= ~tried
    for i in np.flatnonzero(todo):
        slow.line(data, int(starts[i]), int(ends[i]), int(i), rejects, first_line, reject_bytes)
    idx, spans = merge_lines(idx, spans, slow.lines, slow.spans)  # the odd lines the regex took
    reject_blank_and_long(rejects, data, starts, ends, too_long, first_line, reject_bytes)

    typed = _Typed(plan, a, where, data, spans, idx)
    bad = np.flatnonzero(~typed.ok)
    reject_lines(
        rejects, idx[bad], [_REASONS[c] for c in typed.codes[bad].tolist()], data, starts, ends, *settings
    )
    keep = np.flatnonzero(typed.ok)

    def build(order: IntArray | None) -> pa.RecordBatch:
        return typed.batch(keep if order is None else keep[order], slow.decoded, idx, schema)

    return Rows(typed.days[keep], idx[keep], rejects, build)


def _whole_split(
    plan: FormatPlan,
    a: ByteArray,
    where: _Positions,
    starts: IntArray,
    ends: IntArray,
    lines: BoolArray,
    longest: int,
) -> tuple[IntArray, IntArray]:
    """:func:`_fast_spans` with ``whole`` over ``lines`` (cleared where it does not split), compiled where
    this process has the loops: they split the whole chunk, and what they took of ``lines`` is kept."""
    if not compiled.loaded():
        return _fast_spans(plan, a, where, starts, ends, lines, whole=True)
    _, _, status, idx, spans = compiled.split(plan, a, longest, whole=True)
    mine = lines[idx]
    lines &= status == compiled.OK
    return idx[mine], spans[:, :, mine]


@dataclass(frozen=True)
class Split:
    """Every line of a chunk split by :func:`_fast_spans` (so each is a fast-path candidate, no longer
    than the longest allowed): its spans, the chunk's positions and its line bounds
    (:func:`~pipeline.formats.vector.line_bounds`), which the scan then does not find again."""

    spans: IntArray
    where: _Positions
    bounds: tuple[IntArray, IntArray, IntArray, BoolArray]


class _Positions:
    """Where each byte value occurs in a chunk, found once per chunk and value (``np.flatnonzero``),
    with sentinels past the end so that lookups never overrun."""

    def __init__(self, a: ByteArray):
        self.a = a
        self._found: dict[int, IntArray] = {}
        self._literals: dict[bytes, IntArray] = {}
        self._pad = np.full(4, len(a) + 64, dtype=np.int64)
        self._windows: dict[int, Any] = {}
        self._words: Any = None

    def holds(self, pos: IntArray, literal: bytes) -> BoolArray:
        """Whether ``literal`` is at each ``pos`` (a position past the end holds nothing).

        Compared eight bytes at a time: each line's bytes are read as 64-bit words, through a view of
        the chunk with a window of bytes at every position, which a fancy index gathers far faster
        than one ``take`` per byte. The window ends where the literal ends, so it never reads past the
        chunk; only a literal within the chunk's first bytes is compared byte by byte."""
        n = len(literal)
        if n == 0:
            return np.ones(len(pos), dtype=bool)
        width = -(-n // 8) * 8
        a = self.a
        if len(a) < width:
            return np.array([bytes(a[p : p + n]) == literal for p in pos.tolist()], dtype=bool)
        view = self._windows.get(width)
        if view is None:
            view = self._windows[width] = np.ndarray(
                shape=(len(a) - width + 1,), dtype=f"V{width}", buffer=a, strides=(1,)
            )
        start = pos + (n - width)
        at = np.clip(start, 0, len(a) - width)
        words = view[at].view("<u8").reshape(len(pos), width // 8)
        expect, mask = _words(literal, width)
        ok: BoolArray = at == start
        for i in range(width // 8):
            word = words[:, i] if mask[i] == _ALL else words[:, i] & mask[i]
            ok &= word == expect[i]
        for j in np.flatnonzero(start < 0):  # within the chunk's first bytes
            p = int(pos[j])
            ok[j] = bytes(a[p : p + n]) == literal
        return ok

    def word(self, pos: IntArray) -> Any:
        """The eight bytes from each ``pos`` as a little-endian uint64 (the first byte lowest), those
        before the chunk's start or past its end zero: one gather answers which of a few short
        spellings a value is."""
        a = self.a
        if len(a) < 8:
            a = np.concatenate([a, np.zeros(8, dtype=np.uint8)])
        view = self._words
        if view is None or len(a) != len(self.a):
            view = np.ndarray(shape=(len(a) - 7,), dtype="<u8", buffer=a, strides=(1,))
            if len(a) == len(self.a):
                self._words = view
        if len(pos) and pos.min() >= 0 and pos.max() <= len(a) - 8:  # all within: no clipping
            return view[pos]
        at = np.clip(pos, 0, len(a) - 8)
        found: Any = view[at]
        past = np.flatnonzero(pos > at)  # within the chunk's last bytes (or past them)
        if len(past):
            shift = np.clip(pos[past] - at[past], 0, 8).astype(np.uint64) * np.uint64(8)
            found[past] = np.where(shift < 64, found[past] >> np.minimum(shift, np.uint64(56)), 0)
        before = np.flatnonzero(pos < at)  # starting before the chunk
        if len(before):
            shift = np.clip(at[before] - pos[before], 0, 8).astype(np.uint64) * np.uint64(8)
            found[before] = np.where(shift < 64, found[before] << np.minimum(shift, np.uint64(56)), 0)
        return found

    def __call__(self, byte: int) -> IntArray:
        found = self._found.get(byte)
        if found is None:
            found = self._found[byte] = np.concatenate([np.flatnonzero(self.a == byte), self._pad])
        return found

    def next(self, byte: int, lo: IntArray) -> IntArray:
        """The first occurrence of ``byte`` at or after each ``lo`` (a sentinel where there is none)."""
        where = self(byte)
        found: IntArray = where.take(np.searchsorted(where, lo), mode="clip")
        return found

    def next_literal(self, literal: bytes, lo: IntArray) -> IntArray:
        """The first place at or after each ``lo`` where the whole ``literal`` is (a sentinel where it
        is nowhere after): what the reference regex splits an unquoted field at."""
        found = self._literals.get(literal)
        if found is None:
            first = self(literal[0])[: -len(self._pad)]
            whole = first + len(literal) <= len(self.a)
            for j in range(1, len(literal)):
                whole &= self.a.take(first + j, mode="clip") == literal[j]
            found = self._literals[literal] = np.concatenate([first[whole], self._pad])
        at: IntArray = found.take(np.searchsorted(found, lo), mode="clip")
        return at

    def within(self, byte: int, lo: IntArray, hi: IntArray) -> BoolArray:
        """Whether ``byte`` occurs in each span ``[lo, hi)``."""
        inside: BoolArray = self.next(byte, lo) < hi
        return inside


_WORD = 8  # literals this long are compared by words (Positions.holds); shorter ones byte by byte
_ALL = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


@lru_cache(maxsize=256)
def _words(literal: bytes, width: int) -> tuple[Any, Any]:
    """``literal`` at the end of ``width`` bytes, as 64-bit words, and the mask of its bytes."""
    pad = width - len(literal)
    expect = np.frombuffer(bytes(pad) + literal, dtype="<u8")
    mask = np.frombuffer(bytes(pad) + b"\xff" * len(literal), dtype="<u8")
    return expect, mask


_ZEROS = np.uint64(0x3030_3030_3030_3030)  # eight ASCII zeros
_HIGH = np.uint64(0xF0F0_F0F0_F0F0_F0F0)
_SIX = np.uint64(0x0606_0606_0606_0606)


def _port(word: Any, length: IntArray) -> tuple[IntArray, BoolArray]:
    """The number that the last ``length`` (at most eight) of the eight bytes of each ``word`` (see
    :meth:`_Positions.word`, the bytes that end a value) write, and whether they are all ASCII digits.

    Read eight bytes at a time: the bytes before the number count as zeros; a byte is a digit when its
    high half is 3 and adding 6 does not carry into it; digits are then paired, the pairs paired and
    so on, each step one multiplication (the first byte is the lowest: the most significant digit)."""
    keep = np.uint64(64) - np.minimum(length, 8).astype(np.uint64) * np.uint64(8)  # low bits not the number
    low = np.where(keep < 64, (np.uint64(1) << np.minimum(keep, np.uint64(63))) - np.uint64(1), ~np.uint64(0))
    x = (word & ~low) | (_ZEROS & low)
    digits = ((x & _HIGH) == _ZEROS) & (((x + _SIX) & _HIGH) == _ZEROS)
    v = x & np.uint64(0x0F0F_0F0F_0F0F_0F0F)
    v = (v * np.uint64(10) + (v >> np.uint64(8))) & np.uint64(0x00FF_00FF_00FF_00FF)
    v = (v * np.uint64(100) + (v >> np.uint64(16))) & np.uint64(0x0000_FFFF_0000_FFFF)
    v = (v * np.uint64(10000) + (v >> np.uint64(32))) & np.uint64(0xFFFF_FFFF)
    return np.where(digits, v, 0).astype(np.int64), digits


@lru_cache(maxsize=64)
def _short(spelling: bytes) -> tuple[Any, Any]:
    """A spelling of at most eight bytes as the little-endian word of :meth:`_Positions.word`, and
    the mask of its bytes."""
    pad = bytes(8 - len(spelling))
    return np.frombuffer(spelling + pad, dtype="<u8")[0], np.frombuffer(
        b"\xff" * len(spelling) + pad, dtype="<u8"
    )[0]


@lru_cache(maxsize=64)
def exact(plan: FormatPlan) -> bool:
    """Whether the fast path splits a candidate line exactly as the reference regex does, so that a
    candidate it cannot split is a reject without asking the regex (true unless the plan has a list
    the regex reads whole)."""
    return not any(listy(plan, k) for k in range(len(plan.fields)))


def _fast_spans(
    plan: FormatPlan,
    a: ByteArray,
    where: _Positions,
    starts: IntArray,
    ends: IntArray,
    cand: BoolArray,
    whole: bool = False,
) -> tuple[IntArray, IntArray]:
    """Field spans of the candidate lines by the first-occurrence split; clears ``cand`` where a
    literal is not where the split puts it (those lines go to the slow path, or are rejected at once
    when the split is :func:`exact`).

    A field ends where the first byte of the literal after it first occurs, and the rest of the literal
    must follow. With ``whole``, an unquoted field ends where the whole literal first occurs instead,
    which is exactly the reference regex's split (a quoted field ends at its first quote either way):
    slower to set up, so it is only tried on the lines the quick split could not take.

    Returns the lines taken and their spans, (field, start/end, line) in the order of the lines."""
    ci = np.flatnonzero(cand)
    nfields = len(plan.fields)
    if len(ci) == 0:
        return ci, np.zeros((nfields, 2, 0), dtype=np.int64)
    s, e = starts[ci], ends[ci]
    ok = np.ones(len(ci), dtype=bool)
    spans = np.empty((nfields, 2, len(ci)), dtype=np.int64)

    def at(pos: IntArray) -> ByteArray:
        return a.take(pos, mode="clip")

    def check(pos: IntArray, literal: bytes, skip: int = 0) -> None:
        nonlocal ok
        if len(literal) - skip >= _WORD:
            ok &= where.holds(pos + skip, literal[skip:])
            return
        for j in range(skip, len(literal)):
            ok &= at(pos + j) == literal[j]

    check(s, plan.literals[0])
    cur = s + len(plan.literals[0])
    # byte -> for each line, the index (into where(byte)) of its first occurrence at or after the
    # cursor, counted on from the last search through the bytes of the literals checked since; see
    # _GUESSED for why the count is mostly right and how it is checked
    guess: dict[int, IntArray] = {}
    for k in range(nfields):
        literal = plan.literals[k + 1]
        spans[k, 0] = cur
        width = fixed_width(plan.fields[k].kind, literal)
        if width is not None:  # a time that holds the literal's first byte: it ends by its width
            end = cur + width
            check(end, literal)
            guess = {}
        elif not literal:  # the last field runs to the end of the line
            end = e
            if plan.fields[k].word:  # not empty, not ending with a space (spaceless: none at all)
                ok &= (end > cur) & (where.a.take(end - 1, mode="clip") != 32)
        elif whole and not (
            (plan.fields[k].quoted and plan.escape != "none") or len(literal) == 1 or listy(plan, k)
        ):
            end = where.next_literal(literal, cur)
        else:
            first = where(literal[0])
            at_or_after = guess.get(literal[0]) if not whole else None
            if at_or_after is None:
                at_or_after = np.searchsorted(first, cur)
            else:
                behind = np.flatnonzero(first.take(at_or_after, mode="clip") < cur)
                if len(behind):  # a field held the byte after all: those lines are searched
                    at_or_after[behind] = np.searchsorted(first, cur[behind])
            end = first.take(at_or_after, mode="clip")
            check(end, literal, skip=1)
            if plan.fields[k].kind not in _GUESSED or plan.fields[k].multi:
                guess = {}
            guess[literal[0]] = at_or_after
            for byte in guess:
                guess[byte] = guess[byte] + literal.count(byte)
            if listy(plan, k):
                # an unquoted list after upstream retries ("1, 2" or "1 : 2") holds the separator: such
                # lines take the slow path, whose pattern knows what a list looks like
                # (a list item holds neither; a list goes on at ", " or " : " unless that is the
                # literal itself, where the pattern ends the list)
                ok &= ~where.within(32, cur, end) & ~where.within(44, cur, end)
                if not literal.startswith(b", "):
                    ok &= ~((at(end) == 44) & (at(end + 1) == 32))
                if not literal.startswith(b" : "):
                    ok &= ~((at(end) == 32) & (at(end + 1) == 58) & (at(end + 2) == 32))
        if spaceless(plan, k):
            ok &= ~where.within(32, cur, end)
        spans[k, 1] = end
        # the split may have found the literal on a later line (a short line, a line of another
        # format): then the field would run across the line end
        ok &= (end >= cur) & (end + len(literal) <= e)
        cur = end + len(literal)
    ok &= cur == e
    taken = np.flatnonzero(ok)
    cand[ci[~ok]] = False
    return ci[taken], spans[:, :, taken]


@dataclass
class _Slow:
    """The slow path: the plan's reference regex over one line at a time."""

    plan: FormatPlan
    lines: list[int] = field(default_factory=list)
    spans: list[IntArray] = field(default_factory=list)
    decoded: dict[tuple[int, int], str] = field(default_factory=dict)  # (line, field) -> JSON-decoded

    @cached_property
    def regex(self) -> re.Pattern[bytes]:
        """The plan's regex, looked up once per chunk (hashing a plan per line costs more than the match)."""
        return reference_regex(self.plan)

    def line(
        self,
        data: bytes | memoryview,
        start: int,
        end: int,
        i: int,
        rejects: RejectRows,
        first_line: int,
        reject_bytes: int,
    ) -> None:
        line = bytes(data[start:end])
        if b"\x00" in line:
            rejects.add(first_line + i, Reason.NUL_BYTE, line, reject_bytes)
            return
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            rejects.add(first_line + i, Reason.INVALID_UTF8, line, reject_bytes)
            return
        m = self.regex.fullmatch(line)
        if m is None:
            rejects.add(first_line + i, Reason.NO_MATCH, line, reject_bytes)
            return
        decoded: dict[tuple[int, int], str] = {}
        for k, f in enumerate(self.plan.fields):
            value = m.group(k + 1)
            if self.plan.escape == "json" and b"\\" in value and f.kind in STRING_KINDS:
                try:  # nginx's escape=json writes \" \\ \uXXXX ...: the column holds the text itself
                    decoded[(i, k)] = json.loads(b'"' + value + b'"')
                except ValueError:
                    rejects.add(first_line + i, Reason.NO_MATCH, line, reject_bytes)
                    return
        self.lines.append(i)
        self.spans.append(
            np.array([[start + m.start(g), start + m.end(g)] for g in range(1, len(m.groups()) + 1)])
        )
        self.decoded.update(decoded)


@lru_cache(maxsize=64)
def reference_regex(plan: FormatPlan) -> re.Pattern[bytes]:
    """The plan's per-line ground truth, compiled once per process."""
    return plan.reference_regex()


class _Typed:
    """The accepted lines' values, typed by kind; ``ok`` and ``reason`` say which lines fit."""

    def __init__(
        self,
        plan: FormatPlan,
        a: ByteArray,
        where: _Positions,
        data: bytes | memoryview,
        spans: IntArray,
        idx: IntArray,
    ):
        spans = _after_plus(plan, a, spans)
        self.plan, self.a, self.where, self.data, self.spans = plan, a, where, data, spans
        m = spans.shape[2]
        self.ok = np.ones(m, dtype=bool)
        self.codes = np.zeros(m, dtype=np.int8)  # an index into _REASONS: an object array costs more
        self.days = np.zeros(m, dtype=np.int64)
        self.values: list[tuple[str, Any]] = []  # (column, how to build it), in column order
        self.idx = idx
        self._nulls: dict[int, BoolArray] = {}  # field -> its nulls, where found for several at once
        if compiled.loaded():
            # contiguous, so that each field's starts and ends are read where they are by every loop
            spans = self.spans = np.ascontiguousarray(spans)
            compiled_types.check_spans(a, spans)
            wanted = _null_fields(plan)
            self._nulls = dict(
                zip((k for k, _, _ in wanted), compiled_types.nulls_at(a, spans, wanted), strict=True)
            )
        # every duration and float of a line typed together, and every whole number
        decimal = [k for k, f in enumerate(plan.fields) if f.kind in ("float", "duration")]
        floats = numbers.decimals(a, data, [self._spans(k) for k in decimal], multi=True)
        whole = [k for k, f in enumerate(plan.fields) if f.kind == "int"]
        ints = numbers.whole_numbers(a, data, [self._spans(k) for k in whole])
        for k, f in enumerate(plan.fields):
            lo, hi = spans[k, 0], spans[k, 1]
            if f.kind in STRING_KINDS:
                # the address and the agent as logged ("-" and a JSON log's "" included, as the
                # combined format keeps the agent)
                valid = None if f.kind in ("ip", "agent") else ~self._field_null(k, f.nulls)
                self.values.append((str(f.column), ("string", k, lo, hi, valid)))
                if f.kind == "agent":
                    self.values.append(("is_bot", ("is_bot", str(f.column))))
            elif f.kind in TIME_KINDS:
                self._time(k, f, lo, hi)
            elif f.kind == "request":
                self._request(k, lo, hi, f.nulls)
            elif f.kind == "status":
                self._status(k, f, lo, hi)
            elif f.kind == "int":
                values, valid, why = ints[whole.index(k)]
                self._fail(why == numbers.TOO_BIG, Reason.OUT_OF_RANGE)
                self._fail(why == numbers.NO_NUMBER, Reason.NO_MATCH)
                self.values.append((str(f.column), ("number", pa.int64(), values, valid)))
            elif f.kind == "ip_port":
                self._ip_port(k, f, lo, hi)
            elif f.kind in ("float", "duration"):
                values, null, good = floats[decimal.index(k)]
                self._fail(~good, Reason.NO_MATCH)
                # divided by the power of ten, not times its inverse (an inexact double): 9 ms is 0.009 s,
                # the double nearest it, where 9 * 1e-3 gives 0.009000000000000001
                scaled = values if f.scale == 1.0 else values / round(1 / f.scale)
                self.values.append((str(f.column), ("number", pa.float64(), scaled, ~null)))

    def _spans(self, k: int) -> tuple[IntArray, IntArray, BoolArray]:
        """Field ``k``'s starts, ends and nulls."""
        lo, hi = self.spans[k, 0], self.spans[k, 1]
        return lo, hi, self._field_null(k, self.plan.fields[k].nulls)

    @property
    def reason(self) -> Any:
        """Each line's reason (what it failed with first; NO_MATCH where it fits), as objects."""
        return np.array(_REASONS, dtype=object)[self.codes]

    def _fail(self, bad: BoolArray, reason: Reason) -> None:
        """Mark ``bad`` lines as not fitting, keeping the first reason found for each."""
        if not bad.any():  # most fields of most chunks: one pass instead of four
            return
        new = bad & self.ok
        self.codes[new] = _REASONS.index(reason)
        self.ok &= ~bad

    def _field_null(self, k: int, nulls: tuple[bytes, ...]) -> BoolArray:
        """:meth:`_null` of field ``k``'s spans, found with the other fields' where the compiled loops
        found them together (:func:`_null_fields`)."""
        found = self._nulls.get(k)
        return self._null(self.spans[k, 0], self.spans[k, 1], nulls) if found is None else found

    def _null(self, lo: IntArray, hi: IntArray, nulls: tuple[bytes, ...] = ()) -> BoolArray:
        """The log's empty value: "-", in JSON logs also "", and the field's own ``nulls``."""
        if compiled.loaded():
            return compiled_types.nulls(self.a, lo, hi, nulls, self.plan.escape == "json")
        if not nulls:
            null = is_dash(self.a, lo, hi)
        else:  # the first eight bytes of every value, gathered once for all spellings
            width = hi - lo
            word = self.where.word(lo)
            null = (width == 1) & ((word & np.uint64(0xFF)) == 45)
            for spelling in nulls:
                if spelling == b"-":
                    continue
                if len(spelling) > 8:
                    null |= (width == len(spelling)) & self.where.holds(lo, spelling)
                else:
                    expect, mask = _short(spelling)
                    null |= (width == len(spelling)) & ((word & mask) == expect)
        return null | (hi == lo) if self.plan.escape == "json" else null

    def _time(self, k: int, f: Field, lo: IntArray, hi: IntArray) -> None:
        """The time of the row (``ts``: its day partitions the output), or another time column, which
        may be "-" (null)."""
        kind = f.kind
        if kind == "time_local":
            us, days, good = (compiled_types.time_local if compiled.loaded() else parse_time_local)(
                self.a, lo, hi
            )
        elif kind == "time_iso8601":
            loop = compiled_types.time_iso8601 if compiled.loaded() else parse_time_iso8601
            us, days, good = loop(self.a, lo, hi)
        elif kind == "time_rfc3339":
            loop = compiled_types.time_rfc3339 if compiled.loaded() else parse_time_rfc3339
            us, days, good = loop(self.a, lo, hi)
        elif kind == "time_clf_ms":
            loop = compiled_types.time_clf_ms if compiled.loaded() else parse_time_clf_ms
            us, days, good = loop(self.a, lo, hi)
        else:
            us, days, good = self._epoch(lo, hi, f.scale)
        valid = None
        if f.column == "ts":
            self.days = days
        else:
            valid = ~self._field_null(k, f.nulls)
            good |= ~valid
        self._fail(~good, Reason.BAD_TIMESTAMP)
        self.values.append((str(f.column), ("number", pa.timestamp("us", tz="UTC"), us, valid)))

    def _status(self, k: int, f: Field, lo: IntArray, hi: IntArray) -> None:
        """A three-digit HTTP status; null where the field's ``nulls`` say so (and "-" then)."""
        # three digits, read from the word of every value's first bytes at once (less than half the time
        # of Arrow's digit check and cast: BENCHMARKS.md, "Design figures"): each of its three low bytes
        # is a digit when its high half is 3 and adding 6 does not carry into it
        if compiled.loaded():
            values, good = compiled_types.status(self.a, lo, hi)
        else:
            values, good = _status_numpy(self.where, lo, hi)
        valid = None
        if f.nulls:
            valid = ~self._field_null(k, f.nulls)
            good &= valid
            good |= ~valid
        self._fail(~good, Reason.NO_MATCH)
        keep = good if valid is None else good & valid
        self.values.append((str(f.column), ("number", pa.int16(), np.where(keep, values, 0), valid)))

    def _ip_port(self, k: int, f: Field, lo: IntArray, hi: IntArray) -> None:
        """``address:port`` split at its last colon (an IPv6 address holds colons; in brackets or
        not); "-" is null in both columns."""
        null = self._field_null(k, f.nulls)
        if compiled.loaded():
            ip_lo, ip_hi, port, use = compiled_types.ip_port(self.a, lo, hi, null)
        else:
            ip_lo, ip_hi, port, use = _ip_port_numpy(self.a, self.where, lo, hi, null)
        self._fail(~(use | null), Reason.NO_MATCH)  # neither a null nor an address:port
        self.values.append((str(f.column), ("string", k, ip_lo, ip_hi, use)))
        self.values.append((str(f.port), ("number", pa.int64(), port, use)))

    def _epoch(self, lo: IntArray, hi: IntArray, scale: float) -> tuple[IntArray, IntArray, BoolArray]:
        ((seconds, null, good),) = numbers.decimals(self.a, self.data, [(lo, hi, self._null(lo, hi))], False)
        return epoch_times(seconds * scale * 1e6, good & ~null)

    def _request(self, k: int, lo: IntArray, hi: IntArray, nulls: tuple[bytes, ...] = ()) -> None:
        """The request line split into method, path, query and protocol. One that does not split into
        three words (nginx logs what it could not parse with status 400: ``GET /``, an empty line, an
        SSH banner, TLS handshake bytes) keeps its row: those four are null and ``request`` holds the
        text as logged. "-" (no request at all) is null throughout."""
        # its nulls, found with the other fields' where the loops are loaded; else "-" only: an empty
        # request (a JSON log's "") is the text as logged
        dash = self._field_null(k, nulls) if nulls or k in self._nulls else is_dash(self.a, lo, hi)
        if compiled.loaded():
            (m_hi, t_lo, path_hi, query_lo, t_hi, p_lo), split, has_q = compiled_types.request(
                self.a, lo, hi, dash
            )
        else:
            m_hi, t_lo, path_hi, query_lo, t_hi, p_lo, split, has_q = _request_numpy(
                self.a, self.where, lo, hi, dash
            )
        p_hi = np.where(split, hi, lo)
        raw = ~dash & ~split
        valid = None if split.all() else split
        self.values += [
            ("method", ("string", k, lo, m_hi, valid)),
            ("path", ("string", k, t_lo, path_hi, valid)),
            ("query", ("string", k, query_lo, t_hi, has_q)),
            ("protocol", ("string", k, p_lo, p_hi, valid)),
            ("request", ("string", k, np.where(raw, lo, hi), hi, raw)),
        ]

    def batch(
        self,
        order: IntArray,
        decoded: dict[tuple[int, int], str],
        idx: IntArray,
        schema: pa.Schema | None = None,
    ) -> pa.RecordBatch:
        """The accepted lines ``order`` (positions among the typed lines), as a batch of ``schema``
        (the plan's, if None; the plan's columns and any others, null)."""
        return _build(self, order, decoded, idx, schema or self.plan.schema())


def _request_numpy(
    a: ByteArray, where: _Positions, lo: IntArray, hi: IntArray, dash: BoolArray
) -> tuple[IntArray, ...]:
    """:meth:`_Typed._request`'s cuts (see ``compiled_types.request``) with numpy: the first three spaces
    from each start."""
    spaces = where(32)
    i = np.searchsorted(spaces, lo)
    s1, s2, s3 = (
        spaces.take(i, mode="clip"),
        spaces.take(i + 1, mode="clip"),
        spaces.take(i + 2, mode="clip"),
    )
    split = ~dash & (s1 > lo) & (s2 > s1 + 1) & (s2 < hi - 1) & (s3 >= hi)
    # every span in order within the line (string_columns needs that): empty ones at the
    # request's start where it does not split, the raw text's empty at its end where it does
    t_lo, t_hi = np.where(split, s1 + 1, lo), np.where(split, s2, lo)
    m_hi, p_lo = np.where(split, s1, lo), np.where(split, s2 + 1, lo)
    first_q = find(a, t_lo, t_hi, "?")
    has_q = (first_q >= 0) & split
    path_hi = np.where(has_q, first_q, t_hi)
    query_lo = np.where(has_q, first_q + 1, t_hi)
    return m_hi, t_lo, path_hi, query_lo, t_hi, p_lo, split, has_q


def _status_numpy(where: _Positions, lo: IntArray, hi: IntArray) -> tuple[IntArray, BoolArray]:
    """:meth:`_Typed._status`'s values and which are three digits (see ``compiled_types.status``) with
    numpy."""
    word = where.word(lo) & np.uint64(0xFFFFFF)
    high = np.uint64(0xF0F0F0)
    good = (
        ((hi - lo) == 3) & ((word & high) == 0x303030) & (((word + np.uint64(0x060606)) & high) == 0x303030)
    )
    low = word & np.uint64(0x0F0F0F)
    values = (
        (low & np.uint64(0xF)) * 100 + ((low >> np.uint64(8)) & np.uint64(0xF)) * 10 + (low >> np.uint64(16))
    ).astype(np.int16)
    return values, good


def _ip_port_numpy(
    a: ByteArray, where: _Positions, lo: IntArray, hi: IntArray, null: BoolArray
) -> tuple[IntArray, ...]:
    """:meth:`_Typed._ip_port`'s split (see ``compiled_types.ip_port``) with numpy: the last colon before
    each end, the port's digits read as one word, no space before the colon."""
    colons, spaces = where(58), where(32)
    colon = colons.take(np.searchsorted(colons, hi) - 1, mode="clip")
    found = (colon > lo) & (colon < hi - 1)
    found &= np.searchsorted(spaces, colon) == np.searchsorted(spaces, lo)
    length = np.where(found, hi - colon - 1, 0)
    port, digits = _port(where.word(hi - 8), length)
    digits &= found & (length <= 5)
    use = digits & ~null
    ip_hi = np.where(use, colon, lo)
    bracket = (
        use & (a.take(lo, mode="clip") == 91) & (a.take(ip_hi - 1, mode="clip") == 93) & (ip_hi - lo > 2)
    )
    ip_lo = np.where(bracket, lo + 1, lo)
    ip_hi = np.where(bracket, ip_hi - 1, ip_hi)
    return ip_lo, ip_hi, np.where(use, port, 0), use


def _after_plus(plan: FormatPlan, a: ByteArray, spans: IntArray) -> IntArray:
    """``spans`` with the fields that skip a leading ``+`` (``Field.plus``) starting after it where
    they hold one: a copy then, as the caller's spans are the split's; else ``spans`` themselves."""
    skip = []
    for k in (k for k, f in enumerate(plan.fields) if f.plus):
        lo, hi = spans[k, 0], spans[k, 1]
        skip.append((k, (hi > lo) & (a.take(lo, mode="clip") == 43)))
    if not any(plus.any() for _, plus in skip):
        return spans
    spans = spans.copy()
    for k, plus in skip:
        spans[k, 0] += plus
    return spans


@lru_cache(maxsize=64)
def _null_fields(plan: FormatPlan) -> tuple[tuple[int, tuple[bytes, ...], bool], ...]:
    """The fields whose nulls :class:`_Typed` asks for, as :func:`compiled_types.nulls_at` takes them
    (field, spellings, whether nothing is null): what :meth:`_Typed._field_null` gives each. A request
    without ``nulls`` asks whether it is "-" only (an empty one, a JSON log's "", is the text as
    logged); a time read as ``ts`` and an epoch are not asked (an epoch's own nulls are not read)."""
    json = plan.escape == "json"
    wanted = []
    for k, f in enumerate(plan.fields):
        if f.kind in ("ip", "agent", "skip", "epoch") or (f.kind in TIME_KINDS and f.column == "ts"):
            continue
        if f.kind == "status" and not f.nulls:
            continue
        wanted.append((k, f.nulls, json and not (f.kind == "request" and not f.nulls)))
    return tuple(wanted)


def _build(
    typed: _Typed, order: IntArray, decoded: dict[tuple[int, int], str], idx: IntArray, schema: pa.Schema
) -> pa.RecordBatch:
    """The accepted lines ``order`` of ``typed`` (positions among its lines), as a batch of ``schema``:
    the string columns cut out of the chunk together, then the numbers; the columns that the plan
    lacks null."""
    import pyarrow.compute as pc  # lazily: see pipeline.formats.vector

    count = len(order)
    buf = pa.py_buffer(typed.data)
    strings = [(name, spec) for name, spec in typed.values if spec[0] == "string"]
    built: dict[str, pa.Array] = {}
    every = typed.ok.all()  # (then the masks are the columns' own)
    valid = [None if spec[4] is None else spec[4] if every else spec[4] & typed.ok for _, spec in strings]
    for (name, _), v in zip(strings, valid, strict=True):
        # e.g. the raw request: null in almost every chunk (v is false on the lines left out)
        if v is not None and not v.any():
            built[name] = pa.nulls(count, pa.string())
    valid = [v for (name, _), v in zip(strings, valid, strict=True) if name not in built]
    strings = [(name, spec) for name, spec in strings if name not in built]
    if strings:
        lo = np.stack([spec[2] for _, spec in strings])
        hi = np.stack([spec[3] for _, spec in strings])
        if compiled.loaded():
            columns = compiled_types.string_columns(typed.a, lo, hi, order, valid)
        else:
            columns = string_columns(buf, lo, hi, order, valid)
        for (name, _), column in zip(strings, columns, strict=True):
            built[name] = column
    if decoded:  # JSON escapes: the decoded text replaces the raw span
        line_pos = {int(line): p for p, line in enumerate(idx[order])}
        for name, spec in strings:
            patch = {line_pos[i]: text for (i, k), text in decoded.items() if k == spec[1] and i in line_pos}
            if patch:
                mask = np.zeros(count, dtype=bool)
                mask[list(patch)] = True
                texts = binary_array([patch[p].encode() for p in sorted(patch)], pa.string())
                built[name] = pc.replace_with_mask(built[name], bool_array(mask), texts)
    # every line in line order (the common case): the typed arrays are the columns, not copies of them
    whole = count == len(typed.ok) and (count == 0 or (order[0] == 0 and (np.diff(order) == 1).all()))
    for name, spec in typed.values:
        if spec[0] == "number":
            _, typ, values, valid = spec
            v = None if valid is None else valid if whole else valid[order]
            bitmap = None if v is None or v.all() else pa.py_buffer(np.packbits(v, bitorder="little"))
            data = np.ascontiguousarray(values if whole else values[order])
            built[name] = from_buffers(typ, count, [bitmap, data])
        elif spec[0] == "is_bot":
            built[name] = is_bot(built[spec[1]])
    names = schema.names  # (a lookup by name, or a field of the schema, builds Python objects each)
    columns = [
        built[name] if name in built else pa.nulls(count, schema.field(i).type)
        for i, name in enumerate(names)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def parse_time_iso8601(a: ByteArray, lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
    """Parse ``yyyy-mm-ddTHH:MM:SS+hh:mm`` (nginx's ``$time_iso8601``) at ``a[lo:hi]`` for every line
    at once: microseconds since the epoch (UTC), the UTC day and a validity mask."""
    ok = (hi - lo) == _ISO_WIDTH
    t = windows(a, lo, _ISO_WIDTH)
    digits = t[:, _ISO_DIGITS] - 48
    ok &= (digits <= 9).all(axis=1) & (t[:, _ISO_SEP_POS] == _ISO_SEP_VAL).all(axis=1)
    ok &= (t[:, 19] == 43) | (t[:, 19] == 45)
    d = digits.T.astype(np.int64)
    year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3]
    month, day = d[4] * 10 + d[5], d[6] * 10 + d[7]
    hour, minute, sec = d[8] * 10 + d[9], d[10] * 10 + d[11], d[12] * 10 + d[13]
    off_h, off_m = d[14] * 10 + d[15], d[16] * 10 + d[17]
    sign = np.where(t[:, 19] == 45, -1, 1)
    return civil_seconds(
        ok, year, month, day, hour, minute, sec, sign * (off_h * 3600 + off_m * 60), off_h, off_m
    )


__all__ = ["MAX_DIGITS", "PlanFormat", "Plans", "Split", "parse_time_iso8601", "scan"]
