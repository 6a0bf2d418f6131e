"""One run per output directory: an advisory ``flock`` on a sibling lock file.

cron starts a run whether or not the previous one has finished. Two runs writing the same output would
each swap their staging directory in, and the second commit would throw away the first run's data (or
their failure manifests would overwrite each other). :class:`OutputLock` makes the second run fail at
once with :class:`~pipeline.errors.LockedError` (exit code 4) naming the run in its way.

Why ``flock`` and not "a pid file exists": the kernel drops a ``flock`` when the holding process dies,
however it dies (SIGKILL, OOM killer, power loss of the process but not the disk). So a lock file left
behind by a crashed run is *stale by construction*: it is simply locked again, never trusted for its
content. The JSON inside (pid, host, start time, run id) is only for humans and error messages.

Why a sibling (``OUTPUT.parent / ".OUTPUT.lock"``) and not a file inside the output: the output directory
is replaced by an atomic rename on commit, which would swap the lock file away with it.

Usage::

    with OutputLock(output, run_id):
        ...  # prepare staging, run, commit, write the manifest
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from pipeline.errors import LockedError, PipelineError

log = logging.getLogger(__name__)

# A holder writes its JSON right after it gets the lock; a run refused in that instant waits this long
# for the JSON to appear, so the error can still name the holder.
_HOLDER_INFO_WAIT_S = 0.5
# Attempts to lock the file that is at the path (see acquire(): it can be unlinked under us).
_MAX_ATTEMPTS = 10


def lock_path_for(output: Path | str) -> Path:
    """The lock file of an output directory: a hidden sibling, ``OUTPUT.parent/.OUTPUT.name.lock``."""
    out = Path(output)
    return out.parent / f".{out.name}.lock"


class OutputLock:
    """Exclusive, non-blocking lock of one output directory for the lifetime of a run.

    ``acquire()`` (or entering the ``with`` block) either takes the lock or raises
    :class:`~pipeline.errors.LockedError` at once; it never waits for the other run. A lock file left by a
    process that died is taken over with a warning. ``release()`` (or leaving the block) unlocks and
    removes the lock file. Not reentrant: a second ``OutputLock`` on the same output, even in the same
    process, is refused (``flock`` locks belong to the open file, not to the process).
    """

    def __init__(self, output: Path | str, run_id: str = "") -> None:
        self.output = Path(output)
        self.run_id = run_id
        self.path = lock_path_for(self.output)
        self.info: dict[str, Any] = {}  # what we wrote into the lock file while we hold it
        self.previous: dict[str, Any] | None = None  # a stale holder's info we took over, if any
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`LockedError` if a live process holds it.

        Raises :class:`PipelineError` if the lock file cannot be created (e.g. the output's parent is
        not writable, or is a regular file).
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this OutputLock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PipelineError(f"cannot create the lock file {self.path}: {_os_reason(exc)}") from exc
        for _ in range(_MAX_ATTEMPTS):
            try:
                # O_CLOEXEC (Python's default, spelled out): a child that inherited the descriptor
                # would keep the lock alive after we exit.
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise PipelineError(f"cannot create the lock file {self.path}: {_os_reason(exc)}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd, wait_s=_HOLDER_INFO_WAIT_S)
                os.close(fd)
                raise LockedError(
                    str(self.path),
                    pid=_as_int(holder.get("pid")),
                    host=_as_str(holder.get("host")),
                    started_at=_as_str(holder.get("started_at")),
                    run_id=_as_str(holder.get("run_id")),
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # The previous holder unlinks the file as it releases. If that happened between our open()
            # and flock(), we now hold a lock on a deleted inode while a third run may lock a new file at
            # the same path: only a lock on the inode that is *at the path* counts, else try again.
            if _same_file(fd, self.path):
                break
            os.close(fd)
        else:
            raise PipelineError(f"cannot lock {self.path}: it keeps being replaced by other processes")
        try:
            self._take_over(fd)
        except BaseException:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        self._fd = fd

    def _take_over(self, fd: int) -> None:
        """Note a stale holder's info (with a warning), then write ours into the locked file."""
        old = _read_holder(fd, wait_s=0)
        if old:
            self.previous = old
            pid, host = _as_int(old.get("pid")), _as_str(old.get("host"))
            if host not in (None, socket.gethostname()):
                log.warning(
                    "taking over stale lock of pid %s on host %s (started %s); its lock is not held",
                    pid,
                    host,
                    old.get("started_at"),
                )
            elif pid is not None and not pid_alive(pid):
                log.warning("taking over stale lock of pid %d (not running)", pid)
            elif pid is not None:
                # Alive but not holding the lock: the pid was reused by an unrelated process.
                log.warning("taking over stale lock of pid %d (running, but not holding the lock)", pid)
        self.info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_id": self.run_id,
        }
        data = (json.dumps(self.info) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and unlock. Does nothing if not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Unlink *before* unlocking: a run that opened the file meanwhile then locks a deleted inode,
            # which acquire() detects. Only remove it if it still holds our pid, i.e. nobody replaced it.
            if _same_file(fd, self.path) and _as_int(_read_holder(fd, wait_s=0).get("pid")) == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        except OSError as exc:
            log.warning("could not remove the lock file %s: %s", self.path, _os_reason(exc))
        finally:
            # Closing the last descriptor drops the flock anyway; the explicit unlock is for clarity.
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"OutputLock({str(self.output)!r}, held={self.held})"


def read_lock_info(output: Path | str) -> dict[str, Any] | None:
    """What the lock file of ``output`` says (pid, host, started_at, run_id), or None if there is none.

    For display only: the file may be stale; whether it is *held* only ``acquire()`` can tell.
    """
    try:
        fd = os.open(lock_path_for(output), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read_holder(fd, wait_s=0) or None
    finally:
        os.close(fd)


def _read_holder(fd: int, wait_s: float) -> dict[str, Any]:
    """The JSON in the lock file; {} if empty or unreadable. Waits up to ``wait_s`` for it to appear."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            raw = os.pread(fd, 4096, 0)
        except OSError:
            return {}
        if raw or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    try:
        data = json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is the file currently at ``path`` (same device and inode)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 checks without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
