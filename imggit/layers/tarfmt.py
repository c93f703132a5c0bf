"""A small, exact tar reader and header writer.

Python's ``tarfile`` is slow on layers with tens of thousands of members and
hides the raw header bytes; a layer rewriter needs both speed and the exact
bytes (to copy an unchanged entry's header verbatim). This module reads
ustar, POSIX pax (per-file and global) and GNU long name/link headers,
keeps every pax record (xattrs, fractional times), and writes headers back
as ustar, adding a pax header only when a field does not fit.

A ``Member`` records where its header blocks start (``header_offset``,
including any extension headers before it) and where its data starts
(``data_offset``) in the uncompressed stream, so an index of a layer can
copy an entry later without parsing it again.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from ..errors import FormatError

BLOCK = 512
ZERO_BLOCK = b"\0" * BLOCK

REGULAR = "0"
HARDLINK = "1"
SYMLINK = "2"
CHARDEV = "3"
BLOCKDEV = "4"
DIRECTORY = "5"
FIFO = "6"
CONTIGUOUS = "7"

_DATA_TYPES = {REGULAR, CONTIGUOUS}
_KNOWN_TYPES = {REGULAR, HARDLINK, SYMLINK, CHARDEV, BLOCKDEV, DIRECTORY, FIFO, CONTIGUOUS}
TYPE_NAMES = {
    REGULAR: "file", HARDLINK: "hardlink", SYMLINK: "symlink", CHARDEV: "char device",
    BLOCKDEV: "block device", DIRECTORY: "directory", FIFO: "fifo", CONTIGUOUS: "file",
}

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
META_PREFIX = ".wh..wh."


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _encode(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _nts(field_bytes: bytes) -> bytes:
    i = field_bytes.find(b"\0")
    return field_bytes if i < 0 else field_bytes[:i]


def _num(field_bytes: bytes) -> int:
    if field_bytes and field_bytes[0] & 0x80:
        # base-256 (GNU/star): big-endian two's complement, high bit marks it
        value = int.from_bytes(field_bytes, "big", signed=False)
        value &= (1 << (8 * len(field_bytes) - 1)) - 1
        if field_bytes[0] & 0x40:  # negative
            value -= 1 << (8 * len(field_bytes) - 1)
        return value
    s = field_bytes.replace(b"\0", b" ").strip()
    if not s:
        return 0
    try:
        return int(s, 8)
    except ValueError:
        raise FormatError(f"invalid number {field_bytes!r} in a tar header") from None


def normalize(name: str) -> str:
    """Canonical form of a member name: no leading ``/`` or ``./``, no ``//``, no trailing ``/``."""
    if (name and name[0] != "/" and name[-1] != "/" and name != "." and not name.startswith("./")
            and "//" not in name and "/./" not in name and not name.endswith("/.")):
        return name    # already canonical: the same string (indexes hold one, not two)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts) if parts else "."


# Members share what repeats from one to the next (an index of 100,000 files holds one "root", one
# 0o644, one mtime per build step), and members without pax records share one empty mapping, which
# nothing may change: code that adds records copies it first (dict(m.pax)).
NO_PAX: dict[str, str] = {}


class _Interner(dict):  # type: ignore[type-arg]
    def __missing__(self, key: object) -> object:
        if len(self) > 4096:
            self.clear()
        self[key] = key
        return key


