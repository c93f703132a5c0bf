"""Where imggit keeps its things, and settings from the environment."""

from __future__ import annotations

import os


def home() -> str:
    """$IMGGIT_HOME, default ~/.local/share/imggit (XDG_DATA_HOME respected)."""
    h = os.environ.get("IMGGIT_HOME")
    if h:
        return os.path.abspath(os.path.expanduser(h))
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(xdg, "imggit")


def embedded_store_path() -> str:
    return os.path.join(home(), "store")


def cache_path(*parts: str) -> str:
    return os.path.join(home(), "cache", *parts)


def lock_timeout() -> float:
    try:
        return float(os.environ.get("IMGGIT_LOCK_TIMEOUT", "30"))
    except ValueError:
        return 30.0
