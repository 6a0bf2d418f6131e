"""Log format strings compiled into plans: nginx ``log_format`` and Apache ``LogFormat``.

Users paste their server's own format string into the config; this module turns it into a
:class:`FormatPlan` that :mod:`pipeline.formats.engine` executes over whole chunks.

Why a plan of *literals* and *fields*: a format string is fixed text with variables in between, and
the server writes that fixed text verbatim on every line. So the literal text after a field is where
that field ends, for every line at once: the engine finds each literal's first byte in the whole chunk
with one vectorised search and cuts all lines' fields from there, with no per-line regex and no Python
object per line. A plan is therefore just ``literals`` (``len(fields) + 1`` byte strings: before the
first field, between fields, after the last) and ``fields`` (each variable's *kind*, which says how the
engine types its bytes, and its output column). Everything about a server's dialect (nginx's
``$var``/``${var}``, Apache's ``%{param}X`` with modifiers and conditions, their config quoting and
escapes, Apache's ``%t`` writing its own brackets) is resolved here, once, at config time; the engine
knows nothing about either server.

Two fields with no literal between them (``$a$b``) cannot be split, so that is a config error, found
here with its position in the string, not a run of rejected lines.

:meth:`FormatPlan.reference_regex` is the per-line ground truth for the lines the vectorised fast path
cannot take. It makes the same *first-occurrence* split: an unquoted field ends at the first place the
literal after it appears (a possessive, tempered group, so it never backtracks into a later split; that
also keeps it linear on garbage lines, where a chain of ``(.*?)`` groups can take exponential time), and
a quoted field runs to the first unescaped ``"`` (backslash escapes allowed inside).

The variable catalogue (:data:`NGINX_VARIABLES`, :data:`APACHE_DIRECTIVES`, :data:`APACHE_FAMILIES`) is
plain data so the format catalogue in docs/formats.md is generated from it (:func:`catalogue_markdown`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from typing import Any, TypeAlias

import pyarrow as pa

KINDS = frozenset(
    {
        "ip",
        "user",
        "string",
        "agent",
        "time_local",
        "time_iso8601",
        "epoch",
        "request",
        "status",
        "int",
        "float",
        "duration",
        "skip",
        "time_rfc3339",
        "time_clf_ms",
        "ip_port",
    }
)
TIME_KINDS = frozenset({"time_local", "time_iso8601", "epoch", "time_rfc3339", "time_clf_ms"})
STRING_KINDS = frozenset({"ip", "user", "string", "agent"})
# the columns the engine makes from one "request" field
# (``request``: the request line as logged where it does not split, null elsewhere)
REQUEST_COLUMNS = ("method", "path", "query", "protocol", "request")
# the hive partition column the writer adds; a field of that name would clash with it
RESERVED_COLUMNS = frozenset({"date"})
DIALECTS = ("nginx", "apache")
# the built-in server formats' own templates (pipeline.formats.servers): compiled here, never a table
TEMPLATE = "template"
ESCAPES = ("default", "json", "none")

TS_TYPE = pa.timestamp("us", tz="UTC")
_ARROW_TYPES: dict[str, pa.DataType] = {
    "ip": pa.string(),
    "user": pa.string(),
    "string": pa.string(),
    "agent": pa.string(),
    "status": pa.int16(),
    "int": pa.int64(),
    "float": pa.float64(),
    "duration": pa.float64(),
}


class FormatSpecError(ValueError):
    """A format string that cannot be compiled (or an unknown built-in format name).

    The message names the format, the offending variable or directive and its 0-based position in
    the string as given; they are also kept as attributes for callers that want them."""

    def __init__(self, fmt: str, message: str, var: str | None = None, position: int | None = None):
        self.format_name = fmt
        self.var = var
        self.position = position
        where = ""
        if var is not None:
            where = f" {var}" + (f" at position {position}" if position is not None else "")
        elif position is not None:
            where = f" at position {position}"
        self._parts = (fmt, message, var, position)
        super().__init__(f"{fmt} format{where}: {message}")

    def __reduce__(self) -> tuple[type[FormatSpecError], tuple[str, str, str | None, int | None]]:
        # an exception pickles as cls(*args) by default, which this __init__ does not take
        return (type(self), self._parts)


@dataclass(frozen=True)
class Field:
    """One variable of the format: how the engine types its bytes and which column it becomes."""

    var: str  # as written, e.g. "$remote_addr", "%h", "%{User-Agent}i", "%>s"
    kind: str  # one of KINDS
    column: str | None  # None for kind "request" (it makes REQUEST_COLUMNS) and "skip"
    quoted: bool  # the format writes it between double quotes
    scale: float = 1.0  # "duration"/"epoch": times the logged number gives seconds
    # nginx's $upstream_* variables: after retries a list, "a, b" (another server) or "a : b" (another
    # upstream group). Written unquoted, such a list holds the spaces that separate fields.
    multi: bool = False
    # what the server writes for "no value" besides "-" (a load balancer's "-1" for a time it did not
    # measure): null, like "-"
    nulls: tuple[bytes, ...] = ()
    port: str | None = None  # "ip_port": the column of the port (the address is ``column``)
    # a built-in format's unquoted last field: not empty, not ending with a space, and holding none (a
    # list's separators and skipped later fields may): a format whose later versions append fields
    # after it then does not read a longer line as a shorter one, nor a line cut after a space as a
    # whole one
    word: bool = False
    # a "+" before the number is skipped: HAProxy's `option logasap` logs a request before it ends, its
    # total time and bytes so far marked so
    plus: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.var}: unknown kind {self.kind!r}")
        if (self.column is None) != (self.kind in ("request", "skip")):
            raise ValueError(f"{self.var}: kind {self.kind} with column {self.column!r}")
        if (self.port is None) != (self.kind != "ip_port"):
            raise ValueError(f"{self.var}: kind {self.kind} with port column {self.port!r}")

    def columns(self) -> list[tuple[str, pa.DataType]]:
        """The output columns this field makes, in order."""
        if self.kind == "skip":
            return []
        if self.kind == "request":
            return [(c, pa.string()) for c in REQUEST_COLUMNS]
        column = str(self.column)
        if self.kind in TIME_KINDS:
            return [(column, TS_TYPE)]
        if self.kind == "ip_port":
            return [(column, pa.string()), (str(self.port), pa.int64())]
        if self.kind == "agent":
            return [(column, pa.string()), ("is_bot", pa.bool_())]
        return [(column, _ARROW_TYPES[self.kind])]


@dataclass(frozen=True)
class FormatPlan:
    """A compiled format: the literal text around the fields, and the fields."""

    name: str  # built-in name ("combined", "main", ...) or "nginx" / "apache" for a user string
    source: str  # the format string as given (with any escape= prefix)
    dialect: str  # "nginx" or "apache"
    escape: str  # "default", "json" or "none" (nginx's escape= parameter; apache: "default")
    literals: tuple[bytes, ...]  # len(fields) + 1
    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        if len(self.literals) != len(self.fields) + 1:
            raise ValueError(f"{len(self.fields)} fields need {len(self.fields) + 1} literals")
        if self.dialect not in (*DIALECTS, TEMPLATE) or self.escape not in ESCAPES:
            raise ValueError(f"dialect {self.dialect!r}, escape {self.escape!r}")

    def __hash__(self) -> int:
        # a plan keys the engine's caches at every chunk: its fields hashed once, not at each lookup
        found: int | None = self.__dict__.get("_hash")
        if found is None:
            found = hash((self.name, self.source, self.dialect, self.escape, self.literals, self.fields))
            object.__setattr__(self, "_hash", found)
        return found

    def __getstate__(self) -> dict[str, Any]:
        # a string's hash differs between processes: a copy sent to another finds its own
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    def columns(self) -> list[tuple[str, pa.DataType]]:
        """Output columns in field order (without the ``date`` partition column)."""
        return [c for f in self.fields for c in f.columns()]

    def schema(self) -> pa.Schema:
        """The output schema (without the ``date`` partition column)."""
        return _schema(self)

    def reference_regex(self) -> re.Pattern[bytes]:
        """The per-line ground truth: ``fullmatch`` one line (without its newline); group k is field k."""
        shapes = tuple((f.kind, f.quoted, f.multi, f.word, f.nulls) for f in self.fields)
        return _reference_regex(self.literals, shapes, self.escape, self.dialect == TEMPLATE)

    @property
    def key(self) -> str:
        """A short stable identifier of the plan (name + hash of dialect and source), for caches."""
        digest = hashlib.sha1(f"{self.dialect}\0{self.source}".encode(), usedforsecurity=False)
        return f"{self.name}-{digest.hexdigest()[:16]}"


@lru_cache(maxsize=256)
def _schema(plan: FormatPlan) -> pa.Schema:
    """A plan's schema, built once: every chunk's batch asks for it."""
    return pa.schema(plan.columns())


# ---------------------------------------------------------------------------------------------------
# The catalogue: which variables are typed, and the column each one becomes.


@dataclass(frozen=True)
class Var:
    """A catalogue entry: the field kind, its column (None for request/skip), scale and a note."""

    kind: str
    column: str | None
    scale: float = 1.0
    note: str = ""
    nulls: tuple[str, ...] = ()  # what else than "-" is null
    plus: bool = False  # a "+" before the number is skipped (HAProxy's option logasap: the value so far)


def _own(kind: str, names: str, note: str = "") -> dict[str, Var]:
    """Entries for variables whose column is their own name."""
    return {n: Var(kind, n, note=note) for n in names.split()}


# nginx's documented variables that are not plain strings (or whose column is renamed). Any other
# variable, including custom ones from map/set, becomes a string column named after it.
NGINX_VARIABLES: dict[str, Var] = {
    "remote_addr": Var("ip", "ip", note="client address"),
    "remote_user": Var("user", "user", note='"-" is null'),
    "time_local": Var("time_local", "ts", note="01/Nov/2026:10:00:00 +0000"),
    "time_iso8601": Var("time_iso8601", "ts", note="2026-11-01T10:00:00+00:00"),
    "msec": Var("epoch", "ts", note="seconds since the epoch, with milliseconds"),
    "request": Var("request", None, note="request: the line as logged where it does not split (a 400)"),
    "status": Var("status", "status"),
    "body_bytes_sent": Var("int", "bytes", note="response body bytes"),
    "http_referer": Var("string", "referrer"),
    "http_user_agent": Var("agent", "user_agent", note="kept as logged, plus is_bot"),
    **_own(
        "duration",
        "request_time upstream_connect_time upstream_header_time upstream_response_time "
        "upstream_queue_time connection_time",
        note="seconds; several values (retries) are summed",
    ),
    **_own(
        "int",
        "upstream_response_length upstream_bytes_received upstream_bytes_sent",
        note="several values (retries) are summed",
    ),
    **_own(
        "int",
        "bytes_sent request_length content_length connection connection_requests pid server_port "
        "remote_port realip_remote_port proxy_port proxy_protocol_port proxy_protocol_server_port "
        "limit_rate tcpinfo_rtt tcpinfo_rttvar tcpinfo_snd_cwnd tcpinfo_rcv_space",
    ),
    "gzip_ratio": Var("float", "gzip_ratio"),
    # strings that look numeric: the engine must not sum or parse them
    "upstream_status": Var("string", "upstream_status", note="as logged: several statuses after retries"),
    "upstream_addr": Var("string", "upstream_addr", note="as logged: several addresses after retries"),
    "upstream_cache_status": Var("string", "upstream_cache_status"),
}

# Families of nginx variables (all strings): documented in the format catalogue only.
NGINX_FAMILIES: dict[str, tuple[str, str]] = {
    "$http_NAME": ("http_name", "request header (name in lower case, '-' as '_')"),
    "$sent_http_NAME": ("sent_http_name", "response header"),
    "$upstream_http_NAME": ("upstream_http_name", "upstream response header"),
    "$cookie_NAME": ("cookie_name", "cookie"),
    "$arg_NAME": ("arg_name", "query argument"),
    "$other": ("other", "any other variable, custom ones from map and set included"),
}

# Apache directives (as written without modifiers or conditions) and the nginx-named column of each.
APACHE_DIRECTIVES: dict[str, Var] = {
    "%h": Var("ip", "ip", note="remote host"),
    "%a": Var("ip", "ip", note="client IP"),
    "%{c}a": Var("ip", "ip", note="peer IP of the connection"),
    "%{c}h": Var("ip", "ip", note="peer host of the connection"),
    "%l": Var("skip", None, note="identd name, always -: no column"),
    "%u": Var("user", "user", note='"-" is null'),
    "%t": Var("time_local", "ts", note="[01/Nov/2026:10:00:00 +0000], brackets included"),
    "%{%d/%b/%Y:%H:%M:%S %z}t": Var("time_local", "ts", note="also with %T; fixed text around it is fine"),
    "%{sec}t": Var("epoch", "ts", note="also begin:/end: variants"),
    "%{msec}t": Var("epoch", "ts", scale=1e-3, note="milliseconds since the epoch"),
    "%{usec}t": Var("epoch", "ts", scale=1e-6, note="microseconds since the epoch"),
    "%r": Var("request", None, note="request: the line as logged where it does not split (a 400)"),
    "%s": Var("status", "status", note="also %>s, %<s"),
    "%b": Var("int", "bytes", note='"-" for zero: null'),
    "%B": Var("int", "bytes"),
    "%O": Var("int", "bytes_sent", note="mod_logio, headers included"),
    "%I": Var("int", "request_length", note="mod_logio, headers included"),
    "%S": Var("int", "bytes_transferred", note="mod_logio, received + sent"),
    "%D": Var("duration", "request_time", scale=1e-6, note="microseconds, as seconds"),
    "%T": Var("duration", "request_time", note="whole seconds"),
    "%{s}T": Var("duration", "request_time", note="whole seconds"),
    "%{ms}T": Var("duration", "request_time", scale=1e-3, note="milliseconds, as seconds"),
    "%{us}T": Var("duration", "request_time", scale=1e-6, note="microseconds, as seconds"),
    "%v": Var("string", "server_name", note="canonical server name"),
    "%V": Var("string", "server_name", note="server name per UseCanonicalName"),
    "%p": Var("int", "server_port"),
    "%{canonical}p": Var("int", "server_port"),
    "%{local}p": Var("int", "server_port"),
    "%{remote}p": Var("int", "remote_port"),
    "%A": Var("string", "server_addr"),
    "%P": Var("int", "pid"),
    "%{pid}P": Var("int", "pid"),
    "%{tid}P": Var("int", "tid"),
    "%{hextid}P": Var("string", "tid"),
    "%k": Var("int", "connection_requests", note="keep-alive requests; Apache counts from 0, nginx from 1"),
    "%m": Var("string", "request_method"),
    "%U": Var("string", "uri", note="URL path without query string"),
    "%q": Var("string", "query_string", note='with its leading "?"'),
    "%H": Var("string", "server_protocol"),
    "%f": Var("string", "request_filename"),
    "%L": Var("string", "request_id", note="error-log id of the request"),
    "%R": Var("string", "handler"),
    "%X": Var("string", "connection_status", note="X, + or -"),
    "%{Referer}i": Var("string", "referrer"),
    "%{User-Agent}i": Var("agent", "user_agent", note="kept as logged, plus is_bot"),
}

# Apache directives that name what they log in {param}: directive -> (column prefix, note). The column
# is the prefix + the param in lower case with every other character than [a-z0-9_] as "_", like nginx's
# $http_x_forwarded_for for X-Forwarded-For. All strings.
APACHE_FAMILIES: dict[str, tuple[str, str]] = {
    "i": ("http_", "request header"),
    "o": ("sent_http_", "response header"),
    "C": ("cookie_", "cookie"),
    "e": ("", "environment variable, e.g. %{UNIQUE_ID}e -> unique_id"),
    "x": ("", "mod_ssl variable, e.g. %{SSL_PROTOCOL}x -> ssl_protocol"),
    "n": ("note_", "note of another module"),
    "^ti": ("trailer_", "request trailer"),
    "^to": ("sent_trailer_", "response trailer"),
}

# Directives whose {param} selects what is logged: an unknown param is an error, not silently ignored.
_APACHE_PARAM_SELECTS = frozenset("ahpPTt")
_APACHE_KEY = re.compile(r"%(?:\{(.*)\})?(\^t[io]|.)")


def _apache_index() -> dict[tuple[str, str | None], Var]:
    """APACHE_DIRECTIVES keyed by (directive letter, param in lower case or None)."""
    index: dict[tuple[str, str | None], Var] = {}
    for written, var in APACHE_DIRECTIVES.items():
        m = _APACHE_KEY.fullmatch(written)
        assert m is not None, written
        param = m.group(1)
        # strftime patterns are matched by _strftime, case-sensitively
        if not (m.group(2) == "t" and param is not None and "%" in param):
            index[(m.group(2), None if param is None else param.lower())] = var
    return index


_APACHE_INDEX = _apache_index()
_HEADER_ENTRIES = {key[1]: var for key, var in _APACHE_INDEX.items() if key[0] == "i"}

# ---------------------------------------------------------------------------------------------------
# Compiling. A format string is first reduced to its characters, each with its position in the string
# as given (so errors point into what the user pasted, escapes and quotes included), then split into
# literal characters and fields, then assembled into a plan.

_Text: TypeAlias = list[tuple[str, int]]


@dataclass(frozen=True)
class _Lit:
    text: str
    pos: int


@dataclass(frozen=True)
class _Item:
    var: str
    kind: str
    column: str | None
    scale: float
    pos: int
    nulls: tuple[bytes, ...] = ()
    port: str | None = None
    multi: bool | None = None  # a list after retries; None: as nginx's $upstream_* variables are
    plus: bool = False


_Token: TypeAlias = _Lit | _Item


def _unescape(s: str, start: int, end: int, escapes: Mapping[str, str]) -> _Text:
    """``s[start:end]`` with backslash escapes replaced (``escapes``: char after the backslash -> what
    it stands for); any other backslash stays as written."""
    out: _Text = []
    i = start
    while i < end:
        if s[i] == "\\" and i + 1 < end and s[i + 1] in escapes:
            out.append((escapes[s[i + 1]], i))
            i += 2
        else:
            out.append((s[i], i))
            i += 1
    return out


# nginx's config reader (ngx_conf_read_token) applies these in every token, quoted or not.
_NGINX_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "t": "\t", "r": "\r", "n": "\n"}
# mod_log_config applies these in the literal text of a LogFormat (after the config reader removed the
# backslash of an escaped quote).
_APACHE_ESCAPES = {"\\": "\\", "t": "\t", "r": "\r", "n": "\n"}

_LOG_FORMAT_PREFIX = re.compile(r"log_format\s+[^\s'\";]+\s+")
_LOGFORMAT_PREFIX = re.compile(r"LogFormat\s+", re.IGNORECASE)  # Apache directives ignore case
_ESCAPE_PREFIX = re.compile(r"escape=([^\s'\"]*)\s*")
_NGINX_NAME = re.compile(r"[A-Za-z0-9_]*")
_WS = " \t\r\n"


def _nginx_pieces(s: str, start: int, end: int, name: str) -> tuple[list[_Text], bool, bool]:
    """nginx.conf tokens of ``s[start:end]``: (unescaped pieces, all of them quoted, every two pieces
    separated by a line break). nginx concatenates the pieces of a log_format; ``#`` between them
    starts a comment and a final ``;`` ends the directive."""
    pieces: list[_Text] = []
    all_quoted, line_separated = True, True
    i = start
    while True:
        newline = False
        while i < end and (s[i] in _WS or s[i] == "#"):
            if s[i] == "#":
                nl = s.find("\n", i, end)
                i = end if nl < 0 else nl
            else:
                newline |= s[i] == "\n"
                i += 1
        if i >= end:
            break
        if pieces and not newline:
            line_separated = False
        if s[i] == ";":
            if s[i + 1 : end].strip(_WS):
                raise FormatSpecError(name, "text after the ';' that ends the directive", ";", i)
            break
        if s[i] in "'\"":
            quote, j = s[i], i + 1
            while j < end and s[j] != quote:
                j += 2 if s[j] == "\\" else 1
            if j >= end:
                raise FormatSpecError(name, f"the string has no closing {quote}", quote, i)
            pieces.append(_unescape(s, i + 1, j, _NGINX_ESCAPES))
            i = j + 1
        else:
            j = i
            while j < end and s[j] not in _WS and s[j] != ";":
                j += 1
            pieces.append(_unescape(s, i, j, _NGINX_ESCAPES))
            all_quoted = False
            i = j
    return pieces, all_quoted, line_separated


def _nginx_text(fmt: str, name: str) -> tuple[str, _Text]:
    """The escape mode and the characters of an nginx format as pasted: the bare string, or as it
    stands in nginx.conf (optionally with ``log_format NAME`` and ``escape=...`` before it, quoted in
    one or several pieces)."""
    i = len(fmt) - len(fmt.lstrip(_WS))
    end = len(fmt.rstrip(_WS))
    m = _LOG_FORMAT_PREFIX.match(fmt, i, end)
    if m:
        i = m.end()
    escape = "default"
    m = _ESCAPE_PREFIX.match(fmt, i, end)
    if m:
        escape = m.group(1)
        if escape not in ESCAPES:
            raise FormatSpecError(
                name, f"escape must be one of {', '.join(ESCAPES)}", f"escape={escape}", m.start()
            )
        i = m.end()
    if i < end and fmt[i] in "'\"":
        try:
            pieces, all_quoted, line_separated = _nginx_pieces(fmt, i, end, name)
        except FormatSpecError:
            if fmt[i] == "'":
                raise
            pieces, all_quoted, line_separated = [], False, False
        # A leading single quote can only be nginx quoting. A leading double quote may also be the
        # format's own text ('"$request" $status'); read it as nginx quoting only when it is one
        # quoted string, or quoted pieces on separate lines as in nginx.conf.
        if fmt[i] == "'" or (pieces and all_quoted and (len(pieces) == 1 or line_separated)):
            return escape, [c for piece in pieces for c in piece]
    return escape, _unescape(fmt, i, end, _NGINX_ESCAPES)


def _nginx_field(var: str, name: str, pos: int) -> _Item:
    lower = name.lower()  # nginx variable names are case-insensitive
    entry = NGINX_VARIABLES.get(lower)
    if entry is None:
        return _Item(var, "string", lower, 1.0, pos)
    return _Item(var, entry.kind, entry.column, entry.scale, pos)


def _nginx_tokens(text: _Text, fmt_name: str) -> list[_Token]:
    """Literal characters and ``$var`` / ``${var}`` fields, as nginx's ngx_http_log_compile reads them."""
    chars = "".join(c for c, _ in text)
    tokens: list[_Token] = []
    k = 0
    while k < len(text):
        ch, pos = text[k]
        if ch != "$":
            tokens.append(_Lit(ch, pos))
            k += 1
            continue
        brace = chars.startswith("{", k + 1)
        m = _NGINX_NAME.match(chars, k + 1 + brace)
        assert m is not None  # [...]* always matches
        end = m.end()
        if brace:
            if not chars.startswith("}", end):
                raise FormatSpecError(fmt_name, "the closing } is missing", chars[k:end], pos)
            end += 1
        var = chars[k:end]
        if not m.group():
            raise FormatSpecError(fmt_name, "a $ that does not start a variable name", var, pos)
        tokens.append(_nginx_field(var, m.group(), pos))
        k = end
    return tokens


