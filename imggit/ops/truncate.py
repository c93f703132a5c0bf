"""``tag REF NAME`` and ``reset REF~N``: an image of a past step.

The config of a past step is not stored in an image. It is exact when an
image in view has exactly that chain of steps (the engine keeps the parent
images of classic builds; a tagged base is another); otherwise the tip's
config is used and every field a dropped step set is reported, or the
config comes from ``--config-from``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..model import Config, Image, Step, describe_command, short
from ..revisions import parse_rev
from ..session import Resolved, Session
from ..stores.base import Store, WriteResult

# Dockerfile instructions that change the runtime config, and the config fields they set
_FIELDS = {
    "ENV": "Env", "CMD": "Cmd", "ENTRYPOINT": "Entrypoint", "WORKDIR": "WorkingDir", "USER": "User",
    "LABEL": "Labels", "EXPOSE": "ExposedPorts", "VOLUME": "Volumes", "STOPSIGNAL": "StopSignal",
    "HEALTHCHECK": "Healthcheck", "SHELL": "Shell", "ONBUILD": "OnBuild", "MAINTAINER": "author",
}
_INSTR = re.compile(r"^([A-Z]+)\b")


@dataclass
class Dropped:
    field: str
    step: Step
    command: str


@dataclass
class PastImage:
    image: Image
    origin: str                      # "exact" | "match" | "tip" | "config-from" | "tip-image"
    origin_detail: str = ""
    dropped: list[Dropped] = field(default_factory=list)


def fields_set_by(steps: list[Step]) -> list[Dropped]:
    out = []
    for s in steps:
        cmd = describe_command(s.created_by)
        m = _INSTR.match(cmd)
        if m and m.group(1) in _FIELDS:
            out.append(Dropped(_FIELDS[m.group(1)], s, cmd))
    return out


def _same_steps(a: Image, steps: tuple[Step, ...]) -> bool:
    return len(a.steps) == len(steps) and all(x.step_id == y.step_id for x, y in zip(a.steps, steps))


def find_exact(session: Session, r: Resolved) -> tuple[Image, str, str] | None:
    """An image in view whose steps are exactly the revision's steps."""
    store = r.store
    ids = r.image.extra.get("step_images") or []
    if len(ids) >= r.upto and ids[r.upto - 1]:
        try:
            cand = store.get(ids[r.upto - 1])
            exact = getattr(store, "exact", None)
            if exact is not None:
                cand = exact(cand)
            if _same_steps(cand, r.steps) or [l.chain_id for l in cand.layers] == [l.chain_id for l in r.layers]:
                return cand, "exact", f"the engine's parent image {short(cand.id)}"
        except Exception:
            pass
    try:
        images = store.list_images()
    except Exception:
        images = []
    for tag, img in images:
        if _same_steps(img, r.steps):
            return img, "match", f"{tag} ({short(img.id)}), an image with exactly these steps"
    return None


def past_image(session: Session, r: Resolved, *, config_from: str | None = None) -> PastImage:
    if r.is_tip and config_from is None:
        return PastImage(r.image, "tip-image")
    tip = r.image
    if config_from is None:
        found = find_exact(session, r)
        if found is not None:
            img, how, where = found
            return PastImage(img, how, where)
    data: dict[str, Any] = dict(tip.config.data)
    origin, detail = "tip", f"the config of {tip.describe()}"
    if config_from is not None:
        other = session.resolve(config_from)
        odata = other.image.config.data
        for key in ("config", "architecture", "os", "variant", "author"):
            if key in odata:
                data[key] = odata[key]
            else:
                data.pop(key, None)
        origin, detail = "config-from", f"the config of {other.text}"
    rootfs = dict(data.get("rootfs") or {"type": "layers"})
    rootfs["diff_ids"] = [l.diff_id for l in r.layers]
    data["rootfs"] = rootfs
    if tip.config.history:
        data["history"] = [dict(s.history) for s in r.steps if not s.synthetic]
    last = r.step
    if last is not None and last.created:
        data["created"] = last.created
    config = Config.from_data(data)
    layers = list(tip.layers[: r.nlayers])
    manifest = None
    img = Image.assemble(config, manifest, layers, name=None, source=tip.source)
    dropped = fields_set_by(list(tip.steps[r.upto:])) if origin == "tip" else []
    return PastImage(img, origin, detail, dropped)


@dataclass
class TagResult:
    past: PastImage
    source: Resolved
    dest: Store
    tag: str
    result: WriteResult


def tag(session: Session, src: str, name: str, *, config_from: str | None = None,
        layers: bool = False) -> TagResult:
    """``tag SRC NAME``: name any revision (a past step too), in SRC's store or another one."""
    r = session.resolve(src, layers=layers)
    d = parse_rev(name)
    if d.ops:
        raise UsageError(f"the new name {name!r} cannot have a revision suffix")
    if not d.ref.name:
        raise UsageError(f"{name!r} names a store but no tag", hint="give a name like app:slim")
    dst = session.store(d.ref.transport, d.ref.location, for_write=True) if d.ref.transport else r.store
    return _tag_into(session, r, dst, d.ref.name, config_from)


def reset(session: Session, rev: str, *, config_from: str | None = None, layers: bool = False) -> TagResult:
    """``reset TAG~N``: move TAG down to one of its past steps."""
    r = session.resolve(rev, layers=layers)
    name = r.ref.name if r.ref is not None else None
    if not name or name.startswith("@") or "@" in name or _looks_like_id(name):
        raise UsageError(f"{rev!r} does not start from a tag", hint="reset moves a tag: imggit reset app:1~2")
    if r.is_tip and config_from is None:
        raise UsageError(f"{rev!r} is where the tag already points", hint="name a past step: REF~N")
    return _tag_into(session, r, r.store, name, config_from)


def _looks_like_id(name: str) -> bool:
    return bool(re.fullmatch(r"(sha256:)?[0-9a-f]{6,64}", name))


def _tag_into(session: Session, r: Resolved, dst: Store, name: str, config_from: str | None) -> TagResult:
    from .copy import write_image
    from .publish import move_tag

    past = past_image(session, r, config_from=config_from)
    img = past.image
    if dst is r.store and past.origin in ("tip-image", "exact", "match"):
        res = move_tag(dst, img, name)
    else:
        res, _ = write_image(session, r.store, img, dst, name)
    return TagResult(past, r, dst, name, res)


__all__ = ["tag", "reset", "past_image", "PastImage", "TagResult"]
