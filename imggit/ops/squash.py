"""``squash RANGE``: merge the layers of a range of steps into one.

``plan_squash`` is pure: which steps and layers merge, and the history the
result gets. ``squash`` reads the range's layers once (the base's headers
too, from the cache when they are there), merges them with the tar engine,
writes the one new layer (compressed as the destination wants, digest and
diff id computed on the way) and writes the image: base layers and the
layers above the range keep their blobs byte for byte.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, cast

from ..errors import NothingToDo, UsageError
from ..layers import fetch, merge
from ..layers.compress import compressor
from ..layers.streams import DigestReader, HashingWriter
from ..model import Config, Image, Layer, chain_ids, describe_command, layer_media_type
from ..revisions import parse_rev
from ..session import Resolved, Session, range_start
from ..stores.base import LayerInput, Store, WriteRequest, WriteResult, tmpdir


# --- timestamps ----------------------------------------------------------------------


def resolve_timestamp(value: str | None) -> str:
    """RFC 3339 time for what imggit writes: --timestamp, else SOURCE_DATE_EPOCH, else now."""
    if value is None:
        env = os.environ.get("SOURCE_DATE_EPOCH")
        if env:
            value = env
    if value is None:
        return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    v = value.strip()
    t: _dt.datetime | None
    if v.lstrip("-").isdigit():
        t = _dt.datetime.fromtimestamp(int(v), _dt.timezone.utc)
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    from ..render import parse_time

    t = parse_time(v)
    if t is None:
        raise UsageError(f"invalid timestamp {value!r}",
                         hint="give seconds since 1970 or an RFC 3339 time like 2024-01-01T00:00:00Z")
    return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the plan (pure) ------------------------------------------------------------------


@dataclass
class SquashPlan:
    image: Image
    start: int              # first step of the range (history index)
    end: int                # one past the last step of the range
    layer_start: int        # first layer of the range
    layer_end: int          # one past its last layer
    keep_history: bool
    timestamp: str
    message: str | None
    history_only: bool = False   # at most one layer: only the history changes

    @property
    def nsteps(self) -> int:
        return self.end - self.start

    @property
    def nlayers(self) -> int:
        return self.layer_end - self.layer_start

    @property
    def layers_after(self) -> int:
        return len(self.image.layers) - self.nlayers + (1 if self.nlayers else 0)

    def describe_range(self) -> str:
        return f"steps {self.start + 1}-{self.end} of {len(self.image.steps)}"


def plan_squash(image: Image, start: int, end: int, *, keep_history: bool = True, timestamp: str,
                message: str | None = None) -> SquashPlan:
    steps = image.steps[start:end]
    if not steps:
        raise NothingToDo("nothing to squash: the range holds no step")
    if any(s.synthetic or s.missing_layer for s in image.steps) and image.config.history:
        raise UsageError(f"the history of {image.describe()} does not line up with its layers; "
                         "imggit will not guess which steps to merge")
    layer_idx = [s.layer_index for s in steps if s.layer_index is not None]
    if not layer_idx:
        raise NothingToDo(f"nothing to squash: the range's {_count(len(steps), 'step')} "
                          f"{'carries' if len(steps) == 1 else 'carry'} no layer")
    ls, le = layer_idx[0], layer_idx[-1] + 1
    history_only = len(layer_idx) == 1
    if history_only and (keep_history or len(steps) == 1):
        raise NothingToDo("nothing to squash: the range holds a single layer"
                          + ("" if len(steps) == 1 else " (use --no-keep-history to fold its steps' history)"))
    return SquashPlan(image, start, end, ls, le, keep_history, timestamp, message, history_only)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def new_history(plan: SquashPlan) -> list[dict[str, Any]]:
    """The history of the result: the range's steps kept as empty entries, then the merged step."""
    hist = [dict(h) for h in plan.image.config.history]
    if not hist:
        return []
    inside = hist[plan.start:plan.end]
    entry: dict[str, Any] = {"created": plan.timestamp,
                             "created_by": f"imggit squash {plan.describe_range()}"}
    if plan.message and plan.keep_history:
        entry["comment"] = plan.message
    elif plan.keep_history:
        entry["comment"] = f"imggit squash: merged {_count(plan.nsteps, 'step')} ({plan.nlayers} layers); " \
                           "their commands are the empty entries below"
    else:   # the folded steps' commands stay on record in the comment
        merged = json.dumps([describe_command(h.get("created_by", "")) or h.get("comment", "") for h in inside],
                            ensure_ascii=False)
        entry["comment"] = (plan.message + "; " if plan.message else "imggit squash: ") + "merged " + merged
    if plan.keep_history:
        kept = []
        for h in inside:
            h = dict(h)
            h["empty_layer"] = True
            kept.append(h)
        middle = kept + [entry]
    else:
        middle = [entry]
    return hist[:plan.start] + middle + hist[plan.end:]


