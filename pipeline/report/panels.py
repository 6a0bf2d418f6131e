"""Report panels (GoAccess-style) computed from the rows as they pass, in memory bounded by the config.

Two halves, so that the per-row work runs where the rows are and the main process only merges:

* :func:`summarize` runs in the parse worker, once per chunk, on the chunk's final rows. It reduces the
  chunk with vectorised Arrow/numpy (``dictionary_encode`` + ``bincount``; no Python loop per row, nor
  per distinct value) to a *partial*: bytes (a JSON header of scalars, then raw numpy buffers, cheaper
  to build than Arrow IPC of list columns for a few dozen small arrays).
* :class:`Panels` merges partials in the main process (``add`` is thread-safe) and renders
  :meth:`Panels.to_dict`.

What is exact and what is a sketch, and the bounds:

* Exact, because they are cheap: rows, bytes sent, bot share, status codes (one counter per code) and
  requests per time bucket. Buckets start at 60 s and are coarsened along :data:`WIDTHS` (each width
  divides the next, so buckets merge without loss; weeks start on Monday) so that the run's time range
  spans at most :data:`MAX_BUCKETS` buckets, whatever the range. The worker counts per minute.
* Also exact: requests per hour of day (UTC), and the methods and protocols up to
  :data:`~pipeline.report.sketches.CAP` distinct values each (the rest as ``other``). Request times go
  into a log-bucketed histogram, percentiles within 1 % (:mod:`pipeline.report.sketches`).
* Top lists (paths, 404 paths, user agents, bot agents, referrers, client IPs, virtual hosts, referring
  sites; and the weighted ones, :data:`WEIGHTED`: paths by total request time and by bytes, whose
  weights are sent aligned with the paths' keys, and which carry each path's rows): the worker counts its
  chunk exactly (every value it has: their number is bounded by the chunk's lines); the main process
  sums the chunks' counts exactly, batched, while the summaries of all lists fit ``budget`` bytes
  (:func:`budget_for`: ``read.chunk_bytes`` x :data:`BUDGET_CHUNKS`, clamped; a key's bytes plus
  :data:`ENTRY_BYTES` per value). Then, and only then, the largest list is cut to half its bytes as a
  mergeable Misra-Gries summary (Agarwal et al., "Mergeable summaries", PODS 2012): its largest counts
  are kept, the largest count not kept (``d``) is subtracted from them and added to the list's
  ``delta``. Guarantee: each count is a lower bound, the true count at most ``delta`` more, and a value
  not kept has at most ``delta`` hits. ``delta == 0`` means the list is exact; a cut list can depend on
  the order of the partials (within the bound); exact lists never do.
  Shown (:meth:`_TopK.top`): entries ordered by hits descending, ties by the value's bytes ascending (the
  deterministic tie order, as ``ORDER BY hits DESC, value``). Exact: the first ``top``, ranks exact.
  Cut: only the longest prefix of at most ``top`` entries each of which certainly outranks every
  value not shown (its count exceeds the next one's ``count + delta``), so the rows shown are certainly
  the top ones, never a 1-hit row above unseen 2-hit values; each with ``[low, high]`` hits and the range
  of ranks it may hold; possibly fewer rows than asked (``exact.top_lists_others_at_most`` says how
  many hits a value not shown may have). Keys longer than :data:`MAX_KEY_BYTES` are cut to that length
  (values sharing such a prefix are counted together), so memory does not depend on the longest line
  the config accepts.
* Unique visitors (as GoAccess: distinct ip + UTC date + user agent; rows without ts or ip are not
  visitors; a null agent counts as the empty one), for the run and per bucket, from a 64-bit hash of the
  visitor. Exact while small: the run's distinct hashes up to :data:`RUN_EXACT`, the distinct (bucket,
  hash) pairs up to :data:`PAIRS_EXACT` (exact up to 64-bit hash collisions, ~n^2/2^65). Beyond, a
  HyperLogLog: 2^:data:`RUN_P` one-byte registers for the run, 2^:data:`BUCKET_P` per bucket (one dense
  array for all buckets, updated in one ``np.maximum.at``), read with Ertl's improved estimator
  (arXiv:1702.01284; no bias tables, good over the whole range). Relative standard error 1.04/sqrt(2^p):
  0.81 % for the run, 1.6 % per bucket (``exact.visitors_rse``); an estimate above the requests it
  counts is shown as that many (a visitor is at least one request). HLLs merge by element-wise max, so
  neither coarsening nor the order of the partials changes them.

* The audience panels (:mod:`pipeline.report.audience`): browsers, operating systems, device families,
  countries, networks and static files are top lists like the others; request time by path is a hidden
  list of (path hash, histogram bucket) counts in the same budget, read for the top paths only and
  withheld once cut. Requests per UTC day are exact; distinct client IPs per day and per hour of day are
  :class:`_Distinct` sets (:class:`_IpsByTime`: the latest :data:`MAX_DAYS` days).

Why hand-written numpy and not the ``datasketches`` package (installed, compiled): its Python API takes
one item per call: ``hll_sketch.update`` once per row, the visitor key still to be built per row in
Python. ``frequent_strings_sketch.update(item, weight)`` can be fed once per distinct value of a chunk,
but that is still a Python call per value in the *main* process (the one that also collects and
writes); the numpy merge here is a few vectorised calls whatever the values. (What the panels cost a
run is measured in BENCHMARKS.md; figures quoted here would go stale.)
Python's ``hash()`` is salted per process, so the string hash is written here too (:func:`hash_binary`).

Memory in the main process, whatever the input: the buckets' HLL registers, MAX_BUCKETS * 2^BUCKET_P
bytes (~3.9 MiB, allocated once there are visitors), the exact pairs (<= 256 KiB) and run set
(<= 128 KiB), and for the top lists: their summaries (<= ``budget``), their buffered partials (at most
as much again, plus ``budget / MERGE_SHARE`` per list) and, while one list merges, about twice that
list's size three times over in temporaries (the concatenated keys, Arrow's hash table and the merged
dictionary): about 5 x ``budget`` in all at the peak, reached only by inputs whose distinct values
overflow the budget (measured: BENCHMARKS.md). Memory in a worker: per chunk only.

Strings from the logs are untrusted: they are handled as bytes throughout (Arrow ``binary``), never
validated as UTF-8, and decoded with ``errors="replace"`` only for the few values that are output.
Escaping for HTML is the renderer's job.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.arrays import binary_array, from_buffers, int64_array
from pipeline.report.audience import (
    FAMILY_COLUMNS,
    latency_keys,
    network_keys,
    path_quantiles,
    static_values,
)
from pipeline.report.sketches import CAP, CAP_BYTES, MAX_S, Capped, Latency, capped_keep, latency_partial

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

# Panel name -> the columns it needs. "rows" needs none and is always there.
NEEDS: Final[dict[str, tuple[str, ...]]] = {
    "over_time": ("ts",),
    "unique_visitors": ("ts", "ip", "user_agent"),
    "status": ("status",),
    "top_paths": ("path",),
    "not_found": ("path", "status"),
    "user_agents": ("user_agent",),
    "bots": ("user_agent", "is_bot"),
    "referrers": ("referrer",),
    "ips": ("ip",),
    "bot_share": ("is_bot",),
    "bytes_sent": ("bytes",),
    "hours": ("ts",),
    "latency": ("request_time",),
    "slow_paths": ("path", "request_time"),
    "methods": ("method",),
    "protocols": ("protocol",),
    "vhosts": ("host",),
    "referring_sites": ("referrer",),
    "path_bytes": ("path", "bytes"),
    "daily": ("ts",),
    "ips_by_time": ("ts", "ip"),
    "static_files": ("path",),
    "path_latency": ("path", "request_time"),
    # From the user_agent and geoip transforms' columns (pipeline.report.audience).
    "browsers": ("ua_family",),
    "operating_systems": ("os_family",),
    "devices": ("device_family",),
    "countries": ("geo_country",),
    "networks": ("geo_asn",),
}
PANELS: Final[tuple[str, ...]] = tuple(NEEDS)
# Lists ordered by a weight (request time in microseconds, bytes) that also carry each value's hits.
WEIGHTED: Final[tuple[str, ...]] = ("slow_paths", "path_bytes")
TOP_PANELS: Final[tuple[str, ...]] = (
    "top_paths",
    "not_found",
    "user_agents",
    "bots",
    "referrers",
    "ips",
    "vhosts",
    "referring_sites",
    *WEIGHTED,
    "static_files",
    *FAMILY_COLUMNS,
    "countries",
    "networks",
)
# Lists that share the top lists' budget but are not shown as lists: (path, request-time bucket) counts.
HIDDEN: Final[tuple[str, ...]] = ("path_latency",)
CAPPED: Final[tuple[str, ...]] = ("methods", "protocols")
# NEEDS names a column; these are the names the formats give it (docs/formats.md), the first present used.
ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "host": ("host", "http_host", "server_name", "vhost", "cs_host", "domain_name", "host_header"),
    "bytes": ("bytes", "bytes_sent"),
}
# The host of an absolute URL (scheme://[userinfo@]host[:port]...); other referrers have no site.
REFERRER_HOST: Final = r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?(?P<host>\[[^\]/]*\]|[^/?#:@]+)"

# The top lists' memory in the main process, as a multiple of read.chunk_bytes (the unit every other
# bound of a run is measured in), within [BUDGET_MIN, BUDGET_MAX]: 48 MiB for laptop.toml (enough to count
# ~1M distinct client IPs exactly), 128 MiB from the default chunk up.
BUDGET_CHUNKS: Final = 32
BUDGET_MIN: Final = 16 << 20
BUDGET_MAX: Final = 128 << 20
DEFAULT_BUDGET: Final = 128 << 20
# What an entry of a top list costs beside its key's bytes: an int32 offset and an int64 count.
ENTRY_BYTES: Final = 12
# Buffered partials of a list are merged once they hold more than the list's summary, or this share of
# the budget: each merge then does work in proportion to what it adds (no quadratic re-merging).
MERGE_SHARE: Final = 32
MAX_KEY_BYTES: Final = 1024
MAX_BUCKETS: Final = 1000
# Bucket widths in seconds. Each divides the next so that coarsening merges whole buckets. Past a week
# the width keeps doubling (see _width_for), so any time range fits in MAX_BUCKETS buckets.
WIDTHS: Final[tuple[int, ...]] = (60, 300, 900, 3600, 10800, 21600, 86400, 604800)
WEEK: Final = 604800
# Weeks start on Monday 00:00 UTC (1970-01-05), not on the epoch's Thursday. A multiple of a day, so
# days (and everything finer) still nest in weeks.
WEEK_ORIGIN: Final = 4 * 86400
MINUTE_US: Final = 60_000_000

RUN_P: Final = 14
RUN_EXACT: Final = 16384  # 128 KiB of hashes
BUCKET_P: Final = 12
# Exact (bucket, visitor) pairs are kept while there are at most this many (256 KiB).
PAIRS_EXACT: Final = 16384
# Days of requests and distinct IPs per day kept (the latest), and the exact IPs per day (16 KiB).
MAX_DAYS: Final = 400
DAY_EXACT: Final = 2048

_M64: Final = (1 << 64) - 1
# Odd 64-bit constants (splitmix64 / murmur3 fmix64); _P is the base of the polynomial string hash.
_C1: Final = np.uint64(0xFF51AFD7ED558CCD)
_C2: Final = np.uint64(0xC4CEB9FE1A85EC53)
_GOLD: Final = np.uint64(0x9E3779B97F4A7C15)
_P: Final = 0x100000001B3 * 0x9E3779B97F4A7C15 & _M64 | 1


# ---------------------------------------------------------------------------------------------------
# Hashing (vectorised). Python's hash() is salted per process, so workers would disagree: not usable.


def _fmix64(h: U64) -> U64:
    """murmur3's finaliser: every input bit affects every output bit (HLL needs uniform bits)."""
    h = h ^ (h >> np.uint64(33))
    h = h * _C1
    h = h ^ (h >> np.uint64(33))
    h = h * _C2
    return h ^ (h >> np.uint64(33))


