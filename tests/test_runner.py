"""The wired pipeline: parallel output equals serial output, compression-blind, exact accounting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipeline.config import validate
from pipeline.diagnostics.stats import SHORT_BUSY_S, SHORT_ITEMS, queue_hints
from pipeline.errors import ExitCode
from pipeline.runner import run_pipeline
from pipeline.synthetic import generate
from tests.conftest import manifest, read_output, rejects_dir


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("logs")
    plain = root / "plain"
    gz = root / "gz"
    generate(plain, files=4, lines=4000, bad=0.01, seed=3)
    generate(gz, files=4, lines=4000, bad=0.01, seed=3, compression="gzip")
    return {"plain": plain, "gzip": gz}


def run(src: Path, out: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "run": {"inputs": [str(src)], "output": str(out), "progress": "off"},
        "read": {"chunk_bytes": 65536},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    result = run_pipeline(validate(data))
    assert result.error is None, result.error
    assert result.exit_code == ExitCode.OK
    return result.manifest


@pytest.fixture(scope="module")
def serial(logs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    out = tmp_path_factory.mktemp("serial") / "out"
    run(logs["plain"], out, parse={"executor": "inline"}, read={"workers": 1}, write={"workers": 1})
    return read_output(out)


@pytest.mark.parametrize(
    "sections",
    [
        {"parse": {"workers": 1}},
        {"parse": {"workers": 2}},
        {"parse": {"workers": 2}, "read": {"workers": 3}, "write": {"workers": 2}},
        {"parse": {"workers": 2, "start_method": "spawn"}, "read": {"workers": 1}},
        {"parse": {"workers": 2, "executor": "thread"}},
    ],
    ids=["parse1", "parse2", "read3-write2", "spawn", "threads"],
)
def test_parallel_equals_serial(
    logs: dict[str, Path], serial: pa.Table, tmp_path: Path, sections: dict[str, dict[str, Any]]
) -> None:
    m = run(logs["plain"], tmp_path / "out", **sections)
    assert read_output(tmp_path / "out").equals(serial)
    assert m["rows"] == serial.num_rows
    assert m["rows"] + m["rejected"] == m["lines"] == 16000


def test_gzip_equals_plain(logs: dict[str, Path], serial: pa.Table, tmp_path: Path) -> None:
    run(logs["gzip"], tmp_path / "out", parse={"workers": 2})
    assert read_output(tmp_path / "out").equals(serial)


def test_manifest_accounting_and_stages(logs: dict[str, Path], tmp_path: Path) -> None:
    m = run(logs["plain"], tmp_path / "out", parse={"workers": 2})
    assert m["status"] == "ok" and m["committed"] is True
    assert m["rows"] + m["rejected"] == m["lines"]
    assert sum(m["reject_reasons"].values()) == m["rejected"] > 0
    for f in m["inputs"]:
        assert f["rows"] + f["rejected"] == f["lines"] == 4000
        assert f["error"] is None
    assert set(m["stages"]) == {"read", "parse", "write"}
    for s in m["stages"].values():
        assert s["items_in"] > 0 and s["wall_s"] > 0 and s["busy_s"] > 0
        assert 0 < s["utilization"] <= 1.5
    assert m["stages"]["parse"]["items_in"] == m["stages"]["read"]["items_out"] > 4
    assert m["stages"]["parse"]["lines"] == m["lines"]
    # 16,000 lines are a fraction of a second of work: no stage has the evidence for a verdict, unless a
    # busy machine stretched a stage's time past the threshold (then the verdict follows its numbers)
    for name, s in m["stages"].items():
        items = s["items_in"] if name == "write" else s["items_out"]
        if s["busy_s"] + s["wait_in_s"] + s["blocked_out_s"] < SHORT_BUSY_S or items < SHORT_ITEMS:
            assert s["bound"] == "short", name
    if {s["bound"] for s in m["stages"].values()} == {"short"}:
        assert m["bottleneck"] is None and "run on more input" in m["advice"][-1]
    assert m["machine"]["cores"] >= 1 and 0 <= m["machine"]["cores_busy"] <= 1
    assert m["queue_hints"] == queue_hints(m["stages"])
    assert m["config"]["parse"]["workers"] == 2
    # read.workers was left "auto": the manifest says what it chose
    assert m["auto"] == {"read.workers": m["config"]["read"]["workers"]}
    assert m["config"]["read"]["workers"] >= 2
    written = sum(f["rows"] for f in m["outputs"] if f["date"])
    assert written == m["rows"]
    rejects = ds.dataset(rejects_dir(tmp_path / "out")).to_table()
    assert rejects.num_rows == m["rejected"]
    assert set(rejects.column("reason").to_pylist()) == set(m["reject_reasons"])


def test_rerun_replaces_output(logs: dict[str, Path], serial: pa.Table, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(logs["plain"], out, parse={"executor": "inline"})
    run(logs["plain"], out, parse={"executor": "inline"})
    assert read_output(out).equals(serial)  # no duplicates after a re-run
    assert manifest(out)["status"] == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.meta"]
    assert sorted(p.name for p in (tmp_path / "out.meta").iterdir()) == [
        "current",
        "last-report.json",
        "last-run.json",
    ]


def test_missing_input_is_reported_and_others_go_through(logs: dict[str, Path], tmp_path: Path) -> None:
    data = {
        "run": {
            "inputs": [str(logs["plain"]), str(tmp_path / "nope.log")],
            "output": str(tmp_path / "o"),
            "progress": "off",
        },
        "parse": {"executor": "inline"},
    }
    result = run_pipeline(validate(data))
    assert result.exit_code == ExitCode.INPUTS_FAILED
    assert result.manifest["failed_inputs"] == [str(tmp_path / "nope.log")]
    assert result.manifest["rows"] > 0 and result.manifest["committed"]


def test_failure_leaves_previous_output(
    logs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    run(logs["plain"], out, parse={"executor": "inline"})
    before = read_output(out)

    from pipeline.stages import write

    def broken(self: object, *args: object, **kw: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(write.PartitionWriter, "_flush", broken)
    data = {
        "run": {"inputs": [str(logs["plain"])], "output": str(out), "progress": "off"},
        "parse": {"executor": "inline"},
    }
    result = run_pipeline(validate(data))
    assert result.exit_code == ExitCode.FAILURE
    assert "No space left on device" in str(result.error)
    assert "[write" in str(result.error)
    assert read_output(out).equals(before)
    m = manifest(out)
    assert m["status"] == "failed" and m["committed"] is False
    assert m["previous_run"]["status"] == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.meta"]  # staging removed
    assert sorted(p.name for p in (tmp_path / "out.meta").iterdir()) == [
        "current",
        "last-report.json",
        "last-run.json",
    ]


def test_output_that_cannot_be_created_is_a_clear_error(logs: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    data = {"run": {"inputs": [str(logs["plain"])], "output": str(blocker / "out"), "progress": "off"}}
    result = run_pipeline(validate(data))
    assert result.exit_code == ExitCode.FAILURE
    # refused before anything is created, naming the path in the way
    assert str(result.error) == f"{blocker} is not a directory (needed for {blocker / 'out'})"
    assert blocker.read_text() == "not a directory"


# --- the rows' origin: run.source_column (named [[run.sources]]) and run.file_column ---

ALB_LOGS = Path(__file__).parent / "server_logs" / "alb.log"


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of combined logs (``web``) and a folder of ALB logs (``lb``): the sample's lines with
    each file's own client port, so that every row tells its file."""
    root = tmp_path_factory.mktemp("sources")
    generate(root / "web", files=3, lines=3000, bad=0.01, seed=5)
    (root / "lb").mkdir()
    for k in range(2):
        fields = [line.split(" ") for line in ALB_LOGS.read_text().splitlines()]
        lines = [" ".join([*f[:3], f"{f[3].rsplit(':', 1)[0]}:{1000 + k}", *f[4:]]) + "\n" for f in fields]
        (root / "lb" / f"alb-{k}.log").write_text("".join(lines))
    return root


