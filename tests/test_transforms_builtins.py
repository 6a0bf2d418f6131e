"""The built-in transforms: anonymize_ip, user_agent, geoip (pipeline.transforms.builtins)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import netaddr  # type: ignore[import-untyped]
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mmdb_writer import MMDBWriter

from pipeline.formats.spec import builtin
from pipeline.transforms import builtins
from pipeline.transforms.builtins import anonymize_ip, geoip, user_agent

SCHEMA = builtin("combined").schema()

ROOT = Path(__file__).resolve().parents[1]

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CURL = "curl/8.5.0"
UNKNOWN_AGENT = "definitely not a browser"


def combined(ips: list[str | None], agents: list[str | None] | None = None) -> pa.Table:
    """A table of the combined format's columns with these ``ip`` (and ``user_agent``) values."""
    n = len(ips)
    agents = agents if agents is not None else [CURL] * n
    assert len(agents) == n
    columns: dict[str, list[Any]] = {
        "ip": ips,
        "user": ["-"] * n,
        "ts": [datetime(2026, 1, 1, 0, 0, i % 60, tzinfo=UTC) for i in range(n)],
        "method": ["GET"] * n,
        "path": [f"/p{i}" for i in range(n)],
        "query": [None] * n,
        "protocol": ["HTTP/1.1"] * n,
        "request": [None] * n,
        "status": [200 + i % 3 for i in range(n)],
        "bytes": [i * 10 for i in range(n)],
        "referrer": ["-"] * n,
        "user_agent": agents,
        "is_bot": [False] * n,
    }
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def anon(values: Sequence[str | None], **options: Any) -> list[str | None]:
    table = pa.table({"ip": pa.array(list(values), pa.string())})
    out: list[str | None] = anonymize_ip(table, **options).column("ip").to_pylist()
    return out


# --------------------------------------------------------------------------------------- anonymize_ip


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (24, "203.0.113.0"),
        (16, "203.0.0.0"),
        (8, "203.0.0.0"),
        (20, "203.0.112.0"),
        (12, "203.0.0.0"),
        (31, "203.0.113.76"),
        (32, "203.0.113.77"),
        (0, "0.0.0.0"),
    ],
)
def test_anonymize_ipv4(prefix: int, expected: str) -> None:
    assert anon(["203.0.113.77"], ipv4_prefix=prefix) == [expected]


def test_anonymize_ipv4_default_is_24() -> None:
    assert anon(["198.51.100.200", "10.0.0.1", "255.255.255.255", "0.0.0.0"]) == [
        "198.51.100.0",
        "10.0.0.0",
        "255.255.255.0",
        "0.0.0.0",
    ]


def test_anonymize_ipv4_not_byte_aligned_masks_the_octet() -> None:
    assert anon(["172.31.255.255", "172.16.0.1"], ipv4_prefix=12) == ["172.16.0.0", "172.16.0.0"]
    assert anon(["192.168.77.1"], ipv4_prefix=20) == ["192.168.64.0"]
    assert anon(["192.168.77.1"], ipv4_prefix=1) == ["128.0.0.0"]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (48, "2001:db8:abcd::"),
        (64, "2001:db8:abcd:12::"),
        (128, "2001:db8:abcd:12::1"),
        (56, "2001:db8:abcd::"),
        (0, "::"),
    ],
)
def test_anonymize_ipv6(prefix: int, expected: str) -> None:
    assert anon(["2001:db8:abcd:12::1"], ipv6_prefix=prefix) == [expected]


def test_anonymize_ipv6_is_written_canonically() -> None:
    # upper case, leading zeros and uncompressed forms all come out in one canonical spelling
    assert anon(["2001:0DB8:ABCD:0012:0000:0000:0000:0001", "2001:db8:abcd:12::2"], ipv6_prefix=64) == [
        "2001:db8:abcd:12::",
        "2001:db8:abcd:12::",
    ]
    # a zone id does not survive, even at /128
    assert anon(["fe80::1%eth0"], ipv6_prefix=128) == ["fe80::1"]


def test_anonymize_ipv4_mapped_uses_the_ipv4_prefix() -> None:
    values = ["::ffff:10.1.2.3", "::FFFF:10.1.2.3", "::ffff:a01:203"]
    assert anon(values) == ["::ffff:10.1.2.0"] * 3
    assert anon(values, ipv4_prefix=16, ipv6_prefix=128) == ["::ffff:10.1.0.0"] * 3
    assert anon(values, ipv4_prefix=32, ipv6_prefix=0) == ["::ffff:10.1.2.3"] * 3