def new_config(plan: SquashPlan, merged_diff_id: str) -> Config:
    diff_ids = plan.image.config.diff_ids
    new_ids = diff_ids[:plan.layer_start] + [merged_diff_id] + diff_ids[plan.layer_end:]
    rootfs = dict(plan.image.config.data.get("rootfs") or {"type": "layers"})
    rootfs["diff_ids"] = new_ids
    changes: dict[str, Any] = {"rootfs": rootfs, "created": plan.timestamp}
    hist = new_history(plan)
    if hist:
        changes["history"] = hist
    return plan.image.config.replace(**changes)


# --- execution -------------------------------------------------------------------------


@dataclass
class SquashResult:
    plan: SquashPlan
    merge: merge.MergePlan | None
    source: Resolved
    dest: Store | None
    tag: str | None
    result: WriteResult | None = None
    merged_layer: Layer | None = None
    timings: dict[str, float] = field(default_factory=dict)
    dry_run: bool = False


def _range(session: Session, text: str) -> tuple[Resolved, int, int]:
    left, right = session.resolve_range(text)
    start = range_start(left, right)
    return right, start, right.upto


def destination(session: Session, src: Resolved, tag: str | None) -> tuple[Store, str | None]:
    if tag:
        d = parse_rev(tag)
        if d.ops:
            raise UsageError(f"the target {tag!r} cannot have a revision suffix")
        store = session.store(d.ref.transport, d.ref.location, for_write=True)
        name = d.ref.name or src.image.name
        return store, name
    name = src.image.name if src.ref is not None and src.image.name else None
    return src.store, name


