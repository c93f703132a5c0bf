"""Resolving references to stores and revisions to steps, for one command.

A ``Session`` opens each store once, remembers which one an unprefixed
name went to (the engine when one answers, else the embedded store), and
turns ``Rev``s into ``Resolved`` prefixes of images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from .config import embedded_store_path
from .errors import RefError, RevisionError, StoreError, UsageError
from .model import Image, Layer, Step
from .revisions import RangeSpec, Ref, Rev, StoreSpec, parse_range, parse_rev
from .stores.base import Store


@dataclass
class Resolved:
    """A revision: an image and how many of its steps (from the bottom) are meant."""

    store: Store
    image: Image
    upto: int
    text: str
    ref: Ref | None = None

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.image.steps[: self.upto]

    @property
    def step(self) -> Step | None:
        return self.steps[-1] if self.upto else None

    @property
    def is_tip(self) -> bool:
        return self.upto == len(self.image.steps)

    @property
    def nlayers(self) -> int:
        return sum(1 for s in self.steps if s.layer is not None)

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self.image.layers[: self.nlayers]

    @property
    def chain_id(self) -> str | None:
        return self.layers[-1].chain_id if self.layers else None

    def describe(self) -> str:
        return self.text or self.image.describe()


class Session:
    def __init__(self, platform: str | None = None, log: Callable[[str], None] | None = None) -> None:
        self.platform = platform
        self._log = log or (lambda msg: None)
        self._stores: dict[tuple[str | None, str | None], Store] = {}
        self._default: Store | None = None
        # keyword arguments for registry stores (docker://): creds, tls_verify, jobs, progress
        self.registry_options: dict[str, Any] = {}

    # --- stores ---------------------------------------------------------------------

    def log(self, msg: str) -> None:
        self._log(msg)

    def embedded(self) -> Store:
        key = ("embedded", None)
        if key not in self._stores:
            from .stores.ocilayout import OCILayout

            path = embedded_store_path()
            self._stores[key] = OCILayout(path, label=f"the embedded store ({path})", create=True,
                                          platform=self.platform)
        return self._stores[key]

    def engine(self) -> Store:
        key = ("docker-daemon", None)
        if key not in self._stores:
            from .stores.daemon import DockerDaemon

            self._stores[key] = DockerDaemon(platform=self.platform)
        return self._stores[key]

    def engine_answers(self) -> bool:
        from .stores.daemon import engine_available

        return engine_available()

    def default_store(self) -> Store:
        if self._default is None:
            if self.engine_answers():
                self._default = self.engine()
            else:
                self._default = self.embedded()
            self.log(f"unprefixed names go to {self._default.describe()}")
        return self._default

    def store(self, transport: str | None, location: str | None, *, for_write: bool = False) -> Store:
        if transport is None:
            return self.default_store()
        if transport == "embedded":
            return self.embedded()
        if transport == "docker-daemon":
            return self.engine()
        key = (transport, os.path.abspath(location) if location and transport != "docker" else location)
        if key in self._stores:
            return self._stores[key]
        assert location is not None
        if transport == "oci":
            from .stores.ocilayout import OCILayout

            st: Store = OCILayout(location, create=for_write, platform=self.platform)
        elif transport in ("docker-archive", "oci-archive"):
            from .stores.archive import DockerArchive, OCIArchive

            if for_write and os.path.isdir(location):
                raise UsageError(f"{location} is a directory; {transport}: writes one file",
                                 hint=f"name a file, or write a layout with oci:{location}")
            st = (DockerArchive if transport == "docker-archive" else OCIArchive)(location, platform=self.platform)
        elif transport == "docker":
            try:
                from .stores.registry import Registry  # type: ignore[import-not-found]
            except ImportError:
                raise StoreError("the docker:// (registry) transport is not available in this version") from None
            st = Registry(location, platform=self.platform, **self.registry_options)
        else:
            raise RefError(f"unknown transport {transport!r}")
        self._stores[key] = st
        return st

    def store_of(self, spec: StoreSpec) -> Store:
        return self.store(spec.transport, spec.location)

    def close(self) -> None:
        for st in self._stores.values():
            try:
                st.close()
            except Exception:
                pass
        self._stores.clear()

    # --- images and revisions ------------------------------------------------------------

    def image(self, ref: Ref) -> tuple[Store, Image]:
        """The image a reference names, and the store it was found in."""
        if ref.transport is None:
            store = self.default_store()
            try:
                return store, store.get(ref.name)
            except RefError as first:
                # an unprefixed name that the engine lacks may live in the embedded store
                if store.transport == "docker-daemon" and os.path.exists(embedded_store_path()):
                    emb = self.embedded()
                    try:
                        img = emb.get(ref.name)
                        self.log(f"{ref.name} is not in {store.describe()}; found it in {emb.describe()}")
                        return emb, img
                    except RefError:
                        pass
                raise first
        store = self.store(ref.transport, ref.location)
        return store, store.get(ref.name)

    def resolve(self, rev: Rev | str, *, layers: bool = False) -> Resolved:
        if isinstance(rev, str):
            rev = parse_rev(rev)
        if any(op == "@" for op, _ in rev.ops):
            try:
                from .journal import resolve_reflog  # type: ignore[attr-defined]
            except ImportError:
                raise RevisionError(f"{rev.text!r}: REF@{{N}} needs the journal, which this version does "
                                    "not have yet") from None
            return resolve_reflog(self, rev, layers=layers)  # type: ignore[no-any-return]
        store, image = self.image(rev.ref)
        upto = len(image.steps)
        for op, n in rev.ops:
            upto = _back(image, upto, n, layers, rev.text)
        return Resolved(store, image, upto, rev.text, rev.ref)

    def resolve_range(self, text: str | RangeSpec, *, layers: bool = False) -> tuple[Resolved | None, Resolved]:
        spec = parse_range(text) if isinstance(text, str) else text
        right = self.resolve(spec.right, layers=layers)
        if spec.left is None:
            return None, right
        left = self.resolve(spec.left, layers=layers)
        check_ancestor(left, right)
        return left, right


def _back(image: Image, upto: int, n: int, layers: bool, text: str) -> int:
    """The step count after going ``n`` steps (or layer-bearing steps) back from ``upto``."""
    if n == 0:
        return upto
    if not layers:
        if n >= upto:
            raise RevisionError(f"{text!r} goes back past the first step (the image has {upto} step(s) there)",
                                hint=f"the oldest step is ~{upto - 1}" if upto else None)
        return upto - n
    # count layer-bearing steps: land on the step that carries the layer n below the top one
    layer_steps = [s.index for s in image.steps[:upto] if s.layer is not None]
    if n >= len(layer_steps):
        raise RevisionError(f"{text!r} goes back past the first layer (there are {len(layer_steps)} layer(s))")
    return layer_steps[len(layer_steps) - 1 - n] + 1


def merge_base(a: Resolved, b: Resolved) -> int:
    """How many leading steps two revisions share."""
    n = 0
    for x, y in zip(a.steps, b.steps):
        if x.step_id != y.step_id:
            break
        n += 1
    return n


def check_ancestor(left: Resolved, right: Resolved) -> None:
    """``left`` must be a prefix of ``right`` (steps, else layers); move ``left.upto`` onto right's steps."""
    common = merge_base(left, right)
    if common == left.upto and common <= right.upto:
        return
    # Histories may differ (e.g. rebuilt from the engine's API) while the layers agree
    ll, rl = left.layers, right.layers
    if ll and len(ll) <= len(rl) and rl[len(ll) - 1].chain_id == ll[-1].chain_id and not any(
            s.layer is None for s in left.steps[-1:]):
        return
    if common:
        from .model import describe_command

        base = right.steps[common - 1]
        back = right.upto - common
        where = f"{right.describe()}~{back}" if back else right.describe()
        what = describe_command(base.created_by) or base.comment or "no command"
        raise RevisionError(
            f"{left.describe()} is not an ancestor of {right.describe()}; their merge-base is {where} "
            f"({what[:60]})")
    raise RevisionError(f"{left.describe()} is not an ancestor of {right.describe()}; they share no step")


def range_start(left: Resolved | None, right: Resolved) -> int:
    """The index of the first step of ``right`` that is not in ``left``."""
    if left is None:
        return 0
    common = merge_base(left, right)
    if common == left.upto:
        return common
    # matched by layers: the step that carries left's top layer
    n = left.nlayers
    for s in right.steps:
        if s.layer_index == n - 1:
            return s.index + 1
    return 0