@dataclass(slots=True)
class Member:
    name: str                # as stored (after pax/GNU long names), may have ./ or trailing /
    type: str
    mode: int
    uid: int
    gid: int
    size: int                # bytes of data in the archive (0 for links, dirs...)
    mtime: int
    linkname: str
    uname: str
    gname: str
    devmajor: int
    devminor: int
    pax: dict[str, str] = field(default_factory=dict)   # every pax record that applies
    header_offset: int = 0
    data_offset: int = 0
    raw_ok: bool = True      # header bytes can be copied verbatim (no global pax in force)
    path: str = ""           # normalized name
    digest: str = ""         # sha256 (hex) of a regular file's content, when an index computed it

    @property
    def is_dir(self) -> bool:
        return self.type == DIRECTORY

    @property
    def is_file(self) -> bool:
        return self.type in _DATA_TYPES

    @property
    def is_link(self) -> bool:
        return self.type == HARDLINK

    @property
    def is_symlink(self) -> bool:
        return self.type == SYMLINK

    @property
    def basename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> str:
        return self.path.rsplit("/", 1)[0] if "/" in self.path else ""

    @property
    def is_whiteout(self) -> bool:
        b = self.basename
        return b.startswith(WHITEOUT_PREFIX) and not b.startswith(META_PREFIX)

    @property
    def is_opaque(self) -> bool:
        return self.basename == OPAQUE_MARKER

    @property
    def is_meta(self) -> bool:
        """AUFS metadata such as ``.wh..wh.plnk`` (ignored), excluding the opaque marker."""
        b = self.basename
        return b.startswith(META_PREFIX) and b != OPAQUE_MARKER

    @property
    def whiteout_target(self) -> str:
        b = self.basename[len(WHITEOUT_PREFIX):]
        return f"{self.parent}/{b}" if self.parent else b

    @property
    def mtime_exact(self) -> str:
        return self.pax.get("mtime") or str(self.mtime)

    @property
    def xattrs(self) -> dict[str, str]:
        out = {}
        for k, v in self.pax.items():
            if k.startswith("SCHILY.xattr."):
                out[k[len("SCHILY.xattr."):]] = v
            elif k.startswith("LIBARCHIVE.xattr."):
                out[k[len("LIBARCHIVE.xattr."):]] = v
        return out

    @property
    def padded_size(self) -> int:
        return (self.size + BLOCK - 1) // BLOCK * BLOCK


def _parse_pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    n = len(data)
    binary = False
    while pos < n:
        if data[pos] == 0:
            break
        sp = data.find(b" ", pos)
        if sp < 0:
            raise FormatError("malformed pax header")
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise FormatError("malformed pax header length") from None
        if length <= 0 or pos + length > n:
            raise FormatError("malformed pax header record")
        record = data[sp + 1: pos + length]
        if not record.endswith(b"\n") or b"=" not in record:
            raise FormatError("malformed pax header record")
        key_b, value_b = record[:-1].split(b"=", 1)
        key = key_b.decode("utf-8", "surrogateescape")
        if key == "hdrcharset" and value_b == b"BINARY":
            binary = True
        value = value_b.decode("utf-8", "surrogateescape")
        records[key] = value
        pos += length
    if binary:
        records.pop("hdrcharset", None)
    return records


class _Source:
    """Exact reads from a stream, tracking the offset; optional tee of every byte read."""

    __slots__ = ("f", "offset", "tee", "seekable")

    def __init__(self, f: BinaryIO, offset: int = 0, tee: Callable[[bytes], object] | None = None,
                 seekable: bool = False) -> None:
        self.f = f
        self.offset = offset
        self.tee = tee
        self.seekable = seekable and tee is None

    def read(self, n: int) -> bytes:
        chunks = []
        want = n
        while want > 0:
            b = self.f.read(want)
            if not b:
                break
            chunks.append(b)
            want -= len(b)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.offset += len(data)
        if self.tee is not None and data:
            self.tee(data)
        return data

    def skip(self, n: int) -> None:
        if n <= 0:
            return
        if self.seekable:
            self.f.seek(n, io.SEEK_CUR)
            self.offset += n
            return
        while n > 0:
            b = self.read(min(n, 1 << 20))
            if not b:
                raise FormatError("unexpected end of data inside a tar member (truncated layer?)")
            n -= len(b)