def squash(session: Session, range_text: str, *, tag: str | None = None, message: str | None = None,
           keep_history: bool = True, timestamp: str | None = None, dry_run: bool = False,
           compress: str | None = "auto", level: int | None = None,
           progress: Callable[[str], None] | None = None) -> SquashResult:
    say = progress or (lambda msg: None)
    t0 = time.monotonic()
    src, start, end = _range(session, range_text)
    image = src.image
    exact = getattr(src.store, "exact", None)
    plan = plan_squash(image, start, end, keep_history=keep_history, timestamp=resolve_timestamp(timestamp),
                       message=message)
    dst, name = (None, None) if dry_run else destination(session, src, tag)
    result = SquashResult(plan, None, src, dst, name, dry_run=dry_run)
    if plan.history_only and dry_run:
        return result
    spools = hasattr(src.store, "spool_layers")   # the engine: bytes only through one save pass
    workdir = tmpdir()
    try:
        if plan.history_only:
            assert dst is not None
            extra = sorted(dst.needed_layers(image.layers)) if spools else []
            files = fetch.materialize(src.store, image, extra, workdir) if extra else {}
            if exact is not None and not image.exact_config:
                image = exact(image)
                plan = plan_squash(image, start, end, keep_history=keep_history, timestamp=plan.timestamp,
                                   message=message)
                result.plan = plan
            merged = image.layers[plan.layer_start]
            result.result = _write(session, src, dst, name, plan, new_config(plan, merged.diff_id), files,
                                   merged, compress, level)
            return result
        rng = list(range(plan.layer_start, plan.layer_end))
        base = list(range(0, plan.layer_start))
        base_known = not (base and src.store.remote and not _headers_cached(image, base))
        if not base_known:
            base = []   # not downloaded for their headers: every whiteout of the range is kept
        extra = sorted(_needed_old(plan, dst) - set(rng)) if (dst is not None and spools) else []
        say(f"reading {_count(len(rng), 'layer')} of {image.describe()}"
            + (f" and the headers of {_count(len(base), 'base layer')}" if base else "")
            + ("" if base_known else " (the base is not downloaded: every whiteout is kept)"))
        files = fetch.materialize(src.store, image, rng + extra, workdir, index_only=base)
        if exact is not None and not image.exact_config:
            image = exact(image)
            plan = plan_squash(image, start, end, keep_history=keep_history, timestamp=plan.timestamp,
                               message=message)
            result.plan = plan
        result.timings["read"] = time.monotonic() - t0
        t1 = time.monotonic()
        if not base_known:
            base_view = merge.BaseView(None)
        else:
            base_view = merge.base_view([files[i].members for i in base]) if base else merge.EMPTY_BASE
        mplan = merge.plan_merge([files[i].members for i in rng], base_view)
        result.merge = mplan
        result.timings["plan"] = time.monotonic() - t1
        if dry_run:
            return result
        assert dst is not None
        codec = dst.default_compression if compress == "auto" else compress
        family = "oci" if codec == "zstd" or image.manifest is None else image.manifest.family
        t2 = time.monotonic()
        say(f"writing the merged layer ({len(mplan.entries)} entries)")
        paths = [files[i].path for i in rng]
        if mplan.base_sources:
            # hardlinks that keep bytes of a base file the range changed: those base layers are read too
            say(f"reading {_count(len(mplan.base_sources), 'base layer')} for the old content of "
                f"{_count(len(mplan.base_links), 'hardlink')}")
            more = fetch.materialize(src.store, image, mplan.base_sources, workdir)
            paths += [more[i].path for i in mplan.base_sources]
        if codec is None and dst.streams_new_layers():
            # straight into the destination as it is made: no temporary copy of the merged layer
            size = mplan.output_size()
            merged = Layer("", "", "", layer_media_type(family, None), size, uncompressed_size=size)
            produce = lambda out: merge.write_merged(mplan, paths, out)  # noqa: E731
            result.result = _write(session, src, dst, name, plan, None, files, merged, compress, level,
                                   produce=produce, family=family)
            new_img = result.result.image
            merged = new_img.layers[plan.layer_start]
            result.merged_layer = Layer(merged.diff_id, merged.chain_id, merged.digest, merged.media_type, size,
                                        uncompressed_size=size)
            result.timings["merge+write"] = time.monotonic() - t2
            return result
        blob = os.path.join(workdir, "merged.blob")
        with open(blob, "wb") as f:
            stored = HashingWriter(f)  # type: ignore[arg-type]
            w = compressor(stored, codec, level)  # type: ignore[arg-type]
            plain = HashingWriter(w)  # type: ignore[arg-type]
            merge.write_merged(mplan, paths, plain)  # type: ignore[arg-type]
            w.close()
        diff_id = plain.digest
        merged = Layer(diff_id, "", stored.digest, layer_media_type(family, codec), stored.size,
                       uncompressed_size=plain.size)
        result.merged_layer = merged
        result.timings["merge"] = time.monotonic() - t2
        t3 = time.monotonic()
        config = new_config(plan, diff_id)
        result.result = _write(session, src, dst, name, plan, config, files, merged, compress, level,
                               blob_path=blob, family=family)
        result.timings["write"] = time.monotonic() - t3
        return result
    finally:
        fetch.rmtree(workdir)


