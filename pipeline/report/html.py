"""The run report: one self-contained HTML page drawn with Bokeh (``logpipe run --report``, ``report``).

Why Bokeh: its plots pan and zoom in the browser (the worker timeline of a long run needs that), it can
inline all its JavaScript so the page works offline and loads nothing, and its core bundle alone
(``bokeh.min.js``, most of the page's size) is enough for every plot here: no widgets, tables, WebGL or
MathJax bundles are embedded, which keeps the page small enough to mail. Tabular data is plain HTML,
readable even where scripts do not run (a mail client's preview).

How escaping is ensured:

* Every string that comes from a log or a run record (paths, user agents, referrers, IPs, reject lines,
  file names, reasons, advice, the stage table) is written as HTML text through :func:`_text`:
  :func:`pipeline.text.safe_text` makes control and bidi characters visible, then ``html.escape``
  (quotes too, so the same text is safe in attribute values).
* No log text enters the Bokeh document. The plots carry numbers, times and labels we make: lane names
  and status codes pass through :func:`_label`, which keeps a short run of word characters. So neither
  Bokeh's tooltips nor its tick labels (which would read ``$$...$$`` as TeX) ever see log text. Bokeh
  also HTML-escapes its document JSON (no ``<`` survives in a script), a second layer the tests check.
* A Content-Security-Policy in the page allows only its own scripts, by hash: an inline handler or a
  script injected through some escaping bug would not run, and nothing is fetched from the network.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pipeline.diagnostics.stats import STAGE_COLUMNS
from pipeline.report.tables import (
    SORT_JS,
    human_bytes,
    human_seconds,
    text,
    top_note,
    top_table,
    weighted_table,
)

if TYPE_CHECKING:
    from bokeh.model import Model
    from bokeh.plotting import figure as Figure

# Interval kinds in the timeline. Busy is the saturated colour: a glance shows where the work was.
COLOURS = {"busy": "#1b9e77", "wait": "#c8c8c8", "blocked": "#d95f02"}
KIND_LABELS = {"busy": "busy", "wait": "waiting for input", "blocked": "blocked on output"}
RATE_COLOURS = {"read": "#7570b3", "parse": "#1b9e77", "write": "#e7298a"}
STATUS_COLOURS = {"1": "#999999", "2": "#1b9e77", "3": "#7570b3", "4": "#d95f02", "5": "#c0392b"}

# Text limits: the page stays readable and small whatever a crafted line holds.
_CELL_CHARS = 160
_RAW_CHARS = 400
_LABEL_CHARS = 40
_LABEL_RE = re.compile(r"[^\w.:-]+", re.ASCII)


def _text(value: Any, limit: int | None = _CELL_CHARS) -> str:
    """Untrusted text as HTML text (or a quoted attribute value): visible control characters, escaped."""
    return text(value, limit)


# The errors a malformed or older run record can raise while a section reads it: the section becomes a
# note and the rest of the report is still written (a bug elsewhere still raises).
_DATA_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError)

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#222}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin:1.6em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:1em 0 .3em}
table{border-collapse:collapse;margin:.3em 0}td,th{padding:2px 8px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.bottleneck{background:#fff3e0;font-weight:600}code,pre{font:12px/1.3 ui-monospace,monospace}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto}td.t{max-width:46em;overflow-wrap:anywhere}
.note{color:#777;font-style:italic}.ok{color:#1b7a3d}.bad{color:#c0392b}.facts span{margin-right:1.4em}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:0 2em}
.bar{background:#d9efe8;height:.8em;display:inline-block;vertical-align:middle}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:hover{background:#f3f3f3}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:.7em}
th[aria-sort=descending]::after{content:" \\25BC";font-size:.7em}
ul.advice li{margin:.2em 0}.row{display:flex;flex-wrap:wrap;gap:0 2em;align-items:flex-end}
"""


def render(data: dict[str, Any]) -> str:
    """The report for one run, as a self-contained HTML document (see the module docstring)."""
    # Bokeh is imported here, not at module level: its import is slow (BENCHMARKS.md), and only a report
    # needs it.
    from bokeh.embed import components
    from bokeh.resources import Resources

    page = _Page()
    history = data.get("history") is not None
    page.section(None, _history_header if history else _header, data)
    # A dataset's history has no run: its stages, timeline and rejects are in each run's record.
    for title, build in (HISTORY_SECTIONS if history else SECTIONS).items():
        page.section(title, build, data)

    divs: dict[str, str] = {}
    scripts: list[str] = [SORT_JS]
    if page.plots:
        # One Bokeh document for all plots, so the run-time plots can share their x range (zoom the
        # timeline and the rates follow). Only the core bundle: the plots use no widgets, tables, WebGL
        # or MathJax, and the page loads nothing else.
        script, divs = components(page.plots, wrap_script=False)
        scripts = [SORT_JS, *Resources(mode="inline", components=["bokeh"]).js_raw, script]
    for js in scripts:
        # Bokeh HTML-escapes its document JSON; this holds whatever a future version does.
        if "</script" in js.lower():
            raise ValueError("a script would end early in the page")
    body = "".join(divs[part.key] if isinstance(part, _Plot) else part for part in page.parts)
    title = f"report of {data['history'].get('output', '')}" if history else f"run {data.get('run_id', '')}"
    return _document(title, body, scripts)


