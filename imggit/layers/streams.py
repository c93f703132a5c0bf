"""Streams that hash and count what flows through them."""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO

from ..errors import DigestMismatch


class Reader(io.RawIOBase):
    """Base for read-only streams that implement ``read``: ``readinto`` comes from it."""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class DigestReader(Reader):
    """Reads a blob and checks its size and digest when the end is reached.

    A short read (fewer bytes than ``size``) or extra bytes, or a digest that
    differs, raises ``DigestMismatch`` naming ``what``.
    """

    def __init__(self, f: BinaryIO, digest: str, size: int | None, what: str) -> None:
        self._f = f
        self._digest = digest
        self._size = size
        self._what = what
        self._h = hashlib.sha256()
        self._n = 0
        self.verified = False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data = self._f.read()
        else:
            data = self._f.read(n)
        if data:
            self._h.update(data)
            self._n += len(data)
            if self._size is not None and self._n > self._size:
                raise DigestMismatch(f"{self._what}: more bytes than its size {self._size}")
        elif not self.verified and (n is None or n != 0):
            self._verify()
        return data

    def _verify(self) -> None:
        if self._size is not None and self._n != self._size:
            raise DigestMismatch(
                f"{self._what}: expected {self._size} bytes, got {self._n} (truncated or wrong blob)")
        got = "sha256:" + self._h.hexdigest()
        if got != self._digest:
            raise DigestMismatch(f"{self._what}: digest mismatch: expected {self._digest}, got {got}")
        self.verified = True

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            super().close()


class HashingWriter(io.RawIOBase):
    """Counts and hashes what is written, forwarding it to ``f`` (if any)."""

    def __init__(self, f: BinaryIO | None = None) -> None:
        self._f = f
        self._h = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def]
        self._h.update(b)
        n = len(b)
        self.size += n
        if self._f is not None:
            self._f.write(b)
        return n

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()


class SliceReader(Reader):
    """A read-only window [offset, offset+size) of a seekable file."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        self._f = f
        self._pos = 0
        self._offset = offset
        self._size = size

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence == 2:
            pos += self._size
        self._pos = max(0, min(pos, self._size))
        return self._pos

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._pos
        if n is None or n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        self._f.seek(self._offset + self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        return data

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            super().close()

