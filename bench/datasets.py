"""Input data sets: generated once, cached in ``.bench/data``, measured, and read into the page cache."""

from __future__ import annotations

import gzip
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import BENCH_DIR, REPO, SHARED_BENCH, SetupError, log

GENERATOR = SHARED_BENCH / "gen_access_logs.py"


@dataclass
class Dataset:
    """One generated input data set and its sizes."""

    name: str
    path: Path
    files: list[str]
    lines: int
    bytes_on_disk: int
    bytes_uncompressed: int
    gzip: bool
    generator: str


def data_files(path: Path) -> list[Path]:
    """The log files of a data set directory, sorted (the peers take ``*.log*``)."""
    return sorted(p for p in path.glob("*.log*") if p.is_file())


def generate(dest: Path, files: int, lines: int, use_gzip: bool, logpipe: Path, fmt: str) -> str:
    """Generate a data set into ``dest`` (into a temporary folder, then renamed); returns the generator.

    Uses the yardstick generator when ``../shared/bench`` exists, else ``logpipe sample`` (combined only).
    """
    if not GENERATOR.is_file() and (fmt != "combined" or not logpipe.exists()):
        raise SetupError(f"{GENERATOR} is missing: no way to generate {fmt} data")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    if GENERATOR.is_file():
        cmd = [sys.executable, str(GENERATOR), str(tmp), "--files", str(files), "--lines", str(lines)]
        cmd += (["--gzip"] if use_gzip else []) + (["--format", fmt] if fmt != "combined" else [])
        generator = "shared/bench/gen_access_logs.py"
    else:
        log(f"warning: {SHARED_BENCH} not found, generating data with `logpipe sample`")
        cmd = [str(logpipe), "sample", "--output", str(tmp), "--files", str(files), "--lines", str(lines)]
        cmd += ["--compression", "gzip"] if use_gzip else []
        generator = "logpipe sample"
    log(f"generating {dest.name}: {shlex.join(cmd)}")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not data_files(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        raise SetupError(f"data generation failed (rc={proc.returncode}): {proc.stderr.strip()[-2000:]}")
    (dest.parent / f"{dest.name}.generator").write_text(generator + "\n")
    tmp.chmod(0o755)  # mkdtemp makes it 0700
    tmp.rename(dest)
    return generator


def measure(path: Path, use_gzip: bool, generator: str) -> Dataset:
    """Sizes and line count of a data set, cached beside it in ``<name>.meta.json``.

    Every file is read either way, which also puts it in the page cache before the first timed run.
    """
    files = data_files(path)
    if not files:
        raise SetupError(f"no *.log* files in {path}; delete it to have it regenerated")
    key = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    meta_path = path.parent / f"{path.name}.meta.json"
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        meta = {}
    cached = meta.get("key") == key
    size = lines = 0
    for p in files:
        opener: Any = open if cached or not p.name.endswith(".gz") else gzip.open
        with opener(p, "rb") as f:
            last = b"\n"
            while chunk := f.read(1 << 22):
                size, lines, last = size + len(chunk), lines + chunk.count(b"\n"), chunk[-1:]
            lines += last != b"\n"  # a last line without a newline counts
    if not cached:
        meta = {"key": key, "bytes_uncompressed": size, "lines": lines}
        meta_path.write_text(json.dumps(meta))
    return Dataset(
        name=path.name,
        path=path,
        files=[p.name for p in files],
        lines=int(meta["lines"]),
        bytes_on_disk=sum(p.stat().st_size for p in files),
        bytes_uncompressed=int(meta["bytes_uncompressed"]),
        gzip=use_gzip,
        generator=generator,
    )


def ensure(files: int, lines: int, use_gzip: bool, logpipe: Path, fmt: str = "combined") -> Dataset:
    """The data set ``<files>x<lines>[-gz][-format]``, generated first if missing."""
    name = f"{files}x{lines}" + ("-gz" if use_gzip else "") + ("" if fmt == "combined" else f"-{fmt}")
    path = BENCH_DIR / "data" / name
    marker = path.parent / f"{name}.generator"
    if path.is_dir():
        generator = marker.read_text().strip() if marker.exists() else "unknown"
    else:
        generator = generate(path, files, lines, use_gzip, logpipe, fmt)
    return measure(path, use_gzip, generator)
