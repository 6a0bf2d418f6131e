"""pipeline.report.panels: exact panels against pandas, sketch error bounds, merges, edge cases."""

from __future__ import annotations

import itertools
import json
import math
import pickle
import random
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline.formats import get_format
from pipeline.formats.spec import builtin
from pipeline.report.panels import (
    BUDGET_MAX,
    BUDGET_MIN,
    DEFAULT_BUDGET,
    MAX_BUCKETS,
    PAIRS_EXACT,
    PANELS,
    RUN_EXACT,
    RUN_P,
    Panels,
    _Distinct,
    budget_for,
    hash_binary,
    summarize,
)
from pipeline.report.sketches import CAP
from tests.conftest import SAMPLE, run_panels

SCHEMA = builtin("combined").schema()

COMBINED_MISSING = ["latency", "slow_paths", "vhosts", "path_latency"]
COMBINED_MISSING += ["browsers", "operating_systems", "devices", "countries", "networks"]
MON = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def parse(data: bytes) -> pa.RecordBatch:
    return get_format("combined").parse(data, 1, 1 << 20, 4096).batch


def chunks(data: bytes, n: int) -> list[pa.RecordBatch]:
    """``data`` cut into ``n`` line-aligned chunks, each parsed, as the pipeline does."""
    out, pos = [], 0
    for i in range(1, n + 1):
        end = len(data) if i == n else data.index(b"\n", len(data) * i // n) + 1
        out.append(parse(data[pos:end]))
        pos = end
    return out


def log_lines(
    n: int, start: datetime, step_s: float, seed: int = 1, ips: int = 300, paths: int = 200
) -> bytes:
    """Combined-format lines with skewed (Zipf-like) ips and paths."""
    rng = random.Random(seed)
    agents = ["Mozilla/5.0 (X11)", "curl/8.5.0", "Googlebot/2.1", "-"]
    lines = []
    for i in range(n):
        ts = start + timedelta(seconds=i * step_s)
        t = f"{ts:%d}/{MON[ts.month - 1]}/{ts:%Y:%H:%M:%S} +0000"
        ip = f"10.0.{int(rng.paretovariate(1.2)) % ips // 256}.{int(rng.paretovariate(1.2)) % ips % 256}"
        path = f"/p/{int(rng.paretovariate(1.1)) % paths}"
        status = rng.choice([200] * 8 + [404, 500])
        size, agent = rng.randrange(999), rng.choice(agents)
        lines.append(f'{ip} - - [{t}] "GET {path} HTTP/1.1" {status} {size} "-" "{agent}"')
    return ("\n".join(lines) + "\n").encode()


def panels_of(batches: list[pa.RecordBatch], top: int = 20, budget: int = DEFAULT_BUDGET) -> dict[str, Any]:
    p = Panels(top=top, budget=budget)
    for b in batches:
        p.add(summarize(b))
    return p.to_dict()


def exact_top(values: pd.Series, top: int) -> list[list[Any]]:
    """The reference: a plain Counter, ranked by count descending then the value's UTF-8 bytes."""
    counts = Counter(values.dropna().tolist())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].encode()))
    return [[k, n, n, i + 1, i + 1] for i, (k, n) in enumerate(ranked[:top])]


def frame(batches: list[pa.RecordBatch]) -> pd.DataFrame:
    df: pd.DataFrame = pa.Table.from_batches(batches).to_pandas()
    df["sec"] = df["ts"].astype("int64") // 10**6  # pandas keeps the column's microseconds
    return df


@pytest.fixture(scope="module")
def sample() -> list[pa.RecordBatch]:
    return chunks((SAMPLE / "access-000.log").read_bytes(), 3)


