"""Escaping of untrusted text (log lines, file names) before it reaches a terminal."""

from __future__ import annotations

import unicodedata


def safe_text(value: str | bytes, limit: int | None = None) -> str:
    """Escape ``value`` so that printing it cannot drive a terminal.

    Control characters (C0, DEL, C1, and Unicode format characters such as bidi overrides) become
    ``\\xNN``/``\\uNNNN`` escapes; bytes that are not UTF-8 become ``\\xNN``. ``limit`` cuts the result.
    """
    text = value.decode("utf-8", errors="backslashreplace") if isinstance(value, bytes) else value
    out = []
    for ch in text:
        if ch == "\\" or (ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Zl", "Zp")):
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    result = "".join(out)
    if limit is not None and len(result) > limit:
        result = result[: limit - 3] + "..."
    return result