def _powers(n: int) -> U64:
    """P**i mod 2**64 for i < n (uint64 products wrap: the arithmetic mod 2**64 wanted)."""
    out = np.ones(n, np.uint64)
    np.cumprod(np.full(n - 1, _P, np.uint64), out=out[1:])
    return out


# Exponents are taken mod 2**16 so that this table, and the worker's memory, stay small (512 KiB);
# bytes 64 KiB apart in one value then weigh the same, which only weakens the hash of such huge values.
_POW: Final = _powers(1 << 16)


def _offsets(arr: pa.Array) -> tuple[npt.NDArray[np.int64], U8]:
    """Value offsets and data bytes of a binary/large_binary array (no copy of the data)."""
    bufs = arr.buffers()
    width = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    off = np.frombuffer(bufs[1], width)[arr.offset : arr.offset + len(arr) + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return off, data


_SHORT: Final = 64  # values up to this many bytes are hashed 8 bytes at a time
# _TAIL[r]: the low r bytes of a little-endian word.
_TAIL: Final = np.array([(1 << (8 * r)) - 1 for r in range(9)], np.uint64)
_ONE: Final = np.uint64(1)
_S63: Final = np.uint64(63)


def hash_binary(arr: pa.Array) -> U64:
    """A 64-bit hash of each value of a binary array, the same in every process; nulls hash like b"".

    Values up to _SHORT bytes (ips, most paths): one vectorised round per 8-byte word, ``h = (h ^ word)
    * C``, the word read at any byte offset from two aligned loads (numpy's unaligned gathers are
    slower); at most _SHORT / 8 rounds. Longer values (agents, referrers): a polynomial hash, sum(b_i *
    P**i) computed for all of them at once with one ``reduceat``; its cost is proportional to their
    bytes, however long the longest. Both end with murmur3's finaliser so that every bit is uniform.
    Words are read little-endian: the hash is the same for every process on one machine, which is all
    the partials need.
    """
    off, data = _offsets(arr)
    lo, hi = int(off[0]), int(off[-1])
    starts = off[:-1] - lo
    lengths = np.diff(off)
    h = lengths.astype(np.uint64) * _GOLD
    if len(h) == 0:
        return h
    padded = np.zeros(((hi - lo) // 8 + 2) * 8, np.uint8)
    padded[: hi - lo] = data[lo:hi]
    aligned = padded.view(np.uint64)
    short = lengths <= _SHORT
    rounds = (int(lengths[short].max(initial=0)) + 7) // 8
    for k in range(rounds):
        pos = starts + 8 * k
        j = np.minimum(pos >> 3, len(aligned) - 2)  # values already done may point past the end
        shift = ((pos & 7) << 3).astype(np.uint64)
        # (x << 1) << (63 - s) rather than x << (64 - s): a shift by 64 is not defined.
        word = (aligned[j] >> shift) | ((aligned[j + 1] << _ONE) << (_S63 - shift))
        left = lengths - 8 * k
        word &= _TAIL[np.clip(left, 0, 8)]
        h = np.where((left > 0) & short, (h ^ word) * _C1, h)
    long = np.flatnonzero(~short)
    if len(long):
        h[long] ^= _poly_hash(padded, starts[long], lengths[long])
    return _fmix64(h)


def _poly_hash(data: U8, starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]) -> U64:
    """sum(b_i * P**(i mod 2**16)) mod 2**64 over each (non-empty) value's bytes b_0.., vectorised."""
    firsts = np.cumsum(lengths) - lengths  # where each value starts among these values' bytes
    rel = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(firsts, lengths)
    terms = data[rel + np.repeat(starts, lengths)] * _POW[rel & 0xFFFF]
    return np.add.reduceat(terms, firsts)


# ---------------------------------------------------------------------------------------------------
# HyperLogLog with an exact small mode.


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        z_old = z
        z += x * y
        y += y
        if z == z_old:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        z_old = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == z_old:
            return z / 3.0


def hll_estimate(regs: U8, p: int) -> float:
    """Ertl's improved raw estimator (arXiv:1702.01284, algorithm 6) for 64-bit hashes."""
    m, q = 1 << p, 64 - p
    c = np.bincount(regs, minlength=q + 2)
    z = m * _tau(1.0 - float(c[q + 1]) / m)
    for k in range(q, 0, -1):
        z = 0.5 * (z + float(c[k]))
    z += m * _sigma(float(c[0]) / m)
    return m * m / (2.0 * math.log(2.0)) / z


def _hll_update(regs: U8, hashes: U64, p: int, base: npt.NDArray[np.int64] | None = None) -> None:
    """Fold hashes into registers; ``base``: per hash, the offset of its sketch in ``regs`` (many
    sketches side by side in one flat array, updated in one call)."""
    q = 64 - p
    idx = (hashes >> np.uint64(q)).astype(np.intp)
    if base is not None:
        idx += base
    rest = hashes & np.uint64((1 << q) - 1)
    # Bit length from the float exponent: exact because rest < 2**q <= 2**53 (p >= 11).
    _, bits = np.frexp(rest.astype(np.float64))
    rho = (q + 1 - bits).astype(np.uint8)  # position of the first 1 bit; q + 1 when rest == 0
    np.maximum.at(regs, idx, rho)


class _Distinct:
    """Distinct 64-bit hashes: a sorted set up to ``limit`` values, then a HyperLogLog of 2**p bytes."""

    __slots__ = ("exact", "limit", "p", "regs")

    def __init__(self, p: int, limit: int) -> None:
        self.p, self.limit = p, limit
        self.exact: U64 | None = np.zeros(0, np.uint64)
        self.regs: U8 | None = None

    def add(self, hashes: U64) -> None:
        if self.exact is not None:
            both = np.union1d(self.exact, hashes)
            if len(both) <= self.limit:
                self.exact = both
                return
            self.exact = None
            self.regs = np.zeros(1 << self.p, np.uint8)
            hashes = both
        assert self.regs is not None
        _hll_update(self.regs, hashes, self.p)

    def count(self) -> int:
        if self.exact is not None:
            return len(self.exact)
        assert self.regs is not None
        return round(hll_estimate(self.regs, self.p))


# ---------------------------------------------------------------------------------------------------
# The partial: a small header (JSON: scalars and the list of arrays) and the arrays' raw bytes.
# Raw buffers cost a memcpy; Arrow IPC of one row of list columns builds a schema and a batch per chunk
# for the same few dozen small arrays.

_MAGIC: Final = b"LPP1"
_ALIGN: Final = 8


def _pack(scalars: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> bytes:
    parts: list[bytes | memoryview] = []
    layout: list[list[Any]] = []
    for name, arr in arrays.items():
        layout.append([name, arr.dtype.str, len(arr)])
        parts.append(np.ascontiguousarray(arr).data)
        if arr.nbytes % _ALIGN:
            parts.append(b"\0" * (-arr.nbytes % _ALIGN))  # keep every array aligned for numpy
    header = json.dumps({"s": scalars, "a": layout}).encode()
    header += b" " * (-(len(header) + 8) % _ALIGN)
    return b"".join([_MAGIC, len(header).to_bytes(4, "little"), header, *parts])


def _unpack(partial: bytes) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    if partial[:4] != _MAGIC:
        raise ValueError("not a partial from pipeline.report.panels.summarize")
    size = int.from_bytes(partial[4:8], "little")
    header = json.loads(partial[8 : 8 + size])
    pos = 8 + size
    arrays: dict[str, npt.NDArray[Any]] = {}
    for name, dtype, n in header["a"]:
        arr = np.frombuffer(partial, np.dtype(dtype), n, pos)
        arrays[name] = arr
        pos += arr.nbytes + (-arr.nbytes % _ALIGN)
    return header["s"], arrays


def _binary_parts(arr: pa.Array) -> tuple[npt.NDArray[np.int32], U8]:
    """Offsets from 0 and the bytes of a binary array."""
    bufs = arr.buffers()
    off = np.frombuffer(bufs[1], np.int32)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    lo, hi = int(off[0]), int(off[-1])
    return (off - lo if lo else off), data[lo:hi]


def _binary(off: npt.NDArray[np.int32], data: U8) -> pa.Array:
    return from_buffers(pa.binary(), len(off) - 1, [None, pa.py_buffer(off), pa.py_buffer(data)])


# ---------------------------------------------------------------------------------------------------
# Worker side.


def _strings(batch: pa.RecordBatch, name: str) -> pa.Array | None:
    """The column as a binary array (bytes: never validated as UTF-8), or None if absent/unusable."""
    if name not in batch.schema.names:
        return None
    arr = batch.column(name)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    t = arr.type
    try:
        if pa.types.is_string(t) or pa.types.is_binary(t):
            return arr.view(pa.binary())  # the same buffers, no copy and no UTF-8 check
        if pa.types.is_large_string(t) or pa.types.is_large_binary(t):
            return arr.view(pa.large_binary()).cast(pa.binary())
        return arr.cast(pa.string()).cast(pa.binary())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _np(arr: pa.Array) -> npt.NDArray[Any]:
    """A fixed-width Arrow array as numpy, over its buffer (its null slots hold whatever they hold).
    ``Array.to_numpy`` imports pandas on the way (a fifth of a second in every worker, and a test
    keeps pandas out of the pipeline's processes)."""
    t = arr.type
    if pa.types.is_boolean(t):  # bit-packed: one byte each first
        return _np(arr.cast(pa.uint8())).astype(np.bool_)
    if pa.types.is_timestamp(t):
        arr, t = arr.view(pa.int64()), pa.int64()
    kind = "f" if pa.types.is_floating(t) else "u" if pa.types.is_unsigned_integer(t) else "i"
    dtype = np.dtype(f"{kind}{t.bit_width // 8}")
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * dtype.itemsize)


def _numbers(batch: pa.RecordBatch, name: str) -> tuple[I64, npt.NDArray[np.bool_] | None] | None:
    """An integer column as int64 numpy and its validity (None: no nulls), or None if absent/unusable."""
    if name not in batch.schema.names:
        return None
    arr = batch.column(name)
    if pa.types.is_timestamp(arr.type):
        # A timestamp is stored as a UTC instant whatever its tz: only the unit needs normalising.
        if arr.type.unit != "us":
            arr = arr.cast(pa.timestamp("us", tz=arr.type.tz))
        arr = arr.view(pa.int64())
    elif not pa.types.is_integer(arr.type):
        return None
    if arr.null_count == 0:
        return _np(arr).astype(np.int64, copy=False), None
    valid = _np(pc.is_valid(arr))
    # Not pc.fill_null: it imports pandas. Null slots hold whatever they hold: zeroed here.
    return np.where(valid, _np(arr).astype(np.int64, copy=False), 0), valid


def _bools(batch: pa.RecordBatch, name: str) -> npt.NDArray[np.bool_] | None:
    """A boolean column as numpy, nulls as False, or None if absent/unusable."""
    if name not in batch.schema.names or not pa.types.is_boolean(batch.schema.field(name).type):
        return None
    arr = batch.column(name)
    if arr.null_count:
        arr = pc.fill_null(arr, False)
    return _np(arr)


class _Encoded:
    """One string column, dictionary-encoded: one hashing pass serves counts, filters and visitors."""

    def __init__(self, arr: pa.Array) -> None:
        # Nulls get a code of their own (no fill pass over the indices); their count is zeroed.
        enc = pc.dictionary_encode(arr, null_encoding="encode")
        self.values: pa.Array = enc.dictionary
        self.codes: npt.NDArray[np.int32] = _np(enc.indices)
        self.null = -1  # the code of null, -1 when there is none
        if self.values.null_count:
            self.null = int(np.flatnonzero(_np(self.values.is_null()))[0])

    def counts(self, rows: npt.NDArray[np.bool_] | None = None) -> I64:
        codes = self.codes if rows is None else self.codes[rows]
        counts = np.bincount(codes, minlength=len(self.values))
        if self.null >= 0:
            counts[self.null] = 0
        return counts


def _counts(values: I64) -> tuple[I64, I64]:
    """Distinct values and their counts; a bincount (no sort) when their range is small."""
    if not len(values):
        return values, values
    lo, hi = int(values.min()), int(values.max())
    if hi - lo <= 4 * len(values) + 1024:
        per = np.bincount(values - lo)
        at = np.flatnonzero(per)
        return at + lo, per[at]
    u, c = np.unique(values, return_counts=True)
    return u, c.astype(np.int64)


def summarize(batch: pa.RecordBatch) -> bytes:
    """Reduce one chunk's final rows to a partial for :meth:`Panels.add`.

    Columns may be missing (their panels are then reported missing) or extra.
    """
    rows = batch.num_rows
    ts, status = _numbers(batch, "ts"), _numbers(batch, "status")
    bytes_name = _present(batch, "bytes")
    size = _numbers(batch, bytes_name) if bytes_name else None
    nbytes = batch.column(bytes_name) if size is not None and bytes_name else None
    ip, ua = _strings(batch, "ip"), _strings(batch, "user_agent")
    path, ref = _strings(batch, "path"), _strings(batch, "referrer")
    host_name = _present(batch, "host")
    host = _strings(batch, host_name) if host_name else None
    method, protocol = _strings(batch, "method"), _strings(batch, "protocol")
    rt = _floats(batch, "request_time")
    bots = _bools(batch, "is_bot")
    usable = {"ts": ts, "status": status, "ip": ip, "user_agent": ua, "path": path, "host": host}
    usable |= {"referrer": ref, "is_bot": bots, "bytes": nbytes, "request_time": rt}
    usable |= {"method": method, "protocol": protocol}
    families = {c: _strings(batch, c) for c in FAMILY_COLUMNS.values()}
    usable |= families
    geo = {"geo_country": _strings(batch, "geo_country"), "geo_as_org": _strings(batch, "geo_as_org")}
    asn = batch.column("geo_asn") if _numbers(batch, "geo_asn") is not None else None
    usable |= {"geo_country": geo["geo_country"], "geo_asn": asn}
    scalars: dict[str, Any] = {
        "rows": rows,
        "have": [p for p, cols in NEEDS.items() if all(usable[c] is not None for c in cols)],
        "deltas": {},
    }
    arrays: dict[str, npt.NDArray[Any]] = {}
    if nbytes is not None:
        scalars["bytes_sent"] = pc.sum(nbytes).as_py() or 0  # None when all are null
    if bots is not None:
        scalars["bot_rows"] = int(np.count_nonzero(bots))
    if rows == 0:
        return _pack(scalars, arrays)

    minutes, valid_ts = _minutes(ts, scalars, arrays)
    is404 = _status_counts(status, arrays)
    enc_ip = _Encoded(ip) if ip is not None else None
    enc_ua = _Encoded(ua) if ua is not None else None
    enc_path = _Encoded(path) if path is not None else None
    tops = _top_counts(enc_path, enc_ua, ref, enc_ip, bots, is404)
    tops |= {p: _counted(col) for p, c in FAMILY_COLUMNS.items() if (col := families[c]) is not None}
    if geo["geo_country"] is not None:
        tops["countries"] = _counted(geo["geo_country"])
    if asn is not None:
        tops["networks"] = _counted(network_keys(asn, geo["geo_as_org"]).cast(pa.binary()))
    if enc_path is not None:
        static = _np(pc.fill_null(static_values(enc_path.values), _FALSE))
        counts = tops["top_paths"][1]
        # positions among the keys top_paths sends (the values with rows): its keys are not sent twice
        arrays["static.sel"] = np.flatnonzero(static[counts > 0]).astype(np.int32)
        scalars["static_rows"] = int(counts[static].sum())
        if rt is not None:
            tops["path_latency"] = _latency_keys(enc_path, rt)
    if host is not None:
        scalars["host_column"] = host_name  # the page names it: haproxy's server_name is a backend server
        enc_host = _Encoded(host)
        tops["vhosts"] = (enc_host.values, enc_host.counts())
    _add_top_lists(tops, scalars, arrays)
    if rt is not None:
        seconds, ok, invalid = rt
        lat, arrays["lat.idx"], arrays["lat.n"] = latency_partial(seconds[ok])
        scalars["latency"] = lat | {"invalid": invalid}
    if enc_path is not None:
        _path_weights(enc_path, rt, size, scalars, arrays)
    for name, col in (("methods", method), ("protocols", protocol)):
        if col is not None:
            _capped_counts(name, _Encoded(col), scalars, arrays)
    if enc_ip is not None and enc_ua is not None and minutes is not None:
        arrays["v_minutes"], arrays["v_hashes"] = _visitors(
            enc_ip, enc_ua, minutes, valid_ts, scalars["minute0"]
        )
    if enc_ip is not None and minutes is not None:
        _ip_times(enc_ip, minutes, valid_ts, arrays)
    return _pack(scalars, arrays)


_FALSE: Final = from_buffers(pa.bool_(), 1, [None, pa.py_buffer(b"\0")])[0]  # (pa.scalar imports pandas)


def _counted(values: pa.Array) -> tuple[pa.Array, I64]:
    enc = _Encoded(values)
    return enc.values, enc.counts()


def _latency_keys(enc_path: _Encoded, rt: tuple[npt.NDArray[np.float64], Bools, int]) -> tuple[pa.Array, I64]:
    """(path, request-time bucket) keys and counts; the path hashed as top_paths sends it (cut)."""
    seconds, ok, _ = rt
    use = ok if enc_path.null < 0 else ok & (enc_path.codes != enc_path.null)
    values = enc_path.values
    if len(values) and int(np.diff(_offsets(values)[0]).max()) > MAX_KEY_BYTES:
        values = pc.binary_slice(values, 0, MAX_KEY_BYTES)
    return latency_keys(hash_binary(values), enc_path.codes[use].astype(np.int64), seconds[use])


def _ip_times(
    enc_ip: _Encoded, minutes: I64, valid_ts: Bools | None, arrays: dict[str, npt.NDArray[Any]]
) -> None:
    """Distinct (UTC hour, ip) pairs, from which the main process reads the distinct ips per day and per
    hour of day. Sorted by hour: the distinct hours and their pairs' number, then per pair the ip's
    position among the keys the ``ips`` list sends (which the main process hashes): 2 bytes a pair in
    most chunks (4 beyond 65,536 distinct ips), a few bytes per hour."""
    use = valid_ts
    if enc_ip.null >= 0:
        use = enc_ip.codes != enc_ip.null if use is None else use & (enc_ip.codes != enc_ip.null)
    codes = (enc_ip.codes if use is None else enc_ip.codes[use]).astype(np.int64)
    mins = minutes if use is None else minutes[use]
    if not len(mins):
        return
    hours = mins // 60
    hour0 = int(hours.min())
    n = max(len(enc_ip.values), 1)
    pairs = np.unique((hours - hour0) * n + codes)
    at, per = _counts(pairs // n + hour0)
    sent = np.flatnonzero(enc_ip.counts())  # the ips list's keys: the values with rows
    idx = np.searchsorted(sent, pairs % n)
    arrays["ip_hours"], arrays["ip_hour_pairs"] = at, per
    arrays["ip_idx"] = idx.astype(np.uint16 if len(sent) <= 1 << 16 else np.int32)


Bools = npt.NDArray[np.bool_]


def _minutes(
    ts: tuple[I64, Bools | None] | None, scalars: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]
) -> tuple[I64 | None, Bools | None]:
    """Time: requests per minute (exact); minutes are sent as offsets from the chunk's first minute.
    Returns each row's minute (None: no valid time) and which rows' times are valid (None: all)."""
    minutes = valid_ts = None
    if ts is not None:
        us, valid_ts = ts
        valid_us = us if valid_ts is None else us[valid_ts]
        if len(valid_us):
            minutes = us // MINUTE_US
            scalars["ts_min"], scalars["ts_max"] = int(valid_us.min()), int(valid_us.max())
            u, c = _counts(minutes if valid_ts is None else minutes[valid_ts])
            scalars["minute0"] = minute0 = int(u[0])
            arrays["minutes"], arrays["requests"] = u - minute0, c
            # Hour of day (UTC) from the distinct minutes: numpy's % of a negative minute is still 0..23.
            arrays["hours"] = np.bincount(u // 60 % 24, weights=c, minlength=24).astype(np.int64)
            days, first = u // 1440, np.flatnonzero(np.r_[True, np.diff(u // 1440) != 0])
            arrays["days"], arrays["day_requests"] = days[first], np.add.reduceat(c, first)
    return minutes, valid_ts


def _status_counts(
    status: tuple[I64, Bools | None] | None, arrays: dict[str, npt.NDArray[Any]]
) -> Bools | None:
    """Hits per status code; returns which rows are a 404 (None: no status column)."""
    if status is None:
        return None
    codes, valid_status = status
    u, c = _counts(codes if valid_status is None else codes[valid_status])
    arrays["status"], arrays["status_hits"] = u, c
    is404: Bools = codes == 404 if valid_status is None else (codes == 404) & valid_status
    return is404


def _top_counts(
    enc_path: _Encoded | None,
    enc_ua: _Encoded | None,
    ref: pa.Array | None,
    enc_ip: _Encoded | None,
    bots: Bools | None,
    is404: Bools | None,
) -> dict[str, tuple[pa.Array, I64]]:
    """Each top list's distinct values and their counts in the chunk, for the columns there are."""
    tops: dict[str, tuple[pa.Array, I64]] = {}
    if enc_path is not None:
        tops["top_paths"] = (enc_path.values, enc_path.counts())
        if is404 is not None:
            tops["not_found"] = (enc_path.values, enc_path.counts(is404))
    if enc_ua is not None:
        tops["user_agents"] = (enc_ua.values, enc_ua.counts())
        if bots is not None:
            tops["bots"] = (enc_ua.values, enc_ua.counts(bots))
    if ref is not None:
        enc_ref = _Encoded(ref)
        tops["referrers"] = (enc_ref.values, ref_counts := enc_ref.counts())
        # The site of each distinct referrer (not of each row), then its rows' counts summed per site.
        sites = _Encoded(_referrer_hosts(enc_ref.values))
        per_site = np.bincount(sites.codes, weights=ref_counts, minlength=len(sites.values))
        if sites.null >= 0:
            per_site[sites.null] = 0
        tops["referring_sites"] = (sites.values, per_site.astype(np.int64))
    if enc_ip is not None:
        tops["ips"] = (enc_ip.values, enc_ip.counts())
    return tops


def _add_top_lists(
    tops: dict[str, tuple[pa.Array, I64]], scalars: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]
) -> None:
    """Each top list's exact counts in the chunk (the values it has; their number is bounded by the
    chunk's lines), its keys cut to :data:`MAX_KEY_BYTES`."""
    for name, (values, counts) in tops.items():
        keep = np.flatnonzero(counts)
        # Usually every value of a dictionary is counted: then it is sent as it is, without a take.
        keys = values if len(keep) == len(values) else values.take(int64_array(keep))
        off, data = _binary_parts(keys)
        if len(keys) and int(np.diff(off).max()) > MAX_KEY_BYTES:
            off, data = _binary_parts(pc.binary_slice(keys, 0, MAX_KEY_BYTES))
        arrays[f"{name}.off"], arrays[f"{name}.data"], arrays[f"{name}.hits"] = off, data, counts[keep]
        scalars["deltas"][name] = 0


def _present(batch: pa.RecordBatch, column: str) -> str | None:
    """The first of a column's names (:data:`ALIASES`) that the batch has."""
    return next((n for n in ALIASES.get(column, (column,)) if n in batch.schema.names), None)


def _floats(batch: pa.RecordBatch, name: str) -> tuple[npt.NDArray[np.float64], Bools, int] | None:
    """A numeric column as float64, which values are usable (not null, finite, in [0, MAX_S]) and how
    many are not null but unusable (NaN, infinite, negative or above MAX_S: 11 days is no request's
    duration, and the microsecond sums stay far from int64's range), or None if absent/not numeric."""
    if name not in batch.schema.names:
        return None
    arr = batch.column(name)
    if not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)):
        return None
    values = _np(arr.cast(pa.float64()))
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(values) & (values >= 0) & (values <= MAX_S)
    bad = int(np.count_nonzero(~ok))
    if arr.null_count:
        valid = _np(pc.is_valid(arr))
        bad = int(np.count_nonzero(~ok & valid))
        ok &= valid
    return values, ok, bad