def _apache_text(fmt: str) -> _Text:
    """The characters of an Apache format as pasted: bare (``\\"`` as in apache2.conf or not), or the
    quoted string of apache2.conf, optionally with ``LogFormat`` before it and a nickname after it."""
    i = len(fmt) - len(fmt.lstrip(_WS))
    end = len(fmt.rstrip(_WS))
    m = _LOGFORMAT_PREFIX.match(fmt, i, end)
    if m:
        i = m.end()
    if i < end and fmt[i] in "'\"":
        # as Apache's ap_getword_conf reads a quoted argument: only \<quote> is an escape there
        quote, j = fmt[i], i + 1
        while j < end and fmt[j] != quote:
            j += 2 if fmt[j] == "\\" and fmt[j + 1 : j + 2] == quote else 1
        if j < end and re.fullmatch(r"(?:\s+[^\s'\"%]+)?\s*", fmt[j + 1 : end]):
            return _unescape(fmt, i + 1, j, {quote: quote})
    return _unescape(fmt, i, end, {'"': '"'})


def _column_name(param: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", param.lower())


def _strftime_tokens(pattern: str) -> list[tuple[bool, str]]:
    """(is a conversion, char) per element of a strftime pattern, %T spelled out and %% a literal."""
    out: list[tuple[bool, str]] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "%" and i + 1 < len(pattern):
            c = pattern[i + 1]
            if c == "%":
                out.append((False, "%"))
            elif c == "T":
                out += [(True, "H"), (False, ":"), (True, "M"), (False, ":"), (True, "S")]
            else:
                out.append((True, c))
            i += 2
        else:
            out.append((False, pattern[i]))
            i += 1
    return out


# what nginx's $time_local writes, and so what the engine's time_local parser reads
_TIME_LOCAL_CORE = _strftime_tokens("%d/%b/%Y:%H:%M:%S %z")


def _strftime(pattern: str) -> tuple[str, str] | None:
    """For a strftime pattern that writes nginx's $time_local with fixed text around it (``[...]``),
    that text before and after; None for any other pattern."""
    tokens = _strftime_tokens(pattern)
    n = len(_TIME_LOCAL_CORE)
    for j in range(len(tokens) - n + 1):
        if tokens[j : j + n] == _TIME_LOCAL_CORE:
            before, after = tokens[:j], tokens[j + n :]
            if any(conv for conv, _ in before + after):
                return None
            return "".join(c for _, c in before), "".join(c for _, c in after)
    return None


_STRFTIME_HELP = (
    "this time pattern is not supported; use %t, %{%d/%b/%Y:%H:%M:%S %z}t (with fixed text around it "
    "if you like), or %{sec}t, %{msec}t, %{usec}t. ISO 8601 patterns cannot be read: Apache's %z "
    "writes +0000, without the colon of the +00:00 that the ISO 8601 time parser expects"
)


def _apache_field(letter: str, param: str | None, var: str, pos: int, fmt_name: str) -> list[_Token]:
    """The field of one directive, with any fixed text it writes itself as literals around it."""

    def item(entry: Var) -> _Item:
        return _Item(var, entry.kind, entry.column, entry.scale, pos)

    if letter in APACHE_FAMILIES:
        if not param:
            raise FormatSpecError(fmt_name, "needs a {name}, e.g. %{X-Forwarded-For}i", var, pos)
        if letter == "i" and param.lower() in _HEADER_ENTRIES:
            return [item(_HEADER_ENTRIES[param.lower()])]
        prefix, _ = APACHE_FAMILIES[letter]
        return [_Item(var, "string", prefix + _column_name(param), 1.0, pos)]
    if letter == "t" and param is not None:
        # begin:/end: choose the moment (request start or end), not the format
        for moment in ("begin:", "end:"):
            if param.startswith(moment):
                param = param[len(moment) :]
        entry = _APACHE_INDEX.get(("t", param.lower()))
        if entry is not None:
            return [item(entry)]
        around = _strftime(param)
        if around is None:
            raise FormatSpecError(fmt_name, _STRFTIME_HELP, var, pos)
        before, after = around
        return [
            *(_Lit(c, pos) for c in before),
            item(_APACHE_INDEX[("t", None)]),
            *(_Lit(c, pos) for c in after),
        ]
    key = (letter, None if param is None else param.lower())
    entry = _APACHE_INDEX.get(key)
    if entry is None and param is not None and letter not in _APACHE_PARAM_SELECTS:
        entry = _APACHE_INDEX.get((letter, None))  # Apache ignores a {param} these do not use
    if entry is None:
        if (letter, None) in _APACHE_INDEX:
            raise FormatSpecError(fmt_name, f"unknown {{{param}}} for %{letter}", var, pos)
        raise FormatSpecError(fmt_name, "unknown or unsupported Apache LogFormat directive", var, pos)
    if letter == "t":
        # %t writes [01/Nov/2026:10:00:00 +0000]: the brackets are fixed text, so they become literals
        # and the field is exactly what nginx's $time_local writes
        return [_Lit("[", pos), item(entry), _Lit("]", pos)]
    return [item(entry)]


def _apache_tokens(text: _Text, fmt_name: str) -> list[_Token]:
    """Literal characters and fields, as Apache's mod_log_config parses a LogFormat:
    ``%[!][status,...][<|>]{param}X`` with the modifiers in any order, ``%%`` a literal percent."""
    tokens: list[_Token] = []
    n = len(text)
    k = 0
    while k < n:
        ch, pos = text[k]
        if ch == "\\" and k + 1 < n and text[k + 1][0] in _APACHE_ESCAPES:
            tokens.append(_Lit(_APACHE_ESCAPES[text[k + 1][0]], pos))
            k += 2
            continue
        if ch != "%":
            tokens.append(_Lit(ch, pos))
            k += 1
            continue
        if k + 1 < n and text[k + 1][0] == "%":
            tokens.append(_Lit("%", pos))
            k += 2
            continue
        start, k = k, k + 1
        param: str | None = None
        letter = ""
        while not letter:
            if k >= n:
                written = "".join(c for c, _ in text[start:])
                raise FormatSpecError(fmt_name, "the directive has no letter", written, pos)
            c = text[k][0]
            if c in "!<>,0123456789":
                k += 1  # conditions and original/final request: the kind stays the same
            elif c == "{":
                close = next((j for j in range(k + 1, n) if text[j][0] == "}"), -1)
                if close < 0:
                    written = "".join(c for c, _ in text[start:])
                    raise FormatSpecError(fmt_name, "the closing } is missing", written, pos)
                param = "".join(c for c, _ in text[k + 1 : close])
                k = close + 1
            elif c == "^":
                letter = "".join(c for c, _ in text[k : k + 3])
                k += 3
            else:
                letter = c
                k += 1
        var = "".join(c for c, _ in text[start:k])
        tokens += _apache_field(letter, param, var, pos, fmt_name)
    return tokens


def _is_list(var: str) -> bool:
    """Whether a variable is one of nginx's ``$upstream_*``, a list after retries."""
    return var.lstrip("${").lower().startswith("upstream_")


def _assemble(name: str, source: str, dialect: str, escape: str, tokens: list[_Token]) -> FormatPlan:
    """The plan of literal characters and fields: runs of literals merged, then checked."""
    items: list[_Item] = []
    literals: list[str] = []
    run: list[str] = []
    for tok in tokens:
        if isinstance(tok, _Lit):
            if tok.text == "\n":
                raise FormatSpecError(name, "a line break: each log record must be one line", "\\n", tok.pos)
            run.append(tok.text)
        else:
            literals.append("".join(run))
            run = []
            items.append(tok)
    literals.append("".join(run))
    if not items:
        raise FormatSpecError(name, "the format has no variables")
    for k in range(1, len(items)):
        if not literals[k]:
            a, b = items[k - 1], items[k]
            raise FormatSpecError(
                name,
                f"follows {a.var} (position {a.pos}) with no text between them, so a log line cannot be "
                "split between the two; the format needs a separator",
                b.var,
                b.pos,
            )
    fields = tuple(
        Field(
            var=it.var,
            kind=it.kind,
            column=it.column,
            quoted=literals[k].endswith('"') and literals[k + 1].startswith('"'),
            scale=it.scale,
            multi=_is_list(it.var) if it.multi is None else it.multi,
            nulls=it.nulls,
            port=it.port,
            word=dialect == TEMPLATE and k == len(items) - 1 and not literals[k + 1],
            plus=it.plus,
        )
        for k, it in enumerate(items)
    )
    seen: dict[str, _Item] = {}
    for it, f in zip(items, fields, strict=True):
        for column, _ in f.columns():
            if column in RESERVED_COLUMNS:
                raise FormatSpecError(
                    name, f"makes a column {column!r}, the name of the partition column", it.var, it.pos
                )
            if column in seen:
                first = seen[column]
                raise FormatSpecError(
                    name,
                    f"makes the column {column!r} that {first.var} (position {first.pos}) makes already",
                    it.var,
                    it.pos,
                )
            seen[column] = it
    if "ts" not in seen or seen["ts"].kind not in TIME_KINDS:
        hint = "$time_local, $time_iso8601 or $msec" if dialect == "nginx" else "%t or %{msec}t"
        raise FormatSpecError(name, f"no time variable ({hint}): the output is partitioned by date")
    return FormatPlan(
        name=name,
        source=source,
        dialect=dialect,
        escape=escape,
        literals=tuple(x.encode() for x in literals),
        fields=fields,
    )


def compile_nginx(fmt: str, name: str = "nginx") -> FormatPlan:
    """Compile an nginx ``log_format`` string (bare, or quoted as in nginx.conf, with ``escape=``)."""
    escape, text = _nginx_text(fmt, name)
    return _assemble(name, fmt, "nginx", escape, _nginx_tokens(text, name))


def compile_apache(fmt: str, name: str = "apache") -> FormatPlan:
    """Compile an Apache ``LogFormat`` string (bare or quoted, ``\\"`` as in apache2.conf or not)."""
    return _assemble(name, fmt, "apache", "default", _apache_tokens(_apache_text(fmt), name))


# The types of a template's fields (``{column:type}``, pipeline.formats.servers): the kind each is read
# as, the scale to seconds, and what is null besides "-".
_INT = Var("int", None, note='"-" is null')
_MS = Var("duration", None, scale=1e-3, note='milliseconds, as seconds; "-1" is null', nulls=("-1",))


def _plus(var: Var) -> Var:
    """``var`` after a ``+`` that marks a value so far (HAProxy's ``option logasap``), which is skipped."""
    return replace(var, note=var.note + '; a "+" before it (the value so far) is skipped', plus=True)


TEMPLATE_TYPES: dict[str, Var] = {
    "string": Var("string", None, note='"-" is null'),
    "ip": Var("ip", None, note="kept as logged"),
    "user": Var("user", None, note='"-" is null'),
    "agent": Var("agent", None, note="kept as logged, plus is_bot"),
    "request": Var("request", None, note='"- - - " (no HTTP request) is null', nulls=("- - - ", "- - -")),
    "nginx_request": Var("request", None, note="as nginx's $request: only a lone - is null"),
    "status": Var("status", None, note='"-" and "-1" (no response, HAProxy) are null', nulls=("-", "-1")),
    "status0": Var("status", None, note='"-" and 0 (no response was sent) are null', nulls=("-", "0")),
    "int": _INT,
    "int_plus": _plus(_INT),
    "priority": Var(
        "int", None, note='"-" and "-1" (an error while the rules were evaluated) are null', nulls=("-1",)
    ),
    "float": Var("float", None),
    "duration": Var("duration", None, note="seconds"),
    "duration_list": Var("duration", None, note="seconds; nginx's list after retries is summed"),
    "int_list": Var("int", None, note="nginx's list after retries is summed"),
    "string_list": Var("string", None, note="nginx's list after retries, as logged"),
    "seconds": Var("duration", None, note='seconds; "-1" (not measured) is null', nulls=("-1",)),
    "ms": _MS,
    "ms_plus": _plus(_MS),
    "time_local": Var("time_local", None, note="01/Nov/2026:10:00:00 +0000"),
    "time_rfc3339": Var("time_rfc3339", None, note="2026-11-01T10:00:00.123456Z, any fraction, Z or +hh:mm"),
    "time_clf_ms": Var("time_clf_ms", None, note="01/Nov/2026:10:00:00.123, no offset: read as UTC"),
    "ip_port": Var(
        "ip_port", None, note='address:port, IPv6 as written ([::1]:80 or ::1:80), no space; "-" is null'
    ),
    "skip": Var("skip", None, note="no column"),
}
_TEMPLATE_FIELD = re.compile(r"\{([a-z0-9_]*)(?:,([a-z0-9_]+))?(?::([a-z0-9_]+))?\}")


def compile_template(template: str, name: str) -> FormatPlan:
    """Compile a built-in server format's template: literal text with ``{column:type}`` fields
    (:data:`TEMPLATE_TYPES`; no type: a string), ``{ip,port:ip_port}`` for an address and its port,
    ``{:skip}`` for text that makes no column, ``{{`` and ``}}`` for literal braces."""
    tokens: list[_Token] = []
    k = 0
    while k < len(template):
        if template.startswith(("{{", "}}"), k):
            tokens.append(_Lit(template[k], k))
            k += 2
            continue
        m = _TEMPLATE_FIELD.match(template, k)
        if template[k] != "{":
            tokens.append(_Lit(template[k], k))
            k += 1
            continue
        if m is None:
            raise FormatSpecError(name, "a { that does not start a {column:type} field", "{", k)
        column, port, type_name = m.group(1), m.group(2), m.group(3) or "string"
        entry = TEMPLATE_TYPES.get(type_name)
        if entry is None:
            raise FormatSpecError(name, f"unknown type; types: {', '.join(TEMPLATE_TYPES)}", m.group(), k)
        own = None if entry.kind in ("request", "skip") else column
        nulls = tuple(n.encode() for n in entry.nulls)
        multi = type_name.endswith("_list")
        tokens.append(_Item(m.group(), entry.kind, own, entry.scale, k, nulls, port, multi, entry.plus))
        k = m.end()
    return _assemble(name, template, TEMPLATE, "default", tokens)


_COMPILERS: dict[str, Callable[[str, str], FormatPlan]] = {"nginx": compile_nginx, "apache": compile_apache}

_COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
    '"$http_user_agent"'
)
BUILTINS: dict[str, tuple[str, str]] = {
    "combined": ("nginx", _COMBINED),
    "common": ("apache", '%h %l %u %t "%r" %>s %b'),
    "vhost_combined": ("apache", '%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"'),
    "main": ("nginx", _COMBINED + ' "$http_x_forwarded_for"'),
    # verbatim from the nginx blog, as bench/gen_access_logs.py --format upstream writes it
    "upstream_time": (
        "nginx",
        _COMBINED + ' rt=$request_time uct="$upstream_connect_time" uht="$upstream_header_time" '
        'urt="$upstream_response_time"',
    ),
}


