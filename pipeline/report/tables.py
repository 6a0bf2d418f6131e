"""The report's tables and the text in them: human units, short user agents, top lists, sorting.

Every table of the page is sortable by a click on a column's header, with :data:`SORT_JS`, a small
script of our own inlined in the page (allowed by its hash in the page's Content-Security-Policy; no
inline handlers). A cell sorts by its ``data-v`` number when it has one, else by its text; the first
click sorts a numeric column descending, a text column ascending, the next click reverses it.

Log text in a cell goes through :func:`text` (escaped, control and bidi characters shown); a cut value
keeps its full text in the cell's ``title`` (shown on hover), escaped the same way.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any, Final

from pipeline.text import safe_text

CELL_CHARS: Final = 90  # of a value in a top list (its full text on hover)
TITLE_CHARS: Final = 1000

_UNITS: Final = ("B", "KB", "MB", "GB", "TB", "PB", "EB")

SORT_JS: Final = """document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var head = table.tHead && table.tHead.rows[0];
    if (!head) { return; }
    Array.prototype.forEach.call(head.cells, function (th, col) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var key = function (row) {
          var cell = row.cells[col];
          if (!cell) { return ""; }
          var v = cell.getAttribute("data-v");
          return v === null ? cell.textContent : parseFloat(v);
        };
        var numeric = rows.every(function (row) { return typeof key(row) === "number"; });
        var current = th.getAttribute("aria-sort");
        var asc = current ? current === "descending" : !numeric;
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          var c = numeric ? x - y : String(x).localeCompare(String(y));
          return asc ? c : -c;
        });
        Array.prototype.forEach.call(head.cells, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
});
"""


def text(value: Any, limit: int | None = 160) -> str:
    """Untrusted text as HTML text (or a quoted attribute value): visible control characters, escaped."""
    return html.escape(safe_text(str(value), limit), quote=True)


def human_bytes(n: float) -> str:
    """Bytes in decimal units, three significant digits or so: ``230.1 GB``, ``512 B``."""
    value, unit = float(n), 0
    while abs(value) >= 999.95 and unit < len(_UNITS) - 1:
        value /= 1000.0
        unit += 1
    return f"{value:.0f} B" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def human_seconds(s: float) -> str:
    """A duration in the unit that reads best: ``850 µs``, ``12.3 ms``, ``1.24 s``, ``3.5 min``, ``2.1 h``."""
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    if s < 60:
        return f"{s:.3g} s"
    return f"{s / 60:.3g} min" if s < 3600 else f"{s / 3600:.3g} h"


# A product token (name/version) outside the comments, and the tokens every browser repeats.
_PRODUCT = re.compile(r"[^\s/()]+/[^\s()]+")
_COMMENT = re.compile(r"\(([^()]*)\)")
_BOILERPLATE: Final = frozenset({"mozilla", "applewebkit", "khtml", "gecko", "safari", "version", "mobile"})


def short_agent(agent: str, detail: bool = False) -> str:
    """A user agent cut to what tells it apart: ``Mozilla/5.0 (iPhone; ...) AppleWebKit/... (compatible;
    Googlebot-Mobile/2.1; +http://...)`` is ``Googlebot-Mobile/2.1 (iPhone)``.

    Only agents in the browsers' ``Mozilla/5.0 (platform) ...`` form are shortened: a ``compatible;``
    comment names the client (bots, tools); else the last product token that is not the boilerplate
    every browser repeats (``Edg/`` after ``Chrome/``, ``Firefox/`` after ``Gecko/``), else the last
    token (Safari). The platform is the first item of the first comment (``detail``: the whole comment).
    Other agents (``curl/8.5.0``) already start with what tells them apart and are kept whole.
    """
    if not agent.startswith("Mozilla/"):
        return agent
    comments = [[part.strip() for part in c.split(";")] for c in _COMMENT.findall(agent)]
    client = next((c[1] for c in comments if len(c) > 1 and c[0].lower() == "compatible" and c[1]), "")
    if not client:
        products = _PRODUCT.findall(_COMMENT.sub(" ", agent))
        own = [p for p in products if p.split("/", 1)[0].lower() not in _BOILERPLATE]
        client = (own or products or [agent])[-1]
    platform = ""
    if comments and comments[0][0].lower() != "compatible":
        platform = "; ".join(comments[0]) if detail else comments[0][0]
    return f"{client} ({platform})" if platform else client


def _shortened(values: Sequence[str], shorten: bool) -> list[str]:
    """Each value's text for a cell: its short agent form when ``shorten``; where two values of the
    table would look the same, the form with the whole platform comment, and failing that the value."""
    if not shorten:
        return list(values)
    out = list(values)
    for detail in (True, False):
        forms = [short_agent(v, detail) for v in values]
        for i, form in enumerate(forms):
            if forms.count(form) == 1:
                out[i] = form
    return out


def top_table(
    entries: Sequence[Sequence[Any]],
    cell: str,
    total: int,
    margin: int = 0,
    agents: bool = False,
    table_id: str = "",
) -> str:
    """A top list as a sortable table: rank (where it is certain), value, hits (a range when the list
    was counted in bounded memory), share and a bar. ``entries``: ``[value, low, high, best, worst]``
    from :meth:`pipeline.report.panels.Panels.to_dict`, or ``[value, hits]`` from an older record (then
    ``margin`` is its list's possible undercount)."""
    rows = []
    full = [safe_text(str(e[0]), TITLE_CHARS) for e in entries]
    shown = _shortened(full, agents)
    top = max(int(e[1]) for e in entries) or 1
    for i, entry in enumerate(entries):
        low = int(entry[1])
        high = int(entry[2]) if len(entry) >= 5 else low + margin
        best, worst = (
            (int(entry[3]), int(entry[4])) if len(entry) >= 5 else (i + 1, i + 1 if not margin else 0)
        )
        rank = f'<td class="n" data-v="{best}">{best}</td>' if best == worst else f'<td data-v="{best}"></td>'
        hits = f"{low:,}" if high == low else f"{low:,}\u2013{high:,}"
        share = f"{low / total:.1%}" if total else ""
        rows.append(
            # the full text in the tooltip (escaped as an attribute value), a cut one in the cell
            f'<tr>{rank}<td class="t" title="{text(full[i], TITLE_CHARS)}">{text(shown[i], CELL_CHARS)}</td>'
            f'<td class="n" data-v="{low}">{hits}</td><td class="n" data-v="{low}">{share}</td>'
            f'<td data-v="{low}"><span class="bar" style="width:{100 * low / top:.0f}px"></span></td></tr>'
        )
    head = f'<th class="n">#</th><th>{cell}</th><th class="n">hits</th><th class="n">share</th><th></th>'
    ident = f' id="{text(table_id, 40)}"' if table_id else ""
    body = "".join(rows)
    return f'<table class="sortable"{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n'


def top_note(entries: Sequence[Sequence[Any]], margin: int, others: int | None, wanted: int | None) -> str:
    """What a cut list knows, in words ('' for an exact list)."""
    if not margin:
        return ""
    n = len(entries)
    text_ = (
        f"Approximate (counted in bounded memory): each count may be low by up to {margin:,}; "
        f"the {n} value{'s' * (n != 1)} shown {'are' if n != 1 else 'is'} certainly the top {n}, "
        "a rank is shown where it is certain"
    )
    if n == 0:
        text_ = (
            f"Approximate (counted in bounded memory): each count may be low by up to {margin:,}, more "
            "than the gaps between the top counts, so no value is certainly on top: none is shown"
        )
    if others is not None:
        text_ += f"; any value not shown has at most {others:,} hits"
    if wanted is not None and 0 < n < wanted:
        text_ += f" (fewer than {wanted} rows: the counts below are too close to rank)"
    return text_ + "."


def weighted_table(
    entries: Sequence[Sequence[Any]], cell: str, unit: str, show: Any, margin: int, table_id: str
) -> str:
    """A weighted top list (``[value, low, high, best, worst, rows]``: total time in microseconds or
    bytes per value) as a sortable table: rank, value, total, rows, mean per row and a bar. ``show``
    formats an amount of the weight's unit (:func:`human_bytes`, or seconds for :func:`human_seconds`)."""
    scale = 1e-6 if unit == "time" else 1.0
    top = max(int(e[1]) for e in entries) or 1
    rows = []
    for i, entry in enumerate(entries):
        low, high, best, worst, n = (int(x) for x in entry[1:6])
        rank = (
            f'<td class="n" data-v="{best}">{best}</td>' if best == worst else f'<td data-v="{i + 1}"></td>'
        )
        total = show(low * scale) if high == low else f"{show(low * scale)}\u2013{show(high * scale)}"
        mean = show(low * scale / n) if n and not margin else ""
        full = safe_text(str(entry[0]), TITLE_CHARS)
        rows.append(
            f'<tr>{rank}<td class="t" title="{text(full, TITLE_CHARS)}">{text(full, CELL_CHARS)}</td>'
            f'<td class="n" data-v="{low}">{total}</td><td class="n" data-v="{n}">{n:,}</td>'
            f'<td class="n" data-v="{low / n if n else 0}">{mean}</td>'
            f'<td data-v="{low}"><span class="bar" style="width:{100 * low / top:.0f}px"></span></td></tr>'
        )
    head = (
        f'<th class="n">#</th><th>{cell}</th><th class="n">{unit}</th><th class="n">hits</th>'
        f'<th class="n">mean</th><th></th>'
    )
    body = "".join(rows)
    return (
        f'<table class="sortable" id="{text(table_id, 40)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>\n"
    )
