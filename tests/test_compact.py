"""Compaction: the same rows in fewer files, committed as a run commits, whatever happens meanwhile."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline.config import ConfigError, validate
from pipeline.errors import ExitCode
from pipeline.output import compact as compaction
from pipeline.output.compact import Sizes, choose, compact, writer_options
from pipeline.output.dataset import Contents, DataFile, inspect, sizes
from pipeline.output.layout import DATA_FILE, Layout
from pipeline.output.lock import OutputLock
from pipeline.output.record import Committer
from pipeline.runner import run_pipeline
from pipeline.synthetic import line
from tests.conftest import ROOT, read_output, run_cli, tree

SIZES = Sizes(row_group_rows=1024, max_rows_per_file=1_000_000)


class Logs:
    """An access log that grows between incremental runs, a few hours of rows per run."""

    def __init__(self, tmp_path: Path, name: str = "out") -> None:
        self.src = tmp_path / f"{name}-in"
        self.src.mkdir()
        self.out = tmp_path / name
        self.rng = random.Random(7)
        self.t = datetime(2026, 11, 1, tzinfo=UTC)

    def grow(self, lines: int, step_s: int = 60) -> None:
        with (self.src / "access.log").open("ab") as fh:
            for _ in range(lines):
                self.t += timedelta(seconds=step_s)
                fh.write(line(self.rng, self.t) + b"\n")

    def run(self, **run_keys: Any) -> dict[str, Any]:
        cfg = validate(
            {
                "run": {
                    "inputs": [str(self.src)],
                    "output": str(self.out),
                    "progress": "off",
                    "incremental": True,
                    **run_keys,
                },
                "parse": {"executor": "inline"},
            }
        )
        result = run_pipeline(cfg)
        assert result.exit_code == ExitCode.OK, result.error
        return result.manifest

    def runs(self, n: int, lines: int = 200, step_s: int = 60, **run_keys: Any) -> None:
        for _ in range(n):
            self.grow(lines, step_s)
            self.run(**run_keys)


def files(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet"))


def consistent(out: Path) -> Contents:
    """The dataset's record describes exactly the files there, and an incremental run can append."""
    published = inspect(Layout.of(out))
    assert published.problem is None
    assert published.recorded is not None
    assert set(published.recorded.files) == set(files(out))
    return published.recorded


@pytest.fixture(autouse=True)
def no_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compaction, "LINGER_S", 0.0)  # the reader test sets its own


