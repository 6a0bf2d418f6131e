"""pipeline.report.audience through the panels: browsers, OS, devices, countries, networks, static files,
requests and distinct IPs per day and hour of day, request time by path; against DuckDB on the rows."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from pipeline.report import audience, panels
from pipeline.report.audience import STATIC_EXTENSIONS
from pipeline.report.panels import Panels, summarize
from pipeline.transforms.builtins import user_agent
from tests.conftest import SAMPLE, run_panels

AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/132.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
    "-",
    "\u00e9trange/1 \x01",
]  # fmt: skip
PATHS = [
    "/", "/index.html", "/a.css", "/b/app.JS?v=3", "/img/x.png#top", "/x.js;jsessionid=1", "/dir.css/",
    "/dl/f.tar.gz", "/api/items", "/.css", "/weird.css?x\ny", "/p.php?f=a.css", "/robots.txt", "/a.cssx",
]  # fmt: skip
COUNTRIES = ["US", "DE", "FR", "BR", "JP", None]
ORGS = ["Cloudflare, Inc.", "Google LLC", None, "Deutsche Telekom AG"]


def rows(n: int, seed: int, days: float = 3.0) -> pa.Table:
    """Rows with every audience column, skewed values and nulls, over ``days`` days (the user_agent
    transform's columns included)."""
    rng = np.random.default_rng(seed)
    z = rng.zipf(1.4, (n, 5))
    ts = 1_780_000_000_000_000 + np.sort(rng.integers(0, int(days * 86_400_000_000), n))
    rt = np.exp(rng.uniform(np.log(1e-4), np.log(30), n))
    rt[rng.random(n) < 0.01] = 0.0
    asn = [None if c % 7 == 0 else 13000 + c % 9 for c in z[:, 3].tolist()]
    table = pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC"), mask=rng.random(n) < 0.01),
            "ip": pa.array(
                [None if a == 9 else f"10.{a % 3}.{b % 40}.{a % 200}" for a, b in z[:, :2].tolist()]
            ),
            "user_agent": pa.array([None if b == 11 else AGENTS[b % len(AGENTS)] for b in z[:, 1].tolist()]),
            "path": pa.array(
                [None if c == 13 else PATHS[c % len(PATHS)] + f"{c // 50 or ''}" for c in z[:, 2]]
            ),
            "request_time": pa.array(rt, mask=rng.random(n) < 0.05),
            "geo_country": pa.array([COUNTRIES[d % len(COUNTRIES)] for d in z[:, 3].tolist()], pa.string()),
            "geo_asn": pa.array(asn, pa.int64()),
            "geo_as_org": pa.array([ORGS[e % len(ORGS)] for e in z[:, 4].tolist()], pa.string()),
        }
    )
    return user_agent(table)


def merged(table: pa.Table, cuts: int, seed: int, top: int = 12) -> dict[str, Any]:
    edges = np.linspace(0, table.num_rows, cuts + 1).astype(int).tolist()
    parts = [
        summarize(table.slice(a, b - a).combine_chunks().to_batches()[0])
        for a, b in itertools.pairwise(edges)
    ]
    random.Random(seed).shuffle(parts)
    p = Panels(top=top)
    for x in parts:
        p.add(x)
    return p.to_dict()


def is_static(path: str | None) -> bool:
    """The documented rule, written independently: cut at the first ? # or ;, take the last segment's
    extension after its last dot, ASCII-lowered."""
    if path is None:
        return False
    for mark in "?#;":
        path = path.split(mark, 1)[0]
    last = path.rsplit("/", 1)[-1]
    return (
        "." in last
        and last.rsplit(".", 1)[1].translate(
            str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
        )
        in STATIC_EXTENSIONS
    )


def reference(table: pa.Table, top: int) -> dict[str, Any]:
    statics = pa.table(
        {"path": pa.array([p for p in table.column("path").to_pylist() if is_static(p)], pa.string())}
    )
    ref: dict[str, Any] = {}

    def ranked(sql: str) -> list[list[Any]]:
        got = con.execute(
            f"SELECT k, count(*) n FROM ({sql}) WHERE k IS NOT NULL GROUP BY k ORDER BY n DESC, k LIMIT {top}"
        )
        return [[k, n, n, i + 1, i + 1] for i, (k, n) in enumerate(got.fetchall())]

    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("t", table)
        con.register("statics", statics)
        ref["browsers"] = ranked("SELECT ua_family k FROM t")
        ref["operating_systems"] = ranked("SELECT os_family k FROM t")
        ref["devices"] = ranked("SELECT device_family k FROM t")
        if "geo_country" in table.column_names:
            ref["countries"] = ranked("SELECT geo_country k FROM t")
            ref["networks"] = ranked("SELECT 'AS' || geo_asn || coalesce(' ' || geo_as_org, '') k FROM t")
        ref["static_files"] = ranked("SELECT path k FROM statics")
        ref["static_rows"] = statics.num_rows
        q = "SELECT strftime(ts, '%Y-%m-%d'), count(*), count(DISTINCT ip) FROM t WHERE ts IS NOT NULL "
        q += "GROUP BY 1 ORDER BY 1"
        ref["daily"] = [list(r) for r in con.execute(q).fetchall()]
        hours = dict(
            con.execute(
                "SELECT hour(ts), count(DISTINCT ip) FROM t WHERE ts IS NOT NULL GROUP BY 1"
            ).fetchall()
        )
        ref["hours_ips"] = [hours.get(h, 0) for h in range(24)]
        if "request_time" in table.column_names:
            q = (
                "SELECT path, count(*), quantile_disc(request_time, [0.5, 0.9, 0.99]) FROM t "
                "WHERE path IS NOT NULL AND request_time IS NOT NULL GROUP BY path"
            )
            ref["path_latency"] = {p: (n, qs) for p, n, qs in con.execute(q).fetchall()}
    return ref


