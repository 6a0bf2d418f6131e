"""A :class:`~pipeline.report.panels.Panels`' whole state as bytes, and the merge of such a state into
another ``Panels``: what the history report keeps per data file (:mod:`pipeline.report.file_summaries`)
and merges for any date range.

A partial from :func:`~pipeline.report.panels.summarize` is one chunk's exact counts; a state is the
merge of any number of them, in the same bounded form as the run's own panels: top lists cut as
Misra-Gries summaries once they outgrow the budget (each with its ``delta``), distinct counts as sorted
hash sets or HyperLogLog registers, time buckets at the width the state's range needed. Merging states
gives what adding all their partials to one ``Panels`` gives: counts add, hash sets unite, registers
take the element-wise maximum, buckets coarsen to the wider width (each width divides the next), top
lists sum and their deltas add. So a history drawn from per-file states equals the report of one run
over the same rows wherever no file's state had to cut a list, and is within each list's stated
``delta`` otherwise.

Same container as the partials (a JSON header of scalars, then raw numpy buffers: ``_pack``), with its
own magic, so that a state is never taken for a partial or the other way round.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from pipeline.report.panels import (
    BUCKET_P,
    MAX_BUCKETS,
    PAIRS_EXACT,
    Panels,
    _binary,
    _binary_parts,
    _coarse_keys,
    _Distinct,
    _hll_update,
    _key,
    _pack,
    _unique_pairs,
    _unpack,
)

Arrays = dict[str, npt.NDArray[Any]]
STATE_MAGIC: Final = b"LPS1"


def dump(panels: Panels) -> bytes:
    """The whole state of ``panels`` (its buffered partials merged first)."""
    p = panels
    s: dict[str, Any] = {}
    a: Arrays = {}
    with p._lock:
        p._merge_tops(force=True)
        s |= {"seen": p._seen, "have": sorted(p._have), "rows": p._rows, "bytes": p._bytes}
        s |= {"bots": p._bots, "bot_rows": p._bot_rows, "static": p._static, "hosts": sorted(p._host_columns)}
        a["status"] = np.array(sorted(p._status.items()), np.int64).reshape(-1, 2).ravel()
        a["hours"] = p._hours
        s["deltas"] = {}
        for name, top in p._tops.items():
            a[f"t.{name}.off"], a[f"t.{name}.data"] = _binary_parts(top.keys)
            a[f"t.{name}.hits"] = top.hits
            if top.extra is not None:
                a[f"t.{name}.extra"] = top.extra
            s["deltas"][name] = top.delta
        lat = p._latency
        at = np.flatnonzero(lat.counts)
        a["lat.idx"], a["lat.n"] = at.astype(np.int64), lat.counts[at]
        s["lat"] = {"n": lat.n, "sum_us": lat.sum_us, "invalid": lat.invalid, "min": lat.min, "max": lat.max}
        s["capped"] = {
            name: [[v.hex(), n] for v, n in c.counts.items()] + [["other", c.other]]
            for name, c in p._capped.items()
        }
        _dump_distinct("visitors", p._visitors, s, a)
        _dump_by_time(p, s, a)
        _dump_buckets(p, s, a)
    return STATE_MAGIC + _pack(s, a)


def merge(panels: Panels, state: bytes) -> None:
    """Merge a state from :func:`dump` into ``panels`` (thread-safe, as ``Panels.add``)."""
    if state[:4] != STATE_MAGIC:
        raise ValueError("not a state from pipeline.report.panel_state.dump")
    s, a = _unpack(state[4:])
    p = panels
    with p._lock:
        p._seen |= bool(s["seen"])
        p._have.update(s["have"])
        p._rows += s["rows"]
        p._bytes += s["bytes"]
        p._bots += s["bots"]
        p._bot_rows += s["bot_rows"]
        p._static += s["static"]
        p._host_columns.update(s["hosts"])
        for code, n in a["status"].reshape(-1, 2).tolist():
            p._status[code] = p._status.get(code, 0) + n
        p._hours += a["hours"]
        for name, delta in s["deltas"].items():
            keys = _binary(a[f"t.{name}.off"].copy(), a[f"t.{name}.data"].copy())
            extra = a[f"t.{name}.extra"].copy() if f"t.{name}.extra" in a else None
            p._tops[name].add(keys, a[f"t.{name}.hits"].copy(), int(delta), extra)
        lat = s["lat"]
        p._latency.add(lat, a["lat.idx"], a["lat.n"])
        for name, entries in s["capped"].items():
            *kept, (_, other) = entries
            p._capped[name].add([bytes.fromhex(v) for v, _ in kept], [n for _, n in kept], other)
        _merge_distinct(p._visitors, _load_distinct("visitors", s, a))
        _merge_by_time(p, s, a)
        _merge_buckets(p, s, a)
        p._merge_tops(force=False)


def _dump_distinct(name: str, d: _Distinct, s: dict[str, Any], a: Arrays) -> None:
    s[name] = [d.p, d.limit]
    if d.exact is not None:
        a[f"{name}.set"] = d.exact
    else:
        assert d.regs is not None
        a[f"{name}.regs"] = d.regs


def _load_distinct(name: str, s: dict[str, Any], a: Arrays) -> _Distinct:
    p, limit = s[name]
    d = _Distinct(p, limit)
    if f"{name}.set" in a:
        d.exact = a[f"{name}.set"].copy()
    else:
        d.exact, d.regs = None, a[f"{name}.regs"].copy()
    return d


def _merge_distinct(into: _Distinct, other: _Distinct) -> None:
    """``into`` counts the union of both (as if every hash had been added to it)."""
    if other.exact is not None:
        into.add(other.exact)
        return
    assert other.regs is not None and other.p == into.p
    if into.exact is not None:
        regs = np.zeros(1 << into.p, np.uint8)
        _hll_update(regs, into.exact, into.p)
        into.exact, into.regs = None, regs
    assert into.regs is not None
    np.maximum(into.regs, other.regs, out=into.regs)


def _dump_by_time(p: Panels, s: dict[str, Any], a: Arrays) -> None:
    t = p._by_time
    days = sorted(t.requests)
    a["day.days"] = np.array(days, np.int64)
    a["day.requests"] = np.array([t.requests[d] for d in days], np.int64)
    s["day"] = {"dropped": t.dropped, "ips": sorted(t.ips), "hours": t.hours is not None}
    for day in sorted(t.ips):
        _dump_distinct(f"ip.{day}", t.ips[day], s, a)
    for hour, d in enumerate(t.hours or ()):
        _dump_distinct(f"iph.{hour}", d, s, a)


def _merge_by_time(p: Panels, s: dict[str, Any], a: Arrays) -> None:
    t, st = p._by_time, s["day"]
    t.dropped += st["dropped"]
    for day, n in zip(a["day.days"].tolist(), a["day.requests"].tolist(), strict=True):
        if t.floor is not None and day < t.floor:
            t.dropped += n
        else:
            t.requests[day] = t.requests.get(day, 0) + n
    for day in st["ips"]:
        if t.floor is None or day >= t.floor:
            other = _load_distinct(f"ip.{day}", s, a)
            if day in t.ips:
                _merge_distinct(t.ips[day], other)
            else:
                t.ips[day] = other
    if st["hours"]:
        if t.hours is None:
            t.hours = [_load_distinct(f"iph.{h}", s, a) for h in range(24)]
        else:
            for h in range(24):
                _merge_distinct(t.hours[h], _load_distinct(f"iph.{h}", s, a))
    t.trim()


def _dump_buckets(p: Panels, s: dict[str, Any], a: Arrays) -> None:
    """The time buckets' live rows only (from the first to the last bucket with data)."""
    s["time"] = None
    if p._ts_min is None or p._ts_max is None:
        return
    w = p._width
    first = _key(p._ts_min // 1_000_000, w)
    rows = slice(first - p._base, _key(p._ts_max // 1_000_000, w) - p._base + 1)
    s["time"] = {"min": p._ts_min, "max": p._ts_max, "width": w, "first": first}
    a["b.requests"] = p._requests[rows]
    if p._regs is not None:
        a["b.regs"] = p._regs[rows].ravel()
    if p._pairs is not None:
        a["b.pair_keys"], a["b.pair_hashes"] = p._pairs


def _merge_buckets(p: Panels, s: dict[str, Any], a: Arrays) -> None:
    """Buckets at the wider of both widths (and wider still if the joint range needs it)."""
    t = s["time"]
    if t is None:
        return
    width = p._span(t["min"], t["max"], t["width"])
    theirs = np.arange(len(a["b.requests"]), dtype=np.int64) + t["first"]
    rows = _coarse_keys(theirs, t["width"], width) - p._base
    np.add.at(p._requests, rows, a["b.requests"])
    if "b.regs" in a:
        if p._regs is None:
            p._regs = np.zeros((MAX_BUCKETS, 1 << BUCKET_P), np.uint8)
        np.maximum.at(p._regs, rows, a["b.regs"].reshape(len(rows), 1 << BUCKET_P))
    if p._pairs is None or "b.pair_keys" not in a:
        p._pairs = None
        return
    keys, hashes = _unique_pairs(
        np.concatenate([p._pairs[0], _coarse_keys(a["b.pair_keys"], t["width"], width)]),
        np.concatenate([p._pairs[1], a["b.pair_hashes"]]),
    )
    p._pairs = (keys, hashes) if len(keys) <= PAIRS_EXACT else None
