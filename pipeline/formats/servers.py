"""The built-in formats of other servers' access logs: load balancers, proxies and object storage.

Each is written from its server's published field list (the ``url`` of its :class:`Server`) as one or
more *templates*: literal text with ``{column:type}`` fields (``pipeline.formats.spec.compile_template``),
compiled into the same plans that the servers' own format strings compile into, so the one vectorised
engine (``pipeline.formats.engine``) reads them all.

Why several templates for one format: servers append fields over the years (an Application Load
Balancer's log has grown from 18 fields to 33), and some lines carry optional parts (HAProxy's syslog
prefix, its captured headers). A format's :attr:`Server.variants` are tried in order, longest first: a
line is read by the first variant that splits it and whose types its values fit; a line that none reads
keeps the reason of the first variant that split it (``no match`` if none did). The split is decided for
all lines of a chunk at once (:meth:`VariantsFormat.scan`): each variant's vectorised split is tried on
the lines that earlier ones left, skipping the lines with fewer spaces, quotes or brackets than its
literals hold, and each variant then types its own lines; only lines for the engine's regex (non-ASCII,
escapes) go through the variants one by one. Where the compiled loops are loaded one pass gives each line
its variant (:func:`pipeline.formats.compiled.split_variants`), the same as the numpy split's. So that a
longer line never reads as a shorter variant, a template's last unquoted field holds no space, and where
the documentation says to expect more fields later, a last variant takes the known fields and skips the
rest.

:class:`Servers` is their family (``pipeline.formats.base.Family``); the catalogue of docs/formats.md is
generated from :data:`SERVERS` (:func:`servers_markdown`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.arrays import int64_array
from pipeline.formats import compiled
from pipeline.formats.base import Family, Format, FormatKey, Reason, RejectRows, Rows, empty_batch
from pipeline.formats.engine import Split, _fast_spans, _Positions, exact, scan
from pipeline.formats.spec import TEMPLATE_TYPES, FormatPlan, FormatSpecError, compile_template
from pipeline.formats.vector import fast_candidates, line_bounds, reject_lines


@dataclass(frozen=True)
class Server:
    """A built-in server format: what it is, where its fields are documented, its templates (longest
    first) and notes on how its fields are read."""

    title: str
    url: str
    variants: tuple[str, ...]
    note: str = ""


def _cuts(fields: Sequence[str], ends: Sequence[int], rest: bool) -> tuple[str, ...]:
    """Templates of a space-separated format that grew at its end: all ``fields``, then (``rest``) all
    of them and any later ones skipped, then the first ``n`` of them for each ``n`` in ``ends``."""
    full = " ".join(fields)
    return (full, *([full + " {:skip}"] if rest else []), *(" ".join(fields[:n]) for n in ends))


def _balancer(peer: str) -> list[str]:
    """The fields a Classic Load Balancer writes, which an Application Load Balancer's line continues
    (after its ``type``); ``peer``: what each calls the instance it forwards to."""
    return [
        "{ts:time_rfc3339}",
        "{elb}",
        "{ip,client_port:ip_port}",
        f"{{{peer}_ip,{peer}_port:ip_port}}",
        "{request_processing_time:seconds}",
        f"{{{peer}_processing_time:seconds}}",
        "{response_processing_time:seconds}",
        "{status:status}",
        f"{{{peer}_status_code:status}}",
        "{request_length:int}",
        "{bytes_sent:int}",
        '"{request:request}"',
        '"{user_agent:agent}"',
        "{ssl_cipher}",
        "{ssl_protocol}",
    ]


# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-access-logs.html
_ALB = [
    "{type}",
    *_balancer("target"),
    "{target_group_arn}",
    '"{trace_id}"',  # 18: the first ALB logs end here
    '"{domain_name}"',
    '"{chosen_cert_arn}"',  # 20
    "{matched_rule_priority:priority}",
    "{request_creation_time:time_rfc3339}",
    '"{actions_executed}"',
    '"{redirect_url}"',  # 24
    '"{error_reason}"',  # 25
    '"{target_port_list}"',
    '"{target_status_code_list}"',  # 27
    '"{classification}"',
    '"{classification_reason}"',  # 29
    "{conn_trace_id}",  # 30
    '"{transformed_host}"',
    '"{transformed_uri}"',
    '"{request_transform_status}"',  # 33
]
# https://docs.aws.amazon.com/elasticloadbalancing/latest/classic/access-log-collection.html
_ELB = _balancer("backend")

# https://docs.aws.amazon.com/AmazonS3/latest/userguide/LogFormat.html
_S3 = [
    "{bucket_owner}",
    "{bucket}",
    "[{ts:time_local}]",
    "{ip}",
    "{requester}",
    "{request_id}",
    "{operation}",
    "{key}",
    '"{request:request}"',
    "{status:status}",
    "{error_code}",
    "{bytes:int}",
    "{object_size:int}",
    "{request_time:ms}",
    "{turn_around_time:ms}",
    '"{referrer}"',
    '"{user_agent:agent}"',
    "{version_id}",  # 18
    "{host_id}",
    "{signature_version}",
    "{cipher_suite}",
    "{authentication_type}",
    "{host_header}",  # 23
    "{tls_version}",  # 24
    "{access_point_arn}",  # 25
    "{acl_required}",  # 26
    "{source_region}",  # 27: where a cross-region request came from
]

# HAProxy's httplog: https://docs.haproxy.org/2.8/configuration.html#8.2.3
_HAPROXY = (
    "{ip,client_port:ip_port} [{ts:time_clf_ms}] {frontend_name} {backend_name}/{server_name} "
    "{time_request:ms}/{time_queue:ms}/{time_connect:ms}/{time_response:ms}/{request_time:ms_plus} "
    "{status:status} {bytes_sent:int_plus} {captured_request_cookie} {captured_response_cookie} "
    "{termination_state} {actconn:int}/{feconn:int}/{beconn:int}/{srv_conn:int}/{retries} "
    "{srv_queue:int}/{backend_queue:int} "
)
# `option httpslog` (HTTPS frontends) appends the connection's and TLS's errors, the SNI, version and
# cipher: https://docs.haproxy.org/2.8/configuration.html#8.2.4
_HAPROXY_TLS = (
    " {fc_err:int}/{ssl_fc_err}/{ssl_c_err:int}/{ssl_c_ca_err:int}/{ssl_fc_is_resumed:int} "
    "{ssl_fc_sni}/{ssl_protocol}/{ssl_cipher}"
)
# tcplog, which a TCP frontend (`mode tcp`) writes to the same log: no request, its timers Tw/Tc/Tt
# https://docs.haproxy.org/2.8/configuration.html#8.2.2
_HAPROXY_TCP = (
    "{ip,client_port:ip_port} [{ts:time_clf_ms}] {frontend_name} {backend_name}/{server_name} "
    "{time_queue:ms}/{time_connect:ms}/{request_time:ms_plus} {bytes_sent:int_plus} {termination_state} "
    "{actconn:int}/{feconn:int}/{beconn:int}/{srv_conn:int}/{retries} {srv_queue:int}/{backend_queue:int}"
)
_HAPROXY_CAPTURES = (
    "{{{captured_request_headers}}} {{{captured_response_headers}}} ",
    "{{{captured_request_headers}}} ",
    "",
)
# What comes before the message, by HAProxy's `log ... format` (section 4.2, "log"): each of these
# prefixes is skipped and the accept date in the message is `ts`. A line with a longer prefix than its
# variant's does not read as a line of it (its address would hold a space or its time would not be
# one), and the next variant is tried. So the common prefixes go first, and a raw line (no prefix: the
# variants a chunk of a container's logs all take) rules out the earlier ones at their first bytes or
# by its count of `]`.
_HAPROXY_PREFIXES = (
    # rfc3164 and local (the default), and what syslog daemons write to files: "Feb  6 12:14:14
    # localhost haproxy[14389]: " or "2024-03-01T12:00:00.123456+00:00 lb1 haproxy[14389]: ", to the
    # "]: " after the pid
    "{:skip}]: ",
    # rfc5424: "<134>1 2009-02-06T12:14:14.655+01:00 localhost haproxy 14389 - - ", no message id and
    # no structured data
    "<{:skip}>1 {:skip} - - ",
    "<{:skip}>",  # short and priority: "<6>", "<134>"
    "",  # raw (logging to stdout), or a collector that kept the message alone
    "<{:skip}>{:skip} ",  # timed: "<6>2009-02-06T12:14:14.655+01:00 "
    "{:skip} ",  # iso: "2009-02-06T12:14:14.655+01:00 "
)

# ingress-nginx's upstreaminfo (its log-format-upstream), now and in versions before the alternative
# upstream: https://kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/log-format/
_INGRESS_HEAD = (
    '"{request:nginx_request}" {status:status} {bytes:int} "{referrer}" "{user_agent:agent}" '
    "{request_length:int} {request_time:duration} [{proxy_upstream_name}] "
)
_INGRESS_TAIL = (
    "{upstream_addr:string_list} {upstream_response_length:int_list} "
    "{upstream_response_time:duration_list} {upstream_status:string_list}"
)
_INGRESS_LINES = (
    "{ip:ip} - {user:user} [{ts:time_local}] "
    + _INGRESS_HEAD
    + "[{proxy_alternative_upstream_name}] "
    + _INGRESS_TAIL
    + " {req_id}",
    "{ip:ip} - [{:skip}] - {user:user} [{ts:time_local}] " + _INGRESS_HEAD + _INGRESS_TAIL + " {req_id}",
    "{ip:ip} - [{:skip}] - {user:user} [{ts:time_local}] " + _INGRESS_HEAD + _INGRESS_TAIL,
)
# the CRI log format of a Kubernetes node's container runtime: the time, the stream and F (a full line;
# P, a part of a longer one, is not read), then the container's line. Last: the lines without it come
# first, and a prefixed line's address would hold a space under them, so they hand it on.
_CRI = "{:skip} {:skip} F "

# Envoy's default format, and Istio's, which adds fields in its middle and at its end
_ENVOY_HEAD = '[{ts:time_rfc3339}] "{request:request}" {status:status0} {response_flags} '
_ENVOY_TAIL = (
    "{bytes_received:int} {bytes:int} {request_time:ms} {upstream_service_time:ms} "
    '"{http_x_forwarded_for}" "{user_agent:agent}" "{request_id}" "{authority}" "{upstream_host}"'
)

SERVERS: dict[str, Server] = {
    "alb": Server(
        "AWS Application Load Balancer",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-access-logs.html",
        _cuts(_ALB, (30, 29, 27, 25, 24, 20, 18), rest=True),
        "request: the target as logged, an absolute URL (http://host:port/path) in `path`; "
        "`received_bytes` is `request_length`, `sent_bytes` is `bytes_sent`, `elb_status_code` is "
        "`status`; later fields than these are skipped, as the documentation asks",
    ),
    "elb": Server(
        "AWS Classic Load Balancer",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/classic/access-log-collection.html",
        (" ".join(_ELB),),
        'TCP listeners write the request `"- - - "` (null) and `-` for statuses and agent',
    ),
    "s3": Server(
        "AWS S3 server access log",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/LogFormat.html",
        _cuts(_S3, (26, 25, 24, 23, 18), rest=True),
        "`total_time` is `request_time`; `bytes_sent` is `bytes`; later fields than these are skipped",
    ),
    "haproxy": Server(
        "HAProxy httplog (and httpslog, tcplog)",
        "https://docs.haproxy.org/2.8/configuration.html#8.2.3",
        (
            *(
                prefix + _HAPROXY + captures + '"{request:request}"' + tls
                for prefix in _HAPROXY_PREFIXES
                for captures in _HAPROXY_CAPTURES
                for tls in ("", _HAPROXY_TLS)
            ),
            *(prefix + _HAPROXY_TCP for prefix in _HAPROXY_PREFIXES),
        ),
        "with any of the prefixes of HAProxy's log formats (`local`, `rfc3164` and what syslog daemons "
        "write before the message, `rfc5424`, `timed`, `short`, `priority`, `iso`) or none (`raw`); the "
        "prefix is skipped and the accept date is `ts`, read as UTC; "
        "`Tq`/`TR`, `Tw`, `Tc`, `Tr`, `Tt`/`Ta` are `time_request` ... `request_time`; the retries "
        "are a string (`+1` when redispatched); with `option logasap`, the `+` before `Tt` and the bytes "
        "(so far) is skipped; one block of captured headers is read as the request's; "
        "`option httpslog`'s fields after the request are read too (`%sslv` is `ssl_protocol`, `%sslc` "
        "`ssl_cipher`, as ALB's); a TCP frontend's `tcplog` lines in the same log are rows too, with no "
        "request and no status (null), `Tw`/`Tc`/`Tt` as `time_queue`/`time_connect`/`request_time`",
    ),
    "envoy": Server(
        "Envoy default access log, and Istio's",
        "https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#default-format-string",
        (
            _ENVOY_HEAD
            + "{response_code_details} {connection_termination_details} "
            + '"{upstream_transport_failure_reason}" '
            + _ENVOY_TAIL
            + " {upstream_cluster} {upstream_local_address} {downstream_local_address} "
            + "{ip,client_port:ip_port} {requested_server_name} {route_name}",
            _ENVOY_HEAD + _ENVOY_TAIL,
        ),
        "`DURATION` is `request_time`; `BYTES_SENT` (body) is `bytes`. The first template is Istio's "
        "default (<https://istio.io/latest/docs/tasks/observability/logs/access-log/>), whose "
        "`DOWNSTREAM_REMOTE_ADDRESS` is `ip` and `client_port`",
    ),
    "traefik": Server(
        "Traefik common log format",
        "https://doc.traefik.io/traefik/observability/access-logs/#clf-common-log-format",
        (
            '{ip} - {user:user} [{ts:time_local}] "{request:request}" {status:status} {bytes:int} '
            '"{referrer}" "{user_agent:agent}" {request_count:int} "{router_name}" "{server_url}" '
            "{request_time:ms}ms",
        ),
        "the request duration in ms is `request_time` in seconds",
    ),
    "upstreaminfo": Server(
        "ingress-nginx upstreaminfo",
        "https://kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/log-format/",
        tuple(prefix + line for prefix in ("", _CRI) for line in _INGRESS_LINES),
        "the nginx format as ingress-nginx writes it (its columns are those of the pasted format), "
        "and older versions' `$the_real_ip - [$the_real_ip] - ...` (the bracketed copy is skipped); "
        "lines as a node's container runtime keeps them (`/var/log/containers/*.log`: "
        "`2024-03-01T12:00:00.123456789Z stdout F ` before each) too, the prefix skipped",
    ),
}


class VariantsFormat(Format):
    """A built-in server format: its variants' plans, tried in order on the lines that the earlier
    ones did not split. The columns are the union of the variants' (a shorter line's later columns
    are null)."""

    def __init__(self, key: str, plans: tuple[FormatPlan, ...]):
        self.key = key
        self.plans = plans

    @cached_property
    def schema(self) -> pa.Schema:
        fields: dict[str, pa.Field] = {}
        for plan in self.plans:
            for f in plan.schema():
                fields.setdefault(f.name, f)
        return pa.schema(list(fields.values()))

    def scan(self, data: bytes | memoryview, first_line: int, max_line_bytes: int, reject_bytes: int) -> Rows:
        if len(self.plans) == 1:
            rows = scan(self.plans[0], data, first_line, max_line_bytes, reject_bytes)
            return Rows(rows.days, rows.lines, rows.rejects, rows.build)
        a = np.frombuffer(data, dtype=np.uint8)
        if compiled.loaded():
            (starts, ends, newlines, crlf), group, quick = self._compiled_split(a, max_line_bytes)
        else:
            starts, ends, newlines, crlf = line_bounds(a)
            group, quick = self._split(a, starts, ends, newlines, crlf, max_line_bytes)
        if quick is not None:  # every line split by one variant: no second split
            n, split = quick
            rows = scan(self.plans[n], data, first_line, max_line_bytes, reject_bytes, split, self.schema)
            if not any(r in _TYPED for r in rows.rejects.reasons):  # else tried with the later variants
                return self._merge([(rows, rows.lines)], rows.rejects)
        rejects = RejectRows()
        parts: list[tuple[Rows, Any]] = []
        hopeless = np.flatnonzero(group == len(self.plans))
        # plain lines that no variant splits: what the engine rejects without its regex
        reject_lines(rejects, hopeless, Reason.NO_MATCH, data, starts, ends, first_line, reject_bytes)
        for n in range(-1, len(self.plans)):
            lines = np.flatnonzero(group == n)
            if len(lines) == 0:
                continue
            whole = len(lines) == len(starts)
            chunk = data if whole else _lines_of(a, starts, newlines, lines)
            taken = None if whole else lines
            self._chain(
                max(n, 0),
                (a, starts, newlines),
                chunk,
                taken,
                (first_line, max_line_bytes, reject_bytes),
                parts,
                rejects,
            )
        return self._merge(parts, rejects)

    def _compiled_split(
        self, a: Any, max_line_bytes: int
    ) -> tuple[tuple[Any, Any, Any, Any], Any, tuple[int, Split] | None]:
        """:meth:`_split` in one compiled pass (each line tried with each variant in turn, as there),
        with the chunk's line bounds."""
        starts, ends, group, idx, spans = compiled.split_servers(self.plans, a, max_line_bytes, _COUNTED)
        crlf = a[ends] == 13
        bounds = (starts, ends, ends + crlf, crlf)
        last = len(self.plans)
        # a plain line that some variant's literals fit but none split: only the regex reads it where
        # a variant's split is not exact
        group[group == last + 1] = last if self._exact else -1
        if len(idx) and len(idx) == len(starts) and (group == group[0]).all():
            n = int(group[0])
            return bounds, group, (n, Split(spans[: len(self.plans[n].fields)], _Positions(a), bounds))
        return bounds, group, None

    @cached_property
    def _exact(self) -> bool:
        """Whether every variant's quick split is exact (``engine.exact``)."""
        return all(exact(plan) for plan in self.plans)

    def _split(
        self, a: Any, starts: Any, ends: Any, newlines: Any, crlf: Any, max_line_bytes: int
    ) -> tuple[Any, tuple[int, Split] | None]:
        """Each line's variant: the first whose split (the engine's quick split, then its exact split)
        takes the line; -1 for lines that only the engine's regex reads (not plain printable ASCII, or
        a variant with an unquoted list), ``len(plans)`` for plain lines that no variant splits. And
        when one variant's quick split took every line: that variant, its spans and the positions."""
        cand = fast_candidates(a, starts, newlines, crlf) & ((ends - starts) <= max_line_bytes)
        group = np.full(len(starts), -1, dtype=np.int64)
        left = cand.copy()
        where = _Positions(a)
        counts: dict[int, Any] = {}
        admitted = np.zeros(len(starts), dtype=bool)  # lines that some variant's literals fit in
        for n, plan in enumerate(self.plans):
            # A line holds every byte of the literals (they are written verbatim): one with fewer spaces,
            # quotes or brackets than a variant's literals is not split by it, and its split is not tried.
            possible = left.copy()
            for byte, need in _punctuation(plan).items():
                if byte not in counts:
                    # the counted bytes are never a line end: a line's are those before its \n and
                    # after the previous line's
                    before = np.searchsorted(where(byte), newlines)
                    counts[byte] = np.diff(before, prepend=0)
                possible &= counts[byte] >= need
            admitted |= possible
            for whole in (False, True):
                if not possible.any():
                    break
                trying = possible.copy()
                taken, spans = _fast_spans(plan, a, where, starts, ends, trying, whole=whole)
                if not whole and len(taken) == len(starts):
                    split = Split(spans, where, (starts, ends, newlines, crlf))
                    return np.full(len(starts), n, dtype=np.int64), (n, split)
                group[taken] = n
                left[taken] = False
                possible[taken] = False
        if self._exact:
            group[left] = len(self.plans)
        else:  # the regex cannot read a line either that lacks a literal's bytes
            group[left & ~admitted] = len(self.plans)
        return group, None

    def _chain(
        self,
        n: int,
        whole: tuple[Any, Any, Any],
        chunk: bytes | memoryview,
        lines: Any,
        settings: tuple[int, int, int],
        parts: list[tuple[Rows, Any]],
        rejects: RejectRows,
    ) -> None:
        """The lines of ``chunk`` (numbered ``lines`` in the ``whole`` chunk, its bytes, starts and line
        ends; None: they are the whole chunk) read with variant ``n``; those it does not read with the
        next. A line whose values do not fit a variant's types (a time that is none, an address with a
        space) may be another variant's: a line of a longer prefix than its variant's splits as a shorter
        one (HAProxy's ``<6>2009-02-06T12:14:14.655+01:00 [::1]:80 [...`` as ``<6>`` then an address).
        A line that no variant reads keeps the reason of the first that split it."""
        first_line, max_line_bytes, reject_bytes = settings
        last = len(self.plans) - 1
        first: dict[int, tuple[str, bytes, int]] = {}  # each line's first reason other than no match
        while True:
            rows = scan(self.plans[n], chunk, 0, max_line_bytes, reject_bytes, schema=self.schema)
            parts.append((rows, rows.lines if lines is None else lines[rows.lines]))
            found = rows.rejects
            for reason, blank in found.blank:
                rejects.add_blank(first_line + (blank if lines is None else lines[blank]), reason)
            retry: list[int] = []
            for line, reason, raw, length in zip(
                found.lines, found.reasons, found.raw, found.raw_len, strict=True
            ):
                at = line if lines is None else int(lines[line])
                if reason != Reason.NO_MATCH:
                    first.setdefault(at, (reason, raw, length))
                if n < last and reason in _TYPED:
                    retry.append(at)
                else:
                    kept = first.get(at, (reason, raw, length))
                    rejects.add(first_line + at, kept[0], kept[1], len(kept[1]), kept[2])
            if not retry:
                return
            lines = np.sort(np.array(retry, dtype=np.int64))  # a scan finds its rejects in several passes
            chunk = _lines_of(*whole, lines)
            n += 1

    def _merge(self, parts: list[tuple[Rows, Any]], rejects: RejectRows) -> Rows:
        """The rows of every variant in line order, as one :class:`Rows`."""
        full = [(rows, at) for rows, at in parts if len(rows.lines)]
        schema = self.schema
        if not parts:
            none = np.zeros(0, dtype=np.int64)
            return Rows(none, none, rejects, lambda order: empty_batch(schema))
        if len(full) <= 1:
            rows, at = full[0] if full else parts[0]

            def build_one(order: Any) -> pa.RecordBatch:
                return _conform(rows.build(order), schema)

            return Rows(rows.days, at, rejects, build_one)
        days = np.concatenate([rows.days for rows, _ in full])
        lines = np.concatenate([at for _, at in full])
        by_line = np.argsort(lines, kind="stable")

        def build(order: Any) -> pa.RecordBatch:
            batches = [_conform(rows.build(None), schema) for rows, _ in full]
            whole = pa.Table.from_batches(batches, schema=schema).combine_chunks()
            take = by_line if order is None else by_line[order]
            return whole.take(int64_array(take)).to_batches()[0] if len(take) else empty_batch(schema)

        return Rows(days[by_line], lines[by_line], rejects, build)


