"""The engine's side of its compiled loops (:mod:`pipeline.formats.kernels`), importable without Numba:
whether this process has them, and a plan turned into the arrays they read.

Only a process that imported the kernels runs them: a run's fork server before its warm-up (a spawned
worker at its start, the main process of an ``inline`` or ``thread`` run), as ``parse.compiled``
decides (:func:`pipeline.config_source.compiled_for`). Loading them costs ~0.9 s of CPU, which a small
run should not pay. Every other process runs the numpy engine, which gives the same results; the tests
hold the two equal.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from pipeline.formats.spec import FormatPlan, fixed_width, listy, plan_for, spaceless
from pipeline.formats.vector import BoolArray, ByteArray, IntArray

KERNELS = "pipeline.formats.kernels"

# byte classes of the split's tables (one table of 256 per field)
PLAIN = 0  # a byte a field may hold
STOP = 1  # the first byte of the literal after the field: the field ends at its first occurrence
LINE_END = 2  # \n, and \r (which is part of the line end only before a \n)
SPECIAL = 3  # not printable ASCII, or a backslash: only the per-line regex reads such a line
REFUSED = 4  # a byte this field may not hold on the quick split (a list separator, a space in a word)

OK, TRIED, OTHER = 0, 1, 2  # a line's status: split; printable but not split; the regex's (or a reject)


def loaded() -> bool:
    """Whether this process has imported the compiled loops (its warm-up did)."""
    return KERNELS in sys.modules


TO_END, WORD = 1, 2  # how a field with no literal after it ends (SplitTables.to_end)


@dataclass(frozen=True)
class SplitTables:
    """A plan as the arrays of the compiled split (:func:`pipeline.formats.kernels.split_lines`)."""

    quick: bool
    lits: ByteArray
    lit_lo: IntArray
    lit_hi: IntArray
    width: IntArray
    # 0: the field ends at a literal; TO_END: at the line end; WORD: there, not empty, not after a space
    to_end: ByteArray
    listy: BoolArray
    seek: BoolArray  # the fields that the whole split ends at the whole literal (engine._fast_spans)
    classes: ByteArray


@lru_cache(maxsize=64)
def split_tables(plan: FormatPlan) -> SplitTables:
    """The compiled split's view of ``plan``: the literals, how each field ends, and each byte's class
    in each field, so that the loop holds no rule of its own."""
    nf = len(plan.fields)
    joined = b"".join(plan.literals)
    sizes = np.array([len(x) for x in plan.literals], dtype=np.int64)
    lit_hi = np.cumsum(sizes)
    width = np.zeros(nf, dtype=np.int64)
    to_end = np.zeros(nf, dtype=np.uint8)
    lists = np.zeros(nf, dtype=bool)
    seek = np.zeros(nf, dtype=bool)
    base = np.full(256, PLAIN, dtype=np.uint8)
    base[:32] = base[127:] = base[92] = SPECIAL
    base[10] = base[13] = LINE_END
    classes = np.tile(base, (nf, 1))
    for k, f in enumerate(plan.fields):
        literal = plan.literals[k + 1]
        width[k] = fixed_width(f.kind, literal) or 0
        to_end[k] = 0 if literal else WORD if f.word else TO_END
        lists[k] = listy(plan, k)
        if lists[k]:  # the quick split leaves a list that holds a separator to the regex
            classes[k, [32, 44]] = REFUSED
        if spaceless(plan, k):
            classes[k, 32] = REFUSED
        if literal and not width[k]:
            classes[k, literal[0]] = STOP
            seek[k] = len(literal) > 1 and not lists[k] and not (f.quoted and plan.escape != "none")
            seek[k] &= not spaceless(plan, k)  # its first space must start the literal
    quick = all(32 <= b < 127 and b != 92 for b in joined)  # else no line is a fast-path candidate
    lits = np.frombuffer(joined + b"\0", dtype=np.uint8)  # never empty
    return SplitTables(quick, lits, lit_hi - sizes, lit_hi, width, to_end, lists, seek, classes)


def split(
    plan: FormatPlan, a: ByteArray, max_line_bytes: int, whole: bool = False
) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray]:
    """What :func:`~pipeline.formats.vector.line_bounds`, :func:`~pipeline.formats.vector.fast_candidates`
    and ``engine._fast_spans`` find, in one compiled pass: every line's start, end and status
    (:data:`OK`: split; :data:`TRIED`: a candidate the split could not take; :data:`OTHER`: not a
    candidate, or empty, or too long), the lines split and their spans (field, start/end, line). With
    ``whole``, the split of ``engine._fast_spans(..., whole=True)``: what the reference regex splits."""
    starts, ends, status, spans = _run(plan, a, max_line_bytes, every=False, whole=whole)
    return starts, ends, status, np.flatnonzero(status == OK), spans


def split_every(
    plan: FormatPlan, a: ByteArray, max_line_bytes: int
) -> tuple[IntArray, IntArray, IntArray] | None:
    """Every line's start and end and the spans of its fields when ``plan``'s split takes every line of
    the chunk; else None, found at the first line it does not take (so a chunk of another format's
    lines costs a line or so)."""
    starts, ends, _, spans = _run(plan, a, max_line_bytes, every=True, whole=False)
    return (starts, ends, spans) if spans.shape[2] == len(starts) else None


def split_servers(
    plans: tuple[FormatPlan, ...], a: ByteArray, max_line_bytes: int, counted: bytes
) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray]:
    """What :func:`split_variants` gives, found first by the first variant's own loop
    (:func:`split_every`: a chunk of its lines is split at the cost of one plan's split), counting the
    chunk's lines once for both."""
    lines = _line_count(a)
    starts, ends, _, spans = _run(plans[0], a, max_line_bytes, every=True, whole=False, lines=lines)
    if spans.shape[2] == len(starts):
        return starts, ends, np.zeros(lines, dtype=np.int64), np.arange(lines), spans
    return _variants(plans, a, max_line_bytes, counted, lines)


@dataclass(frozen=True)
class VariantTables:
    """Several plans' :class:`SplitTables` end to end, for :func:`pipeline.formats.kernels.split_variants`
    (``tables``: in the order it reads them; variant ``v``'s fields from ``field_base[v]``, its literals
    from ``lit_base[v]``), the ``counted`` bytes, how many of each every variant's literals hold
    (``need``), and which counts can rule out a variant before each (``useful``; the last row: any)."""

    tables: tuple[Any, ...]
    fields: tuple[int, ...]  # each variant's number of fields
    counted: ByteArray
    need: IntArray
    useful: BoolArray


@lru_cache(maxsize=64)
def variant_tables(plans: tuple[FormatPlan, ...], counted: bytes) -> VariantTables:
    """The compiled split's view of a format's variants, and of ``counted``."""
    ts = [split_tables(plan) for plan in plans]
    sizes = np.array([len(t.lits) for t in ts], dtype=np.int64)
    shift = np.cumsum(sizes) - sizes  # where each plan's literals start in the joined bytes
    fields = tuple(len(t.width) for t in ts)
    lit_counts = np.array([len(t.lit_lo) for t in ts], dtype=np.int64)
    tables = (
        np.array([t.quick for t in ts], dtype=np.bool_),
        np.concatenate([t.lits for t in ts]),
        np.concatenate([t.lit_lo + d for t, d in zip(ts, shift, strict=True)]),
        np.concatenate([t.lit_hi + d for t, d in zip(ts, shift, strict=True)]),
        (np.cumsum(lit_counts) - lit_counts).astype(np.int64),
        np.concatenate([t.width for t in ts]),
        np.concatenate([t.to_end for t in ts]),
        np.concatenate([t.listy for t in ts]),
        np.concatenate([t.seek for t in ts]),
        np.concatenate([t.classes for t in ts]),
        np.concatenate([[0], np.cumsum(fields)]).astype(np.int64),
    )
    joined = [b"".join(plan.literals) for plan in plans]
    need = np.array([[text.count(byte) for byte in counted] for text in joined], dtype=np.int64)
    need = need.reshape(len(plans), len(counted))
    useful = np.zeros((len(plans) + 1, len(counted)), dtype=np.bool_)
    for v in range(len(plans)):
        useful[v] = _ruling_out(need[:v] > need[v])
    useful[-1] = (need > 0).any(axis=0)
    return VariantTables(tables, fields, np.frombuffer(counted, dtype=np.uint8), need, useful)


def _ruling_out(more: BoolArray) -> BoolArray:
    """The bytes whose counts rule out the earlier variants that a count can rule out: a line that
    variant ``v`` split holds ``need[v]`` of each byte, so only a byte that an earlier one needs more
    of (``more[u, j]``) rules that one out. Each count is a pass over the line, and a byte that values
    hold too (a space) rules out less than the count says: for each earlier variant the first such
    byte in the order of ``counted`` (the rarest first)."""
    chosen = np.zeros(more.shape[1], dtype=np.bool_)
    for row in more:
        if row.any():
            chosen[int(np.argmax(row))] = True
    return chosen


def split_variants(
    plans: tuple[FormatPlan, ...], a: ByteArray, max_line_bytes: int, counted: bytes
) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray]:
    """Every line split by the first of ``plans`` that takes it (its first-occurrence split, then the
    whole-literal one), in one compiled pass: every line's start and end, its group (the variant that
    split it; -1: not a candidate; ``len(plans)``: a plain line no variant's literals fit, by its count
    of the ``counted`` bytes; ``len(plans) + 1``: one they fit that none split), the lines split and
    their spans (field, start/end, line; a variant's own fields first)."""
    return _variants(plans, a, max_line_bytes, counted, _line_count(a))