class TarReader:
    """Iterates the members of a tar stream.

    After a member is yielded the caller may read its data with ``read_data``
    (or ``data_chunks``); whatever it leaves unread is skipped on the next
    step. With ``seekable=True`` skipping seeks instead of reading, so
    scanning an uncompressed file on disk reads only its headers. ``tee``
    receives every byte read (spooling, hashing).
    """

    def __init__(self, f: BinaryIO, *, seekable: bool = False, tee: Callable[[bytes], object] | None = None,
                 offset: int = 0, what: str = "tar stream") -> None:
        self.src = _Source(f, offset, tee, seekable)
        self.what = what
        self._left = 0       # data bytes of the current member not yet read
        self._pad = 0        # padding after it
        self.ended = False
        self._global: dict[str, str] = {}
        self._same = _Interner()

    def __iter__(self) -> Iterator[Member]:
        return self

    def __next__(self) -> Member:
        m = self.next()
        if m is None:
            raise StopIteration
        return m

    def _finish_current(self) -> None:
        if self._left or self._pad:
            self.src.skip(self._left + self._pad)
            self._left = self._pad = 0

    def read_data(self, n: int = -1) -> bytes:
        if n < 0 or n > self._left:
            n = self._left
        data = self.src.read(n)
        if len(data) < n:
            raise FormatError(f"{self.what}: unexpected end of data (truncated?)")
        self._left -= n
        return data

    def data_chunks(self, chunk: int = 1 << 20) -> Iterator[bytes]:
        while self._left:
            yield self.read_data(min(chunk, self._left))

    def next(self) -> Member | None:
        if self.ended:
            return None
        self._finish_current()
        pax: dict[str, str] = {}
        longname: str | None = None
        longlink: str | None = None
        header_offset = self.src.offset
        typeflag: str   # bound by the loop below before any use (mypy: reassigned after the loop)
        while True:
            block = self.src.read(BLOCK)
            if not block:
                if header_offset == 0 and self.src.offset == 0:
                    raise FormatError(f"{self.what} is empty, not a tar archive")
                # A missing end-of-archive marker: accept (many writers omit it).
                self.ended = True
                return None
            if len(block) < BLOCK:
                raise FormatError(f"{self.what} is truncated (a partial tar header block)")
            if block == ZERO_BLOCK:
                self.ended = True
                return None
            typeflag, name_b, fields = self._parse_header(block)
            size = fields["size"]
            if typeflag in ("x", "g", "L", "K"):
                data = self.src.read(size)
                if len(data) < size:
                    raise FormatError(f"{self.what} is truncated inside an extended header")
                self.src.skip((BLOCK - size % BLOCK) % BLOCK)
                if typeflag == "x":
                    pax.update(_parse_pax(data))
                elif typeflag == "g":
                    self._global.update(_parse_pax(data))
                    header_offset = self.src.offset
                elif typeflag == "L":
                    longname = _decode(_nts(data))
                else:
                    longlink = _decode(_nts(data))
                continue
            break

        if typeflag == "S" or any(k.startswith("GNU.sparse.") for k in pax):
            raise FormatError(f"{self.what}: sparse file entries are not supported")
        if self._global:
            merged = dict(self._global)
            merged.update(pax)
            pax = merged
        name = pax.get("path") or longname or _decode(name_b)
        linkname = pax.get("linkpath") or longlink or _decode(_nts(block[157:257]))
        if typeflag == "\0" or typeflag == "":
            typeflag = DIRECTORY if name.endswith("/") else REGULAR
        size = int(pax["size"]) if "size" in pax else fields["size"]
        data_offset = self.src.offset
        same = self._same
        m = Member(
            name=name,
            type=typeflag,
            mode=same[fields["mode"]],
            uid=same[int(pax["uid"]) if "uid" in pax else fields["uid"]],
            gid=same[int(pax["gid"]) if "gid" in pax else fields["gid"]],
            size=size if typeflag not in (HARDLINK, SYMLINK, DIRECTORY, CHARDEV, BLOCKDEV, FIFO) else 0,
            mtime=same[int(float(pax["mtime"])) if "mtime" in pax else fields["mtime"]],
            linkname=linkname,
            uname=same[pax.get("uname") or _decode(_nts(block[265:297]))],
            gname=same[pax.get("gname") or _decode(_nts(block[297:329]))],
            devmajor=fields["devmajor"],
            devminor=fields["devminor"],
            pax=pax or NO_PAX,
            header_offset=header_offset,
            data_offset=data_offset,
            raw_ok=not self._global,
            path=normalize(name),
        )
        # Directories and links may claim a size in broken archives; their data still follows.
        self._left = size
        self._pad = (BLOCK - size % BLOCK) % BLOCK
        return m

    def _parse_header(self, block: bytes) -> tuple[str, bytes, dict[str, int]]:
        try:
            chksum = _num(block[148:156])
        except FormatError:
            chksum = -1
        unsigned = sum(block[:148]) + 256 + sum(block[156:])
        if chksum != unsigned:
            signed = sum(b - 256 if b > 127 else b for b in block[:148]) + 256 + sum(
                b - 256 if b > 127 else b for b in block[156:])
            if chksum != signed:
                raise FormatError(f"{self.what} is not a tar archive or is corrupt (bad header checksum "
                                  f"at offset {self.src.offset - BLOCK})")
        typeflag = chr(block[156]) if block[156] else "\0"
        magic = block[257:263]
        name_b = _nts(block[0:100])
        if magic == b"ustar\0":  # POSIX: prefix field
            prefix = _nts(block[345:500])
            if prefix:
                name_b = prefix + b"/" + name_b
        fields = {
            "mode": _num(block[100:108]),
            "uid": _num(block[108:116]),
            "gid": _num(block[116:124]),
            "size": _num(block[124:136]),
            "mtime": _num(block[136:148]),
            "devmajor": _num(block[329:337]) if magic[:5] == b"ustar" else 0,
            "devminor": _num(block[337:345]) if magic[:5] == b"ustar" else 0,
        }
        if fields["size"] < 0:
            raise FormatError(f"{self.what}: negative member size")
        return typeflag, name_b, fields

    def drain(self, chunk: int = 1 << 20) -> None:
        """Read the rest of the stream (end blocks, padding), e.g. so a tee sees every byte."""
        self._finish_current()
        self.ended = True
        while self.src.read(chunk):
            pass