def _slug(title: str) -> str:
    """A section's id (its titles are ours: no log text)."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _document(title: str, body: str, scripts: list[str]) -> str:
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()}'" for js in scripts
    )
    # Only these scripts run; no request leaves the page (default-src 'none'). Bokeh styles its plots
    # with inline styles and draws icons from data: URLs.
    csp = (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:; base-uri 'none'; form-action 'none'"
    )
    script_tags = "".join(f"<script>{js}</script>\n" for js in scripts)
    return (
        "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>logpipe {_text(title, 200)}</title>\n<style>{_CSS}</style>\n"
        f"{script_tags}</head>\n<body>\n"
        '<noscript><p class="note">The charts need JavaScript; the tables below do not.</p></noscript>\n'
        f"{body}</body>\n</html>\n"
    )


class _Plot:
    """Where a Bokeh plot goes in the page (its div is known only once all plots are embedded)."""

    def __init__(self, key: str) -> None:
        self.key = key


class _Page:
    def __init__(self) -> None:
        self.parts: list[str | _Plot] = []
        self.plots: dict[str, Model] = {}
        self.run_range: Any = None  # the x range of the plots over run time, once there is one

    def html(self, text: str) -> None:
        self.parts.append(text)

    def plot(self, model: Model) -> None:
        key = f"plot{len(self.plots)}"
        self.plots[key] = model
        self.parts.append(_Plot(key))

    def section(self, title: str | None, build: Callable[[_Page, dict[str, Any]], None], data: Any) -> None:
        """Run ``build``; a section whose data is malformed becomes a note instead of failing the page."""
        mark_parts, mark_plots = len(self.parts), dict(self.plots)
        self.html(f'<section id="{_slug(title)}">\n<h2>{title}</h2>\n' if title else "<section>\n")
        try:
            build(self, data)
        except _DATA_ERRORS as exc:
            del self.parts[mark_parts + 1 :]
            self.plots = mark_plots
            self.note(f"this section could not be drawn from the run record ({type(exc).__name__}: {exc})")
        self.html("</section>\n")

    def note(self, text: str) -> None:
        self.html(f'<p class="note">{_text(text, 300)}</p>\n')

    def missing(self, data: dict[str, Any], key: str, what: str) -> None:
        """The note for a section the run did not collect (``data["notes"][key]`` may say why)."""
        reason = (data.get("notes") or {}).get(key) or "not in this run record"
        self.note(f"{what} not collected: {reason}")


def _label(value: Any, fallback: str) -> str:
    """A label for the Bokeh document: word characters only, so no log text is ever markup or TeX there."""
    text = _LABEL_RE.sub("_", str(value))[:_LABEL_CHARS].strip("_")
    return text or fallback


def _count(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _header(page: _Page, data: dict[str, Any]) -> None:
    status = str(data.get("status", "unknown"))
    ok = status == "ok" and not data.get("exit_code")
    page.html(f"<h1>logpipe run {_text(data.get('run_id', '?'), 80)}</h1>\n")
    facts = [
        f'status <b class="{"ok" if ok else "bad"}">{_text(status, 60)}</b>',
        f"exit code {_count(data.get('exit_code'))}",
        f"started {_text(data.get('started_at', '-'), 40)}",
        f"finished {_text(data.get('finished_at', '-'), 40)}",
        f"wall time {float(data.get('wall_s') or 0):.2f} s",
    ]
    counts = [
        f"lines read <b>{_count(data.get('lines'))}</b>",
        f"rows written <b>{_count(data.get('rows'))}</b>",
        f"rejected <b>{_count(data.get('rejected'))}</b>",
        f"filtered <b>{_count(data.get('filtered'))}</b>",
        *([f"skipped <b>{_count(data.get('skipped'))}</b>"] if data.get("skipped") else []),
    ]
    for row in (facts, counts):
        page.html('<p class="facts">' + "".join(f"<span>{x}</span>" for x in row) + "</p>\n")
    links = " · ".join(f'<a href="#{_slug(title)}">{title}</a>' for title in SECTIONS)
    page.html(f'<nav class="facts">{links}</nav>\n')


def _history_header(page: _Page, data: dict[str, Any]) -> None:
    h = data["history"]
    page.html(f"<h1>logpipe report of the dataset {_text(h.get('output', '?'), 200)}</h1>\n")
    page.html(f'<p class="facts"><span>{_text(covers_line(h), 300)}</span></p>\n')


def covers_line(covers: dict[str, Any]) -> str:
    """Which dates a report's panels cover: the range asked, and the dates with data in it."""
    since, until = covers.get("since"), covers.get("until")
    asked = {
        (False, False): "all dates",
        (True, False): f"dates from {since}",
        (False, True): f"dates up to {until}",
        (True, True): f"dates {since} to {until}",
    }[bool(since), bool(until)]
    n = int(covers.get("dates") or 0)
    if not n:
        return f"{asked}: no data (no date of the dataset is in this range)"
    return f"{asked}: {n:,} dates with data, {covers.get('first')} to {covers.get('last')}"


