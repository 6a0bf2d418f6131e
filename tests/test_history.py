"""The report of a date range of a stored dataset (pipeline.report.history, ``logpipe report OUTPUT``).

The reference for a range is the report of one run over the same lines, kept to that range by the run's
own ``run.since``/``run.until``: the history, read back from the Parquet files however incremental runs
appended them and compaction merged them, must draw the same panels. Equal, not only close: every panel
that is a sketch (latency percentiles, visitors) merges the same buckets whatever the batches, so within
their stated error holds with room to spare.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.config import ConfigError, validate
from pipeline.errors import ExitCode
from pipeline.output.compact import Sizes, compact
from pipeline.output.layout import Layout
from pipeline.report.history import DateRange, HistoryError, _ordered, dataset_files, history_data, window
from pipeline.report.html import covers_line, render
from pipeline.runner import run_pipeline
from pipeline.synthetic import generate
from tests.conftest import run_cli

FIRST = date(2026, 11, 1)
DAYS = 4


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four logs, one a day from 2026-11-01 (each spills a little into the next date), 0.1% malformed."""
    src = tmp_path_factory.mktemp("days")
    generate(src, files=DAYS, lines=2500, seed=11)
    return src


def _run(inputs: list[Path], out: Path, full_refresh: bool = False, **run: Any) -> dict[str, Any]:
    """One in-process run (inline parse) that keeps its panels; the panels it recorded."""
    cfg = validate(
        {
            "run": {"inputs": [str(p) for p in inputs], "output": str(out), "progress": "off", "panels": True}
            | run,
            "parse": {"executor": "inline"},
        }
    )
    result = run_pipeline(cfg, full_refresh)
    assert result.exit_code == ExitCode.OK, result.error
    panels: dict[str, Any] = json.loads((Layout.of(out).current / "report.json").read_text())["panels"]
    return panels


def _one_run(
    days: Path, tmp_path: Path, since: date | None = None, until: date | None = None
) -> dict[str, Any]:
    """The reference: one run over every line, keeping the dates from ``since`` to ``until`` included."""
    bounds: dict[str, Any] = {"since": since.isoformat()} if since else {}
    bounds |= {"until": (until + timedelta(days=1)).isoformat()} if until else {}
    return _run([days], tmp_path / f"one-{since}-{until}", **bounds)


def _history(out: Path, since: date | None = None, until: date | None = None) -> dict[str, Any]:
    panels = dict(history_data(out, DateRange(since, until))["panels"])
    panels.pop("covers")
    return panels


def _incremental(days: Path, tmp_path: Path, **run: Any) -> tuple[Path, list[dict[str, Any]]]:
    """The days' logs arriving one at a time, an incremental run after each; the runs' panels."""
    src, out = tmp_path / "in", tmp_path / "inc"
    src.mkdir(parents=True)
    recorded = []
    for log in sorted(days.iterdir()):
        shutil.copy(log, src / log.name)
        recorded.append(_run([src], out, incremental=True, **run))
    return out, recorded


def _rows_per_date(out: Path) -> dict[date, int]:
    """An independent count: the rows of each date's files, from their Parquet footers."""
    return {
        d: sum(pq.read_metadata(out / r).num_rows for r in rels) for d, rels in dataset_files(out).items()
    }


def test_the_history_equals_one_run_over_the_same_lines(days: Path, tmp_path: Path) -> None:
    whole = _one_run(days, tmp_path)
    out = tmp_path / f"one-{None}-{None}"
    assert whole["rows"] == sum(_rows_per_date(out).values()) > 9000
    assert _history(out) == whole
    # a sub-range: the dates outside it are not counted
    since, until = FIRST + timedelta(days=1), FIRST + timedelta(days=2)
    part = _history(out, since, until)
    assert part == _one_run(days, tmp_path, since, until)
    per_date = _rows_per_date(out)
    assert part["rows"] == per_date[since] + per_date[until] < whole["rows"]
    assert part["first_ts"] >= f"{since}T" and part["last_ts"] < f"{until + timedelta(days=1)}T"
    # open on one side
    assert _history(out, since=until)["rows"] == sum(n for d, n in per_date.items() if d >= until)
    assert _history(out, until=since)["rows"] == sum(n for d, n in per_date.items() if d <= since)


def test_incremental_appends_compaction_and_a_full_refresh_report_as_one_run(
    days: Path, tmp_path: Path
) -> None:
    out, _ = _incremental(days, tmp_path, report_days=0)
    assert max(len(rels) for rels in dataset_files(out).values()) > 1  # dates appended to by later runs
    whole = _one_run(days, tmp_path)
    since, until = FIRST + timedelta(days=1), FIRST + timedelta(days=3)
    part = _one_run(days, tmp_path, since, until)
    assert _history(out) == whole and _history(out, since, until) == part
    outcome = compact(Layout.of(out), Sizes(65536, 1_000_000), 2)
    assert outcome.exit_code == ExitCode.OK and outcome.status == "compacted", outcome
    assert all(len(rels) == 1 for rels in dataset_files(out).values())
    assert _history(out) == whole and _history(out, since, until) == part
    _run([tmp_path / "in"], out, full_refresh=True, incremental=True, report_days=0)
    assert _history(out) == whole