def origin_run(root: Path, out: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "run": {
            "output": str(out),
            "progress": "off",
            "file_column": "file",
            "sources": [
                {"name": "web", "inputs": [str(root / "web")]},
                {"name": "alb", "inputs": [str(root / "lb" / "*.log")], "format": "alb"},
            ],
        },
        "read": {"chunk_bytes": 65536},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    result = run_pipeline(validate(data))
    assert result.error is None, result.error
    return result.manifest


def test_each_row_names_its_source_and_file(two_sources: Path, tmp_path: Path) -> None:
    from tests.conftest import read_lines, reference_parse

    out = tmp_path / "out"
    m = origin_run(two_sources, out)
    table = read_output(out)
    assert pa.types.is_dictionary(table.schema.field("source").type)
    assert pa.types.is_dictionary(table.schema.field("file").type)
    got: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for row in table.to_pylist():
        key = (row["ip"], row["path"], row["status"], row.get("client_port"))
        got.setdefault((row["source"], row["file"]), []).append(key)
    # the reference: each file's lines parsed on their own, by a plain-Python parser for combined and a
    # split for ALB (client:port is the 4th field, the status the 9th, the request's URL the 14th)
    want: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for path in sorted((two_sources / "web").iterdir()):
        rows, _ = reference_parse(read_lines(path))
        want[("web", str(path))] = [(r["ip"], r["path"], r["status"], None) for r in rows]
    for path in sorted((two_sources / "lb").iterdir()):
        fields = [line.split(" ") for line in path.read_text().splitlines()]
        want[("alb", str(path))] = [
            (f[3].rsplit(":", 1)[0], f[13], int(f[8]), int(f[3].rsplit(":", 1)[1])) for f in fields
        ]
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in want.items()}
    assert sum(len(v) for v in want.values()) == m["rows"]
    # the rejects name the same file as the rows do
    rejects = ds.dataset(rejects_dir(out), format="parquet").to_table()
    assert set(rejects.column("file").to_pylist()) <= {f for _, f in want}


