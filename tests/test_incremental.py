"""Incremental runs: only new or grown input is read, nothing is duplicated, --full-refresh rebuilds."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.config import validate
from pipeline.errors import ExitCode
from pipeline.incremental import STATE
from pipeline.runner import run_pipeline
from pipeline.sample import generate, line
from tests.conftest import manifest, read_output, run_cli


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    """An empty input directory and the output directory (not yet there) of a test's runs."""
    src = tmp_path / "in"
    src.mkdir()
    return src, tmp_path / "out"


def run(src: Path, out: Path, full_refresh: bool = False, **run_keys: Any) -> dict[str, Any]:
    cfg = validate(
        {
            "run": {
                "inputs": [str(src)],
                "output": str(out),
                "progress": "off",
                "incremental": True,
                **run_keys,
            },
            "parse": {"executor": "inline"},
        }
    )
    result = run_pipeline(cfg, full_refresh)
    assert result.exit_code == ExitCode.OK, result.error
    return result.manifest


def modes(m: dict[str, Any]) -> dict[str, str]:
    return {Path(i["path"]).name: i["mode"] for i in m["inputs"]}


def valid_lines(n: int, seed: int) -> bytes:
    import random
    from datetime import UTC, datetime, timedelta

    rng = random.Random(seed)
    start = datetime(2026, 11, 3, tzinfo=UTC)
    return b"".join(line(rng, start + timedelta(seconds=i)) + b"\n" for i in range(n))


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pool")
    generate(root, files=3, lines=1500, bad=0.01, seed=11)
    return root


def test_three_reruns_each_with_one_more_file_leave_no_duplicates(pool: Path, tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    names = sorted(p.name for p in pool.iterdir())
    assert len(names) == 3
    for name in names:
        shutil.copy2(pool / name, src / name)
        m = run(src, out)
        assert modes(m)[name] == "new"
        assert all(mode == "unchanged" for n, mode in modes(m).items() if n != name)
        assert m["lines"] == 1500, "only the new file is read"
        assert len(read_output(out)) + sum(1 for _ in (out / "_rejects").iterdir()) > 0
    full = tmp_path / "full"
    cfg = validate(
        {
            "run": {"inputs": [str(src)], "output": str(full), "progress": "off"},
            "parse": {"executor": "inline"},
        }
    )
    assert run_pipeline(cfg).exit_code == ExitCode.OK
    assert read_output(out).equals(read_output(full))
    rejects = pq.read_table(out / "_rejects").num_rows
    assert rejects == manifest(full)["rejected"]


def test_grown_file_is_read_from_its_old_end(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    log = src / "a.log"
    log.write_bytes(valid_lines(100, 1) + b"garbage one\n")
    m1 = run(src, out)
    assert (m1["lines"], m1["rows"]) == (101, 100)
    with log.open("ab") as fh:
        fh.write(valid_lines(50, 2) + b"garbage two\n")
    m2 = run(src, out)
    assert modes(m2) == {"a.log": "grown"}
    assert (m2["lines"], m2["rows"], m2["rejected"]) == (51, 50, 1)
    assert m2["inputs"][0]["first_line"] == 102
    rejects = pq.read_table(out / "_rejects").sort_by("line")
    assert rejects.column("line").to_pylist() == [101, 152]  # numbering continues across runs
    assert read_output(out).num_rows == 150
    m3 = run(src, out)
    assert modes(m3) == {"a.log": "unchanged"} and m3["lines"] == 0
    assert read_output(out).num_rows == 150


def test_unterminated_last_line_waits_for_the_next_run(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    log = src / "a.log"
    whole = valid_lines(3, 3)
    cut = whole.rindex(b"\n", 0, len(whole) - 1) + 1 + 20  # 20 bytes into the last line
    log.write_bytes(whole[:cut])
    m1 = run(src, out)
    assert (m1["lines"], m1["rows"], m1["inputs"][0]["held_bytes"]) == (2, 2, 20)
    log.write_bytes(whole)
    m2 = run(src, out)
    assert (m2["lines"], m2["rows"], m2["rejected"]) == (1, 1, 0)
    assert read_output(out).num_rows == 3


def test_grown_gzip_file(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    log = src / "a.log.gz"
    log.write_bytes(gzip.compress(valid_lines(40, 4)))
    run(src, out)
    with log.open("ab") as fh:
        fh.write(gzip.compress(valid_lines(10, 5)))  # a second gzip member, as `gzip >>` appends
    m2 = run(src, out)
    assert modes(m2) == {"a.log.gz": "grown"} and m2["lines"] == 10
    assert read_output(out).num_rows == 50


def test_rotated_file_is_read_whole_and_old_rows_stay(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    log = src / "a.log"
    log.write_bytes(valid_lines(30, 6))
    run(src, out)
    log.write_bytes(valid_lines(20, 7))  # rotated: new content under the same name
    m2 = run(src, out)
    assert modes(m2) == {"a.log": "changed"} and m2["lines"] == 20
    assert read_output(out).num_rows == 50


def test_full_refresh_rebuilds(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    (src / "a.log").write_bytes(valid_lines(30, 8))
    run(src, out)
    (src / "a.log").write_bytes(valid_lines(20, 9))
    run(src, out)
    assert read_output(out).num_rows == 50
    m = run(src, out, full_refresh=True)
    assert modes(m) == {"a.log": "new"}
    assert read_output(out).num_rows == 20
    assert (out / STATE).exists()


def test_failed_run_keeps_state_and_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, out = _dirs(tmp_path)
    log = src / "a.log"
    log.write_bytes(valid_lines(30, 10))
    run(src, out)
    state_before = (out / STATE).read_bytes()
    with log.open("ab") as fh:
        fh.write(valid_lines(5, 11))
    from pipeline import write

    def broken(self: object, *args: object, **kw: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(write.PartitionWriter, "_flush", broken)
    cfg = validate(
        {
            "run": {"inputs": [str(src)], "output": str(out), "progress": "off", "incremental": True},
            "parse": {"executor": "inline"},
        }
    )
    assert run_pipeline(cfg).exit_code == ExitCode.FAILURE
    assert (out / STATE).read_bytes() == state_before
    monkeypatch.undo()
    m = run(src, out)
    assert modes(m) == {"a.log": "grown"} and m["lines"] == 5
    assert read_output(out).num_rows == 35


def test_cli_full_refresh_flag(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "run",
        "-c",
        "configs/cron.toml",
        "-i",
        "data/sample/access-000.log",
        "-o",
        str(out),
        "--set",
        "run.incremental=true",
        "--set",
        "parse.executor=inline",
        "-q",
    ]
    assert run_cli(*args).returncode == 0
    assert run_cli(*args).returncode == 0
    assert manifest(out)["lines"] == 0
    assert run_cli(*args, "--full-refresh").returncode == 0
    assert manifest(out)["lines"] == 2000
