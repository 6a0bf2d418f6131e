"""What a run may touch: the checks made before anything is read, created or removed.

A commit replaces the output directory as a whole (pipeline.output.record), so the output must be logpipe's:

* not ``/``, not the current directory (or one above it), not an input, not the config file's folder,
  and none of them inside it (:func:`check_paths`);
* the record's folder (``run.meta_dir``) neither the output nor inside it, and the report not inside
  the dataset (:func:`check_paths`: configuration errors);
* an existing output holds nothing but what logpipe writes: ``date=YYYY-MM-DD/part-RUN-wK-SEQ.parquet``
  (:func:`foreign_entries`); an existing record is logpipe's and describes this output, not another
  one sharing the folder (:func:`check_record`).

The dataset is recognised by its layout, which names every file after the run that wrote it, so a
dataset whose record was deleted is still known as logpipe's, while a folder of the user's own files,
or another tool's Parquet dataset, is refused. Readers see nothing of this: the files are plain
Parquet with hive partitions.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import PathConflict, Refused
from pipeline.inputs.remote import is_url, local_path
from pipeline.output.dataset import walk
from pipeline.output.layout import Layout, real

SHOWN = 5  # foreign entries named in a refusal


def within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (both absolute and resolved)."""
    return path == folder or folder in path.parents


def input_base(spec: str) -> Path | None:
    """The file or folder a local input spec names (a glob: the folder before its first pattern);
    None for a URL."""
    if is_url(spec):
        return None
    spec = local_path(spec)
    if glob.has_magic(spec):
        parts = Path(spec).parts
        literal = parts[: next(i for i, p in enumerate(parts) if glob.has_magic(p))]
        return real(Path(*literal) if literal else ".")
    return real(spec)


def check_paths(layout: Layout, specs: Sequence[str], protected: Sequence[Path], report: str) -> None:
    """Refuse an output that is not logpipe's to replace, and settings whose paths collide.

    ``specs``: the input specs; ``protected``: folders the output must not hold (the config file's);
    ``report``: the HTML report's path or "".
    """
    out, meta = layout.output, layout.meta
    if out == Path(out.anchor):
        raise Refused(f"the output {out} is the root directory; set run.output to a folder of its own")
    cwd = real(".")
    if within(cwd, out):
        what = "the current directory" if cwd == out else f"the current directory {cwd}"
        raise Refused(f"the output {out} is or holds {what}; set run.output to a folder of its own")
    for folder in protected:
        if within(real(folder), out):
            raise Refused(f"the output {out} is or holds the config file's folder {real(folder)}")
    for spec in specs:
        base = input_base(spec)
        if base is not None and within(base, out):
            raise Refused(f"the output {out} is or holds the input {spec}; set run.output elsewhere")
    if meta == Path(meta.anchor):
        raise PathConflict(f"run.meta_dir {meta} is the root directory; name a folder of its own")
    if within(meta, out):
        raise PathConflict(
            f"run.meta_dir {meta} is the output or inside it: the dataset must hold only rows; "
            "leave run.meta_dir empty (OUTPUT.meta beside it) or name a folder outside the output"
        )
    if within(out, meta):
        raise PathConflict(f"the output {out} is inside run.meta_dir {meta}; name a folder outside it")
    if report:
        where = real(report)
        if within(where, out) or within(where, layout.current):
            raise PathConflict(
                f"the report {where} would be inside the dataset or its record, which every commit "
                "replaces; write it elsewhere (--report / run.report)"
            )


def foreign_entries(output: Path) -> list[str]:
    """The entries of an existing output directory that logpipe did not write (empty: it is a dataset
    or empty; an output that does not exist has none)."""
    return walk(output)[1]


def check_owned(layout: Layout, record: dict[str, Any] | None, record_id: str | None) -> None:
    """Refuse an output holding files logpipe did not write, and a record that is not logpipe's or
    describes another output. ``record``: the published manifest (None: none or unreadable);
    ``record_id``: the output directory's identity now (pipeline.output.record.dir_id)."""
    foreign = foreign_entries(layout.output)
    if foreign:
        shown = ", ".join(foreign[:SHOWN]) + (
            f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else ""
        )
        raise Refused(
            f"the output {layout.output} holds files logpipe did not write ({shown}); a run replaces the "
            "whole folder, so it leaves it alone: set run.output to a new or empty folder, or move "
            "those files out"
        )
    # a record logpipe published always has its manifest (a damaged one is rebuilt: pipeline.output.dataset)
    if layout.current.exists() and (
        not layout.manifest.is_file() or (record is not None and record.get("program") != "logpipe")
    ):
        raise Refused(f"{layout.current} is not a logpipe record; set run.meta_dir to a folder of its own")
    if record is None or layout.meta == Layout.of(layout.output).meta:
        return  # OUTPUT.meta is this output's by its name (a dataset moved with its record included)
    described = record.get("dataset")
    if (
        isinstance(described, str)
        and real(described) != layout.output
        and record.get("dataset_id") != record_id
        and Path(described).is_dir()  # the other output is still there: moved, it would be gone
    ):
        raise PathConflict(
            f"run.meta_dir {layout.meta} holds the record of another output, {described}: give each "
            "output its own run.meta_dir (or leave it empty: OUTPUT.meta beside each output)"
        )


def own_files(layout: Layout, specs: Sequence[str], files: Iterable[str]) -> tuple[list[str], list[str]]:
    """``files`` without those of the dataset and its record, which an input folder holding the output
    would list; and the skipped ones. (The runs' work folders and lock files are hidden: input folders
    and globs skip hidden names.)"""
    out, meta = layout.output, layout.meta
    bases = [b for b in (input_base(s) for s in specs) if b is not None]
    if not any(within(out, b) or within(meta, b) for b in bases):
        return list(files), []
    kept: list[str] = []
    skipped: list[str] = []
    for f in files:
        p = None if is_url(f) else real(f)
        mine = p is not None and (within(p, out) or within(p, meta))
        (skipped if mine else kept).append(f)
    return kept, skipped
