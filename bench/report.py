"""The report: medians per contender as markdown tables, and the pipeline's own stage table.

The stage table is :func:`pipeline.diagnostics.stats.manifest_table`, the one ``logpipe run``
prints, so a change there shows here too.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from bench import MB, REPO, emit
from bench.datasets import Dataset
from bench.runners import RunResult
from pipeline.diagnostics.stats import manifest_table
from pipeline.output.manifest import as_manifest

POLARS = ("polars", "polars_lazy")  # the ratio column is against the faster of these


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table; columns whose cells all look numeric are right-aligned."""
    body = [[str(c) for c in row] for row in rows]
    cols = list(zip(headers, *body, strict=True))
    widths = [max(map(len, col)) for col in cols]
    right = [bool(body) and all(re.fullmatch(r"[-+0-9.,x%]+", c) for c in col[1:]) for col in cols]

    def line(cells: Sequence[str]) -> str:
        padded = (c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True))
        return "| " + " | ".join(padded) + " |"

    rules = ("-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right, strict=True))
    sep = "|" + "|".join(rules) + "|"
    return "\n".join([line(headers), sep, *map(line, body)])


def num(value: Any, digits: int = 2) -> str:
    """A number with thousands separators, or '-' if it isn't one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{value:,.0f}" if isinstance(value, int) or digits == 0 else f"{value:,.{digits}f}"


def median_run(runs: list[RunResult]) -> RunResult:
    """The run whose wall time is the (lower) median."""
    return sorted(runs, key=lambda r: r.wall_s)[(len(runs) - 1) // 2]


def summarise(runs: list[RunResult], dataset: Dataset) -> dict[str, dict[str, Any]]:
    """Per contender label: medians and derived throughputs of its successful runs."""
    out: dict[str, dict[str, Any]] = {}
    for label in dict.fromkeys(r.label for r in runs):
        mine = [r for r in runs if r.label == label]
        ok = [r for r in mine if r.ok]
        s: dict[str, Any] = {"runs": len(mine), "ok_runs": len(ok), "failed": len(mine) - len(ok)}
        if ok:
            med = statistics.median(r.wall_s for r in ok)
            s |= {
                "median_s": med,
                "min_s": min(r.wall_s for r in ok),
                "max_s": max(r.wall_s for r in ok),
                "lines_per_s": dataset.lines / med,
                "mb_per_s": dataset.bytes_uncompressed / MB / med,
                "mb_per_s_compressed": dataset.bytes_on_disk / MB / med if dataset.gzip else None,
                "median_cpu_s": statistics.median(r.cpu_s for r in ok),
                "median_peak_mem_mb": statistics.median(r.peak_mem_bytes for r in ok) / MB,
                "max_peak_mem_mb": max(r.peak_mem_bytes for r in ok) / MB,
                "rows": ok[0].rows,
                "rejected": ok[0].rejected,
            }
            parse_lps = [r.manifest["stages"]["parse"]["lines_per_s"] for r in ok if r.manifest]
            if parse_lps:
                s["median_parse_lines_per_s"] = statistics.median(parse_lps)
        out[label] = s
    return out


def contender_table(summary: dict[str, dict[str, Any]], dataset: Dataset) -> str:
    """The main results table, with the ratio to the faster polars peer."""
    meds = [summary[p]["median_s"] for p in POLARS if "median_s" in summary.get(p, {})]
    best = min(meds) if meds else None
    rows = [
        [
            label,
            f"{s['ok_runs']}/{s['runs']}",
            num(s.get("median_s")),
            num(s.get("min_s")),
            num(s.get("lines_per_s"), 0),
            num(s.get("mb_per_s"), 1),
            num(s.get("median_cpu_s")),
            num(s.get("median_peak_mem_mb"), 0),
            f"{best / s['median_s']:.2f}x" if best and s.get("median_s") else "-",
        ]
        for label, s in summary.items()
    ]
    headers = ["contender", "ok", "median s", "min s", "lines/s", "MB/s", "cpu s", "peak tree MB"]
    gz = f" ({dataset.bytes_on_disk / MB:.1f} MB gzip on disk)" if dataset.gzip else ""
    return (
        md_table([*headers, "polars-best/it"], rows)
        + f"\n\nMB/s of uncompressed input{gz}; MB = 10^6 bytes; cpu s = user+sys of the whole tree;"
        " peak tree MB = median over runs of the peak summed PSS; polars-best/it = best polars median /"
        " its median (>1: faster than polars)."
    )


def scaling_report(summary: dict[str, dict[str, Any]]) -> str:
    """The ``--scaling`` variants and their ratios to the variant with 1 worker of the same stage."""
    rows, base = [], {}
    for label, s in summary.items():
        m = re.search(r"\[(\w+)\.workers=(\d+)\]", label)
        stage, n = (m.group(1), int(m.group(2))) if m else ("?", 0)
        if n == 1:
            base[stage] = s
        b = base.get(stage, {})
        med, bmed = s.get("median_s"), b.get("median_s")
        lps, blps = s.get("median_parse_lines_per_s"), b.get("median_parse_lines_per_s")
        rows.append(
            [
                label,
                f"{s['ok_runs']}/{s['runs']}",
                num(med),
                num(s.get("min_s")),
                num(s.get("lines_per_s"), 0),
                num(lps, 0),
                f"{lps / blps:.2f}x" if lps and blps else "-",
                f"{bmed / med:.2f}x" if med and bmed else "-",
                num(s.get("median_peak_mem_mb"), 0),
            ]
        )
    headers = ["variant", "ok", "median s", "min s", "lines/s", "parse lines/s", "parse vs 1", "total vs 1"]
    text = md_table([*headers, "peak MB"], rows)
    p1 = summary.get("pipeline [parse.workers=1]", {}).get("median_parse_lines_per_s")
    p2 = summary.get("pipeline [parse.workers=2]", {}).get("median_parse_lines_per_s")
    if p1 and p2:
        text += f"\n\nparse stage lines/s, 2 workers / 1 worker: {p2 / p1:.2f}x"
    return text


def stage_table(manifest: dict[str, Any]) -> str:
    """The pipeline's stage table of one run, as ``logpipe run`` prints it (a code block in markdown)."""
    return f"```\n{manifest_table(as_manifest(manifest))}\n```"


def print_header(info: dict[str, Any], command: str, started: str, dataset: Dataset) -> None:
    """When, where and what: date, exact command, machine and data set."""
    proj = ", ".join(f"{k} {v}" for k, v in info["project"].items() if v)
    peers = ", ".join(f"{k} {v}" for k, v in info["peers"].items())
    emit(f"# logpipe benchmark, {started}\n")
    emit(f"- command: `{command}`")
    emit(f"- git: {info['git']}")
    emit(
        f"- machine: {info['cpu_model']}, {info['logical_cores']} logical /"
        f" {info['physical_cores']} physical cores, {info['ram_gb']} GiB RAM, load avg {info['loadavg']}"
    )
    emit(f"- os: {info['os']}; python {info['python']}; {proj}")
    if peers:
        emit(f"- peers venv: {peers}")
    emit(f"- cpu s: {info['cpu_accounting']}; memory: peak of the tree's summed PSS, {info['memory_runs']}")
    comp = f", {dataset.bytes_on_disk / MB:.1f} MB gzip on disk" if dataset.gzip else ""
    emit(
        f"- data: {dataset.path.relative_to(REPO)} ({len(dataset.files)} files, {dataset.lines:,} lines,"
        f" {dataset.bytes_uncompressed / MB:.1f} MB uncompressed{comp}; generator: {dataset.generator})\n"
    )
