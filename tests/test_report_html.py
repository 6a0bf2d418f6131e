"""The HTML run report: escaping of log text, no network loads, notes for missing sections, size, speed,
and (with headless Chromium) that the page draws and that log text stays text in a real browser."""

from __future__ import annotations

import html
import json
import random
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.report.html import COLOURS, per_second, render

# Strings a client controls (user agent, path, referrer) or a log file holds. Each would change the page
# if it were markup: set the title, add an element, or end Bokeh's script early.
HOSTILE = [
    "<script>document.title='pwned-script'</script>",
    "\"><img src=x onerror=\"document.title='pwned-img';document.body.dataset.xss='1'\">",
    "</script><script>document.title='pwned-break'</script>",
    '<b id="xss-marker">bold</b>',
    "' onmouseover='document.title=1' x='",
    "$$\\frac{pwned}{tex}$$",  # TeX: Bokeh would typeset this in an axis label (and load MathJax)
    "gnp.\u202eexe",  # a right-to-left override: must show as an escape, not reorder the text
]
TITLE = "logpipe run 20250102T030405Z-ab12"
SIZE_LIMIT = 1_450_000  # bytes: Bokeh's core bundle is ~1.27 MB, the data of a typical run ~0.1 MB


def report_data(intervals: int = 3000, samples: int = 1000, hostile: bool = True) -> dict[str, Any]:
    """A report data dict as the CLI builds it: a 30 s run, 2 readers, 2 parsers, 1 writer."""
    rng = random.Random(7)
    bad = HOSTILE if hostile else [f"plain-{i}" for i in range(len(HOSTILE))]
    wall = 30.0
    workers = [("read", "read-0"), ("read", "read-1"), ("parse", "parse-0"), ("parse", "parse-1")]
    workers.append(("write", "write-0"))
    lanes = []
    per_lane = intervals // len(workers)
    for stage, worker in workers:
        cuts = sorted(rng.uniform(0, wall) for _ in range(per_lane - 1))
        bounds = [0.0, *cuts, wall]
        kinds = rng.choices(["busy", "wait", "blocked"], weights=[6, 3, 1], k=per_lane)
        spans = [[a, b, k] for a, b, k in zip(bounds[:-1], bounds[1:], kinds, strict=True)]
        lanes.append({"stage": stage, "worker": worker, "intervals": spans})
    t = [wall * i / (samples - 1) for i in range(samples)]
    read = [int(1_000_000 * x / wall) for x in t]
    base = {
        "workers": 2, "executor": "thread", "items_in": 120, "items_out": 120, "lines": 1_000_000,
        "bytes": 210_000_000, "wall_s": 29.8, "busy_s": 40.1, "wait_in_s": 10.2, "blocked_out_s": 1.1,
        "cpu_s": 39.0, "utilization": 0.67, "lines_per_s": 33_500, "mb_per_s": 7.0, "bound": "cpu-bound",
        "evidence": "busy 67% of wall, CPU 97% of busy",
    }  # fmt: skip
    buckets = 120
    return {
        "run_id": "20250102T030405Z-ab12",
        "status": "ok",
        "exit_code": 0,
        "started_at": "2025-01-02T03:04:05+00:00",
        "finished_at": "2025-01-02T03:04:35+00:00",
        "wall_s": wall,
        "lines": 1_000_000,
        "rows": 998_000,
        "rejected": 1_500,
        "filtered": 500,
        "stages": {
            "read": {**base, "executor": "thread", "bound": "wait-bound"},
            "parse": {**base, "executor": "process", "bound": "cpu-bound"},
            "write": {**base, "workers": 1, "bound": "io-bound", "evidence": bad[0]},
        },
        "bottleneck": "parse",
        "advice": ["parse is cpu-bound on 2 processes: set parse.workers = 4", *bad[:2]],
        "table": "stage  workers  bound\nread   2        wait-bound\n" + bad[2],
        "timeline": {"lanes": lanes},
        "samples": {
            "t": t,
            "read_lines": read,
            "parsed_lines": [max(0, x - 20_000) for x in read],
            "written_rows": [max(0, x - 40_000) for x in read],
            "chunk_queue": [rng.randint(0, 8) for _ in t],
            "result_queue": [rng.randint(0, 4) for _ in t],
            "chunk_queue_max": 8,
            "result_queue_max": 4,
        },
        "rejects": {
            "by_reason": {"bad_format": 1_200, "bad_timestamp": 300, bad[0]: 1},
            "examples": [
                {"file": f"logs/{s}.log", "line": 10 + i, "reason": "bad_format", "raw": f"1.2.3.4 - {s}"}
                for i, s in enumerate(bad)
            ],
        },
        "panels": {
            "rows": 998_000,
            "first_ts": "2025-01-01T00:00:00+00:00",
            "last_ts": "2025-01-01T01:59:59+00:00",
            "bucket_s": 60,
            "over_time": {
                "t": [f"2025-01-01T{m // 60:02d}:{m % 60:02d}:00+00:00" for m in range(buckets)],
                "requests": [8000 + rng.randint(0, 500) for _ in range(buckets)],
                "visitors": [900 + rng.randint(0, 100) for _ in range(buckets)],
            },
            "unique_visitors": 41_000,
            "status": [[200, 900_000], [304, 50_000], [404, 40_000], [500, 8_000]],
            "top_paths": [["/index.html", 100_000], *[[f"/search?q={s}", 500] for s in bad]],
            "not_found": [["/wp-login.php", 9_000], *[[f"/{s}", 30] for s in bad]],
            "user_agents": [["Mozilla/5.0 (X11; Linux x86_64)", 400_000], *[[s, 99] for s in bad]],
            "bots": [["Googlebot/2.1", 20_000], *[[f"bot {s}", 7] for s in bad]],
            "referrers": [["https://example.com/", 3_000], ["javascript:alert(1)", 2], [bad[1], 1]],
            "ips": [["203.0.113.7", 5_000], ["2001:db8::1", 4_000]],
            "bot_share": 0.12,
            "bytes_sent": 12_345_678_901,
            "exact": {"top_lists": True, "visitors": False},
            "missing": [],
        },
    }


