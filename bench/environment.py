"""What the runs need besides data (the peers' venv, compiled bytecode) and what the report says about
the machine they ran on."""

from __future__ import annotations

import compileall
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from bench import BENCH_DIR, REPO, SHARED_BENCH, SetupError, log

PEERS_VENV = BENCH_DIR / "peers-venv"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
PEER_PACKAGES = ["pandas", "pyarrow", "duckdb", "polars", "dask[bag,dataframe]"]


def ensure_bytecode() -> None:
    """Compile the pipeline package's bytecode, as any pip-installed package (the peers') has.

    The project is installed editable, so its modules are compiled on first import; with
    ``PYTHONDONTWRITEBYTECODE=1`` in the environment (many containers) that would happen in every
    process of every run (~0.2 CPU-s per run), a cost no installed package pays.
    """
    if not compileall.compile_dir(REPO / "pipeline", quiet=1):
        raise SetupError("could not compile the pipeline package")


def known_peers() -> list[str] | None:
    """Peer names defined in ``peers.py`` (its ``PEERS = {...}`` dict), or None if unreadable."""
    try:
        text = (SHARED_BENCH / "peers.py").read_text()
    except OSError:
        return None
    m = re.search(r"^PEERS\s*=\s*\{(.*?)\}", text, re.S | re.M)
    return re.findall(r"[\"'](\w+)[\"']\s*:", m.group(1)) if m else None


def ensure_peers_venv() -> None:
    """Create ``.bench/peers-venv`` with the peers' packages unless it already imports them."""
    probe = [str(PEERS_PYTHON), "-c", "import pandas, pyarrow, duckdb, polars"]
    if PEERS_PYTHON.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return
    install_log = BENCH_DIR / "peers-venv-install.log"
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    log(f"setting up {PEERS_VENV} (pip install {' '.join(PEER_PACKAGES)}; log in {install_log})")
    steps = [[str(PEERS_PYTHON), "-m", "pip", "install", *PEER_PACKAGES]]
    if not PEERS_PYTHON.exists():
        steps.insert(0, [shutil.which("python3") or sys.executable, "-m", "venv", str(PEERS_VENV)])
    with install_log.open("w") as out:
        for cmd in steps:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
            if rc != 0:
                tail = install_log.read_text()[-2000:]
                raise SetupError(f"setting up the peers venv failed: {shlex.join(cmd)} (rc={rc})\n{tail}")


def _peer_versions() -> dict[str, str]:
    """Versions of the peers' packages, from their venv."""
    if not PEERS_PYTHON.exists():
        return {}
    code = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        "for d in ('polars', 'pyarrow', 'duckdb', 'pandas', 'dask'):\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    proc = subprocess.run([str(PEERS_PYTHON), "-c", code], capture_output=True, text=True, check=False)
    try:
        return {str(k): str(v) for k, v in json.loads(proc.stdout).items()}
    except (ValueError, AttributeError):
        return {}


def _version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> str:
    """``HEAD`` of the repo, with ``+dirty`` if tracked files changed (read-only git calls)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        dirty = git("status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no commit yet?)"
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, OS, interpreters and library versions."""
    vm = psutil.virtual_memory()
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": round(vm.total / 2**30, 1),
        "ram_available_gb": round(vm.available / 2**30, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "project": {d: _version_of(d) for d in ("logpipe", "pyarrow", "pandas", "psutil")},
        "peers": _peer_versions(),
        "git": git_revision(),
    }
