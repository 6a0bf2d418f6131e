"""The report of a date range of the history: read from the Parquet files, and from the date summaries.

``python -m bench.history OUTPUT --days 30 [--rounds 3]``: OUTPUT is a dataset written by ``logpipe run``
(e.g. over ``logpipe sample --files 2 --lines 1000000``). Its fullest date is copied to ``--days`` dates
(``OUTPUT-<days>d``, with an empty record folder beside it; timestamps shifted by whole days, row groups
as the writer's), so that the history holds that many full days without generating and parsing as many
logs. Then, alternating, ``--rounds`` times each, ``logpipe report DAYS --to FILE`` in a subprocess (what
a user waits for; wall, CPU and the process tree's peak memory from ``bench.treepeak``), medians printed as
JSON lines:

* ``read``: the date summaries removed first, so every row is read (the first report of a dataset, or
  of dates no report has covered yet); it writes the summaries;
* ``summarized``: every date's summary kept (any later report over those dates);
* ``one date added to``: one date's summary covering all its files but one (an incremental run's new
  file): that file read and merged into the summary, the other dates from theirs.

With the summaries' bytes on disk, against the dataset's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench import emit, log
from pipeline.output.layout import Layout
from pipeline.report.date_summaries import SUMMARIES, DateSummaries
from pipeline.report.history import DateRange, dataset_files, history_panels

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
        if out.parent.exists() and any(out.parent.iterdir()):  # made before (and maybe split since)
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


def report(dataset: Path, html: Path) -> dict[str, float]:
    """``logpipe report`` of the whole history in a subprocess: wall and the tree's peak memory."""
    cmd = [sys.executable, "-m", "bench.treepeak", sys.executable, "-m", "pipeline", "report", str(dataset)]
    out = json.loads(
        subprocess.run([*cmd, "--to", str(html)], capture_output=True, text=True, check=True).stdout
    )
    return {"wall_s": out["wall_s"], "cpu_s": out["cpu_s"], "peak_mb": out["peak_pss_mb"]}


def split_newest(dataset: Path) -> tuple[date, str]:
    """The newest date's file cut in two files (its row groups split), as an incremental run appends one;
    the date and its first file."""
    day, rels = max(dataset_files(dataset).items())
    if len(rels) == 1:
        path = dataset / rels[0]
        pf = pq.ParquetFile(path)
        half = pf.num_row_groups // 2
        for name, groups in (("00000", range(half)), ("00001", range(half, pf.num_row_groups))):
            table = pa.concat_tables(pf.read_row_group(i) for i in groups)
            out = path.with_name(f"part-20261205T000000-000001-w0-{name}.parquet")
            pq.write_table(table, out, compression="zstd", row_group_size=pf.metadata.row_group(0).num_rows)
        path.unlink()
        rels = dataset_files(dataset)[day]
    return day, rels[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", type=Path)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    days = spread(a.output, a.days, a.output.with_name(f"{a.output.name}-{a.days}d"))
    summaries = Layout.of(days).meta / SUMMARIES
    summaries.parent.mkdir(exist_ok=True)
    newest, first = split_newest(days)
    results: dict[str, list[dict[str, float]]] = {"read": [], "summarized": [], "one date added to": []}
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "history.html"
        for _ in range(a.rounds):
            shutil.rmtree(summaries, ignore_errors=True)
            results["read"].append(report(days, html))
            results["summarized"].append(report(days, html))
            # the newest date's summary covering its first file only: the second one is new to it
            history_panels(days, {newest: [first]}, DateRange(), kept=DateSummaries(summaries))
            results["one date added to"].append(report(days, html))
            log(f"round: { {k: v[-1] for k, v in results.items()} }")
    files = dataset_files(days)
    rows = sum(pq.read_metadata(days / r).num_rows for rels in files.values() for r in rels)
    size = sum(p.stat().st_size for p in summaries.iterdir())
    data = sum((days / r).stat().st_size for rels in files.values() for r in rels)
    for name, runs in results.items():
        med = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
        extra = {"summaries_mb": round(size / 1e6, 1), "parquet_mb": round(data / 1e6, 1)}
        emit(json.dumps({"variant": name, "days": a.days, "rows": rows, **med, **extra}))


if __name__ == "__main__":
    main()
