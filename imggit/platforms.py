"""Platform strings and picking one image out of an index (manifest list)."""

from __future__ import annotations

import os
import platform as _platform
from typing import Mapping, Sequence

from .errors import RefError, UsageError
from .model import Descriptor

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> str:
    env = os.environ.get("IMGGIT_PLATFORM")
    if env:
        return env
    machine = _platform.machine().lower()
    arch = _ARCH.get(machine, machine)
    if machine == "armv7l":
        return "linux/arm/v7"
    if machine == "armv6l":
        return "linux/arm/v6"
    return f"linux/{arch}"


def parse_platform(text: str) -> tuple[str, str, str | None]:
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"invalid platform {text!r}", hint="write it as os/arch[/variant], e.g. linux/amd64")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def is_attestation(desc: Descriptor) -> bool:
    p = desc.platform or {}
    if desc.annotations.get("vnd.docker.reference.type") == "attestation-manifest":
        return True
    return p.get("os") == "unknown" and p.get("architecture") == "unknown"


_DEFAULT_VARIANT = {"arm64": "v8", "amd64": "v1", "arm": "v7"}


def same_platform(a: tuple[str, str, str | None], b: tuple[str, str, str | None]) -> bool:
    """os/arch/variant equality where an absent variant means the architecture's default
    (linux/arm64 == linux/arm64/v8, linux/amd64 == linux/amd64/v1)."""
    def norm(p: tuple[str, str, str | None]) -> tuple[str, str, str]:
        os_, arch, var = p
        return os_, arch, var or _DEFAULT_VARIANT.get(arch, "")
    return norm(a) == norm(b)


def describe(p: Mapping[str, object] | None) -> str:
    if not p:
        return "?"
    s = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    if p.get("variant"):
        s += f"/{p['variant']}"
    return s


def select(manifests: Sequence[Descriptor], wanted: str | None, where: str) -> Descriptor:
    """The first entry matching the platform (default: this host's); attestations skipped."""
    want_os, want_arch, want_variant = parse_platform(wanted or host_platform())
    candidates = [d for d in manifests if not is_attestation(d)]
    for d in candidates:
        p = d.platform or {}
        if p.get("os") != want_os or p.get("architecture") != want_arch:
            continue
        if want_variant and p.get("variant") and p.get("variant") != want_variant:
            continue
        return d
    if len(candidates) == 1 and not candidates[0].platform:
        return candidates[0]
    have = ", ".join(describe(d.platform) for d in candidates) or "none"
    raise RefError(f"{where} has no image for platform {wanted or host_platform()} (it has: {have})",
                   hint="pick one with --platform os/arch[/variant]")
