"""The HTML run report: escaping of log text, no network loads, notes for missing sections, size, speed,
and (with headless Chromium) that the page draws and that log text stays text in a real browser."""

from __future__ import annotations

import copy
import html
import itertools
import json
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.diagnostics.stats import Samples
from pipeline.output.manifest import Extras, Manifest
from pipeline.report.data import report_data as build
from pipeline.report.html import COLOURS, per_second, render
from pipeline.report.panels import TOP_PANELS
from tests.conftest import BROWSER_TIMEOUT_S, SAMPLE, chromium, needs_chromium, pixels_near, record_of

Data = dict[str, Any]

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
SIZE_LIMIT = 1_450_000  # bytes: Bokeh's core bundle is ~1.27 MB, the data of a typical run ~0.1 MB

Record = tuple[Manifest, Extras]


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Record:
    """A real run's record: the committed sample, plus lines whose user agents are the hostile strings
    (a client sets its agent to anything) and lines that are (rejected)."""
    logs = tmp_path_factory.mktemp("hostile-logs")
    shutil.copytree(SAMPLE, logs, dirs_exist_ok=True)
    ts = "[01/Nov/2026:10:00:00 +0000]"
    agents = [s for s in HOSTILE if '"' not in s]  # a quote would end the field: a reject, not an agent
    lines = [f'6.6.6.{k} - - {ts} "GET /x HTTP/1.1" 200 5 "-" "{a}"' for k, a in enumerate(agents)]
    # and the strings as lines, which no format parses: reject examples
    (logs / "hostile.log").write_text("\n".join(lines * 200 + HOSTILE) + "\n")
    return record_of(logs, tmp_path_factory.mktemp("hostile-record") / "out")