def scan(f: BinaryIO, what: str = "tar file") -> list[Member]:
    """Every member of a seekable, uncompressed tar file, reading only headers."""
    return list(TarReader(f, seekable=True, what=what))


# --- writing ---------------------------------------------------------------------

_PAX_SKIP_ON_REWRITE = {"path", "linkpath", "size"}


def _octal(value: int, width: int) -> bytes | None:
    """``width``-byte NUL-terminated octal field, or None when it does not fit."""
    if value < 0:
        return None
    s = b"%0*o" % (width - 1, value)
    if len(s) > width - 1:
        return None
    return s + b"\0"


def _pax_record(key: str, value: str) -> bytes:
    kv = _encode(key) + b"=" + _encode(value) + b"\n"
    n = len(kv) + 2
    while True:
        rec = str(n).encode() + b" " + kv
        if len(rec) == n:
            return rec
        n = len(rec)


def _split_ustar(name_b: bytes) -> tuple[bytes, bytes] | None:
    if len(name_b) <= 100:
        return b"", name_b
    if len(name_b) > 256:
        return None
    # find a '/' so that prefix <= 155 and name <= 100
    for i in range(len(name_b) - 1, 0, -1):
        if name_b[i:i + 1] == b"/" and i <= 155 and len(name_b) - i - 1 <= 100:
            if len(name_b) - i - 1 == 0:
                return None
            return name_b[:i], name_b[i + 1:]
    return None


