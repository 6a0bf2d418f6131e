"""Compiled formats run by the vectorised engine: against their own
slow path, on the yardstick's upstream and JSON logs, and on hostile bytes."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.formats import engine, numbers, vector
from pipeline.formats.engine import PlanFormat
from pipeline.formats.spec import BUILTINS, builtin, compile_nginx, compile_template, plan_for
from tests.conftest import JSON_FORMAT, batch_rows, generated, parse_plan, plan_reference, reject_list


def chunk(lines: list[bytes]) -> bytes:
    return b"".join(x + b"\n" for x in lines)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_fast_path_agrees_with_slow_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = builtin(name)
    rng = random.Random(5)
    lines = [sample_line(name, rng, k) for k in range(300)]
    fast = parse_plan(plan, chunk(lines), 1)
    assert fast.batch.num_rows == len(lines), fast.rejects.reasons[:3]
    monkeypatch.setattr(engine, "fast_candidates", lambda a, s, e, c: np.zeros(len(s), dtype=bool))
    slow = parse_plan(plan, chunk(lines), 1)
    assert slow.batch.equals(fast.batch)


def sample_line(name: str, rng: random.Random, k: int) -> bytes:
    """A valid line of a built-in format (every field filled in, some "-")."""
    ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{k % 250 + 1}"
    when = f"{1 + k % 28:02d}/Nov/2026:{k % 24:02d}:{k % 60:02d}:07 +0100"
    req = rng.choice(["GET /a?b=1 HTTP/1.1", "POST /x HTTP/2.0", "-"])
    ref = rng.choice(["-", "https://example.com/"])
    agent = rng.choice(["curl/8.5.0", "Mozilla/5.0 (X11)", "-"])
    size = rng.choice(["-", str(k * 37)])
    base = f'{ip} - - [{when}] "{req}" {200 + k % 3} {size}'
    if name == "common":
        return base.encode()
    if name == "vhost_combined":  # %O, the bytes sent, is never "-"
        return f'example.org:443 {ip} - - [{when}] "{req}" 200 {k} "{ref}" "{agent}"'.encode()
    line = f'{base} "{ref}" "{agent}"'
    if name == "main":
        return f'{line} "{rng.choice(["-", "1.2.3.4, 5.6.7.8"])}"'.encode()
    if name == "upstream_time":
        return f'{line} rt=0.{k:03d} uct="-" uht="0.001, 0.002" urt="0.{k:03d}"'.encode()
    return line.encode()


def test_upstream_time_columns_and_totals(tmp_path: Path) -> None:
    data = generated(tmp_path, "upstream")
    plan = builtin("upstream_time")
    result = parse_plan(plan, data, 1)
    lines = data.count(b"\n")
    assert result.batch.num_rows + len(result.rejects) == lines
    assert len(result.rejects) < 0.02 * lines  # the generator's deliberately bad lines
    table = pa.Table.from_batches([result.batch])
    for name in ("request_time", "upstream_connect_time", "upstream_header_time", "upstream_response_time"):
        assert table.schema.field(name).type == pa.float64()
    # every value against the line it came from, parsed independently
    good = [ln for ln in data.split(b"\n") if ln and b" rt=" in ln and ln[:1].isdigit()]
    by_time: dict[float, list[float | None]] = {}
    for ln in good:
        rt = float(ln.split(b" rt=")[1].split(b" ")[0])
        urt_text = ln.rsplit(b'urt="', 1)[1].rstrip(b'"')
        urt = None if urt_text == b"-" else sum(float(x) for x in urt_text.split(b", "))
        by_time.setdefault(rt, []).append(urt)
    got = table.select(["request_time", "upstream_response_time"]).to_pylist()
    for row in got:
        assert row["request_time"] in by_time
        if row["upstream_response_time"] is not None:
            assert any(
                u is not None and abs(u - row["upstream_response_time"]) < 1e-9
                for u in by_time[row["request_time"]]
            )
    assert any(row["upstream_response_time"] is None for row in got)  # "-": null


def test_json_lines_from_an_escape_json_template(tmp_path: Path) -> None:
    data = generated(tmp_path, "json", bad=0)
    plan = plan_for({"nginx": JSON_FORMAT})
    assert plan.escape == "json"
    result = parse_plan(plan, data, 1)
    assert len(result.rejects) == 0, result.rejects.raw[:2]
    table = pa.Table.from_batches([result.batch])
    records = [json.loads(ln) for ln in data.splitlines()]
    rows = table.to_pylist()
    by_ip: dict[str, dict[str, object]] = {r["remote_addr"]: r for r in records}
    for row in rows:
        rec = by_ip[row["ip"]]
        assert row["status"] == int(str(rec["status"]))
        assert row["request_time"] == pytest.approx(float(str(rec["request_time"])))
        assert row["user"] == (rec["remote_user"] or None)
        assert row["user_agent"] == rec["http_user_agent"]  # kept as logged, "" included


def test_json_escapes_are_decoded() -> None:
    plan = compile_nginx('escape=json \'{"t":"$time_local","ua":"$http_user_agent","r":"$request"}\'')
    lines = [
        b'{"t":"01/Nov/2026:10:00:00 +0000","ua":"say \\"hi\\" \\\\ \\u00e9","r":"GET / HTTP/1.1"}',
        b'{"t":"01/Nov/2026:10:00:00 +0000","ua":"plain","r":"GET / HTTP/1.1"}',
        b'{"t":"01/Nov/2026:10:00:00 +0000","ua":"bad \\q escape","r":"GET / HTTP/1.1"}',
    ]
    result = parse_plan(plan, chunk(lines), 1)
    assert result.batch.column("user_agent").to_pylist() == ['say "hi" \\ \u00e9', "plain"]
    assert result.rejects.lines == [3]


def test_lists_after_upstream_retries_are_summed() -> None:
    plan = compile_nginx(
        '[$time_local] "$request" $upstream_response_length $upstream_response_time $upstream_addr'
    )
    lines = [
        b'[01/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 10 0.5 10.0.0.1:80',
        b'[01/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 10,_20 0.5 a',
        b'[01/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" - - -',
        b'[01/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 99999999999999999999 1 a',
    ]
    lines[1] = lines[1].replace(b"10,_20 0.5 a", b"10, 20 0.5, 0.25 10.0.0.1:80, 10.0.0.2:80")
    result = parse_plan(plan, chunk(lines), 1)
    rows = result.batch.to_pylist()
    assert [r["upstream_response_length"] for r in rows] == [10, 30, None]
    assert [r["upstream_response_time"] for r in rows] == [0.5, 0.75, None]
    assert [r["upstream_addr"] for r in rows] == ["10.0.0.1:80", "10.0.0.1:80, 10.0.0.2:80", None]
    assert result.rejects.reasons == ["out-of-range number"]


def test_time_iso8601_and_msec() -> None:
    iso = compile_nginx("$time_iso8601 $status")
    result = parse_plan(
        iso,
        chunk([b"2026-11-01T23:30:00-01:00 200", b"2026-02-30T00:00:00+00:00 200", b"2026-11-01T10:00 200"]),
        1,
    )
    assert [str(t) for t in result.batch.column("ts").to_pylist()] == ["2026-11-02 00:30:00+00:00"]
    assert result.partitions == [("2026-11-02", 0, 1)]
    assert result.rejects.reasons == ["bad timestamp", "bad timestamp"]
    msec = compile_nginx("$msec $status")
    result = parse_plan(msec, chunk([b"1730455200.123 200", b"abc 200"]), 1)
    assert [t.isoformat() for t in result.batch.column("ts").to_pylist()] == [
        "2024-11-01T10:00:00.123000+00:00"
    ]
    assert result.rejects.reasons == ["bad timestamp"]


_PLANS = [builtin(name) for name in sorted(BUILTINS)] + [plan_for({"nginx": JSON_FORMAT})]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=st.sampled_from(_PLANS), lines=st.lists(st.binary(max_size=120), min_size=1, max_size=20))
def test_arbitrary_bytes_never_raise_and_every_line_is_accounted(plan: object, lines: list[bytes]) -> None:
    data = chunk([ln.replace(b"\n", b" ") for ln in lines])
    result = parse_plan(plan, data, 1)  # type: ignore[arg-type]
    assert result.batch.num_rows + len(result.rejects) == len(lines)
    assert sum(length for _, _, length in result.partitions) == result.batch.num_rows


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(BUILTINS)),
    seed=st.integers(0, 10_000),
    cut=st.integers(0, 200),
    junk=st.binary(max_size=6),
)
def test_mutated_valid_lines_are_rows_or_rejects(name: str, seed: int, cut: int, junk: bytes) -> None:
    rng = random.Random(seed)
    good = sample_line(name, rng, seed % 500)
    pos = cut % (len(good) + 1)
    bad = (good[:pos] + junk + good[pos:]).replace(b"\n", b"")
    result = parse_plan(builtin(name), chunk([good, bad, good]), 7)
    assert result.batch.num_rows + len(result.rejects) == 3
    assert result.batch.num_rows >= 2
    assert all(line == 8 for line in result.rejects.lines)


def test_vector_line_bounds_handles_crlf() -> None:
    a = np.frombuffer(b"ab\r\ncd\n\n", dtype=np.uint8)
    starts, ends, _, crlf = vector.line_bounds(a)
    assert (
        starts.tolist() == [0, 4, 7] and ends.tolist() == [2, 6, 7] and crlf.tolist() == [True, False, False]
    )


def test_lines_the_quick_split_cannot_take_are_judged_as_the_regex_judges_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many lines the first-byte split fails on (a file in another format, or values holding the first
    byte of the next literal) go through the regex's split, vectorised: same rows and rejects as the
    regex one line at a time."""
    plan = builtin("main")
    rng = random.Random(9)
    lines = []
    for k in range(400):
        line = sample_line("main", rng, k)
        if k % 3 == 0:  # a user with a space: " [" follows it, but a space comes first
            line = line.replace(b" - - [", b" - john doe [", 1)
        elif k % 3 == 1:  # combined, without the last field: no match
            line = line.rsplit(b' "', 1)[0]
        lines.append(line)
    vectorised = parse_plan(plan, chunk(lines), 1)
    assert len(vectorised.rejects) > engine._FEW  # the vectorised second split did run
    monkeypatch.setattr(engine, "fast_candidates", lambda a, s, e, c: np.zeros(len(s), dtype=bool))
    regex = parse_plan(plan, chunk(lines), 1)
    assert vectorised.batch.equals(regex.batch)
    assert (vectorised.rejects.lines, vectorised.rejects.reasons) == (
        regex.rejects.lines,
        regex.rejects.reasons,
    )
    assert "john doe" in vectorised.batch.column("user").to_pylist()


