"""The built-in transforms: ``anonymize_ip``, ``user_agent`` and ``geoip``.

Each takes the chunk's ``pyarrow.Table`` and keyword-only options (from the config) and returns a new
table with the same rows; the other columns pass through untouched. A missing or non-string source
column is an error naming the transform and the column: a privacy transform that silently did nothing
would be worse than a failed run.

Shared choices:

* Work on distinct values. Logs repeat the same addresses and agents many times in a chunk, so each
  transform dictionary-encodes its source column, computes on the dictionary and maps back with one
  ``take`` (null rows have null indices, so they come out null for free).
* Build arrays from buffers (:func:`_string_array`), never with ``pa.array``, and scalars from arrays,
  never with ``pa.scalar`` or a plain Python value passed to a compute function: each of those imports
  pandas on its first call in a process (see :mod:`pipeline.arrays`), a cost every worker would pay.
* Import ``ua_parser`` and ``maxminddb`` inside the functions that need them: ``anonymize_ip`` then works
  without either package installed, and a process that never enriches never loads them.
* Columns a transform adds are always the same for given options, and replace a column of the same name
  if one exists (running a transform twice is harmless). The run fixes its output schema by applying
  the transforms to an empty table, so they must also work, and add the same columns, on zero rows.

``anonymize_ip``
    IPv4 addresses keep their first ``ipv4_prefix`` bits, IPv6 their first ``ipv6_prefix`` bits, in
    canonical compressed form (RFC 5952, as Python's :mod:`ipaddress` writes it; a zone id such as
    ``%eth0`` is dropped). An IPv4-mapped IPv6 address (``::ffff:10.1.2.3``, what a dual-stack socket
    logs for an IPv4 client) is an IPv4 client: its embedded address is masked with ``ipv4_prefix``
    and written back in the mapped form ``::ffff:10.1.2.0``, so the value still says how the client
    came in while a /48 (which would keep nothing) or /128 (which would keep everything) does not
    apply to it. Anything else (a hostname logged by Apache's ``%h`` with ``HostnameLookups``, ``-``,
    an address with leading zeros that :mod:`ipaddress` rejects) becomes null: a hostname identifies a
    client as well as its address does, and there is no prefix of it to keep. Null stays null.
    Note: /48 keeps a 6to4 address's (``2002::/16``) embedded IPv4 address whole.

    Plain IPv4, by far the most common value, is done with Arrow's string kernels on the whole
    dictionary (a regular expression that accepts exactly what :mod:`ipaddress` accepts, then a regex
    replace for byte-aligned prefixes or an octet mask for the others); only the rest goes through
    :mod:`ipaddress` one distinct value at a time.

``user_agent``
    Adds ``ua_family``, ``ua_major``, ``os_family``, ``os_major``, ``device_family`` (strings) from
    ua-parser (the 1.x API). A family ua-parser does not know (no match, or its placeholder
    ``"Other"``) is null, not ``"Other"``: null is what "unknown" means in every other column, and
    counting non-nulls then counts recognised agents; a major version is null when its family is. Sets
    ``is_bot`` (when the table has it) to true for the agents ua-parser files as device ``"Spider"``;
    other rows keep their value (true stays true, null stays null). Parsing an agent is costly, so
    each distinct agent is parsed once per chunk and a bounded per-process LRU cache keeps results
    across chunks (agents repeat from chunk to chunk). Very long agents skip the cache so that a flood
    of junk agents cannot make it hold much memory. ua-parser itself picks its fastest resolver: the
    compiled one that ``ua-parser[regex]`` installs is much faster than the pure-Python default. The
    resolver is built without ua-parser's own cache, which ours replaces.

``geoip``
    Adds ``geo_country`` (``country.iso_code``) and ``geo_city`` (``city.names.en``) from a MaxMind City
    or Country database (a Country database has no city: null), and with ``asn_database`` also
    ``geo_asn`` (int64) and ``geo_as_org`` (string) from a GeoLite2-ASN layout database. There is no
    fallback to ``registered_country``: it is where the network is registered, not where the client is.
    One reader per database path and process, opened on first use (also on the empty table the run
    starts with, so a wrong path fails the run before any work) and kept for the process's life: a
    database replaced during a run is read again by the next run.
    Invalid addresses and null give nulls; IPv4 is validated as strictly as :mod:`ipaddress` does, since
    the MaxMind reader would read ``1.2.3`` as ``1.2.0.3``, and IPv4-mapped IPv6 is looked up as IPv4.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.arrays import from_buffers, repeat_string, string_from_buffers

if TYPE_CHECKING:
    import maxminddb
    import maxminddb.extension
    import maxminddb.reader
    from maxminddb.types import Record
    from ua_parser import Resolver

    _Reader = maxminddb.extension.Reader | maxminddb.reader.Reader

__all__ = ["anonymize_ip", "geoip", "user_agent"]

# An IPv4 address exactly as ipaddress accepts it: four decimal octets 0-255 without leading zeros.
_OCTET = "25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]"
_IPV4 = rf"^(?:{_OCTET})\.(?:{_OCTET})\.(?:{_OCTET})\.(?:{_OCTET})$"

UA_COLUMNS = ("ua_family", "ua_major", "os_family", "os_major", "device_family")
GEO_COLUMNS = ("geo_country", "geo_city")
ASN_COLUMNS = ("geo_asn", "geo_as_org")

# The cross-chunk cache of parsed agents: enough for the agents a site sees day to day, bounded so that
# a worker's memory stays flat.
UA_CACHE_SIZE = 10_000
# Longer agents are parsed every time, not cached: real browsers' agents are far shorter.
UA_CACHE_MAX_CHARS = 1024


# ---------------------------------------------------------------------------------------------- helpers


def _string_array(values: Sequence[str | None]) -> pa.Array:
    """A string array (null for None) built from buffers, without pa.array (see the module docstring)."""
    raw = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(raw) + 1, dtype=np.int32)
    np.cumsum([len(r) for r in raw], out=offsets[1:])
    return string_from_buffers(len(raw), offsets, b"".join(raw), _validity(values))


def _int64_array(values: Sequence[int | None]) -> pa.Array:
    """An int64 array (null for None) built from buffers."""
    data = np.fromiter((0 if v is None else v for v in values), dtype=np.int64, count=len(values))
    return from_buffers(pa.int64(), len(values), [_validity(values), pa.py_buffer(data)])


def _string_scalar(text: str) -> pa.Scalar:
    """A string scalar; ``pa.scalar`` (and a plain ``str`` passed to a compute function) imports pandas."""
    return _string_array([text])[0]


def _scalar(type_: pa.DataType, raw: bytes) -> pa.Scalar:
    """A scalar of a fixed-width ``type_`` from its little-endian bytes (see :func:`_string_scalar`)."""
    return from_buffers(type_, 1, [None, pa.py_buffer(raw)])[0]


def _validity(values: Sequence[object]) -> pa.Buffer | None:
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    return None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))


def _source(table: pa.Table, column: str, transform: str) -> pa.Array:
    """``column`` as one array: string, large_string, or a dictionary of either (else a TypeError)."""
    if column not in table.column_names:
        raise ValueError(
            f"{transform}: the table has no column {column!r} (option 'column'); "
            f"it has {', '.join(table.column_names)}"
        )
    chunked = table.column(column)
    value_type = chunked.type.value_type if pa.types.is_dictionary(chunked.type) else chunked.type
    if not (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)):
        raise TypeError(f"{transform}: column {column!r} is {chunked.type}, not a string column")
    return _as_array(chunked)


def _as_array(chunked: pa.ChunkedArray) -> pa.Array:
    if chunked.num_chunks == 1:
        return chunked.chunk(0)
    if chunked.num_chunks == 0:  # combine_chunks() of no chunks would import pandas
        return pa.nulls(0, chunked.type)
    return chunked.combine_chunks()


def _distinct(values: pa.Array) -> pa.DictionaryArray:
    """``values`` dictionary-encoded, with no null in the dictionary (a null row has a null index).

    A column that is dictionary-encoded already is used as it is: its dictionary may repeat a value, which
    only costs a repeated computation."""
    if pa.types.is_dictionary(values.type):
        if values.dictionary.null_count == 0:
            return values
        values = values.dictionary_decode()
    return pc.dictionary_encode(values)


def _put(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """``table`` with column ``name`` set to ``values``: replaced in place if it exists, else appended."""
    field = pa.field(name, values.type)
    index = table.schema.get_field_index(name)
    if index < 0:
        return table.append_column(field, values)
    return table.set_column(index, field, values)


def _check_prefix(option: str, value: object, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"anonymize_ip: {option} must be an integer from 0 to {bits}, not {value!r}")
    if not 0 <= value <= bits:
        raise ValueError(f"anonymize_ip: {option} must be from 0 to {bits}, not {value}")
    return value


# ------------------------------------------------------------------------------------------ anonymize_ip


def anonymize_ip(
    table: pa.Table, *, ipv4_prefix: int = 24, ipv6_prefix: int = 48, column: str = "ip"
) -> pa.Table:
    """Truncate the addresses in ``column`` to their network prefix; non-addresses become null.

    The column keeps its type (a dictionary-encoded one comes back as plain strings)."""
    _check_prefix("ipv4_prefix", ipv4_prefix, 32)
    _check_prefix("ipv6_prefix", ipv6_prefix, 128)
    values = _source(table, column, "anonymize_ip")
    encoded = _distinct(values)
    distinct = encoded.dictionary
    out_type = distinct.type
    if not pa.types.is_string(distinct.type):
        distinct = distinct.cast(pa.string())

    is_v4 = pc.match_substring_regex(distinct, _IPV4)  # the dictionary has no nulls: no null here
    others = pc.invert(is_v4)
    if not pc.any(others).as_py():
        masked = _mask_ipv4(distinct, ipv4_prefix)
    else:
        # the vector path on a placeholder where a value is not IPv4 (it would not cast), then the rest
        masked = _mask_ipv4(pc.if_else(is_v4, distinct, _string_scalar("0.0.0.0")), ipv4_prefix)
        slow = [_anonymize_one(v, ipv4_prefix, ipv6_prefix) for v in distinct.filter(others).to_pylist()]
        masked = pc.replace_with_mask(masked, others, _string_array(slow))
    return _put(table, column, pc.take(masked.cast(out_type), encoded.indices))


def _mask_ipv4(values: pa.Array, prefix: int) -> pa.Array:
    """Each dotted-quad IPv4 address in ``values`` with all but its first ``prefix`` bits zeroed.

    Every value must match ``_IPV4``."""
    whole, bits = divmod(prefix, 8)
    zeros = ".0" * (3 - whole)
    if prefix == 32:
        return values
    if prefix == 0:
        return repeat_string("0.0.0.0", len(values))
    if bits == 0:
        # byte-aligned: one replace keeps the first octets and their dots (RE2 reads \10 as \1 then 0)
        return pc.replace_substring_regex(values, rf"^((?:[0-9]+\.){{{whole}}})[0-9.]+$", r"\1" + "0" + zeros)
    # the octet the prefix ends in is masked as a number, the octets before it kept as text
    parts = pc.extract_regex(values, rf"^(?P<head>(?:[0-9]+\.){{{whole}}})(?P<octet>[0-9]+)")
    octet = pc.cast(pc.struct_field(parts, [1]), pa.uint8())
    kept = pc.bit_wise_and(octet, _scalar(pa.uint8(), bytes([(0xFF << (8 - bits)) & 0xFF])))
    head = pc.struct_field(parts, [0])
    tail = _string_scalar(zeros)
    return pc.binary_join_element_wise(head, pc.cast(kept, pa.string()), tail, _string_scalar(""))


def _anonymize_one(text: str, ipv4_prefix: int, ipv6_prefix: int) -> str | None:
    """One value through :mod:`ipaddress`: the slow path, for what is not a plain IPv4 address."""
    address = _parse_address(text)
    if address is None:
        return None  # a hostname, "-", or junk: see the module docstring
    if isinstance(address, ipaddress.IPv4Address):  # the fast path's regex lets none through, but be sure
        return _truncate(address, ipv4_prefix)
    mapped = address.ipv4_mapped
    if mapped is not None:
        return f"::ffff:{_truncate(mapped, ipv4_prefix)}"
    return _truncate(address, ipv6_prefix)


def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an address, or None. For values that are mostly not plain IPv4 (the regex took those):
    IPv6 is tried first, where ``ipaddress.ip_address`` would fail as IPv4 then try IPv6."""
    try:
        return ipaddress.IPv6Address(text) if ":" in text else ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _truncate(address: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int) -> str:
    bits = address.max_prefixlen
    mask = ((1 << prefix) - 1) << (bits - prefix)
    # rebuilt from the integer: that also drops an IPv6 zone id (%eth0)
    return str(type(address)(int(address) & mask))


