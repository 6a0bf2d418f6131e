"""Incremental runs: remember what was processed, so a re-run reads only what is new.

With ``run.incremental = true`` the output directory keeps ``_state.json``: for every input processed so
far its size, modification time, a fingerprint of its first bytes (SHA-256 of up to 64 KiB, raw, as on
disk), how many decompressed bytes were consumed and how many lines they held. On the next run each
input is one of:

* ``new``: not seen before: read whole.
* ``unchanged``: same size, mtime and fingerprint: skipped.
* ``grown``: bigger, and its first bytes are the same (a log being appended to, or a gzip file with a
  member appended): read from where the last run stopped, line numbers continuing.
* ``changed``: the first bytes differ or it shrank (rotated, or rewritten): read whole again as new
  content; the rows taken from its old content stay in the output.

The previous output's files are hard-linked into the new staging directory, so the atomic swap
publishes old and new rows together, and a failed run leaves both the output and the state as they
were. An unterminated last line is left for the next run instead of being taken half-written.
``--full-refresh`` ignores the state and rebuilds everything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE = "_state.json"
FINGERPRINT_BYTES = 64 * 1024
_VERSION = 1


@dataclass
class FileState:
    """What earlier runs took from one input file."""

    size: int
    mtime_ns: int
    fp_len: int
    fingerprint: str
    offset: int  # decompressed bytes consumed
    lines: int  # lines they held


@dataclass
class Plan:
    """What this run does with one input file."""

    path: str
    mode: str  # new, unchanged, grown, changed
    start_offset: int = 0
    first_line: int = 1


def fingerprint(path: str, length: int = FINGERPRINT_BYTES) -> tuple[int, str]:
    """SHA-256 of the first ``length`` bytes of ``path`` (fewer if it is shorter), and how many."""
    with open(path, "rb") as fh:
        head = fh.read(length)
    return len(head), hashlib.sha256(head).hexdigest()


def load_state(output: Path) -> dict[str, FileState]:
    """The state kept in ``output``; empty when there is none or it cannot be read."""
    path = output / STATE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != _VERSION:
            raise ValueError(f"unknown state version {data.get('version')!r}")
        return {name: FileState(**entry) for name, entry in data["files"].items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("incremental: ignoring unreadable %s (%s); processing every input", path, exc)
        return {}


def _key(path: str) -> str:
    return os.path.abspath(path)


def plan(files: list[str], state: dict[str, FileState]) -> list[Plan]:
    """Decide, for each input, whether to skip it, continue it, or read it whole."""
    plans = []
    for path in files:
        old = state.get(_key(path))
        try:
            st = os.stat(path)
        except OSError:
            plans.append(Plan(path, "new"))  # the reader reports the error
            continue
        if old is None:
            plans.append(Plan(path, "new"))
            continue
        same_head = st.st_size >= old.fp_len and fingerprint(path, old.fp_len) == (
            old.fp_len,
            old.fingerprint,
        )
        if same_head and st.st_size == old.size and st.st_mtime_ns == old.mtime_ns:
            plans.append(Plan(path, "unchanged", old.offset, old.lines + 1))
        elif same_head and st.st_size >= old.size:
            plans.append(Plan(path, "grown", old.offset, old.lines + 1))
        else:
            plans.append(Plan(path, "changed"))
    return plans


def updated(
    state: dict[str, FileState], plans: list[Plan], offsets: list[int], lines: list[int]
) -> dict[str, Any]:
    """The state after this run: ``offsets``/``lines`` are where each input now stands."""
    files = {name: asdict(entry) for name, entry in state.items()}
    for p, offset, n in zip(plans, offsets, lines, strict=True):
        try:
            st = os.stat(p.path)
            fp_len, digest = fingerprint(p.path)
        except OSError:
            continue  # unreadable now: keep whatever was known before
        files[_key(p.path)] = asdict(FileState(st.st_size, st.st_mtime_ns, fp_len, digest, offset, n))
    return {"version": _VERSION, "files": files}


def seed_staging(output: Path, staging: Path, skip: tuple[str, ...]) -> int:
    """Hard-link (or copy, across filesystems) the previous output into ``staging``; files linked."""
    if not output.is_dir():
        return 0
    count = 0
    for src in output.rglob("*"):
        if src.is_dir() or src.name in skip:
            continue
        dst = staging / src.relative_to(output)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        count += 1
    return count