def test_exact_panels_match_pandas(sample: list[pa.RecordBatch]) -> None:
    d = panels_of(sample)
    df = frame(sample)
    assert d["rows"] == len(df) > 1000
    codes = df["status"].value_counts()
    assert d["status"] == [[int(k), int(codes[k])] for k in sorted(codes.index.astype(int))]
    assert d["bytes_sent"] == int(df["bytes"].sum())
    assert d["bot_share"] == pytest.approx(df["is_bot"].mean())
    assert d["first_ts"] == f"{df['ts'].min():%Y-%m-%dT%H:%M:%S}Z"
    assert d["last_ts"] == f"{df['ts'].max():%Y-%m-%dT%H:%M:%S}Z"
    w = d["bucket_s"]
    assert w in (60, 300, 900, 3600) and (df["sec"].max() // w - df["sec"].min() // w) < MAX_BUCKETS
    per = df.groupby(df["sec"] // w).size()
    keys = range(df["sec"].min() // w, df["sec"].max() // w + 1)
    assert d["over_time"]["requests"] == [int(per.get(k, 0)) for k in keys]
    assert d["over_time"]["t"][0] == datetime.fromtimestamp(keys[0] * w, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert d["missing"] == COMBINED_MISSING  # combined has no times, hosts or geoip columns


def test_top_lists_exact_when_they_fit(sample: list[pa.RecordBatch]) -> None:
    d = panels_of(sample, top=15)
    df = frame(sample)
    assert d["exact"]["top_lists"] is True
    assert set(d["exact"]["top_lists_max_undercount"].values()) == {0}
    assert d["top_paths"] == exact_top(df["path"], 15)
    assert d["not_found"] == exact_top(df.loc[df["status"] == 404, "path"], 15)
    assert d["user_agents"] == exact_top(df["user_agent"], 15)
    assert d["bots"] == exact_top(df.loc[df["is_bot"], "user_agent"], 15)
    assert d["referrers"] == exact_top(df["referrer"], 15)
    assert d["ips"] == exact_top(df["ip"], 15)
    assert len(d["ips"]) == 15 and len(d["status"]) > 1


def check_visitors(batches: list[pa.RecordBatch]) -> None:
    d = panels_of(batches)
    df = frame(batches)
    # GoAccess's visitor: ip + date + agent. A null agent counts as one agent ("" here).
    v = df.assign(date=df["sec"] // 86400, ua=df["user_agent"].fillna(""))[["ip", "date", "ua", "sec"]]
    assert d["exact"]["visitors"] is True and d["exact"]["visitors_rse"] == 0.0
    assert d["unique_visitors"] == len(v[["ip", "date", "ua"]].drop_duplicates())
    w = d["bucket_s"]
    per = v.assign(b=v["sec"] // w).drop_duplicates(["b", "ip", "date", "ua"]).groupby("b").size()
    keys = range(df["sec"].min() // w, df["sec"].max() // w + 1)
    assert d["over_time"]["visitors"] == [int(per.get(k, 0)) for k in keys]


def test_visitors_exact_when_small(sample: list[pa.RecordBatch]) -> None:
    check_visitors(sample)


@pytest.mark.parametrize("days", [0.1, 3, 40])
def test_visitors_count_each_date_and_agent(days: float) -> None:
    # Few ips, four agents, over hours and days: the same ip comes back with another agent, later the
    # same day and on other days; each (ip, date, agent) is one visitor.
    batches = chunks(log_lines(6000, datetime(2026, 2, 1, 22, tzinfo=UTC), days * 86400 / 5999, ips=60), 3)
    check_visitors(batches)


def sketch_case() -> tuple[list[pa.RecordBatch], pd.DataFrame]:
    batches = chunks(log_lines(20_000, datetime(2026, 1, 1, tzinfo=UTC), 0.5, ips=5000, paths=3000), 8)
    return batches, frame(batches)


def check_bounds(d: dict[str, Any], df: pd.DataFrame, panel: str, column: str) -> None:
    """A cut list: every shown count brackets the truth, the rows shown are the true top ones, each rank
    range holds the true rank, and no value left out has more hits than the list says."""
    delta = d["exact"]["top_lists_max_undercount"][panel]
    others = d["exact"]["top_lists_others_at_most"][panel]
    truth = Counter(df[column].dropna())
    ranked = sorted(truth, key=lambda k: (-truth[k], k.encode()))
    shown = [e[0] for e in d[panel]]
    assert set(shown) == set(ranked[: len(shown)])  # certainly the top ones
    for value, low, high, best, worst in d[panel]:
        assert low <= truth[value] <= high == low + delta
        assert best <= ranked.index(value) + 1 <= worst
    assert all(truth[k] <= others for k in ranked[len(shown) :])


def test_top_lists_over_the_budget_are_bounded_and_never_misleading() -> None:
    batches, df = sketch_case()
    d = panels_of(batches, top=10, budget=2 << 10)
    assert d["exact"]["top_lists"] is False
    under = d["exact"]["top_lists_max_undercount"]
    for panel, column in (("ips", "ip"), ("top_paths", "path"), ("not_found", "path")):
        if panel == "not_found":
            df = df[df["status"] == 404]
        check_bounds(d, df, panel, column)
    assert under["ips"] > 0 and under["top_paths"] > 0
    assert 0 < len(d["top_paths"]) <= 10  # the head of a Zipf list is certain, its tail may not be
    assert under["user_agents"] == 0 and len(d["user_agents"]) == 4  # small lists stay exact


@pytest.mark.parametrize("seed", range(6))
def test_cut_lists_hold_their_bounds_in_any_merge_order(seed: int) -> None:
    batches, df = sketch_case()
    random.Random(seed).shuffle(batches)
    d = panels_of(batches, top=20, budget=[1500, 2 << 10, 3 << 10][seed % 3])
    check_bounds(d, df, "ips", "ip")
    check_bounds(d, df, "top_paths", "path")


def test_a_flat_list_over_the_budget_shows_no_row_rather_than_wrong_ones() -> None:
    """Every value 1 or 2 hits, far more values than the budget: the sketch cannot tell the top, so it
    shows none (a 1-hit row above unseen 2-hit values is what a naive sketch would show)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    t = f"{start:%d/%b/%Y:%H:%M:%S} +0000"
    ips = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in [*range(6000), *range(0, 6000, 7)]]
    lines = [f'{ip} - - [{t}] "GET / HTTP/1.1" 200 1 "-" "a"' for ip in ips]
    batches = chunks(("\n".join(lines) + "\n").encode(), 6)
    d = panels_of(batches, top=20, budget=16 << 10)
    assert d["exact"]["top_lists_max_undercount"]["ips"] > 0
    check_bounds(d, frame(batches), "ips", "ip")
    assert d["ips"] == [] and d["exact"]["top_lists_others_at_most"]["ips"] >= 2
    exact = panels_of(batches, top=20)  # with the default budget: exact, the 2-hit values first
    assert exact["ips"][:3] == [
        ["10.0.0.0", 2, 2, 1, 1],
        ["10.0.0.105", 2, 2, 2, 2],
        ["10.0.0.112", 2, 2, 3, 3],
    ]


def test_budget_follows_the_config() -> None:
    assert budget_for(1536 << 10) == 48 << 20  # laptop.toml
    assert budget_for(64 << 10) == BUDGET_MIN and budget_for(1 << 30) == BUDGET_MAX
    with pytest.raises(ValueError, match="budget"):
        Panels(budget=10)


def test_unique_visitors_within_hll_error() -> None:
    n = 3 * RUN_EXACT + 12_345  # past the exact set: the HyperLogLog answers
    rows = 4 * n
    rng = np.random.default_rng(3)
    ids = rng.integers(0, n, rows)
    ids[:n] = np.arange(n)  # every visitor at least once
    ts = pa.array(np.full(rows, 1_700_000_000_000_000), pa.timestamp("us", tz="UTC"))
    ip = pa.array([f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" for i in ids.tolist()])
    ua = pa.array(["agent"] * rows)
    batch = pa.RecordBatch.from_pydict({"ts": ts, "ip": ip, "user_agent": ua})
    d = panels_of([batch.slice(i, 10_000) for i in range(0, rows, 10_000)])
    rse = 1.04 / math.sqrt(1 << RUN_P)
    assert d["exact"]["visitors"] is False and d["exact"]["visitors_rse"] > 0
    assert abs(d["unique_visitors"] - n) <= 4 * rse * n
    (in_bucket,) = d["over_time"]["visitors"]  # one minute: one bucket, an HLL of 2**12 registers
    assert abs(in_bucket - n) <= 4 * d["exact"]["visitors_rse"] * n


@pytest.mark.parametrize("n", [50, 2_000, 40_000, 300_000])
def test_hll_estimate_across_the_range(n: int) -> None:
    hashes = np.random.default_rng(n).integers(0, 2**64, n, dtype=np.uint64)
    sketch = _Distinct(RUN_P, 0)  # no exact mode
    sketch.add(hashes)
    assert abs(sketch.count() - n) <= 4 * 1.04 / math.sqrt(1 << RUN_P) * n + 1


def test_merge_order_does_not_matter(sample: list[pa.RecordBatch]) -> None:
    """Exact lists are sums: any order of the partials gives the same panels."""
    partials = [summarize(b) for b in sample]
    one, two = Panels(top=5), Panels(top=5)
    for x in partials:
        one.add(x)
    for x in reversed(partials):
        two.add(x)
    assert one.to_dict() == two.to_dict()


def test_missing_columns_are_reported(sample: list[pa.RecordBatch]) -> None:
    b = sample[0].drop_columns(["ts", "referrer"])
    d = panels_of([b])
    gone = ["over_time", "unique_visitors", "referrers", "hours", "latency", "slow_paths", "vhosts"]
    more = ["referring_sites", "daily", "ips_by_time", "path_latency", "browsers", "operating_systems"]
    more += ["devices", "countries", "networks"]
    assert d["missing"] == [*gone, *more]
    assert d["over_time"] == {"t": [], "requests": [], "visitors": []} and d["first_ts"] is None
    assert d["referrers"] == [] and d["rows"] == b.num_rows and d["top_paths"]
    only_ip = panels_of([sample[0].select(["ip", "is_bot"])])
    assert set(only_ip["missing"]) == set(PANELS) - {"ips", "bot_share"}
    assert Panels().to_dict()["missing"] == list(PANELS)  # nothing seen: no column allows anything


def test_empty_batch() -> None:
    d = panels_of([pa.RecordBatch.from_pylist([], SCHEMA)])
    assert d["rows"] == 0 and d["missing"] == COMBINED_MISSING and d["unique_visitors"] == 0
    assert d["status"] == [] and d["top_paths"] == [] and d["bot_share"] == 0.0 and d["bytes_sent"] == 0
    assert d["first_ts"] is None and d["over_time"]["t"] == []
    json.dumps(d)


@pytest.mark.parametrize(("days", "width"), [(0.5, 60), (3, 300), (30, 3600), (200, 21600), (2 * 365, 86400)])
def test_buckets_coarsen_over_a_long_range(days: float, width: int) -> None:
    start = datetime(2025, 3, 1, 7, tzinfo=UTC)
    batches = chunks(log_lines(3000, start, days * 86400 / 2999), 4)
    forward = panels_of(batches)
    assert forward["bucket_s"] == width
    assert panels_of(batches[::-1]) == forward  # coarsening merges whole buckets: order-free
    df = frame(batches)
    per = df.groupby(df["sec"] // width).size()
    keys = range(df["sec"].min() // width, df["sec"].max() // width + 1)
    assert len(forward["over_time"]["t"]) == len(keys) <= MAX_BUCKETS
    assert forward["over_time"]["requests"] == [int(per.get(k, 0)) for k in keys]
    assert sum(forward["over_time"]["visitors"]) >= len(keys) > 1


def test_week_buckets_start_on_monday() -> None:
    batches = chunks(log_lines(2000, datetime(2001, 1, 3, tzinfo=UTC), 20 * 365 * 86400 / 1999), 2)
    d = panels_of(batches)
    assert d["bucket_s"] % 604800 == 0
    assert {datetime.fromisoformat(t).weekday() for t in d["over_time"]["t"]} == {0}
    assert sum(d["over_time"]["requests"]) == d["rows"]


def test_add_is_thread_safe() -> None:
    batches = chunks(log_lines(16_000, datetime(2026, 5, 1, tzinfo=UTC), 3.0, ips=4000), 32)
    partials = [summarize(b) for b in batches]
    serial = Panels()
    for x in partials:
        serial.add(x)
    shared = Panels()

    def feed(mine: list[bytes]) -> None:
        for x in mine:
            shared.add(x)

    threads = [threading.Thread(target=feed, args=(partials[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got, want = shared.to_dict(), serial.to_dict()
    assert got == want and got["rows"] == 16_000 and got["exact"]["top_lists"]


def test_invalid_utf8_cannot_crash() -> None:
    bad = [b"/ok", b"/\xff\xfe", b"\xc3", b"/\xe2\x82"]
    # Arrow string arrays are not checked when built from buffers: a transform could hand these over.
    as_string = pa.array(bad, pa.binary()).view(pa.string())
    batch = pa.RecordBatch.from_pydict(
        {"path": as_string, "user_agent": as_string, "referrer": as_string, "ip": as_string}
    )
    d = panels_of([batch])
    assert sorted(e[0] for e in d["top_paths"]) == sorted(b.decode("utf-8", "replace") for b in bad)
    json.dumps(d)


def test_other_string_types_count_the_same(sample: list[pa.RecordBatch]) -> None:
    b = sample[1]
    want = panels_of([b])
    for to in (pa.large_string(), pa.dictionary(pa.int32(), pa.string())):
        cols = {
            n: b.column(n).cast(to) if pa.types.is_string(b.column(n).type) else b.column(n)
            for n in b.schema.names
        }
        assert panels_of([pa.RecordBatch.from_pydict(cols)]) == want


def test_hash_is_a_function_of_the_value_in_any_process() -> None:
    values = [b"", b"a", b"1.2.3.4", b"abcdefgh", b"abcdefghi", b"x" * 64, b"x" * 65, b"y" * 300, b"a\x00"]
    arr = pa.array(values, pa.binary())
    h = hash_binary(arr).tolist()
    assert len(set(h)) == len(values)
    shuffled = pa.array([b"pad", *values[::-1]], pa.binary()).slice(1)  # other offsets and neighbours
    assert hash_binary(shuffled).tolist() == h[::-1]
    code = (
        "import pyarrow as pa, sys; from pipeline.report.panels import hash_binary; "
        f"print(hash_binary(pa.array({values!r}, pa.binary())).tolist())"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(other.stdout) == h  # workers are other processes: no per-process salt


def test_partial_is_small_bytes(sample: list[pa.RecordBatch]) -> None:
    data = (SAMPLE / "access-000.log").read_bytes()
    x = summarize(sample[0])
    assert isinstance(x, bytes) and pickle.loads(pickle.dumps(x)) == x
    assert len(x) < len(data) // 3 // 2
    assert summarize(sample[0]) == x  # deterministic


def test_pairs_exact_limit_falls_back_to_hll() -> None:
    n = PAIRS_EXACT + 5000
    ts = pa.array(np.full(n, 1_700_000_000_000_000), pa.timestamp("us", tz="UTC"))
    ip = pa.array([f"ip{i}" for i in range(n)])
    d = panels_of([pa.RecordBatch.from_pydict({"ts": ts, "ip": ip, "user_agent": pa.array(["a"] * n)})])
    assert d["exact"]["visitors"] is False
    assert abs(d["over_time"]["visitors"][0] - n) <= 4 * d["exact"]["visitors_rse"] * n


@pytest.mark.timeout(60)
def test_panels_keep_pandas_out_of_the_workers_and_the_main_process() -> None:
    # Arrow's to_numpy and its numpy conversions import pandas: a fifth of a second in every worker
    code = f"""
import sys
from pipeline.formats import get_format
from pipeline.report.panels import Panels, summarize
data = open({str(SAMPLE / "access-000.log")!r}, "rb").read()
panels = Panels()
panels.add(summarize(get_format("combined").parse(data, 1, 1 << 20, 4096).batch))
print(panels.to_dict()["rows"] > 0, "pandas" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=50
    )
    assert done.stdout.split() == ["True", "False"]


# --- through a real run -------------------------------------------------------------------------------

TOP_SQL = {
    "top_paths": ("path", "true"),
    "not_found": ("path", "status = 404"),
    "user_agents": ("user_agent", "true"),
    "bots": ("user_agent", "is_bot"),
    "referrers": ("referrer", "true"),
    "ips": ("ip", "true"),
}


def duckdb_tops(out: Path, top: int) -> dict[str, list[list[Any]]]:
    """The independent reference: DuckDB over the run's Parquet output, ``GROUP BY value ORDER BY count
    DESC, value`` (DuckDB compares strings by their UTF-8 bytes, the panels' tie order)."""
    import duckdb

    files = f"{out}/**/*.parquet"
    lists = {}
    with duckdb.connect() as con:
        for name, (col, where) in TOP_SQL.items():
            rows = con.execute(
                f"SELECT {col}, count(*) AS n FROM read_parquet('{files}', hive_partitioning = false) "
                f"WHERE {col} IS NOT NULL AND {where} GROUP BY {col} ORDER BY n DESC, {col} LIMIT {top}"
            ).fetchall()
            lists[name] = [[v, n, n, i + 1, i + 1] for i, (v, n) in enumerate(rows)]
    return lists


def skewed_log(n: int, seed: int) -> bytes:
    """Real-looking lines with Zipf-like ips, paths, agents and referrers, many of them tied."""
    rng = np.random.default_rng(seed)
    agents = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/132.0",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "curl/8.5.0", "-", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    ]  # fmt: skip
    start = datetime(2026, 3, 1, tzinfo=UTC)
    lines = []
    for i, (a, b, c, r) in enumerate(rng.zipf(1.6, (n, 4)).tolist()):
        ts = start + timedelta(seconds=3 * i)
        t = f"{ts:%d}/{MON[ts.month - 1]}/{ts:%Y:%H:%M:%S} +0000"
        status = 404 if (a + b) % 7 == 0 else 200
        ref = "-" if r == 1 else f"https://ref{r % 50}.example/"
        agent = agents[c % len(agents)]
        lines.append(
            f'10.1.{a % 200}.{b % 250} - - [{t}] "GET /p/{b % 5000} HTTP/1.1" {status} {a} "{ref}" "{agent}"'
        )
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("data", ["sample", "zipf"])
def test_a_real_run_lists_equal_duckdb_and_a_serial_run(data: str, tmp_path: Path) -> None:
    if data == "sample":
        inputs = SAMPLE
    else:
        inputs = tmp_path / "logs"
        inputs.mkdir()
        (inputs / "access.log").write_bytes(skewed_log(10_000, seed=3))
    parallel = run_panels(inputs, tmp_path / "process", "process")
    serial = run_panels(inputs, tmp_path / "inline", "inline")
    reference = duckdb_tops(tmp_path / "process", 20)
    assert parallel["exact"]["top_lists"] is True
    for name in TOP_SQL:
        assert parallel[name] == reference[name], name
        assert serial[name] == parallel[name], name
    assert parallel == serial  # every panel, not only the lists
    tied = [e[1] for e in parallel["ips"]]
    assert len(tied) == 20 and len(set(tied)) < len(tied)  # ties were ordered, and as DuckDB orders them


def test_memory_stays_within_the_budget_whatever_the_values() -> None:
    """Every value distinct and long (the worst input): the summaries never hold more than the budget,
    the buffered partials at most about as much again, and the lists say how inexact they became."""
    budget = 64 << 10
    p = Panels(top=20, budget=budget)
    largest = 0
    for c in range(40):
        ts, pad = "[01/Nov/2026:10:00:00 +0000]", "x" * 200
        rows = [f'10.0.{c}.{i} - - {ts} "GET /{c}/{i}/{pad} HTTP/1.1" 404 1 "-" "-"' for i in range(200)]
        partial = summarize(parse(("\n".join(rows) + "\n").encode()))
        largest = max(largest, len(partial))
        p.add(partial)
        tops = p._tops.values()
        assert sum(t.nbytes for t in tops) <= budget
        assert sum(t.pending_bytes for t in tops) <= budget + len(p._tops) * (budget // 32) + largest
    d = p.to_dict()
    assert d["exact"]["top_lists_max_undercount"]["top_paths"] > 0 and d["top_paths"] == []
    assert d["rows"] == 8000


# --- the analyst's panels: request time, hours, methods, protocols, hosts, sites, bytes per path -------

SITES = [
    "-", "", "https://www.Example.com/a?b", "http://user:pw@Shop.example:8080/x", "https://t.co/abc",
    "android-app://com.google.android.gm/", "ftp://files.example/x", "not a url", "https://t.co",
]  # fmt: skip


def analyst_batches(n: int, seed: int, chunks_: int) -> list[pa.RecordBatch]:
    """Rows with every analyst column, skewed values, nulls and unusable request times, cut in chunks."""
    rng = np.random.default_rng(seed)
    z = rng.zipf(1.5, (n, 4))
    ts = 1_780_000_000_000_000 + np.sort(rng.integers(0, 3 * 86_400_000_000, n))
    rt = rng.integers(0, 5000, n) / 1000.0  # whole milliseconds: the microsecond sums are exact
    rt[rng.random(n) < 0.02] = np.nan
    rt[rng.random(n) < 0.02] = -1.0
    rt[rng.random(n) < 0.01] = 0.0000004  # below the histogram's smallest bucket
    rt[rng.random(n) < 0.005] = 2e6  # over 11 days: left out as unusable, as inf is
    rt[rng.random(n) < 0.005] = np.inf
    methods = ["GET", "POST", "HEAD", "PUT", "\u00e9\u00e9", "get"]
    table = {
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "path": pa.array([None if a == 7 else f"/p/{a % 300}" for a in z[:, 0].tolist()], pa.string()),
        "method": pa.array([methods[b % len(methods)] for b in z[:, 1].tolist()], pa.string()),
        "protocol": pa.array([None if c == 5 else f"HTTP/1.{c % 2}" for c in z[:, 2].tolist()], pa.string()),
        "referrer": pa.array([SITES[d % len(SITES)] for d in z[:, 3].tolist()], pa.string()),
        "host": pa.array([f"h{(a * d) % 40}.example" for a, d in zip(z[:, 0], z[:, 3], strict=True)]),
        "bytes": pa.array([None if b == 3 else int(b) * 100 for b in z[:, 1].tolist()], pa.int64()),
        "request_time": pa.array(rt, pa.float64(), mask=rng.random(n) < 0.03),
    }
    whole = pa.RecordBatch.from_pydict(table)
    cuts = np.linspace(0, n, chunks_ + 1).astype(int).tolist()
    return [whole.slice(a, b - a) for a, b in itertools.pairwise(cuts)]


def merged(batches: list[pa.RecordBatch], order_seed: int, top: int = 20) -> dict[str, Any]:
    parts = [summarize(b) for b in batches]
    random.Random(order_seed).shuffle(parts)
    p = Panels(top=top)
    for x in parts:
        p.add(x)
    return p.to_dict()


def duckdb_analyst(batches: list[pa.RecordBatch], top: int) -> dict[str, Any]:
    """The reference: DuckDB over the same rows (referring sites from urllib's hostname)."""
    import duckdb

    rows = pa.Table.from_batches(batches)
    site = [urlsplit(r).hostname if r else None for r in rows.column("referrer").to_pylist()]
    sites = pa.table({"site": pa.array([s or None for s in site], pa.string())})  # noqa: F841
    ok = "request_time IS NOT NULL AND isfinite(request_time) AND request_time BETWEEN 0 AND 1e6"
    ref: dict[str, Any] = {}
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        hours = dict(con.execute("SELECT hour(ts), count(*) FROM rows GROUP BY 1").fetchall())
        ref["hours"] = [hours.get(h, 0) for h in range(24)]
        for name, col in (("methods", "method"), ("protocols", "protocol")):
            q = f"SELECT {col}, count(*) n FROM rows WHERE {col} IS NOT NULL GROUP BY 1 ORDER BY n DESC, 1"
            ref[name] = [list(r) for r in con.execute(q).fetchall()]
        for name, col, src in (("vhosts", "host", "rows"), ("referring_sites", "site", "sites")):
            q = f"SELECT {col}, count(*) n FROM {src} WHERE {col} IS NOT NULL GROUP BY 1 ORDER BY n DESC, 1"
            got = con.execute(q + f" LIMIT {top}").fetchall()
            ref[name] = [[v, n, n, i + 1, i + 1] for i, (v, n) in enumerate(got)]
        for name, weight, where in (
            ("slow_paths", "sum(round(request_time * 1e6))::BIGINT", ok),
            ("path_bytes", "sum(bytes)", "bytes IS NOT NULL"),
        ):
            q = (
                f"SELECT path, {weight} w, count(*) FROM rows WHERE path IS NOT NULL AND {where} "
                f"GROUP BY 1 HAVING w > 0 ORDER BY w DESC, path LIMIT {top}"
            )
            got = con.execute(q).fetchall()
            ref[name] = [[v, w, w, i + 1, i + 1, c] for i, (v, w, c) in enumerate(got)]
        q = "SELECT count(*), min(request_time), max(request_time), avg(request_time), "
        q += f"quantile_disc(request_time, [0.5, 0.9, 0.99]) FROM rows WHERE {ok}"
        n, lo, hi, mean, qs = con.execute(q).fetchone()  # type: ignore[misc]
        bad = con.execute(f"SELECT count(*) FROM rows WHERE request_time IS NOT NULL AND NOT ({ok})")
        ref["latency"] = {"count": n, "min": lo, "max": hi, "mean": mean, "q": qs, "invalid": bad.fetchone()}
    return ref


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_analyst_panels_equal_duckdb_in_any_merge_order(seed: int) -> None:
    batches = analyst_batches(20_000, seed, 7)
    ref = duckdb_analyst(batches, 15)
    first = merged(batches, seed, top=15)
    analyst = ("hours", "methods", "protocols", "vhosts", "referring_sites", "slow_paths", "path_bytes")
    assert not {*analyst, "latency"} & set(first["missing"]) and first["exact"]["top_lists"] is True
    for name in analyst:
        assert first[name] == ref[name], name
    assert first["vhosts_from"] == ["host"]
    lat, want = first["latency"], ref["latency"]
    assert lat["count"] == want["count"] and lat["invalid"] == want["invalid"][0] > 0
    assert lat["min"] == want["min"] and lat["max"] == want["max"]
    assert lat["mean"] == pytest.approx(want["mean"], abs=1e-6)  # whole microseconds summed
    for (key, got), exact in zip(lat["quantiles"].items(), want["q"], strict=True):
        assert abs(got - exact) <= lat["relative_error"] * exact + 1e-6, key
    for order in (seed + 10, seed + 20):  # every merge order: the same panels
        assert merged(batches, order, top=15) == first


def test_quantiles_hold_the_relative_error_across_magnitudes() -> None:
    rng = np.random.default_rng(5)
    seconds = np.exp(rng.uniform(np.log(2e-6), np.log(5e5), 50_000))
    batch = pa.RecordBatch.from_pydict({"request_time": pa.array(seconds)})
    lat = panels_of([batch.slice(0, 20_000), batch.slice(20_000)])["latency"]
    exact = np.sort(seconds)
    for q in (0.5, 0.9, 0.99):
        want = exact[math.ceil(q * len(exact)) - 1]
        assert abs(lat["quantiles"][f"p{round(q * 100)}"] - want) <= 0.01 * want
    assert lat["max"] == exact[-1] and lat["min"] == exact[0]


def test_analyst_panels_are_absent_without_their_columns() -> None:
    (whole,) = analyst_batches(2000, 4, 1)
    before = set(panels_of([whole])["missing"])
    for column, gone in (
        ("request_time", {"latency", "slow_paths", "path_latency"}),
        ("host", {"vhosts"}),
        ("method", {"methods"}),
        ("protocol", {"protocols"}),
        ("bytes", {"path_bytes", "bytes_sent"}),
        ("path", {"top_paths", "slow_paths", "path_bytes", "static_files", "path_latency"}),
        ("referrer", {"referrers", "referring_sites"}),
        ("ts", {"hours", "over_time", "daily"}),
    ):
        d = panels_of([whole.drop_columns([column])])
        assert set(d["missing"]) == before | gone, column
    d = panels_of([whole.drop_columns(["request_time"])])
    assert d["latency"]["count"] == 0 and d["slow_paths"] == []
    alias = panels_of(
        [whole.rename_columns(["server_name" if c == "host" else c for c in whole.schema.names])]
    )
    assert alias["vhosts_from"] == ["server_name"] and alias["vhosts"] == panels_of([whole])["vhosts"]


def test_methods_beyond_the_cap_are_other() -> None:
    n = CAP + 40
    batch = pa.RecordBatch.from_pydict({"method": pa.array(["GET"] * 5 + [f"M{i}" for i in range(n)] * 2)})
    # a chunk sends its CAP most frequent values; the merge keeps the first CAP distinct values it sees
    d = panels_of([batch.slice(0, n), batch.slice(n)])
    assert len(d["methods"]) == CAP + 1 and d["methods"][-1][0] == "other"
    assert sum(h for _, h in d["methods"]) == batch.num_rows and d["exact"]["capped_at"] == CAP
    assert d["methods"][0] == ["GET", 5]


NGINX_TIMED = (
    'log_format timed \'$host $remote_addr - $remote_user [$time_local] "$request" $status '
    '$body_bytes_sent "$http_referer" "$http_user_agent" $request_time\';'
)


def timed_log(n: int, seed: int) -> bytes:
    """nginx lines with a host and a request time (some "-"), skewed paths, methods and referrers."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    methods = ["GET", "GET", "POST", "HEAD", "PROPFIND"]
    lines = []
    for i, (a, b, c) in enumerate(rng.zipf(1.6, (n, 3)).tolist()):
        ts = start + timedelta(seconds=37 * i)
        t = f"{ts:%d}/{MON[ts.month - 1]}/{ts:%Y:%H:%M:%S} +0000"
        ref = "-" if c == 1 else f"https://Ref{c % 30}.example:8443/q?x={a}"
        rt = "-" if b == 4 else f"{(a * 37 % 2000) / 1000:.3f}"
        proto = "HTTP/2.0" if a % 3 else "HTTP/1.1"
        lines.append(
            f'site{b % 6}.example 10.2.{a % 200}.{c % 250} - - [{t}] "{methods[b % 5]} /p/{a % 900} {proto}" '
            f'200 {a * 10} "{ref}" "curl/8.5.0" {rt}'
        )
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_real_run_of_the_analyst_panels_equals_a_serial_run(tmp_path: Path) -> None:
    inputs = tmp_path / "logs"
    inputs.mkdir()
    (inputs / "access.log").write_bytes(timed_log(12_000, seed=9))
    fmt = {"nginx": NGINX_TIMED}
    parallel = run_panels(inputs, tmp_path / "process", "process", fmt)
    serial = run_panels(inputs, tmp_path / "inline", "inline", fmt)
    assert parallel == serial
    assert not {"latency", "slow_paths", "vhosts", "methods", "protocols", "hours"} & set(parallel["missing"])
    assert parallel["latency"]["count"] > 10_000 and parallel["vhosts_from"] == ["host"]
    assert [m for m, _ in parallel["methods"]] == ["GET", "POST", "HEAD", "PROPFIND"]
    sites = [s for s, *_ in parallel["referring_sites"]]
    assert len(sites) == 20 and set(sites) <= {f"ref{k}.example" for k in range(30)}  # lowered, no port
    assert sum(parallel["hours"]) == parallel["rows"] == 12_000


@pytest.mark.parametrize("n", [20_000, 50_000])
def test_visitor_estimates_never_exceed_the_requests_they_count(n: int) -> None:
    """Past the exact sets, visitors are HyperLogLog estimates, which can come out above the truth; a
    visitor is at least one request, so an estimate is clamped to the requests. Every row here is its own
    visitor, all within one minute: unclamped, the run's estimate of 20,000 is 20,076 and the minute's of
    50,000 is 50,082."""
    ips = pa.array([f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n)], pa.string())
    ts = pa.array(np.arange(n, dtype=np.int64) + 1_800_000_000_000_000, pa.timestamp("us", tz="UTC"))
    panels = Panels()
    panels.add(summarize(pa.record_batch({"ts": ts, "ip": ips, "user_agent": pa.array(["a"] * n)})))
    got = panels.to_dict()
    assert not got["exact"]["visitors"]
    assert got["unique_visitors"] <= n and got["over_time"]["requests"] == [n]
    assert got["over_time"]["visitors"][0] <= n
    assert n in (got["unique_visitors"], got["over_time"]["visitors"][0])  # a clamp was needed