# -------------------------------------------------------------------------------------------- user_agent

_AgentFields = tuple[str | None, str | None, str | None, str | None, str | None]


def user_agent(table: pa.Table, *, column: str = "user_agent") -> pa.Table:
    """Add browser, OS and device columns parsed from ``column``; mark ua-parser's spiders as bots."""
    encoded = _distinct(_source(table, column, "user_agent"))
    agents = encoded.dictionary.to_pylist()
    parsed = [_parse_agent(a) if len(a) <= UA_CACHE_MAX_CHARS else _parse_agent_uncached(a) for a in agents]
    columns = [
        pc.take(_string_array([p[i] for p in parsed]), encoded.indices) for i in range(len(UA_COLUMNS))
    ]
    for name, values in zip(UA_COLUMNS, columns, strict=True):
        table = _put(table, name, values)
    if "is_bot" in table.column_names:
        is_bot = _as_array(table.column("is_bot"))
        if not pa.types.is_boolean(is_bot.type):
            raise TypeError(f"user_agent: column 'is_bot' is {is_bot.type}, not bool")
        device = columns[UA_COLUMNS.index("device_family")]
        spider = pc.fill_null(pc.equal(device, _string_scalar("Spider")), _scalar(pa.bool_(), b"\0"))
        # or_kleene: a spider is a bot even where is_bot was null; otherwise is_bot is kept as it was
        table = _put(table, "is_bot", pc.or_kleene(is_bot, spider))
    return table


