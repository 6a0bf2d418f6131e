"""Peak memory of one command's whole process tree: ``python -m bench.treepeak CMD [ARGS...]``.

Samples the summed PSS and the summed RSS of the command and all its descendants (a run's main process,
fork server, workers, resource tracker) every ``TREEPEAK_MS`` milliseconds (default 20) until it exits,
and writes one JSON line to stdout: exit code, wall and CPU seconds, the peaks in MB and each process's
peak RSS.
Summed RSS counts the pages the workers share with the fork server once per process; PSS splits them,
which is what the memory formula of docs/operations.md bounds (BENCHMARKS.md, "Memory whatever the lines").
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import psutil

from bench import MB, log


def measure(cmd: list[str], interval_s: float) -> dict[str, object]:
    """Run ``cmd`` (its output discarded, stderr's tail kept) and return its peaks."""
    t0, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_pss = peak_rss = 0
    per_rss: dict[int, tuple[int, str]] = {}
    while proc.poll() is None:
        try:
            procs = [proc, *proc.children(recursive=True)]
        except psutil.Error:  # it exited between the poll and the listing
            break
        pss = rss = 0
        for p in procs:
            try:
                info = p.memory_full_info()
                role = "main" if p.pid == proc.pid else " ".join(p.cmdline()[-1:])[-48:]
            except psutil.Error:  # a worker that just exited
                continue
            pss, rss = pss + info.pss, rss + info.rss
            per_rss[p.pid] = (max(per_rss.get(p.pid, (0, ""))[0], info.rss), role)
        peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        time.sleep(interval_s)
    _, err = proc.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "exit": proc.returncode,
        "wall_s": round(time.perf_counter() - t0, 2),
        # user + system CPU of the command and the descendants it waited for
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
        "peak_pss_mb": round(peak_pss / MB),
        "peak_rss_mb": round(peak_rss / MB),
        "rss_mb_by_process": sorted(((round(r / MB), role) for r, role in per_rss.values()), reverse=True),
        "stderr_tail": err.decode(errors="replace")[-500:],
    }


def main() -> None:
    if len(sys.argv) < 2:
        log("usage: python -m bench.treepeak CMD [ARGS...]")
        sys.exit(2)
    result = measure(sys.argv[1:], int(os.environ.get("TREEPEAK_MS", "20")) / 1000)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