def report_data(record: Record, intervals: int = 3000, samples: int = 1000, hostile: bool = True) -> Data:
    """What the CLI draws for the real run's ``record``, at the size of a longer run: each worker's lane
    re-cut into its share of ``intervals`` (the kinds in the real run's proportions, repeated), the
    samples stretched to ``samples`` points. ``hostile``: the hostile strings also in every place text
    is shown (the top lists, reject reasons and examples, the advice, a verdict's evidence, the table),
    else no log text at all is in the page."""
    data = build(copy.deepcopy(record[0]), copy.deepcopy(record[1]))
    lanes = data["timeline"]["lanes"]
    wall = max(iv[1] for lane in lanes for iv in lane["intervals"])
    per_lane = max(1, intervals // len(lanes))
    for lane in lanes:
        kinds = [kind for _, _, kind in lane["intervals"]] or ["busy"]
        cuts = np.linspace(0.0, wall, per_lane + 1).tolist()
        lane["intervals"] = [
            [a, b, kinds[k % len(kinds)]] for k, (a, b) in enumerate(itertools.pairwise(cuts))
        ]
    old = data["samples"]
    t = np.linspace(0.0, old["t"][-1], samples)
    for key in Samples.FIELDS:
        data["samples"][key] = np.interp(t, old["t"], old[key]).round().astype(int).tolist()
    data["samples"]["t"] = t.tolist()
    bad = HOSTILE if hostile else [f"plain-{i}" for i in range(len(HOSTILE))]
    panels = data["panels"]
    if not hostile:  # the real run's agents and examples: plain ones
        for name in TOP_PANELS:
            panels[name] = [[f"plain-{i}", *e[1:]] for i, e in enumerate(panels[name] or [])]
        data["rejects"]["examples"] = [{**e, "raw": "plain"} for e in data["rejects"]["examples"]]
    for name in (
        "top_paths",
        "not_found",
        "user_agents",
        "bots",
        "referrers",
        "referring_sites",
        "static_files",
        "browsers",
        "countries",
        "networks",
    ):
        panels[name] = [*(panels[name] or []), *([s, 1] for s in bad)]
    panels["path_latency"] = [["/slow", 9, 0.2, 2.4, 2.5], *([s, 1, 0.1, 0.1, 0.1] for s in bad)]
    # The panels the sample's format (combined) has no columns for, as a format with times and hosts gives
    lat = {"count": 9, "invalid": 1, "min": 0.0004, "max": 2.5, "mean": 0.9, "relative_error": 0.01}
    panels["latency"] = lat | {"quantiles": {"p50": 0.2, "p90": 2.4, "p99": 2.5}}
    panels["slow_paths"] = [["/slow", 2_500_000, 2_500_000, 1, 1, 2], *([s, 9, 9, 2, 2, 1] for s in bad)]
    panels["path_bytes"] = [*(panels["path_bytes"] or []), *([s, 9, 9, 2, 2, 1] for s in bad)]
    panels["vhosts"] = [["example.org", 10, 10, 1, 1], *([s, 1] for s in bad)]
    # as a format with times and hosts gives, and a run with the user_agent and geoip transforms
    shown = ["latency", "slow_paths", "vhosts", "path_latency", "countries", "networks", "browsers"]
    shown += ["operating_systems", "devices"]
    panels["operating_systems"], panels["devices"] = [["Windows", 5, 5, 1, 1]], [["iPhone", 2, 2, 1, 1]]
    panels["missing"] = [m for m in panels["missing"] if m not in shown]
    data["rejects"]["by_reason"][bad[0]] = 1
    data["rejects"]["examples"] += [
        {"file": f"logs/{s}.log", "line": 10 + i, "reason": "no match", "raw": f"1.2.3.4 - {s}"}
        for i, s in enumerate(bad)
    ]
    data["advice"] += bad[:2]
    data["stages"]["write"]["evidence"] = bad[0]
    data["table"] += "\n" + bad[2]
    return data


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
def page(record: Record) -> str:
    return render(report_data(record))


def test_log_text_stays_text(page: str) -> None:
    tags = _parse(page)
    # exactly our four scripts (the tables' sorting, Bokeh's bundle, its log level, the plots), no element
    # a log string adds
    assert [t for t, _ in tags.tags].count("script") == 4
    assert not [t for t, _ in tags.tags if t in ("img", "iframe", "object", "embed", "link", "base")]
    links = [a.get("href") or "" for t, a in tags.tags if t == "a"]
    assert links == [
        "#access-log",
        "#rejected-lines",
        "#stages",
        "#worker-timeline",
        "#throughput-and-queues",
    ]
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
    assert len(roots) == 5  # requests over time, status codes, timeline, lines per second, queues
    timeline, rates, queues = roots[2:]
    assert rates["x_range"]["id"] == queues["x_range"]["id"] == timeline["x_range"]["id"]
    tools = [t["name"] for t in timeline["toolbar"]["attributes"]["tools"]]
    assert {"PanTool", "WheelZoomTool", "BoxZoomTool", "ResetTool", "HoverTool"} <= set(tools)
    assert timeline["toolbar"]["attributes"]["active_scroll"] is not None  # the wheel zooms the timeline


def test_hostile_lane_names_and_status_codes_are_reduced_to_labels(record: Record) -> None:
    data = report_data(record, intervals=30, samples=10)
    data["timeline"]["lanes"][0]["worker"] = "</script><script>document.title='pwned'</script>"
    data["timeline"]["lanes"][1]["worker"] = "$$x$$"
    data["panels"]["status"].append(["</script><img src=x onerror=alert(1)>", 3])
    page = render(data)
    plots = _parse(page).scripts[-1]
    assert "title='pwned'" not in plots and "<" not in plots.split("docs_json = ", 1)[1].split("\n")[0]
    assert "$$" not in plots and "onerror" not in plots
    assert "script_script_document.title_pwned_" in plots  # the label left of that name
    assert '"other"' in plots  # a status that is not a number becomes one 'other' bar
    assert '<tr><td>other</td><td class="n" data-v="3">3</td>' in page


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


def test_sections_in_order(page: str, record: Record) -> None:
    # the analyst's panels first, the pipeline's internals after them
    marks = ["<h1>", "<h2>Access log", "Request time", "Request time by path", "distinct client IPs per day",
             "Requests by hour of day", "Top paths",
             "Not found (404)", "Slowest paths", "Bandwidth by path", "Virtual hosts", "Referring sites",
             "Top referrers", "Top user agents", "Bots", "Top client IPs", "Static files", "<h3>Browsers",
             "<h3>Operating systems", "<h3>Device families", "<h3>Countries", "<h3>Networks",
             "<h3>Methods", "<h3>Protocols",
             "<h2>Rejected", "<h2>Stages", "Advice", "<h2>Worker timeline",
             "<h2>Throughput"]  # fmt: skip
    at = [page.index(m) for m in marks]
    assert at == sorted(at)
    neck = record[0].get("bottleneck")  # the run's verdict (a short run names none)
    if neck:
        assert (
            page.count('<tr class="bottleneck">') == 1 and f'<tr class="bottleneck"><td>{neck}</td>' in page
        )
    else:
        assert '<tr class="bottleneck">' not in page and "No bottleneck named" in page
    assert "could not be drawn" not in page and "not collected" not in page


def test_audience_panels_show_only_with_their_columns(record: Record) -> None:
    data = report_data(record, intervals=30, samples=10)
    panels = data["panels"]
    assert {"static_files", "daily", "hours_ips"} <= {k for k in panels if panels[k]}  # the real run's
    page = render(data)
    assert all(f'id="{t}"' in page for t in ("top-browsers", "top-static_files", "daily", "path-latency"))
    assert "distinct IPs</th>" in page and "from the user_agent transform" in page
    panels["missing"] += ["countries", "networks", "path_latency", "browsers"]
    page = render(data)
    assert "<h3>Countries" not in page and "<h3>Networks" not in page and "<h3>Browsers" not in page
    assert 'id="path-latency"' not in page and "countries: not in this log format" not in page


@pytest.mark.parametrize("key", ["timeline", "samples", "rejects", "panels", "stages"])
def test_a_missing_section_is_a_note(key: str, record: Record) -> None:
    data = report_data(record, intervals=30, samples=10)
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


def test_a_note_says_why_when_the_record_does(record: Record) -> None:
    data = report_data(record, intervals=30, samples=10)
    data["panels"] = None
    data["notes"] = {"panels": "<the format has no path>"}
    assert "panels were not collected: &lt;the format has no path&gt;" in render(data)


def test_a_bare_record_and_a_malformed_section_still_render(record: Record) -> None:
    page = render({"run_id": "r1"})
    assert "<title>logpipe run r1</title>" in page and "panels were not collected" in page
    assert page.count("<script") == 1 and "bokeh" not in page  # no plot, no Bokeh bundle: a few kB
    data = report_data(record, intervals=30, samples=10)
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
    assert "Approximate (counted in bounded memory): each count may be low by up to 12" in page


def test_per_second() -> None:
    t = np.array([0.0, 0.5, 1.0, 1.0, 2.0])
    at, rate = per_second(t, [0, 100, 300, 300, 400, 999])  # a repeated time is dropped, extra counts too
    assert at.tolist() == [0.5, 1.0, 2.0] and rate.tolist() == [200.0, 400.0, 100.0]
    assert per_second(t[:1], [5])[0].size == 0


def test_empty_series_are_notes(record: Record) -> None:
    data = report_data(record, intervals=30, samples=10)
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


def test_render_is_fast(record: Record) -> None:
    data = report_data(record, intervals=3000, samples=1000)
    render(report_data(record, intervals=10, samples=10))  # Bokeh's import is not the renderer's time
    start = time.perf_counter()
    render(data)
    elapsed = time.perf_counter() - start
    print(f"render 3,000 intervals, 1,000 samples: {elapsed:.2f} s")  # noqa: T201
    assert elapsed < 2.0  # ~0.5 s here; the bound leaves room for a shared machine


# --- in a browser -------------------------------------------------------------------------------------


def _inject(page: str, markup: str) -> str:
    """``markup`` at the start of the body (not the first '<body>' in the page: Bokeh's bundle has one)."""
    start = "</head>\n<body>\n"
    assert page.count(start) == 1
    return page.replace(start, start + markup)


@needs_chromium
@pytest.mark.timeout(BROWSER_TIMEOUT_S + 15)
def test_browser_draws_the_timeline(page: str, record: Record, tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    shot = tmp_path / "shot.png"
    chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1400,1400")
    with Image.open(shot) as raw:
        image = raw.convert("RGB")
    # not a blank page
    assert max(ImageStat.Stat(image).stddev) > 20
    # the timeline's bars: thousands of pixels in the busy and blocked colours (a legend swatch is ~200),
    # as much as the real run was busy and blocked. Only a drawn canvas has them: the HTML uses neither
    # colour, and Bokeh drew with no network.
    kinds = {kind for lane in record[1]["timeline"]["lanes"] for _, _, kind in lane["intervals"]}
    assert {"busy", "blocked"} <= kinds  # the readers wait for room in the chunk queue
    busy, blocked = pixels_near(image, COLOURS["busy"]), pixels_near(image, COLOURS["blocked"])
    assert busy > 2_000 and blocked > 2_000, (busy, blocked)


@needs_chromium
@pytest.mark.timeout(BROWSER_TIMEOUT_S + 15)
def test_browser_keeps_log_text_as_text_without_the_csp(page: str, record: Record, tmp_path: Path) -> None:
    """The escaping alone holds: with the page's Content-Security-Policy removed, no payload runs."""
    bare = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    assert bare != page
    dom = chromium(bare, tmp_path, "--dump-dom").stdout
    assert f"<title>logpipe run {record[0]['run_id']}</title>" in dom
    assert "<b id=" not in dom and "data-xss" not in dom and "<img" not in dom
    assert '&lt;b id="xss-marker"&gt;' in dom  # there, as text


@needs_chromium
@pytest.mark.timeout(BROWSER_TIMEOUT_S + 15)
def test_browser_csp_stops_an_injected_script(record: Record, tmp_path: Path) -> None:
    """The second layer: markup that got into the page anyway (here, put there by hand) does not run."""
    page = render(report_data(record, intervals=30, samples=10, hostile=False))
    injected = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"
    dom = chromium(_inject(page, injected), tmp_path, "--dump-dom").stdout
    assert f"<title>logpipe run {record[0]['run_id']}</title>" in dom and "pwned</title>" not in dom


@needs_chromium
@pytest.mark.timeout(BROWSER_TIMEOUT_S + 15)
def test_browser_checks_see_a_payload_that_runs(record: Record, tmp_path: Path) -> None:
    """The browser checks above can fail: an unescaped payload without the CSP does set the title."""
    page = render(report_data(record, intervals=30, samples=10, hostile=False))
    page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    dom = chromium(_inject(page, HOSTILE[1]), tmp_path, "--dump-dom").stdout
    assert "<title>pwned-img</title>" in dom and 'data-xss="1"' in dom


# What Bokeh drew, read back from its views in the page: per plot, its frame, each axis's tick labels
# and each legend's box (canvas pixels). Written into the page as JSON for --dump-dom.
_PROBE_PLOTS = """
setTimeout(function () {
  var views = Array.from(Bokeh.index.all_views());
  var kind = function (v) { return v.model.constructor.__name__; };
  var plots = views.filter(function (v) { return kind(v) === "Figure"; }).map(function (plot) {
    var f = plot.frame.bbox;
    var rec = {title: plot.model.title ? plot.model.title.text : "", frame: [f.x0, f.y0, f.x1, f.y1],
               axes: [], legends: []};
    views.filter(function (v) { return v.parent === plot; }).forEach(function (v) {
      if (/Axis$/.test(kind(v))) {
        var labels = v.compute_labels(v.tick_coords.major[v.dimension]);
        rec.axes.push({dim: v.dimension, labels: labels.items.map(function (l) { return l.text; })});
      }
      if (kind(v) === "Legend") { var b = v.bbox; rec.legends.push([b.x0, b.y0, b.x1, b.y1]); }
    });
    return rec;
  });
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(plots);
  document.body.appendChild(pre);
}, 1500);
"""


def _with_script(page: str, js: str) -> str:
    """``page`` without its Content-Security-Policy and with ``js`` run at its end (a test's probe)."""
    bare = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    assert bare != page and bare.count("</body>") == 1
    return bare.replace("</body>", f"<script>{js}</script></body>")


@needs_chromium
@pytest.mark.timeout(BROWSER_TIMEOUT_S + 15)
def test_browser_axes_have_unique_whole_ticks_and_legends_beside_the_data(
    record: Record, tmp_path: Path
) -> None:
    data = report_data(record, intervals=30, samples=10, hostile=False)
    # shallow queues: a tick every half item would print 0, 1, 1, 2, 2 with a whole-number format
    data["samples"]["chunk_queue"] = [0, 1, 2, 1, 0, 2, 1, 1, 0, 0]
    data["samples"]["result_queue"] = [1, 0, 0, 1, 2, 0, 0, 1, 0, 0]
    data["samples"]["chunk_queue_max"] = data["samples"]["result_queue_max"] = 2
    dom = chromium(_with_script(render(data), _PROBE_PLOTS), tmp_path, "--dump-dom").stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    plots = json.loads(html.unescape(found.group(1)))
    assert len(plots) == 5
    for plot in plots:
        for axis in plot["axes"]:
            assert len(axis["labels"]) == len(set(axis["labels"])) >= 2, (plot["title"], axis)
        x0, y0, x1, y1 = plot["frame"]
        for lx0, ly0, lx1, ly1 in plot["legends"]:  # outside the frame: no overlap of positive area
            assert min(x1, lx1) <= max(x0, lx0) or min(y1, ly1) <= max(y0, ly0), (plot["title"], plot)
    queues = next(p for p in plots if p["title"].startswith("queue depths"))
    assert [a["labels"] for a in queues["axes"] if a["dim"] == 1] == [["0", "1", "2"]]
    assert sum(len(p["legends"]) for p in plots) == 4  # requests, timeline, rates, queues


_CLICK = """
document.addEventListener("DOMContentLoaded", function () {
  setTimeout(function () {
    document.querySelector("#top-ips thead th:nth-child(2)").click();  // IP: ascending text
    var hits = document.querySelector("#top-top_paths thead th:nth-child(3)");
    hits.click(); hits.click();  // hits: descending, then ascending
    var mean = document.querySelector("#top-slow_paths thead th:nth-child(5)");
    mean.click(); mean.click();  // mean request time: descending, then ascending
  }, 100);
});
"""


def _column(dom: str, table_id: str, col: int) -> list[str]:
    body = dom.split(f'id="{table_id}"', 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1], re.S)
    return [
        html.unescape(re.sub(r"<[^>]+>", "", re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)[col])) for r in rows
    ]