def _stages(page: _Page, data: dict[str, Any]) -> None:
    stages = data.get("stages")
    if not stages:
        page.missing(data, "stages", "stage statistics were")
        return
    bottleneck = data.get("bottleneck")
    if bottleneck:
        page.html(f"<p>Bottleneck: <b>{_text(bottleneck, 40)}</b></p>\n")
    else:
        page.html('<p class="note">No bottleneck named: the run was too short to tell.</p>\n')
    head = "".join(f'<th class="n">{_text(c.label)}</th>' for c in STAGE_COLUMNS)
    rows = [
        f'<table class="sortable">\n<thead><tr><th>stage</th>{head}<th>bound</th><th>evidence</th></tr>'
        "</thead><tbody>\n"
    ]
    for name, stage in stages.items():
        cells = "".join(_stage_cell(stage.get(c.key), c.cell) for c in STAGE_COLUMNS)
        cls = ' class="bottleneck"' if name == bottleneck else ""
        rows.append(
            f"<tr{cls}><td>{_text(name, 40)}</td>{cells}<td><b>{_text(stage.get('bound', ''), 40)}</b></td>"
            f'<td class="t">{_text(stage.get("evidence", ""), 300)}</td></tr>\n'
        )
    page.html("".join(rows) + "</tbody></table>\n")
    advice = data.get("advice") or []
    if advice:
        items = "".join(f"<li>{_text(line, 400)}</li>" for line in advice)
        page.html(f'<h3>Advice</h3>\n<ul class="advice">{items}</ul>\n')
    if data.get("table"):
        # the table as the CLI prints it, for pasting into an issue; each line escaped on its own
        text = "\n".join(_text(line, 400) for line in str(data["table"]).splitlines())
        page.html(f"<details><summary>as printed by the CLI</summary><pre>{text}</pre></details>\n")


def _stage_cell(value: Any, cell: Callable[[Any], str]) -> str:
    """A number of the stage table, sorting by its value (``data-v``) rather than its text."""
    if value is None:
        return '<td class="n">-</td>'
    key = (
        f' data-v="{float(value)!r}"'
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else ""
    )
    return f'<td class="n"{key}>{_text(cell(value))}</td>'


def _figure(
    title: str,
    height: int,
    x_axis_type: Literal["auto", "datetime"] = "auto",
    wheel: bool = False,
    width: int | None = None,
    **kw: Any,
) -> Figure:
    from bokeh.models import BasicTicker, NumeralTickFormatter
    from bokeh.plotting import figure

    fig = figure(
        title=title,
        height=height,
        sizing_mode="stretch_width" if width is None else "fixed",
        width=width or 600,
        x_axis_type=x_axis_type,
        tools="xpan,xwheel_zoom,xbox_zoom,reset,save",
        active_drag="xpan",
        # a wheel over a plot zooms it instead of scrolling the page: only where zooming is the point
        active_scroll="xwheel_zoom" if wheel else None,
        toolbar_location="above",
        **kw,
    )
    fig.toolbar.logo = None
    # Counts: whole numbers only (no 0.5 tick printed as a second "1"), 35,000 rather than 3.5e+4.
    fig.yaxis.ticker = BasicTicker(min_interval=1, desired_num_ticks=5)
    fig.yaxis.formatter = NumeralTickFormatter(format="0,0")
    return fig


