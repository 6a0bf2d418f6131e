"""Process settings (pipeline.runtime) and the imports a run pays for, checked in fresh interpreters."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        check=False,
    )


def test_tune_process_passes_settings_to_children_and_keeps_the_users() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "OPENBLAS_", "PYDANTIC_"))}
    env["OPENBLAS_NUM_THREADS"] = "3"  # set by the user: kept
    proc = _python(
        """
        import subprocess, sys
        from pipeline.runtime import tune_process
        tune_process()
        keys = ("MALLOC_TRIM_THRESHOLD_", "OPENBLAS_NUM_THREADS", "PYDANTIC_DISABLE_PLUGINS")
        child = f"import os; print(*(os.environ[k] for k in {keys!r}))"
        print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True).stdout)
        """,
        env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(1 << 30), "3", "__all__"]


def test_a_run_never_imports_pandas(tmp_path: Path) -> None:
    # pa.array() imports pandas on first use (~0.2 s of CPU per process); the main process and the
    # fork server (whose imports every worker inherits) must not pay for it
    proc = _python(
        f"""
        import sys
        from pipeline import commands
        code = commands.run(None, ["data/sample"], {str(tmp_path / "out")!r}, ["parse.workers=1"], True)
        import pipeline.executors.warmup  # what the fork server preloads, warm-up parse included
        print(code, "pandas" in sys.modules)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "False"]


def test_a_worker_with_a_window_and_a_transform_never_imports_pandas() -> None:
    proc = _python(
        """
        import sys
        from pipeline.stages.parse import ParseTask, parse_chunk
        from pipeline.stages.read import Chunk
        from pipeline.transforms import TransformSpec
        data = open("data/sample/access-000.log", "rb").read()
        task = ParseTask(
            Chunk(0, "a.log", 0, 1, data, data.count(b"\\n")),
            since_us=1_793_577_600_000_000,  # 2026-11-02
            transforms=(TransformSpec("tests.transform_examples:noop"),),
        )
        result = parse_chunk(task)
        print(result.rows > 0, result.filtered > 0, "pandas" in sys.modules)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "False"]


def test_the_main_process_does_not_import_arrow_compute(tmp_path: Path) -> None:
    # ~30 ms on the main process's way to its first chunk; only the workers parse (inline: the
    # main process parses, and then it does need it)
    proc = _python(
        f"""
        import sys
        from pipeline import commands
        code = commands.run(None, ["data/sample"], {str(tmp_path / "out")!r}, ["parse.workers=1"], True)
        before = "pyarrow.compute" in sys.modules
        commands.run(None, ["data/sample"], {str(tmp_path / "out")!r}, ['parse.executor="inline"'], True)
        print(code, before, "pyarrow.compute" in sys.modules)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "False", "True"]


def test_arrow_uses_the_system_allocator_unless_the_user_chose() -> None:
    code = """
        from pipeline.runtime import tune_process
        tune_process()
        import pyarrow
        print(pyarrow.default_memory_pool().backend_name)
        """
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    assert _python(code, env).stdout.split() == ["system"]
    assert _python(code, {**env, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}).stdout.split() == ["mimalloc"]


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; malloc_trim is glibc's")
def test_release_free_heap_gives_freed_pages_back_at_most_once_per_interval() -> None:
    # With the run's heap settings, memory freed by a thread stays resident until released; the
    # release is throttled across threads. In a fresh interpreter: glibc's state is the test's own.
    proc = _python(
        """
        import threading
        from pipeline.runtime import release_free_heap, tune_process
        tune_process()

        def rss_mb():
            return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e6

        keep = []

        def churn():  # what the main process's threads do: buffers of varying size, freed, and
            # small objects that live on between them, so the freed space is holes, not the heap's top
            blocks = []
            for i in range(50):
                blocks.append(bytes(bytearray((1 << 20) + 4096 * (i % 7))))
                keep.append(bytes(bytearray(2000)))
            del blocks

        thread = threading.Thread(target=churn)
        thread.start()
        thread.join()
        before = rss_mb()
        first = release_free_heap(0.0)
        after = rss_mb()
        print(first, release_free_heap(60.0), round(before - after))
        """
    )
    assert proc.returncode == 0, proc.stderr
    ran, throttled, released_mb = proc.stdout.split()
    if ran == "False":
        pytest.skip("no malloc_trim in this C library (musl)")
    assert throttled == "False"
    assert int(released_mb) > 30  # of the ~50 MB freed


def test_a_transform_keeps_arrow_compute_out_of_the_main_process(tmp_path: Path) -> None:
    # the main process runs the transforms on an empty table to learn the output's columns
    (tmp_path / "noop_mod.py").write_text(
        "import pyarrow as pa\n\ndef noop(t: pa.Table) -> pa.Table:\n    return t\n"
    )
    proc = _python(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from pipeline.formats import get_format
        from pipeline.transforms import TransformSpec, output_schema
        schema = output_schema((TransformSpec.parse("noop_mod:noop"),), get_format("combined").schema)
        print(schema.names == get_format("combined").schema.names, "pyarrow.compute" in sys.modules)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False"]
