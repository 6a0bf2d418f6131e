"""The benchmark scripts still run (on the small sample data, not timed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench is a package beside pipeline, not installed

from bench import parse_scaling, report, server_formats  # noqa: E402
from pipeline.diagnostics.stats import RunStats, format_table  # noqa: E402
from pipeline.stages.parse import ParseTask  # noqa: E402


@pytest.mark.timeout(120)
def test_parse_scaling_feeds_every_line_through_the_parse_stage() -> None:
    files = sorted((REPO / "data" / "sample").glob("*.log"))
    chunks = parse_scaling.read_chunks(files, 64 * 1024, 1 << 20, 4096)
    tasks = [ParseTask(c) for c in chunks]
    rounds = [parse_scaling.one_round(w, tasks, "forkserver", 1 << 20) for w in (1, 2)]
    lines = sum(1 for f in files for _ in f.open("rb"))
    assert [r.lines for r in rounds] == [lines, lines]
    assert all(r.seconds > 0 and r.worker_cpu_s > 0 for r in rounds)
    assert "1.00x" in parse_scaling.report(rounds)


def test_stage_table_is_the_pipelines_own() -> None:
    stages = RunStats().summary(1.0)
    assert report.stage_table({"stages": stages, "status": "ok"}) == f"```\n{format_table(stages)}\n```"


@pytest.mark.timeout(120)
def test_the_server_formats_timing_reads_every_line_of_its_chunks(capsys: pytest.CaptureFixture[str]) -> None:
    assert server_formats.main(["--rounds", "1"]) == 0  # it checks that no line of a format is a reject
    table = capsys.readouterr().out
    assert all(f"\n{name} " in table for name in server_formats.LINES if name != "combined")
