"""The human-readable run summary (untrusted text in it goes through :func:`safe_text`)."""

from __future__ import annotations

import re
from typing import Any

import pyarrow.parquet as pq

from pipeline.diagnostics.stats import manifest_table
from pipeline.errors import ExitCode
from pipeline.output.manifest import Manifest
from pipeline.text import safe_text

_PREVIEW_CHARS = 160

# The first line of the summary, by the manifest's status.
HEADERS = {
    "ok": "ok",
    "unchanged": "nothing new since the last run; the output is unchanged",
    "no_input": "no input lines read",
    "format_mismatch": "stopped: the lines do not match the configured format",
    "failed": "failed",
    "interrupted": "interrupted",
    "locked": "refused: another run holds the output",
}


def header(manifest: Manifest) -> str:
    """What happened, in a few words: the status, and for exit code 3 that some inputs failed."""
    status = manifest["status"]
    if status == "ok" and manifest.get("exit_code") == ExitCode.INPUTS_FAILED:
        n = len(manifest["failed_inputs"])
        return f"finished with {n} failed input{'s' * (n != 1)}; the rest is committed"
    text = str(HEADERS.get(status, status))
    if status in ("no_input", "format_mismatch", "failed", "interrupted"):
        text += f"; {_kept(manifest)}"
    return text


def _kept(manifest: Manifest) -> str:
    if manifest.get("previous_run"):
        return "nothing committed, the previous output is kept"
    return "nothing committed (there was no previous output)"


def summary(manifest: Manifest, preview: int = 5) -> str:
    """The text printed after a run: counts, reject reasons, failed inputs, the stage table."""
    committed = manifest["committed"]
    lines = [f"logpipe {manifest['version']} run {manifest['run_id']}: {header(manifest)}"]
    if committed:
        window = f"  filtered {manifest['filtered']:,}" if manifest.get("filtered") else ""
        window += f"  skipped {manifest['skipped']:,}" if manifest.get("skipped") else ""
        lines.append(
            f"lines read {manifest['lines']:,}  rows written {manifest['rows']:,}"
            f"  rejected {manifest['rejected']:,}{window}  in {manifest['wall_s']:.2f} s"
        )
    else:  # rows parsed before a stop were never written
        lines.append(f"lines read {manifest['lines']:,}  nothing written  in {manifest['wall_s']:.2f} s")
    if manifest.get("error"):
        # our messages may span lines; each line is escaped on its own (file names in it are untrusted)
        rest = str(manifest["error"]).splitlines()[1:]
        lines += [f"error: {safe_text(_first_line(manifest['error']))}", *(safe_text(x) for x in rest)]
    if manifest["reject_reasons"]:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in manifest["reject_reasons"].items())
        lines.append(f"rejects by reason: {reasons}")
    modes: dict[str, int] = {}
    for entry in manifest["inputs"]:
        modes[entry["mode"]] = modes.get(entry["mode"], 0) + 1
    if modes and set(modes) != {"new"}:
        lines.append("inputs: " + ", ".join(f"{n} {mode}" for mode, n in sorted(modes.items())))
    for path in manifest["failed_inputs"]:
        lines.append(f"input failed: {failed_input_reason(manifest, path)}")
    if committed:
        lines.append(f"output: {manifest['dataset']} ({len(manifest['outputs'])} files)")
        if manifest["rejected"] and preview:
            lines += _reject_preview(manifest.get("rejects", []), preview)
    if manifest["status"] not in ("refused", "locked"):  # those wrote no record: they touched nothing
        lines.append(f"run record: {manifest['meta_dir']}")
    if manifest["lines"]:
        lines += ["", manifest_table(manifest)]
        if manifest.get("transforms"):
            spent = ", ".join(f"{name} {s:.2f} s" for name, s in manifest["transforms"].items())
            lines.append(f"transforms (seconds inside the parse workers, part of parse busy): {spent}")
    return "\n".join(lines)


def problems(manifest: Manifest) -> list[str]:
    """One line per problem, for ``--quiet`` (cron mails whatever is printed): each failed input, and
    why the run did not commit. Empty for a run that went well."""
    out = [f"input failed: {failed_input_reason(manifest, path)}" for path in manifest["failed_inputs"]]
    status = manifest["status"]
    if status not in ("ok", "unchanged"):
        first = safe_text(_first_line(manifest.get("error")))
        if status == "failed":
            first = f"run failed: {first}"
        if status not in ("locked", "no_input"):  # those say so themselves
            first += f"; {_kept(manifest)}"
        out.append(first)
    return out


def _first_line(error: str | None) -> str:
    """The first line of a manifest's error, without the exception's type name."""
    first = (str(error or "").splitlines() or [""])[0]
    return re.sub(r"^[A-Z]\w*: ", "", first)


def failed_input_reason(manifest: Manifest, path: str) -> str:
    """``PATH: error`` of one failed input, escaped."""
    err = next((i["error"] for i in manifest["inputs"] if i["path"] == path), None)
    return f"{safe_text(path)}: {safe_text(str(err))}"


def _reject_preview(files: list[str], n: int) -> list[str]:
    # pyarrow.parquet, not pyarrow.dataset: the latter imports pandas, a quarter second per run
    rows: list[dict[str, Any]] = []
    for path in sorted(files):
        if len(rows) >= n:
            break
        columns = ["file", "line", "reason", "raw"]
        first = next(pq.ParquetFile(path).iter_batches(batch_size=n - len(rows), columns=columns), None)
        if first is not None:
            rows += first.to_pylist()
    if not rows:
        return []
    folder = safe_text(str(files[0]).rsplit("/", 1)[0])
    out = [f"first rejects (all in {folder}):"]
    for r in rows:
        raw = safe_text(r["raw"], _PREVIEW_CHARS)
        out.append(f"  {safe_text(r['file'])}:{r['line']}: {r['reason']}: {raw}")
    return out
