"""pipeline.report.tables: units, short user agents, top tables and their notes."""

from __future__ import annotations

import html
import re

import pytest

from pipeline.report.tables import CELL_CHARS, human_bytes, short_agent, top_note, top_table
from pipeline.text import safe_text

AGENTS = {
    # a bot in a browser's clothes: the compatible; comment names it, the first comment its platform
    "Mozilla/5.0 (iPhone; CPU iPhone OS 6_0 like Mac OS X) AppleWebKit/536.26 (KHTML, like Gecko) "
    "Version/6.0 Mobile/10A5376e Safari/8536.25 (compatible; Googlebot-Mobile/2.1; "
    "+http://www.google.com/bot.html)": "Googlebot-Mobile/2.1 (iPhone)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 6_0 like Mac OS X) AppleWebKit/536.26 (KHTML, like Gecko) "
    "Version/6.0 Mobile/10A5376e Safari/8536.25": "Safari/8536.25 (iPhone)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)": "Googlebot/2.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/132.0.0.0 "
    "Safari/537.36": "Chrome/132.0.0.0 (Windows NT 10.0)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/132.0.0.0 "
    "Safari/537.36 Edg/132.0.2957.127": "Edg/132.0.2957.127 (Windows NT 10.0)",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0": "Firefox/133.0 (X11)",
    "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0)": "MSIE 9.0",
    "Mozilla/5.0": "Mozilla/5.0",
    "curl/8.5.0": "curl/8.5.0",
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)": "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
    "": "",
}


@pytest.mark.parametrize(("agent", "short"), AGENTS.items())
def test_short_agent_keeps_what_tells_it_apart(agent: str, short: str) -> None:
    assert short_agent(agent) == short


def test_short_agents_of_the_same_client_tell_the_bots_apart() -> None:
    """The naive cut (the first 60 characters) shows Googlebot-Mobile as a plain iPhone Safari."""
    bot, phone = list(AGENTS)[:2]
    assert bot[:60] == phone[:60]
    assert short_agent(bot) != short_agent(phone)


@pytest.mark.parametrize(
    "junk", ["Mozilla/5.0 ((((", "Mozilla/5.0 (;;;) ()", "Mozilla/" + "(x" * 5000, "Mozilla/\x00\u202e"]
)
def test_short_agent_of_junk_is_some_text(junk: str) -> None:
    assert isinstance(short_agent(junk), str)


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (1_234_567, "1.2 MB"), (230_140_200_000, "230.1 GB"),
     (999_960, "1.0 MB"), (5 * 10**18, "5.0 EB")],
)  # fmt: skip
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


def _cells(table: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>", 1)[1])
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)]
        for r in rows
    ]


def test_top_table_shows_certain_ranks_and_count_ranges() -> None:
    exact = _cells(top_table([["/a", 9, 9, 1, 1], ["/b", 5, 5, 2, 2]], "path", 20))
    assert [row[:3] for row in exact] == [["1", "/a", "9"], ["2", "/b", "5"]]
    cut = _cells(top_table([["/a", 90, 95, 1, 1], ["/b", 50, 55, 2, 3], ["/c", 49, 54, 2, 3]], "path", 200))
    assert [row[:3] for row in cut] == [
        ["1", "/a", "90\u201395"],
        ["", "/b", "50\u201355"],
        ["", "/c", "49\u201354"],
    ]
    old = _cells(top_table([["/a", 9], ["/b", 5]], "path", 20, margin=3))  # an older record's list
    assert [row[:3] for row in old] == [["", "/a", "9\u201312"], ["", "/b", "5\u20138"]]


def test_top_table_escapes_and_keeps_the_full_agent_on_hover() -> None:
    bot = next(iter(AGENTS)) + '<script>alert("x")</script>'
    table = top_table([[bot, 3, 3, 1, 1]], "user agent", 3, agents=True)
    assert "<script>" not in table and "&lt;script&gt;" in table
    title = re.search(r'title="([^"]*)"', table)
    assert title and html.unescape(title.group(1)) == bot
    assert ">Googlebot-Mobile/2.1 (iPhone)<" in table


def test_agents_that_shorten_alike_keep_their_full_text() -> None:
    a = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/1 Safari/1"
    b = a.replace("Win64; x64", "WOW64")
    c = b.replace("WOW64", "WOW64 ")  # the same comment's items: only the whole text tells them apart
    cells = _cells(
        top_table([[a, 3, 3, 1, 1], [b, 2, 2, 2, 2], [c, 1, 1, 3, 3]], "user agent", 6, agents=True)
    )
    assert [row[1] for row in cells] == [
        "Chrome/1 (Windows NT 10.0; Win64; x64)",
        safe_text(b, CELL_CHARS),
        safe_text(c, CELL_CHARS),
    ]


def test_top_note_says_how_approximate_a_list_is() -> None:
    assert top_note([["/a", 9, 9, 1, 1]], 0, 3, 20) == ""
    note = top_note([["/a", 90, 95, 1, 1]], 5, 60, 20)
    assert "may be low by up to 5" in note and "certainly the top 1" in note and "at most 60 hits" in note
    assert "fewer than 20 rows" in note
    assert "none is shown" in top_note([], 7, 7, 20)