@functools.lru_cache(maxsize=UA_CACHE_SIZE)
def _parse_agent(agent: str) -> _AgentFields:
    return _parse_agent_uncached(agent)


def _parse_agent_uncached(agent: str) -> _AgentFields:
    from ua_parser import Domain  # already imported by _agent_resolver: a dictionary look-up

    result = _agent_resolver()(agent, Domain.ALL).complete()
    ua, os_, device = result.user_agent, result.os, result.device
    return (
        _known(ua.family) if ua else None,
        ua.major if ua and _known(ua.family) else None,
        _known(os_.family) if os_ else None,
        os_.major if os_ and _known(os_.family) else None,
        _known(device.family) if device else None,
    )


def _known(family: str | None) -> str | None:
    """``family``, or None for ua-parser's "no idea" ("Other")."""
    return None if family in (None, "", "Other") else family


@functools.cache
def _agent_resolver() -> Resolver:
    """The process's ua-parser resolver, built on first use (loading its rules takes a while).

    No cache inside it: ``_parse_agent`` is the cache."""
    import ua_parser

    # as ua_parser builds its default parser: the compiled resolvers want the lazy rule set, the
    # pure-Python one the eager one
    best = ua_parser.BestAvailableResolver
    eager = best is ua_parser.BasicResolver
    return best(ua_parser.load_builtins() if eager else ua_parser.load_lazy_builtins())


