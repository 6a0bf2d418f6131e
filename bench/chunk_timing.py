"""The parse of one 1.5 MiB chunk, in CPU milliseconds (median of rounds): the cost of the checks
that every Arrow array built from buffers goes through (``pipeline.arrays.from_buffers``), and of a
change between two trees.

    python bench/chunk_timing.py [--format combined] [--rounds 41]
    PYTHONPATH=/tmp/base python bench/chunk_timing.py    # the same against another tree's pipeline

Run as a script (not ``-m``) so that ``PYTHONPATH`` picks the ``pipeline`` package that is timed. The
checks' own cost is below the noise of a whole parse on a shared machine, so it is measured apart: the
arrays one parse builds from buffers are recorded, then built again many times through the checked
constructor and through Arrow's own.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

log = logging.getLogger("chunk_timing")

ROOT = Path(__file__).resolve().parents[1]
CHUNK_BYTES = 1536 << 10
# a line of each format, varied by its number, repeated up to a chunk (the sample is combined only)
LINES = {
    "combined": (
        '10.0.{a}.{b} - - [01/Nov/2026:10:{m:02d}:{s:02d} +0000] "GET /p/{n}?q={a} HTTP/1.1" {st} {n} '
        '"https://example.org/{b}" "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/{a}"'
    ),
    "upstream_time": (
        '10.0.{a}.{b} - - [01/Nov/2026:10:{m:02d}:{s:02d} +0000] "GET /p/{n}?q={a} HTTP/1.1" {st} {n} '
        '"https://example.org/{b}" "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/{a}" '
        'rt=0.{b:03d} uct="0.001" uht="0.0{a:02d}" urt="0.0{a:02d}"'
    ),
}


def chunk(fmt: str) -> bytes:
    """Complete lines of ``fmt`` filling about 1.5 MiB."""
    lines, size, n = [], 0, 0
    while size < CHUNK_BYTES:
        a, b = n % 97, n % 251
        status = "200" if n % 7 else "404"
        line = LINES[fmt].format(a=a, b=b, m=n // 60 % 60, s=n % 60, n=n, st=status).encode() + b"\n"
        lines.append(line)
        size += len(line)
        n += 1
    return b"".join(lines)


def _swap(replacement: Callable[..., pa.Array]) -> Callable[[], None]:
    """Put ``replacement`` in place of the checked constructor in every module that calls it; returns
    the undo (a no-op for a tree before the checked constructor)."""
    from pipeline import arrays

    original = getattr(arrays, "from_buffers", None)
    if original is None:
        return lambda: None
    swapped = [
        module
        for name, module in list(sys.modules.items())
        if name.startswith("pipeline") and getattr(module, "from_buffers", None) is original
    ]
    for module in swapped:
        module.from_buffers = replacement  # type: ignore[attr-defined]

    def undo() -> None:
        for module in swapped:
            module.from_buffers = original  # type: ignore[attr-defined]

    return undo


def _raw(type_: pa.DataType, length: int, buffers: Any) -> pa.Array:
    bufs = [b if b is None or isinstance(b, pa.Buffer) else pa.py_buffer(b) for b in buffers]
    return pa.Array.from_buffers(type_, length, bufs)


def checks_ms(parse: Callable[[bytes, int], Any], data: bytes, repeat: int = 200) -> tuple[int, float, float]:
    """The arrays one parse of ``data`` builds from buffers, replayed ``repeat`` times through the
    checked constructor and through Arrow's own: how many, and the ms per chunk of each (min of 15)."""
    from pipeline import arrays

    if not hasattr(arrays, "from_buffers"):
        return 0, 0.0, 0.0
    calls: list[tuple[pa.DataType, int, list[Any]]] = []
    checked = arrays.from_buffers

    def record(type_: pa.DataType, length: int, buffers: Any) -> pa.Array:
        calls.append((type_, length, list(buffers)))
        return checked(type_, length, buffers)

    undo = _swap(record)
    try:
        parse(data, 1)
    finally:
        undo()
    times = {}
    for name, build in (("checked", checked), ("raw", _raw)):
        best = float("inf")
        for _ in range(15):
            t0 = time.thread_time()
            for _ in range(repeat):
                for type_, length, buffers in calls:
                    build(type_, length, buffers)
            best = min(best, (time.thread_time() - t0) * 1e3 / repeat)
        times[name] = best
    return len(calls), times["checked"], times["raw"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", default="combined", choices=sorted(LINES))
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from pipeline.formats import get_format
    from pipeline.runtime import tune_process

    tune_process()
    data = chunk(args.format)
    parse = get_format(args.format).parse
    for _ in range(3):  # warm: imports, caches
        parse(data, 1)
    parse_ms: list[float] = []  # CPU time of this thread: on a shared machine, wall time is mostly waiting
    for _ in range(args.rounds):
        t0 = time.thread_time()
        parse(data, 1)
        parse_ms.append((time.thread_time() - t0) * 1e3)
    import pipeline

    log.info("pipeline from %s", Path(pipeline.__file__).parent)
    lines = data.count(b"\n")
    log.info("%s, %.2f MiB chunk, %d lines", args.format, len(data) / 2**20, lines)
    log.info(
        "parse: median %.2f CPU-ms, min %.2f of %d", statistics.median(parse_ms), min(parse_ms), args.rounds
    )
    calls, checked, raw = checks_ms(parse, data)
    if calls:
        log.info(
            "the %d arrays it builds from buffers: %.3f ms checked, %.3f ms not: checks %.3f ms a chunk",
            calls,
            checked,
            raw,
            checked - raw,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