@needs_chromium
@pytest.mark.timeout(BROWSER_TIMEOUT_S + 15)
def test_browser_sorts_a_table_by_a_click_on_its_header(record: Record, tmp_path: Path) -> None:
    page = render(report_data(record, intervals=30, samples=10, hostile=False))
    before_ips, before_hits = _column(page, "top-ips", 1), _column(page, "top-top_paths", 2)
    assert before_ips != sorted(before_ips) and len(before_ips) == 20  # ranked by hits, not by text
    dom = chromium(_with_script(page, _CLICK), tmp_path, "--dump-dom").stdout
    ips = _column(dom, "top-ips", 1)
    assert ips == sorted(before_ips)  # the plain IPs here: the browser's and Python's orders agree
    hits = [int(h.replace(",", "")) for h in _column(dom, "top-top_paths", 2)]
    assert hits == sorted(int(h.replace(",", "")) for h in before_hits) and hits[0] < hits[-1]
    assert 'aria-sort="ascending"' in dom
    paths = _column(dom, "top-slow_paths", 1)
    assert paths[-1] == "/slow" and _column(page, "top-slow_paths", 1)[0] == "/slow" and len(paths) > 2
    assert _column(dom, "top-slow_paths", 4)[-1] == "1.25 s"  # 2.5 s over 2 hits, in human units
    # the analyst's sections are in the page the browser built: request time, hours, hosts, methods
    assert 'id="latency"' in dom and "p99 <b>2.5 s</b>" in dom and "within 1% of the exact value" in dom
    assert len(_column(dom, "hours", 0)) == 24 and _column(dom, "top-vhosts", 1)[0] == "example.org"
    assert _column(dom, "top-methods", 1)[0] == "GET" and "HTTP/1.1" in _column(dom, "top-protocols", 1)