def _block(name_b: bytes, prefix_b: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
           typeflag: str, linkname_b: bytes, uname_b: bytes, gname_b: bytes,
           devmajor: int, devminor: int) -> bytes:
    def num(v: int, width: int) -> bytes:
        o = _octal(v, width)
        if o is None:
            # base-256 fallback; callers also add a pax record for exactness
            return bytes([0x80]) + max(v, 0).to_bytes(width - 1, "big")
        return o

    buf = bytearray(BLOCK)
    buf[0:len(name_b)] = name_b
    buf[100:108] = num(mode & 0o7777777, 8)
    buf[108:116] = num(uid, 8)
    buf[116:124] = num(gid, 8)
    buf[124:136] = num(size, 12)
    buf[136:148] = num(mtime, 12)
    buf[148:156] = b" " * 8
    buf[156] = ord(typeflag)
    buf[157:157 + len(linkname_b)] = linkname_b
    buf[257:263] = b"ustar\0"
    buf[263:265] = b"00"
    buf[265:265 + len(uname_b)] = uname_b
    buf[297:297 + len(gname_b)] = gname_b
    buf[329:337] = num(devmajor, 8)
    buf[337:345] = num(devminor, 8)
    buf[345:345 + len(prefix_b)] = prefix_b
    chk = sum(buf)
    buf[148:156] = b"%06o\0 " % chk
    return bytes(buf)


def encode_header(
    name: str,
    type: str,
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    size: int = 0,
    mtime: int = 0,
    linkname: str = "",
    uname: str = "",
    gname: str = "",
    devmajor: int = 0,
    devminor: int = 0,
    pax: dict[str, str] | None = None,
) -> bytes:
    """Header block(s) for one member: ustar, preceded by a pax header when anything does not fit."""
    records: dict[str, str] = {}
    for k, v in (pax or {}).items():
        if k not in _PAX_SKIP_ON_REWRITE:
            records[k] = v
    name_b = _encode(name)
    link_b = _encode(linkname)
    split = _split_ustar(name_b)
    if split is None or not name.isascii():
        records["path"] = name
        split = (b"", name_b[:100] if name.isascii() else b"")
        if not split[1]:
            split = (b"", _ascii_fallback(name))
    if len(link_b) > 100 or not linkname.isascii():
        records["linkpath"] = linkname
        link_b = link_b[:100] if linkname.isascii() else _ascii_fallback(linkname)
    if _octal(size, 12) is None:
        records["size"] = str(size)
    for key, value in (("uid", uid), ("gid", gid)):
        if _octal(value, 8) is None:
            records[key] = str(value)
    uname_b, gname_b = _encode(uname), _encode(gname)
    if len(uname_b) > 32 or not uname.isascii():
        records["uname"] = uname
        uname_b = b""
    if len(gname_b) > 32 or not gname.isascii():
        records["gname"] = gname
        gname_b = b""
    if _octal(mtime, 12) is None and "mtime" not in records:
        records["mtime"] = str(mtime)
    main = _block(split[1], split[0], mode, uid, gid, size, mtime, type, link_b, uname_b, gname_b,
                  devmajor, devminor)
    if not records:
        return main
    payload = b"".join(_pax_record(k, v) for k, v in records.items())
    base = name.rstrip("/").rsplit("/", 1)[-1]
    pax_name = _encode("PaxHeaders/" + (base if base.isascii() else "entry"))[:100]
    head = _block(pax_name, b"", 0o644, 0, 0, len(payload), mtime if _octal(mtime, 12) else 0, "x",
                  b"", b"", b"", 0, 0)
    pad = (BLOCK - len(payload) % BLOCK) % BLOCK
    return head + payload + b"\0" * pad + main


def _ascii_fallback(name: str) -> bytes:
    b = name.encode("ascii", "replace")[-100:]
    return b


def member_header(m: Member, *, name: str | None = None, type: str | None = None,
                  linkname: str | None = None, size: int | None = None) -> bytes:
    """Re-encode a member's header, optionally with another name, type, link target or size."""
    t = m.type if type is None else type
    n = m.name if name is None else name
    if t == DIRECTORY and not n.endswith("/"):
        n += "/"
    return encode_header(
        n, t, mode=m.mode, uid=m.uid, gid=m.gid,
        size=m.size if size is None else size, mtime=m.mtime,
        linkname=m.linkname if linkname is None else linkname,
        uname=m.uname, gname=m.gname, devmajor=m.devmajor, devminor=m.devminor, pax=m.pax,
    )


def padding(size: int) -> bytes:
    return b"\0" * ((BLOCK - size % BLOCK) % BLOCK)


END_OF_ARCHIVE = ZERO_BLOCK * 2
