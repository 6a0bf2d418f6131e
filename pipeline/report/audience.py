"""Worker-side reductions for the report's audience panels, and the per-path request-time reading.

Used by :mod:`pipeline.report.panels` (which owns the partial's format and the merge); each function
takes one chunk's columns and returns, per panel, the chunk's distinct values and their exact counts,
which the panels' top lists then merge within their budget.

* Browsers, operating systems and device families: from the ``user_agent`` transform's columns
  (``ua_family``, ``os_family``, ``device_family``) only, counted in :mod:`pipeline.report.panels` like
  any string column. Parsing the agents here instead (ua-parser on each distinct agent of a chunk) costs
  ~1.7 ms a new agent with the pure-Python resolver: several times the parse stage's CPU on logs with
  many distinct agents (BENCHMARKS.md), so the run asks for it explicitly with the transform.
* Countries (``geo_country``) and networks (``geo_asn`` with ``geo_as_org``: ``AS13335 Cloudflare``),
  from the ``geoip`` transform's columns.
* Static files: the paths whose last segment ends in one of :data:`STATIC_EXTENSIONS` (ASCII case
  ignored), once the query string (``?``), fragment (``#``) or path parameters (``;``) are cut off.
* Request time by path: the chunk's (path, histogram bucket) pairs and their counts, each pair keyed by
  10 bytes (the path's 64-bit hash and the bucket's index), so that a path's histogram costs 22 bytes a
  bucket in the top lists' budget whatever the path's length. The main process reads the histograms of
  the top paths only (:func:`path_quantiles`).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.arrays import from_buffers, repeat_string
from pipeline.report.sketches import N_BUCKETS, QUANTILES, bucket_of, bucket_value

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]

FAMILY_COLUMNS: Final[dict[str, str]] = {
    "browsers": "ua_family",
    "operating_systems": "os_family",
    "devices": "device_family",
}
# GoAccess's default static-file extensions, and the web's newer image, font and media formats.
STATIC_EXTENSIONS: Final[tuple[str, ...]] = (
    "css", "js", "mjs", "map", "jpg", "jpeg", "png", "gif", "ico", "svg", "webp", "avif", "bmp", "tif",
    "tiff", "woff", "woff2", "ttf", "otf", "eot", "pdf", "txt", "csv", "xml", "json", "zip", "gz", "tgz",
    "tar", "rar", "7z", "bz2", "xz", "iso", "exe", "dmg", "mp3", "mp4", "m4a", "ogg", "oga", "webm",
    "wav", "flac", "avi", "flv", "mpeg", "mpg", "mov", "swf", "doc", "docx", "xls", "xlsx", "ppt",
    "pptx", "odt", "ods",
)  # fmt: skip
STATIC_RE: Final = r"(?is)^[^?#;]*\.(?:" + "|".join(STATIC_EXTENSIONS) + r")(?:[?#;].*)?$"
# A path-latency key: the path's hash, then the bucket's index (little-endian, packed).
KEY_DTYPE: Final = np.dtype([("h", "<u8"), ("b", "<u2")])
assert KEY_DTYPE.itemsize == 10 and N_BUCKETS < 1 << 16


def network_keys(asn: pa.Array, org: pa.Array | None) -> pa.Array:
    """``AS<number> <organisation>`` (``AS<number>`` without an organisation), null without a number."""
    n = len(asn)
    number = pc.binary_join_element_wise(repeat_string("AS", n), asn.cast(pa.string()), repeat_string("", n))
    if org is None:
        return number
    # Not null_handling="skip": it returns a short array for sliced inputs (pyarrow 26). A null
    # organisation makes the join null, and coalesce falls back to the number alone.
    named = pc.binary_join_element_wise(number, org.cast(pa.string()), repeat_string(" ", n))
    return pc.coalesce(named, number)


def static_values(values: pa.Array) -> pa.Array:
    """Which of a binary array's values are static files (:data:`STATIC_RE`); null for null."""
    return pc.match_substring_regex(values, STATIC_RE)


def latency_keys(path_hashes: U64, codes: I64, seconds: npt.NDArray[np.float64]) -> tuple[pa.Array, I64]:
    """The (path, bucket) pairs of timed rows (a path by its code, ``path_hashes[code]`` its hash) as
    10-byte keys, and each pair's rows."""
    both = codes * N_BUCKETS + bucket_of(seconds)
    pairs, hits = np.unique(both, return_counts=True)
    keys = np.zeros(len(pairs), KEY_DTYPE)
    keys["h"], keys["b"] = path_hashes[pairs // N_BUCKETS], pairs % N_BUCKETS
    off = np.arange(len(pairs) + 1, dtype=np.int32) * KEY_DTYPE.itemsize
    data = keys.view(np.uint8).reshape(-1)
    arr = from_buffers(pa.binary(), len(pairs), [None, pa.py_buffer(off), pa.py_buffer(data)])
    return arr, hits.astype(np.int64)


def path_quantiles(
    keys_data: npt.NDArray[np.uint8], hits: I64, path_hashes: U64
) -> list[dict[str, float] | None]:
    """Per path (by hash), its timed rows and the :data:`QUANTILES` of its request time, read from the
    merged (path, bucket) counts (``keys_data``: the keys' bytes end to end): each within the
    histogram's relative error. None for a path without timed rows."""
    keys = keys_data.view(KEY_DTYPE) if len(keys_data) else np.zeros(0, KEY_DTYPE)
    out: list[dict[str, float] | None] = []
    for h in path_hashes.tolist():
        mine = np.flatnonzero(keys["h"] == h)
        if not len(mine):
            out.append(None)
            continue
        order = np.argsort(keys["b"][mine])
        buckets, counts = keys["b"][mine][order].astype(np.int64), hits[mine][order]
        cum, n = np.cumsum(counts), int(counts.sum())
        row: dict[str, float] = {"count": n}
        for q in QUANTILES:
            rank = max(int(np.ceil(q * n)) - 1, 0)
            row[f"p{round(q * 100)}"] = bucket_value(int(buckets[np.searchsorted(cum, rank, side="right")]))
        out.append(row)
    return out