def test_anonymize_non_addresses_become_null() -> None:
    values = ["host-1.example.com", "-", "", "localhost", "01.2.3.4", "1.2.3", "256.1.1.1", " 1.2.3.4", None]
    assert anon(values) == [None] * len(values)


def test_anonymize_mixed_values_keep_their_rows() -> None:
    values = [
        "203.0.113.77",
        "host.example",
        None,
        "2001:db8::1",
        "203.0.113.77",
        "::ffff:1.2.3.4",
        "1.2.3.4",
    ]
    assert anon(values) == [
        "203.0.113.0",
        None,
        None,
        "2001:db8::",
        "203.0.113.0",
        "::ffff:1.2.3.0",
        "1.2.3.0",
    ]


def _reference(text: str, v4: int, v6: int) -> str:
    address = ipaddress.ip_address(text)
    prefix = v4 if address.version == 4 else v6
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


@given(
    st.lists(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), min_size=1, max_size=20),
    st.integers(0, 32),
    st.integers(0, 128),
)
def test_anonymize_matches_ipaddress(addresses: list[Any], v4: int, v6: int) -> None:
    texts = [str(a) for a in addresses if getattr(a, "ipv4_mapped", None) is None]
    assert anon(texts, ipv4_prefix=v4, ipv6_prefix=v6) == [_reference(t, v4, v6) for t in texts]


@pytest.mark.parametrize(
    ("options", "error", "option"),
    [
        ({"ipv4_prefix": -1}, ValueError, "ipv4_prefix"),
        ({"ipv4_prefix": 33}, ValueError, "ipv4_prefix"),
        ({"ipv6_prefix": -1}, ValueError, "ipv6_prefix"),
        ({"ipv6_prefix": 129}, ValueError, "ipv6_prefix"),
        ({"ipv4_prefix": "24"}, TypeError, "ipv4_prefix"),
        ({"ipv6_prefix": 48.0}, TypeError, "ipv6_prefix"),
        ({"ipv4_prefix": True}, TypeError, "ipv4_prefix"),
    ],
)
def test_anonymize_validates_options(options: dict[str, Any], error: type[Exception], option: str) -> None:
    with pytest.raises(error, match=option):
        anonymize_ip(combined(["1.2.3.4"]), **options)
    # even on an empty table: the run checks its transforms on one before it starts
    with pytest.raises(error, match=option):
        anonymize_ip(combined([]), **options)


def test_anonymize_other_column_and_column_errors() -> None:
    table = combined(["203.0.113.77"]).append_column("client", pa.array(["198.51.100.9"]))
    out = anonymize_ip(table, column="client")
    assert out.column("client").to_pylist() == ["198.51.100.0"]
    assert out.column("ip").to_pylist() == ["203.0.113.77"]
    with pytest.raises(ValueError, match="'nope'"):
        anonymize_ip(table, column="nope")
    with pytest.raises(TypeError, match="'status'"):
        anonymize_ip(table, column="status")


def test_anonymize_chunked_dictionary_and_large_string_columns() -> None:
    chunked = pa.chunked_array([["10.0.0.1", None], [], ["10.0.1.1", "x.example"]])
    out = anonymize_ip(pa.table({"ip": chunked}), ipv4_prefix=16)
    assert out.column("ip").to_pylist() == ["10.0.0.0", None, "10.0.0.0", None]

    large = pa.array(["10.0.0.1", "::1"], pa.large_string())
    out = anonymize_ip(pa.table({"ip": large}))
    assert out.schema.field("ip").type == pa.large_string()
    assert out.column("ip").to_pylist() == ["10.0.0.0", "::"]

    encoded = pa.array(["10.0.0.1", "10.0.0.2", None, "10.0.0.1"]).dictionary_encode()
    out = anonymize_ip(pa.table({"ip": encoded}))
    assert out.column("ip").to_pylist() == ["10.0.0.0", "10.0.0.0", None, "10.0.0.0"]


# ----------------------------------------------------------------------------------------- user_agent