def test_counted_split_agrees_with_searching_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a field of a kind that holds no punctuation the split counts a byte's occurrences on
    through the literals instead of searching again; a field that does hold the byte (a quote in the
    size, a space or bracket in the address) makes the count fall short, which is caught and searched.
    Same rows and rejects as a split that searches every field, and as the regex."""
    rng = random.Random(11)
    for name in ("upstream_time", "main", "combined"):
        plan = builtin(name)
        lines = []
        for k in range(300):
            line = sample_line(name, rng, k)
            if k % 4 == 0:  # a byte the split looks for, in a field it does not expect it in
                fields = line.split(b" ")
                i = rng.randrange(len(fields))
                pos = rng.randrange(len(fields[i]) + 1)
                fields[i] = fields[i][:pos] + rng.choice([b'"', b" ", b"]", b"[", b","]) + fields[i][pos:]
                line = b" ".join(fields)
            lines.append(line)
        counted = parse_plan(plan, chunk(lines), 1)
        assert counted.batch.num_rows > 200
        with monkeypatch.context() as m:
            m.setattr(engine, "_GUESSED", frozenset())
            searched = parse_plan(plan, chunk(lines), 1)
        with monkeypatch.context() as m:
            m.setattr(engine, "fast_candidates", lambda a, s, e, c: np.zeros(len(s), dtype=bool))
            regex = parse_plan(plan, chunk(lines), 1)
        for other in (searched, regex):
            assert counted.batch.equals(other.batch), name
            assert (counted.rejects.lines, counted.rejects.reasons) == (
                other.rejects.lines,
                other.rejects.reasons,
            )


def test_literals_compared_by_words_agree_with_bytes() -> None:
    """Positions.holds reads 64-bit words through windows that end where the literal ends: the same
    answer as comparing byte by byte, at the chunk's first bytes and last bytes and past its end."""
    rng = random.Random(4)
    for size in (3, 9, 40, 300):
        data = bytes(rng.choice(b'ab",: ') for _ in range(size))
        a = np.frombuffer(data, dtype=np.uint8)
        where = engine._Positions(a)
        for n in (1, 7, 8, 9, 16, 17, 30):
            pos = np.array(
                [*sorted(rng.randrange(size + 70) for _ in range(50)), 0, size - 1], dtype=np.int64
            )
            for p in pos[:5].tolist():  # some literals that are there
                literal = data[p : p + n]
                if len(literal) == n:
                    got = where.holds(pos, literal)
                    want = [data[q : q + n] == literal for q in pos.tolist()]
                    assert got.tolist() == want, (size, n)
            literal = bytes(rng.choice(b'ab",: ') for _ in range(n))
            assert where.holds(pos, literal).tolist() == [data[q : q + n] == literal for q in pos.tolist()]


