"""The run report end to end: ``logpipe run --report`` and ``logpipe report`` on a real run's record,
drawn in headless Chromium, with a hostile line in the input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.output.layout import Layout
from pipeline.report.data import PANELS_NOTE, RejectExamples, find_record
from pipeline.report.html import COLOURS
from tests.conftest import BROWSER_TIMEOUT_S, SAMPLE, chromium, needs_chromium, pixels_near, run_cli

XSS_AGENT = "<script>document.title='pwned'</script>"
XSS_PATH = "/<img%20src=x%20onerror=document.title=1>"  # as a browser sends it: no spaces


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """The sample, plus lines whose agent and path are markup (the path as a browser would send it)."""
    d = tmp_path / "logs"
    shutil.copytree(SAMPLE, d)
    line = f'6.6.6.6 - - [01/Nov/2026:10:00:00 +0000] "GET {XSS_PATH} HTTP/1.1" 404 5 "-" "{XSS_AGENT}"\n'
    (d / "hostile.log").write_text(line * 50)
    return d


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_run_report_and_report_of_the_record(logs: Path, tmp_path: Path) -> None:
    out, html = tmp_path / "out", tmp_path / "run.html"
    proc = run_cli("run", "-c", "configs/laptop.toml", "-i", str(logs), "-o", str(out), "--report", str(html))
    assert proc.returncode == 0, proc.stderr
    page = html.read_text()
    # the panels came from the rows as they passed: the hostile agent is a top agent, as text
    assert "&lt;script&gt;document.title=" in page and XSS_AGENT not in page
    assert "<img" not in page and "&lt;img%20src=x" in page  # the path, a top 404
    manifest = json.loads(Layout.of(out).manifest.read_text())
    extras = json.loads((Layout.of(out).current / "report.json").read_text())
    assert extras["panels"]["rows"] == manifest["rows"]
    assert [e[0] for e in extras["panels"]["user_agents"]].count(XSS_AGENT) == 1
    assert {lane["stage"] for lane in extras["timeline"]["lanes"]} == {"read", "parse", "write"}
    # the same record drawn again later gives the same sections
    again = tmp_path / "again.html"
    proc = run_cli("report", str(Layout.of(out).meta), "--to", str(again))
    assert proc.returncode == 0, proc.stderr
    headings = re.compile(r"<h2[^>]*>([^<]+)</h2>")
    assert headings.findall(again.read_text()) == headings.findall(page)


@pytest.mark.timeout(120)
def test_a_run_without_a_report_keeps_the_timeline_and_says_why_panels_are_missing(tmp_path: Path) -> None:
    out, html = tmp_path / "out", tmp_path / "later.html"
    assert run_cli("run", "-c", "configs/laptop.toml", "-o", str(out)).returncode == 0
    proc = run_cli("report", str(Layout.of(out).last_run), "--to", str(html))
    assert proc.returncode == 0, proc.stderr
    page = html.read_text()
    assert "run.panels = true" in page and "Worker timeline" in page
    assert run_cli("report", str(tmp_path / "nothing"), "--to", str(html)).returncode == 1


def test_find_record_takes_the_output_the_meta_dir_the_record_or_a_manifest(tmp_path: Path) -> None:
    lay = Layout.of(tmp_path / "out")
    lay.current.mkdir(parents=True)
    (lay.manifest).write_text(json.dumps({"run_id": "a"}))
    (lay.current / "report.json").write_text(json.dumps({"panels": None}))
    lay.last_run.write_text(json.dumps({"run_id": "b"}))
    for where in (lay.output, lay.meta, lay.current, lay.manifest):
        manifest, extras = find_record(where)
        assert manifest["run_id"] == "a" and dict(extras or {}) == {"panels": None}
    manifest, extras = find_record(lay.last_run)
    assert manifest["run_id"] == "b" and extras is None  # no last-report.json beside it
    with pytest.raises(FileNotFoundError):
        find_record(tmp_path / "elsewhere")
    assert "run.panels" in PANELS_NOTE


def test_reject_examples_keep_a_few_of_each_reason() -> None:
    examples = RejectExamples(per_reason=2)
    batch = pa.RecordBatch.from_pydict(
        {
            "line": [1, 2, 3, 4],
            "reason": ["no match", "no match", "no match", "empty line"],
            "raw": [b"a", b"\xff\xfe", b"c", b""],
        }
    )
    examples.add("f.log", batch)
    rows = examples.to_list()
    assert [(r["line"], r["reason"]) for r in rows] == [(1, "no match"), (2, "no match"), (4, "empty line")]
    assert rows[1]["raw"] == "\ufffd\ufffd"  # invalid UTF-8 shown, not raised


@needs_chromium
@pytest.mark.timeout(BROWSER_TIMEOUT_S + 120)
def test_a_real_runs_report_draws_and_the_hostile_line_stays_text(logs: Path, tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    out, html = tmp_path / "out", tmp_path / "run.html"
    proc = run_cli("run", "-c", "configs/laptop.toml", "-i", str(logs), "-o", str(out), "--report", str(html))
    assert proc.returncode == 0, proc.stderr
    shot = tmp_path / "shot.png"
    chromium(html.read_text(), tmp_path, f"--screenshot={shot}", "--window-size=1400,1200")
    with Image.open(shot) as raw:
        image = raw.convert("RGB")
    assert max(ImageStat.Stat(image).stddev) > 20  # not blank
    assert pixels_near(image, COLOURS["busy"]) > 2_000  # the timeline's busy bars are drawn
    dom = chromium(html.read_text(), tmp_path, "--dump-dom").stdout
    assert "pwned" not in (re.search(r"<title>([^<]*)</title>", dom) or [""])[0]
    assert "&lt;script&gt;document.title=" in dom