def _headers_cached(image: Image, indices: list[int]) -> bool:
    from ..layers.index import is_cached

    return all(is_cached(image.layers[i].diff_id) for i in indices)


def _needed_old(plan: SquashPlan, dst: Store) -> set[int]:
    """Old layer indices whose bytes the destination will need (the merged layer's id is not known yet)."""
    old = list(plan.image.layers)
    placeholder = "sha256:" + hashlib.sha256(b"imggit: the merged layer").hexdigest()
    diff_ids = [l.diff_id for l in old[:plan.layer_start]] + [placeholder] + [l.diff_id for l in old[plan.layer_end:]]
    layers = [Layer(d, c, old_l.digest if old_l else d, old_l.media_type if old_l else "", None)
              for d, c, old_l in zip(diff_ids, chain_ids(diff_ids),
                                     old[:plan.layer_start] + [None]
                                     + cast("list[Layer | None]", old[plan.layer_end:]))]
    out = set()
    for k in dst.needed_layers(layers):
        if k < plan.layer_start:
            out.add(k)
        elif k > plan.layer_start:
            out.add(k - 1 + plan.nlayers)
    return out


def _write(session: Session, src: Resolved, dst: Store, name: str | None, plan: SquashPlan,
           config: Config | None, files: dict[int, fetch.LayerFile] | None, merged: Layer, compress: str | None,
           level: int | None, *, blob_path: str | None = None, family: str | None = None,
           produce: Callable[[Any], Any] | None = None) -> WriteResult:
    image = plan.image
    old = list(image.layers)
    new_layers = old[:plan.layer_start] + [merged] + old[plan.layer_end:]
    chains = chain_ids([l.diff_id for l in new_layers])
    inputs: list[LayerInput] = []
    for k, (layer, chain) in enumerate(zip(new_layers, chains)):
        lay = Layer(layer.diff_id, chain, layer.digest, layer.media_type, layer.size, layer.urls,
                    layer.annotations, layer.uncompressed_size)
        if produce is not None and k == plan.layer_start:
            inputs.append(LayerInput(lay, produce=produce))
            continue
        if blob_path is not None and k == plan.layer_start:
            inputs.append(LayerInput(lay, cast("Callable[[], BinaryIO]",
                                               lambda lay=lay: DigestReader(open(blob_path, "rb"), lay.digest, lay.size,
                                                                            "the merged layer")), path=blob_path))
            continue
        i = k if k <= plan.layer_start else k - 1 + plan.nlayers
        lf = (files or {}).get(i)
        if lf is not None and lf.path and hasattr(src.store, "spool_layers"):
            p = lf.path
            plain = Layer(lay.diff_id, chain, lay.diff_id, lay.media_type if lay.digest == lay.diff_id
                          else layer_media_type(family or "oci", None), os.path.getsize(p),
                          uncompressed_size=lay.uncompressed_size)
            inputs.append(LayerInput(plain, cast("Callable[[], BinaryIO]",
                                                 lambda p=p, plain=plain: DigestReader(open(p, "rb"), plain.digest,
                                                                                       plain.size, f"layer {i}"))))
        elif src.store.transport == "docker-daemon":
            inputs.append(LayerInput(lay))   # the destination has it (else it was spooled above)
        else:
            inputs.append(LayerInput(lay, cast("Callable[[], BinaryIO]", lambda i=i: src.store.open_blob(image, i))))
    if config is None:  # the merged layer's diff id is known once it is written
        req = WriteRequest(image.config, inputs, name, manifest=image.manifest, compress=compress,
                           compress_level=level, family=family or (image.manifest.family if image.manifest else None),
                           config_for=lambda ids: new_config(plan, ids[plan.layer_start]))
    else:
        req = WriteRequest(config, inputs, name, manifest=image.manifest, compress=compress, compress_level=level,
                           family=family or (image.manifest.family if image.manifest else None))
    from .publish import publish

    return publish(dst, req)