def test_an_incremental_runs_report_covers_its_window_of_the_history(days: Path, tmp_path: Path) -> None:
    _, recorded = _incremental(days, tmp_path, report_days=2)
    newest = max(_rows_per_date(tmp_path / "inc"))
    covers = dict(recorded[-1]["covers"])
    assert covers.pop("dates_summarized") + covers.pop("dates_added_to") <= 2  # (test_date_summaries)
    assert covers == {
        "since": str(newest - timedelta(days=1)),
        "until": str(newest),
        "first": str(newest - timedelta(days=1)),
        "last": str(newest),
        "dates": 2,
        "files": recorded[-1]["covers"]["files"],
        "window_days": 2,
    }
    # the page says which dates
    page = render({"run_id": "r", "panels": recorded[-1]})
    assert f"Covers dates {newest - timedelta(days=1)} to {newest}: 2 dates with data" in page
    last = dict(recorded[-1])
    last.pop("covers")
    assert last == _one_run(days, tmp_path, newest - timedelta(days=1), newest)
    # the first run's window holds all it wrote: the first log's dates, from the first date
    assert recorded[0]["covers"]["first"] == str(FIRST) and recorded[0]["rows"] > 2400
    # report_days = 0: only the run's new lines
    _, only_new = _incremental(days, tmp_path / "new", report_days=0)
    last_log = sorted(days.iterdir())[-1]
    assert "covers" not in only_new[-1] and only_new[-1] == _run([last_log], tmp_path / "last")


def test_window_ends_at_the_newest_date() -> None:
    dates = [date(2026, 11, 1), date(2026, 11, 9), date(2026, 11, 3)]
    assert window(dates, 7) == DateRange(date(2026, 11, 3), date(2026, 11, 9))
    assert window(dates, 1) == DateRange(date(2026, 11, 9), date(2026, 11, 9))
    assert window([], 7) == DateRange()
    with pytest.raises(ValueError, match="after"):
        DateRange(date(2026, 11, 2), date(2026, 11, 1))


def test_report_days_is_validated() -> None:
    assert validate({}).run.report_days == 7
    with pytest.raises(ConfigError, match="report_days"):
        validate({"run": {"report_days": -1}})


def test_the_scan_holds_a_bounded_number_of_results() -> None:
    """However many row groups the range has, at most two per thread are read ahead of the merge."""
    started: list[int] = []

    def tasks() -> Any:
        for i in range(100):
            started.append(i)
            yield (Path("x"), i)

    for k, _ in enumerate(_ordered(lambda task: [bytes(task[1])], tasks(), threads=2)):
        assert len(started) <= k + 1 + 4
    assert len(started) == 100


@pytest.mark.timeout(180)
def test_the_report_command_over_a_dataset(days: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run([days], out)
    html = tmp_path / "h.html"
    proc = run_cli("report", str(out), "--since", "2026-11-02", "--until", "2026-11-03", "--to", str(html))
    assert proc.returncode == 0, proc.stderr
    page = html.read_text()
    assert page.count("dates 2026-11-02 to 2026-11-03: 2 dates with data, 2026-11-02 to 2026-11-03") == 1
    assert "Top paths" in page and "Worker timeline" not in page
    # an empty range says so, in the page and on stdout
    proc = run_cli("report", str(out), "--since", "2030-01-01", "--to", str(html))
    assert proc.returncode == 0, proc.stderr
    assert "dates from 2030-01-01: no data (no date of the dataset is in this range)" in html.read_text()
    assert "0 dates" in proc.stdout
    # usage errors: exit 2, nothing written
    html.unlink()
    for args in (["--since", "2026-11-03", "--until", "2026-11-02"], ["--since", "11/02/2026"]):
        proc = run_cli("report", str(out), *args, "--to", str(html))
        assert proc.returncode == ExitCode.USAGE and not html.exists(), proc.stderr
    proc = run_cli("report", str(Layout.of(out).meta), "--since", "2026-11-02", "--to", str(html))
    assert proc.returncode == ExitCode.USAGE and "run record" in proc.stderr
    # the record still draws its run's report
    proc = run_cli("report", str(Layout.of(out).meta), "--to", str(html))
    assert proc.returncode == 0 and "Worker timeline" in html.read_text(), proc.stderr
    proc = run_cli("report", str(tmp_path), "--to", str(html))
    assert proc.returncode == ExitCode.FAILURE and "neither a run record" in proc.stderr


def test_a_file_that_cannot_be_read_is_named(days: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run([days], out)
    rel = dataset_files(out)[FIRST][0]
    (out / rel).write_bytes(b"not parquet")
    with pytest.raises(HistoryError, match=rel.split("/")[1]):
        history_data(out, DateRange())
    # the other dates still report
    assert history_data(out, DateRange(since=FIRST + timedelta(days=1)))["rows"] > 0


def test_the_page_names_the_range_asked_and_the_dates_with_data() -> None:
    data = {"dates": 2, "first": "2026-11-02", "last": "2026-11-03"}
    assert covers_line(data) == "all dates: 2 dates with data, 2026-11-02 to 2026-11-03"
    assert covers_line(data | {"since": "2026-11-02"}).startswith("dates from 2026-11-02: 2 dates")
    assert covers_line(data | {"until": "2026-11-05"}).startswith("dates up to 2026-11-05: 2 dates")
    both = {"since": "2026-12-01", "until": "2026-12-31", "dates": 0}
    assert covers_line(both) == (
        "dates 2026-12-01 to 2026-12-31: no data (no date of the dataset is in this range)"
    )
