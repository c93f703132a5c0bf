"""``extract REF DEST``: write an image's filesystem, or one layer's files, into a directory.

By default the layers of the revision are merged exactly as the engine
applies them (whiteouts and opaque directories applied, the topmost version
of each path wins) and the result is written, so ``DEST`` holds what
``docker export`` of a container of the image would. With one layer
(``--layer-only``, ``--layer ~N``) only that layer's entries are written and
its whiteouts are listed, never created. Only the layers needed are read:
from a registry, only their blobs are downloaded.

Nothing is written outside ``DEST`` (see ``layers.extract``); refused
entries are returned, one per name, for the command to report.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import RevisionError, UsageError
from ..layers import fetch, merge
from ..layers.extract import Refusal, Stats, screen, write_plan
from ..layers.tarfmt import Member
from ..model import Step
from ..session import Resolved, Session
from ..stores.base import tmpdir

_LAYER_ARG = re.compile(r"~?(\d*)")


@dataclass
class ExtractResult:
    source: Resolved
    dest: str
    mode: str                  # "merged" | "layer"
    layers: list[int]          # indices of the layers written (bottom first)
    step: Step | None          # single layer: the step that carries it
    stats: Stats
    devices: bool              # device nodes were allowed

    @property
    def refused(self) -> list[Refusal]:
        return self.stats.refused


def parse_layer_arg(text: str) -> int:
    """``~N`` (or ``N``): how many layers below the top one; ``~`` is ``~1`` as in git."""
    m = _LAYER_ARG.fullmatch(text.strip())
    if m is None or text.strip() == "":
        hint = "quote it: --layer '~1' (the shell turns ~ into a directory)" if text.startswith("/") else \
            "~0 is the top layer, ~1 the one below it"
        raise UsageError(f"--layer takes ~N (layers below the top one), not {text!r}", hint=hint)
    if m.group(1) == "":
        return 1
    return int(m.group(1))


def pick_layers(r: Resolved, layer: str | None, layer_only: bool) -> tuple[str, list[int]]:
    """(mode, layer indices) of what to extract from revision ``r`` (pure)."""
    if layer is not None and layer_only:
        raise UsageError("give --layer ~N or --layer-only, not both", hint="--layer-only is --layer ~0")
    n = r.nlayers
    if layer is None and not layer_only:
        return "merged", list(range(n))
    back = 0 if layer is None else parse_layer_arg(layer)
    if n == 0:
        raise UsageError(f"{r.describe()} has no layer")
    if back >= n:
        raise RevisionError(f"--layer ~{back} goes past the first layer of {r.describe()} "
                            f"(it has {n} layer(s): ~0 to ~{n - 1})")
    return "layer", [n - 1 - back]


def step_of(r: Resolved, index: int) -> Step | None:
    for s in r.steps:
        if s.layer_index == index:
            return s
    return None


def prepare_dest(dest: str, force: bool) -> bool:
    """Check (or create) the target directory; True when it was created."""
    if os.path.lexists(dest) and not os.path.isdir(dest):
        raise UsageError(f"{dest!r} exists and is not a directory")
    if os.path.isdir(dest):
        if os.listdir(dest) and not force:
            raise UsageError(f"{dest!r} is not empty", hint="extract into an empty directory, or add --force "
                             "to write over what is there")
        return False
    try:
        os.makedirs(dest)
    except OSError as e:
        raise UsageError(f"cannot create {dest!r}: {e.strerror}") from None
    return True


def _plan(mode: str, layers: list[list[Member]], devices: bool, root: bool) -> tuple[merge.MergePlan, list[Refusal]]:
    """Screen the layers' members (pure), then plan what to write: merged from the bottom, or one layer
    over an unknown base (so its whiteouts stay in the plan, to be listed)."""
    why = "device node (use --devices, as root)" if not devices else "device node (needs root)"
    refused: list[Refusal] = []
    kept = []
    seen: set[str] | None = set() if mode == "merged" else None   # from the bottom: every link target known
    for members in layers:
        ok, bad = screen(members, devices=devices and root, why_no_devices=why, seen=seen)
        kept.append(ok)
        refused += bad
    base = merge.EMPTY_BASE if mode == "merged" else merge.BaseView(None)
    return merge.plan_merge(kept, base), refused


def extract(session: Session, ref: str, dest: str, *, layer: str | None = None, layer_only: bool = False,
            devices: bool = False, force: bool = False) -> ExtractResult:
    r = session.resolve(ref)
    mode, indices = pick_layers(r, layer, layer_only)
    created = prepare_dest(dest, force)
    root = os.geteuid() == 0
    workdir = tmpdir()
    files: dict[int, fetch.LayerFile] = {}
    try:
        try:
            files = fetch.materialize(r.store, r.image, indices, workdir)
            plan, refused = _plan(mode, [files[i].members for i in indices], devices, root)
        except BaseException:
            if created:
                os.rmdir(dest)   # nothing was written yet: leave no empty directory behind
            raise
        stats = write_plan(plan, [files[i].path for i in indices], dest, root=root,
                           implicit_dirs=None if mode == "merged" else 0o755)
        stats.refused[:0] = refused
    finally:
        fetch.cleanup(files)
        fetch.rmtree(workdir)
    step = step_of(r, indices[0]) if mode == "layer" else None
    return ExtractResult(r, dest, mode, indices, step, stats, devices and root)


__all__ = ["extract", "pick_layers", "parse_layer_arg", "ExtractResult"]