# ------------------------------------------------------------------------------------------------- geoip

_READERS: dict[str, _Reader] = {}


def geoip(table: pa.Table, *, database: str, asn_database: str | None = None, column: str = "ip") -> pa.Table:
    """Add the country and city (and with ``asn_database`` the AS number and organisation) of ``column``."""
    city_reader = _open_reader(database, "database")
    asn_reader = None if asn_database is None else _open_reader(asn_database, "asn_database")
    encoded = _distinct(_source(table, column, "geoip"))
    distinct = encoded.dictionary
    if not pa.types.is_string(distinct.type):
        distinct = distinct.cast(pa.string())
    is_v4 = pc.match_substring_regex(distinct, _IPV4).to_pylist()
    keys = [text if v4 else _lookup_key(text) for text, v4 in zip(distinct.to_pylist(), is_v4, strict=True)]

    countries: list[str | None] = []
    cities: list[str | None] = []
    for key in keys:
        record = _get(city_reader, key)
        countries.append(_text(record, "country", "iso_code"))
        cities.append(_text(record, "city", "names", "en"))
    table = _put(table, "geo_country", pc.take(_string_array(countries), encoded.indices))
    table = _put(table, "geo_city", pc.take(_string_array(cities), encoded.indices))

    if asn_reader is not None:
        numbers: list[int | None] = []
        orgs: list[str | None] = []
        for key in keys:
            record = _get(asn_reader, key)
            number = _field(record, "autonomous_system_number")
            numbers.append(number if isinstance(number, int) and not isinstance(number, bool) else None)
            orgs.append(_text(record, "autonomous_system_organization"))
        table = _put(table, "geo_asn", pc.take(_int64_array(numbers), encoded.indices))
        table = _put(table, "geo_as_org", pc.take(_string_array(orgs), encoded.indices))
    return table


