"""Correctness: every contender's output against the reference peer's, as sorted tables.

Both outputs are read in one schema, the pipeline's own (the built-in ``combined`` plan's)
plus the ``date`` partition read back from the folder names; counts are checked against the input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench import log
from bench.datasets import Dataset
from bench.runners import RunResult
from pipeline.formats.spec import builtin

# The columns every contender writes. ``request`` is logpipe's own (the request line of a row whose
# request does not split into method, path and protocol, as nginx logs a 400): the peers drop such
# lines, so it is not compared (the yardstick's lines all split: it is null in every row).
COMMON_SCHEMA = pa.schema([f for f in builtin("combined").schema() if f.name != "request"]).append(
    pa.field("date", pa.string())
)
Output = tuple[pa.Table, list[str]]


@dataclass
class CheckResult:
    """Outcome of comparing one contender's output with the reference's."""

    contender: str
    reference: str
    verdict: str  # MATCH, MISMATCH or NOT CHECKED
    rows: int | None
    rejected: int | None
    ref_rows: int | None
    ref_rejected: int | None
    output_rows: int | None = None
    ref_output_rows: int | None = None
    details: list[str] = field(default_factory=list)


def load_output(root: Path) -> Output:
    """A hive-partitioned Parquet output as one table in ``COMMON_SCHEMA``, and notes on what was cast.

    Files under a name starting with ``_`` or ``.`` (a peer's ``_SUCCESS``) are skipped. ``date`` comes
    from the ``date=...`` folder; a ``date`` column inside a file (polars' eager writer keeps one) is
    checked against it and dropped. Extra columns (another format's) are ignored.
    """
    notes: set[str] = set()
    casts: dict[str, list[str]] = {}  # "from -> to": columns
    tables = []
    files = [
        p
        for p in sorted(root.rglob("*.parquet"))
        if not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
    ]
    if not files:
        raise ValueError(f"no Parquet files under {root}")
    for p in files:
        rel = p.relative_to(root)
        parts = dict(part.split("=", 1) for part in rel.parent.parts if "=" in part)
        if "date" not in parts:
            raise ValueError(f"{rel} is not under a date=YYYY-MM-DD folder")
        date = unquote(parts["date"])
        t = pq.read_table(p)
        if "date" in t.column_names:
            inside = t.column("date").cast(pa.string())
            if t.num_rows and not pc.all(pc.equal(inside, date)).as_py():
                notes.add(f"WARNING: the 'date' column inside {rel} disagrees with its folder")
            notes.add("files contain a 'date' column (dropped; the folder name is used)")
            t = t.drop_columns(["date"])
        t = t.append_column("date", pa.array([date] * t.num_rows, pa.string()))
        cols = []
        for fld in COMMON_SCHEMA:
            if fld.name not in t.column_names:
                raise ValueError(f"column {fld.name!r} missing in {rel} (has {', '.join(t.column_names)})")
            col = t.column(fld.name)
            if col.type != fld.type:
                names = casts.setdefault(f"{col.type} -> {fld.type}", [])
                names += [fld.name] if fld.name not in names else []
                col = col.cast(fld.type)
            cols.append(col)
        tables.append(pa.Table.from_arrays(cols, schema=COMMON_SCHEMA))
    notes |= {f"cast {kind}: {', '.join(names)}" for kind, names in casts.items()}
    return pa.concat_tables(tables).combine_chunks(), sorted(notes)


def _row_keys(t: pa.Table) -> pa.Array:
    """One string per row joining all columns (nulls marked), for set differences of rows."""
    parts = [pc.fill_null(t.column(n).cast(pa.string()), "\x00NULL") for n in t.column_names]
    return pc.binary_join_element_wise(*parts, "\x1f")


def _differences(a: pa.Table, b: pa.Table, name_a: str, name_b: str, examples: int = 5) -> list[str]:
    """Where two sorted tables differ: per column the first differing row, and rows only in one."""
    d = [f"table differs: {name_a} has {a.num_rows} rows, {name_b} has {b.num_rows}"]
    if a.num_rows == b.num_rows:
        for n in COMMON_SCHEMA.names:
            ca, cb = a.column(n), b.column(n)
            same = pc.or_(pc.fill_null(pc.equal(ca, cb), False), pc.and_(pc.is_null(ca), pc.is_null(cb)))
            if nbad := a.num_rows - (pc.sum(same).as_py() or 0):
                i = pc.index(same, False).as_py()
                va, vb = ca[i].as_py(), cb[i].as_py()
                d.append(f"  column {n}: {nbad} differing rows; first at {i}: {va!r} vs {vb!r}")
    ka, kb = _row_keys(a), _row_keys(b)
    only_a = pc.indices_nonzero(pc.invert(pc.is_in(ka, value_set=kb))).to_pylist()
    only_b = pc.indices_nonzero(pc.invert(pc.is_in(kb, value_set=ka))).to_pylist()
    d.append(f"  rows only in {name_a}: {len(only_a)}; rows only in {name_b}: {len(only_b)}")
    for name, t, idx in ((name_a, a, only_a), (name_b, b, only_b)):
        d += [
            f"    {name} only: {json.dumps(row, default=str)}"
            for row in t.take(pa.array(idx[:examples], pa.int64())).to_pylist()
        ]
    if not only_a and not only_b:
        d.append("  (same distinct rows, different multiplicities: duplicated or missing copies)")
    return d


def compare_outputs(run: RunResult, ref: RunResult, data: Dataset, cache: dict[str, Output]) -> CheckResult:
    """Compare ``run``'s output folder with ``ref``'s: counts, then sorted tables in a common schema.

    ``cache`` keeps loaded outputs by folder, so the reference is read once for several contenders.
    """
    res = CheckResult(run.label, ref.label, "MISMATCH", run.rows, run.rejected, ref.rows, ref.rejected)
    d = res.details
    try:
        for folder in (run.outdir, ref.outdir):
            if folder not in cache:
                cache[folder] = load_output(Path(folder))
    except (OSError, ValueError, pa.ArrowException) as exc:
        d.append(f"could not read the outputs: {exc}")
        return res
    (a, notes_a), (b, notes_b) = cache[run.outdir], cache[ref.outdir]
    d += [f"{run.label}: {n}" for n in notes_a] + [f"{ref.label}: {n}" for n in notes_b]
    res.output_rows, res.ref_output_rows = a.num_rows, b.num_rows
    problems = [
        f"{r.label} reports rows={r.rows} but its output holds {t.num_rows} rows"
        for r, t in ((run, a), (ref, b))
        if r.rows is not None and r.rows != t.num_rows
    ]
    if run.rejected != ref.rejected:
        problems.append(f"rejected differs: {run.label}={run.rejected} {ref.label}={ref.rejected}")
    if run.lines is not None and run.lines != data.lines:
        problems.append(f"{run.label} manifest lines={run.lines} but the input has {data.lines} lines")
    if run.rows is not None and run.rejected is not None and run.rows + run.rejected != data.lines:
        problems.append(f"{run.label}: rows + rejected = {run.rows + run.rejected} != {data.lines} lines")
    d += problems
    keys = [(n, "ascending") for n in COMMON_SCHEMA.names]
    a, b = a.sort_by(keys), b.sort_by(keys)
    tables_ok = a.equals(b)
    if not tables_ok:
        d += _differences(a, b, run.label, ref.label)
    res.verdict = "MATCH" if not problems and tables_ok else "MISMATCH"
    return res


def run_checks(runs: list[RunResult], ref_label: str, dataset: Dataset) -> list[CheckResult]:
    """Compare every round-1 output with the reference peer's round-1 output."""
    first = {r.label: r for r in runs if r.round == 1}
    ref = first.get(ref_label)
    checks: list[CheckResult] = []
    cache: dict[str, Output] = {}
    for label, r in first.items():
        if label == ref_label:
            continue
        if ref is None or not ref.ok or not r.ok:
            res = CheckResult(label, ref_label, "NOT CHECKED", r.rows, r.rejected, None, None)
            why = "run failed" if ref is not None and ref.ok else f"reference {ref_label} failed"
            res.details.append(f"{why}; output not checked")
        else:
            log(f"checking {label} against {ref_label} ...")
            res = compare_outputs(r, ref, dataset, cache)
        log(f"  {label} vs {ref_label}: {res.verdict}")
        checks.append(res)
    return checks
