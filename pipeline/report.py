"""The human-readable run summary (untrusted text in it goes through :func:`safe_text`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.stats import format_table
from pipeline.text import safe_text
from pipeline.write import REJECTS_DIR

_PREVIEW_CHARS = 160


def summary(manifest: dict[str, Any], preview: int = 5) -> str:
    """The text printed after a run: counts, reject reasons, failed inputs, the stage table."""
    out = Path(str(manifest["config"]["run"]["output"]))
    lines = [
        f"logpipe {manifest['version']} run {manifest['run_id']}: {manifest['status']}"
        + ("" if manifest["committed"] else " (nothing committed; previous output untouched)"),
        f"lines read {manifest['lines']:,}  rows written {manifest['rows']:,}"
        f"  rejected {manifest['rejected']:,}  in {manifest['wall_s']:.2f} s",
    ]
    if manifest.get("error"):
        lines.append(f"error: {safe_text(manifest['error'])}")
    if manifest["reject_reasons"]:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in manifest["reject_reasons"].items())
        lines.append(f"rejects by reason: {reasons}")
    modes: dict[str, int] = {}
    for entry in manifest["inputs"]:
        modes[entry["mode"]] = modes.get(entry["mode"], 0) + 1
    if modes and set(modes) != {"new"}:
        lines.append("inputs: " + ", ".join(f"{n} {mode}" for mode, n in sorted(modes.items())))
    for path in manifest["failed_inputs"]:
        err = next((i["error"] for i in manifest["inputs"] if i["path"] == path), None)
        lines.append(f"input failed: {safe_text(path)}: {safe_text(str(err))}")
    if manifest["committed"]:
        lines.append(f"output: {out} ({len(manifest['outputs'])} files)")
        if manifest["rejected"] and preview:
            lines += _reject_preview(out / REJECTS_DIR, preview)
    lines += ["", format_table(manifest["stages"])]
    return "\n".join(lines)


def _reject_preview(folder: Path, n: int) -> list[str]:
    # pyarrow.parquet, not pyarrow.dataset: the latter imports pandas, a quarter second per run
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        if len(rows) >= n:
            break
        columns = ["file", "line", "reason", "raw"]
        first = next(pq.ParquetFile(path).iter_batches(batch_size=n - len(rows), columns=columns), None)
        if first is not None:
            rows += first.to_pylist()
    if not rows:
        return []
    out = [f"first rejects (all in {folder}):"]
    for r in rows:
        raw = safe_text(r["raw"], _PREVIEW_CHARS)
        out.append(f"  {safe_text(r['file'])}:{r['line']}: {r['reason']}: {raw}")
    return out