class _Tags(HTMLParser):
    """The elements of a page as a browser's tokenizer sees them (a script's text is one data run)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


def _parse(page: str) -> _Tags:
    tags = _Tags()
    tags.feed(page)
    tags.close()
    return tags


@pytest.fixture(scope="module")
def page() -> str:
    return render(report_data())


def test_log_text_stays_text(page: str) -> None:
    tags = _parse(page)
    # exactly our three scripts (Bokeh's bundle, its log level, the plots), no element a log string adds
    assert [t for t, _ in tags.tags].count("script") == 3
    assert not [t for t, _ in tags.tags if t in ("img", "iframe", "object", "embed", "a", "link", "base")]
    for tag, attrs in tags.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        assert attrs.get("id") != "xss-marker"
    # each hostile string is in the page as text (escaped in the source, whole when read back)
    text = "".join(tags.text)
    for s in HOSTILE[:5]:
        assert html.escape(s, quote=True) in page
        assert s in text
    # control and bidi characters are shown as escapes
    assert "\u202e" not in page
    assert "gnp.\\u202eexe" in text


def test_no_log_text_enters_the_bokeh_document(page: str) -> None:
    """The plots carry numbers and our own labels, so Bokeh's JSON cannot be broken out of by a log."""
    scripts = _parse(page).scripts
    plots = scripts[-1]
    assert "Bokeh.embed.embed_items" in plots
    # (without the arrays, which Bokeh embeds gzipped in base64: any word may turn up in those)
    words = re.sub(r'"data":"[A-Za-z0-9+/=]*"', "", plots)
    for needle in ("pwned", "xss", "onerror", "frac", "script"):
        assert needle not in words
    # Bokeh HTML-escapes the document JSON: no '<' at all, so no '</script>'
    assert "<" not in plots.split("docs_json = ", 1)[1].split("\n", 1)[0]


