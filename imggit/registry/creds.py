"""Where registry credentials come from, in order of precedence.

1. ``--creds USER:PASS`` on the command line;
2. ``IMGGIT_REGISTRY_AUTH=USER:PASS`` in the environment;
3. Docker's ``config.json`` (``$DOCKER_CONFIG`` or ``~/.docker``): a credential
   helper for the host (``credHelpers``), else the default store
   (``credsStore``), both run as ``docker-credential-<name> get``; else the
   inline ``auths`` entry (``auth`` = base64 ``user:pass``, or ``identitytoken``);
4. nothing: anonymous.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import UsageError
from .names import DOCKER_HUB, canonical_host


@dataclass(frozen=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    identity_token: str | None = None    # an OAuth2 refresh token (docker login to some registries)
    source: str = ""                     # where they came from, for messages

    def __repr__(self) -> str:  # never show secrets
        return f"Credentials(username={self.username!r}, source={self.source!r})"


def parse_user_pass(text: str, source: str) -> Credentials:
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise UsageError(f"{source} must be USER:PASSWORD")
    return Credentials(user, password, None, source)


def docker_config_path(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    base = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def _server_key(key: str) -> str:
    """An ``auths`` key (``https://index.docker.io/v1/``, ``host:5000``) -> canonical host."""
    k = key
    for prefix in ("https://", "http://"):
        if k.startswith(prefix):
            k = k[len(prefix):]
    return canonical_host(k.split("/", 1)[0])


def _helper_server(host: str) -> str:
    return "https://index.docker.io/v1/" if host == DOCKER_HUB else host


def run_helper(name: str, host: str) -> Credentials | None:
    """``docker-credential-<name> get`` for ``host``; None when it has nothing for it."""
    exe = f"docker-credential-{name}"
    try:
        p = subprocess.run([exe, "get"], input=_helper_server(host).encode(), capture_output=True, timeout=60)
    except FileNotFoundError:
        raise UsageError(f"the Docker config names credential helper {name!r} but {exe} is not installed",
                         hint=f"install {exe}, or give credentials with --creds USER:PASSWORD") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"credential helper {exe} did not answer within 60s") from None
    if p.returncode != 0:
        return None   # "credentials not found in native keychain"
    try:
        data = json.loads(p.stdout)
    except ValueError:
        raise UsageError(f"credential helper {exe} printed something that is not JSON") from None
    user, secret = data.get("Username") or "", data.get("Secret") or ""
    if not secret:
        return None
    if user == "<token>":
        return Credentials(None, None, secret, f"credential helper {exe}")
    return Credentials(user, secret, None, f"credential helper {exe}")


def _inline(entry: Mapping[str, Any], source: str) -> Credentials | None:
    if entry.get("identitytoken"):
        return Credentials(entry.get("username"), None, str(entry["identitytoken"]), source)
    if entry.get("auth"):
        try:
            text = base64.b64decode(str(entry["auth"])).decode()
        except ValueError:
            raise UsageError(f"{source}: the 'auth' value is not base64 of USER:PASSWORD") from None
        return parse_user_pass(text, source)
    if entry.get("username") and entry.get("password"):
        return Credentials(str(entry["username"]), str(entry["password"]), None, source)
    return None


def from_docker_config(host: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    path = docker_config_path(env)
    try:
        with open(path, "rb") as f:
            cfg = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the Docker config {path}: {e}") from None
    if not isinstance(cfg, dict):
        return None
    host = canonical_host(host)
    helpers = cfg.get("credHelpers") or {}
    for key, helper in helpers.items():
        if _server_key(key) == host:
            return run_helper(str(helper), host)
    entry = None
    for key, value in (cfg.get("auths") or {}).items():
        if _server_key(key) == host and isinstance(value, dict):
            entry = value
            break
    if cfg.get("credsStore"):
        found = run_helper(str(cfg["credsStore"]), host)
        if found is not None:
            return found
    if entry is not None:
        return _inline(entry, f"{path} (auths)")
    return None


def find(host: str, explicit: str | Credentials | None = None,
         env: Mapping[str, str] | None = None) -> Credentials | None:
    """The credentials to use for ``host``, or None for anonymous access."""
    env = os.environ if env is None else env
    if isinstance(explicit, Credentials):
        return explicit
    if explicit:
        return parse_user_pass(explicit, "--creds")
    if env.get("IMGGIT_REGISTRY_AUTH"):
        return parse_user_pass(env["IMGGIT_REGISTRY_AUTH"], "IMGGIT_REGISTRY_AUTH")
    return from_docker_config(host, env)


HINT = ("give credentials with --creds USER:PASSWORD, IMGGIT_REGISTRY_AUTH=USER:PASSWORD, "
        "or 'docker login {host}'")


def hint_for(host: str) -> str:
    return HINT.format(host=host)
