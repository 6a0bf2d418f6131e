"""What the whole dataset holds: every file with its rows and size, kept in the record.

The run's manifest describes what one run did (an incremental run: only its new lines). ``dataset.json``
beside it (``OUTPUT.meta/current/dataset.json``) describes what the published dataset holds after every
commit, so that a run can check, before it appends to a dataset, that the dataset on disk is the one
its record describes, and, before it commits, that every file it staged is still there::

    {"version": 1, "output": "/abs/out", "rows": 59946, "files": 24,
     "entries": [{"path": "date=2026-11-01/part-...-w0-00000.parquet", "rows": 2497, "bytes": 81234}, ...]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.errors import PipelineError
from pipeline.inputs.incremental import FileState, load_state, plan
from pipeline.output.layout import DATA_FILE, PARTITION, Layout

VERSION = 1
SHOWN = 3  # files named per kind of difference


@dataclass(frozen=True)
class DataFile:
    """One file of the dataset: its path relative to the output, its rows and its size in bytes."""

    path: str
    rows: int
    bytes: int


@dataclass
class Contents:
    """The files of a dataset, by relative path."""

    files: dict[str, DataFile]

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files.values())

    def to_json(self, output: Path) -> dict[str, Any]:
        return {
            "version": VERSION,
            "output": str(output),
            "rows": self.rows,
            "files": len(self.files),
            "entries": [asdict(f) for f in sorted(self.files.values(), key=lambda f: f.path)],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Contents:
        """Raises ValueError (or TypeError, KeyError) for anything but a version-1 record."""
        if data.get("version") != VERSION:
            raise ValueError(f"unknown dataset record version {data.get('version')!r}")
        files = [DataFile(str(e["path"]), int(e["rows"]), int(e["bytes"])) for e in data["entries"]]
        return cls({f.path: f for f in files})


def walk(output: Path) -> tuple[dict[str, int], list[str]]:
    """The files in the partitions of ``output`` (``date=*/*``) and their sizes, and, in name order, its
    entries that are not what logpipe writes there; both empty when it does not exist."""
    found: dict[str, int] = {}
    foreign: list[str] = []
    try:
        top = sorted(os.scandir(output), key=lambda e: e.name)
    except FileNotFoundError:
        return found, foreign
    for entry in top:
        if not (PARTITION.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)):
            foreign.append(entry.name)
            continue
        for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
            rel = f"{entry.name}/{sub.name}"
            if sub.is_file(follow_symlinks=False):
                found[rel] = sub.stat(follow_symlinks=False).st_size
            if not (DATA_FILE.fullmatch(sub.name) and sub.is_file(follow_symlinks=False)):
                foreign.append(rel)
    return found, foreign


def sizes(output: Path) -> dict[str, int]:
    """The files in the partitions of ``output`` and their sizes (see :func:`walk`)."""
    return walk(output)[0]


def read_rows(output: Path, paths: Iterable[str]) -> Contents:
    """The contents of files on disk, their rows read from the Parquet footers."""
    files = {}
    for rel in paths:
        path = output / rel
        try:
            rows = pq.read_metadata(path).num_rows
            size = path.stat().st_size
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise PipelineError(f"cannot read the dataset file {path}: {exc}") from exc
        files[rel] = DataFile(rel, rows, size)
    return Contents(files)


def differences(recorded: Contents, on_disk: dict[str, int]) -> list[str]:
    """How the files on disk differ from the record: missing, replaced (another size), unknown."""
    missing = sorted(set(recorded.files) - set(on_disk))
    extra = sorted(set(on_disk) - set(recorded.files))
    changed = sorted(p for p, f in recorded.files.items() if p in on_disk and on_disk[p] != f.bytes)
    out = []
    for what, paths in (
        ("missing", missing),
        ("replaced (another size)", changed),
        ("not in the record", extra),
    ):
        if paths:
            more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
            out.append(f"{len(paths)} {what}: {', '.join(paths[:SHOWN])}{more}")
    return out


@dataclass
class Published:
    """The published dataset and its record as a run finds them, and whether it can append to them."""

    recorded: Contents | None  # what the record says the dataset holds (None: no readable record)
    on_disk: dict[str, int]  # the data files there, and their sizes
    state: dict[str, FileState] | None  # the incremental state (None: missing or unreadable)
    problem: str | None  # why an incremental run cannot append to it (None: it can)

    def held_rows(self, output: Path) -> int:
        """The rows the dataset holds: what its record says (files added by hand are not its rows), or
        when there is no readable record, what the files on disk hold."""
        if self.recorded is not None:
            return self.recorded.rows
        return read_rows(output, self.on_disk).rows if self.on_disk else 0


def inspect(layout: Layout) -> Published:
    """Read the record and list the dataset; say what is wrong, if anything, for appending."""
    out = layout.output
    on_disk = sizes(out)
    manifest = read_json(layout.manifest)
    state: dict[str, FileState] | None = None
    if layout.state.exists():
        try:
            state = load_state(layout.state, strict=True)
        except ValueError as exc:
            return Published(None, on_disk, None, f"its incremental state is unreadable: {exc}")
    if manifest is None:
        problem = None
        if layout.current.exists():
            problem = f"its record {layout.current} has no readable manifest"
        elif on_disk:
            problem = f"the dataset {out} has no record ({layout.current} is missing)"
        return Published(None, on_disk, state, problem)
    recorded: Contents | None = None
    problem = None
    data = read_json(layout.dataset)
    if data is not None:
        try:
            recorded = Contents.from_json(data)
        except (ValueError, TypeError, KeyError) as exc:
            problem = f"its record of the files ({layout.dataset}) is unreadable: {exc}"
    elif layout.dataset.exists():
        problem = f"its record of the files ({layout.dataset}) is unreadable"
    elif on_disk or manifest.get("rows"):
        problem = f"its record of the files ({layout.dataset}) is missing"
    if recorded is not None and problem is None:
        if not on_disk and recorded.rows:
            problem = (
                f"the dataset {out} is missing; its record (run {manifest.get('run_id')}) says it held "
                f"{recorded.rows:,} rows in {len(recorded.files):,} files"
            )
        elif diffs := differences(recorded, on_disk):
            problem = f"the dataset {out} is not the one its record describes ({'; '.join(diffs)})"
    if problem is None and state is None and on_disk:
        problem = f"its incremental state ({layout.state}) is missing"
    return Published(recorded, on_disk, state, problem)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None if it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def dir_id(path: Path) -> str | None:
    """``device:inode`` of a directory (the identity a rename keeps); None if it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


def shrinks(published: Published, output: Path, rows: int, inputs: list[str]) -> str | None:
    """Whether a rebuild of ``rows`` rows holds fewer than the dataset it would replace: what would be
    dropped, naming the inputs of the state that are gone (None: nothing would be)."""
    held = published.held_rows(output)
    if rows >= held:
        return None
    what = f"the dataset holds {held:,} rows and this rebuild {rows:,}: {held - rows:,} would be dropped"
    state = published.state
    if state is None:
        return f"{what}; which inputs are gone cannot be told: the incremental state is missing or unreadable"
    matched = {p.key for p in plan(inputs, state)}
    lost = sorted((e for k, e in state.items() if k not in matched), key=lambda e: e.path)
    if not lost:
        return f"{what}; no input read before is gone"
    shown = ", ".join(f"{e.path} ({e.lines:,} lines)" for e in lost[:SHOWN])
    more = f" and {len(lost) - SHOWN} more" if len(lost) > SHOWN else ""
    return f"{what}; {len(lost)} inputs read before are gone: {shown}{more}"