def _bokeh_document(page: str) -> dict[str, Any]:
    """The document the plots script embeds (undoing Bokeh's escapes of a JSON text in a JS string)."""
    line = _parse(page).scripts[-1].split("const docs_json = ", 1)[1].split("\n", 1)[0]
    text = html.unescape(line.strip().rstrip(";")[1:-1].replace("\\\\", "\\"))
    (doc,) = json.loads(text).values()
    return doc  # type: ignore[no-any-return]


def test_run_time_plots_zoom_together(page: str) -> None:
    roots = [r["attributes"] for r in _bokeh_document(page)["roots"]]
    assert len(roots) == 5  # timeline, lines per second, queues, requests over time, status codes
    timeline, rates, queues = roots[:3]
    assert rates["x_range"]["id"] == queues["x_range"]["id"] == timeline["x_range"]["id"]
    tools = [t["name"] for t in timeline["toolbar"]["attributes"]["tools"]]
    assert {"PanTool", "WheelZoomTool", "BoxZoomTool", "ResetTool", "HoverTool"} <= set(tools)
    assert timeline["toolbar"]["attributes"]["active_scroll"] is not None  # the wheel zooms the timeline


def test_hostile_lane_names_and_status_codes_are_reduced_to_labels() -> None:
    data = report_data(intervals=30, samples=10)
    data["timeline"]["lanes"][0]["worker"] = "</script><script>document.title='pwned'</script>"
    data["timeline"]["lanes"][1]["worker"] = "$$x$$"
    data["panels"]["status"].append(["</script><img src=x onerror=alert(1)>", 3])
    page = render(data)
    plots = _parse(page).scripts[-1]
    assert "title='pwned'" not in plots and "<" not in plots.split("docs_json = ", 1)[1].split("\n")[0]
    assert "$$" not in plots and "onerror" not in plots
    assert "script_script_document.title_pwned_" in plots  # the label left of that name
    assert '"other"' in plots  # a status that is not a number becomes one 'other' bar
    assert "other: 3 " in page


def test_bokeh_escapes_script_ends_in_its_json() -> None:
    """The second layer: Bokeh itself would escape a '</script>' inside a string of its document."""
    from bokeh.embed import components
    from bokeh.plotting import figure

    fig = figure(title="</script><script>document.title='pwned'</script>")
    fig.line([1, 2], [1, 2])
    script, _ = components(fig)
    body = script.split(">", 1)[1].rsplit("</script>", 1)[0]
    assert "</script" not in body and "&lt;/script&gt;" in body


