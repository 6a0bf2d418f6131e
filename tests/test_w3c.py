"""W3C extended logs (``pipeline.formats.w3c``): IIS's and CloudFront's lines, from their documentation
and generated over every field's variants, read as a plain-Python reference reads them; headers that
change mid-file, mid-chunk and across chunks; their accounting (skipped header lines) through the CLI,
in parallel and incremental runs."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline.config import Config
from pipeline.formats import choose, compiled, get_format, key_of
from pipeline.formats.base import FormatKey
from pipeline.formats.w3c import CLOUDFRONT, DIALECTS, IIS, Dialect, schema, w3c_markdown
from pipeline.inputs import incremental
from pipeline.inputs.ranges import Renumber
from pipeline.stages.intake import Intake
from tests.conftest import (
    W3C_BREAKERS,
    W3C_HOSTILE,
    batch_rows,
    committed_manifest,
    read_output,
    reject_list,
    run_cli,
    w3c_reference,
)

SERVER_LOGS = Path(__file__).parent / "server_logs"


def parse_chunks(
    name: str, lines: list[bytes], cuts: list[int]
) -> tuple[list[dict[str, Any]], list[tuple[int, str]], int]:
    """The lines parsed in chunks that start at the line numbers ``cuts``, each with the key carried
    from the chunks before it, as the plan hands them out."""
    key: FormatKey = name
    rows: list[dict[str, Any]] = []
    rejects: list[tuple[int, str]] = []
    skipped = 0
    bounds = [0, *cuts, len(lines)]
    for begin, end in itertools.pairwise(bounds):
        if begin == end:
            continue
        data = b"".join(line + b"\n" for line in lines[begin:end])
        fmt = get_format(key)
        result = fmt.parse(data, begin + 1)
        assert result.batch.schema == schema(DIALECTS[name])
        order = sorted(range(result.batch.num_rows), key=lambda i: int(result.rows[i]))
        table = result.batch.to_pylist()
        rows += [table[i] for i in order]
        rejects += list(zip(result.rejects.lines, result.rejects.reasons, strict=True))
        rejects += [(int(n), r) for r, ns in result.rejects.blank for n in ns]
        skipped += result.skipped
        key = fmt.carry(data) or key
    return rows, sorted(rejects), skipped


def check(name: str, lines: list[bytes], cuts: list[int] | None = None) -> list[dict[str, Any]]:
    expected = w3c_reference(DIALECTS[name], lines)
    got = parse_chunks(name, lines, cuts or [])
    assert got[1] == sorted(expected[1])
    assert got[2] == expected[2]
    assert len(got[0]) == len(expected[0])
    for mine, theirs in zip(got[0], expected[0], strict=True):
        assert mine == theirs
    return got[0]


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_the_documentations_lines_read_as_the_reference_reads_them(name: str) -> None:
    lines = (SERVER_LOGS / f"{name}.log").read_bytes().split(b"\n")[:-1]
    rows = check(name, lines)
    assert len(rows) == sum(1 for line in lines if not line.startswith(b"#"))
    assert choose(lines) == (name, len(lines))


def test_a_few_documented_values() -> None:
    iis = check("w3c", (SERVER_LOGS / "w3c.log").read_bytes().split(b"\n")[:-1])
    assert iis[0]["user_agent"] == "Mozilla/4.0 (compatible;MSIE 5.5; Windows 2000 Server)"
    assert iis[0]["server_port"] == 80 and iis[0]["user"] is None and iis[0]["request_time"] is None
    assert iis[1]["ts"] == datetime(2026, 11, 1, 0, 0, 1, tzinfo=UTC) and iis[1]["request_time"] == 0.046
    assert iis[2]["user"] == "CONTOSO\\jdoe" and iis[2]["ip"] == "2001:db8::7" and iis[2]["is_bot"]
    assert iis[2]["query"] == "ReturnUrl=%2Fadmin"  # the query as logged
    assert iis[3]["referrer"] == "https://www.example.com/?q=a+b" and iis[3]["user_agent"] == "-"
    # a custom field: the client behind a load balancer, its ",+" decoded
    assert (iis[4]["ip"], iis[4]["http_x_forwarded_for"]) == ("10.0.1.9", "203.0.113.7, 10.0.0.2")
    assert iis[0]["http_x_forwarded_for"] is None
    cf = check("cloudfront", (SERVER_LOGS / "cloudfront.log").read_bytes().split(b"\n")[:-1])
    assert cf[0]["user_agent"].startswith("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit")
    assert (cf[0]["bytes_sent"], cf[0]["request_length"], cf[0]["request_time"]) == (392, 23, 0.001)
    assert (cf[3]["status"], cf[3]["host"], cf[3]["cs_host"]) == (
        502,
        "www.example.com",
        "d111111abcdef8.cloudfront.net",
    )
    assert cf[3]["x_edge_detailed_result_type"] == "OriginDnsError" and cf[3]["client_port"] == 25260
    assert cf[5]["is_bot"] and cf[5]["sc_range_start"] is None and cf[5]["sc_content_len"] == 507
    # standard logging (v2): its added fields, and a selection without date and time
    v2, chosen = cf[-2], cf[-1]
    assert (v2["origin_fbl"], v2["origin_lbl"], v2["asn"], v2["c_country"]) == (0.045, 0.118, 16509, "US")
    assert v2["cache_behavior_path_pattern"] == "/images/*" and v2["sc_range_end"] == 57237801
    assert chosen["ts"] == datetime(2025, 5, 1, 0, 20, 23, 123000, tzinfo=UTC)
    assert (chosen["c_country"], chosen["request_time"], chosen["status"]) == ("DE", 0.002, 200)


# Each field's variants, valid and not: what generated lines are made of
_AGENTS = [
    "Mozilla/5.0+(X11;+Linux)",
    "curl/8.0",
    "-",
    "Googlebot/2.1",
    "a%20b",
    "%E2%82%AC+x",
    "%FF%20y",
    "%2520z",
]
_VARIANTS: dict[str, list[str]] = {
    "date": ["2026-11-01", "2024-02-29", "2026-11-02", "2023-02-29", "2026-13-01", "26-11-01", "-"],
    "time": [
        "10:00:00",
        "23:59:59",
        "00:00:00.5",
        "10:00:00.123456",
        "24:00:00",
        "10:00",
        "10:00:00.1234567",
    ],
    "int": ["0", "443", "-", "", "9223372036854775807", "9223372036854775808", "12a", "99999999999999999999"],
    "status": ["200", "404", "-", "32767", "32768", "2x0"],
    "ms": ["0", "15", "-", "1200000", "1.5"],
    "seconds": ["0.001", "12", "-", "1.", ".5", "0.1234567891", "abc"],
    "epoch": ["1746058823.123", "1563831524", "1746058823.5", "-", "1e9", "253402300800", "0.1234567891"],
    "epoch_ms": ["1746058823123", "0", "1563831524342", "-", "17460588231.5", "253402300800000"],
    "as_logged": ["192.0.2.1", "2001:db8::1", "::ffff:10.0.0.1", "-", *_AGENTS],
    "string": ["/a/b.html", "-", "", "q=a+b&c=%20", "caf\u00e9", "x%E2%82%ACy", "%C3", "D\\u", "a+b"],
}


def _field_value(dialect: Dialect, name: str, rng: random.Random) -> str:
    column = dialect.columns.get(name)
    kind = "string" if column is None else column.kind
    value = rng.choice(_VARIANTS[kind] if rng.random() < 0.05 else _VARIANTS[kind][:3])
    return value.replace(" ", "") if dialect is IIS else value


def _header(dialect: Dialect, rng: random.Random) -> list[str]:
    """A field list as a server might write it: all, a subset in another order, or with unknown and
    repeated fields (a custom field, a field added later)."""
    every = list(dialect.columns)
    pick = rng.randrange(5)
    if pick == 0:
        return every
    if pick == 1:
        return list(dialect.default)
    chosen = rng.sample(every, rng.randrange(1, len(every)))
    if pick == 2:
        chosen += ["date", "time"]
    if pick == 3:
        chosen.insert(rng.randrange(len(chosen) + 1), "X-Custom-Field")
    if pick == 4 and chosen:
        chosen.append(chosen[0])
    return chosen


def generated(name: str, rng: random.Random, n: int = 600) -> list[bytes]:
    dialect = DIALECTS[name]
    sep = dialect.sep.decode()
    fields = list(dialect.default)
    out: list[bytes] = []
    for _ in range(n):
        pick = rng.randrange(40)
        if pick == 0:
            fields = _header(dialect, rng)
            out += [
                b"#Version: 1.0",
                b"#Date: 2026-11-01 00:00:00",
                ("#Fields: " + " ".join(fields)).encode(),
            ]
            continue
        values = [_field_value(dialect, f, rng) for f in fields]
        line = sep.join(values).encode()
        if pick == 1:
            line = line[: rng.randrange(len(line) + 1)]
        elif pick == 2:
            line += (sep + "extra").encode()
        elif pick == 3:
            line = rng.choice([b"", b"\xff\xfe" + line, line + b"\x00", b"# a comment"])
        out.append(line + (b"\r" if name == "w3c" and rng.random() < 0.5 else b""))
    return out


@pytest.mark.parametrize("name", sorted(DIALECTS))
@pytest.mark.parametrize("seed", range(3))
def test_generated_lines_read_as_the_reference_reads_them(name: str, seed: int) -> None:
    rng = random.Random(f"{name}{seed}")
    lines = generated(name, rng)
    rows = check(name, lines)
    assert len(rows) > 100
    # the same lines in chunks: a header in one chunk governs the next ones
    cuts = sorted(rng.sample(range(1, len(lines)), 12))
    assert check(name, lines, cuts) == rows


def test_a_header_in_the_middle_of_a_chunk_changes_the_lines_after_it() -> None:
    lines = [
        b"2026-11-01 10:00:00 10.0.0.1 GET /a - 80 - 192.0.2.1 curl/8 - 200 0 0 5",  # the default fields
        b"#Fields: date time c-ip sc-status",
        b"2026-11-01 10:00:01 192.0.2.2 404",
        b"2026-11-01 10:00:02 10.0.0.1 GET /a - 80 - 192.0.2.1 curl/8 - 200 0 0 5",  # now too long
    ]
    result = get_format("w3c").parse(b"\r\n".join(lines) + b"\r\n", 1)
    assert result.batch.column("path").to_pylist() == ["/a", None]
    assert result.batch.column("status").to_pylist() == [200, 404]
    assert list(zip(result.rejects.lines, result.rejects.reasons, strict=True)) == [(4, "no match")]
    assert result.skipped == 1
    assert get_format("w3c").carry(b"\n".join(lines) + b"\n") == ("w3c", "date time c-ip sc-status")
    assert get_format("w3c").carry(b"x #Fields: a b\n") is None  # not at a line's start


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_lines_before_any_header_read_with_the_default_fields(name: str) -> None:
    lines = (SERVER_LOGS / f"{name}.log").read_bytes().split(b"\n")[:-1]
    if name == "cloudfront":  # CloudFront's documented header (its legacy fields) is its default
        header = next(line for line in lines if line.startswith(b"#Fields:"))
        block = lines[: next(i for i, line in enumerate(lines) if line.startswith(b"#F") and line != header)]
        assert header.decode().split()[1:] == list(CLOUDFRONT.default)
        assert check(name, block[block.index(header) + 1 :]) == check(name, block)
    else:
        # the block of IIS's default fields, to the next directive
        header = next(line for line in lines if line.decode().split()[1:] == list(IIS.default))
        body = lines[lines.index(header) + 1 :]
        body = body[: next((i for i, line in enumerate(body) if line.startswith(b"#")), len(body))]
        assert len(body) == 3 and len(check(name, body)) == len(body)


def test_settings_aliases_and_keys() -> None:
    assert key_of("iis") == "w3c" and key_of("cloudfront") == "cloudfront"
    assert key_of({"w3c": "#Fields: date  time c-ip"}) == ("w3c", "date time c-ip")
    assert get_format(("cloudfront", "date time")).schema == schema(CLOUDFRONT)
    assert schema(IIS).field("request_time").type == pa.float64()
    assert schema(CLOUDFRONT).field("status").type == pa.int16()


def test_the_catalogue_names_every_field() -> None:
    text = w3c_markdown()
    for dialect in DIALECTS.values():
        for field in dialect.columns:
            assert f"`{field}`" in text


def _iis_file(rng: random.Random, blocks: int, lines: int) -> bytes:
    """An IIS log as a server restarted ``blocks`` times writes it: each block a header of its own
    fields, then ``lines`` lines."""
    out = []
    for _ in range(blocks):
        fields = _header(IIS, rng) if rng.random() < 0.7 else list(IIS.default)
        fields = [f for f in fields if f not in ("date", "time")] + ["date", "time"]
        out += [b"#Software: Microsoft Internet Information Services 10.0", b"#Version: 1.0"]
        out.append(("#Fields: " + " ".join(fields)).encode())
        for i in range(lines):
            values = {f: _field_value(IIS, f, rng) for f in fields}
            values["date"], values["time"] = "2026-11-0" + str(1 + i % 3), f"10:{i % 60:02d}:00"
            out.append(" ".join(values[f] for f in fields).encode())
    return b"".join(line + b"\r\n" for line in out)


def _sorted_rows(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=repr)


@pytest.mark.slow
def test_a_parallel_run_of_small_chunks_equals_a_serial_run(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    rng = random.Random(5)
    data = _iis_file(rng, 12, 400)
    (logs / "u_ex261101.log").write_bytes(data)
    outs = {}
    for executor in ("process", "inline"):
        out = tmp_path / executor
        proc = run_cli(
            "run",
            "--input",
            str(logs),
            "--output",
            str(out),
            "--set",
            'run.format="auto"',
            "--set",
            "read.chunk_bytes=65536",
            "--set",
            f'parse.executor="{executor}"',
            "--set",
            "parse.workers=2",
        )
        assert proc.returncode == 0, proc.stderr
        outs[executor] = (_sorted_rows(read_output(out)), committed_manifest(out))
    (rows, m), (serial, m2) = outs["process"], outs["inline"]
    assert rows == serial
    expected, _, skipped = w3c_reference(IIS, data.split(b"\n")[:-1])
    assert len(rows) == len(expected) and m["skipped"] == skipped == 36
    assert m["inputs"][0]["chunks"] > 5 and m["inputs"][0]["format"] == "w3c"
    assert m["rows"] + m["rejected"] + m["filtered"] + m["skipped"] == m["lines"]
    assert {k: m[k] for k in ("rows", "rejected", "skipped")} == {
        k: m2[k] for k in ("rows", "rejected", "skipped")
    }


@pytest.mark.slow
def test_an_incremental_run_resumes_with_the_header_in_effect(tmp_path: Path) -> None:
    logs, rng = tmp_path / "logs", random.Random(9)
    logs.mkdir()
    path = logs / "u_ex261101.log"
    whole = _iis_file(rng, 4, 40)
    cut = whole.index(b"#Software", len(whole) // 2)  # the second part starts with a new header
    mid = whole.index(b"\n", cut + 2000) + 1  # ... and goes on without one
    path.write_bytes(whole[:cut])
    args = ["--input", str(logs), "--set", 'run.format="w3c"', "--set", "run.incremental=true"]
    out = tmp_path / "incremental"
    for end in (mid, len(whole)):
        assert run_cli("run", *args, "--output", str(out)).returncode == 0
        path.write_bytes(whole[:end])
    assert run_cli("run", *args, "--output", str(out)).returncode == 0
    assert (
        run_cli(
            "run", "--input", str(logs), "--set", 'run.format="w3c"', "--output", str(tmp_path / "full")
        ).returncode
        == 0
    )
    assert _sorted_rows(read_output(out)) == _sorted_rows(read_output(tmp_path / "full"))
    assert len(w3c_reference(IIS, whole.split(b"\n")[:-1])[0]) == read_output(out).num_rows


def test_a_headed_input_is_never_read_by_byte_ranges() -> None:
    assert get_format("w3c").headed and get_format("cloudfront").headed and not get_format("combined").headed
    plan = incremental.Plan("https://example.org/logs/u_ex261101.log", "new")
    none: Any = None
    intake = Intake(Config().resolved(), (plan,), none, none, none, [0], Renumber(), None, frozenset({0}))
    assert not intake._by_ranges(0, plan)
    assert replace(intake, in_order=frozenset())._by_ranges(0, plan)


def test_auto_knows_a_w3c_file_by_its_directives() -> None:
    iis = [b"#Software: Microsoft Internet Information Services 10.0", b"#Version: 1.0", b"#Date: 2026-11-01"]
    assert choose(iis) == ("w3c", 3)  # a server restarted, no request yet
    cloudfront = (SERVER_LOGS / "cloudfront.log").read_bytes().split(b"\n")[:2]
    assert choose(cloudfront) == ("cloudfront", 2)
    assert choose([b"# a comment", b"a\tb\tc"]) is None  # comments and tabs are not CloudFront's
    # a v2 distribution's own choice of fields: by a field only CloudFront writes, or by its tabs
    v2 = [b"#Version: 1.0", b"#Fields: timestamp(ms) c-ip sc-status", b"1746058823123\t192.0.2.1\t200"]
    assert choose(v2) == ("cloudfront", 3)
    v2 = [b"#Version: 1.0", b"#Fields: date time c-ip sc-status", b"2025-05-01\t10:00:00\t192.0.2.1\t200"]
    assert choose(v2) == ("cloudfront", 3)
    assert choose([v2[1], v2[2].replace(b"\t", b" ")]) == ("w3c", 2)


def test_blocks_with_the_same_fields_keep_their_lines_order() -> None:
    a, b = b"#Fields: date time c-ip sc-status", b"#Fields: date time sc-status c-ip"
    lines = []
    for i in range(6):
        lines += [a, f"2026-11-01 10:00:0{i} 192.0.2.{i} 20{i}".encode()]
        lines += [b, f"2026-11-01 09:00:0{i} 30{i} 198.51.100.{i}".encode()]
    rows = check("w3c", lines)
    assert [row["status"] for row in rows] == [s for i in range(6) for s in (200 + i, 300 + i)]


# a value each kind reads
_GOOD = {"date": b"2026-11-01", "time": b"10:00:00.25", "status": b"200", "seconds": b"0.002"}


def _edge_lines(dialect: Dialect) -> list[bytes]:
    """Lines of all the dialect's fields, each with one value at or past its kind's rules (each edge
    value as is, with each of its bytes replaced by each breaker, and cut at each length), then lines
    with too few and too many fields, NUL bytes, bytes that are not UTF-8, CRLF ends, directives and a
    header that changes the fields mid-chunk."""
    fields = list(dialect.columns)
    kinds = [dialect.columns[f].kind for f in fields]
    good = [_GOOD.get(kind, b"15" if kind in ("int", "ms") else b"a+b%20c") for kind in kinds]
    lines = []
    for j, kind in enumerate(kinds):
        for edge in W3C_HOSTILE[kind]:
            variants = {edge, *(edge[:n] for n in range(min(len(edge), 20)))}
            for n in range(min(len(edge), 20)):
                variants |= {edge[:n] + bytes([b]) + edge[n + 1 :] for b in W3C_BREAKERS}
            for value in sorted(variants):
                lines.append(dialect.sep.join([*good[:j], value.replace(b"\n", b" "), *good[j + 1 :]]))
    # in no order: a value's neighbours in its column are other fields' edges (a decoding that read
    # past a value's end would read them)
    random.Random(dialect.name).shuffle(lines)
    lines.insert(0, b"#Fields: " + " ".join(fields).encode())
    whole = dialect.sep.join(good)
    lines += [whole[:-3], whole + dialect.sep + b"x", whole + b"\0", b"\xff" + whole, whole + b"\r", b""]
    lines += [b"#Fields: time date sc-status", b"10:00:00 2026-11-01 404", whole, b"#Version: 1.0"]
    for field in (f for f, kind in zip(fields, kinds, strict=True) if kind.startswith("epoch")):
        # a header without date and time: the epoch field is ts (CloudFront's timestamp fields)
        lines.append(b"#Fields: " + field.encode() + b" sc-status")
        lines += [edge + dialect.sep + b"200" for edge in W3C_HOSTILE[dialect.columns[field].kind]]
    return lines


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_the_compiled_loops_read_every_edge_as_the_numpy_code_does(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the compiled loops are loaded (tests/conftest.py loads them), the split, the typing and the
    decoding give the numpy code's rows, rejects (line, reason, raw bytes) and skipped lines."""
    chunk = b"".join(line + b"\n" for line in _edge_lines(DIALECTS[name]))
    results = []
    for loaded in (True, False):
        monkeypatch.setattr(compiled, "loaded", lambda loaded=loaded: loaded)
        r = get_format(name).parse(chunk, 7, reject_bytes=50)
        rejects = list(zip(r.rejects.lines, r.rejects.reasons, r.rejects.raw, r.rejects.raw_len, strict=True))
        results.append((batch_rows(r.batch), rejects, reject_list(r.rejects), r.rows.tolist(), r.skipped))
    assert results[0] == results[1]
    rows, reasons = results[0][0], [reason for _, reason in results[0][2]]
    assert len(rows) > 500 and len(reasons) > 500  # the edges are both read and refused
    assert {"no match", "bad timestamp", "out-of-range number", "NUL byte", "invalid UTF-8"} <= set(reasons)


@pytest.mark.parametrize("loaded", [True, False])
def test_a_header_of_many_fields_over_short_lines_costs_memory_by_the_chunk(
    loaded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spans are kept for the lines that hold the header's fields only (each of them at least as
    long as the header has fields): 200,000 fields over 100,000 lines of one byte would otherwise ask
    for 320 GB."""
    monkeypatch.setattr(compiled, "loaded", lambda: loaded)
    fields = " ".join(f"x-{n}" for n in range(200_000))
    chunk = f"#Fields: date time {fields}\n".encode() + b"a\n" * 100_000
    result = get_format("w3c").parse(chunk, 1)
    assert result.batch.num_rows == 0 and result.skipped == 1
    assert len(result.rejects) == 100_000 and set(result.rejects.reasons) == {"no match"}
