"""``rebase --onto NEW [UPSTREAM] IMAGE``: replay an image's own steps on a patched base.

IMAGE's steps above UPSTREAM keep their layer blobs (same diff ids; the
chain ids follow from the new base). The runtime config is a three-way
merge with UPSTREAM as the merge-base (Env and Labels per key); paths that
IMAGE's layers touch and that also differ between UPSTREAM and NEW are
reported as conflicts (headers only: no file content is read, and with
``--no-check`` no layer at all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, cast

from ..errors import Conflict, RefError, RevisionError, UsageError
from ..layers import index as lindex
from ..model import short
from ..model import (
    BASE_DIGEST_ANNOTATION, BASE_NAME_ANNOTATION, RUNTIME_FIELDS, Config, Image, Layer, chain_ids,
)
from ..revisions import parse_rev
from ..session import Resolved, Session, merge_base, range_start
from ..stores.base import LayerInput, Store, WriteRequest, WriteResult

MISSING = object()


# --- config: three-way merge (pure) ------------------------------------------------------


@dataclass
class ConfigConflict:
    field: str
    base: Any
    ours: Any        # the image's value
    theirs: Any      # the new base's value


def _env_dict(env: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env or []:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def _merge_keys(name: str, base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any],
                conflicts: list[ConfigConflict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    keys = list(theirs) + [k for k in ours if k not in theirs]
    for k in keys:
        b, o, t = base.get(k, MISSING), ours.get(k, MISSING), theirs.get(k, MISSING)
        if o == b:
            v = t
        elif t == b or o == t:
            v = o
        else:
            conflicts.append(ConfigConflict(f"{name}[{k}]", _show(b), _show(o), _show(t)))
            v = o
        if v is not MISSING:
            out[k] = v
    return out


def _show(v: Any) -> Any:
    return None if v is MISSING else v


def merge_runtime(base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]
                  ) -> tuple[dict[str, Any], list[ConfigConflict]]:
    """Three-way merge of runtime configs: a field only the image changed keeps its value,
    a field only the new base changed takes the new value; both changed = conflict (ours kept)."""
    conflicts: list[ConfigConflict] = []
    out: dict[str, Any] = {}
    keys = list(ours) + [k for k in theirs if k not in ours]
    for k in keys:
        b, o, t = base.get(k, MISSING), ours.get(k, MISSING), theirs.get(k, MISSING)
        if k not in RUNTIME_FIELDS:
            # builder bookkeeping (Image, Hostname, Tty...): the image's own
            v0 = o if o is not MISSING else t
            if v0 is not MISSING:
                out[k] = v0
            continue
        present = o is not MISSING or t is not MISSING
        if k == "Env":
            env = _merge_keys("Env", _env_dict(_show(b)), _env_dict(_show(o)), _env_dict(_show(t)), conflicts)
            v: Any = [f"{a}={c}" for a, c in env.items()] if env or present else MISSING
        elif k == "Labels":
            lb = _merge_keys("Labels", dict(_show(b) or {}), dict(_show(o) or {}), dict(_show(t) or {}), conflicts)
            v = lb if lb else (None if present else MISSING)
        elif o == b:
            v = t
        elif t == b or o == t:
            v = o
        else:
            conflicts.append(ConfigConflict(k, _show(b), _show(o), _show(t)))
            v = o
        if v is not MISSING:
            out[k] = v
    return out, conflicts


# --- file conflicts -------------------------------------------------------------------------


@dataclass
class FileConflict:
    path: str
    kind: str                 # M (changed in the new base), D (deleted there), A (added there), T (type changed)
    base_before: int | None   # size in UPSTREAM
    base_after: int | None    # size in NEW
    image_layer: int          # which of the image's own layers touches it (layer index in the image)
    image_size: int | None    # size there (None: deleted by the image)


def _sig(m: Any) -> tuple:
    if m is None:
        return ()
    return (m.type, m.size, m.mode, m.uid, m.gid, m.mtime, m.linkname, tuple(sorted(m.xattrs.items())))


def fs_view(r: Resolved, headers: dict[int, list[Any]]) -> dict[str, tuple[Any, str]]:
    """path -> (member, diff id of the layer that wrote that version), for a revision."""
    from ..layers.fsview import FsView

    v = FsView()
    for i in range(r.nlayers):
        v.apply(headers[i], i)
    return {p: (e.member, r.layers[e.layer].diff_id) for p, e in v.files().items()}


def file_conflicts(upstream: dict[str, tuple[Any, str]], new: dict[str, tuple[Any, str]],
                   own: list[tuple[int, list[Any]]]) -> list[FileConflict]:
    """Paths the image's own layers touch whose version differs between the two bases.

    Headers decide, plus where the version came from: the same header from a layer with another
    diff id may hide another content (a same-size edit with a fixed mtime), so it counts too.
    """
    touched: dict[str, tuple[int, int | None]] = {}
    for li, members in own:
        for m in members:
            if m.is_opaque:
                p = m.parent or "."
                for q in upstream:
                    if q.startswith(p + "/"):
                        touched.setdefault(q, (li, None))
                continue
            if m.is_meta:
                continue
            if m.is_whiteout:
                touched[m.whiteout_target] = (li, None)
                continue
            if m.is_dir:
                continue
            touched[m.path] = (li, m.size if m.is_file else 0)
    out = []
    for p, (li, size) in sorted(touched.items()):
        a, b = upstream.get(p), new.get(p)
        am, bm = (a[0] if a else None), (b[0] if b else None)
        if _sig(am) == _sig(bm):
            if am is None or not am.is_file or a[1] == b[1]:  # type: ignore[index]
                continue
            if am.digest and bm.digest and am.digest == bm.digest:  # type: ignore[union-attr]
                continue   # another layer, but the very same content
        if am is None:
            kind = "A"
        elif bm is None:
            kind = "D"
        elif am.type != bm.type:
            kind = "T"
        else:
            kind = "M"
        out.append(FileConflict(p, kind, am.size if am is not None else None, bm.size if bm is not None else None,
                                li, size))
    return out


# --- the plan ----------------------------------------------------------------------------


@dataclass
class RebasePlan:
    image: Resolved
    upstream: Resolved
    onto: Resolved
    start: int                        # first step of the image above upstream
    upstream_how: str
    config: Config | None = None
    config_conflicts: list[ConfigConflict] = field(default_factory=list)
    file_conflicts: list[FileConflict] = field(default_factory=list)
    checked: bool = False

    @property
    def own_steps(self) -> int:
        return len(self.image.steps) - self.start

    @property
    def own_layers(self) -> list[int]:
        return [s.layer_index for s in self.image.steps[self.start:] if s.layer_index is not None]

    @property
    def conflicts(self) -> int:
        return len(self.config_conflicts) + len(self.file_conflicts)


def _repo(name: str | None) -> str:
    if not name:
        return ""
    name = name.split("@", 1)[0]
    i = name.rfind(":")
    return name[:i] if i > name.rfind("/") else name


def find_upstream(session: Session, image: Resolved, onto: Resolved) -> tuple[Resolved, str]:
    """Which base IMAGE was built on:

    1. the base it records (``org.opencontainers.image.base.digest`` annotation or label): exact, and
       still there after that base's tag moved on (the store keeps it, untagged or by id);
    2. the deepest tagged ancestor from the new base's repository (base:1 when rebasing onto base:2);
    3. the base it records by name, when that is still an ancestor;
    4. the deepest tagged ancestor from another repository than the image's own.
    A recorded base that cannot be used is an error, not a reason to guess.
    """
    annotations = dict(image.image.manifest.annotations) if image.image.manifest else {}
    labels = dict(image.image.config.runtime.get("Labels") or {})
    rec_digest = annotations.get(BASE_DIGEST_ANNOTATION) or labels.get(BASE_DIGEST_ANNOTATION)
    rec_name = annotations.get(BASE_NAME_ANNOTATION) or labels.get(BASE_NAME_ANNOTATION)
    if rec_digest:
        for key in ("@" + rec_digest, rec_digest):
            try:
                img = image.store.get(key)
            except (RefError, RevisionError, UsageError):
                continue
            r = Resolved(image.store, img, len(img.steps), rec_name or key)
            if merge_base(r, image) == r.upto:
                return r, f"the base it records ({rec_name or ''} {short(rec_digest)})".replace("( ", "(")
    ancestors: list[tuple[int, str, Image]] = []
    for tag, img in image.store.list_images():
        if img.id in (image.image.id, onto.image.id) or len(img.steps) >= image.upto:
            continue
        r = Resolved(image.store, img, len(img.steps), tag)
        n = merge_base(r, image)
        if n == len(img.steps) and n > 0:
            ancestors.append((n, tag, img))
    ancestors.sort(key=lambda a: -a[0])
    new_repo, own_repo = _repo(onto.image.name or onto.text), _repo(image.image.name or image.text)
    for n, tag, img in ancestors:
        if _repo(tag) == new_repo:
            return Resolved(image.store, img, n, tag), f"the deepest ancestor from {new_repo}"
    if rec_name:
        for text in (rec_name, _local_name(rec_name)):
            try:
                r = session.resolve(text)
            except (RefError, RevisionError):
                continue
            if merge_base(r, image) == r.upto:
                return r, f"the base it records ({rec_name})"
    if rec_digest or rec_name:
        raise UsageError(f"{image.describe()} records its base as {rec_name or '?'}"
                         + (f" ({short(rec_digest)})" if rec_digest else "")
                         + ", which is not here any more (or is no longer its ancestor)",
                         hint="name it: imggit rebase --onto NEW UPSTREAM IMAGE")
    for n, tag, img in ancestors:
        if _repo(tag) != own_repo:
            return Resolved(image.store, img, n, tag), "the deepest tagged ancestor"
    raise UsageError(f"cannot tell which base {image.describe()} was built on",
                     hint="name it: imggit rebase --onto NEW UPSTREAM IMAGE")


def _local_name(name: str) -> str:
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def plan_rebase(session: Session, onto: str, image: str, upstream: str | None = None, *,
                check: bool = True) -> RebasePlan:
    img = session.resolve(image)
    if not img.is_tip:
        raise UsageError(f"{image!r} is a past step; rebase takes an image", hint="tag it first")
    new = session.resolve(onto)
    if upstream is not None:
        from ..session import check_ancestor

        up = session.resolve(upstream)
        how = "given"
        check_ancestor(up, img)   # says what the merge-base is when it is not an ancestor
    else:
        up, how = find_upstream(session, img, new)
    start = range_start(up, img)
    if start == 0:
        raise RevisionError(f"{up.describe()} is not an ancestor of {img.describe()}")
    a, b = img.image.config, new.image.config
    from ..platforms import same_platform

    if not same_platform((a.os, a.architecture, a.variant), (b.os, b.architecture, b.variant)):
        raise UsageError(f"{new.describe()} is {b.platform}, {img.describe()} is {a.platform}: "
                         "a rebase cannot change the platform")
    plan = RebasePlan(img, up, new, start, how)
    base_runtime = dict(up.image.config.runtime)
    if not up.is_tip:
        # the upstream is a past step (cherry-pick SRC~N..): its own config, exact where one is known
        from .truncate import past_image

        past = past_image(session, up)
        base_runtime = dict(past.image.config.runtime)
        if past.origin == "tip":
            # not known exactly: what the later steps set cannot be the upstream's, so it counts as theirs
            base_runtime = _unset(base_runtime, past.dropped)
    runtime, plan.config_conflicts = merge_runtime(base_runtime, dict(a.runtime), dict(b.runtime))
    if check:
        own = [(i, m) for i, m in _headers(img, plan.own_layers).items()]
        # the two bases with content hashes: a file rebuilt identically is not a conflict
        upf = fs_view(up, _headers(up, range(up.nlayers), digests=True))
        newf = fs_view(new, _headers(new, range(new.nlayers), digests=True))
        plan.file_conflicts = file_conflicts(upf, newf, own)
        plan.checked = True
    plan.config = _new_config(plan, runtime)
    return plan


def _headers(r: Resolved, indices: Any, digests: bool = False) -> dict[int, list[Any]]:
    return lindex.index_layers(r.store, r.image, list(indices), digests=digests)


def _new_config(plan: RebasePlan, runtime: dict[str, Any]) -> Config:
    img, new = plan.image.image.config, plan.onto.image.config
    data = dict(img.data)
    data["config"] = runtime
    for key in ("architecture", "os", "variant"):
        if key in new.data:
            data[key] = new.data[key]
        else:
            data.pop(key, None)
    own_diffs = [img.diff_ids[i] for i in plan.own_layers]
    rootfs = dict(data.get("rootfs") or {"type": "layers"})
    rootfs["diff_ids"] = [l.diff_id for l in plan.onto.layers] + own_diffs
    data["rootfs"] = rootfs
    if img.history or new.history:
        base_hist = [dict(s.history) for s in plan.onto.steps]
        own_hist = [dict(s.history) for s in plan.image.steps[plan.start:]]
        data["history"] = base_hist + own_hist
    return Config.from_data(data)


def _keys(command: str) -> list[str]:
    """Variable or label names an ENV/LABEL instruction sets (``ENV A=1 B=2``, ``ENV A 1``)."""
    import shlex

    body = command.split(None, 1)[1] if " " in command else ""
    try:
        words = shlex.split(body)
    except ValueError:
        words = body.split()
    if words and "=" not in words[0]:
        return [words[0]]
    return [w.split("=", 1)[0] for w in words if "=" in w]


def _unset(runtime: dict[str, Any], dropped: list[Any]) -> dict[str, Any]:
    out = dict(runtime)
    for d in dropped:
        if d.field == "Env":
            keys = set(_keys(d.command))
            out["Env"] = [e for e in out.get("Env") or [] if str(e).split("=", 1)[0] not in keys]
        elif d.field == "Labels":
            keys = set(_keys(d.command))
            out["Labels"] = {k: v for k, v in (out.get("Labels") or {}).items() if k not in keys}
        elif d.field in out:
            del out[d.field]
    return out


def with_base_label(config: Config, name: str, digest: str | None) -> Config:
    data = dict(config.data)
    rt = dict(data.get("config") or {})
    labels = dict(rt.get("Labels") or {})
    labels[BASE_NAME_ANNOTATION] = name
    if digest:
        labels[BASE_DIGEST_ANNOTATION] = digest
    rt["Labels"] = labels
    data["config"] = rt
    return Config.from_data(data)


# --- execution -------------------------------------------------------------------------------


@dataclass
class RebaseResult:
    plan: RebasePlan
    dest: Store | None
    tag: str | None
    result: WriteResult | None = None


def rebase(session: Session, onto: str, image: str, upstream: str | None = None, *, tag: str | None = None,
           check: bool = True, strict: bool = False, dry_run: bool = False, timestamp: str | None = None
           ) -> RebaseResult:
    plan = plan_rebase(session, onto, image, upstream, check=check)
    img = plan.image
    if tag:
        d = parse_rev(tag)
        dst = session.store(d.ref.transport, d.ref.location, for_write=True) if d.ref.transport else img.store
        name = d.ref.name or img.image.name
    else:
        dst, name = img.store, img.ref.name if img.ref is not None else img.image.name
    res = RebaseResult(plan, dst, name)
    if dry_run:
        return res
    if strict and plan.conflicts:
        e = Conflict(f"{plan.conflicts} conflict(s) between {plan.image.describe()} and the new base "
                     f"{plan.onto.describe()}; nothing written (--strict)")
        e.plan = plan  # type: ignore[attr-defined]
        raise e
    res.result = write(session, plan, dst, name, timestamp)
    return res


def write(session: Session, plan: RebasePlan, dst: Store, name: str | None, timestamp: str | None) -> WriteResult:
    from ..layers import fetch
    from ..stores.base import tmpdir
    from .publish import publish
    from .squash import resolve_timestamp

    img, new = plan.image, plan.onto
    assert plan.config is not None
    config = plan.config.replace(created=resolve_timestamp(timestamp))
    base_name = new.image.name or new.text
    annotations: dict[str, str] = {}
    if dst.transport == "docker-daemon":
        config = with_base_label(config, base_name, new.image.digest or new.image.id)
    else:
        annotations = {BASE_NAME_ANNOTATION: base_name}
        if new.image.digest:
            annotations[BASE_DIGEST_ANNOTATION] = new.image.digest
    layers = list(new.layers) + [img.image.layers[i] for i in plan.own_layers]
    chains = chain_ids([l.diff_id for l in layers])
    layers = [Layer(l.diff_id, c, l.digest, l.media_type, l.size, l.urls, l.annotations, l.uncompressed_size)
              for l, c in zip(layers, chains)]
    # bytes may come from two stores: the new base's and the image's own
    needed = dst.needed_layers(layers)
    nb = len(new.layers)
    workdir = tmpdir()
    try:
        inputs: list[LayerInput] = []
        want_new = sorted(i for i in needed if i < nb)
        want_own = sorted(plan.own_layers[i - nb] for i in needed if i >= nb)
        spooled: dict[tuple[int, int], str] = {}
        for which, r, idx in ((0, new, want_new), (1, img, want_own)):
            if idx and hasattr(r.store, "spool_layers"):
                for i, lf in fetch.materialize(r.store, r.image, idx, workdir).items():
                    spooled[(which, i)] = lf.path
        for k, layer in enumerate(layers):
            which, i = (0, k) if k < nb else (1, plan.own_layers[k - nb])
            r = new if which == 0 else img
            if k not in needed:
                inputs.append(LayerInput(layer))
            elif (which, i) in spooled:
                p = spooled[(which, i)]
                plain = Layer(layer.diff_id, layer.chain_id, layer.diff_id, layer.media_type, None)
                inputs.append(LayerInput(plain, cast("Callable[[], BinaryIO]", lambda p=p: open(p, "rb"))))
            else:
                inputs.append(LayerInput(layer, cast("Callable[[], BinaryIO]",
                                                     lambda r=r, i=i: r.store.open_blob(r.image, i))))
        req = WriteRequest(config, inputs, name, annotations=annotations,
                           family=img.image.manifest.family if img.image.manifest else None)
        return publish(dst, req)
    finally:
        fetch.rmtree(workdir)


# --- fleet ------------------------------------------------------------------------------------


@dataclass
class FleetRow:
    tag: str
    old: str
    new: str | None
    conflicts: int
    error: str | None = None


def fleet(session: Session, onto: str, old: str, store_text: str | None, *, check: bool = True,
          strict: bool = False, dry_run: bool = False, timestamp: str | None = None,
          progress: Callable[[str], None] | None = None) -> list[FleetRow]:
    """Rebase every tagged image of a store whose chain starts with OLD's onto NEW."""
    from ..revisions import parse_store

    store = session.store_of(parse_store(store_text)) if store_text else session.default_store()
    base = session.resolve(old)
    new = session.resolve(onto)
    rows = []
    for tag, img in store.list_images():
        if img.id in (base.image.id, new.image.id):
            continue
        r = Resolved(store, img, len(img.steps), tag)
        if merge_base(base, r) != base.upto or len(img.steps) <= base.upto:
            continue
        ref = _ref_in(store, tag)
        if progress:
            progress(f"rebasing {tag}")
        try:
            res = rebase(session, onto, ref, old, check=check, strict=strict, dry_run=dry_run, timestamp=timestamp)
            rows.append(FleetRow(tag, img.id, res.result.image.id if res.result else None, res.plan.conflicts))
        except Exception as e:  # one failure does not stop the others
            from ..errors import ImggitError

            msg = e.message if isinstance(e, ImggitError) else f"{type(e).__name__}: {e}"
            rows.append(FleetRow(tag, img.id, None, 0, msg))
    return rows


def _ref_in(store: Store, tag: str) -> str:
    t = store.transport
    if t == "docker-daemon":
        return f"docker-daemon:{tag}"
    if getattr(store, "label", None):
        return f"embedded:{tag}"
    if t == "docker":
        return f"docker://{tag}"     # a registry lists its tags by full name: HOST/REPO:TAG
    return f"{t}:{getattr(store, 'path', '')}:{tag}"


__all__ = ["rebase", "plan_rebase", "fleet", "merge_runtime", "file_conflicts"]
