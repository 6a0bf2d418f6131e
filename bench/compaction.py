"""Days of 15-minute incremental runs, before and after ``logpipe compact``: files, the time to read the
dataset with pyarrow, DuckDB and polars and the next incremental run's time (medians of alternating
rounds over the two copies), and the compaction's own time.

    python bench/compaction.py [--runs 96] [--lines 10000] [--days 1] [--rounds 7] [--compactions 3]
                               [--dir /tmp/compaction-bench]

Each run is a real incremental ``logpipe`` run (in process, parse inline) over a log that grew by
``--lines`` lines covering 15 minutes, so the day's partition gets one file per run, as from cron. With
``--days N`` the day's files are copied to N-1 more dates (and the record rebuilt to list them): the
files a month of runs leaves, without a month of runs.
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
from pipeline.output.dataset import read_rows, sizes  # noqa: E402
from pipeline.output.layout import Layout  # noqa: E402
from pipeline.output.record import write_json  # noqa: E402
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


def more_days(out: Path, days: int) -> None:
    """Copy the first day's partition to ``days - 1`` more dates, and record them in ``dataset.json``."""
    first = next(out.glob("date=*"))
    day = datetime.strptime(first.name, "date=%Y-%m-%d")
    for d in range(1, days):
        shutil.copytree(first, out / f"date={day + timedelta(days=d):%Y-%m-%d}")
    lay = Layout.of(out)
    write_json(lay.dataset, read_rows(out, sizes(out)).to_json(out))


def next_run(src: Path, out: Path) -> float:
    """The time of one incremental run over ``out`` (the log grew since its last run)."""
    cfg = validate(
        {
            "run": {"inputs": [str(src)], "output": str(out), "progress": "off", "incremental": True},
            "parse": {"executor": "inline"},
        }
    )
    t0 = time.perf_counter()
    result = run_pipeline(cfg)
    if result.exit_code != 0 or result.manifest.get("rebuilt"):
        raise SystemExit(f"the next run over {out} failed or rebuilt: {result.error}")
    return time.perf_counter() - t0


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

    def duck(query: str) -> Callable[[Path], int]:
        def read(out: Path) -> int:
            relation = duckdb.sql(query.format(f"read_parquet('{out}/**/*.parquet')"))
            assert relation is not None
            return int(relation.fetchall()[0][0])

        return read

    def polars(out: Path) -> int:
        return int(pl.scan_parquet(f"{out}/**/*.parquet").collect().height)

    by_path = "SELECT count(*) FROM (SELECT path, count(*) FROM {} WHERE status >= 500 GROUP BY path)"
    return {
        "pyarrow.dataset to_table": arrow,
        "polars scan collect": polars,
        "duckdb count(*)": duck("SELECT count(*) FROM {}"),
        "duckdb 5xx by path": duck(by_path),
    }


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=96)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--compactions", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/compaction-bench"))
    args = ap.parse_args(argv)
    shutil.rmtree(args.dir, ignore_errors=True)
    t0 = time.perf_counter()
    small = build(args.dir, args.runs, args.lines)
    print(f"{args.runs} incremental runs of {args.lines:,} lines: {time.perf_counter() - t0:.1f} s")  # noqa: T201
    more_days(small, args.days)
    sizes = Sizes(row_group_rows=128 * 1024, max_rows_per_file=4 * 1024 * 1024)  # the [write] defaults
    compaction.LINGER_S = 0.0  # the command keeps the old files 1 s more: not work, left out
    compact_s = []
    for k in range(args.compactions):
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
        rows = {read(small), read(big)}  # the same answer from both
        if len(rows) != 1:
            raise SystemExit(f"{name}: {rows} rows before and after")
        before, after = [], []
        for _ in range(args.rounds):
            before.append(timed(lambda r=read: r(small)))  # type: ignore[misc]
            after.append(timed(lambda r=read: r(big)))  # type: ignore[misc]
        b, a = statistics.median(before), statistics.median(after)
        print(f"| {name} ({rows.pop():,}) | {b:.3f} | {a:.3f} | {a / b:.2f} |")  # noqa: T201
    with (args.dir / "in" / "access.log").open("ab") as fh:  # 15 more minutes for the next run
        rng = random.Random(8)
        t = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=15 * args.runs)
        fh.write(b"".join(line(rng, t + timedelta(seconds=i % 900)) + b"\n" for i in range(args.lines)))
    before, after = [], []
    for k in range(max(args.rounds // 2, 1)):
        before.append(next_run(args.dir / "in", copy(small, args.dir / f"next-small{k}")))
        after.append(next_run(args.dir / "in", copy(big, args.dir / f"next-big{k}")))
    b, a = statistics.median(before), statistics.median(after)
    print(f"| the next incremental run ({args.lines:,} new lines) | {b:.3f} | {a:.3f} | {a / b:.2f} |")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