def _line_count(a: ByteArray) -> int:
    """The number of lines of a chunk of complete lines: what the loops' arrays are sized by."""
    if len(a) == 0 or a[-1] != 10:
        raise ValueError("chunk must consist of complete lines ending in \\n")
    return int(np.count_nonzero(a == 10))


def _variants(
    plans: tuple[FormatPlan, ...], a: ByteArray, max_line_bytes: int, counted: bytes, lines: int
) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray]:
    kernels = sys.modules[KERNELS]
    t = variant_tables(plans, counted)
    spans = np.empty((max(t.fields), 2, lines + 1), dtype=np.int64)  # the last line: the loop's scratch
    group = np.empty(lines, dtype=np.int64)
    starts = np.empty(lines, dtype=np.int64)
    ends = np.empty(lines, dtype=np.int64)
    found, taken = kernels.split_variants(
        a, max_line_bytes, *t.tables, t.counted, t.need, t.useful, spans, group, starts, ends
    )
    idx = np.flatnonzero((group >= 0) & (group < len(plans)))
    if found != lines or taken != len(idx):  # the loop's own counts, checked before anything reads them
        raise RuntimeError(f"compiled split: {found} lines and {taken} split of {lines}")
    return starts, ends, group, idx, spans[:, :, :taken]


