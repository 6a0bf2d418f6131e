"""The run's manifest: real runs' manifests (plain, with rejects, incremental, failed) validate against
``docs/manifest.schema.json``, the schema and the types declare the same keys, and older records read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pipeline.config import validate
from pipeline.errors import ExitCode
from pipeline.output import manifest as types
from pipeline.output.layout import Layout
from pipeline.report.data import find_record, report_data
from pipeline.report.html import render
from pipeline.report.summary import summary
from pipeline.runner import run_pipeline
from pipeline.synthetic import generate
from tests.conftest import ROOT, SAMPLE

SCHEMA = json.loads((ROOT / "docs" / "manifest.schema.json").read_text())


def check(manifest: dict[str, Any]) -> None:
    """Validate against the schema (date-times checked too), through the manifest as written."""
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(manifest)


def config(inputs: Path, out: Path, **run: Any) -> Any:
    return validate({"run": {"inputs": [str(inputs)], "output": str(out), "progress": "off", **run}})


def written(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The published manifest and the latest run's, as on disk."""
    lay = Layout.of(out)
    return json.loads(lay.manifest.read_text()), json.loads(lay.last_run.read_text())


def test_a_plain_run_and_a_run_with_rejects(tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    generate(clean, files=2, lines=2000, bad=0.0, seed=5)
    for inputs, rejected in ((clean, False), (SAMPLE, True)):
        out = tmp_path / inputs.name / "out"
        result = run_pipeline(config(inputs, out))
        assert result.exit_code == ExitCode.OK
        published, last = written(out)
        assert published["schema_version"] == types.SCHEMA_VERSION == last["schema_version"]
        assert bool(published["rejected"]) is rejected and bool(published["rejects"]) is rejected
        check(published)
        check(last)


def test_incremental_runs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    generate(logs, files=2, lines=1000, bad=0.01, seed=6)
    out = tmp_path / "out"
    statuses = []
    for _ in range(2):
        result = run_pipeline(config(logs, out, incremental=True))
        assert result.exit_code == ExitCode.OK
        statuses.append(result.manifest["status"])
        check(result.manifest)
        check(written(out)[1])
    assert statuses == ["ok", "unchanged"]
    assert {i["mode"] for i in written(out)[1]["inputs"]} == {"unchanged"}


def test_a_failed_run_beside_a_committed_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_pipeline(config(SAMPLE, out)).exit_code == ExitCode.OK
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "error.log").write_text("2026/11/01 10:00:00 [error] 1#1: open() failed\n" * 50)
    result = run_pipeline(config(junk, out))
    assert result.exit_code == ExitCode.FORMAT_MISMATCH
    last = written(out)[1]
    assert last["status"] == "format_mismatch" and last["committed"] is False
    assert last["previous_run"]["rows"] == written(out)[0]["rows"]
    check(last)
    missing = run_pipeline(config(tmp_path / "nowhere", tmp_path / "out2"))
    assert missing.exit_code == ExitCode.NO_INPUT
    check(json.loads(Layout.of(tmp_path / "out2").last_run.read_text()))


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        (types.Manifest, None),
        (types.Stage, "stage"),
        (types.Input, "input"),
        (types.Output, "output"),
        (types.PreviousRun, "previous_run"),
        (types.MachineReadings, "machine"),
    ],
)
def test_the_schema_and_the_types_declare_the_same_keys(typed: Any, name: str | None) -> None:
    schema = SCHEMA if name is None else SCHEMA["$defs"][name]
    assert list(schema["properties"]) == list(typed.__annotations__)
    assert sorted(schema["required"]) == sorted(typed.__required_keys__)


def test_a_record_without_the_later_sections_still_reads(tmp_path: Path) -> None:
    # what a record of an older logpipe holds: no schema_version, machine, advice, exit code or extras
    out = tmp_path / "out"
    assert run_pipeline(config(SAMPLE, out)).exit_code == ExitCode.OK
    lay = Layout.of(out)
    old = json.loads(lay.manifest.read_text())
    for key in (
        "schema_version",
        "machine",
        "advice",
        "queue_hints",
        "bottleneck",
        "exit_code",
        "filtered",
        "skipped",
    ):
        del old[key]
    for stage in old["stages"].values():
        for key in ("bound", "evidence", "wait_share", "blocked_share", "cpu_per_busy_s", "cores_used"):
            del stage[key]
    lay.manifest.write_text(json.dumps(old))
    (lay.current / "report.json").unlink()
    manifest, extras = find_record(out)
    assert extras is None and manifest["run_id"] == old["run_id"]
    check(old)
    assert "<h2>Stages</h2>" in render(report_data(manifest, extras))
    assert f"rows written {old['rows']:,}" in summary(manifest)