def test_plain_lists_are_summed_as_one_by_one() -> None:
    """The plainest lists after upstream retries ("0.012, 0.034") are summed together, left to right,
    to the same bits as the one-by-one sum of every other list."""
    rng = random.Random(8)
    plan = builtin("upstream_time")
    lines, want = [], []
    for k in range(400):
        items = [
            f"{rng.randrange(10 ** rng.randrange(1, 6))}.{rng.randrange(1000):03d}" for _ in range(1 + k % 5)
        ]
        if k % 7 == 0:
            items.insert(rng.randrange(len(items)), "-")  # not plain: summed one by one
        sep = " : " if k % 11 == 0 else ", "
        text = sep.join(items)
        line = sample_line("upstream_time", rng, k).replace(b'uht="0.001, 0.002"', f'uht="{text}"'.encode())
        lines.append(line)
        want.append(numbers.list_total(text.encode(), float))
    result = parse_plan(plan, chunk(lines), 1)
    assert result.batch.num_rows == len(lines)
    assert result.rows is not None
    got = result.batch.column("upstream_header_time").to_pylist()
    assert got == [want[i] for i in result.rows.tolist()]


@pytest.mark.parametrize(
    ("fmt", "line"),
    [
        ({"nginx": "$time_local $status"}, b"14/Mar/2026:23:21:12 +0100 200"),
        ({"apache": "%{%d/%b/%Y:%H:%M:%S %z}t %>s"}, b"14/Mar/2026:23:21:12 +0100 200"),
        ({"nginx": "$time_iso8601-$status"}, b"2026-03-14T23:21:12+01:00-200"),
    ],
)
def test_a_time_holding_the_literal_after_it_ends_by_its_width(fmt: dict[str, str], line: bytes) -> None:
    """The space inside $time_local (the dash inside an ISO date) is not where the field ends."""
    plan = plan_for(fmt)
    for data in (chunk([line, line]), chunk([line, b"x", line, b"\\" + line])):  # fast path, regex
        result = parse_plan(plan, data, 1)
        assert [str(t) for t in result.batch.column("ts").to_pylist()][:2] == [
            "2026-03-14 22:21:12+00:00"
        ] * 2
        assert result.batch.column("status").to_pylist()[:2] == [200, 200]