def test_user_agent_columns() -> None:
    agents: list[str | None] = [CHROME_WINDOWS, SAFARI_IPHONE, GOOGLEBOT, CURL, UNKNOWN_AGENT, None, "-"]
    out = user_agent(combined(["1.2.3.4"] * len(agents), agents))
    for name in builtins.UA_COLUMNS:
        assert out.schema.field(name).type == pa.string()
    rows = list(zip(*(out.column(name).to_pylist() for name in builtins.UA_COLUMNS), strict=True))
    assert rows == [
        ("Chrome", "124", "Windows", "10", None),
        ("Mobile Safari", "17", "iOS", "17", "iPhone"),
        ("Googlebot", "2", None, None, "Spider"),
        ("curl", "8", None, None, None),
        (None, None, None, None, None),
        (None, None, None, None, None),
        (None, None, None, None, None),
    ]
    assert out.column("is_bot").to_pylist() == [False, False, True, False, False, False, False]


def test_user_agent_keeps_existing_bots_and_nulls() -> None:
    table = pa.table(
        {
            "user_agent": pa.array([CURL, GOOGLEBOT, GOOGLEBOT, CHROME_WINDOWS, CHROME_WINDOWS]),
            "is_bot": pa.array([True, None, False, None, False]),
        }
    )
    out = user_agent(table)
    assert out.column_names == ["user_agent", "is_bot", *builtins.UA_COLUMNS]
    assert out.column("is_bot").to_pylist() == [True, True, True, None, False]


def test_user_agent_without_is_bot_and_other_column() -> None:
    table = pa.table({"agent": pa.array([GOOGLEBOT]), "n": pa.array([1])})
    out = user_agent(table, column="agent")
    assert out.column_names == ["agent", "n", *builtins.UA_COLUMNS]
    assert out.column("device_family").to_pylist() == ["Spider"]
    with pytest.raises(ValueError, match="'user_agent'"):
        user_agent(table)


def test_user_agent_twice_replaces_its_columns() -> None:
    once = user_agent(combined(["1.2.3.4"], [SAFARI_IPHONE]))
    twice = user_agent(once)
    assert twice.equals(once)


def test_user_agent_parses_each_distinct_agent_once_and_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = builtins._parse_agent_uncached

    def counting(agent: str) -> Any:
        calls.append(agent)
        return real(agent)

    monkeypatch.setattr(builtins, "_parse_agent_uncached", counting)
    builtins._parse_agent.cache_clear()
    agents: list[str | None] = [CHROME_WINDOWS, CURL, CHROME_WINDOWS, None, CURL, GOOGLEBOT] * 50
    table = combined(["1.2.3.4"] * len(agents), agents)

    first = user_agent(table)
    assert sorted(calls) == sorted([CHROME_WINDOWS, CURL, GOOGLEBOT])
    second = user_agent(table)
    assert len(calls) == 3  # the next chunk's agents come from the cache
    assert second.equals(first)
    info = builtins._parse_agent.cache_info()
    assert (info.misses, info.hits) == (3, 3)
    assert info.maxsize == builtins.UA_CACHE_SIZE

    # a huge agent is parsed each time rather than held by the cache
    long_agent = "x" * (builtins.UA_CACHE_MAX_CHARS + 1)
    user_agent(combined(["1.2.3.4"], [long_agent]))
    user_agent(combined(["1.2.3.4"], [long_agent]))
    assert calls.count(long_agent) == 2
    assert builtins._parse_agent.cache_info().currsize == 3


# -------------------------------------------------------------------------------------------- geoip


