"""TLS settings per registry host, in Docker's ``certs.d`` layout.

``/etc/docker/certs.d/HOST:PORT/`` (or ``$IMGGIT_CERTS_D/HOST:PORT/``) may
hold CA certificates (``*.crt``), trusted in addition to the system's, and
a client certificate (``NAME.cert`` with ``NAME.key``). Verification is on
unless the user turns it off (``--tls-verify=false``).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import hashlib
import os
import tempfile
import threading
from typing import Any

DEFAULT_CERTS_D = "/etc/docker/certs.d"
_bundles: dict[str, str] = {}
_lock = threading.Lock()


def certs_root() -> str:
    return os.environ.get("IMGGIT_CERTS_D") or DEFAULT_CERTS_D


def host_dir(netloc: str) -> str | None:
    d = os.path.join(certs_root(), netloc)
    return d if os.path.isdir(d) else None


def _system_bundle() -> str | None:
    try:
        import certifi

        return str(certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with requests
        import ssl

        return ssl.get_default_verify_paths().cafile


def _bundle(cas: list[str]) -> str:
    """One PEM file with the system's CAs and these (requests takes a single file)."""
    h = hashlib.sha256()
    parts: list[bytes] = []
    sysb = _system_bundle()
    for path in ([sysb] if sysb else []) + cas:
        with open(path, "rb") as f:
            data = f.read()
        parts.append(data if data.endswith(b"\n") else data + b"\n")
        h.update(data)
    key = h.hexdigest()
    with _lock:
        if key in _bundles and os.path.exists(_bundles[key]):
            return _bundles[key]
        fd, path = tempfile.mkstemp(prefix="imggit-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as f:
            f.write(b"".join(parts))
        _bundles[key] = path
        atexit.register(_remove, path)
        return path


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


_settings: dict[tuple[str, str, bool], tuple[Any, tuple[bool | str, tuple[str, str] | None]]] = {}


def _stamp(d: str) -> Any:
    with os.scandir(d) as it:
        return tuple(sorted((e.name, e.stat().st_mtime_ns) for e in it))


def settings(netloc: str, verify: bool) -> tuple[bool | str, tuple[str, str] | None]:
    """(``verify`` argument, client ``cert`` pair) for requests to ``netloc`` (cached while
    the host's certs.d directory does not change)."""
    d = host_dir(netloc)
    if d is None:
        return verify, None
    key = (certs_root(), netloc, verify)
    stamp = _stamp(d)
    with _lock:
        hit = _settings.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    result = _compute(d, verify)
    with _lock:
        _settings[key] = (stamp, result)
    return result


def _compute(d: str, verify: bool) -> tuple[bool | str, tuple[str, str] | None]:
    cert = None
    for c in sorted(glob.glob(os.path.join(d, "*.cert"))):
        key = c[: -len(".cert")] + ".key"
        if os.path.exists(key):
            cert = (c, key)
            break
    if not verify:
        return False, cert
    cas = sorted(glob.glob(os.path.join(d, "*.crt")))
    return (_bundle(cas) if cas else True), cert