# nginx's access log after a scan: requests it could not parse, logged with status 400 as they came
NGINX_400_REQUESTS = [
    b"GET /",
    b"",
    b"SSH-2.0-OpenSSH_8.9",
    b"\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xFC\\x03\\x03",
    b"GET /a b HTTP/1.1",
    b"-",
    b"GET /ok HTTP/1.1",
]


def _scan_log(rng: random.Random, n: int) -> list[bytes]:
    lines = []
    for i in range(n):
        request = rng.choice(NGINX_400_REQUESTS)
        status = b"200" if request == b"GET /ok HTTP/1.1" and i % 3 else b"400"
        lines.append(
            b'203.0.113.%d - - [14/Mar/2026:23:21:%02d +0100] "%s" %s %d "-" "-"'
            % (i % 250, i % 60, request, status, i)
        )
    return lines


PASTED_400 = '$remote_addr [$time_local] "$request" $status'


@pytest.mark.parametrize("parser", ["builtin", "engine", "pasted"])
def test_status_400_lines_are_rows(parser: str) -> None:
    """Every 400 nginx logged is a row: status = 400 counts what a regex counts in the file. Through
    the built-in name, the combined plan through the engine, and a pasted format."""
    from pipeline.formats import get_format

    lines = _scan_log(random.Random(4), 400)
    if parser == "pasted":
        lines = [re.sub(rb' - - (\[[^]]+\]) ("(?:[^"\\]|\\.)*") (\d+) .*', rb" \1 \2 \3", ln) for ln in lines]
    data = chunk(lines)
    if parser == "builtin":
        result = get_format("combined").parse(data, 1)
    elif parser == "engine":
        result = parse_plan(builtin("combined"), data, 1)
    else:
        result = parse_plan(compile_nginx(PASTED_400), data, 1)
    assert len(result.rejects) == 0
    statuses = result.batch.column("status").to_pylist()
    assert statuses.count(400) == len(re.findall(rb'" 400( |$)', data, re.MULTILINE)) > 200
    rows = result.batch.to_pylist()
    raw = [r for r in rows if r["request"] is not None]
    assert {r["request"].encode() for r in raw} == set(NGINX_400_REQUESTS) - {b"-", b"GET /ok HTTP/1.1"}
    assert all(r["method"] is r["path"] is r["protocol"] is r["query"] is None for r in raw)
    assert all(r["ip"].startswith("203.0.113.") and r["ts"] is not None for r in raw)
    split = [r for r in rows if r["method"] is not None]
    assert {(r["method"], r["path"], r["request"]) for r in split} == {("GET", "/ok", None)}