@pytest.mark.parametrize("seed", [0, 1])
def test_audience_panels_equal_duckdb_in_any_merge_order(seed: int) -> None:
    table = rows(12_000, seed)
    ref = reference(table, 12)
    d = merged(table, 5, seed)
    for name in ("browsers", "operating_systems", "devices", "countries", "networks", "static_files"):
        assert d[name] == ref[name], name
        assert d[name], name  # not a vacuous equality
    assert d["static_rows"] == ref["static_rows"] > 0
    assert d["daily"] == ref["daily"] and len(d["daily"]) == 4 and d["days_dropped"] == 0
    assert d["hours_ips"] == ref["hours_ips"] and d["exact"]["ips_by_time"] is True
    assert d["exact"]["path_latency"] is True
    shown = [e[0] for e in d["top_paths"]]
    assert [e[0] for e in d["path_latency"]] == [p for p in shown if p in ref["path_latency"]]
    assert len(d["path_latency"]) >= 10
    for path, n, *qs in d["path_latency"]:
        want_n, want = ref["path_latency"][path]
        assert n == want_n
        for got, exact in zip(qs, want, strict=True):
            assert abs(got - exact) <= d["latency"]["relative_error"] * exact + 1e-6, path
    assert merged(table, 7, seed + 5) == d


def test_families_need_the_transform_columns() -> None:
    """Agents are not parsed here (it costs several times the parse: BENCHMARKS.md): without the
    user_agent transform's columns the family panels are missing, and their lists empty."""
    table = rows(3000, 3)
    bare = merged(
        table.drop_columns(["ua_family", "ua_major", "os_family", "os_major", "device_family"]), 2, 0
    )
    assert {"browsers", "operating_systems", "devices"} <= set(bare["missing"])
    assert bare["browsers"] == bare["operating_systems"] == bare["devices"] == []
    assert merged(table, 2, 0)["browsers"]  # with them, counted


def test_only_the_latest_days_are_kept_in_any_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(panels, "MAX_DAYS", 5)
    table = rows(4000, 5, days=12)
    ref = reference(table, 12)["daily"]
    for seed in range(3):
        d = merged(table, 9, seed)
        assert d["daily"] == ref[-5:]
        assert d["days_dropped"] == sum(n for _, n, _ in ref[:-5]) > 0


def test_distinct_ips_beyond_the_exact_set_are_estimates() -> None:
    n = panels.DAY_EXACT * 3
    ts = pa.array(np.full(n, 1_780_000_000_000_000), pa.timestamp("us", tz="UTC"))
    ip = pa.array([f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" for i in range(n)])
    p = Panels()
    p.add(summarize(pa.RecordBatch.from_pydict({"ts": ts, "ip": ip})))
    d = p.to_dict()
    (day,) = d["daily"]
    rse = 1.04 / math.sqrt(1 << panels.RUN_P)
    assert d["exact"]["ips_by_time"] is False and abs(day[2] - n) <= 4 * rse * n
    assert day[2] <= day[1] == n  # every ip made one request: an estimate above that is clamped
    assert sum(d["hours_ips"]) == n  # an hour of day keeps RUN_EXACT hashes exactly


def test_per_path_times_are_withheld_once_their_histograms_are_cut() -> None:
    table = rows(6000, 6)
    p = Panels(top=10, budget=4 << 10)
    p.add(summarize(table.combine_chunks().to_batches()[0]))
    d = p.to_dict()
    assert d["exact"]["path_latency"] is False and d["path_latency"] == []


def test_static_rule() -> None:
    values = pa.array([p.encode() for p in PATHS] + [b"/\xff.png", b"/x.PnG"], pa.binary())
    got = [bool(x) for x in audience.static_values(values).to_pylist()]
    want = [is_static(p) for p in PATHS] + [True, True]
    assert got == want and any(want) and not all(want)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_real_run_equals_duckdb_on_its_parquet_and_a_serial_run(tmp_path: Path) -> None:
    parallel = run_panels(SAMPLE, tmp_path / "process", "process", transforms=["user_agent"])
    serial = run_panels(SAMPLE, tmp_path / "inline", "inline", transforms=["user_agent"])
    assert parallel == serial
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        files = f"read_parquet('{tmp_path / 'process'}/**/*.parquet', hive_partitioning = false)"
        table = con.sql(f"SELECT * FROM {files}").to_arrow_table()
    ref = reference(table, 20)
    for name in ("browsers", "operating_systems", "devices", "static_files", "daily", "hours_ips"):
        assert parallel[name] == ref[name], name
        assert parallel[name], name
    assert parallel["static_rows"] == ref["static_rows"]
