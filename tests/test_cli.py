"""The command line, run for real in a subprocess (no TTY, like cron), with timeouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, manifest, read_output, run_cli


def test_run_end_to_end_on_the_sample(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("run", "--config", "configs/laptop.toml", "--output", str(out), "--set", "parse.workers=2")
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    assert m["status"] == "ok"
    assert m["lines"] == 10_000
    assert m["rows"] + m["rejected"] == m["lines"]
    assert m["version"] and m["run_id"] and m["config"]["parse"]["workers"] == 2
    assert {i["path"].rsplit(".", 1)[-1] for i in m["inputs"]} >= {"log", "gz", "bz2", "xz", "zst"}
    assert {i["compression"] for i in m["inputs"]} == {"none", "gzip", "bz2", "xz", "zstd"}
    assert read_output(out).num_rows == m["rows"]
    assert "bottleneck:" in proc.stdout and "rejects by reason" in proc.stdout
    assert "\x1b" not in proc.stderr  # no progress bars without a TTY


def test_input_globs_and_sets(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli(
        "run",
        "-c",
        "configs/cron.toml",
        "-i",
        "data/sample/*.gz",
        "-i",
        "data/sample/access-000.log",
        "-o",
        str(out),
        "--set",
        'parse.executor="inline"',
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    m = manifest(out)
    assert [Path(i["path"]).name for i in m["inputs"]] == ["access-001.log.gz", "access-000.log"]
    assert m["config"]["parse"]["executor"] == "inline"


def test_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[parse]\nworkers = 0\n")
    proc = run_cli("run", "--config", str(bad), "-i", "data/sample", "-o", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "parse.workers" in proc.stderr
    proc = run_cli(
        "run", "--config", "configs/laptop.toml", "--set", "parse.wrkers=2", "-o", str(tmp_path / "o")
    )
    assert proc.returncode == 2 and "allowed keys here" in proc.stderr
    proc = run_cli("run", "--bogus-flag")
    assert proc.returncode == 2
    out = tmp_path / "partial"
    proc = run_cli(
        "run",
        "-c",
        "configs/cron.toml",
        "-i",
        "data/sample/access-000.log",
        "-i",
        str(tmp_path / "missing.log"),
        "-o",
        str(out),
        "--set",
        "parse.executor=inline",
    )
    assert proc.returncode == 3, proc.stderr
    assert manifest(out)["failed_inputs"] == [str(tmp_path / "missing.log")]


def test_validate_config() -> None:
    proc = run_cli("validate-config", "configs/server.toml")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["read"]["workers"] == 8
    proc = run_cli("validate-config", "nope.toml")
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_sample_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        proc = run_cli(
            "sample", "-o", str(tmp_path / name), "--files", "2", "--lines", "500", "--compression", "mixed"
        )
        assert proc.returncode == 0, proc.stderr
    for f in (tmp_path / "a").iterdir():
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes()
    assert run_cli("sample", "-o", str(tmp_path / "c"), "--compression", "lzo").returncode == 2


def test_help_everywhere() -> None:
    for args in (["--help"], ["run", "--help"], ["validate-config", "--help"], ["sample", "--help"]):
        proc = run_cli(*args)
        assert proc.returncode == 0 and "Usage" in proc.stdout
    assert (ROOT / "configs" / "laptop.toml").exists()


def test_console_script_runs_with_process_pool(tmp_path: Path) -> None:
    # the installed entry point (not `python -m`): its main module is hidden from the fork server
    script = Path(sys.executable).parent / "logpipe"
    if not script.exists():
        pytest.skip("logpipe is not installed next to this interpreter")
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(script), "run", "-c", "configs/laptop.toml", "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert manifest(out)["rows"] == read_output(out).num_rows > 0
