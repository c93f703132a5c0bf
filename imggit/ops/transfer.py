"""``pull`` and ``push``: ``cp`` with a registry on one side, and transfer options.

``pull REF [DEST]`` reads the manifest and config first, then downloads the
layers DEST lacks in parallel into the blob cache (verified, resumable),
and only then writes the image and moves DEST's tag: nothing is tagged
unless every blob verified. ``push SRC docker://…`` sends only the blobs the
registry lacks (mounting those another repository of it holds), the config,
and the manifest last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..registry.progress import ProgressFn
from ..revisions import parse_rev
from ..session import Session
from ..stores.base import Store
from .copy import CopyResult, default_tag, dest_tag, write_image


@dataclass
class TransferOptions:
    jobs: int = 4
    progress: ProgressFn | None = None
    creds: str | None = None
    tls_verify: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def apply(self, session: Session) -> None:
        opts: dict[str, Any] = {"jobs": self.jobs}
        if self.progress is not None:
            opts["progress"] = self.progress
        if self.creds is not None:
            opts["creds"] = self.creds
        if self.tls_verify is not None:
            opts["tls_verify"] = self.tls_verify
        session.registry_options.update(opts, **self.extra)


def as_registry_ref(text: str) -> str:
    """``alpine:3`` or ``host:5000/app:1`` -> ``docker://…``; other transports are refused."""
    if text.startswith("docker://"):
        return text
    rev = parse_rev(text)
    if rev.ref.transport is None:
        return "docker://" + text
    raise UsageError(f"{text!r} is not a registry reference", hint="write docker://HOST/REPO[:TAG]")


def pull(session: Session, src: str, dest: str | None = None,
         options: TransferOptions | None = None) -> CopyResult:
    (options or TransferOptions()).apply(session)
    s = session.resolve(as_registry_ref(src))
    if not s.is_tip:
        raise UsageError(f"{src!r} is a past step, not an image", hint="pull the image, then tag the step")
    if dest is None:
        dst_store: Store = session.default_store()
        tag = default_tag(s)
    else:
        d = parse_rev(dest)
        if d.ops:
            raise UsageError(f"the destination {dest!r} cannot have a revision suffix")
        dst_store = session.store(d.ref.transport, d.ref.location, for_write=True)
        tag = dest_tag(d.ref, s)
    result, sent = write_image(session, s.store, s.image, dst_store, tag)
    return CopyResult(s, dst_store, tag, result, sent)


def push(session: Session, src: str, dest: str, options: TransferOptions | None = None) -> CopyResult:
    (options or TransferOptions()).apply(session)
    target = as_registry_ref(dest)
    s = session.resolve(src)
    if not s.is_tip:
        raise UsageError(f"{src!r} is a past step, not an image",
                         hint=f"make it an image first with: imggit tag {src} NAME")
    d = parse_rev(target)
    if d.ops:
        raise UsageError(f"the destination {dest!r} cannot have a revision suffix")
    dst_store = session.store(d.ref.transport, d.ref.location, for_write=True)
    tag = dest_tag(d.ref, s)
    if tag is None:
        raise UsageError(f"{src!r} has no tag to push under", hint=f"name one: {target}:TAG")
    result, sent = write_image(session, s.store, s.image, dst_store, tag)
    return CopyResult(s, dst_store, tag, result, sent)