def _timeline(page: _Page, data: dict[str, Any]) -> None:
    from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, Range1d

    timeline = data.get("timeline")
    if not timeline or not timeline.get("lanes"):
        page.missing(data, "timeline", "the worker timeline was")
        return
    n = len(timeline["lanes"])
    labels: dict[float | str, Any] = {}
    columns: dict[str, dict[str, list[float]]] = {k: {"y": [], "left": [], "right": []} for k in COLOURS}
    for i, lane in enumerate(timeline["lanes"]):
        y = n - 1 - i  # the first lane on top
        labels[y] = _label(lane.get("worker") or lane.get("stage"), f"lane-{i}")
        for t0, t1, kind in lane.get("intervals") or ():
            col = columns.get(str(kind))
            if col is not None:
                col["y"].append(y)
                col["left"].append(float(t0))
                col["right"].append(float(t1))
    # Lanes are numbers with labels on the axis, not categories: a category is a string repeated in every
    # interval's row. Columns go as float32 arrays, which Bokeh embeds as base64 (~5 bytes a value, not
    # ~19 for a float written out); float32 keeps times to a few ms for a run of hours.
    fig = _figure("", 100 + 28 * n, wheel=True, y_range=Range1d(start=-0.6, end=n - 0.4))
    fig.xaxis.axis_label = "seconds since the run started"
    fig.yaxis.ticker = FixedTicker(ticks=list(range(n)))
    fig.yaxis.major_label_overrides = labels
    fig.ygrid.grid_line_color = None
    for kind, col in columns.items():
        # one glyph per kind, all its intervals in one source: thousands of intervals draw at once
        left, right = np.array(col["left"], np.float32), np.array(col["right"], np.float32)
        source = ColumnDataSource(
            {"y": np.array(col["y"], np.int16), "left": left, "right": right, "dur": right - left}
        )
        bars = fig.hbar(
            y="y", left="left", right="right", height=0.8, source=source, color=COLOURS[kind],
            legend_label=KIND_LABELS[kind],
        )  # fmt: skip
        tips = [("", KIND_LABELS[kind]), ("from", "@left{0.000} s"), ("to", "@right{0.000} s")]
        fig.add_tools(HoverTool(renderers=[bars], tooltips=[*tips, ("for", "@dur{0.000} s")]))
    _legend_above(fig)
    page.plot(fig)
    page.run_range = fig.x_range
    page.html('<p class="note">Drag to pan, wheel or box to zoom; the plots below follow.</p>\n')


