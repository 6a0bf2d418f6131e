"""A key-mapped ``jsonl`` read of one 1.5 MiB chunk of the yardstick's JSON lines, per line, in CPU
microseconds (medians of alternating rounds in one process): the whole parse (``Format.parse``) with the
template read (:mod:`pipeline.formats.jsonl_template`), with the compiled read of any key order
(:mod:`pipeline.formats.jsonl_nested`) and with Arrow's read alone, each with the compiled loops loaded and
without (the numpy split).

    python bench/jsonl_chunk.py [--rounds 21]

Run as a script (not ``-m``); the yardstick's generator (``../shared/bench``) writes the lines once into
``.bench/engine/json`` (shared with ``bench/engine_chunk.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pipeline.formats.kernels  # noqa: E402,F401  (the compiled loops, as a worker has them)
from bench.cli import JSONL_MAPPING  # noqa: E402
from bench.engine_chunk import chunk  # noqa: E402
from pipeline.formats import compiled, get_format, jsonl_nested, jsonl_template  # noqa: E402

log = logging.getLogger("jsonl_chunk")
MAPPING = JSONL_MAPPING  # the yardstick's keys (gen_access_logs.py --format json)


@contextmanager
def variant(template: bool, nested: bool, loaded: bool) -> Iterator[None]:
    """The template read and the compiled read on or off, the compiled loops seen as loaded or not."""
    read, nested_read, is_loaded = jsonl_template.read, jsonl_nested.read, compiled.loaded
    try:
        if not template:
            jsonl_template.read = lambda *args: None
        if not nested:
            jsonl_nested.read = lambda *args: None
        if not loaded:
            compiled.loaded = lambda: False
        yield
    finally:
        jsonl_template.read, jsonl_nested.read, compiled.loaded = read, nested_read, is_loaded


def contenders(data: bytes) -> dict[str, Callable[[], object]]:
    fmt = get_format(("jsonl", json.dumps(MAPPING)))

    def call(template: bool, nested: bool, loaded: bool) -> Callable[[], object]:
        def run() -> object:
            with variant(template, nested, loaded):
                return fmt.parse(data, 1)

        return run

    return {
        "template, compiled split": call(True, False, True),
        "compiled read, any key order": call(False, True, True),
        "template, numpy split": call(True, False, False),
        "Arrow's read, loops loaded": call(False, False, True),
        "Arrow's read, not loaded": call(False, False, False),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = chunk("json")
    lines = data.count(b"\n")
    calls = contenders(data)
    results = {name: call() for name, call in calls.items()}  # warm, and the same result from each
    first = next(iter(results.values()))
    for name, result in results.items():
        if not (result.batch.equals(first.batch) and result.rejects.lines == first.rejects.lines):  # type: ignore[attr-defined]
            raise SystemExit(f"{name}: another result than {next(iter(results))}")
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, run in calls.items():
            t = time.process_time()
            run()
            times[name].append(time.process_time() - t)
    log.info("json (%d lines, %d bytes a line), %d rounds:", lines, len(data) // lines, args.rounds)
    base = statistics.median(times["Arrow's read, not loaded"])
    for name, ts in times.items():
        med = statistics.median(ts)
        log.info(
            "  %-28s %6.3f us/line  (Arrow's read takes %.2fx this)", name, med * 1e6 / lines, base / med
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
