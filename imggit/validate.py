"""``validate(store, image)``: recompute everything an image claims and list what is wrong.

Checks config digest and size, manifest digest, every layer's stored
digest and size, every diff id (by decompressing), chain ids, history vs
layer alignment, one media-type family per manifest. Collects every
violation instead of stopping at the first (like ggcr's ``validate``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .layers.compress import open_decompressed
from .model import Image, chain_ids, media_family, sha256_digest
from .stores.base import Store


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    checked_layers: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        return "ok" if self.ok else "; ".join(self.problems)


def validate(store: Store, image: Image, *, layers: bool = True) -> Report:
    rep = Report()
    p = rep.problems
    raw = store.raw_config(image)
    if sha256_digest(raw) != image.id:
        p.append(f"config hashes to {sha256_digest(raw)}, image id is {image.id}")
    m = image.manifest
    if m is not None:
        if m.config.digest != sha256_digest(raw):
            p.append(f"manifest names config {m.config.digest}, config is {sha256_digest(raw)}")
        if m.config.size != len(raw):
            p.append(f"manifest says the config has {m.config.size} bytes, it has {len(raw)}")
        fams = {media_family(d.media_type) for d in m.layers} | {m.family}
        if len(fams) > 1:
            p.append(f"manifest mixes media-type families: {sorted(fams)}")
        if len(m.layers) != len(image.config.diff_ids):
            p.append(f"manifest has {len(m.layers)} layers, config {len(image.config.diff_ids)} diff ids")
    diff_ids = image.config.diff_ids
    if [l.diff_id for l in image.layers] != diff_ids:
        p.append("layers do not carry the config's diff ids in order")
    if [l.chain_id for l in image.layers] != chain_ids(diff_ids):
        p.append("chain ids do not follow from the diff ids")
    nonempty = sum(1 for h in image.config.history if not h.get("empty_layer"))
    if image.config.history and nonempty != len(diff_ids):
        p.append(f"history has {nonempty} non-empty entries for {len(diff_ids)} layers")
    if image.config.data.get("rootfs", {}).get("type") != "layers":
        p.append("rootfs.type is not 'layers'")
    if not layers:
        return rep
    if hasattr(store, "spool_layers"):
        import tempfile

        from .layers.fetch import cleanup, materialize

        with tempfile.TemporaryDirectory() as wd:
            try:
                files = materialize(store, image, range(len(image.layers)), wd)
                rep.checked_layers = len(files)
                cleanup(files)
            except Exception as e:  # report, do not raise
                p.append(f"layers: {e}")
        return rep
    for i, layer in enumerate(image.layers):
        if layer.foreign:
            continue
        try:
            f = store.open_blob(image, i)
        except Exception as e:
            p.append(f"layer {i}: {e}")
            continue
        try:
            h_stored = hashlib.sha256()
            n_stored = 0

            class _Tap:
                def __init__(self, src):  # type: ignore[no-untyped-def]
                    self.src = src

                def read(self, n: int = -1) -> bytes:
                    nonlocal n_stored
                    b = self.src.read(n)
                    h_stored.update(b)
                    n_stored += len(b)
                    return b

            stream, _ = open_decompressed(_Tap(f), f"layer {i}")  # type: ignore[arg-type]
            h = hashlib.sha256()
            while True:
                b = stream.read(1 << 20)
                if not b:
                    break
                h.update(b)
            while True:  # the rest of the stored blob (trailing bytes after the compressed stream)
                b = _Tap(f).read(1 << 20)
                if not b:
                    break
            if "sha256:" + h_stored.hexdigest() != layer.digest:
                p.append(f"layer {i}: stored bytes hash to sha256:{h_stored.hexdigest()}, expected {layer.digest}")
            if layer.size is not None and n_stored != layer.size:
                p.append(f"layer {i}: {n_stored} bytes stored, descriptor says {layer.size}")
            if "sha256:" + h.hexdigest() != layer.diff_id:
                p.append(f"layer {i}: content hashes to sha256:{h.hexdigest()}, diff id is {layer.diff_id}")
            rep.checked_layers += 1
        except Exception as e:
            p.append(f"layer {i}: {e}")
        finally:
            f.close()
    return rep