@cache
def builtin(name: str) -> FormatPlan:
    """The plan of a built-in format."""
    try:
        dialect, fmt = BUILTINS[name]
    except KeyError:
        raise FormatSpecError(
            repr(name),
            f"not a built-in format; built-in formats: {', '.join(sorted(BUILTINS))}, or the server's "
            "own format string as {nginx = '...'} or {apache = '...'}",
        ) from None
    return _COMPILERS[dialect](fmt, name)


@lru_cache(maxsize=64)
def _compiled(dialect: str, fmt: str) -> FormatPlan:
    return _COMPILERS[dialect](fmt, dialect)


def plan_for(spec: str | Mapping[str, str]) -> FormatPlan:
    """The plan for a config's format: a built-in name, or ``{"nginx": "..."}`` / ``{"apache": "..."}``."""
    if isinstance(spec, str):
        return builtin(spec)
    keys = sorted(spec)
    if len(keys) != 1 or keys[0] not in _COMPILERS:
        raise FormatSpecError(
            "custom", f"give exactly one of 'nginx' or 'apache' with the format string, not {keys}"
        )
    return _compiled(keys[0], spec[keys[0]])


# ---------------------------------------------------------------------------------------------------
# The reference regex.

# runs to the first unescaped quote; the two alternatives start differently, so it is deterministic
_QUOTED_GROUP = rb'((?:[^"\\]|\\.)*+)'


