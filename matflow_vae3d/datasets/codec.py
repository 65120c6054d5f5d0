"""Grain-map chunk codecs (zlib/zstandard in thread-local contexts) for parallel reads."""

from __future__ import annotations

import os
import threading
import zlib

# ----------------------------------------------------------------------------------
# chunk codecs
# ----------------------------------------------------------------------------------
_tls = threading.local()


def _zstd_d():
    d = getattr(_tls, "zstd_d", None)
    if d is None:
        import zstandard

        d = _tls.zstd_d = zstandard.ZstdDecompressor()
    return d


def _zstd_c(level):
    key = f"zstd_c{level}"
    c = getattr(_tls, key, None)
    if c is None:
        import zstandard

        c = zstandard.ZstdCompressor(level=level)
        setattr(_tls, key, c)
    return c


def _encode(buf: bytes, compression: str, level) -> bytes:
    if compression == "gzip":
        return zlib.compress(buf, level)
    if compression == "zstd":
        return _zstd_c(level).compress(buf)
    if compression == "none":
        return buf
    raise ValueError(f"no direct-chunk encoder for {compression!r}")


def _decode(raw: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return zlib.decompress(raw)
    if compression == "zstd":
        return _zstd_d().decompress(raw)
    return raw


def _n_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)
