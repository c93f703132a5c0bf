"""Registry names: ``HOST/REPO``, Docker Hub's short forms, tags.

``busybox`` means ``docker.io/library/busybox`` and ``user/app`` means
``docker.io/user/app``, as ``docker pull`` reads them; the first component
is a host when it has a dot or a colon, or is ``localhost``. Docker Hub's
API lives at ``registry-1.docker.io``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import RefError, UsageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")

TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HOST_RE = re.compile(r"^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::[0-9]+)?$")
LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def canonical_host(host: str) -> str:
    """``index.docker.io`` and friends -> ``docker.io``; others unchanged (lowercased)."""
    h = host.lower()
    return DOCKER_HUB if h in _HUB_ALIASES else h


def hostname(host: str) -> str:
    """The host without its port: ``127.0.0.1:5000`` -> ``127.0.0.1``, ``[::1]:5000`` -> ``::1``."""
    if host.startswith("["):
        return host[1:host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    name = hostname(host)
    return name in LOOPBACK or name.startswith("127.")


@dataclass(frozen=True)
class RepoName:
    host: str      # canonical: "docker.io", "127.0.0.1:5000"
    repo: str      # "library/busybox"

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host

    def __str__(self) -> str:
        return f"{self.host}/{self.repo}"

    def short(self) -> str:
        """How ``docker`` prints it: ``busybox``, ``user/app``, ``host:5000/app``."""
        if self.host == DOCKER_HUB:
            return self.repo.removeprefix("library/")
        return str(self)

    def same_registry(self, other: "RepoName") -> bool:
        return self.host == other.host


def parse_repo(location: str) -> RepoName:
    """``HOST/REPO`` (or a Docker Hub short name) -> ``RepoName``; validated."""
    text = location.strip().strip("/")
    if not text:
        raise RefError("a registry reference needs a repository", hint="write docker://HOST/REPO[:TAG]")
    parts = text.split("/")
    if len(parts) == 1 and is_host(parts[0]) and (":" in parts[0] or parts[0] == "localhost"):
        raise RefError(f"{location!r} names a registry but no repository",
                       hint=f"write docker://{parts[0]}/REPO[:TAG]")
    if len(parts) > 1 and is_host(parts[0]):
        host, comps = canonical_host(parts[0]), parts[1:]
        if not _HOST_RE.match(parts[0]):
            raise RefError(f"invalid registry host {parts[0]!r} in {location!r}")
    else:
        host, comps = DOCKER_HUB, parts
    if host == DOCKER_HUB and len(comps) == 1:
        comps = ["library", *comps]
    bad = [c for c in comps if not _COMPONENT_RE.match(c)]
    if bad:
        raise RefError(f"invalid repository name {'/'.join(comps)!r} in {location!r}",
                       hint="repository names are lowercase letters, digits and separators (. _ __ -)")
    return RepoName(host, "/".join(comps))


def check_tag(tag: str) -> str:
    if not TAG_RE.match(tag):
        raise UsageError(f"invalid tag {tag!r}", hint="a tag is up to 128 letters, digits, '_', '.' or '-'")
    return tag


@dataclass(frozen=True)
class NameInStore:
    """What a name given to a registry store means: a tag, a digest, or an image id to search."""

    tag: str | None = None
    digest: str | None = None
    id_prefix: str | None = None
    repo: str | None = None     # a repository the name spelled out ("app" in "app:1"), if any


_HEX = re.compile(r"^(sha256:)?[0-9a-f]{4,64}$")


def split_name(name: str) -> NameInStore:
    """``1``, ``app:1``, ``host/app:1``, ``@sha256:..``, ``host/app@sha256:..``, ``sha256:..`` (an id)."""
    if "@" in name:
        repo, _, digest = name.partition("@")
        return NameInStore(digest=digest, repo=repo or None)
    if name.startswith("sha256:"):
        return NameInStore(id_prefix=name)
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return NameInStore(tag=name[colon + 1:], repo=name[:colon])
    if "/" in name:
        return NameInStore(tag="latest", repo=name)
    if _HEX.match(name):
        return NameInStore(tag=name, id_prefix=name)   # a tag first, then an id prefix
    return NameInStore(tag=name)


def repo_matches(given: str, actual: RepoName) -> bool:
    """Does a repository written by the user (``app``, ``x/app``, ``host/x/app``) name ``actual``?"""
    g = given.strip("/")
    full = str(actual)
    if g == full or g == actual.repo or g == actual.short():
        return True
    try:
        if str(parse_repo(g)) == full:
            return True
    except (RefError, UsageError):
        return False
    return full.endswith("/" + g)
