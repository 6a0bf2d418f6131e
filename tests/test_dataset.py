"""The record of the whole dataset: an incremental run appends only to the dataset its record describes,
rebuilds otherwise, and never publishes fewer rows than the dataset held without --allow-shrink (real
CLI runs in subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import validate
from pipeline.errors import ExitCode, Interrupted
from pipeline.output import record
from pipeline.output.dataset import Contents, DataFile, differences, inspect, sizes
from pipeline.output.layout import Layout
from pipeline.output.signals import signals_raise
from pipeline.runner import run_pipeline
from pipeline.synthetic import generate
from tests.conftest import SAMPLE, committed_manifest, manifest, read_output, run_cli

INCREMENTAL = ("--set", "run.incremental=true", "--set", "parse.workers=1")


def logs(tmp_path: Path) -> Path:
    """The sample's five files (one per codec) in a folder of the test's own."""
    src = tmp_path / "logs"
    shutil.copytree(SAMPLE, src)
    return src


def run(src: Path, out: Path, *extra: str, expect: int = 0) -> dict[str, object]:
    proc = run_cli("run", "-i", str(src), "-o", str(out), *INCREMENTAL, *extra)
    assert proc.returncode == expect, proc.stderr
    m = manifest(out)
    m["stderr"] = proc.stderr
    return m


def check_record(out: Path) -> int:
    """Assert that the published record describes the dataset on disk; its rows."""
    rows = int(read_output(out).num_rows)
    data = json.loads(Layout.of(out).dataset.read_text())
    assert data["rows"] == rows == committed_manifest(out)["dataset_rows"]
    assert {e["path"]: e["bytes"] for e in data["entries"]} == sizes(out)
    return rows


@pytest.mark.parametrize(
    "mishap",
    [
        "rm-record",
        "rm-file",
        *(  # the same check, other mishaps: make test-slow
            pytest.param(m, marks=pytest.mark.slow)
            for m in (
                "rm-state",
                "truncated-state",
                "wrong-state",
                "replaced-file",
                "copied-file",
                "damaged-manifest",
                "rm-dataset-record",
            )
        ),
    ],
)
def test_a_dataset_out_of_step_with_its_record_is_rebuilt_not_appended_to(
    tmp_path: Path, mishap: str
) -> None:
    src, out = logs(tmp_path), tmp_path / "out"
    run(src, out)
    rows = check_record(out)
    lay = Layout.of(out)
    files = sorted(out.glob("date=*/*.parquet"))
    if mishap == "rm-state":
        lay.state.unlink()
    elif mishap == "rm-record":
        shutil.rmtree(lay.meta)
    elif mishap == "truncated-state":
        lay.state.write_bytes(lay.state.read_bytes()[:100])
    elif mishap == "wrong-state":
        lay.state.write_text(json.dumps({"version": 2, "files": "x"}))
    elif mishap == "rm-file":
        files[0].unlink()
    elif mishap == "replaced-file":
        table = pq.read_table(files[0], partitioning=None)
        pq.write_table(table.slice(0, 1), files[0])
    elif mishap == "damaged-manifest":
        lay.manifest.write_bytes(lay.manifest.read_bytes()[:50])
    elif mishap == "rm-dataset-record":
        lay.dataset.unlink()
    else:  # a file of the same name from another run's dataset
        shutil.copy(files[0], files[0].with_name(files[0].name.replace("-w0-", "-w7-")))
    m = run(src, out)
    assert "rebuilding the dataset" in str(m["stderr"])
    assert m["rebuilt"] and check_record(out) == rows  # the same rows: nothing lost, nothing twice
    m = run(src, out)
    assert m["status"] == "unchanged" and check_record(out) == rows


def test_a_deleted_dataset_is_rebuilt_and_never_called_unchanged(tmp_path: Path) -> None:
    src, out = logs(tmp_path), tmp_path / "out"
    run(src, out)
    rows = check_record(out)
    shutil.rmtree(out)
    m = run(src, out)
    assert m["status"] == "ok" and check_record(out) == rows
    with (src / "access-000.log").open("ab") as fh:
        fh.write((SAMPLE / "access-000.log").read_bytes().splitlines(keepends=True)[5])
    m = run(src, out)
    assert m["lines"] == 1 and check_record(out) == rows + 1


def test_a_rebuild_that_would_drop_rows_stops_until_allowed(tmp_path: Path) -> None:
    """logrotate deleted an input the dataset holds rows of; the dataset was deleted, or a refresh asked."""
    src, out = logs(tmp_path), tmp_path / "out"
    run(src, out)
    rows = check_record(out)
    gone = committed_manifest(out)["inputs"][2]
    (src / Path(str(gone["path"])).name).unlink()
    before = sorted(p.name for p in out.rglob("*"))
    m = run(src, out, "--full-refresh", expect=ExitCode.SHRINK)
    error = str(m["error"])
    assert f"would be dropped; 1 inputs read before are gone: {Path(gone['path']).resolve()}" in error
    assert "--allow-shrink" in error and m["status"] == "shrink"
    assert sorted(p.name for p in out.rglob("*")) == before and check_record(out) == rows
    shutil.rmtree(out)  # and with the dataset gone too: nothing says "unchanged", nothing shrinks
    m = run(src, out, expect=ExitCode.SHRINK)
    assert "is missing" in str(m["stderr"]) and not out.exists()
    m = run(src, out, "--allow-shrink")
    assert check_record(out) == rows - gone["rows"]


@pytest.mark.parametrize(
    ("transform", "column", "kept_type"),
    [
        pytest.param("bytes_float", "bytes", pa.float64(), marks=pytest.mark.slow),  # every older value fits
        pytest.param("status_text", "status", pa.string(), marks=pytest.mark.slow),
        ("status_class", "status", pa.int16()),  # older values do not fit int8: the column stays int16
    ],
)
def test_a_changed_column_type_keeps_the_history_without_a_refresh(
    tmp_path: Path, transform: str, column: str, kept_type: pa.DataType
) -> None:
    src, out = logs(tmp_path), tmp_path / "out"
    run(src, out)
    rows = check_record(out)
    before = read_output(out).column(column).to_pylist()
    (src / "access-002.log.bz2").unlink()  # rotated away: its rows must stay all the same
    new = generate(tmp_path / "new", 1, 40, "none", 0.0, seed=99)[0]
    shutil.move(new, src / "new.log")
    transforms = f'run.transforms=["tests.transform_examples:{transform}"]'
    m = run(src, out, "--set", transforms)
    assert m["status"] == "ok" and m["lines"] == 40
    table = read_output(out)
    assert table.schema.field(column).type == kept_type and check_record(out) == rows + 40
    assert len(before) == rows and table.num_rows == rows + 40
    for f in out.glob("date=*/*.parquet"):
        assert pq.read_schema(f).field(column).type == kept_type


def test_inspect_and_differences_unit(tmp_path: Path) -> None:
    lay = Layout.of(tmp_path / "out")
    assert inspect(lay).problem is None  # nothing there yet: nothing wrong
    recorded = Contents({"date=2026-01-01/a": DataFile("date=2026-01-01/a", 3, 10)})
    assert differences(recorded, {"date=2026-01-01/a": 10}) == []
    assert differences(recorded, {}) == ["1 missing: date=2026-01-01/a"]
    assert differences(recorded, {"date=2026-01-01/a": 9, "date=2026-01-01/b": 1}) == [
        "1 replaced (another size): date=2026-01-01/a",
        "1 not in the record: date=2026-01-01/b",
    ]


def test_a_signal_during_the_commit_is_reported_once_the_commit_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    cfg = validate(
        {
            "run": {"inputs": [str(SAMPLE / "access-000.log")], "output": str(out), "progress": "off"},
            "parse": {"executor": "inline"},
        }
    )
    calls: list[Path] = []
    fsync = record._fsync_dir

    def fsync_then_signal(path: Path) -> None:
        calls.append(path)
        fsync(path)
        if len(calls) == 2:  # after the record's rename: in the middle of the commit
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(record, "_fsync_dir", fsync_then_signal)
    with signals_raise():
        result = run_pipeline(cfg)
    assert result.exit_code == ExitCode.SIGTERM
    assert isinstance(result.error, Interrupted) and result.error.committed
    assert result.manifest["committed"] and result.manifest["signal"] == signal.SIGTERM
    assert committed_manifest(out)["run_id"] == result.manifest["run_id"]
    assert manifest(out)["exit_code"] == ExitCode.SIGTERM
    assert read_output(out).num_rows == result.manifest["rows"]


@pytest.mark.slow
def test_a_full_run_over_an_incremental_history_does_not_shrink_it_silently(tmp_path: Path) -> None:
    src, out = logs(tmp_path), tmp_path / "out"
    run(src, out)
    rows = check_record(out)
    (src / "access-000.log").unlink()
    proc = run_cli("run", "-i", str(src), "-o", str(out), "--set", "parse.workers=1")  # not incremental
    assert proc.returncode == ExitCode.SHRINK, proc.stderr
    assert "access-000.log" in proc.stderr and check_record(out) == rows
    proc = run_cli("run", "-i", str(src), "-o", str(out), "--set", "parse.workers=1", "--allow-shrink", "-q")
    assert proc.returncode == 0, proc.stderr
    assert check_record(out) < rows