INT_VALUES = ["0", "12", "-", "007", "99999999999999999999", "9223372036854775807", "12a", "1,2", "3:-"]
INT_VALUES += ["-,-", "1.5", "+5", ""]


def _reference_int(text: str) -> tuple[int | None, str | None]:
    """An int field's value (None: null) and its reason (None: it fits), by plain Python."""
    items = [item for item in re.split(r"\s*[,:]\s*", text.strip())]
    if any(item != "-" and not re.fullmatch(r"\d+", item) for item in items):
        return None, "no match"
    if all(item == "-" for item in items):
        return None, None
    total = sum(int(item) for item in items if item != "-")
    return (None, "out-of-range number") if total > 2**63 - 1 else (total, None)


def test_int_fields_typed_together_keep_each_lines_first_reason() -> None:
    """Every int field of a line is typed in one pass, yet each line keeps the reason of its first
    field (in the format's order) that does not fit: a bad time before a bad number is a bad timestamp,
    a bad number before a bad time a number's reason."""
    rng = random.Random(5)
    plan = plan_for({"apache": "%B %t %I %O"})
    lines, want_rows, want_rejects = [], [], []
    for i in range(600):
        first, second, third = (rng.choice(INT_VALUES) for _ in range(3))
        day = rng.choice(["01", "01", "01", "31"])  # 31 Nov: a bad timestamp
        lines.append(f"{first} [{day}/Nov/2026:10:00:00 +0000] {second} {third}".encode())
        typed = [_reference_int(first), (None, None if day == "01" else "bad timestamp")]
        typed += [_reference_int(second), _reference_int(third)]
        reasons = [reason for _, reason in typed if reason is not None]
        if reasons:
            want_rejects.append((i + 1, reasons[0]))
        else:
            want_rows.append((i, typed[0][0], typed[2][0], typed[3][0]))
    result = parse_plan(plan, chunk(lines), 1)
    assert reject_list(result.rejects) == want_rejects
    assert result.rows is not None
    got = zip(
        result.rows.tolist(),
        *(result.batch.column(c).to_pylist() for c in ("bytes", "request_length", "bytes_sent")),
        strict=True,
    )
    assert sorted(got) == want_rows
    assert {reason for _, reason in want_rejects} == {"no match", "bad timestamp", "out-of-range number"}


