"""Every nginx variable and Apache directive of the catalogue through a whole run (the CLI, in a child
process): lines written in formats that together hold them all, with junk and nginx's 400 lines among
them, to Parquet and back, compared with the per-line reference (tests.conftest.plan_reference). This is
where a column that parses but cannot be written (Parquet settings that contradict each other) shows."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline.formats.spec import (
    APACHE_DIRECTIVES,
    NGINX_VARIABLES,
    FormatPlan,
    Var,
    compile_apache,
    compile_nginx,
)
from tests.conftest import batch_rows, plan_reference, read_output, run_cli

LINES_PER_FORMAT = 40
# a few values of each kind, as the servers write them
VALUES: dict[str, list[str]] = {
    "ip": ["1.2.3.4", "2001:db8::1"],
    "user": ["-", "alice"],
    "string": ["-", "abc", "x y", "caf\u00e9"],
    "agent": ["curl/8.0", "Mozilla/5.0 (X11; Linux x86_64) Gecko", "Googlebot/2.1"],
    "request": ["GET /a?b=1 HTTP/1.1", "POST /x HTTP/2.0", "-", "GET /", "", "SSH-2.0-OpenSSH_8.9"],
    "status": ["200", "404", "400"],
    "int": ["0", "123", "-"],
    "float": ["0.5", "12", "-"],
    "duration": ["0.5", "12", "0.001", "-"],
}
MULTI = {"int": ["12, 34", "5 : 6"], "duration": ["0.1, 0.2", "0.1 : -"]}
TIMES = {  # (kind, scale) -> a value at 2026-03-14T23:21:12+01:00
    ("time_local", 1.0): "14/Mar/2026:23:21:12 +0100",
    ("time_iso8601", 1.0): "2026-03-14T23:21:12+01:00",
    ("epoch", 1.0): "1773526872",
    ("epoch", 1e-3): "1773526872123",
    ("epoch", 1e-6): "1773526872123456",
}
JUNK = [
    b"",
    b"x",
    b"\x16\x03\x01\x00",
    b'1.2.3.4 - - [14/Mar/2026:23:21:12 +0100] "GET / HTTP/1.1" 200 1 "-" "-"',
]


def _spread(entries: dict[str, Var]) -> list[list[str]]:
    """The entries in as few groups as there are entries of one column, no column twice in a group
    (the time directives are one column, ``ts``: each group gets one)."""
    by_column: dict[str, list[str]] = defaultdict(list)
    for name, var in entries.items():
        by_column[str(var.column)].append(name)
    groups: list[list[str]] = [[] for _ in range(max(len(v) for v in by_column.values()))]
    for names in by_column.values():
        for i, group in enumerate(groups):
            group.append(names[i % len(names)])
    return groups


def _format(vars_: list[str], dialect: str, entries: dict[str, Var]) -> str:
    parts = []
    for name in vars_:
        var = entries[name]
        written = f"${name}" if dialect == "nginx" else name
        quoted = var.kind in ("user", "string", "agent", "request")
        parts.append(f'"{written}"' if quoted else written)
    return " ".join(parts)


def _lines(plan: FormatPlan, rng: random.Random) -> list[bytes]:
    lines = []
    for i in range(LINES_PER_FORMAT):
        values = []
        for f in plan.fields:
            if (f.kind, f.scale) in TIMES:
                values.append(TIMES[(f.kind, 1e-3 if "msec" in f.var and f.scale == 1e-3 else f.scale)])
                continue
            choices = VALUES.get(f.kind, ["-"]) + (MULTI.get(f.kind, []) if f.multi else [])
            values.append(rng.choice(choices))
        line = plan.literals[0] + b"".join(
            v.encode() + lit for v, lit in zip(values, plan.literals[1:], strict=True)
        )
        lines.append(line if i % 10 else rng.choice(JUNK))
    return lines


def _run(tmp_path: Path, sources: list[tuple[str, str, FormatPlan]]) -> None:
    """One run over ``sources`` (dialect, format string, plan): each source's file, then the output
    compared, row for row, with the reference's rows of every source."""
    rng = random.Random(5)
    tmp_path.mkdir(exist_ok=True)
    config = ["[run]", f'output = "{tmp_path / "out"}"', "max_reject_ratio = 1", 'progress = "off"']
    expected: list[dict[str, Any]] = []
    columns: dict[str, pa.DataType] = {}
    for k, (dialect, fmt, plan) in enumerate(sources):
        lines = _lines(plan, rng)
        path = tmp_path / f"in{k}.log"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        rows, _ = plan_reference(plan, lines)
        assert len(rows) > LINES_PER_FORMAT // 2, fmt
        expected += rows
        columns |= dict(plan.columns())
        config += ["[[run.sources]]", f'inputs = ["{path}"]', f"format = {{{dialect} = '{fmt}'}}"]
    (tmp_path / "run.toml").write_text("\n".join(config) + "\n")
    proc = run_cli("run", "--config", str(tmp_path / "run.toml"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = read_output(tmp_path / "out")
    assert set(table.column_names) == {*columns, "date"}
    got = batch_rows(table.drop_columns(["date"]).combine_chunks().to_batches()[0])
    want = [{c: row.get(c) for c in table.column_names if c != "date"} for row in expected]
    assert sorted(map(repr, got)) == sorted(map(repr, want))


@pytest.mark.timeout(300)
def test_every_nginx_variable_through_a_run(tmp_path: Path) -> None:
    groups = _spread(NGINX_VARIABLES)
    assert len(groups) == 3  # one per time variable
    sources = []
    for group in groups:
        fmt = _format(group, "nginx", NGINX_VARIABLES)
        sources.append(("nginx", fmt, compile_nginx(fmt)))
    assert {v for _, _, p in sources for v in (f.var.lstrip("$") for f in p.fields)} == set(NGINX_VARIABLES)
    _run(tmp_path, sources)


@pytest.mark.timeout(300)
def test_every_apache_directive_through_a_run(tmp_path: Path) -> None:
    # %{tid}P (a number) and %{hextid}P (hex, a string) both make tid: they cannot share a run
    entries = {d: v for d, v in APACHE_DIRECTIVES.items() if d != "%{hextid}P"}
    sources = []
    for group in _spread(entries):
        fmt = _format(group, "apache", entries)
        sources.append(("apache", fmt, compile_apache(fmt)))
    assert {f.var for _, _, p in sources for f in p.fields} == set(entries)
    _run(tmp_path / "a", sources)
    fmt = '%t %{hextid}P "%r" %>s'
    _run(tmp_path / "b", [("apache", fmt, compile_apache(fmt))])