def _run(
    plan: FormatPlan, a: ByteArray, max_line_bytes: int, every: bool, whole: bool, lines: int | None = None
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """The split of :func:`split` (``lines``: the chunk's, :func:`_line_count`, when the caller has it)."""
    kernels = sys.modules[KERNELS]
    lines = _line_count(a) if lines is None else lines
    t = split_tables(plan)
    spans = np.empty((len(plan.fields), 2, lines), dtype=np.int64)
    status = np.empty(lines, dtype=np.int8)
    starts = np.empty(lines, dtype=np.int64)
    ends = np.empty(lines, dtype=np.int64)
    found, taken = kernels.split_lines(
        a, max_line_bytes, every, t.quick, t.lits, t.lit_lo, t.lit_hi, t.width, t.to_end, t.listy,
        t.seek if whole else np.zeros_like(t.seek), t.classes, spans, status, starts, ends,
    )  # fmt: skip
    if not (found == lines or (every and found < lines)) or not 0 <= taken <= found:
        # the loop's own counts, checked before anything reads what it wrote
        raise RuntimeError(f"compiled split: {found} lines and {taken} split of {lines}")
    return starts[:found], ends[:found], status[:found], spans[:, :, :taken]


def split_separated(
    a: ByteArray, sep: int, starts: IntArray, ends: IntArray, lines: IntArray, fields: int
) -> tuple[BoolArray, IntArray, IntArray]:
    """Which of the lines ``lines`` the byte ``sep`` splits into ``fields`` fields (``fields - 1`` of
    it), and the spans (fields, lines split) of their fields, in one compiled pass over their bytes."""
    ok = np.zeros(len(lines), dtype=bool)
    if len(lines) == 0:
        none = np.zeros((fields, 0), dtype=np.int64)
        return ok, none, none
    # the loop reads the bytes of the lines without checking its indexes
    if lines.min() < 0 or lines.max() >= len(starts) or len(ends) != len(starts):
        raise ValueError(f"lines outside the {len(starts)} lines of the chunk")
    if starts[lines].min() < 0 or ends[lines].max() > len(a) or (ends[lines] < starts[lines]).any():
        raise ValueError(f"line bounds outside the chunk of {len(a)} bytes")
    spans = sys.modules[KERNELS].split_separated(
        a, sep, contiguous(starts), contiguous(ends), contiguous(lines), fields, ok
    )
    if spans.shape[2] != np.count_nonzero(ok):  # the loop's own count, checked before anything reads it
        raise RuntimeError(f"compiled split: {spans.shape[2]} of {len(lines)} lines into {fields} fields")
    return ok, spans[0, :fields], spans[1, :fields]


def contiguous(x: IntArray) -> IntArray:
    """``x`` as a C-contiguous int64 array (a copy only where it is a strided view): Numba compiles a
    loop once per layout of its arrays, and what ``compile_now`` compiled ahead is C-contiguous."""
    return np.ascontiguousarray(x, dtype=np.int64)


_WARM_UP = (
    b'127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] "GET /?q HTTP/1.1" 200 1 "-" "warm-up bot" rt=0.1 '
    b'uct="0.1, 0.2" uht="-" urt="1"\n'
)
# the server formats' own loops: the variants' split, RFC 3339 times, address:port, HAProxy's date
_WARM_UP_SERVERS = {
    "alb": b"http 2026-01-01T00:00:00.000001Z lb 10.0.0.1:1 10.0.0.2:80 0.1 0.1 0.1 200 200 1 1 "
    b'"GET / HTTP/1.1" "warm-up bot" - - arn "Root=1"\n',
    "haproxy": b"10.0.0.1:1 [01/Jan/2026:00:00:00.000] fe be/srv 0/0/0/0/0 200 1 - - ---- 1/1/1/1/0 0/0 "
    b'"GET / HTTP/1.1"\n',
}
# the W3C logs' split and typing: IIS's default fields (space-separated), CloudFront's (tab-separated)
_WARM_UP_CADDY = (
    b'{"level":"info","ts":1767225600.5,"request":{"remote_ip":"10.0.0.1","remote_port":"1","client_ip":'
    b'"10.0.0.1","method":"GET","uri":"/?q","headers":{"User-Agent":["warm-up bot"]}},"status":200,"size":1,'
    b'"duration":0.1}\n'
)
_WARM_UP_W3C = {
    "w3c": b"2026-01-01 00:00:00 10.0.0.1 GET / q 443 - 10.0.0.2 warm-up+bot - 200 0 0 1\n",
    "cloudfront": b"\t".join(
        [b"2026-01-01", b"00:00:00.5", b"SEA19", b"1", b"10.0.0.1", b"GET", b"d.cloudfront.net", b"/", b"200"]
        + [b"-", b"warm-up%20bot", b"q", b"-", b"Hit", b"id", b"example.org", b"https", b"1", b"0.001"]
        + [b"-"] * 14
    )
    + b"\n",
}


def compile_now() -> float:
    """Load the compiled loops and call each once, so that Numba compiles whatever its cache lacks (the
    first run after an install would); returns the seconds it took."""
    import importlib
    import time

    from pipeline.formats import engine, get_format
    from pipeline.formats.servers import Servers
    from pipeline.formats.w3c import W3c

    start = time.perf_counter()
    importlib.import_module(KERNELS)
    # read-only bytes, and the writable shared memory of the process pool: two kinds of array to Numba
    for writable in (False, True):
        data: bytes | memoryview = memoryview(bytearray(_WARM_UP)) if writable else _WARM_UP
        split(plan_for("combined"), np.frombuffer(data, dtype=np.uint8), 1000)
        engine.scan(plan_for("upstream_time"), data, 1, 1000, 100).build(None)  # and the typing's loops
        for name, line in _WARM_UP_SERVERS.items():
            data = memoryview(bytearray(line)) if writable else line
            Servers().load(name).scan(data, 1, 1000, 100).build(None)
        for name, line in _WARM_UP_W3C.items():
            data = memoryview(bytearray(line)) if writable else line
            W3c().load(name).scan(data, 1, 1000, 100).build(None)
        data = memoryview(bytearray(_WARM_UP_CADDY)) if writable else _WARM_UP_CADDY
        get_format("caddy").scan(data, 1, 1000, 100).build(None)  # the nested JSON read's loops
    return time.perf_counter() - start


def main() -> None:
    """``make run``: compile before the first run, and say so when that takes a while."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    seconds = compile_now()
    if seconds > 1:
        logging.getLogger("logpipe").info(
            "compiled the engine's loops in %.1f s (once: Numba caches them; docs/formats.md)", seconds
        )
