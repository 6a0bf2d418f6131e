"""Exceptions with context, and the documented exit codes."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of ``logpipe`` (documented in docs/operations.md, "Exit codes")."""

    OK = 0
    FAILURE = 1  # the run failed; the previous output is untouched
    USAGE = 2  # bad command line or configuration
    INPUTS_FAILED = 3  # finished and committed, but some inputs could not be read
    LOCKED = 4  # another run holds the output's lock
    NO_INPUT = 5  # a full run read no input line: nothing committed, the previous output kept
    FORMAT_MISMATCH = 6  # too many lines rejected (run.max_reject_ratio): nothing committed
    REFUSED = 7  # the output is not logpipe's to replace (or holds an input or the config): nothing touched
    SHRINK = 8  # a rebuild would hold fewer rows than the dataset it replaces: nothing committed
    SIGINT = 130
    SIGTERM = 143


class PipelineError(Exception):
    """Base class of the pipeline's own errors."""


class StageError(PipelineError):
    """A stage failed. Carries the stage name and, where known, the file and chunk.

    Always raised ``from`` the original exception so the cause stays in the traceback.
    """

    def __init__(self, stage: str, message: str, *, file: str | None = None, chunk: str | None = None):
        self.stage = stage
        self.file = file
        self.chunk = chunk
        where = "".join(f", {k} {v}" for k, v in (("file", file), ("chunk", chunk)) if v)
        super().__init__(f"[{stage}{where}] {message}")


class Interrupted(PipelineError):
    """The run was stopped by a signal (SIGINT or SIGTERM).

    ``committed``: the signal arrived during the commit, which was completed first: the new dataset and
    its record are published (see :func:`pipeline.output.signals.deferred`)."""

    def __init__(self, signum: int, committed: bool = False):
        self.signum = signum
        self.committed = committed
        what = "; it came during the commit, which was completed first" if committed else ""
        super().__init__(f"interrupted by signal {signum}{what}")


class LockedError(PipelineError):
    """Another live run holds the output directory's lock (exit code :attr:`ExitCode.LOCKED`).

    Carries what the holder wrote into the lock file, so cron mail says who is in the way.
    """

    exit_code = ExitCode.LOCKED

    def __init__(
        self,
        lock_path: str,
        *,
        pid: int | None = None,
        host: str | None = None,
        started_at: str | None = None,
        run_id: str | None = None,
    ):
        self.lock_path = lock_path
        self.pid = pid
        self.host = host
        self.started_at = started_at
        self.run_id = run_id
        who = f"pid {pid if pid is not None else '?'} on host {host or '?'}"
        since = f", started {started_at}" if started_at else ""
        run = f", run {run_id}" if run_id else ""
        super().__init__(f"output is locked by another run ({who}{since}{run}); lock file {lock_path}")


class NoInput(PipelineError):
    """A full run read no input line (inputs missing, empty or unreadable): nothing is committed,
    because committing would replace the previous output with an empty one."""

    exit_code = ExitCode.NO_INPUT


class Refused(PipelineError):
    """The output is not logpipe's to replace: a directory holding files logpipe did not write, ``/``,
    the current directory, an input or the config file's folder (or one holding them). Nothing is read,
    created or removed."""

    exit_code = ExitCode.REFUSED


class PathConflict(PipelineError):
    """Settings whose paths collide (the record's folder in the dataset, or shared by two outputs; the
    report inside the dataset): a configuration error, found before anything is touched."""

    exit_code = ExitCode.USAGE


class HistoryShrinks(PipelineError):
    """A full rebuild of an incremental dataset would publish fewer rows than the dataset holds (inputs
    that logrotate deleted since, a narrower time window): nothing is committed without
    ``--allow-shrink``."""

    exit_code = ExitCode.SHRINK


class FormatMismatch(PipelineError):
    """More of the input was rejected than ``run.max_reject_ratio`` allows: the lines do not look like
    the configured format. Nothing is committed."""

    exit_code = ExitCode.FORMAT_MISMATCH
