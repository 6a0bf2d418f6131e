"""The plan of a run (``pipeline/plan.py``): inputs, formats detected per input, the columns, the
incremental decisions, fixed before the stages start."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.config import Config, validate
from pipeline.errors import FormatMismatch
from pipeline.formats import get_format
from pipeline.output.layout import Layout
from pipeline.output.record import RunRecord
from pipeline.plan import RunPlan, find_inputs, make_plan
from pipeline.stages.read import Chunk
from pipeline.synthetic import generate


def _plan(cfg: Config, full_refresh: bool = False) -> tuple[RunPlan, RunRecord]:
    record = RunRecord("test")
    layout = Layout.of(cfg.run.output, cfg.run.meta_dir)
    files, settings, sources = find_inputs(cfg, layout, record)
    return make_plan(cfg, files, settings, None, full_refresh, record, sources), record


def _jsonl(path: Path, lines: int = 50) -> Path:
    rows = (
        {"ts": f"2026-11-01T00:00:{k % 60:02d}Z", "ip": "10.0.0.1", "status": 200, "path": f"/p{k}"}
        for k in range(lines)
    )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_auto_detects_each_inputs_format_and_gives_their_union(tmp_path: Path) -> None:
    (access,) = generate(tmp_path / "logs", files=1, lines=200, bad=0.0)
    events = _jsonl(tmp_path / "logs" / "events.jsonl")
    cfg = validate(
        {"run": {"inputs": [str(tmp_path / "logs")], "output": str(tmp_path / "out"), "format": "auto"}}
    )
    plan, record = _plan(cfg)
    by_path = {plan.path(i): f for i, f in enumerate(plan.formats)}
    assert by_path[str(access)].key == "combined"
    assert not isinstance(by_path[str(events)].key, str)  # JSON lines, with the mapping it suggested
    assert len(plan.union) == 2
    assert set(plan.schema.names) >= set(get_format("combined").schema.names)
    assert {c.path: c.format for c in record.counts}[str(access)] == "combined"
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.rebuild = "changed"  # type: ignore[misc]


def test_an_input_no_format_reads_is_refused_naming_it(tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("nothing here is a log line\n" * 20)
    cfg = validate({"run": {"inputs": [str(src)], "output": str(tmp_path / "out"), "format": "auto"}})
    with pytest.raises(FormatMismatch, match=r"notes\.txt"):
        _plan(cfg)


def test_a_single_format_keeps_its_own_parquet_settings_unless_a_column_is_retyped(tmp_path: Path) -> None:
    generate(tmp_path / "logs", files=1, lines=50, bad=0.0)
    cfg = validate({"run": {"inputs": [str(tmp_path / "logs")], "output": str(tmp_path / "out")}})
    plan, _ = _plan(cfg)
    fmt = plan.formats[0]
    assert plan.union == () and plan.schema == fmt.schema
    assert plan.parquet_options(plan.schema) == fmt.parquet_options
    retyped = plan.schema.set(
        plan.schema.get_field_index("bytes"), plan.schema.field("bytes").with_type(pa.string())
    )
    assert plan.parquet_options(retyped) != fmt.parquet_options


def test_a_chunk_becomes_a_task_with_its_inputs_format_and_the_time_window(tmp_path: Path) -> None:
    generate(tmp_path / "logs", files=2, lines=50, bad=0.0)
    since = datetime(2026, 11, 2, tzinfo=UTC)
    cfg = validate(
        {
            "run": {
                "inputs": [str(tmp_path / "logs")],
                "output": str(tmp_path / "out"),
                "since": since.isoformat(),
            }
        }
    )
    plan, _ = _plan(cfg)
    task = plan.tasks(cfg, (), panels=True)(Chunk(1, plan.path(1), 0, 1, b"", 0))
    assert task.format == plan.formats[1].key
    assert task.since_us == int(since.timestamp()) * 1_000_000 and task.until_us is None
    assert task.panels is True and task.max_line_bytes == cfg.read.max_line_bytes


def test_an_incremental_run_without_a_dataset_appends_and_has_seen_nothing(tmp_path: Path) -> None:
    generate(tmp_path / "logs", files=1, lines=50, bad=0.0)
    cfg = validate(
        {"run": {"inputs": [str(tmp_path / "logs")], "output": str(tmp_path / "out"), "incremental": True}}
    )
    plan, _ = _plan(cfg)
    assert plan.appends and not plan.seen_before and plan.rebuild is None
    assert [p.mode for p in plan.reads] == ["new"] and plan.state_changed()
    full, _ = _plan(cfg, full_refresh=True)
    assert not full.appends


@pytest.mark.parametrize("workers", [1, 4])
def test_auto_judges_every_input_alike_on_any_number_of_threads(tmp_path: Path, workers: int) -> None:
    # many inputs, judged read.workers at a time: the same format for each as one at a time, and the
    # first input (in input order) that no format reads is the one named
    src = tmp_path / "logs"
    generate(src, files=6, lines=40, bad=0.0)
    for k in range(6):
        _jsonl(src / f"j{k}.log", 20)
    (src / "zz-notes.txt").write_text("just some notes\n" * 3)
    (src / "zz-other.txt").write_text("other notes\n" * 3)
    data = {"run": {"inputs": [str(src)], "output": str(tmp_path / "out"), "format": "auto"}}
    cfg = validate({**data, "read": {"workers": workers}})
    with pytest.raises(FormatMismatch, match=r"zz-notes\.txt") as info:
        _plan(cfg)
    assert "zz-other" not in str(info.value)
    (src / "zz-notes.txt").unlink()
    (src / "zz-other.txt").unlink()
    plan, _ = _plan(validate({**data, "read": {"workers": workers}}))
    keys = {Path(p.path).name: f.key for p, f in zip(plan.reads, plan.formats, strict=True)}
    assert {k for n, k in keys.items() if not n.startswith("j")} == {"combined"}
    assert len({str(k) for n, k in keys.items() if n.startswith("j")}) == 1 and len(keys) == 12