def test_origin_columns_parallel_equal_serial(two_sources: Path, tmp_path: Path) -> None:
    serial = tmp_path / "serial"
    origin_run(two_sources, serial, parse={"executor": "inline"}, read={"workers": 1})
    parallel = tmp_path / "parallel"
    m = origin_run(two_sources, parallel, parse={"executor": "process", "workers": 2}, read={"workers": 2})
    assert m["stages"]["parse"]["executor"] == "process"
    # equal values (a dictionary column's chunks may hold their dictionaries differently)
    assert read_output(parallel).to_pylist() == read_output(serial).to_pylist()


def test_a_transform_sees_the_source_column(two_sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    origin_run(two_sources, out, run={"transforms": ["tests.transform_examples:only_source_web"]})
    table = read_output(out)
    assert table.num_rows > 0 and set(table.column("source").to_pylist()) == {"web"}


def test_origin_columns_are_absent_unless_asked_for(two_sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(two_sources / "web", out)  # run.inputs: no source; run.file_column is off by default
    names = read_output(out).column_names
    assert "source" not in names and "file" not in names


def test_an_origin_column_added_to_an_incremental_dataset(tmp_path: Path) -> None:
    src = tmp_path / "in"
    generate(src, files=1, lines=500, bad=0.0, seed=8)
    (log,) = sorted(src.iterdir())
    out = tmp_path / "out"
    run(src, out, run={"incremental": True})
    first = read_output(out).num_rows
    with log.open("ab") as f:
        f.write(b'10.1.1.1 - - [05/Dec/2026:10:00:00 +0000] "GET /new HTTP/1.1" 200 5 "-" "curl"\n')
    m = run(src, out, run={"incremental": True, "file_column": "file"})
    assert m["lines"] == 1  # the state is as before: only the new line is read
    table = read_output(out)
    files = table.column("file").to_pylist()
    # the rule for a column added to an incremental dataset: the older rows have it null
    assert table.num_rows == first + 1 and files.count(None) == first and files.count(str(log)) == 1
