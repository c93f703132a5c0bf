"""References and revisions: ``oci:out:app~2``, ``deb:12..app:1``, ``app:1@{1}``.

Parsing is pure: text in, ``Ref``/``Rev``/``RangeSpec`` out. Transports
follow skopeo's names; revision suffixes follow git:

- ``REF~N`` N steps back (``~`` = ``~1``), ``REF^`` = ``REF~1``, ``REF^0`` = REF
- ``REF@{N}`` the N-th previous value of a tag (from the journal)
- ``A..B`` the steps of B that are not in A
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import RefError, RevisionError

TRANSPORTS = ("docker-daemon", "oci", "docker-archive", "oci-archive", "docker", "embedded")
_OTHER_SKOPEO = ("dir", "containers-storage", "ostree", "sif", "tarball", "atomic")

_SUFFIX = re.compile(r"(~\d*|\^\d*|@\{\d+\})$")


@dataclass(frozen=True)
class Ref:
    transport: str | None      # None: the engine when one answers, else the embedded store
    location: str | None       # a directory or file for oci/archives, registry/repo for docker://
    name: str | None           # tag, image id, or @digest inside that store
    text: str = ""

    def store_key(self) -> tuple[str | None, str | None]:
        return self.transport, self.location


@dataclass(frozen=True)
class Rev:
    ref: Ref
    ops: tuple[tuple[str, int], ...] = ()
    text: str = ""


@dataclass(frozen=True)
class RangeSpec:
    left: Rev | None
    right: Rev
    text: str = ""


def format_ref(transport: str | None, location: str | None, name: str | None) -> str:
    if transport is None or transport == "embedded" and location is None:
        body = name or ""
        return body if transport is None else f"embedded:{body}"
    if transport == "docker-daemon":
        return f"docker-daemon:{name or ''}"
    if transport == "docker":
        return f"docker://{location}" + (name if name and name.startswith("@") else (f":{name}" if name else ""))
    return f"{transport}:{location}" + (f":{name}" if name else "")


def parse_ref(text: str) -> Ref:
    """Split a reference into transport, location and name (no revision suffixes)."""
    if not text or text.strip() != text:
        raise RefError(f"invalid reference {text!r}")
    head, sep, rest = text.partition(":")
    if sep and head in TRANSPORTS:
        if head == "docker":
            if not rest.startswith("//"):
                raise RefError(f"invalid registry reference {text!r}", hint="write docker://HOST/REPO[:TAG]")
            return _parse_registry(text, rest[2:])
        if head == "docker-daemon":
            if not rest:
                return Ref("docker-daemon", None, None, text)
            return Ref("docker-daemon", None, rest, text)
        if head == "embedded":
            return Ref("embedded", None, rest or None, text)
        # oci, docker-archive, oci-archive: PATH[:name]
        if not rest:
            raise RefError(f"{text!r} names no path", hint=f"write {head}:PATH[:TAG]")
        path, colon, name = rest.partition(":")
        if not path:
            raise RefError(f"{text!r} names no path", hint=f"write {head}:PATH[:TAG]")
        return Ref(head, path, name or None if colon else None, text)
    if sep and rest.startswith("//"):
        raise RefError(f"unknown transport {head!r} in {text!r}",
                       hint="use docker://, docker-daemon:, oci:, docker-archive:, oci-archive: or embedded:")
    if sep and head in _OTHER_SKOPEO:
        raise RefError(f"the {head!r} transport is not supported",
                       hint="use docker://, docker-daemon:, oci:, docker-archive:, oci-archive: or embedded:")
    if sep and rest.startswith("/") and "/" not in head:
        raise RefError(f"unknown transport {head!r} in {text!r}",
                       hint="use docker://, docker-daemon:, oci:, docker-archive:, oci-archive: or embedded:")
    return Ref(None, None, text, text)


def _parse_registry(text: str, body: str) -> Ref:
    if not body:
        raise RefError(f"invalid registry reference {text!r}", hint="write docker://HOST/REPO[:TAG]")
    name: str | None = None
    if "@" in body:
        body, _, digest = body.partition("@")
        name = "@" + digest
    else:
        slash = body.rfind("/")
        colon = body.rfind(":")
        if colon > slash:
            body, name = body[:colon], body[colon + 1:]
    return Ref("docker", body, name, text)


def parse_rev(text: str) -> Rev:
    ops: list[tuple[str, int]] = []
    body = text
    while True:
        m = _SUFFIX.search(body)
        if not m or m.start() == 0:
            break
        tok = m.group(1)
        body = body[: m.start()]
        if tok.startswith("~"):
            ops.append(("~", int(tok[1:]) if len(tok) > 1 else 1))
        elif tok.startswith("^"):
            n = int(tok[1:]) if len(tok) > 1 else 1
            if n > 1:
                raise RevisionError(f"{text!r}: a step has only one parent (^{n})", hint="use ~N to go N steps back")
            ops.append(("~", n))
        else:
            ops.append(("@", int(tok[2:-1])))
    ops.reverse()
    ref = parse_ref(body)
    return Rev(ref, tuple(ops), text)


def _split_range(text: str) -> tuple[str, str] | None:
    """Find the ``..`` of a range, ignoring ``..`` that starts or ends a path part (``../x``)."""
    i = text.find("..")
    while i >= 0:
        before = text[i - 1] if i > 0 else ""
        after = text[i + 2] if i + 2 < len(text) else ""
        if after == "" and before not in ("/", ":"):
            return text[:i], ""
        if i == 0 and after not in ("/", "."):
            return "", text[2:]
        if before not in ("", "/", ":") and after not in ("/", "."):
            return text[:i], text[i + 2:]
        i = text.find("..", i + 2)
    return None


def parse_range(text: str) -> RangeSpec:
    parts = _split_range(text)
    if parts is None:
        return RangeSpec(None, parse_rev(text), text)
    left, right = parts
    if not right:
        raise RevisionError(f"{text!r}: a range needs a right side", hint="write BASE..IMAGE")
    if not left:
        raise RevisionError(f"{text!r}: a range needs a left side", hint="write BASE..IMAGE")
    return RangeSpec(parse_rev(left), parse_rev(right), text)


@dataclass
class StoreSpec:
    transport: str | None
    location: str | None
    text: str = field(default="")


def parse_store(text: str | None) -> StoreSpec:
    """A store on its own (for ``ls``): ``oci:DIR``, ``docker-daemon:``, ``embedded:``, ..."""
    if not text:
        return StoreSpec(None, None, "")
    head, sep, rest = text.partition(":")
    if sep and head in TRANSPORTS:
        if head in ("docker-daemon", "embedded"):
            return StoreSpec(head, None, text)
        if head == "docker":
            return StoreSpec(head, rest.lstrip("/"), text)
        path = rest.partition(":")[0]
        if not path:
            raise RefError(f"{text!r} names no path", hint=f"write {head}:PATH")
        return StoreSpec(head, path, text)
    if sep and (head in _OTHER_SKOPEO or rest.startswith("//")):
        raise RefError(f"unknown transport {head!r}")
    raise RefError(f"{text!r} is not a store",
                   hint="name one as docker-daemon:, embedded:, oci:DIR, docker-archive:FILE, oci-archive:FILE "
                        "or docker://HOST/REPO")
