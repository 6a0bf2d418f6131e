"""Shared memory between the main process and the local pool's workers: one slot per chunk in flight.

Sending a 4 MiB chunk through a pipe costs a pickle, a 64 KiB-at-a-time copy under the main process's
GIL, and the worker waits for all of it before it can start; the batch coming back costs the same
again. With a :class:`SharedSlot`, the main process copies the chunk into the slot's input block (one
memcpy), the worker parses it in place (:func:`parse_in_slot`) and writes its Arrow streams straight into
the output block; only small descriptors (:class:`SlotTask`) cross the pipe. The main process owns
(creates and unlinks) every block. Only the process executor uses this: threads share memory anyway,
and a cluster's workers are on other machines.

Cleaning up after a run that could not: a block is named ``logpipe-<pid>-<random>`` after the process
that owns it, which holds a shared ``flock`` on it for as long as it lives. A run killed with its whole
process group (systemd stopping the unit, a cgroup's OOM kill) takes its workers, and multiprocessing's
resource tracker, with it: nobody is left to unlink its blocks. :func:`remove_stale_blocks`, at the
start of every run, removes the blocks whose owner is gone: never one whose pid is alive, never one
whose lock is still held (a live owner in another pid namespace), never a name that is not ours. The
blocks are not registered with the resource tracker (that cleanup is this one's): attaching one in
3.11's ``SharedMemory`` registers it again in every worker, and a tracker killed mid-run made every
later unlink print a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import re
import secrets
from dataclasses import dataclass, replace

from pipeline.stages.parse import ParseResult, ParseTask, parse_data

log = logging.getLogger(__name__)

# What every block's name starts with; the rest is the owner's pid and a random part.
SHM_PREFIX = "logpipe-"
_NAME = re.compile(re.escape(SHM_PREFIX) + r"(\d+)-[0-9a-f]+")


@dataclass
class SlotTask:
    """What crosses the pipe for a chunk in a slot: the task (its chunk's data emptied) and the names
    of the blocks that hold its bytes and take its streams."""

    task: ParseTask
    shm_in: str
    shm_len: int
    shm_out: str


def parse_in_slot(slot_task: SlotTask) -> ParseResult:
    """The worker's side of a slot: parse the bytes in place, write the streams into the output block.
    Top-level and picklable (it is what the pool runs for a chunk in a slot)."""
    data = _attach(slot_task.shm_in)[: slot_task.shm_len]
    return parse_data(slot_task.task, data, into=_attach(slot_task.shm_out))


# Shared-memory blocks this worker process has attached to, by name (attached once, kept open).
_ATTACHED: dict[str, memoryview] = {}


def _attach(name: str) -> memoryview:
    """The memory of the shared block ``name`` (attached on first use, then kept)."""
    buf = _ATTACHED.get(name)
    if buf is None:
        fd = os.open(_path(name), os.O_RDWR)
        try:
            buf = _ATTACHED[name] = memoryview(mmap.mmap(fd, os.fstat(fd).st_size))
        finally:
            os.close(fd)  # the mapping keeps the memory
    return buf


def _buf(block: Block) -> memoryview:
    if block.buf is None:
        raise ValueError(f"shared memory block {block.name} is closed")
    return block.buf


def _path(name: str) -> str:
    return os.path.join(SHM_DIR, name)


@dataclass
class Block:
    """One shared-memory block of the main process: a file in :data:`SHM_DIR`, mapped, and locked
    (shared ``flock``) to say its owner is alive."""

    name: str
    size: int
    fd: int
    buf: memoryview | None
    _map: mmap.mmap | None

    @classmethod
    def create(cls, size: int) -> Block:
        """A new block of ``size`` bytes, every page allocated now (see :func:`_create_block`)."""
        name = f"{SHM_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        fd = os.open(_path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            os.posix_fallocate(fd, 0, size)  # sets the size too
            mapped = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(_path(name))
            raise
        return cls(name, size, fd, memoryview(mapped), mapped)

    def unlink(self) -> None:
        """Unlink, close (the lock goes with the descriptor) and unmap. Safe to call twice."""
        if self.fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_path(self.name))
            os.close(self.fd)
            self.fd = -1
        if self.buf is not None:
            self.buf.release()
            self.buf = None
        if self._map is not None:
            self._map.close()  # BufferError while a view of it is still alive: the caller logs it
            self._map = None


@dataclass
class SharedSlot:
    """A pair of shared-memory blocks for one chunk in flight: its bytes in (``inp``), its batch out
    (``out``)."""

    inp: Block
    out: Block

    @classmethod
    def create(cls, in_bytes: int, out_bytes: int) -> SharedSlot:
        """Create both blocks, every page allocated now (raises OSError where shared memory is
        unavailable or too full for them)."""
        inp = _create_block(in_bytes)
        try:
            out = _create_block(out_bytes)
        except OSError:
            _unlink(inp)
            raise
        return cls(inp, out)

    @staticmethod
    def footprint(in_bytes: int, out_bytes: int) -> int:
        """What one slot takes of /dev/shm: its two blocks, in whole pages."""
        return _whole_pages(in_bytes) + _whole_pages(out_bytes)

    def load(self, task: ParseTask) -> SlotTask | None:
        """The task with its bytes moved into this slot; None if they do not fit."""
        data = task.chunk.data
        if len(data) > self.inp.size:
            return None
        _buf(self.inp)[: len(data)] = data
        emptied = replace(task, chunk=replace(task.chunk, data=b""))
        return SlotTask(emptied, self.inp.name, len(data), self.out.name)

    def unload(self, result: ParseResult) -> ParseResult:
        """The result with its streams copied out of the slot, so the slot can be reused at once."""
        if result.parts and not result.parts[0].ipc:  # in the slot (else they came through the pipe)
            buf, pos = _buf(self.out), 0
            for part in result.parts:
                part.ipc = bytes(buf[pos : pos + part.size])
                pos += part.size
        return result

    def close(self) -> None:
        """Unlink both blocks."""
        _unlink(self.inp)
        _unlink(self.out)


def _create_block(size: int) -> Block:
    """A new shared-memory block of ``size`` bytes whose pages are all allocated now.

    A size set with ftruncate alone gives pages on first write, and where /dev/shm is full by then
    that write is a SIGBUS, in the main process (which dies without a word) or in a worker (which the
    pool replaces, and it dies again). Allocating up front turns a shortage into ENOSPC here, at
    start, where the caller can fall back to pipes. Where there is no :data:`SHM_DIR` (macOS, Windows)
    this raises OSError, and chunks go through pipes.
    """
    if not hasattr(os, "posix_fallocate") or not os.path.isdir(SHM_DIR):
        raise OSError(errno.ENOENT, f"no {SHM_DIR} here")
    return Block.create(size)


def _whole_pages(size: int) -> int:
    return -(-size // mmap.PAGESIZE) * mmap.PAGESIZE


# Where POSIX shared memory (the slots, and the pool's semaphores) lives on Linux: a tmpfs, which
# containers get small unless told otherwise (Docker's and Kubernetes' defaults).
SHM_DIR = "/dev/shm"
# The slots take at most this share of what /dev/shm has free: the rest is headroom for the pool's
# semaphores (a restarted pool needs new ones) and for other users of the same /dev/shm.
SHM_SHARE = 0.5


def shm_free_bytes() -> int | None:
    """Bytes free in :data:`SHM_DIR`; None where there is no such file system to ask (macOS keeps
    POSIX shared memory elsewhere, without a size limit of its own)."""
    try:
        st = os.statvfs(SHM_DIR)
    except (OSError, AttributeError):  # no /dev/shm; no statvfs (Windows)
        return None
    return st.f_bavail * st.f_frsize


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


# What to do about a /dev/shm too small, for every message that reports one.
SHM_BIGGER = (
    f"give the container a bigger {SHM_DIR} (docker run --shm-size; Kubernetes: an emptyDir volume "
    "with medium: Memory mounted there)"
)


def _unlink(block: Block) -> None:
    try:
        block.unlink()
    except (OSError, BufferError) as exc:  # still referenced: logged, not fatal
        log.debug("shared memory %s: %s", block.name, exc)


def remove_stale_blocks(directory: str = SHM_DIR) -> int:
    """Remove the blocks in ``directory`` left by runs whose process is gone (see the module's
    docstring); how many. Quiet where there is no such directory."""
    removed: list[tuple[str, int]] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        m = _NAME.fullmatch(entry.name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # gone meanwhile, or not a regular file we may open
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: its owner is alive
            size = os.fstat(fd).st_size
            os.unlink(entry.path)
            removed.append((entry.name, size))
        except OSError as exc:
            log.debug("shared memory %s: kept: %s", entry.name, exc)
        finally:
            os.close(fd)
    if removed:
        pids = sorted({int(m.group(1)) for name, _ in removed if (m := _NAME.fullmatch(name))})
        log.warning(
            "parse: removed %d shared-memory block(s) (%s) that killed runs (pid %s) left in %s",
            len(removed),
            mib(sum(size for _, size in removed)),
            ", ".join(map(str, pids)),
            directory,
        )
    return len(removed)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: alive
        return True
    return True
