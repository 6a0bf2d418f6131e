"""A day of 15-minute incremental runs, before and after ``logpipe compact``: files, the time to read the
dataset with pyarrow, DuckDB and polars (medians of alternating rounds over the two copies), and the
compaction's own time.

    python bench/compaction.py [--runs 96] [--lines 10000] [--rounds 7] [--dir /tmp/compaction-bench]

Each run is a real incremental ``logpipe`` run (in process, parse inline) over a log that grew by
``--lines`` lines covering 15 minutes, so the day's partition gets one file per run, as from cron.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import validate  # noqa: E402
from pipeline.output import compact as compaction  # noqa: E402
from pipeline.output.compact import Sizes, compact  # noqa: E402
from pipeline.output.layout import Layout  # noqa: E402
from pipeline.runner import run_pipeline  # noqa: E402
from pipeline.synthetic import line  # noqa: E402


def build(where: Path, runs: int, lines: int) -> Path:
    """The output of ``runs`` incremental runs, each over 15 more minutes of ``lines`` lines."""
    src, out = where / "in", where / "small"
    src.mkdir(parents=True)
    rng = random.Random(7)
    t = datetime(2026, 11, 1, tzinfo=UTC)
    step = timedelta(minutes=15) / lines
    cfg = validate(
        {
            "run": {"inputs": [str(src)], "output": str(out), "progress": "off", "incremental": True},
            "parse": {"executor": "inline"},
        }
    )
    for _ in range(runs):
        with (src / "access.log").open("ab") as fh:
            fh.write(b"".join(line(rng, t + step * i) + b"\n" for i in range(lines)))
        t += timedelta(minutes=15)
        result = run_pipeline(cfg)
        if result.exit_code != 0:
            raise SystemExit(f"run failed: {result.error}")
    return out


def copy(out: Path, to: Path) -> Path:
    shutil.copytree(out, to)
    shutil.copytree(Layout.of(out).meta, Layout.of(to).meta)
    return to


def readers() -> dict[str, Callable[[Path], int]]:
    import duckdb
    import polars as pl
    import pyarrow.dataset as ds

    def arrow(out: Path) -> int:
        return int(ds.dataset(out, format="parquet", partitioning="hive").to_table().num_rows)

    def duck(out: Path) -> int:
        query = f"SELECT count(*), sum(bytes), count(DISTINCT ip) FROM read_parquet('{out}/**/*.parquet')"
        relation = duckdb.sql(query)
        assert relation is not None
        return int(relation.fetchall()[0][0])

    def polars(out: Path) -> int:
        return int(pl.scan_parquet(f"{out}/**/*.parquet").collect().height)

    return {
        "pyarrow.dataset to_table": arrow,
        "duckdb count/sum/distinct": duck,
        "polars scan collect": polars,
    }


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=96)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/compaction-bench"))
    args = ap.parse_args(argv)
    shutil.rmtree(args.dir, ignore_errors=True)
    t0 = time.perf_counter()
    small = build(args.dir, args.runs, args.lines)
    print(f"{args.runs} incremental runs of {args.lines:,} lines: {time.perf_counter() - t0:.1f} s")  # noqa: T201
    sizes = Sizes(row_group_rows=128 * 1024, max_rows_per_file=4 * 1024 * 1024)  # the [write] defaults
    compaction.LINGER_S = 0.0  # the command keeps the old files 1 s more: not work, left out
    compact_s = []
    for k in range(3):
        work = copy(small, args.dir / f"work{k}")
        compact_s.append(timed(lambda w=work: compact(Layout.of(w), sizes, 2)))  # type: ignore[misc]
    big = work
    files = {name: len(list(p.rglob("*.parquet"))) for name, p in (("small", small), ("big", big))}
    mb = {
        name: sum(f.stat().st_size for f in p.rglob("*.parquet")) / 1e6
        for name, p in (("small", small), ("big", big))
    }
    print(f"compaction: median {statistics.median(compact_s):.2f} s of {compact_s}")  # noqa: T201
    print(f"files: {files['small']} -> {files['big']}; MB: {mb['small']:.1f} -> {mb['big']:.1f}")  # noqa: T201
    print("| reader | before s | after s | after/before |\n|---|---:|---:|---:|")  # noqa: T201
    for name, read in readers().items():
        rows = {read(small), read(big)}
        if len(rows) != 1:
            raise SystemExit(f"{name}: {rows} rows before and after")
        before, after = [], []
        for _ in range(args.rounds):
            before.append(timed(lambda r=read: r(small)))  # type: ignore[misc]
            after.append(timed(lambda r=read: r(big)))  # type: ignore[misc]
        b, a = statistics.median(before), statistics.median(after)
        print(f"| {name} ({rows.pop():,} rows) | {b:.3f} | {a:.3f} | {a / b:.2f} |")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
