"""The report of a date range of the history: a scan of the Parquet files against per-date summaries.

``python -m bench.history OUTPUT --days 30 [--rounds 3]``: OUTPUT is a dataset written by ``logpipe run``
(e.g. over ``logpipe sample --files 2 --lines 1000000``). Its fullest date is copied to ``--days`` dates
(``OUTPUT-days``, timestamps shifted by whole days, row groups as the writer's), so that the history
holds that many full days without generating and parsing as many logs. Then, alternating, ``--rounds``
times each, medians printed as JSON lines:

* ``scan``: ``logpipe report DAYS --to FILE`` in a subprocess (what a user waits for), wall and peak
  memory of the process tree (``bench.treepeak``);
* ``summaries``: the other design's read side, in this process: each date's summary (one partial of the
  whole date from :func:`pipeline.report.panels.summarize`, as a run would have to keep per date) read
  from disk and merged (:meth:`Panels.add`, :meth:`Panels.to_dict`); with their bytes on disk, which
  every run would have to write and every compaction and refresh keep true.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench import emit, log
from pipeline.report.history import COLUMNS, dataset_files
from pipeline.report.panels import Panels, summarize

DAY_US = 86_400_000_000


def spread(source: Path, days: int, target: Path) -> Path:
    """``target`` holding ``days`` copies of the fullest date of ``source``, a day apart."""
    files = dataset_files(source)
    day, rels = max(files.items(), key=lambda kv: sum(pq.read_metadata(source / r).num_rows for r in kv[1]))
    table = pa.concat_tables(pq.read_table(source / r) for r in rels)
    groups = pq.read_metadata(source / rels[0]).row_group(0).num_rows
    for k in range(days):
        when = day + timedelta(days=k)
        out = target / f"date={when.isoformat()}" / "part-20261205T000000-000000-w0-00000.parquet"
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        ts = table.column("ts")
        shifted = pc.add(ts.cast(pa.int64()), k * DAY_US).cast(ts.type)
        pq.write_table(
            table.set_column(table.schema.get_field_index("ts"), "ts", shifted),
            out,
            compression="zstd",
            row_group_size=groups,
        )
    log(f"{target}: {days} dates of {table.num_rows:,} rows ({day} shifted)")
    return target


def scan(dataset: Path, html: Path) -> dict[str, float]:
    """``logpipe report`` of the whole history in a subprocess: wall and the tree's peak memory."""
    cmd = [
        sys.executable,
        "-m",
        "bench.treepeak",
        sys.executable,
        "-m",
        "pipeline",
        "report",
        str(dataset),
        "--to",
        str(html),
    ]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    return {"wall_s": float(out["wall_s"]), "peak_mb": float(out["peak_pss_mb"])}


def write_summaries(dataset: Path, where: Path) -> int:
    """One summary per date (the partial of the whole date); their bytes in all."""
    total = 0
    for day, rels in dataset_files(dataset).items():
        cols = [c for c in pq.read_schema(dataset / rels[0]).names if c in COLUMNS]
        table = pa.concat_tables(pq.read_table(dataset / r, columns=cols) for r in rels)
        blob = summarize(table.combine_chunks().to_batches()[0])
        (where / f"{day.isoformat()}.bin").write_bytes(blob)
        total += len(blob)
    return total


def merge_summaries(where: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    panels = Panels()
    for path in sorted(where.glob("*.bin")):
        panels.add(path.read_bytes())
    panels.to_dict()
    return {"wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", type=Path)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    days = spread(a.output, a.days, a.output.with_name(f"{a.output.name}-{a.days}d"))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        size = write_summaries(days, Path(tmp))
        log(f"summaries: {size / 1e6:.1f} MB for {a.days} dates, made in {time.perf_counter() - t0:.1f} s")
        scans, merges = [], []
        for _ in range(a.rounds):
            scans.append(scan(days, Path(tmp) / "history.html"))
            merges.append(merge_summaries(Path(tmp)))
            log(f"scan {scans[-1]}  summaries {merges[-1]}")
    rows = sum(pq.read_metadata(days / r).num_rows for rels in dataset_files(days).values() for r in rels)
    for name, runs in (("scan", scans), ("summaries", merges)):
        med = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
        emit(
            json.dumps(
                {
                    "design": name,
                    "days": a.days,
                    "rows": rows,
                    **med,
                    **({"summary_mb": round(size / 1e6, 1)} if name == "summaries" else {}),
                }
            )
        )


if __name__ == "__main__":
    main()
