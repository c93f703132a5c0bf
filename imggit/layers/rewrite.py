"""Rewriting one layer: drop some members, add others, copy the rest byte for byte.

Used by ``filter`` (purge paths) and ``amend --into`` (patch files into a
step). Kept members are copied raw from the uncompressed layer file; a
hardlink whose target is dropped becomes a regular file carrying the
target's bytes, so nothing that stays loses its content.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Sequence

from . import tarfmt
from .build import Entry
from .tarfmt import Member


@dataclass
class RewriteStats:
    dropped: list[Member] = field(default_factory=list)
    unlinked: list[str] = field(default_factory=list)   # hardlinks turned into files
    added: int = 0


def _end(members: Sequence[Member], i: int) -> int:
    if i + 1 < len(members):
        return members[i + 1].header_offset
    m = members[i]
    return m.data_offset + ((m.size + 511) // 512 * 512 if m.is_file else 0)


def rewrite_layer(path: str, members: Sequence[Member], out: BinaryIO, *, drop: Callable[[Member], bool],
                  add: Sequence[Entry] = (), chunk: int = 1 << 20) -> RewriteStats:
    stats = RewriteStats()
    by_path = {}
    dropped_paths: set[str] = set()
    fd = os.open(path, os.O_RDONLY)

    def copy(start: int, end: int) -> None:
        pos = start
        while pos < end:
            b = os.pread(fd, min(chunk, end - pos), pos)
            if not b:
                raise EOFError(f"{path} ended early")
            out.write(b)
            pos += len(b)

    try:
        for i, m in enumerate(members):
            if drop(m):
                stats.dropped.append(m)
                dropped_paths.add(m.path)
                by_path[m.path] = m   # a later hardlink to it then gets its content
                continue
            if m.is_link:
                t = tarfmt.normalize(m.linkname)
                if t in dropped_paths and t in by_path and by_path[t].is_file:
                    tm = by_path[t]
                    out.write(tarfmt.member_header(m, type=tarfmt.REGULAR, linkname="", size=tm.size))
                    copy(tm.data_offset, tm.data_offset + tm.size)
                    out.write(tarfmt.padding(tm.size))
                    stats.unlinked.append(m.path)
                    by_path[m.path] = tm   # later links to this name find the content
                    dropped_paths.discard(m.path)
                    continue
            by_path[m.path] = m
            if m.raw_ok:
                copy(m.header_offset, _end(members, i))
            else:
                out.write(tarfmt.member_header(m))
                if m.is_file:
                    copy(m.data_offset, m.data_offset + m.size)
                    out.write(tarfmt.padding(m.size))
        for e in add:
            out.write(e.header())
            if e.type in (tarfmt.REGULAR, tarfmt.CONTIGUOUS) and e.data:
                out.write(e.data)
                out.write(tarfmt.padding(len(e.data)))
            stats.added += 1
        out.write(tarfmt.END_OF_ARCHIVE)
    finally:
        os.close(fd)
    return stats