# an unquoted list of nginx's $upstream_* values: items without spaces or commas, ", " or " : " between
_LIST_GROUP = rb"([^ ,]*+(?:(?:, | : )[^ ,]*+)*+)"


# The times that servers write at a fixed width, and the bytes such a time holds
_TIME_WIDTHS = {"time_local": 26, "time_iso8601": 25}  # 01/Nov/2026:10:00:00 +0000, 2026-11-01T10:00:00+00:00
_TIME_BYTES = {
    "time_local": frozenset(b"0123456789/:+- abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    "time_iso8601": frozenset(b"0123456789-:T+"),
}


def fixed_width(kind: str, after: bytes) -> int | None:
    """The width of a field of ``kind`` followed by the literal ``after`` when the field ends there and
    not at the literal's first occurrence: a time whose own bytes hold the literal's first byte (the
    space inside ``$time_local`` before a space, ``-`` in an ISO date before a dash); else None."""
    width = _TIME_WIDTHS.get(kind)
    return width if width is not None and after[:1] and after[0] in _TIME_BYTES[kind] else None


_ADDRESSES = ("ip", "ip_port")  # a built-in format's address (and port) holds no space: see spaceless


def spaceless(plan: FormatPlan, k: int) -> bool:
    """Whether field ``k`` of a built-in format holds no space: its address, or address and port (a line
    with text before it, a container runtime's prefix, is then not read with that text as its address;
    and a line of another format is refused at its first space, not split on to its end), and its last
    word unless that is a list or skipped later fields (a longer line is then not read as a shorter one)."""
    f = plan.fields[k]
    last_word = f.word and f.kind != "skip" and not f.multi
    return plan.dialect == TEMPLATE and (f.kind in _ADDRESSES or last_word)


def listy(plan: FormatPlan, k: int) -> bool:
    """Whether field ``k`` is an unquoted ``$upstream_*`` list that the separator after it could split."""
    f, after = plan.fields[k], plan.literals[k + 1]
    return f.multi and not f.quoted and after[:1] in (b" ", b",")


def _group(kind: str, quoted: bool, multi: bool, word: bool, nulls: tuple[bytes, ...], after: bytes) -> bytes:
    """The capturing group of a field followed by the literal ``after``."""
    if word and not after and not quoted:  # not empty, no space at its end (a line cut after one)
        if multi:
            return _LIST_GROUP + rb"(?<=[^ ])"
        return rb"(.*+)(?<=[^ ])" if kind == "skip" else rb"([^ ]++)"
    width = fixed_width(kind, after)
    if width is not None:
        return b"(.{%d})" % width
    if kind == "status" and not after[:1].isdigit():
        # a digit after it could end a first-occurrence split inside the three
        return (
            b"("
            + b"|".join([rb"\d{3}", *(re.escape(n) for n in sorted(nulls, key=len, reverse=True))])
            + b")"
        )
    if quoted:
        return _QUOTED_GROUP
    if multi and after[:1] in (b" ", b","):
        if after.startswith((b", ", b" : ")):
            # the literal begins like a list's separator: the list ends where the literal is, as any
            # field ends at the literal's first occurrence (a possessive list would eat it)
            return _LIST_GROUP.replace(rb"(?:(?:, | : )", rb"(?:(?!" + re.escape(after) + rb")(?:, | : )")
        return _LIST_GROUP
    if not after:
        return rb"(.*+)"
    # Everything up to the first occurrence of ``after``, possessively: exactly the first-occurrence
    # split, and linear time on lines that do not match.
    first, rest = re.escape(after[:1]), after[1:]
    if not rest:
        return b"([^" + first + b"]*+)"
    return b"((?:[^" + first + b"]|" + first + b"(?!" + re.escape(rest) + b"))*+)"


@lru_cache(maxsize=256)
def _reference_regex(
    literals: tuple[bytes, ...],
    shapes: tuple[tuple[str, bool, bool, bool, tuple[bytes, ...]], ...],
    escape: str,
    template: bool,
) -> re.Pattern[bytes]:
    parts = [re.escape(literals[0])]
    for (kind, quoted, multi, word, nulls), after in zip(shapes, literals[1:], strict=True):
        # escape=none: a value may hold a raw quote and a backslash is no escape, so a quoted field
        # also ends at the first occurrence of the literal after it
        group = _group(kind, quoted and escape != "none", multi, word, nulls, after)
        if template and kind in _ADDRESSES:  # a built-in format's address holds no space (spaceless)
            group = b"((?:(?!" + re.escape(after) + b")[^ ])*+)" if after else rb"([^ ]*+)"
        parts += [group, re.escape(after)]
    return re.compile(b"".join(parts) + rb"\Z")


# ---------------------------------------------------------------------------------------------------
# The format catalogue of docs/formats.md.

_TYPE_NAMES = {
    **{k: "string" for k in STRING_KINDS},
    **{k: "timestamp[us, UTC]" for k in TIME_KINDS},
    "request": f"string ({len(REQUEST_COLUMNS)} columns)",
    "status": "int16",
    "int": "int64",
    "float": "float64",
    "duration": "float64 (seconds)",
    "skip": "(none)",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def catalogue_markdown() -> str:
    """A Markdown table of every typed nginx variable and Apache directive: column, kind and type."""
    rows = [
        "| Variable | Column | Kind | Arrow type | Notes |",
        "| --- | --- | --- | --- | --- |",
    ]

    def row(var: str, entry: Var) -> str:
        if entry.kind == "request":
            column = ", ".join(f"`{c}`" for c in REQUEST_COLUMNS)
        elif entry.column is None:
            column = "(none)"
        else:
            column = f"`{entry.column}`" + (", `is_bot` (bool)" if entry.kind == "agent" else "")
        note = entry.note
        if entry.scale != 1.0 and "seconds" not in note:
            note = f"{note}; times {entry.scale:g} for seconds".lstrip("; ")
        return f"| `{_cell(var)}` | {column} | {entry.kind} | {_TYPE_NAMES[entry.kind]} | {_cell(note)} |"

    rows += [row(f"${name}", entry) for name, entry in NGINX_VARIABLES.items()]
    for var, (column, note) in NGINX_FAMILIES.items():
        rows.append(f"| `{_cell(var)}` | `{column}` | string | string | {_cell(note)} |")
    rows += [row(var, entry) for var, entry in APACHE_DIRECTIVES.items()]
    for letter, (prefix, note) in APACHE_FAMILIES.items():
        rows.append(f"| `%{{Name}}{letter}` | `{prefix}name` | string | string | {_cell(note)} |")
    return "\n".join(rows) + "\n"


__all__ = [
    "APACHE_DIRECTIVES",
    "APACHE_FAMILIES",
    "BUILTINS",
    "KINDS",
    "NGINX_FAMILIES",
    "NGINX_VARIABLES",
    "Field",
    "FormatPlan",
    "FormatSpecError",
    "Var",
    "builtin",
    "catalogue_markdown",
    "compile_apache",
    "compile_nginx",
    "compile_template",
    "plan_for",
]