def _write_mmdb(path: Path, records: dict[str, dict[str, Any]], *, ip_version: int = 6) -> Path:
    writer = MMDBWriter(
        ip_version=ip_version, ipv4_compatible=ip_version == 6, database_type="Test-DB", description="t"
    )
    for network, record in records.items():
        writer.insert_network(netaddr.IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mmdb")
    city = _write_mmdb(
        root / "city.mmdb",
        {
            "192.0.2.0/24": {
                "country": {"iso_code": "DE"},
                "city": {"names": {"en": "Berlin", "de": "Berlin"}},
            },
            "198.51.100.0/24": {"country": {"iso_code": "US"}},  # a country, no city
            "1.2.0.0/16": {"country": {"iso_code": "AU"}, "city": {"names": {"en": "Sydney"}}},
            "2001:db8::/32": {"country": {"iso_code": "FR"}, "city": {"names": {"en": "Paris"}}},
            "203.0.113.0/24": {"registered_country": {"iso_code": "JP"}},  # no geolocated country
        },
    )
    asn = _write_mmdb(
        root / "asn.mmdb",
        {
            "192.0.2.0/24": {
                "autonomous_system_number": 64500,
                "autonomous_system_organization": "Example Net",
            },
            "2001:db8::/32": {
                "autonomous_system_number": 4200000000,
                "autonomous_system_organization": "Big AS",
            },
        },
    )
    country_v4 = _write_mmdb(
        root / "country-v4.mmdb", {"192.0.2.0/24": {"country": {"iso_code": "NL"}}}, ip_version=4
    )
    junk = root / "junk.mmdb"
    junk.write_bytes(b"this is not a MaxMind database" * 10)
    return {"city": city, "asn": asn, "country_v4": country_v4, "junk": junk}


GEO_IPS: list[str | None] = [
    "192.0.2.5",
    "198.51.100.7",
    "2001:db8::1",
    "::ffff:192.0.2.9",
    "203.0.113.1",  # only a registered country
    "8.8.8.8",  # not in the database
    "1.2.3",  # the reader alone would look up 1.2.0.3
    "host.example.com",
    None,
    "192.0.2.5",
]


def test_geoip_city_and_asn(databases: dict[str, Path]) -> None:
    out = geoip(combined(GEO_IPS), database=str(databases["city"]), asn_database=str(databases["asn"]))
    assert out.column_names == [*SCHEMA.names, *builtins.GEO_COLUMNS, *builtins.ASN_COLUMNS]
    assert out.schema.field("geo_country").type == pa.string()
    assert out.schema.field("geo_city").type == pa.string()
    assert out.schema.field("geo_asn").type == pa.int64()
    assert out.schema.field("geo_as_org").type == pa.string()
    assert out.column("geo_country").to_pylist() == [
        "DE",
        "US",
        "FR",
        "DE",
        None,
        None,
        None,
        None,
        None,
        "DE",
    ]
    assert out.column("geo_city").to_pylist() == [
        "Berlin",
        None,
        "Paris",
        "Berlin",
        None,
        None,
        None,
        None,
        None,
        "Berlin",
    ]
    assert out.column("geo_asn").to_pylist() == [
        64500,
        None,
        4200000000,
        64500,
        None,
        None,
        None,
        None,
        None,
        64500,
    ]
    assert out.column("geo_as_org").to_pylist()[:4] == ["Example Net", None, "Big AS", "Example Net"]


def test_geoip_without_asn_database_adds_two_columns(databases: dict[str, Path]) -> None:
    out = geoip(combined(["192.0.2.1"]), database=str(databases["city"]))
    assert out.column_names == [*SCHEMA.names, *builtins.GEO_COLUMNS]


def test_geoip_ipv4_only_database(databases: dict[str, Path]) -> None:
    # IPv6 in an IPv4-only database is null, not an error; a mapped address is looked up as IPv4
    out = geoip(
        combined(["192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"]), database=str(databases["country_v4"])
    )
    assert out.column("geo_country").to_pylist() == ["NL", None, "NL"]
    assert out.column("geo_city").to_pylist() == [None, None, None]


def test_geoip_after_anonymize_ip(databases: dict[str, Path]) -> None:
    out = geoip(anonymize_ip(combined(["192.0.2.77", "2001:db8:1:2::3"])), database=str(databases["city"]))
    assert out.column("geo_country").to_pylist() == ["DE", "FR"]


def test_geoip_missing_and_invalid_files(databases: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nope.mmdb"
    with pytest.raises(FileNotFoundError, match=r"database .*nope\.mmdb"):
        geoip(combined(["1.2.3.4"]), database=str(missing))
    with pytest.raises(FileNotFoundError, match=r"asn_database .*nope\.mmdb"):
        geoip(combined(["1.2.3.4"]), database=str(databases["city"]), asn_database=str(missing))
    with pytest.raises(FileNotFoundError, match="database"):
        geoip(combined([]), database=str(missing))  # checked on the empty table too
    with pytest.raises(FileNotFoundError, match="database"):
        geoip(combined([]), database=str(tmp_path))  # a directory
    with pytest.raises(ValueError, match=r"database .*junk\.mmdb.* not a MaxMind DB"):
        geoip(combined(["1.2.3.4"]), database=str(databases["junk"]))


def test_geoip_opens_each_database_once(databases: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import maxminddb

    opened: list[str] = []
    real = maxminddb.open_database

    def counting(path: str) -> Any:
        opened.append(path)
        return real(path)

    monkeypatch.setattr(maxminddb, "open_database", counting)
    monkeypatch.setattr(builtins, "_READERS", {})
    for _ in range(3):
        geoip(combined(["192.0.2.1"]), database=str(databases["city"]), asn_database=str(databases["asn"]))
    assert sorted(opened) == sorted([str(databases["city"]), str(databases["asn"])])


# ------------------------------------------------------------------------------------ every built-in


@pytest.fixture
def every(databases: dict[str, Path]) -> dict[str, Callable[[pa.Table], pa.Table]]:
    return {
        "anonymize_ip": anonymize_ip,
        "user_agent": user_agent,
        "geoip": lambda t: geoip(t, database=str(databases["city"]), asn_database=str(databases["asn"])),
    }


REWRITES = {"anonymize_ip": {"ip"}, "user_agent": {"is_bot"}, "geoip": set()}


@pytest.mark.parametrize("name", sorted(REWRITES))
def test_keeps_rows_and_other_columns(name: str, every: dict[str, Callable[[pa.Table], pa.Table]]) -> None:
    agents: list[str | None] = [CHROME_WINDOWS, GOOGLEBOT, None, CURL] * 3
    table = combined(["192.0.2.5", "2001:db8::1", None, "host.example"] * 3, agents)
    table = table.append_column("extra", pa.array(range(table.num_rows), pa.int32()))
    out = every[name](table)
    assert out.num_rows == table.num_rows
    assert out.column_names[: len(table.column_names)] == table.column_names
    for column in table.column_names:
        if column not in REWRITES[name]:
            assert out.column(column).equals(table.column(column)), column
        assert out.schema.field(column).type == table.schema.field(column).type


@pytest.mark.parametrize("name", sorted(REWRITES))
def test_empty_table_gives_the_same_columns(
    name: str, every: dict[str, Callable[[pa.Table], pa.Table]]
) -> None:
    # the run fixes its output schema from an empty table built like this one (no chunks at all)
    empty = every[name](pa.Table.from_batches([], SCHEMA))
    full = every[name](combined(["192.0.2.5"], [GOOGLEBOT]))
    assert empty.num_rows == 0
    assert empty.schema == full.schema


def test_no_pandas_import(databases: dict[str, Path]) -> None:
    # pa.array's first call imports pandas, which the parse workers never load otherwise
    script = textwrap.dedent(
        f"""
        import sys
        import pyarrow as pa
        from pipeline.arrays import binary_array
        from pipeline.transforms.builtins import anonymize_ip, geoip, user_agent
        ips = binary_array([b"192.0.2.5", b"2001:db8::1", b"x"], pa.string())
        agents = binary_array([b"curl/8.5.0", b"Googlebot/2.1", b"?"], pa.string())
        bots = pa.Array.from_buffers(pa.bool_(), 3, [None, pa.py_buffer(bytes(1))])
        table = pa.Table.from_arrays([ips, agents, bots], names=["ip", "user_agent", "is_bot"])
        empty = pa.Table.from_batches([], table.schema)
        for t in (table, empty):
            t = anonymize_ip(user_agent(t))
            geoip(t, database={str(databases["city"])!r}, asn_database={str(databases["asn"])!r})
        assert "pandas" not in sys.modules, "pandas was imported"
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(REWRITES))
def test_chunked_and_dictionary_columns(name: str, every: dict[str, Callable[[pa.Table], pa.Table]]) -> None:
    plain = combined(["192.0.2.5", None, "2001:db8::1", "192.0.2.5"], [GOOGLEBOT, None, CURL, GOOGLEBOT])
    expected = every[name](plain)
    added = [c for c in expected.column_names if c not in plain.column_names]

    # a dictionary that holds a null and an unused value, indices with a null, in two chunks
    def encoded(values: list[str | None]) -> pa.ChunkedArray:
        dictionary = pa.array([*dict.fromkeys(values), "unused"], pa.string())
        indices = [None if v is None else dictionary.to_pylist().index(v) for v in values]
        array = pa.DictionaryArray.from_arrays(pa.array(indices, pa.int8()), dictionary)
        return pa.chunked_array([array.slice(0, 1), array.slice(1)])

    table = plain.set_column(0, "ip", encoded(plain.column("ip").to_pylist()))
    agents = plain.schema.get_field_index("user_agent")
    table = table.set_column(agents, "user_agent", encoded(plain.column("user_agent").to_pylist()))
    assert table.column("ip").chunk(0).dictionary.null_count == 1
    out = every[name](table)
    for column in [*added, *REWRITES[name]]:
        assert out.column(column).to_pylist() == expected.column(column).to_pylist(), column
