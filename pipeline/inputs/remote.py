"""Remote inputs: fsspec URLs (``s3://``, ``gs://``, ``az://``, ``http(s)://``, ...) beside local paths.

Flow
    :func:`resolve` expands a URL (a single object, a prefix listed recursively, or a glob) into files,
    each registered here under its *display name*: the URL with userinfo and query parameter values
    redacted. The rest of the pipeline (plans, the record, logs, the incremental state) only ever
    carries display names; the real URL, the filesystem and what the listing said of the object (size,
    ETag, mtime) stay in this module's registry, looked up when the file is opened. Local paths never
    come here: ``pipeline.stages.read`` checks :func:`is_url` first and keeps its fast path.

Reads
    :class:`RemoteStream` reads an object sequentially with ranged requests of ``block_bytes`` (the
    read stage passes ``read.chunk_bytes``): no whole-object download. Each request is bounded by
    ``read.timeout_s`` (a stall never hangs a read thread) and retried on network errors up to
    ``read.max_retries`` times, with exponential backoff and jitter. A retry asks again for the range
    from the byte offset reached: the bytes handed out are never asked for twice, so no line is
    duplicated or lost. Errors that retrying cannot fix (missing object, access denied, a 4xx) fail at
    once. What finally fails is a :class:`RemoteReadError`, an ``OSError``: the reader records it for
    that input (exit 3) and the other inputs go on.

Credentials
    They come from each store's usual places (``AWS_*`` including ``AWS_ENDPOINT_URL``, ``~/.aws``,
    ``GOOGLE_APPLICATION_CREDENTIALS``, ...), plus ``run.storage_options`` (passed to fsspec). They never
    leave this module: display names are redacted, error messages go through :func:`redact_text`
    (URLs in them, and the string values of ``storage_options``), and :func:`redact_config` hides the
    options' values wherever the config is shown or recorded. The HTTP/AWS client libraries log request
    headers at debug level: they are kept at warning.

fsspec and the store's own package (``s3fs``, ``gcsfs``, ``adlfs``, ``aiohttp`` for HTTP) are imported
only when a URL is given.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pipeline import defaults

log = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>()\[\]]+")
# Secret-looking option keys (``storage_options``): their string values are masked in messages.
_SECRET_PARAM = re.compile(
    r"sig|signature|token|credential|secret|password|passwd|pwd|key|auth|session|sas|x-amz-|x-goog-",
    re.I,
)
# URL query parameters whose values are shown: they name a version or a part of an object and grant
# nothing. Every other value is masked: a query may carry anything (``jwt=``, ``code=``, ``sig=``, an
# API key under any name), and a name cannot tell a secret from a harmless value.
HARMLESS_PARAMS = frozenset({"versionid", "partnumber", "part", "generation"})
MASK = "***"
BACKOFF_S = 0.5  # first retry's wait; doubles each attempt (with jitter), capped at BACKOFF_MAX_S
BACKOFF_MAX_S = 15.0
DEFAULT_BLOCK = 4 << 20
# Libraries that log request headers (Authorization, signed URLs) at debug level.
_CHATTY = ("botocore", "aiobotocore", "s3fs", "fsspec", "aiohttp", "urllib3", "gcsfs", "adlfs", "azure")
# HTTP statuses worth retrying: timeouts, throttling, server errors.
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class RemoteReadError(OSError):
    """A remote input could not be listed, opened or read (after retries, where retrying can help).

    Its message names the stage, the input (display name) and the byte offset; the cause is chained.
    ``status`` is the HTTP status of the last answer, when there was one.
    """

    def __init__(self, message: str, cause: BaseException | None = None):
        super().__init__(message)
        status = getattr(cause, "status", None)
        self.status: int | None = status if isinstance(status, int) else None

    def __str__(self) -> str:
        return str(self.args[0])


class RemoteNotFound(RemoteReadError, FileNotFoundError):
    """The remote object or prefix does not exist."""


@dataclass(frozen=True)
class Settings:
    """How remote inputs are reached: ``run.storage_options``, ``read.max_retries``, ``read.timeout_s``."""

    storage_options: dict[str, Any] = field(default_factory=dict)
    max_retries: int = defaults.READ_MAX_RETRIES
    timeout_s: float = defaults.READ_TIMEOUT_S


@dataclass
class RemoteFile:
    """One resolved remote object. ``url`` may hold credentials: it is never shown."""

    name: str  # display name (redacted URL)
    url: str
    fs: Any  # fsspec.AbstractFileSystem
    fs_path: str
    settings: Settings
    size: int | None = None
    mtime_ns: int = -1
    etag: str = ""


_FILES: dict[str, RemoteFile] = {}
_LOCK = threading.Lock()
_SECRETS: set[str] = set()  # string values of storage_options: masked in error messages


# ---------------------------------------------------------------------------------------------- names


def is_url(spec: str) -> bool:
    """Whether ``spec`` is a URL for fsspec (``file://`` is a local path: see :func:`local_path`)."""
    return bool(_SCHEME.match(spec)) and not spec.lower().startswith("file://")


def local_path(spec: str) -> str:
    """``file:///x`` as ``/x``; other specs as given."""
    return spec[len("file://") :] if spec.lower().startswith("file://") else spec


def path_of(url: str) -> str:
    """The path of a URL, without its query (what a file name's suffix is read from)."""
    try:
        return urlsplit(url).path
    except ValueError:
        return url


def redact(url: str) -> str:
    """``url`` without userinfo (``user:password@``) and with the values of its query parameters
    masked, but those of :data:`HARMLESS_PARAMS`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        shown = [(k, v if k.lower() in HARMLESS_PARAMS else MASK) for k, v in pairs]
        query = urlencode(shown, safe="*/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted and the values of ``storage_options`` masked."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: redact(m.group()), text)
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _mask(value: Any) -> Any:
    """Every value masked, the keys (and per-store tables) kept."""
    return {k: _mask(v) for k, v in value.items()} if isinstance(value, dict) else MASK


def redact_config(data: dict[str, Any]) -> dict[str, Any]:
    """A config dump (``Config.model_dump()``) safe to show or record: ``run.storage_options`` values
    masked (keys kept, so the manifest still says which options were set), input URLs redacted."""
    run = data.get("run")
    if not isinstance(run, dict):
        return data
    run = dict(run)
    if isinstance(run.get("storage_options"), dict):
        run["storage_options"] = _mask(run["storage_options"])
    if isinstance(run.get("inputs"), list):
        run["inputs"] = [redact(v) if isinstance(v, str) and is_url(v) else v for v in run["inputs"]]
    if isinstance(run.get("sources"), list):
        run["sources"] = [
            {**s, "inputs": [redact(v) if is_url(v) else v for v in s.get("inputs", [])]}
            if isinstance(s, dict)
            else s
            for s in run["sources"]
        ]
    return {**data, "run": run}


# ---------------------------------------------------------------------------------------------- resolve


def _filesystem(url: str, settings: Settings) -> tuple[Any, str]:
    """The fsspec filesystem for ``url`` and the path in it."""
    _quiet_libraries()
    with _LOCK:
        _SECRETS.update(_strings(settings.storage_options))
    try:
        import fsspec  # type: ignore[import-untyped]  # only for URLs: a local run never imports it

        options = _options_for(url.split("://", 1)[0].lower(), settings.storage_options, fsspec)
        return fsspec.core.url_to_fs(url, **options)  # type: ignore[no-any-return]
    except (ImportError, ValueError, TypeError) as exc:
        # an unknown protocol, or its package (s3fs, gcsfs, adlfs, aiohttp) is not installed
        raise RemoteReadError(f"resolve: {redact(url)}: {redact_text(_describe(exc))}") from exc


def _options_for(scheme: str, options: dict[str, Any], fsspec: Any) -> dict[str, Any]:
    """The options for one store: the flat keys of ``storage_options`` (for every store) updated with
    its own table, named by protocol (``[run.storage_options.s3]``; ``https`` also takes ``http``'s).
    A key naming another protocol is that store's, never passed here (an S3 ``secret`` given to the
    HTTP client would break it)."""
    protocols = set(fsspec.available_protocols())
    flat = {k: v for k, v in options.items() if not (k in protocols and isinstance(v, dict))}
    own = [scheme, "http"] if scheme == "https" else [scheme]
    for name in reversed(own):
        table = options.get(name)
        if isinstance(table, dict):
            flat |= table
    return flat


def _strings(value: Any, secret: bool = False) -> list[str]:
    """The string values under secret-looking keys (key, secret, token, password, ...) of nested
    options: what to mask in messages (an endpoint or a region is not masked there)."""
    if isinstance(value, str):
        return [value] if secret and len(value) >= 4 else []
    if isinstance(value, dict):
        return [
            s for k, v in value.items() for s in _strings(v, secret or bool(_SECRET_PARAM.search(str(k))))
        ]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v, secret)]
    return []


def _quiet_libraries() -> None:
    """Keep the client libraries' debug logs (request headers: credentials) out of a debug run's log."""
    for name in _CHATTY:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def resolve(spec: str, settings: Settings) -> tuple[list[str], str | None]:
    """Expand one URL into the display names of the files it stands for, registered for reading.

    A glob (``s3://bucket/logs/**/*.gz``) matches files; a prefix (a "directory") is listed recursively,
    skipping hidden names; an HTTP(S) URL is one file (HTTP has no listing). Returns the names and,
    when nothing was found, why (a failed input in the manifest).
    """
    shown = redact(spec)
    try:
        fs, path = _filesystem(spec, settings)
        invalidate = getattr(fs, "invalidate_cache", None)
        if callable(invalidate):
            invalidate()  # a listing cached by an earlier run of this process may be stale
        protocol = _protocol(fs)
        if protocol in ("http", "https"):
            info = _op(settings, f"resolve: {shown}", fs, "info", path)
            return [_register(spec, fs, path, info, settings)], None
        if _has_magic(path):
            found = _op(settings, f"resolve: {shown}", fs, "glob", path, detail=True)
            why = "the pattern matches no file"
        else:
            info = _op(settings, f"resolve: {shown}", fs, "info", path)
            if info.get("type") != "directory":
                return [_register(spec, fs, path, info, settings)], None
            found = _op(settings, f"resolve: {shown}", fs, "find", path, detail=True)
            base = path.rstrip("/") + "/"
            found = {
                p: i for p, i in found.items() if not any(part.startswith(".") for part in _rel(p, base))
            }
            why = "the prefix holds no file (hidden names are skipped)"
    except RemoteReadError as exc:
        return [], str(exc)
    names = [
        _register(_unstrip(fs, p, spec), fs, p, i, settings)
        for p, i in sorted(found.items())
        if i.get("type", "file") != "directory"
    ]
    return names, None if names else why


def _rel(path: str, base: str) -> list[str]:
    return path[len(base) :].split("/") if path.startswith(base) else path.split("/")[-1:]


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


def _protocol(fs: Any) -> str:
    proto = fs.protocol
    return str(proto[0] if isinstance(proto, tuple | list) else proto)


def _unstrip(fs: Any, path: str, spec: str) -> str:
    """The URL of a listed path (listings drop the protocol), keeping the spec's own scheme."""
    scheme = spec.split("://", 1)[0]
    return f"{scheme}://{path}" if "://" not in path else path


def _register(url: str, fs: Any, fs_path: str, info: dict[str, Any], settings: Settings) -> str:
    name = _unique(redact(url), url)
    size = info.get("size")
    entry = RemoteFile(
        name,
        url,
        fs,
        fs_path,
        settings,
        size=int(size) if isinstance(size, int | float) else None,
        mtime_ns=_mtime_ns(info),
        etag=str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or "").strip('"'),
    )
    with _LOCK:
        _FILES[name] = entry
    return name


def _unique(name: str, url: str) -> str:
    """``name``, or ``name#2``, ``#3``...: URLs that differ only in masked values (``?id=1``, ``?id=2``)
    are distinct inputs under distinct display names (numbered in the order they are resolved)."""
    with _LOCK:
        shown, n = name, 1
        while shown in _FILES and _FILES[shown].url != url:
            n += 1
            shown = f"{name}#{n}"
        return shown


def _mtime_ns(info: dict[str, Any]) -> int:
    """The object's modification time from whatever key its store uses; -1 when there is none."""
    for key in ("LastModified", "last_modified", "Last-Modified", "mtime", "updated", "modified"):
        value = info.get(key)
        if value is None:
            continue
        try:
            if isinstance(value, datetime):
                return int(value.timestamp() * 1e9)
            if isinstance(value, int | float):
                return int(value * 1e9)
            if isinstance(value, str):
                try:
                    return int(parsedate_to_datetime(value).timestamp() * 1e9)
                except (TypeError, ValueError):
                    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
        except (TypeError, ValueError, OverflowError):
            continue
    return -1


def lookup(name: str) -> RemoteFile:
    """The registered file of a display name; a URL not resolved yet is resolved now (one object)."""
    with _LOCK:
        entry = _FILES.get(name)
    if entry is not None:
        return entry
    settings = Settings()
    fs, path = _filesystem(name, settings)
    info = _op(settings, f"open: {redact(name)}", fs, "info", path)
    registered = _register(name, fs, path, info, settings)  # takes _LOCK itself: not under it
    with _LOCK:
        return _FILES[registered]


def stat(name: str) -> tuple[int, int, str]:
    """Size (-1: unknown), mtime in ns (-1: unknown) and ETag ("" : none) of a remote input, as listed
    when the run resolved it (before anything was read: what an incremental run records)."""
    entry = lookup(name)
    return (entry.size if entry.size is not None else -1), entry.mtime_ns, entry.etag


def size_of(name: str) -> int:
    """Size of a remote input in bytes, 0 when unknown (progress totals)."""
    with _LOCK:
        entry = _FILES.get(name)
    return entry.size or 0 if entry is not None else 0


# ---------------------------------------------------------------------------------------------- retry


def _retryable() -> tuple[type[BaseException], ...]:
    """Exceptions a retry may cure: network errors of the client libraries, timeouts, ``OSError``."""
    kinds: list[type[BaseException]] = [OSError, TimeoutError, EOFError]
    try:
        import aiohttp

        kinds.append(aiohttp.ClientError)
    except ImportError:
        pass
    try:
        from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped]

        kinds.append(BotoCoreError)
    except ImportError:
        pass
    return tuple(kinds)


