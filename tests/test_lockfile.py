"""The lock files: every dependency pinned, the run's pins equal to the tests', and the venv built from
them (a Dask cluster's workers install ``requirements.lock`` and must run what the driver runs)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

from tests.conftest import ROOT

PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", re.MULTILINE)


def pins(name: str) -> dict[str, str]:
    return {_norm(k): v for k, v in PIN.findall((ROOT / name).read_text())}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(spec: str) -> str:
    return _norm(re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0])


def test_every_dependency_is_pinned_and_the_run_pins_equal_the_tests() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    run, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {_requirement(d) for d in project["dependencies"]} <= set(run)
    assert {_requirement(d) for d in project["optional-dependencies"]["dev"]} <= set(dev)
    assert {k: dev.get(k) for k in run} == run  # what a worker installs is what the tests ran with


def test_the_venv_runs_the_locked_versions() -> None:
    installed = {}
    for name in pins("requirements-dev.lock"):
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed[name] = "missing"
    assert installed == pins("requirements-dev.lock")