def _open_reader(path: str | os.PathLike[str], option: str) -> _Reader:
    """The process's reader of the database at ``path`` (opened on first use)."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"geoip: {option} must be a file path, not {path!r}")
    key = os.path.abspath(os.fspath(path))
    reader = _READERS.get(key)
    if reader is not None:
        return reader
    if not os.path.isfile(key):
        raise FileNotFoundError(f"geoip: {option} {key!r} does not exist or is not a file")
    import maxminddb

    try:
        reader = maxminddb.open_database(key)
    except maxminddb.InvalidDatabaseError as exc:
        raise ValueError(f"geoip: {option} {key!r} is not a MaxMind DB file: {exc}") from exc
    _READERS[key] = reader
    return reader


def _lookup_key(text: str) -> str | None:
    """What to look ``text`` up as, when it is not a plain IPv4 address: None if it is no address."""
    address = _parse_address(text)
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            # a database with IPv4 only, or one without the ::ffff:0:0/96 alias, knows it as IPv4
            return str(mapped)
        return str(ipaddress.IPv6Address(int(address)))  # without a zone id, which the reader refuses
    return str(address)


def _get(reader: _Reader, key: str | None) -> Record | None:
    if key is None:
        return None
    try:
        return reader.get(key)
    except ValueError:  # an IPv6 address in an IPv4-only database
        return None


def _field(record: Record | None, *path: str) -> Record | None:
    """The value at ``path`` in a nested record, or None where any level is missing."""
    for key in path:
        if not isinstance(record, dict):
            return None
        record = record.get(key)
    return record


def _text(record: Record | None, *path: str) -> str | None:
    value = _field(record, *path)
    return value if isinstance(value, str) and value else None