def test_the_same_rows_in_fewer_files_in_the_same_order(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.runs(12)  # 12 x 200 rows, 1 minute apart: about 2 days, 12 files a day
    before_files = files(logs.out)
    before = read_output(logs.out)
    by_date = {
        d: pa.concat_tables([pq.read_table(logs.out / f) for f in before_files if f.startswith(d)])
        for d in {f.split("/")[0] for f in before_files}
    }
    newest = pq.read_metadata(logs.out / before_files[-1])

    outcome = compact(Layout.of(logs.out), SIZES, 2)

    assert outcome.status == "compacted" and outcome.exit_code == ExitCode.OK
    after_files = files(logs.out)
    assert len(after_files) == len(by_date) < len(before_files)
    assert read_output(logs.out).equals(before)
    for f in after_files:
        assert DATA_FILE.fullmatch(f.split("/")[1]) and outcome.compaction_id in f
        assert pq.read_table(logs.out / f).equals(by_date[f.split("/")[0]])  # rows in file order
        meta = pq.read_metadata(logs.out / f)
        assert writer_options(meta) == writer_options(newest)  # the writer's encodings, codec
        assert meta.row_group(0).num_rows == min(SIZES.row_group_rows, meta.num_rows)
    recorded = consistent(logs.out)
    assert recorded.rows == before.num_rows
    lay = Layout.of(logs.out)
    assert json.loads(lay.manifest.read_text())["dataset_files"] == len(after_files)
    record = json.loads((lay.meta / "last-compaction.json").read_text())
    assert record["status"] == "compacted"
    assert (record["files_before"], record["files_after"]) == (len(before_files), len(after_files))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out-in", "out.meta"]  # nothing left


def test_the_next_incremental_run_appends_to_the_compacted_dataset(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.runs(6)
    rows = consistent(logs.out).rows
    assert compact(Layout.of(logs.out), SIZES, 2).status == "compacted"
    compacted = set(files(logs.out))
    logs.grow(150)
    manifest = logs.run()
    assert manifest["rows"] == 150 and manifest["rebuilt"] is None  # appended, not rebuilt
    assert compacted < set(files(logs.out))
    assert consistent(logs.out).rows == rows + 150
    # and the whole dataset is what one full run over the same log gives
    full = Logs(tmp_path, "full")
    shutil.copy(logs.src / "access.log", full.src / "access.log")
    full.run(incremental=False)
    assert read_output(logs.out).equals(read_output(full.out))


def test_large_files_stay_and_small_ones_merge_into_files_of_the_configured_size() -> None:
    def f(path: str, rows: int) -> DataFile:
        return DataFile(path, rows, rows * 10)

    contents = Contents(
        {
            x.path: x
            for x in (
                f("date=2026-11-01/a", 1000),  # full: stays
                f("date=2026-11-01/b", 10),
                f("date=2026-11-01/c", 10),
                f("date=2026-11-02/d", 10),  # one small file: nothing to merge
                f("date=2026-11-03/e", 600),  # two that make two again: nothing to gain
                f("date=2026-11-03/g", 600),
            )
        }
    )
    assert [(m.partition, [s.path for s in m.sources]) for m in choose(contents, 2, 1000)] == [
        ("date=2026-11-01", ["date=2026-11-01/b", "date=2026-11-01/c"])
    ]
    assert choose(contents, 3, 1000) == []
    assert choose(contents, 2, 1000, {"date=2026-11-02"}) == []


def test_merged_files_are_cut_at_max_rows_per_file(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.runs(8, lines=300, step_s=1)  # 2,400 rows in one day
    before = read_output(logs.out)
    sizes_ = Sizes(row_group_rows=1024, max_rows_per_file=1100)
    assert compact(Layout.of(logs.out), sizes_, 2).status == "compacted"
    rows = [pq.read_metadata(logs.out / f).num_rows for f in files(logs.out)]
    assert sorted(rows) == [200, 1100, 1100]
    assert read_output(logs.out).equals(before)
    consistent(logs.out)


def test_nothing_to_compact_is_quiet_and_succeeds(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.runs(1)
    before = tree(tmp_path)
    proc = run_cli("compact", str(logs.out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"nothing to compact in {logs.out}" and proc.stderr == ""
    proc = run_cli("compact", str(logs.out), "--quiet")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert tree(tmp_path) == before


def test_the_command_compacts_and_says_what_it_did(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.runs(4)
    proc = run_cli("compact", str(logs.out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("compacted ") and "files into" in proc.stdout
    proc = run_cli("compact", str(logs.out), "--quiet")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_an_output_holding_a_foreign_file_is_refused(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.runs(4)
    (logs.out / "date=2026-11-01" / "notes.parquet").write_bytes(b"mine")
    before = tree(tmp_path)
    proc = run_cli("compact", str(logs.out))
    assert proc.returncode == ExitCode.REFUSED
    assert "notes.parquet" in proc.stderr and "did not write" in proc.stderr
    assert tree(tmp_path) == before


def test_a_dataset_that_is_not_its_record_is_left_to_the_next_run(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.runs(4)
    victim = logs.out / files(logs.out)[0]
    victim.unlink()
    before = tree(tmp_path)
    outcome = compact(Layout.of(logs.out), SIZES, 2)
    assert outcome.exit_code == ExitCode.FAILURE and "not the dataset its record describes" in str(
        outcome.error
    )
    assert {k: v for k, v in tree(tmp_path).items() if "last-compaction" not in k} == before


def test_a_missing_output_fails_without_creating_anything(tmp_path: Path) -> None:
    proc = run_cli("compact", str(tmp_path / "nope"))
    assert proc.returncode == ExitCode.FAILURE and "does not exist" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_compaction_and_a_run_never_overlap(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.runs(3)
    with OutputLock(Layout.of(logs.out).output, "20261205T000000-abcdef"):
        proc = run_cli("compact", str(logs.out))
    assert proc.returncode == ExitCode.LOCKED
    assert "20261205T000000-abcdef" in proc.stderr
    assert len(files(logs.out)) == 3


def test_run_compact_compacts_the_partitions_a_run_wrote_to(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.runs(2, step_s=600)  # 2 x 200 rows, 10 minutes apart: 2026-11-01 to 11-03, two files on 11-02
    untouched = [f for f in files(logs.out) if f.startswith("date=2026-11-02")]
    assert len(untouched) == 2
    for _ in range(4):
        logs.grow(20, step_s=60)  # on 2026-11-03 only
        logs.run(compact=2)
        assert len([f for f in files(logs.out) if f.startswith("date=2026-11-03")]) == 1
    # 2026-11-02 had no new rows: left as it was, though it holds two small files
    assert [f for f in files(logs.out) if f.startswith("date=2026-11-02")] == untouched
    assert (
        json.loads((Layout.of(logs.out).meta / "last-compaction.json").read_text())["status"] == "compacted"
    )
    consistent(logs.out)
    full = Logs(tmp_path, "full")
    shutil.copy(logs.src / "access.log", full.src / "access.log")
    full.run(incremental=False)
    assert read_output(logs.out).equals(read_output(full.out))


@pytest.mark.parametrize(
    ("keys", "message"),
    [({"compact": 1}, "2 or more"), ({"compact": 4, "incremental": False}, "run.incremental")],
)
def test_run_compact_is_checked_at_load(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate({"run": {"incremental": True, **keys}})


@pytest.mark.slow
def test_a_reader_sees_every_row_once_while_the_dataset_is_compacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compaction, "LINGER_S", 0.2)
    logs = Logs(tmp_path, "template")
    logs.runs(24, lines=100, step_s=120)
    total = consistent(logs.out).rows
    copies = []
    for k in range(8):  # one compaction each, so the reader meets several exchanges
        out = tmp_path / f"out{k}"
        shutil.copytree(logs.out, out)
        shutil.copytree(Layout.of(logs.out).meta, Layout.of(out).meta)
        copies.append(out)
    target = [copies[0]]
    counts: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                counts.append(
                    ds.dataset(target[0], format="parquet", partitioning="hive").to_table().num_rows
                )
            except Exception as exc:  # noqa: BLE001 - kept, and checked below: only the documented kind
                errors.append(exc)  # FileNotFoundError: listed before the exchange, opened after

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for out in copies:
            target[0] = out
            time.sleep(0.05)
            assert compact(Layout.of(out), SIZES, 2).status == "compacted"
    finally:
        stop.set()
        reader.join(timeout=60)
    assert all(isinstance(e, FileNotFoundError) for e in errors), errors
    assert len(counts) >= len(copies), (len(counts), errors)  # a busy machine reads less often
    assert set(counts) == {total}


# `logpipe compact` in a child process that sends itself SIGTERM (or dies, as SIGKILL would) just before
# or after one step: merging a partition, the exchange of the directories, the removal of the old files.
_STOPPED = """
import os, signal, sys
from pipeline.output import compact, record
from pipeline.cli import app

out, step, when, how = sys.argv[1:5]

def wrap(name, fn):
    def call(*args, **kw):
        if name == step and when == "before":
            os.kill(os.getpid(), signal.SIGTERM) if how == "term" else os._exit(9)
        result = fn(*args, **kw)
        if name == step and when == "after":
            os.kill(os.getpid(), signal.SIGTERM) if how == "term" else os._exit(9)
        return result
    return call

compact.merge_files = wrap("merge", compact.merge_files)
record._exchange = wrap("exchange", record._exchange)
record.shutil.rmtree = wrap("cleanup", record.shutil.rmtree)
app(["compact", out])
"""

STEPS = [(s, w) for s in ("merge", "exchange", "cleanup") for w in ("before", "after")]


@pytest.mark.parametrize("how", ["term", "kill"])
@pytest.mark.parametrize(("step", "when"), STEPS)
def test_a_signal_or_a_crash_at_any_step_leaves_old_or_new_files(
    tmp_path: Path, step: str, when: str, how: str
) -> None:
    logs = Logs(tmp_path)
    logs.runs(4, lines=100)
    old, rows = files(logs.out), read_output(logs.out)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_STOPPED), str(logs.out), step, when, how],
        cwd=ROOT,
        timeout=120,
        capture_output=True,
        text=True,
        check=False,
    )
    if how == "term":
        # before the exchange the signal stops it; from the exchange on, the commit is completed first
        assert proc.returncode == ExitCode.SIGTERM, proc.stderr
        committed = step != "merge"
        assert ("completed first" in proc.stderr) == committed, proc.stderr
    else:
        assert proc.returncode == 9, proc.stderr
        committed = step == "cleanup" or (step, when) == ("exchange", "after")
    # at once, before anything recovers: the old files or the new ones, each with every row once
    assert (files(logs.out) == old) != committed
    assert read_output(logs.out).equals(rows)
    if how == "term":
        consistent(logs.out)
    # the next compaction completes or undoes what was left, and removes the staged files
    again = compact(Layout.of(logs.out), SIZES, 2)
    assert again.status == ("unchanged" if committed else "compacted")
    assert read_output(logs.out).equals(rows) and len(files(logs.out)) < len(old)
    consistent(logs.out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out-in", "out.meta"]
    kept = {"current", "last-compaction.json", "last-report.json", "last-run.json"}
    assert {p.name for p in Layout.of(logs.out).meta.iterdir()} <= kept


def test_the_next_run_cleans_up_after_a_compaction_killed_mid_way(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.runs(4, lines=100)
    rows = consistent(logs.out).rows
    script = textwrap.dedent(_STOPPED)
    for step in ("merge", "exchange"):  # killed while staging, and between the exchange and the record
        proc = subprocess.run(
            [sys.executable, "-c", script, str(logs.out), step, "after", "kill"],
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 9
        assert len([p for p in tmp_path.iterdir() if p.name.startswith(".out.staging-")]) == 1
        logs.grow(50)
        manifest = logs.run()
        assert manifest["rows"] == 50 and manifest["rebuilt"] is None  # appended to an intact dataset
        rows += 50
        assert consistent(logs.out).rows == rows == read_output(logs.out).num_rows
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out-in", "out.meta"]


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 0.6, 0.9, 1.2, 1.5])
def test_sigterm_to_the_command_at_any_moment_leaves_a_consistent_dataset(
    tmp_path: Path, delay: float
) -> None:
    logs = Logs(tmp_path)
    logs.runs(30, lines=100, step_s=30)
    old, rows = files(logs.out), read_output(logs.out)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "compact", str(logs.out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    # still starting (Python's default action), stopped, completed first, or done before the signal
    assert proc.returncode in (-signal.SIGTERM, ExitCode.SIGTERM, ExitCode.OK), err
    assert files(logs.out) == old or len(files(logs.out)) < len(old)
    assert read_output(logs.out).equals(rows)
    consistent(logs.out)
    Committer(Layout.of(logs.out), "20261205T000000-000000").recover()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out-in", "out.meta"]


def test_the_compacted_dataset_sizes_are_what_the_record_says(tmp_path: Path) -> None:
    logs = Logs(tmp_path)
    logs.runs(5)
    compact(Layout.of(logs.out), SIZES, 2)
    recorded = consistent(logs.out)
    assert {p: f.bytes for p, f in recorded.files.items()} == sizes(logs.out)
