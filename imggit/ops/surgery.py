"""Surgery on an image's layers: filter (purge paths), amend (patch files in).

Only the layers that change are rewritten (read once, written once,
compressed as the destination wants); every other layer keeps its blob.
Steps above a rewritten one are replayed unchanged.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, cast

from ..errors import NothingToDo, UsageError
from ..layers import build as lbuild
from ..layers import fetch
from ..layers import index as lindex
from ..layers.compress import compressor
from ..layers.rewrite import RewriteStats, rewrite_layer
from ..layers.streams import DigestReader, HashingWriter
from ..layers.tarfmt import Member
from ..model import Config, Layer, chain_ids, layer_media_type
from ..revisions import parse_rev
from ..session import Resolved, Session
from ..stores.base import LayerInput, Store, WriteRequest, WriteResult, tmpdir


@dataclass
class NewLayer:
    layer: Layer          # diff_id, digest (as stored), media type, size
    path: str             # the stored blob


def _destination(session: Session, r: Resolved, tag: str | None) -> tuple[Store, str | None]:
    if tag:
        d = parse_rev(tag)
        if d.ops:
            raise UsageError(f"the target {tag!r} cannot have a revision suffix")
        st = session.store(d.ref.transport, d.ref.location, for_write=True) if d.ref.transport else r.store
        return st, d.ref.name or r.image.name
    return r.store, (r.ref.name if r.ref is not None and r.ref.name and not r.ref.name.startswith("sha256:")
                     else r.image.name)


def _codec(dst: Store, compress: str | None) -> str | None:
    return dst.default_compression if compress == "auto" else compress


def write_blob(workdir: str, name: str, codec: str | None, family: str, level: int | None,
               fill: Callable[[Any], Any]) -> tuple[NewLayer, Any]:
    path = os.path.join(workdir, name)
    with open(path, "wb") as f:
        stored = HashingWriter(f)  # type: ignore[arg-type]
        w = compressor(stored, codec, level)  # type: ignore[arg-type]
        plain = HashingWriter(w)  # type: ignore[arg-type]
        ret = fill(plain)
        w.close()
    layer = Layer(plain.digest, "", stored.digest, layer_media_type(family, codec), stored.size,
                  uncompressed_size=plain.size)
    return NewLayer(layer, path), ret


def write_rewritten(session: Session, r: Resolved, dst: Store, name: str | None, layers: list[Layer | NewLayer],
                    config: Config, files: dict[int, fetch.LayerFile], old_index: list[int | None]) -> WriteResult:
    """Write an image made of old layers (by index into r.image.layers) and new ones."""
    from .publish import publish

    diff_ids = [l.layer.diff_id if isinstance(l, NewLayer) else l.diff_id for l in layers]
    chains = chain_ids(diff_ids)
    inputs: list[LayerInput] = []
    for k, (l, chain) in enumerate(zip(layers, chains)):
        if isinstance(l, NewLayer):
            nl = l.layer
            lay = Layer(nl.diff_id, chain, nl.digest, nl.media_type, nl.size, uncompressed_size=nl.uncompressed_size)
            inputs.append(LayerInput(lay, cast("Callable[[], BinaryIO]",
                                               lambda p=l.path, lay=lay: DigestReader(open(p, "rb"), lay.digest,
                                                                                      lay.size, "a rewritten layer"))))
            continue
        lay = Layer(l.diff_id, chain, l.digest, l.media_type, l.size, l.urls, l.annotations, l.uncompressed_size)
        i = old_index[k]
        lf = files.get(i) if i is not None else None
        if lf is not None and lf.path and hasattr(r.store, "spool_layers"):
            p = lf.path
            plain = Layer(lay.diff_id, chain, lay.diff_id, lay.media_type, os.path.getsize(p))
            inputs.append(LayerInput(plain, cast("Callable[[], BinaryIO]", lambda p=p: open(p, "rb"))))
        elif r.store.transport == "docker-daemon":
            inputs.append(LayerInput(lay))
        else:
            inputs.append(LayerInput(lay, cast("Callable[[], BinaryIO]", lambda i=i: r.store.open_blob(r.image, i))))
    req = WriteRequest(config, inputs, name, compress=None,
                       family=r.image.manifest.family if r.image.manifest else None)
    return publish(dst, req)


def _needed(dst: Store, r: Resolved, layers: list[Layer | NewLayer], old_index: list[int | None]) -> set[int]:
    """Old layer indices whose bytes ``dst`` will need, judged before the new layers exist."""
    tmp = []
    for k, l in enumerate(layers):
        if isinstance(l, NewLayer):
            tmp.append(Layer(f"sha256:{k:064x}", "", "", "", 0))
        else:
            tmp.append(l)
    ids = [l.diff_id for l in tmp]
    tmp = [Layer(l.diff_id, c, l.digest or l.diff_id, l.media_type, l.size) for l, c in zip(tmp, chain_ids(ids))]
    return {old_index[k] for k in dst.needed_layers(tmp) if old_index[k] is not None}  # type: ignore[misc]


# --- filter --------------------------------------------------------------------------------


@dataclass
class FilterResult:
    source: Resolved
    removed: dict[int, list[str]] = field(default_factory=dict)    # layer index -> paths removed
    unlinked: dict[int, list[str]] = field(default_factory=dict)
    dest: Store | None = None
    tag: str | None = None
    result: WriteResult | None = None


def matcher(patterns: list[str]) -> Callable[[str], bool]:
    pats = [p.strip() for p in patterns if p.strip()]
    if not pats:
        raise UsageError("give at least one --remove PATH or GLOB")
    norm = [p.strip("/") for p in pats]

    def match(path: str) -> bool:
        for p in norm:
            if path == p or path.startswith(p + "/") or fnmatch.fnmatchcase(path, p):
                return True
            if any(fnmatch.fnmatchcase("/".join(path.split("/")[:k]), p) for k in range(1, path.count("/") + 1)):
                return True
        return False

    return match


def filter_image(session: Session, rev: str, patterns: list[str], *, tag: str | None = None,
                 compress: str | None = "auto", level: int | None = None, dry_run: bool = False) -> FilterResult:
    r = session.resolve(rev)
    if not r.is_tip:
        raise UsageError(f"{rev!r} is a past step", hint="filter rewrites whole images; tag the step first")
    match = matcher(patterns)

    def hit(m: Member) -> bool:
        if m.is_whiteout:
            return match(m.whiteout_target)
        if m.is_opaque:
            return bool(m.parent) and match(m.parent)   # the marker would re-create the purged directory
        return match(m.path)

    idx = lindex.index_layers(r.store, r.image, range(r.nlayers))
    res = FilterResult(r)
    touched = []
    for i in range(r.nlayers):
        paths = [("/" + (m.whiteout_target if m.is_whiteout else m.path) + (" (whiteout)" if m.is_whiteout else ""))
                 for m in idx[i] if hit(m)]
        if paths:
            res.removed[i] = paths
            touched.append(i)
    if not touched:
        raise NothingToDo(f"warning: nothing in {r.text} matches {', '.join(patterns)}; no new image")
    if dry_run:
        return res
    dst, name = _destination(session, r, tag)
    res.dest, res.tag = dst, name
    codec = _codec(dst, compress)
    family = "oci" if codec == "zstd" or r.image.manifest is None else r.image.manifest.family
    workdir = tmpdir()
    try:
        layers: list[Layer | NewLayer] = list(r.image.layers[: r.nlayers])
        old_index: list[int | None] = list(range(r.nlayers))
        for i in touched:
            layers[i] = NewLayer(Layer("", "", "", "", 0), "")
        extra = sorted(_needed(dst, r, layers, old_index) - set(touched)) if hasattr(r.store, "spool_layers") else []
        files = fetch.materialize(r.store, r.image, touched + extra, workdir)
        for i in touched:
            lf = files[i]
            nl, stats = write_blob(workdir, f"filtered-{i}", codec, family, level,
                                   cast("Callable[[Any], Any]",
                                        lambda out, lf=lf: rewrite_layer(lf.path, lf.members, out, drop=hit)))
            assert isinstance(stats, RewriteStats)
            if stats.unlinked:
                res.unlinked[i] = stats.unlinked
            layers[i] = nl
        config = _with_diff_ids(r.image.config, layers)
        res.result = write_rewritten(session, r, dst, name, layers, config, files, old_index)
        return res
    finally:
        fetch.rmtree(workdir)


def _with_diff_ids(config: Config, layers: list[Layer | NewLayer]) -> Config:
    rootfs = dict(config.data.get("rootfs") or {"type": "layers"})
    rootfs["diff_ids"] = [l.layer.diff_id if isinstance(l, NewLayer) else l.diff_id for l in layers]
    return config.replace(rootfs=rootfs)


# --- amend --------------------------------------------------------------------------------------


@dataclass
class AmendResult:
    source: Resolved
    into: int | None                  # the step rewritten (None: a new top step)
    added: list[str]
    replaced: list[str]
    dest: Store | None = None
    tag: str | None = None
    result: WriteResult | None = None


def parse_add(spec: str) -> tuple[str, str]:
    src, sep, dest = spec.rpartition(":")
    if not sep or not src or not dest:
        raise UsageError(f"--add {spec!r}: write it as SRC:DEST (a local file or directory, a path in the image)")
    if not dest.startswith("/"):
        raise UsageError(f"--add {spec!r}: DEST must be an absolute path in the image")
    if not os.path.lexists(src):
        raise UsageError(f"--add {spec!r}: {src} does not exist")
    return src, dest


def amend(session: Session, rev: str, adds: list[str], *, chmod: str | None = None, chown: str | None = None,
          into: str | None = None, tag: str | None = None, message: str | None = None,
          timestamp: str | None = None, compress: str | None = "auto", level: int | None = None) -> AmendResult:
    from .squash import resolve_timestamp

    if not adds:
        raise UsageError("give at least one --add SRC:DEST")
    r = session.resolve(rev)
    if not r.is_tip:
        raise UsageError(f"{rev!r} is a past step", hint="amend an image; use --into REF~N to patch a past step")
    when = resolve_timestamp(timestamp)
    uid = gid = None
    if chown:
        a, _, b = chown.partition(":")
        try:
            uid, gid = int(a), int(b or a)
        except ValueError:
            raise UsageError(f"--chown {chown!r}: give numeric UID[:GID]") from None
    mode = None
    if chmod:
        try:
            mode = int(chmod, 8)
        except ValueError:
            raise UsageError(f"--chmod {chmod!r}: give an octal mode like 0644") from None
    entries: list[lbuild.Entry] = []
    for spec in adds:
        src, dest = parse_add(spec)
        try:
            entries += lbuild.entries_from_dir(src, dest, uid=uid, gid=gid, chmod=mode)
        except ValueError as e:
            raise UsageError(f"--add {spec!r}: {e}") from None
    added = ["/" + e.path.rstrip("/") for e in entries]
    dst, name = _destination(session, r, tag)
    codec = _codec(dst, compress)
    family = "oci" if codec == "zstd" or r.image.manifest is None else r.image.manifest.family
    cmd = "imggit amend " + " ".join("--add " + shlex.quote(a) for a in adds)
    workdir = tmpdir()
    try:
        if into is None:
            nl, _ = write_blob(workdir, "amend", codec, family, level,
                               lambda out: lbuild.write_layer(out, entries))
            layers: list[Layer | NewLayer] = list(r.image.layers) + [nl]
            old_index: list[int | None] = list(range(len(r.image.layers))) + [None]
            hist = [dict(h) for h in r.image.config.history]
            entry = {"created": when, "created_by": cmd}
            if message:
                entry["comment"] = message
            data = dict(r.image.config.data)
            if hist:
                data["history"] = hist + [entry]
            data["created"] = when
            rootfs = dict(data.get("rootfs") or {"type": "layers"})
            rootfs["diff_ids"] = [l.layer.diff_id if isinstance(l, NewLayer) else l.diff_id for l in layers]
            data["rootfs"] = rootfs
            config = Config.from_data(data)
            extra = sorted(_needed(dst, r, layers, old_index)) if hasattr(r.store, "spool_layers") else []
            files = fetch.materialize(r.store, r.image, extra, workdir) if extra else {}
            res = AmendResult(r, None, added, [], dst, name)
            res.result = write_rewritten(session, r, dst, name, layers, config, files, old_index)
            return res
        t = session.resolve(into)
        if t.image.id != r.image.id:
            raise UsageError(f"--into {into!r} is not a step of {rev!r}", hint=f"write it as {rev}~N")
        step = t.step
        if step is None or step.layer_index is None:
            raise UsageError(f"--into {into!r} is a step without a layer", hint="pick a step that has one (imggit log --layers)")
        li = step.layer_index
        new_paths = {e.path.rstrip("/") for e in entries}
        new_files = {e.path.rstrip("/") for e in entries if e.type != "5"}

        def drop(m: Member) -> bool:
            """The layer's own entries at the added paths (and under an added file) give way."""
            if m.is_whiteout or m.is_opaque or m.is_meta:
                return False
            return m.path in new_paths or any(m.path.startswith(q + "/") for q in new_files)

        layers = list(r.image.layers)
        old_index = list(range(len(layers)))
        layers[li] = NewLayer(Layer("", "", "", "", 0), "")
        extra = sorted(_needed(dst, r, layers, old_index) - {li}) if hasattr(r.store, "spool_layers") else []
        files = fetch.materialize(r.store, r.image, [li] + extra, workdir)
        lf = files[li]
        replaced = sorted("/" + m.path for m in lf.members if drop(m) and not m.is_whiteout)
        nl, _ = write_blob(workdir, "amend-into", codec, family, level,
                           lambda out: rewrite_layer(lf.path, lf.members, out, drop=drop, add=entries))
        layers[li] = nl
        config = _with_diff_ids(r.image.config, layers)
        hist = [dict(h) for h in config.history]
        if hist:
            h = hist[step.index]
            note = message or cmd
            h["comment"] = (h.get("comment", "") + "; " if h.get("comment") else "") + note
            config = config.replace(history=hist)
        res = AmendResult(r, step.index, added, replaced, dst, name)
        res.result = write_rewritten(session, r, dst, name, layers, config, files, old_index)
        return res
    finally:
        fetch.rmtree(workdir)