_COUNTED = b'{}[]" '  # the rarest in values first (see compiled.variant_tables)
# the reasons a variant gives a line that another may read (its split, its values' types); a line's own
# faults (its bytes, its length) are the same under every variant
_TYPED = frozenset({Reason.NO_MATCH, Reason.BAD_TIMESTAMP, Reason.OUT_OF_RANGE})


@lru_cache(maxsize=64)
def _punctuation(plan: FormatPlan) -> dict[int, int]:
    """How many spaces, quotes and brackets a variant's literals hold (a line it splits holds at least
    as many)."""
    text = b"".join(plan.literals)
    return {byte: text.count(byte) for byte in _COUNTED if text.count(byte)}


def _lines_of(a: Any, starts: Any, newlines: Any, lines: Any) -> bytes:
    """The lines numbered ``lines`` of a chunk (each with its line end), as a chunk of their own."""
    edges = np.zeros(len(a) + 1, dtype=np.int8)
    np.add.at(edges, starts[lines], 1)
    np.add.at(edges, newlines[lines] + 1, -1)
    keep: Any = np.cumsum(edges[:-1]) > 0
    return bytes(a[keep].tobytes())


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with ``schema``'s columns, those it lacks all null."""
    names = batch.schema.names  # a new list at each call: read once
    if names == schema.names:
        return batch
    at = {name: i for i, name in enumerate(names)}  # by position: a lookup by name searches the schema
    columns = [batch.column(at[f.name]) if f.name in at else pa.nulls(batch.num_rows, f.type) for f in schema]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