def test_rejects_added_together_are_those_added_one_by_one() -> None:
    """A chunk of lines that all fail (another format's) is rejected in one step: each reject keeps its
    line, reason, first ``reject_bytes`` bytes and full length, as :meth:`RejectRows.add` keeps them."""
    lines = [b"x" * n + b" y" for n in range(300)]
    data = chunk(lines)
    result = PlanFormat("common", builtin("common")).parse(memoryview(data), 7, reject_bytes=5)
    assert [
        (line, raw, size)
        for line, raw, size in zip(
            result.rejects.lines, result.rejects.raw, result.rejects.raw_len, strict=True
        )
    ] == [(7 + i, line[:5], len(line)) for i, line in enumerate(lines)]
    assert set(result.rejects.reasons) == {"no match"}


PORTS = ["1.2.3.4:80", "[2001:db8::1]:443", "::1:8080", "1:2:3", "[]:80", "[x]:0", ":80", "a:", "a", "-"]
PORTS += ["x:99999", "x:123456", "x:1b", "x:00080", "é:80", "a:b:12345", "ab:c:d"]
TIMES = ["2026-11-01T10:00:00Z", "2026-11-01T10:00:00.5Z", "2026-11-01T10:00:00.123456789+02:00"]
TIMES += ["2026-11-01T10:00:00.Z", "2026-11-01T10:00:00.1234567890Z", "2026-11-01T10:00:00.12a4Z"]
TIMES += ["2026-11-01T10:00:00,5Z", "2026-11-01T10:00:00.000001-05:30", "2026-11-01T10:00:00.9"]


@pytest.mark.parametrize("first", [True, False])
def test_addresses_ports_and_fractions_read_as_the_reference_reads_them(first: bool) -> None:
    """An address's port (its last colon among a value's last six bytes) and a time's fraction (read
    as one block of digits) agree with the reference, also for the chunk's first and last bytes."""
    template = "{ip,port:ip_port} {ts:time_rfc3339}" if first else "{ts:time_rfc3339} {ip,port:ip_port}"
    plan = compile_template(template, "test")
    rng = random.Random(first)
    pairs = [(p, t) for p in PORTS for t in TIMES]
    rng.shuffle(pairs)
    lines = [(f"{p} {t}" if first else f"{t} {p}").encode() for p, t in pairs]
    for line in lines:  # alone, its values are the chunk's first and last bytes
        alone = parse_plan(plan, chunk([line]), 1)
        assert batch_rows(alone.batch) == plan_reference(plan, [line])[0]
    result = parse_plan(plan, chunk(lines), 1)
    rows, rejected = plan_reference(plan, lines)
    assert [line - 1 for line, _ in reject_list(result.rejects)] == rejected
    assert batch_rows(result.batch) == rows
    assert 20 < len(rows) < len(lines) - 20


STATUSES = ["200", "404", "999", "000", "20", "2000", "2x0", "20:", "/00", "2?0", "-", "-1", "0", "+20"]
STATUSES += ["1é", "é00", "٣٠٠"]


def test_statuses_read_as_the_reference_reads_them() -> None:
    """A status's three digits read from its first bytes at once (a digit is 0x30-0x39, not the bytes
    beside them, nor a non-ASCII digit), with and without null spellings, agree with the reference; also
    a status within the chunk's last eight bytes."""
    plan = compile_template("{ts:time_rfc3339} {upstream_status:status0} {status:status}", "test")
    lines = [f"2026-11-01T10:00:00Z {a} {b}".encode() for a in STATUSES for b in STATUSES]
    for data in [chunk(lines)] + [chunk([line]) for line in lines[::7]]:
        result = parse_plan(plan, data, 1)
        rows, rejected = plan_reference(plan, data.splitlines())
        assert [line - 1 for line, _ in reject_list(result.rejects)] == rejected
        assert batch_rows(result.batch) == rows
    assert 10 < len(plan_reference(plan, lines)[0]) < len(lines) - 10