def _referrer_hosts(values: pa.Array) -> pa.Array:
    """The host of each referrer (ASCII letters lowered), null where it is not an absolute URL."""
    hosts = pc.struct_field(pc.extract_regex(values, REFERRER_HOST), [0])
    # ascii_lower has no binary kernel; it changes bytes A-Z only, so a string view of any bytes is safe.
    return pc.ascii_lower(hosts.view(pa.string())).view(pa.binary())


def _path_weights(
    enc_path: _Encoded,
    rt: tuple[npt.NDArray[np.float64], Bools, int] | None,
    size: tuple[I64, Bools | None] | None,
    scalars: dict[str, Any],
    arrays: dict[str, npt.NDArray[Any]],
) -> None:
    """Request time (in whole microseconds) and bytes per path: each weighted list's weights and rows
    per path, aligned with the keys sent for ``top_paths`` (the keys are not sent twice)."""
    weights: dict[str, tuple[npt.NDArray[np.float64], Bools | None]] = {}
    if rt is not None:
        seconds, ok, _ = rt
        weights["slow_paths"] = (np.rint(seconds * 1e6), ok)
    if size is not None:
        weights["path_bytes"] = (size[0].astype(np.float64), size[1])
    n = len(enc_path.values)
    keep = np.flatnonzero(enc_path.counts())  # the values top_paths sent
    for name, (values, valid) in weights.items():
        codes = enc_path.codes if valid is None else enc_path.codes[valid]
        w = values if valid is None else values[valid]
        # float64 sums are exact below 2**53 (us: 285 years; bytes: 9 PB) per chunk.
        arrays[f"{name}.hits"] = np.bincount(codes, weights=w, minlength=n).astype(np.int64)[keep]
        arrays[f"{name}.extra"] = np.bincount(codes, minlength=n)[keep].astype(np.int64)
        scalars["deltas"][name] = 0