class Servers(Family):
    """The built-in formats of :data:`SERVERS`, by name."""

    names = tuple(SERVERS)

    def key(self, setting: str | Mapping[str, Any]) -> FormatKey:
        if not isinstance(setting, str) or setting not in SERVERS:
            raise FormatSpecError(
                repr(setting), f"not one of the built-in server formats {', '.join(SERVERS)}"
            )
        return setting

    def load(self, key: FormatKey) -> Format:
        assert isinstance(key, str)
        return VariantsFormat(key, plans(key))


def plans(name: str) -> tuple[FormatPlan, ...]:
    """The compiled variants of a built-in server format, in the order they are tried."""
    return tuple(compile_template(t, name) for t in SERVERS[name].variants)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def servers_markdown() -> str:
    """The docs/formats.md section of the built-in server formats: per format, its documentation, its
    templates and its columns (with the types of :data:`pipeline.formats.spec.TEMPLATE_TYPES`)."""
    out = []
    for name, server in SERVERS.items():
        out += [f"#### `{name}`: {server.title}", "", f"Fields: <{server.url}>. {server.note}.", ""]
        out += ["Templates, tried in this order:", "", "```text", *server.variants, "```", ""]
        out += ["| column | Arrow type |", "| --- | --- |"]
        schema = VariantsFormat(name, plans(name)).schema
        out += [f"| `{f.name}` | {f.type} |" for f in schema]
        out.append("")
    out += ["Template types:", "", "| type | read as | notes |", "| --- | --- | --- |"]
    out += [f"| `{t}` | {v.kind} | {_cell(v.note)} |" for t, v in TEMPLATE_TYPES.items()]
    return "\n".join(out) + "\n"
