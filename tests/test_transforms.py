"""Transforms in the parse workers: columns added, rows routed to the rejects or dropped (exact
accounting), pandas transforms, failures naming the transform, file and lines, parallel == serial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipeline.config import validate
from pipeline.errors import ExitCode
from pipeline.runner import run_pipeline
from tests.conftest import manifest, read_lines, read_output, rejects_dir, run_cli

T = "tests.transform_examples"


def run(out: Path, **run_keys: Any) -> dict[str, Any]:
    cfg = validate(
        {
            "run": {"inputs": ["data/sample"], "output": str(out), "progress": "off", **run_keys},
            "read": {"chunk_bytes": 65536},
            "parse": {"workers": 2},
        }
    )
    result = run_pipeline(cfg)
    assert result.error is None, result.error
    return result.manifest


def test_a_transform_adds_columns_routes_rejects_and_drops_rows(tmp_path: Path) -> None:
    plain = read_output_of(tmp_path / "plain", run(tmp_path / "plain"))
    m = run(tmp_path / "out", transforms=[f"{T}:depth_and_errors"])
    assert m["rows"] + m["rejected"] + m["filtered"] == m["lines"] == 10_000
    table = read_output(tmp_path / "out")
    assert table.schema.field("path_depth").type == pa.int64()
    servers = sum(1 for r in plain if r["status"] >= 500 and not r["is_bot"])
    bots = sum(1 for r in plain if r["is_bot"])
    assert m["reject_reasons"]["server error"] == servers > 0
    assert m["filtered"] == bots > 0
    assert table.num_rows == len(plain) - servers - bots
    rejects = ds.dataset(rejects_dir(tmp_path / "out")).to_table().to_pylist()
    routed = [r for r in rejects if r["reason"] == "server error"]
    assert len(routed) == servers
    for r in routed[:20]:  # the line number and the raw line of the input
        line = read_lines(Path(r["file"]))[r["line"] - 1].rstrip(b"\r")
        assert r["raw"] == line[:4096] and b'" 5' in line
    assert f"{T}:depth_and_errors" in m["transforms"]


def read_output_of(out: Path, m: dict[str, Any]) -> list[dict[str, Any]]:
    assert m["status"] == "ok"
    rows: list[dict[str, Any]] = read_output(out).to_pylist()
    return rows


def test_parallel_equals_serial_with_transforms(tmp_path: Path) -> None:
    transforms = [f"{T}:depth_and_errors", f"{T}:method_lower"]
    run(tmp_path / "par", transforms=transforms)
    cfg = validate(
        {
            "run": {"inputs": ["data/sample"], "output": str(tmp_path / "ser"), "progress": "off"},
            "parse": {"executor": "inline"},
        }
        | {"run": {"inputs": ["data/sample"], "output": str(tmp_path / "ser"), "transforms": transforms}}
    )
    assert run_pipeline(cfg).exit_code == ExitCode.OK
    par, ser = read_output(tmp_path / "par"), read_output(tmp_path / "ser")
    assert par.equals(ser)
    assert set(par.column("method").to_pylist()) <= {"get", "post", "head", "put", "delete", None}


def test_a_failing_transform_fails_the_run_naming_it_file_and_lines(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    good = b'10.0.0.1 - - [01/Nov/2026:10:00:00 +0000] "GET /fine HTTP/1.1" 200 5 "-" "ua"\n'
    (src / "a.log").write_bytes(good * 3 + good.replace(b"/fine", b"/explode") + good)
    out = tmp_path / "out"
    proc = run_cli("run", "-i", str(src), "-o", str(out), "--set", f'run.transforms=["{T}:explode"]')
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert f"transform '{T}:explode' failed: RuntimeError: found /explode" in err
    assert f"{src / 'a.log'}" in err and "lines 1-5" in err
    assert not out.exists()
    assert manifest(out)["status"] == "failed"


def test_transform_entries_are_checked_at_load(tmp_path: Path) -> None:
    proc = run_cli("run", "-i", "data/sample", "-o", str(tmp_path), "--set", 'run.transforms=["nope"]')
    assert proc.returncode == 2
    assert "--set run.transforms" in proc.stderr and "not a built-in" in proc.stderr
    proc = run_cli("run", "-i", "data/sample", "-o", str(tmp_path), "--set", 'run.transforms=["no.such:f"]')
    assert proc.returncode == 2 and "cannot import no.such" in proc.stderr
    with pytest.raises(ValueError, match="entry 0"):
        validate({"run": {"transforms": [{"options": 1}]}})


def test_a_built_in_transform_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli(
        "run", "-i", "data/sample/access-000.log", "-o", str(out),
        "--set", 'run.transforms=[{name = "anonymize_ip", ipv4_prefix = 16}]',
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "transforms (seconds inside the parse workers" in proc.stdout and "anonymize_ip" in proc.stdout
    ips = {ip for ip in read_output(out).column("ip").to_pylist() if ip is not None}
    assert ips and all(ip.endswith(".0.0") for ip in ips if "." in ip)