def per_second(t: np.ndarray, cumulative: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The rate between consecutive samples of a cumulative count, at the end of each step.

    Steps of no time (a repeated sample) are dropped: they say nothing about the rate.
    """
    n = min(len(t), len(cumulative))
    times, counts = t[:n], np.asarray(cumulative[:n], np.float64)
    dt, dn = np.diff(times), np.diff(counts)
    keep = dt > 0
    return times[1:][keep], dn[keep] / dt[keep]


def _throughput(page: _Page, data: dict[str, Any]) -> None:
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.models.annotations import Span

    samples = data.get("samples")
    if not samples or len(samples.get("t") or ()) < 2:
        page.missing(data, "samples", "throughput samples were")
        return
    t = np.array(samples["t"], np.float64)
    # the timeline's x range, so that these plots zoom with it
    extra = {"x_range": page.run_range} if page.run_range is not None else {}

    rates = _figure("lines per second", 220, **extra)
    rates.xaxis.axis_label = "seconds since the run started"
    for stage, key, label in (
        ("read", "read_lines", "lines read"),
        ("parse", "parsed_lines", "lines parsed"),
        ("write", "written_rows", "rows written"),
    ):
        if samples.get(key):
            at, rate = per_second(t, samples[key])
            source = ColumnDataSource({"t": at.astype(np.float32), "rate": rate.astype(np.float32)})
            rates.line(
                "t", "rate", source=source, color=RATE_COLOURS[stage], line_width=2, legend_label=label
            )
    rates.add_tools(HoverTool(tooltips=[("t", "@t{0.00} s"), ("lines/s", "@rate{0,0}")], mode="vline"))
    _add_plot(page, rates, "no line counts in the samples")

    queues = _figure("queue depths (items waiting)", 200, x_range=rates.x_range)
    queues.xaxis.axis_label = "seconds since the run started"
    for key, colour in (("chunk_queue", "#7570b3"), ("result_queue", "#e7298a")):
        depth = samples.get(key)
        if not depth:
            continue
        n = min(len(t), len(depth))
        cap = samples.get(f"{key}_max")
        label = key.replace("_", " ") + (f" (max {int(cap)})" if cap is not None else "")
        source = ColumnDataSource({"t": t[:n].astype(np.float32), "depth": np.array(depth[:n], np.int32)})
        queues.step("t", "depth", source=source, mode="after", color=colour, line_width=2, legend_label=label)
        if cap is not None:
            queues.add_layout(
                Span(location=int(cap), dimension="width", line_color=colour, line_dash="dashed")
            )
    queues.add_tools(HoverTool(tooltips=[("t", "@t{0.00} s"), ("items", "@depth")], mode="vline"))
    _add_plot(page, queues, "no queue depths in the samples")


def _add_plot(page: _Page, fig: Figure, empty: str) -> None:
    """``fig`` in the page, with its legend placed; a note instead when nothing was drawn on it."""
    if not fig.renderers:
        page.note(empty)
        return
    _legend_above(fig)
    page.plot(fig)


def _legend_above(fig: Figure) -> None:
    """The legend in a row above the plot, outside its frame: it never covers a line or a bar."""
    from bokeh.models.annotations import Legend

    legends = [r for r in fig.center if isinstance(r, Legend)]
    if not legends:
        return
    fig.center = [r for r in fig.center if not isinstance(r, Legend)]
    for legend in legends:
        legend.orientation = "horizontal"
        legend.location = "top_left"
        legend.click_policy = "hide"  # click a series in the legend to hide it
        fig.add_layout(legend, "above")


def _rejects(page: _Page, data: dict[str, Any]) -> None:
    rejects = data.get("rejects")
    if rejects is None:
        page.missing(data, "rejects", "rejects were")
        return
    by_reason = rejects.get("by_reason") or {}
    if not by_reason:
        page.html('<p class="note">No line was rejected.</p>\n')
        return
    rows = "".join(
        f'<tr><td>{_text(reason, 80)}</td><td class="n" data-v="{int(n)}">{int(n):,}</td></tr>'
        for reason, n in sorted(by_reason.items(), key=lambda kv: -int(kv[1]))
    )
    page.html(
        '<table class="sortable"><thead><tr><th>reason</th><th class="n">lines</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>\n"
    )
    examples = rejects.get("examples") or []
    if examples:
        rows = "".join(
            f'<tr><td class="t">{_text(ex.get("file", ""), 120)}</td>'
            f'<td class="n" data-v="{int(ex.get("line") or 0)}">{_count(ex.get("line"))}</td>'
            f"<td>{_text(ex.get('reason', ''), 80)}</td>"
            f'<td class="t"><code>{_text(ex.get("raw", ""), _RAW_CHARS)}</code></td></tr>'
            for ex in examples
        )
        page.html(
            '<h3>Examples</h3>\n<table class="sortable"><thead><tr><th>file</th><th class="n">line</th>'
            f"<th>reason</th><th>line as read</th></tr></thead><tbody>{rows}</tbody></table>\n"
        )


def _epoch_ms(iso: str) -> float:
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:  # a naive time in a record is UTC, as the axis says
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000.0


# The top lists in page order: what was asked for, what was slow or heavy, from where, by whom.
TOP_SECTIONS = (
    ("top_paths", "Top paths", "path"),
    ("not_found", "Not found (404)", "path"),
    ("slow_paths", "Slowest paths (total request time)", "path"),
    ("path_bytes", "Bandwidth by path", "path"),
    ("vhosts", "Virtual hosts", "host"),
    ("referring_sites", "Referring sites", "site"),
    ("referrers", "Top referrers", "referrer"),
    ("user_agents", "Top user agents", "user agent"),
    ("bots", "Bots", "user agent"),
    ("ips", "Top client IPs", "IP"),
    ("static_files", "Static files", "path"),
    ("browsers", "Browsers", "browser"),
    ("operating_systems", "Operating systems", "operating system"),
    ("devices", "Device families", "device"),
    ("countries", "Countries", "country"),
    ("networks", "Networks", "network"),
)
# Lists drawn only when the run had their columns (no note for a log format without them).
OPTIONAL = frozenset({"static_files", "browsers", "operating_systems", "devices", "countries", "networks"})
# Weighted lists: the weight's column header and how an amount of it is shown.
WEIGHTS: dict[str, tuple[str, Callable[[float], str]]] = {
    "slow_paths": ("time", human_seconds),
    "path_bytes": ("bytes", human_bytes),
}
CAPPED_SECTIONS = (("methods", "Methods", "method"), ("protocols", "Protocols", "protocol"))


def _panels(page: _Page, data: dict[str, Any]) -> None:
    panels = data.get("panels")
    if panels is None:
        page.missing(data, "panels", "panels were")
        return
    exact = panels.get("exact") or {}
    visitors = _count(panels.get("unique_visitors"))
    facts = [
        f"rows <b>{_count(panels.get('rows'))}</b>",
        f"from {_text(panels.get('first_ts') or '-', 40)} to {_text(panels.get('last_ts') or '-', 40)}",
        f"unique visitors <b>{'' if exact.get('visitors', True) else '≈ '}{visitors}</b>",
        f"bot share {float(panels.get('bot_share') or 0):.1%}",
        f"bytes sent <b>{human_bytes(int(panels.get('bytes_sent') or 0))}</b>",
    ]
    page.html('<p class="facts">' + "".join(f"<span>{x}</span>" for x in facts) + "</p>\n")
    if panels.get("covers") is not None and data.get("history") is None:  # (a history's header says it)
        page.html(f'<p class="facts"><span>Covers {_text(covers_line(panels["covers"]), 300)}</span></p>\n')
    missing = {str(x) for x in panels.get("missing") or ()}
    if missing:
        names = ", ".join(_text(x, 40) for x in sorted(missing))
        page.html(f'<p class="note">Panels this log format has no columns for: {names}.</p>\n')
    page.section(None, _over_time, panels)
    page.section(None, _status_codes, panels)
    if "latency" not in missing:
        page.section(None, _latency, panels)
    if "path_latency" not in missing and panels.get("path_latency") is not None:
        page.section(None, _path_latency, panels)
    if "daily" not in missing and panels.get("daily") is not None:
        page.section(None, _daily, panels)
    if "hours" not in missing:
        page.section(None, _hours, panels)
    page.html('<div class="grid">\n')
    for key, title, cell in TOP_SECTIONS:
        if key in OPTIONAL and (key in missing or panels.get(key) is None):
            continue
        page.html(f"<div><h3>{title}</h3>\n")
        _top_list(page, panels, key, title, cell, key in missing)
        page.html("</div>\n")
    for key, title, cell in CAPPED_SECTIONS:
        if key not in missing and panels.get(key) is not None:
            page.html(f"<div><h3>{title}</h3>\n")
            page.section(None, partial(_capped, key=key, cell=cell), panels)
            page.html("</div>\n")
    page.html("</div>\n")


def _top_list(page: _Page, panels: dict[str, Any], key: str, title: str, cell: str, missing: bool) -> None:
    exact = panels.get("exact") or {}
    entries = panels.get(key)
    margin = int((exact.get("top_lists_max_undercount") or {}).get(key) or 0)
    if missing:
        page.note(f"{title.lower()}: not in this log format")
        return
    if entries is None:
        page.note(f"{title.lower()} not collected")
        return
    if entries and key in WEIGHTS:
        unit, show = WEIGHTS[key]
        page.html(weighted_table(entries, cell, unit, show, margin, f"top-{key}"))
    elif entries:
        total = int(panels.get("rows") or 0)
        page.html(top_table(entries, cell, total, margin, agents=cell == "user agent", table_id=f"top-{key}"))
    elif not margin:
        page.note("none")
    if key == "vhosts" and panels.get("vhosts_from"):
        page.note("from the column " + ", ".join(str(c) for c in panels["vhosts_from"]))
    if key in ("browsers", "operating_systems", "devices"):
        page.note(
            "from the user_agent transform's columns; agents ua-parser does not recognise are not counted"
        )
    if key == "static_files":
        rows = int(panels.get("rows") or 0)
        static = int(panels.get("static_rows") or 0)
        page.note(f"{static:,} requests for static files ({static / rows if rows else 0:.1%}); {STATIC_RULE}")
    others = (exact.get("top_lists_others_at_most") or {}).get(key)
    wanted = exact.get("top_lists_wanted")
    note = top_note(
        entries, margin, None if others is None else int(others), None if wanted is None else int(wanted)
    )
    if note:
        page.note(note)


STATIC_RULE = (
    "a static file is a path whose last segment ends in a known file extension (docs/diagnostics.md)"
)


def _path_latency(page: _Page, panels: dict[str, Any]) -> None:
    page.html("<h3>Request time by path (top paths)</h3>\n")
    rows_in = panels.get("path_latency") or []
    if not rows_in:
        exact = (panels.get("exact") or {}).get("path_latency", True)
        page.note(
            "none" if exact else "not shown: the paths' request-time histograms outgrew the memory budget"
        )
        return
    rows = []
    for path, n, *qs in rows_in:
        cells = "".join(f'<td class="n" data-v="{float(q)!r}">{human_seconds(float(q))}</td>' for q in qs[:3])
        rows.append(
            f'<tr><td class="t" title="{_text(path, 1000)}">{_text(path, 90)}</td>'
            f'<td class="n" data-v="{int(n)}">{int(n):,}</td>{cells}</tr>'
        )
    page.html(
        '<table class="sortable" id="path-latency"><thead><tr><th>path</th><th class="n">timed</th>'
        '<th class="n">p50</th><th class="n">p90</th><th class="n">p99</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>\n"
    )
    err = float((panels.get("latency") or {}).get("relative_error") or 0)
    page.note(
        f"The most requested paths that had a request time; percentiles each within {err:.0%} (relative)."
    )


def _daily(page: _Page, panels: dict[str, Any]) -> None:
    days = panels.get("daily") or []
    page.html("<h3>Requests and distinct client IPs per day (UTC)</h3>\n")
    if not days:
        page.note("no request had a time")
        return
    top = max(int(d[1]) for d in days) or 1
    rows = "".join(
        f'<tr><td>{_text(day, 12)}</td><td class="n" data-v="{int(n)}">{int(n):,}</td>'
        f'<td class="n" data-v="{int(ips or 0)}">{_count(ips)}</td>'
        f'<td data-v="{int(n)}"><span class="bar" style="width:{200 * int(n) / top:.0f}px"></span></td></tr>'
        for day, n, ips in days
    )
    page.html(
        '<table class="sortable" id="daily"><thead><tr><th>day</th><th class="n">requests</th>'
        f'<th class="n">distinct IPs</th><th></th></tr></thead><tbody>{rows}</tbody></table>\n'
    )
    notes = []
    if not (panels.get("exact") or {}).get("ips_by_time", True):
        notes.append("distinct IPs past a few thousand a day are HyperLogLog estimates (about 0.8 %)")
    if int(panels.get("days_dropped") or 0):
        notes.append(
            f"only the latest days are kept: {int(panels['days_dropped']):,} earlier requests not shown"
        )
    if notes:
        page.note("; ".join(notes))


def _latency(page: _Page, panels: dict[str, Any]) -> None:
    lat = panels.get("latency") or {}
    page.html("<h3>Request time</h3>\n")
    n = int(lat.get("count") or 0)
    if not n:
        page.note("no request had a usable request time")
        return
    q = lat.get("quantiles") or {}
    facts = [
        f"timed requests <b>{n:,}</b>",
        *(f"{k} <b>{human_seconds(float(v))}</b>" for k, v in q.items() if re.fullmatch(r"p\d{1,2}", str(k))),
        f"mean {human_seconds(float(lat['mean']))}",
        f"min {human_seconds(float(lat['min']))}",
        f"max {human_seconds(float(lat['max']))}",
    ]
    page.html('<p class="facts" id="latency">' + "".join(f"<span>{x}</span>" for x in facts) + "</p>\n")
    err = float(lat.get("relative_error") or 0)
    note = (
        f"Percentiles from a log-bucketed histogram: each within {err:.0%} of the exact value (relative); "
        "count, mean, min and max are exact."
    )
    if lat.get("invalid"):
        bad = int(lat["invalid"])
        note += f" {bad:,} request times were negative, not a number or over 11 days and are left out."
    page.note(note)


def _hours(page: _Page, panels: dict[str, Any]) -> None:
    hours = [int(x) for x in (panels.get("hours") or [])][:24]
    total = sum(hours)
    page.html("<h3>Requests by hour of day (UTC)</h3>\n")
    if not total:
        page.note("no request had a time")
        return
    top = max(hours) or 1
    ips = [int(x) for x in (panels.get("hours_ips") or [])][:24]
    ip_head = '<th class="n">distinct IPs</th>' if len(ips) == 24 else ""
    rows = "".join(
        f'<tr><td class="n" data-v="{h}">{h:02d}</td><td class="n" data-v="{n}">{n:,}</td>'
        f'<td class="n" data-v="{n}">{n / total:.1%}</td>'
        + (f'<td class="n" data-v="{ips[h]}">{ips[h]:,}</td>' if ip_head else "")
        + f'<td data-v="{n}"><span class="bar" style="width:{200 * n / top:.0f}px"></span></td></tr>'
        for h, n in enumerate(hours)
    )
    page.html(
        '<table class="sortable" id="hours"><thead><tr><th class="n">hour</th><th class="n">requests</th>'
        f'<th class="n">share</th>{ip_head}<th></th></tr></thead><tbody>{rows}</tbody></table>\n'
    )


def _capped(page: _Page, panels: dict[str, Any], key: str, cell: str) -> None:
    entries = panels.get(key) or []
    if not entries:
        page.note("none")
        return
    total = sum(int(e[1]) for e in entries)
    page.html(top_table(entries, cell, total, table_id=f"top-{key}"))
    cap = (panels.get("exact") or {}).get("capped_at")
    if cap:
        page.note(
            f"Exact counts of the first {int(cap)} distinct values seen; any beyond are counted as other."
        )


def _over_time(page: _Page, panels: dict[str, Any]) -> None:
    from bokeh.models import ColumnDataSource, HoverTool

    series = panels.get("over_time") or {}
    stamps = series.get("t") or []
    if not stamps:
        page.note("requests over time not collected: no timestamps")
        return
    n = len(stamps)
    requests, visitors = series.get("requests") or [], series.get("visitors") or []
    # a series shorter than the times (a record cut short) is padded with zeros, a longer one cut
    columns: dict[str, Any] = {
        "t": np.array([_epoch_ms(str(x)) for x in stamps], np.float64),
        "requests": np.array([*requests[:n], *[0] * (n - len(requests))], np.int64),
        "visitors": np.array([*visitors[:n], *[0] * (n - len(visitors))], np.int64),
    }
    source = ColumnDataSource(columns)
    bucket_ms = 1000.0 * float(panels.get("bucket_s") or 60)
    title = "requests" + (" and unique visitors" if visitors else "")
    fig = _figure(f"{title} per {int(bucket_ms // 1000)} s (UTC)", 260, "datetime")
    fig.vbar(
        x="t", top="requests", width=0.9 * bucket_ms, source=source, color="#9ecae1", legend_label="requests"
    )
    tips = [("from", "@t{%F %T}"), ("requests", "@requests{0,0}")]
    if visitors:  # no visitor counts without IPs: no line of zeros
        approx = "" if (panels.get("exact") or {}).get("visitors", True) else " (estimated)"
        label = f"unique visitors{approx}"
        fig.line("t", "visitors", source=source, color="#d95f02", line_width=2, legend_label=label)
        tips.append(("visitors", "@visitors{0,0}"))
    fig.add_tools(HoverTool(tooltips=tips, formatters={"@t": "datetime"}, mode="vline"))
    fig.y_range.start = 0  # type: ignore[attr-defined]
    _add_plot(page, fig, "no requests over time")


def _status_class(code: str) -> str:
    return STATUS_COLOURS.get(code[:1], "#999999") if len(code) == 3 else "#999999"


def _status_codes(page: _Page, panels: dict[str, Any]) -> None:
    from bokeh.models import ColumnDataSource, HoverTool

    entries = panels.get("status")
    if not entries:
        page.note("status codes not collected")
        return
    hits: dict[str, int] = {}
    for code, n in entries:
        # a status code is a number in the record; anything else is folded into one 'other' bar
        text = str(code)
        key = text if re.fullmatch(r"\d{1,3}", text) else "other"
        hits[key] = hits.get(key, 0) + int(n)
    codes = sorted(hits, key=lambda c: (c == "other", c))
    total = sum(hits.values()) or 1
    source = ColumnDataSource(
        {
            "code": codes,
            "hits": [hits[c] for c in codes],
            "share": [hits[c] / total for c in codes],
            "colour": [_status_class(c) for c in codes],
        }
    )
    fig = _figure("status codes", 240, width=560, x_range=codes)
    fig.toolbar_location = None
    fig.vbar(x="code", top="hits", width=0.8, source=source, color="colour")
    fig.add_tools(
        HoverTool(tooltips=[("status", "@code"), ("hits", "@hits{0,0}"), ("share", "@share{0.0%}")])
    )
    fig.y_range.start = 0  # type: ignore[attr-defined]
    fig.xgrid.grid_line_color = None
    page.html('<div class="row">')  # the table beside the chart
    page.plot(fig)
    # the same numbers as a table, for a reader without scripts
    rows = "".join(
        # codes are digits or 'other' (above): nothing to escape
        f'<tr><td>{c}</td><td class="n" data-v="{hits[c]}">{hits[c]:,}</td>'
        f'<td class="n" data-v="{hits[c]}">{hits[c] / total:.1%}</td></tr>'
        for c in codes
    )
    page.html(
        '<table class="sortable"><thead><tr><th>status</th><th class="n">hits</th><th class="n">share</th>'
        f"</tr></thead><tbody>{rows}</tbody></table></div>\n"
    )


# The sections in page order: what the log says first, then what the pipeline did with it.
SECTIONS: dict[str, Callable[[_Page, dict[str, Any]], None]] = {
    "Access log": _panels,
    "Rejected lines": _rejects,
    "Stages": _stages,
    "Worker timeline": _timeline,
    "Throughput and queues": _throughput,
}
HISTORY_SECTIONS: dict[str, Callable[[_Page, dict[str, Any]], None]] = {"Access log": _panels}