def test_loads_nothing_from_the_network(page: str) -> None:
    tags = _parse(page)
    for tag, attrs in tags.tags:
        for name in ("src", "href", "action", "data", "poster", "srcset"):
            value = attrs.get(name) or ""
            assert not re.match(r"\s*(https?:)?//", value, re.IGNORECASE), (tag, name, value)
    assert all("src" not in attrs for tag, attrs in tags.tags if tag == "script")  # all inline
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page.split("<script>", 1)[0], re.IGNORECASE)
    csp = [
        a["content"] for t, a in tags.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert (
        csp
        and "default-src 'none'" in (csp[0] or "")
        and "unsafe-inline" not in (csp[0] or "").split("script-src", 1)[1].split(";", 1)[0]
    )


def test_size_and_only_the_core_bundle(page: str) -> None:
    size = len(page.encode())
    print(f"typical report: {size:,} bytes")  # noqa: T201 (the number the docs quote, with -s)
    assert size < SIZE_LIMIT
    assert "BEGIN bokeh.min.js" in page
    for bundle in ("bokeh-widgets", "bokeh-tables", "bokeh-gl", "bokeh-mathjax"):
        assert f"BEGIN {bundle}" not in page


def test_sections_in_order(page: str) -> None:
    marks = ["<h1>", "<h2>Stages", "Advice", "<h2>Worker timeline", "<h2>Throughput", "<h2>Rejected",
             "<h2>Access log", "Top paths", "Not found (404)", "Top user agents", "Bots", "Top referrers",
             "Top client IPs"]  # fmt: skip
    at = [page.index(m) for m in marks]
    assert at == sorted(at)
    assert '<tr class="bottleneck"><td>parse</td>' in page
    assert "could not be drawn" not in page and "not collected" not in page


@pytest.mark.parametrize("key", ["timeline", "samples", "rejects", "panels", "stages"])
def test_a_missing_section_is_a_note(key: str) -> None:
    data = report_data(intervals=30, samples=10)
    data[key] = None
    page = render(data)
    what = {
        "timeline": "worker timeline was",
        "samples": "throughput samples were",
        "rejects": "rejects were",
    }
    what |= {"panels": "panels were", "stages": "stage statistics were"}
    assert f"{what[key]} not collected: not in this run record" in page
    assert "<h2>Access log" in page  # the rest is still there


def test_a_note_says_why_when_the_record_does() -> None:
    data = report_data(intervals=30, samples=10)
    data["panels"] = None
    data["notes"] = {"panels": "<the format has no path>"}
    assert "panels were not collected: &lt;the format has no path&gt;" in render(data)


def test_a_bare_record_and_a_malformed_section_still_render() -> None:
    page = render({"run_id": "r1"})
    assert "<title>logpipe run r1</title>" in page and "panels were not collected" in page
    assert "<script" not in page  # no plot, no Bokeh bundle: a few kB
    data = report_data(intervals=30, samples=10)
    data["timeline"]["lanes"][0]["intervals"][0] = ["soon", 1.0, "busy"]
    data["panels"]["over_time"]["t"][0] = "yesterday"
    page = render(data)
    assert page.count("this section could not be drawn from the run record (ValueError") == 2
    assert "<h2>Rejected" in page and "Top client IPs" in page
    # partial panels: a panel the format has no columns for, absent lists, counts from a bounded sketch
    data["panels"].update(bots=None, referrers=[], missing=["user_agents"])
    data["panels"]["exact"] = {"top_lists": False, "visitors": False, "top_lists_max_undercount": {"ips": 12}}
    page = render(data)
    assert "Panels this log format has no columns for: user_agents." in page
    assert "top user agents: not in this log format" in page and "Mozilla/5.0" not in page
    assert "bots not collected" in page and 'Top referrers</h3>\n<p class="note">none</p>' in page
    assert "a count shown may be low" in page and "counts may be low by up to 12" in page


def test_per_second() -> None:
    t = np.array([0.0, 0.5, 1.0, 1.0, 2.0])
    at, rate = per_second(t, [0, 100, 300, 300, 400, 999])  # a repeated time is dropped, extra counts too
    assert at.tolist() == [0.5, 1.0, 2.0] and rate.tolist() == [200.0, 400.0, 100.0]
    assert per_second(t[:1], [5])[0].size == 0


def test_empty_series_are_notes() -> None:
    data = report_data(intervals=30, samples=10)
    data["samples"] = {"t": [0.0, 1.0]}
    data["timeline"] = {"lanes": [{"stage": "read", "worker": "read-0", "intervals": []}]}
    data["panels"] = {"rows": 0, "over_time": {"t": []}, "status": [], "top_paths": []}
    page = render(data)
    for note in (
        "no line counts in the samples",
        "no queue depths in the samples",
        "status codes not collected",
    ):
        assert note in page
    assert "requests over time not collected: no timestamps" in page and "bots not collected" in page
    assert "could not be drawn" not in page
    assert len(_bokeh_document(page)["roots"]) == 1  # the (empty) timeline alone


def test_render_is_fast() -> None:
    data = report_data(intervals=3000, samples=1000)
    render(report_data(intervals=10, samples=10))  # Bokeh's import is not the renderer's time
    start = time.perf_counter()
    render(data)
    elapsed = time.perf_counter() - start
    print(f"render 3,000 intervals, 1,000 samples: {elapsed:.2f} s")  # noqa: T201
    assert elapsed < 2.0  # ~0.5 s here; the bound leaves room for a shared machine


# --- in a browser -------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not on PATH (CI installs it: apt-get install chromium)"
)
BROWSER_TIMEOUT_S = 45


