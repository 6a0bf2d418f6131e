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


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_s3_layout_benchmark_reads_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import s3_layout

    layout = s3_layout.make_layout(objects=30, lines=4, hour=23)
    assert len({k.split("/")[-2] for k in layout.keys}) == 2  # 23:00 to 01:30: two date folders
    assert all(k.endswith(".log.gz") and "/2026/12/0" in k for k in layout.keys)
    argv = ["--objects", "30", "--lines", "4", "--repeat", "1", "--workers", "2", "--variants", "s3 objects"]
    assert s3_layout.main(argv) == 0  # it checks every listing and every run against the set
    printed = capsys.readouterr().out
    assert "list, glob **" in printed and "1.00 requests per object" in printed
    assert "run, s3 objects" in printed