def _capped_counts(
    name: str, enc: _Encoded, scalars: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]
) -> None:
    """A capped counter's partial: the chunk's ``CAP`` most frequent values (cut to ``CAP_BYTES``), the
    rest's hits as ``other``."""
    counts = enc.counts()
    keep, other = capped_keep(counts)
    keys = enc.values.take(int64_array(keep))
    if len(keys):
        keys = pc.binary_slice(keys, 0, CAP_BYTES)
    arrays[f"{name}.off"], arrays[f"{name}.data"] = _binary_parts(keys)
    arrays[f"{name}.hits"] = counts[keep]
    scalars[f"{name}.other"] = other


def _visitors(
    enc_ip: _Encoded, enc_ua: _Encoded, minutes: I64, valid_ts: Bools | None, minute0: int
) -> tuple[npt.NDArray[np.int32], U64]:
    """Visitors: a hash of (ip, UTC date, agent) per row, from the hashes of the chunk's distinct ips
    and agents (hashing the dictionaries, not the rows). Runs of the same visitor in the same minute are
    sent once (a page and its assets are usually consecutive lines); the main process dedupes the rest.
    Returns the minutes (offsets from ``minute0``) and the hashes."""
    use = valid_ts
    if enc_ip.null >= 0:
        use = enc_ip.codes != enc_ip.null if use is None else use & (enc_ip.codes != enc_ip.null)
    ip_codes = enc_ip.codes if use is None else enc_ip.codes[use]
    ua_codes = enc_ua.codes if use is None else enc_ua.codes[use]
    mins = minutes if use is None else minutes[use]
    # Drop repeats first, on the small integer codes, so that only the rest is hashed.
    new = np.ones(len(mins), np.bool_)
    new[1:] = (ip_codes[1:] != ip_codes[:-1]) | (ua_codes[1:] != ua_codes[:-1]) | (mins[1:] != mins[:-1])
    mins = mins[new]
    h_ip = hash_binary(enc_ip.values)[ip_codes[new]]
    h_ua = hash_binary(enc_ua.values)[ua_codes[new]]  # a null agent hashes like an empty one
    day = (mins // 1440).astype(np.uint64)
    return (mins - minute0).astype(np.int32), _fmix64((h_ip ^ (h_ua * _C2) ^ (day * _GOLD)) * _C1)


# ---------------------------------------------------------------------------------------------------
# Main side.


class _TopK:
    """The counts of one top list: exact sums of the chunks' exact counts while :class:`Panels`' budget
    holds them, a Misra-Gries summary once it has had to cut (:meth:`cut`); a buffer of partials to merge.

    Every count is a lower bound, at most ``delta`` under the truth; a value not kept has at most
    ``delta`` hits. ``delta == 0``: every count is exact.

    A weighted list (:data:`WEIGHTED`) counts a weight (microseconds, bytes) in ``hits`` and carries each
    value's rows in ``extra``, summed alongside: exact while the list is, else the rows counted while
    the value was kept (a lower bound).
    """

    def __init__(self, weighted: bool = False) -> None:
        self.keys: pa.Array = pa.nulls(0, pa.binary())  # (pa.array would import pandas)
        self.hits: I64 = np.zeros(0, np.int64)
        self.extra: I64 | None = np.zeros(0, np.int64) if weighted else None
        self.pending: list[tuple[pa.Array, I64, I64 | None]] = []
        self.pending_bytes = 0
        self.delta = 0
        self.shown: list[bytes] = []  # the values the last top() gave, as bytes

    @property
    def nbytes(self) -> int:
        """The summary's memory: its keys' bytes and ENTRY_BYTES per entry."""
        return _key_bytes(self.keys) + ENTRY_BYTES * len(self.keys)

    def add(self, keys: pa.Array, hits: I64, delta: int, extra: I64 | None = None) -> None:
        self.delta += delta
        if len(keys):
            self.pending.append((keys, hits, extra))
            self.pending_bytes += _key_bytes(keys) + ENTRY_BYTES * len(keys)

    def compact(self) -> None:
        """Sum the buffered partials into the summary (exact: nothing is cut here)."""
        if not self.pending:
            return
        keys = pa.concat_arrays([self.keys, *(k for k, _, _ in self.pending)])
        hits = np.concatenate([self.hits, *(h for _, h, _ in self.pending)])
        if self.extra is not None:
            extra = np.concatenate([self.extra, *(e for _, _, e in self.pending if e is not None)])
        self.pending, self.pending_bytes = [], 0
        enc = pc.dictionary_encode(keys)
        codes, n = _np(enc.indices), len(enc.dictionary)
        # float64 weights are exact for counts below 2**53.
        self.hits = np.bincount(codes, weights=hits, minlength=n).astype(np.int64)
        if self.extra is not None:
            self.extra = np.bincount(codes, weights=extra, minlength=n).astype(np.int64)
        self.keys = enc.dictionary

    def cut(self, target: int) -> None:
        """Misra-Gries: keep the largest counts whose entries fit ``target`` bytes; subtract from them
        ``d``, the largest count not kept (so every value with more than the new delta is kept)."""
        order = np.argsort(-self.hits, kind="stable")
        off = _offsets(self.keys)[0]
        sizes = (off[1:] - off[:-1])[order] + ENTRY_BYTES
        fit = int(np.searchsorted(np.cumsum(sizes), target, side="right"))
        if fit >= len(order):
            return
        d = int(self.hits[order[fit]])
        keep = np.flatnonzero(self.hits > d)
        self.keys = self.keys.take(int64_array(keep))
        self.hits, self.delta = self.hits[keep] - d, self.delta + d
        if self.extra is not None:
            self.extra = self.extra[keep]

    def top(self, n: int) -> tuple[list[list[Any]], dict[str, int]]:
        """The entries shown, ``[value, low, high, best rank, worst rank]`` (and the rows, for a weighted
        list), and what the list knows.

        Order: hits descending, then the value's bytes ascending (the deterministic tie order). With
        ``delta == 0`` the counts and ranks are exact and the first ``n`` are shown. Otherwise an
        entry's true count lies in ``[low, low + delta]``, and only the longest prefix of at most ``n``
        entries whose every entry certainly outranks every value not shown is given (possibly none):
        the shown values are then certainly the top ones, each with the range of ranks it may hold.
        """
        self.compact()
        delta = self.delta
        if not len(self.keys):
            return [], {"max_undercount": delta, "others_at_most": delta, "wanted": n}
        # Sort only the candidates: the n + 1 largest counts and their ties.
        cand = np.arange(len(self.hits))
        if len(cand) > n + 1:
            floor = np.partition(self.hits, len(self.hits) - n - 1)[len(self.hits) - n - 1]
            cand = np.flatnonzero(self.hits >= floor)
        keys = self.keys.take(int64_array(cand))
        order = _np(
            pc.sort_indices(
                pa.table({"h": int64_array(self.hits[cand]), "k": keys}),
                sort_keys=[("h", "descending"), ("k", "ascending")],
            )
        )
        low = self.hits[cand][order]
        shown = _certain_prefix(low, delta, min(n, len(low)))
        after = int(low[shown]) + delta if shown < len(low) else 0
        info = {"max_undercount": delta, "others_at_most": max(after, delta), "wanted": n}
        values = keys.take(int64_array(order[:shown])).to_pylist()
        self.shown = values
        entries = []
        for i, value in enumerate(values):
            lo = int(low[i])
            if delta:
                best = 1 + int(np.count_nonzero(low[:shown] > lo + delta))
                worst = int(np.count_nonzero(low[:shown] + delta >= lo))  # counts i itself
            else:
                best = worst = i + 1
            entry = [value.decode("utf-8", "replace"), lo, lo + delta, best, worst]
            if self.extra is not None:
                entry.append(int(self.extra[cand][order[i]]))
            entries.append(entry)
        return entries, info


def _certain_prefix(low: I64, delta: int, n: int) -> int:
    """The most leading entries (at most ``n``) that certainly outrank every entry after them and every
    value not kept (at most ``delta`` hits): the last shown count must exceed the next one's upper bound
    ``low[k] + delta``; a tie with a value not seen cannot be ordered, so it counts as a possible upset."""
    if delta == 0:
        return n
    for k in range(n, 0, -1):
        nxt = int(low[k]) if k < len(low) else 0
        if int(low[k - 1]) > nxt + delta:
            return k
    return 0


def budget_for(chunk_bytes: int) -> int:
    """The top lists' memory budget for a run whose chunks are ``chunk_bytes`` (``read.chunk_bytes``)."""
    return max(BUDGET_MIN, min(BUDGET_MAX, BUDGET_CHUNKS * chunk_bytes))


def _key_bytes(arr: pa.Array) -> int:
    if not len(arr):
        return 0
    off = _offsets(arr)[0]
    return int(off[-1] - off[0])


def _origin(width: int) -> int:
    return WEEK_ORIGIN if width % WEEK == 0 else 0


def _key(seconds: int, width: int) -> int:
    return (seconds - _origin(width)) // width


def _coarse_keys(keys: I64, width: int, wider: int) -> I64:
    """The keys of buckets ``width`` wide as keys of the buckets ``wider`` wide that hold them."""
    return (keys * width + _origin(width) - _origin(wider)) // wider


def _width_for(lo_s: int, hi_s: int, at_least: int) -> int:
    """The finest width, not finer than ``at_least``, that spans [lo_s, hi_s] in <= MAX_BUCKETS buckets."""
    ladder = [w for w in WIDTHS if w >= at_least]
    width = max(at_least, WIDTHS[-1]) // 2
    while True:
        width = ladder.pop(0) if ladder else width * 2
        if _key(hi_s, width) - _key(lo_s, width) < MAX_BUCKETS:
            return width


def _weighted(name: str, a: dict[str, npt.NDArray[Any]], paths: pa.Array) -> tuple[Any, ...]:
    """A weighted list's part of a partial, on the keys sent for top_paths; values without weight out."""
    hits, extra = a[f"{name}.hits"], a[f"{name}.extra"]
    keep = np.flatnonzero(hits)
    return name, paths.take(int64_array(keep)), hits[keep], 0, extra[keep]


def _iso(us: npt.NDArray[np.int64]) -> list[str]:
    # numpy formats any int64 instant (datetime would fail past the year 9999).
    strings: list[str] = np.datetime_as_string(us.astype("datetime64[us]"), unit="s").tolist()
    return [s + "Z" for s in strings]


def _unique_pairs(keys: I64, hashes: U64) -> tuple[I64, U64]:
    order = np.lexsort((hashes, keys))
    keys, hashes = keys[order], hashes[order]
    new = np.ones(len(keys), np.bool_)
    new[1:] = (keys[1:] != keys[:-1]) | (hashes[1:] != hashes[:-1])
    return keys[new], hashes[new]


def _runs(keys: I64) -> list[tuple[int, slice]]:
    """The runs of equal values of a sorted array: (value, its slice)."""
    cuts = [0, *(np.flatnonzero(np.diff(keys)) + 1).tolist(), len(keys)]
    return [(int(keys[lo]), slice(lo, hi)) for lo, hi in itertools.pairwise(cuts) if hi > lo]


class _IpsByTime:
    """Requests per UTC day (exact) and distinct client IPs per day and per hour of day (UTC).

    Distinct IPs as :class:`_Distinct`: exact up to :data:`DAY_EXACT` per day (:data:`RUN_EXACT` per
    hour of day), then a HyperLogLog. At most :data:`MAX_DAYS` days are kept, the latest: a day older
    than every day kept once there were more is dropped whenever its partials come (``days_dropped``),
    so the days shown are the run's latest ones, complete, in any merge order. Memory: at most
    MAX_DAYS * DAY_EXACT * 8 bytes (6.4 MiB) for the days, 24 * RUN_EXACT * 8 (3 MiB) for the hours.
    """

    def __init__(self) -> None:
        self.requests: dict[int, int] = {}
        self.ips: dict[int, _Distinct] = {}
        self.hours: list[_Distinct] | None = None
        self.floor: int | None = None  # days before this one are dropped
        self.dropped = 0  # requests on dropped days

    def add(self, a: dict[str, npt.NDArray[Any]]) -> None:
        if "days" in a:
            for day, n in zip(a["days"].tolist(), a["day_requests"].tolist(), strict=True):
                if self.floor is not None and day < self.floor:
                    self.dropped += n
                else:
                    self.requests[day] = self.requests.get(day, 0) + n
        if "ip_hours" in a:
            ips = hash_binary(_binary(a["ips.off"], a["ips.data"]))
            # Sorted by hour (the worker sends them so): each day is a run. Repeats within a day (one ip
            # in several hours) are left to _Distinct, whose set and registers ignore them.
            hours, hashes = np.repeat(a["ip_hours"], a["ip_hour_pairs"]), ips[a["ip_idx"]]
            for day, run in _runs(hours // 24):
                if self.floor is None or day >= self.floor:
                    self.ips.setdefault(day, _Distinct(RUN_P, DAY_EXACT)).add(hashes[run])
            if self.hours is None:
                self.hours = [_Distinct(RUN_P, RUN_EXACT) for _ in range(24)]
            order = np.argsort(hours % 24, kind="stable")
            for hour, run in _runs((hours % 24)[order]):
                self.hours[hour].add(hashes[order[run]])
        self.trim()

    def trim(self) -> None:
        """Keep the latest :data:`MAX_DAYS` days."""
        while len(self.requests) > MAX_DAYS:
            oldest = min(self.requests)
            self.dropped += self.requests.pop(oldest)
            self.ips.pop(oldest, None)
            self.floor = oldest + 1

    def exact(self) -> bool:
        sketches = [*self.ips.values(), *(self.hours or ())]
        return all(d.exact is not None for d in sketches)

    def to_dict(self) -> dict[str, Any]:
        days = sorted(self.requests)
        dates = _iso(np.array(days, np.int64) * 86_400_000_000) if days else []
        none = None if self.hours is None else 0  # no ip column, or no ip that day
        ips = [self.ips[d].count() if d in self.ips else none for d in days]
        return {
            "daily": [[t[:10], self.requests[d], n] for t, d, n in zip(dates, days, ips, strict=True)],
            "days_dropped": self.dropped,
            "hours_ips": [d.count() for d in self.hours] if self.hours is not None else [],
        }

    def clamped(self, hours: I64) -> dict[str, Any]:
        """:meth:`to_dict` with each estimate at most its requests (an IP is at least one request): the
        true count is never above, so the estimate only comes closer."""
        out = self.to_dict()
        out["daily"] = [[t, n, ips if ips is None else min(ips, n)] for t, n, ips in out["daily"]]
        out["hours_ips"] = [
            min(ips, int(n)) for ips, n in zip(out["hours_ips"], hours.tolist(), strict=False)
        ]
        return out


class Panels:
    """Merges partials from :func:`summarize` into the report's panels. ``add`` is thread-safe.

    ``top``: entries per list in :meth:`to_dict`; ``budget``: bytes for the top lists' summaries, all
    lists together (:func:`budget_for` derives it from the config; the module docstring has the bound).
    """

    def __init__(self, top: int = 20, budget: int = DEFAULT_BUDGET) -> None:
        if top < 1 or budget < 1024:
            raise ValueError(f"need top >= 1 and budget >= 1024 bytes, got top={top}, budget={budget}")
        self.top, self.budget = top, budget
        self._lock = threading.Lock()
        self._seen = False
        self._have: set[str] = set()
        self._rows = self._bytes = self._bots = self._bot_rows = 0
        self._status: dict[int, int] = {}
        self._tops = {name: _TopK(name in WEIGHTED) for name in (*TOP_PANELS, *HIDDEN)}
        self._static = 0
        self._by_time = _IpsByTime()
        self._latency = Latency()
        self._hours: I64 = np.zeros(24, np.int64)
        self._capped = {name: Capped() for name in CAPPED}
        self._host_columns: set[str] = set()
        self._visitors = _Distinct(RUN_P, RUN_EXACT)
        # Time buckets: dense rows base..base+MAX_BUCKETS-1 (the range never spans more buckets).
        self._ts_min: int | None = None
        self._ts_max: int | None = None
        self._width = WIDTHS[0]
        self._base = 0
        self._requests: I64 = np.zeros(MAX_BUCKETS, np.int64)
        self._regs: U8 | None = None  # (MAX_BUCKETS, 2**BUCKET_P) HLL registers, once there are visitors
        # Exact (bucket key, visitor) pairs while there are at most PAIRS_EXACT of them.
        self._pairs: tuple[I64, U64] | None = (np.zeros(0, np.int64), np.zeros(0, np.uint64))

    def add(self, partial: bytes) -> None:
        """Merge one partial from :func:`summarize`."""
        s, a = _unpack(partial)
        tops = [
            # Copies: a pending view would keep the whole partial alive.
            (
                name,
                _binary(a[f"{name}.off"].copy(), a[f"{name}.data"].copy()),
                a[f"{name}.hits"].copy(),
                int(d),
                None,
            )
            for name, d in s["deltas"].items()
            if name not in WEIGHTED
        ]
        paths = next((t[1] for t in tops if t[0] == "top_paths"), None)
        tops += [_weighted(name, a, paths) for name in WEIGHTED if paths is not None and name in s["deltas"]]
        if paths is not None and "static.sel" in a:
            sel = int64_array(a["static.sel"])
            tops.append(
                ("static_files", paths.take(sel), a["top_paths.hits"][a["static.sel"]].copy(), 0, None)
            )
        capped = [
            (name, _binary(a[f"{name}.off"], a[f"{name}.data"]).to_pylist(), a[f"{name}.hits"].tolist())
            for name in CAPPED
            if f"{name}.hits" in a
        ]
        with self._lock:
            self._seen = True
            self._have.update(s["have"])
            self._rows += s["rows"]
            self._bytes += s.get("bytes_sent", 0)
            if "bot_rows" in s:
                self._bots += s["bot_rows"]
                self._bot_rows += s["rows"]
            if "status" in a:
                for code, n in zip(a["status"].tolist(), a["status_hits"].tolist(), strict=True):
                    self._status[code] = self._status.get(code, 0) + n
            for name, keys, hits, delta, extra in tops:
                self._tops[name].add(keys, hits, delta, extra)
            for name, values, counts in capped:
                self._capped[name].add(values, counts, s[f"{name}.other"])
            if "latency" in s:
                self._latency.add(s["latency"], a["lat.idx"], a["lat.n"])
            if "hours" in a:
                self._hours += a["hours"]
            self._host_columns.update([s["host_column"]] if "host_column" in s else [])
            self._static += s.get("static_rows", 0)
            self._by_time.add(a)
            self._merge_tops(force=False)
            if "ts_min" in s:
                self._add_time(s, a)

    def _path_latency(self, shown: list[list[Any]]) -> list[list[Any]]:
        """``[path, timed rows, p50, p90, p99]`` for the top paths shown that have timed rows; none when
        the (path, bucket) counts outgrew the budget (a cut histogram is no histogram)."""
        store = self._tops["path_latency"]
        store.compact()
        if store.delta or not shown or not len(store.keys):
            return []
        raw = self._tops["top_paths"].shown
        hashes = hash_binary(binary_array(raw))
        rows = []
        for entry, q in zip(
            shown, path_quantiles(_binary_parts(store.keys)[1], store.hits, hashes), strict=True
        ):
            if q is not None:
                rows.append([entry[0], int(q["count"]), q["p50"], q["p90"], q["p99"]])
        return rows

    def _merge_tops(self, force: bool) -> None:
        """Merge the lists' buffered partials that are due (all with ``force``), then, while the
        summaries exceed the budget, halve the largest one (a Misra-Gries cut: it stops being exact)."""
        floor = self.budget // MERGE_SHARE
        for top in self._tops.values():
            if force or top.pending_bytes > max(top.nbytes, floor):
                top.compact()
        sizes = {name: top.nbytes for name, top in self._tops.items()}
        while sum(sizes.values()) > self.budget:
            name = max(sizes, key=lambda k: sizes[k])
            self._tops[name].cut(sizes[name] // 2)
            sizes[name] = self._tops[name].nbytes

    def _span(self, ts_min: int, ts_max: int, at_least: int) -> int:
        """Widen the time range to hold ``[ts_min, ts_max]`` (microseconds) in buckets at least
        ``at_least`` seconds wide: coarsened and moved as needed; the width."""
        lo = ts_min if self._ts_min is None else min(ts_min, self._ts_min)
        hi = ts_max if self._ts_max is None else max(ts_max, self._ts_max)
        width = _width_for(lo // 1_000_000, hi // 1_000_000, max(at_least, self._width))
        if width != self._width:
            self._coarsen(width)
        self._ts_min, self._ts_max = lo, hi
        first, last = _key(lo // 1_000_000, width), _key(hi // 1_000_000, width)
        if first < self._base or last >= self._base + MAX_BUCKETS:
            self._rebase(first)
        return width

    def _add_time(self, s: dict[str, Any], a: dict[str, npt.NDArray[Any]]) -> None:
        width = self._span(s["ts_min"], s["ts_max"], self._width)
        o, base, minute0 = _origin(width), self._base, s["minute0"]
        rows = ((a["minutes"] + minute0) * 60 - o) // width - base
        np.add.at(self._requests, rows, a["requests"])
        if "v_hashes" not in a:
            return
        hashes: U64 = a["v_hashes"]
        vrows = ((a["v_minutes"].astype(np.int64) + minute0) * 60 - o) // width - base
        self._visitors.add(hashes)
        if self._regs is None:
            self._regs = np.zeros((MAX_BUCKETS, 1 << BUCKET_P), np.uint8)
        _hll_update(self._regs.reshape(-1), hashes, BUCKET_P, vrows << BUCKET_P)
        if self._pairs is not None:
            keys, hs = _unique_pairs(
                np.concatenate([self._pairs[0], vrows + base]), np.concatenate([self._pairs[1], hashes])
            )
            self._pairs = (keys, hs) if len(keys) <= PAIRS_EXACT else None

    def _rebase(self, first: int) -> None:
        """Move the dense bucket rows so that row 0 is bucket ``first`` (data never lies before it)."""
        # Rows that fall off either end are empty: all data lies in [first, first + MAX_BUCKETS).
        shift = max(-MAX_BUCKETS, min(MAX_BUCKETS, self._base - first))
        src = slice(max(0, -shift), MAX_BUCKETS - max(0, shift))
        dst = slice(max(0, shift), MAX_BUCKETS - max(0, -shift))
        requests = np.zeros_like(self._requests)
        requests[dst] = self._requests[src]
        self._requests = requests
        if self._regs is not None:
            regs = np.zeros_like(self._regs)
            regs[dst] = self._regs[src]
            self._regs = regs
        self._base = first

    def _coarsen(self, width: int) -> None:
        """Merge the buckets into wider ones (each old bucket lies inside one new one)."""
        old_w = self._width
        self._width = width
        if self._ts_min is None or self._ts_max is None:
            return
        live = _key(self._ts_max // 1_000_000, old_w) - self._base + 1
        new_keys = _coarse_keys(np.arange(live) + self._base, old_w, width)
        starts = np.flatnonzero(np.r_[True, new_keys[1:] != new_keys[:-1]])
        rows = new_keys[starts] - new_keys[0]
        requests = np.zeros_like(self._requests)
        requests[rows] = np.add.reduceat(self._requests[:live], starts)
        self._requests = requests
        if self._regs is not None:
            regs = np.zeros_like(self._regs)
            regs[rows] = np.maximum.reduceat(self._regs[:live], starts, axis=0)
            self._regs = regs
        if self._pairs is not None:
            self._pairs = _unique_pairs(_coarse_keys(self._pairs[0], old_w, width), self._pairs[1])
        self._base = int(new_keys[0])

    def to_dict(self) -> dict[str, Any]:
        """The panels, JSON-serialisable (the module docstring says what is exact)."""
        with self._lock:
            self._merge_tops(force=True)
            tops, info = {}, {}
            for name in TOP_PANELS:
                tops[name], info[name] = self._tops[name].top(self.top)
            deltas = {name: self._tops[name].delta for name in TOP_PANELS}
            by_path = self._path_latency(tops["top_paths"])
            w, o = self._width, _origin(self._width)
            over_time: dict[str, list[Any]] = {"t": [], "requests": [], "visitors": []}
            first_last: list[str | None] = [None, None]
            exact_buckets = True
            if self._ts_min is not None and self._ts_max is not None:
                first_last = list(_iso(np.array([self._ts_min, self._ts_max], np.int64)))
                first = _key(self._ts_min // 1_000_000, w)
                n = _key(self._ts_max // 1_000_000, w) - first + 1
                rows = np.arange(n) + first - self._base
                over_time["t"] = _iso(((np.arange(n) + first) * w + o) * 1_000_000)
                over_time["requests"] = self._requests[rows].tolist()
                if self._pairs is not None and self._regs is not None:
                    counts = np.bincount(self._pairs[0] - self._base, minlength=MAX_BUCKETS)
                    over_time["visitors"] = counts[rows].tolist()
                elif self._regs is not None:
                    exact_buckets = False
                    # An estimate above the bucket's requests is clamped: the truth is never above.
                    est = [round(hll_estimate(self._regs[r], BUCKET_P)) for r in rows]
                    over_time["visitors"] = np.minimum(est, over_time["requests"]).tolist()
                elif "unique_visitors" in self._have:
                    over_time["visitors"] = [0] * n
            exact_visitors = self._visitors.exact is not None and exact_buckets
            return {
                "rows": self._rows,
                "first_ts": first_last[0],
                "last_ts": first_last[1],
                "bucket_s": w,
                "over_time": over_time,
                "unique_visitors": min(self._visitors.count(), self._rows),  # (clamped as above)
                "status": [[code, n] for code, n in sorted(self._status.items())],
                **tops,
                "bot_share": self._bots / self._bot_rows if self._bot_rows else 0.0,
                "bytes_sent": self._bytes,
                "hours": self._hours.tolist(),
                "vhosts_from": sorted(self._host_columns),
                "latency": self._latency.to_dict(),
                "path_latency": by_path,
                "static_rows": self._static,
                **self._by_time.clamped(self._hours),
                **{name: self._capped[name].to_list() for name in CAPPED},
                "exact": {
                    "top_lists": all(d == 0 for d in deltas.values()),
                    "visitors": exact_visitors,
                    # Per list: each hit count shown is a lower bound, the true count at most this much more.
                    "top_lists_max_undercount": deltas,
                    # Per list: the most hits any value not shown may have, and how many entries were wanted.
                    "top_lists_others_at_most": {k: v["others_at_most"] for k, v in info.items()},
                    "top_lists_wanted": self.top,
                    # Relative standard error of the visitor counts when they are estimates (0: exact).
                    "visitors_rse": 0.0 if exact_visitors else round(1.04 / math.sqrt(1 << BUCKET_P), 4),
                    # Methods and protocols: distinct values kept, the rest counted as "other".
                    "capped_at": CAP,
                    # Request time by path: exact histograms (within the latency's relative error) or none.
                    "path_latency": self._tops["path_latency"].delta == 0,
                    # Per-day and per-hour-of-day distinct IPs: exact (else HyperLogLog estimates).
                    "ips_by_time": self._by_time.exact(),
                },
                "missing": [p for p in PANELS if p not in self._have] if self._seen else list(PANELS),
            }
