"""The engine on one 1.5 MiB chunk of the yardstick's lines, per line, in CPU microseconds (medians of
alternating rounds in one process): the whole parse of a chunk (``Format.parse``: split, typing, the
batch, its partitions by date) with the compiled loops and with the numpy engine, and the engine's scan
and batch alone (``engine.scan(...).build(None)``: split and typing) with each; and the split alone
with each candidate: the compiled loop, the numpy split, and Arrow's CSV tokenizer (space-separated,
double quotes; it reads only formats like ``combined``).

    python bench/engine_chunk.py [--rounds 21] [--formats combined,upstream,json,iso8601]

``iso8601`` is the combined chunk with its times as nginx's ``$time_iso8601``, also parsed with that
time typed by numpy and the rest compiled.

Run as a script (not ``-m``); the yardstick's generator (``../shared/bench``) writes the lines once into
``.bench/engine``.
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.csv as pa_csv  # noqa: E402

import pipeline.formats.kernels  # noqa: E402,F401  (the compiled loops, as a worker has them)
from bench.cli import FORMAT_SETTINGS  # noqa: E402
from pipeline.formats import compiled, compiled_types, engine  # noqa: E402
from pipeline.formats.engine import PlanFormat  # noqa: E402
from pipeline.formats.spec import plan_for  # noqa: E402
from pipeline.formats.vector import fast_candidates, line_bounds  # noqa: E402

log = logging.getLogger("engine_chunk")
CHUNK_BYTES = 1536 << 10
GENERATOR = ROOT.parent / "shared" / "bench" / "gen_access_logs.py"


# ``iso8601``: the combined lines with their time as nginx's $time_iso8601 writes it
ISO8601 = (
    '{nginx = \'$remote_addr - $remote_user [$time_iso8601] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"\'}'
)
_MONTHS = {
    m: i + 1
    for i, m in enumerate(b"JanFebMarAprMayJunJulAugSepOctNovDec"[k : k + 3] for k in range(0, 36, 3))
}
_TIME_LOCAL = re.compile(rb"\[(\d\d)/(\w{3})/(\d{4}):(\d\d:\d\d:\d\d) ([+-]\d\d)(\d\d)\]")


def _iso(m: re.Match[bytes]) -> bytes:
    day, month, year, clock, off_h, off_m = m.groups()
    return b"[%s-%02d-%sT%s%s:%s]" % (year, _MONTHS.get(month, 0), day, clock, off_h, off_m)


def chunk(fmt: str) -> bytes:
    """The second 1.5 MiB of complete lines of a yardstick file in ``fmt`` (0.1% malformed)."""
    if fmt == "iso8601":
        return _TIME_LOCAL.sub(_iso, chunk("combined"))
    out = ROOT / ".bench" / "engine" / fmt
    if not out.exists():
        cmd = [sys.executable, str(GENERATOR), str(out), "--files", "1", "--lines", "30000", "--format", fmt]
        subprocess.run(cmd, check=True)
    data = next(out.iterdir()).read_bytes()[CHUNK_BYTES : 3 * CHUNK_BYTES]
    start = data.index(b"\n") + 1
    return data[start : data.rindex(b"\n", 0, start + CHUNK_BYTES) + 1]


def _numpy_split(plan: Any, a: Any) -> None:
    starts, ends, newlines, crlf = line_bounds(a)
    cand = fast_candidates(a, starts, newlines, crlf) & ((ends - starts) <= 1 << 20)
    engine._fast_spans(plan, a, engine._Positions(a), starts, ends, cand)


def _arrow_csv(data: bytes) -> None:
    names = [f"c{i}" for i in range(10)]
    pa_csv.read_csv(
        pa.py_buffer(data),
        pa_csv.ReadOptions(column_names=names, use_threads=False, block_size=4 << 20),
        pa_csv.ParseOptions(
            delimiter=" ", quote_char='"', escape_char=False, invalid_row_handler=lambda r: "skip"
        ),
        pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
    )


def _time_by_numpy(call: Callable[[], object]) -> object:
    loop = compiled_types.time_iso8601
    compiled_types.time_iso8601 = engine.parse_time_iso8601
    try:
        return call()
    finally:
        compiled_types.time_iso8601 = loop


def contenders(fmt: str, data: bytes) -> dict[str, Callable[[], object]]:
    """What is timed for ``fmt``: name -> a call over the chunk."""
    key = tomllib.loads("f = " + (ISO8601 if fmt == "iso8601" else FORMAT_SETTINGS[fmt]))["f"]
    plan = plan_for(key)
    a = np.frombuffer(data, dtype=np.uint8)
    fmt_ = PlanFormat(key if isinstance(key, str) else next(iter(key.items())), plan)

    def numpy_engine() -> object:
        loaded = compiled.loaded
        compiled.loaded = lambda: False
        try:
            return fmt_.parse(data, 1)
        finally:
            compiled.loaded = loaded

    def numpy_scan() -> object:
        loaded = compiled.loaded
        compiled.loaded = lambda: False
        try:
            return engine.scan(plan, data, 1, 1 << 20, 2048).build(None)
        finally:
            compiled.loaded = loaded

    calls: dict[str, Callable[[], object]] = {
        "parse, compiled": lambda: fmt_.parse(data, 1),
        "parse, numpy": numpy_engine,
        "scan+build, compiled": lambda: engine.scan(plan, data, 1, 1 << 20, 2048).build(None),
        "scan+build, numpy": numpy_scan,
    }
    if fmt == "iso8601":  # the time's compiled loop against its numpy typing, all else compiled
        calls["parse, compiled, the time numpy"] = lambda: _time_by_numpy(lambda: fmt_.parse(data, 1))
    calls["split, compiled"] = lambda: compiled.split(plan, a, 1 << 20)
    calls["split, numpy"] = lambda: _numpy_split(plan, a)
    if fmt == "combined":
        calls["split, Arrow CSV tokenizer"] = lambda: _arrow_csv(data)
    return calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--formats", default="combined,upstream,json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for fmt in args.formats.split(","):
        data = chunk(fmt)
        lines = data.count(b"\n")
        calls = contenders(fmt, data)
        times: dict[str, list[float]] = {name: [] for name in calls}
        for call in calls.values():
            call()  # warm: the first call loads the compiled code
        for _ in range(args.rounds):
            for name, call in calls.items():
                t = time.process_time()
                call()
                times[name].append(time.process_time() - t)
        log.info("%s (%d lines, %d bytes a line):", fmt, lines, len(data) // lines)
        base = statistics.median(times["parse, numpy"])
        for name, ts in times.items():
            med = statistics.median(ts)
            log.info(
                "  %-28s %6.3f us/line  (the numpy parse takes %.2fx this)",
                name,
                med * 1e6 / lines,
                base / med,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