def _chromium(page: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Open ``page`` in headless Chromium with no network: any request would fail, and the page would not
    draw if it needed one."""
    assert CHROMIUM is not None
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",  # its own profile: tests and other runs do not share one
        "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=5000",  # run the page's timers ahead (Bokeh draws after the load event)
        *args, path.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _inject(page: str, markup: str) -> str:
    """``markup`` at the start of the body (not the first '<body>' in the page: Bokeh's bundle has one)."""
    start = "</head>\n<body>\n"
    assert page.count(start) == 1
    return page.replace(start, start + markup)


def _pixels_near(image: Any, colour: str, tolerance: int = 6) -> int:
    rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return sum(
        n
        for n, pixel in image.getcolors(maxcolors=1 << 24)
        if all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], rgb, strict=True))
    )


@needs_chromium
@pytest.mark.timeout(BROWSER_TIMEOUT_S + 15)
def test_browser_draws_the_timeline(page: str, tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    shot = tmp_path / "shot.png"
    _chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1400,1400")
    with Image.open(shot) as raw:
        image = raw.convert("RGB")
    # not a blank page
    assert max(ImageStat.Stat(image).stddev) > 20
    # the timeline's bars: thousands of pixels in the busy and blocked colours (a legend swatch is ~200).
    # Only a drawn canvas has them: the HTML uses neither colour, and Bokeh drew with no network.
    busy, blocked = _pixels_near(image, COLOURS["busy"]), _pixels_near(image, COLOURS["blocked"])
    assert busy > 20_000, busy
    assert blocked > 2_000, blocked


@needs_chromium
@pytest.mark.timeout(BROWSER_TIMEOUT_S + 15)
def test_browser_keeps_log_text_as_text_without_the_csp(page: str, tmp_path: Path) -> None:
    """The escaping alone holds: with the page's Content-Security-Policy removed, no payload runs."""
    bare = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    assert bare != page
    dom = _chromium(bare, tmp_path, "--dump-dom").stdout
    assert f"<title>{TITLE}</title>" in dom
    assert "<b id=" not in dom and "data-xss" not in dom and "<img" not in dom
    assert '&lt;b id="xss-marker"&gt;' in dom  # there, as text


@needs_chromium
@pytest.mark.timeout(BROWSER_TIMEOUT_S + 15)
def test_browser_csp_stops_an_injected_script(tmp_path: Path) -> None:
    """The second layer: markup that got into the page anyway (here, put there by hand) does not run."""
    page = render(report_data(intervals=30, samples=10, hostile=False))
    injected = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"
    dom = _chromium(_inject(page, injected), tmp_path, "--dump-dom").stdout
    assert f"<title>{TITLE}</title>" in dom and "pwned</title>" not in dom


@needs_chromium
@pytest.mark.timeout(BROWSER_TIMEOUT_S + 15)
def test_browser_checks_see_a_payload_that_runs(tmp_path: Path) -> None:
    """The browser checks above can fail: an unescaped payload without the CSP does set the title."""
    page = render(report_data(intervals=30, samples=10, hostile=False))
    page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    dom = _chromium(_inject(page, HOSTILE[1]), tmp_path, "--dump-dom").stdout
    assert "<title>pwned-img</title>" in dom and 'data-xss="1"' in dom