def _permanent(exc: BaseException) -> bool:
    """Errors no retry fixes: a missing object, access denied, a client error (4xx but throttling)."""
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
        return True
    status = getattr(exc, "status", None)
    return isinstance(status, int) and 400 <= status < 500 and status not in _RETRY_STATUS


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes (fsspec wraps a failed HEAD in ``FileNotFoundError(url)``)."""
    found: list[BaseException] = []
    at: BaseException | None = exc
    while at is not None and at not in found and len(found) < 8:
        found.append(at)
        at = at.__cause__ or at.__context__
    return found


def _classify(exc: BaseException) -> tuple[str | None, bool, BaseException]:
    """What went wrong in words (None: nothing more telling than the exception), whether retrying
    cannot help, and the exception of the chain that says so. By class name: aiohttp is not imported
    for that (nor present without URLs)."""
    for e in _chain(exc):
        names = {c.__name__ for c in type(e).__mro__}
        if names & {"NonHttpUrlRedirectClientError", "InvalidUrlRedirectClientError", "TooManyRedirects"}:
            return "redirect refused (only http and https redirects are followed, at most 10)", True, e
        if names & {"ClientConnectorCertificateError", "ClientSSLError", "SSLError"}:
            return "TLS error", True, e
        if names & {"ClientConnectorDNSError", "gaierror"}:
            return "DNS lookup failed", True, e
        os_error = getattr(e, "os_error", None)
        if isinstance(e, ConnectionRefusedError) or isinstance(os_error, ConnectionRefusedError):
            return "connection refused", False, e
        status = getattr(e, "status", None)
        if status in (404, 410):
            return f"not found (HTTP {status})", True, e
        if status in (401, 403):
            return f"access denied (HTTP {status})", True, e
    return None, False, exc


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    text = str(exc) or repr(exc)
    if isinstance(status, int) and str(status) not in text:
        text = f"HTTP {status}: {text}"
    return f"{type(exc).__name__}: {text}"


def _call(settings: Settings, what: str, fn: Callable[[], T], timed: bool = True) -> T:
    """``fn()`` bounded by ``settings.timeout_s`` (``timed``: in a helper thread; else ``fn`` bounds
    itself), retried on network errors ``max_retries`` times. Whatever fails comes out as a
    :class:`RemoteReadError` (:class:`RemoteNotFound` for a missing object) naming ``what``."""
    kinds = _retryable()
    attempts = settings.max_retries + 1
    for attempt in range(attempts):
        try:
            return _timed(fn, settings.timeout_s) if timed else fn()
        except RemoteReadError:
            raise
        except Exception as exc:
            label, permanent, culprit = _classify(exc)
            text = redact_text(_describe(culprit))
            if label is not None:
                text = f"{label} ({text})"
            if isinstance(exc, FileNotFoundError) and (label is None or label.startswith("not found")):
                raise RemoteNotFound(f"{what}: no such file or prefix: {text}", culprit) from exc
            # a named cause decides (fsspec reports a refused connection as FileNotFoundError)
            retry = not permanent if label is not None else isinstance(exc, kinds) and not _permanent(exc)
            if not retry:
                raise RemoteReadError(f"{what}: {text} (not retried: retrying cannot help)", culprit) from exc
            if attempt + 1 >= attempts:
                raise RemoteReadError(f"{what}: {text} (gave up after {attempts} attempts)", exc) from exc
            # jitter: threads that failed together do not all come back at the same instant
            delay = min(BACKOFF_S * 2**attempt, BACKOFF_MAX_S) * (0.5 + random.random() / 2)
            log.warning(
                "%s: %s; retrying in %.1f s (attempt %d of %d)", what, text, delay, attempt + 2, attempts
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _op(settings: Settings, what: str, fs: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """``fs.method(*args, **kwargs)`` through :func:`_call`. An async filesystem's method is given the
    timeout itself (fsspec's sync wrapper cancels the request on its event loop); another runs in a
    helper thread that is abandoned if it does not answer in time."""
    call = getattr(fs, method)
    if _is_async(fs):
        return _call(settings, what, lambda: call(*args, timeout=settings.timeout_s, **kwargs), timed=False)
    return _call(settings, what, lambda: call(*args, **kwargs))


def _timed(fn: Callable[[], T], timeout_s: float) -> T:
    """``fn()``, or ``TimeoutError`` after ``timeout_s``. The call runs in a helper thread: a read
    stuck in a socket cannot be interrupted, but the read thread stops waiting for it."""
    box: list[tuple[bool, Any]] = []
    done = threading.Event()

    def work() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - handed back to the waiting thread
            box.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=work, name="remote-call", daemon=True).start()
    if not done.wait(timeout_s):
        raise TimeoutError(f"no answer within {timeout_s:g} s (read.timeout_s)")
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------- read


class RemoteStream:
    """Sequential reads of one remote object by ranged requests, with retries and a timeout.

    ``read(n)`` hands out up to ``n`` bytes from a buffer filled by one request of at least
    ``block_bytes`` (``n`` when larger). ``seek`` (an incremental run skipping what it read before)
    moves the next request's start without reading anything.
    """

    def __init__(self, entry: RemoteFile, block_bytes: int = DEFAULT_BLOCK):
        self._e = entry
        self._block = max(1, block_bytes)
        self._pos = 0  # offset of the next byte handed out
        self._buf = b""  # bytes from self._pos on, already fetched
        self._eof = False
        self._body: _HTTPBody | None = None  # HTTP: the answer being read (a whole body, or one block)
        self.range_ignored = False  # HTTP: the server answered a ranged request with the whole object
        self.closed = False
        self.requests = 0

    @property
    def size(self) -> int | None:
        return self._e.size

    def peek(self, n: int) -> bytes:
        """Up to ``n`` bytes from the current position, without consuming them."""
        if len(self._buf) < n and not self._eof:
            self._fill(n)
        return self._buf[:n]

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all the rest when ``n`` < 0); b"" at the end."""
        if n < 0:
            parts = []
            while block := self.read(self._block):
                parts.append(block)
            return b"".join(parts)
        if len(self._buf) < n and not self._eof:
            self._fill(n)
        out, self._buf = self._buf[:n], self._buf[n:]
        self._pos += len(out)
        return out

    def _fill(self, n: int) -> None:
        """Fetch until ``n`` bytes are buffered or the object ends (one request, normally)."""
        while len(self._buf) < n and not self._eof:
            start = self._pos + len(self._buf)
            want = max(self._block, n - len(self._buf))
            end = start + want if self.size is None else min(start + want, self.size)
            if end <= start:
                self._eof = True
                return
            data = self._fetch(start, end)
            if not data:
                if self.size is None:
                    self._eof = True
                    return
                raise RemoteReadError(
                    f"read: {self._e.name}: the object ends at byte {start}, before its listed size"
                    f" {self.size} (replaced while it was read?)"
                )
            if len(data) > end - start:
                raise RemoteReadError(
                    f"read: {self._e.name}: the server ignored the Range request (asked {end - start}"
                    f" bytes at {start}, got {len(data)}): it must support Range requests"
                )
            self._buf += data
            if self.size is None and len(data) < end - start:
                self._eof = True  # a short answer is the end when the size is not known

    def _fetch(self, start: int, end: int) -> bytes:
        e = self._e
        what = f"read: {e.name} at byte {start:,}"
        self.requests += 1
        timed = not _is_async(e.fs)  # an async request is cancelled by its own timeout (see _cat)
        fresh = start == 0 and self._pos == 0  # nothing handed out: a replaced object is read as it is
        fetch = (
            (lambda: self._http_block(start, end)) if _is_http(e.fs) else (lambda: _cat(e, start, end, fresh))
        )
        try:
            return _call(e.settings, what, fetch, timed=timed)
        except RemoteReadError as exc:
            if self.size is None and exc.status == 416:
                return b""  # asked past the end of an object of unknown size
            raise

    def _http_block(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` over HTTP (fewer at the object's end), from the open answer when it
        stands there (a server that ignored the Range), else from a new request."""
        body = self._body
        try:
            if body is None or body.pos != start or body.done:
                self._drop_body()
                # nothing handed out yet: an object replaced since the listing is read as it is now
                fresh = start == 0 and self._pos == 0
                body = self._body = _HTTPBody.open(self._e, start, end, changed_ok=fresh)
                self.range_ignored = self.range_ignored or body.whole
            data = body.read(end - start)
        except BaseException:
            self._drop_body()
            raise
        if not body.whole:
            body.done = body.done or len(data) == end - start
            self._drop_body()  # a ranged answer holds one block
        return data

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self._pos + offset if whence == 1 else (self.size or 0) + offset
        if self._pos <= target <= self._pos + len(self._buf):
            self._buf = self._buf[target - self._pos :]
        else:
            self._buf, self._eof = b"", False
        self._pos = target
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self._drop_body()
        self._buf = b""
        self.closed = True


def _cat(entry: RemoteFile, start: int, end: int, changed_ok: bool = False) -> bytes:
    """One ranged request. An async filesystem (HTTP, S3, GCS, Azure) runs it on fsspec's event loop,
    where the timeout cancels it (the connection is dropped, not left hanging). S3 asks for the
    listed ETag (``If-Match``): see :func:`_s3_range`."""
    fs = entry.fs
    if _is_async(fs):
        from fsspec.asyn import sync  # type: ignore[import-untyped]

        timeout = entry.settings.timeout_s
        if _protocol(fs) in ("s3", "s3a") and entry.etag:
            return _s3_range(entry, start, end, changed_ok)
        data = sync(fs.loop, fs._cat_file, entry.fs_path, start=start, end=end, timeout=timeout)
    else:
        data = fs.cat_file(entry.fs_path, start=start, end=end)
    return bytes(data)


def _s3_range(entry: RemoteFile, start: int, end: int, changed_ok: bool) -> bytes:
    """A ranged GET of an S3 object that must still carry the listed ETag (``If-Match``): an object
    replaced between two requests answers 412 and fails the input instead of being stitched. With
    ``changed_ok`` (nothing handed out yet) the object is taken as it is now."""
    from fsspec.asyn import sync

    fs = entry.fs
    bucket, key, version = fs.split_path(entry.fs_path)
    extra = {"VersionId": version} if version else {}

    async def get(if_match: str | None) -> tuple[bytes, str, str]:
        match = {"IfMatch": f'"{if_match}"'} if if_match else {}
        resp = await fs._call_s3(
            "get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", **extra, **match
        )
        try:
            return await resp["Body"].read(), str(resp.get("ETag", "")), str(resp.get("ContentRange", ""))
        finally:
            resp["Body"].close()

    timeout = entry.settings.timeout_s
    try:
        data, etag, content_range = sync(fs.loop, get, entry.etag, timeout=timeout)
    except OSError as exc:
        if not any("PreconditionFailed" in str(e) for e in _chain(exc)):
            raise
        if not changed_ok:
            raise RemoteChanged(
                f"read: {entry.name} at byte {start:,}: the object changed while it was read (its ETag is"
                f" not {entry.etag} any more): not stitched from two versions; the lines read before are"
                " kept, the input fails (read it again)"
            ) from exc
        data, etag, content_range = sync(fs.loop, get, None, timeout=timeout)
        m = _CONTENT_RANGE.fullmatch(content_range)
        entry.etag = _etag(etag) or entry.etag
        entry.size = int(m.group(3)) if m is not None and m.group(3) != "*" else entry.size
        log.info("read: %s changed since it was listed; read as it is now", entry.name)
    return bytes(data)


def fetch_range(entry: RemoteFile, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of ``entry`` in one request (fewer at the object's end), with the retries
    and the timeout of every read; over HTTP checked against the entry's ETag and size, as
    :class:`RemoteStream` does (a Dask worker's range of an object that changed fails, never mixes)."""
    what = f"read: {entry.name} at byte {start:,}"
    if not _is_http(entry.fs):
        timed = not _is_async(entry.fs)
        return _call(entry.settings, what, lambda: _cat(entry, start, end), timed=timed)

    def once() -> bytes:
        body = _HTTPBody.open(entry, start, end, changed_ok=False)
        try:
            data = body.read(end - start)
            body.done = body.done or not body.whole  # a ranged answer read to its end: reusable
            return data
        finally:
            body.close()

    return _call(entry.settings, what, once, timed=False)


def _is_async(fs: Any) -> bool:
    return bool(getattr(fs, "async_impl", False)) and getattr(fs, "loop", None) is not None


def open_stream(name: str, block_bytes: int = DEFAULT_BLOCK) -> RemoteStream:
    """A :class:`RemoteStream` over the registered input ``name``."""
    return RemoteStream(lookup(name), block_bytes)


# ---------------------------------------------------------------------------------------------- HTTP


class HTTPStatusError(OSError):
    """An HTTP answer that is not the bytes asked for (``status``: its status code)."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status


class _HTTPNotFound(HTTPStatusError, FileNotFoundError):
    pass


class RemoteChanged(RemoteReadError):
    """The object is not the one listed (or first read) any more: another ETag or size."""


# What a Content-Encoding the client asked not to get may be: the encoded bytes are read as a file of
# that compression would be (its magic number is recognised), decoded in bounded steps.
_READABLE_ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "zstd"})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_HTTP_PIECE = 1 << 20  # the most one read of a response body takes from the connection at a time


def _etag(value: str | None) -> str:
    """An ETag without its weak marker and quotes (as the listing records it)."""
    return (value or "").removeprefix("W/").strip('"')


class _HTTPBody:
    """One GET of an HTTP object, its body read in bounded pieces on fsspec's event loop.

    The request asks for ``Range: bytes=start-(end-1)`` and no Content-Encoding, and aiohttp does not
    decode what comes back: a body is never read whole, whatever the server sends. A server that
    ignores the Range (200, the whole object) is read on from where the stream stands: the bytes before
    ``start`` are read and dropped, and the same answer serves the following blocks (no new request,
    no quadratic re-reading). Each answer is checked against the object as listed (its ETag, its size
    in Content-Range or Content-Length): an object replaced between two requests is never stitched.
    """

    def __init__(self, entry: RemoteFile, resp: Any, pos: int):
        self._e = entry
        self._resp = resp
        self.pos = pos  # object offset of the next body byte
        self.whole = resp.status == 200  # the server ignored the Range: the body runs to the end
        self.done = False

    @classmethod
    def open(cls, entry: RemoteFile, start: int, end: int, changed_ok: bool) -> _HTTPBody:
        """GET ``[start, end)``; ``changed_ok``: nothing was handed out yet, so an object that changed
        since it was listed is taken as it is now (the entry updated) instead of failing."""
        from fsspec.asyn import sync

        fs = entry.fs
        resp = sync(fs.loop, _http_get, fs, entry.fs_path, start, end, timeout=entry.settings.timeout_s)
        body = cls(entry, resp, start)
        try:
            body._check(start, changed_ok)
            if body.whole:
                body.pos = 0
                body.skip(start)
        except BaseException:
            body.close()
            raise
        return body

    def _check(self, start: int, changed_ok: bool) -> None:
        resp, e = self._resp, self._e
        if resp.status in (404, 410):
            raise _HTTPNotFound(resp.status, resp.reason or "")
        if resp.status not in (200, 206):
            raise HTTPStatusError(resp.status, resp.reason or "")
        encoding = resp.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in _READABLE_ENCODINGS:
            raise HTTPStatusError(
                resp.status, f"with Content-Encoding {encoding!r}, asked for none (identity): not readable"
            )
        size: int | None = None
        if resp.status == 206:
            m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
            if m is None or int(m.group(1)) != start:
                raise HTTPStatusError(
                    206,
                    f"with Content-Range {resp.headers.get('Content-Range')!r}"
                    f" for a request from byte {start}",
                )
            size = None if m.group(3) == "*" else int(m.group(3))
        elif not encoding and resp.content_length is not None:
            size = int(resp.content_length)
        etag = _etag(resp.headers.get("ETag"))
        was = (e.etag, e.size)
        if (etag and e.etag and etag != e.etag) or (
            size is not None and e.size is not None and size != e.size
        ):
            if not changed_ok:
                raise RemoteChanged(
                    f"read: {e.name} at byte {start:,}: the object changed while it was read (ETag"
                    f" {was[0] or '?'} -> {etag or '?'}, size {was[1]} -> {size}): not stitched from two"
                    " versions; the lines read before are kept, the input fails (read it again)"
                )
            log.info("read: %s changed since it was listed; read as it is now", e.name)
            e.etag, e.size = etag or e.etag, size if size is not None else e.size
        elif etag and not e.etag:
            e.etag = etag  # later answers must carry the same one

    def read(self, n: int) -> bytes:
        """Up to ``n`` body bytes (fewer at the end of the body); each step bounded by the timeout."""
        from fsspec.asyn import sync

        fs = self._e.fs
        data = sync(fs.loop, _read_body, self._resp, n, timeout=self._e.settings.timeout_s)
        self.pos += len(data)
        if len(data) < n:
            self.done = True
        return data  # type: ignore[no-any-return]

    def skip(self, n: int) -> None:
        """Read and drop the next ``n`` body bytes (a server that ignored the Range)."""
        while n > 0:
            got = len(self.read(min(n, _HTTP_PIECE)))
            if got == 0:
                break
            n -= got

    def close(self) -> None:
        """Give the connection back (a body read to its end) or drop it (one cut short)."""
        loop = self._e.fs.loop
        resp, self._resp = self._resp, None
        if resp is not None and not loop.is_closed():
            loop.call_soon_threadsafe(resp.release if self.done else resp.close)


async def _http_get(fs: Any, url: str, start: int, end: int) -> Any:
    kw = dict(fs.kwargs)
    headers = dict(kw.pop("headers", None) or {})
    headers["Range"] = f"bytes={start}-{end - 1}"
    headers["Accept-Encoding"] = "identity"  # a Content-Encoding would hide the object's bytes
    session = await fs.set_session()
    return await session.get(fs.encode_url(url), headers=headers, auto_decompress=False, **kw)


async def _read_body(resp: Any, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        piece = await resp.content.read(min(n - got, _HTTP_PIECE))
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


def _is_http(fs: Any) -> bool:
    return _is_async(fs) and _protocol(fs) in ("http", "https")
