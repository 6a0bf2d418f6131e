"""The run report's data: what the manifest keeps, plus the pictures' raw material.

The manifest holds the numbers (stages, verdicts, counts). Beside it, ``report.json`` (committed runs,
in ``OUTPUT.meta/current/``) and ``last-report.json`` (the latest run, whatever its outcome) hold what
only the report draws: every worker's intervals, the samples of counts and queue depths, reject
examples and the access-log panels. :func:`report_data` joins the two into the dict that
:func:`pipeline.report.html.render` draws, for ``logpipe run --report`` and for ``logpipe report``
on an earlier run.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pyarrow as pa

from pipeline.output.dataset import read_json
from pipeline.output.layout import CURRENT, LAST_REPORT, LAST_RUN, MANIFEST, PARTITION, REPORT, Layout
from pipeline.output.manifest import Extras, Manifest, as_manifest

EXAMPLES_PER_REASON = 3
PANELS_NOTE = "not collected by this run: they are with logpipe run --report FILE, or run.panels = true"
ENCODE_ROWS = 4096  # rejects in a chunk above which their reasons are grouped by Arrow (see _reason_codes)
RAW_CHARS = 300  # of a rejected line shown in the report: enough to see what is wrong with it


class RejectExamples:
    """The first few rejected lines of each reason, kept as they pass through the write stage."""

    def __init__(self, per_reason: int = EXAMPLES_PER_REASON):
        self.per_reason = per_reason
        self.rows: list[dict[str, Any]] = []
        self._per: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, path: str, rejects: pa.RecordBatch) -> None:
        """Take examples from a chunk's rejects (columns line, reason, raw) for reasons still short."""
        if rejects.num_rows == 0:
            return
        names, codes = _reason_codes(rejects.column("reason"))
        wanted: list[int] = []
        with self._lock:
            for code, reason in enumerate(names):
                need = self.per_reason - self._per.get(reason, 0)
                if need > 0:
                    found = np.flatnonzero(codes == code)[:need]
                    self._per[reason] = self._per.get(reason, 0) + len(found)
                    wanted += found.tolist()
        if not wanted:
            return
        lines, raws = rejects.column("line"), rejects.column("raw")
        with self._lock:
            for k in sorted(wanted):
                raw = bytes(raws[k].as_py() or b"")[: RAW_CHARS * 4].decode("utf-8", errors="replace")
                row = {
                    "file": path,
                    "line": lines[k].as_py(),
                    "reason": names[codes[k]],
                    "raw": raw[:RAW_CHARS],
                }
                self.rows.append(row)

    def to_list(self) -> list[dict[str, Any]]:
        """The examples, by file and line."""
        with self._lock:
            return sorted(self.rows, key=lambda r: (r["file"], r["line"]))


def _reason_codes(reasons: pa.Array) -> tuple[list[str], np.ndarray]:
    """The distinct reasons of a chunk's rejects and each reject's index into them.

    A chunk of blank lines has a reject per line: Arrow groups those without a Python string per
    reject. Fewer rejects (what real logs have) are grouped in Python, which spares the main process
    importing ``pyarrow.compute`` for them (a noticeable share of a short run's start-up).
    """
    if len(reasons) > ENCODE_ROWS:
        encoded = reasons.dictionary_encode()
        codes = np.frombuffer(encoded.indices.buffers()[1], dtype=np.int32)[: len(encoded)]
        return encoded.dictionary.to_pylist(), codes
    index: dict[str, int] = {}
    listed = [index.setdefault(r, len(index)) for r in reasons.to_pylist()]
    return list(index), np.array(listed, dtype=np.int32)


def report_data(manifest: Manifest, extras: Extras | None) -> dict[str, Any]:
    """The dict :func:`pipeline.report.html.render` draws: the manifest's numbers and the extras. A
    section an older or a failed run's record lacks is left out (the page says so)."""
    from pipeline.diagnostics.stats import manifest_table

    stages = manifest.get("stages") or {}
    panels = extras.get("panels") if extras else None
    return {
        "run_id": manifest.get("run_id"),
        "status": manifest.get("status"),
        "exit_code": manifest.get("exit_code"),
        "started_at": manifest.get("started_at"),
        "finished_at": manifest.get("finished_at"),
        "wall_s": manifest.get("wall_s"),
        "lines": manifest.get("lines", 0),
        "rows": manifest.get("rows", 0),
        "rejected": manifest.get("rejected", 0),
        "filtered": manifest.get("filtered", 0),
        "skipped": manifest.get("skipped", 0),
        "stages": stages,
        "bottleneck": manifest.get("bottleneck"),
        "advice": [*(manifest.get("advice") or []), *(manifest.get("queue_hints") or [])],
        "table": manifest_table(manifest) if stages else "",
        "timeline": extras.get("timeline") if extras else None,
        "samples": extras.get("samples") if extras else None,
        "rejects": {
            "by_reason": manifest.get("reject_reasons") or {},
            "examples": (extras.get("reject_examples") if extras else None) or [],
        },
        "panels": panels,
        "notes": {} if panels else {"panels": PANELS_NOTE},
    }


def find_record(path: Path) -> tuple[Manifest, Extras | None]:
    """The manifest and extras of a run record: a manifest or last-run file, a record directory
    (``OUTPUT.meta/current``), a metadata directory (its committed run) or an output directory."""
    if path.is_file():
        extras_name = LAST_REPORT if path.name == LAST_RUN else REPORT
        manifest = read_json(path)
        extras = read_json(path.with_name(extras_name))
    else:
        candidates = [path / MANIFEST, path / CURRENT / MANIFEST, Layout.of(path).manifest]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(
                f"{path}: no run record here (looked for {', '.join(str(c) for c in candidates)})"
            )
        manifest = read_json(found)
        extras = read_json(found.with_name(REPORT))
    if manifest is None:
        raise ValueError(f"{path}: not a readable run record (JSON object)")
    return as_manifest(manifest), cast("Extras | None", extras)


def what_is(path: Path) -> Literal["record", "dataset"] | None:
    """Whether ``path`` is a run record (a manifest or last-run file, a record directory, a metadata
    directory) or a dataset (a directory of ``date=`` partitions, or one with a record beside it, which an
    empty dataset has); None: neither."""
    if path.is_file() or (path / MANIFEST).is_file() or (path / CURRENT / MANIFEST).is_file():
        return "record"
    if not path.is_dir():
        return None
    if any(PARTITION.fullmatch(p.name) and p.is_dir() for p in path.iterdir()):
        return "dataset"
    return "dataset" if Layout.of(path).manifest.is_file() else None
