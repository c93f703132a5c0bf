"""Compression: sniff what a blob really is, decompress it, compress new layers.

The decompressor is chosen from the magic bytes, never from the media type
(blobs labelled gzip are sometimes plain tar, and the reverse). gzip goes
through ISA-L (``isal``) when it is installed, which inflates several times
faster than zlib and deflates an order of magnitude faster than ``gzip -6``;
compression of a new layer runs on all cores. zstd layers go through
``zstandard``. Every writer is deterministic: no timestamps or names in the
gzip header, so the same input gives the same digest.
"""

from __future__ import annotations

import io
import os
import zlib
from typing import BinaryIO, cast

from ..errors import FormatError

try:  # ISA-L: fast gzip
    from isal import igzip as _igzip
    from isal import igzip_threaded as _igzip_threaded
except ImportError:  # pragma: no cover - isal is a dependency; fall back to zlib
    _igzip = None  # type: ignore[assignment]  # optional module: None when missing
    _igzip_threaded = None  # type: ignore[assignment]  # optional module: None when missing

try:
    import zstandard as _zstd
except ImportError:  # pragma: no cover
    _zstd = None  # type: ignore[assignment]  # optional module: None when missing

GZIP = "gzip"
ZSTD = "zstd"
CODECS = (GZIP, ZSTD)

_MAGIC = (
    (b"\x1f\x8b", GZIP),
    (b"\x28\xb5\x2f\xfd", ZSTD),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


def sniff(head: bytes) -> str | None:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


class _Peekable(io.RawIOBase):
    """Puts a few peeked bytes back in front of a stream."""

    def __init__(self, head: bytes, f: BinaryIO) -> None:
        self._head = head
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = len(b)
        if self._head:
            k = min(n, len(self._head))
            b[:k] = self._head[:k]
            self._head = self._head[k:]
            return k
        data = self._f.read(n)
        b[: len(data)] = data
        return len(data)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data = self._head + self._f.read()
            self._head = b""
            return data
        if self._head:
            data = self._head[:n]
            self._head = self._head[n:]
            if len(data) < n:
                data += self._f.read(n - len(data))
            return data
        return self._f.read(n)


def open_decompressed(f: BinaryIO, what: str = "layer") -> tuple[BinaryIO, str | None]:
    """A stream of the uncompressed bytes of ``f`` and the codec found (None = plain)."""
    head = f.read(8)
    codec = sniff(head)
    src = _Peekable(head, f)
    if codec is None:
        return src, None  # type: ignore[return-value]
    if codec == GZIP:
        if _igzip is not None:
            return _igzip.GzipFile(fileobj=src, mode="rb"), GZIP  # type: ignore[return-value]
        import gzip

        return gzip.GzipFile(fileobj=src, mode="rb"), GZIP  # type: ignore[return-value]
    if codec == ZSTD:
        if _zstd is None:
            raise FormatError(f"{what} is zstd-compressed and the 'zstandard' package is missing")
        return _zstd.ZstdDecompressor().stream_reader(src, read_across_frames=True), ZSTD  # type: ignore
    if codec == "bzip2":
        import bz2

        return bz2.BZ2File(src), codec  # type: ignore[return-value]
    import lzma

    return lzma.LZMAFile(src), codec  # type: ignore[arg-type,return-value]


class _GzipWriter:
    """Deterministic gzip (mtime 0, no name), ISA-L threaded when available."""

    def __init__(self, out: BinaryIO, level: int | None, threads: int) -> None:
        if _igzip_threaded is not None:
            lvl = 1 if level is None else max(0, min(3, level))
            self._w = _igzip_threaded.open(out, "wb", compresslevel=lvl, threads=threads)
            self._zlib: zlib._Compress | None = None
        else:  # pragma: no cover
            self._w = None
            lvl = 6 if level is None else level
            self._zlib = zlib.compressobj(lvl, zlib.DEFLATED, 31)
            self._out: BinaryIO = out

    def write(self, data: bytes) -> int:
        if self._w is not None:
            return self._w.write(data)
        self._out.write(self._zlib.compress(data))  # type: ignore[union-attr]
        return len(data)

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
        else:  # pragma: no cover
            self._out.write(self._zlib.flush())  # type: ignore[union-attr]


class _ZstdWriter:
    def __init__(self, out: BinaryIO, level: int | None, threads: int) -> None:
        if _zstd is None:
            raise FormatError("zstd compression needs the 'zstandard' package")
        params = _zstd.ZstdCompressor(level=3 if level is None else level, threads=threads,
                                      write_checksum=True)
        self._w = params.stream_writer(out, closefd=False)

    def write(self, data: bytes) -> int:
        return self._w.write(data)

    def close(self) -> None:
        self._w.close()


class _Plain:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def write(self, data: bytes) -> int:
        self._out.write(data)
        return len(data)

    def close(self) -> None:
        pass


def compressor(out: BinaryIO, codec: str | None, level: int | None = None, threads: int | None = None):  # type: ignore[no-untyped-def]
    """A writer that compresses into ``out`` (which it does not close)."""
    if threads is None:
        threads = max(1, os.cpu_count() or 1)
    if codec is None:
        return _Plain(out)
    if codec == GZIP:
        return _GzipWriter(cast(BinaryIO, _NoClose(out)), level, threads)
    if codec == ZSTD:
        return _ZstdWriter(out, level, threads)
    raise FormatError(f"unknown compression {codec!r} (use gzip, zstd or none)")


class _NoClose(io.RawIOBase):
    """Lets a wrapping writer 'close' without closing the underlying file."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def]
        self._f.write(b)
        return len(b)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        super().close()
