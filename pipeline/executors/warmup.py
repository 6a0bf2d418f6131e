"""Imported by the fork server before it forks parse workers (``set_forkserver_preload``).

The first Arrow compute call in a process pays a one-time set-up of ~150 ms (kernel registry, regex
compilation), and the first call of the engine's compiled loops, when the preload imported them
(``parse.compiled``), ~0.25 s more (Numba's typing registries), or seconds the first time after an
install (they compile, once: ``make run`` does it before its first run). Doing it once here, in the
fork server, means every forked worker starts warm instead of each paying it on its first chunk.
"""

import logging

from pipeline.formats import compiled, get_format

_LINE = b'127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] "GET /?q HTTP/1.1" 200 1 "-" "warm-up bot"\n'

if compiled.loaded():
    _SECONDS = compiled.compile_now()
    if _SECONDS > 1:  # the first run after an install: say why it started late (once)
        logging.getLogger("logpipe").warning(
            "compiled the engine's loops in %.1f s (once: Numba caches them; docs/formats.md)", _SECONDS
        )

# the engine, on the built-in formats most runs read
for _name in ("combined", "main"):
    get_format(_name).parse(_LINE * 2, 1)
    # and as the process pool hands a chunk over, a writable view of shared memory: Numba compiles the
    # engine's loops (where loaded) once per kind of array, and read-only bytes are another kind
    get_format(_name).parse(memoryview(bytearray(_LINE * 2)), 1)
