"""Helpers for the benchmarks: a private engine, timing, peak RSS of child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import rig  # noqa: E402,F401  (re-exported for the bench scripts)

PY = sys.executable
BIN = os.path.dirname(PY)


def run(cmd: list[str], env: dict[str, str] | None = None, stdin=None, stdout=subprocess.DEVNULL,
        check: bool = True) -> tuple[float, int, int]:
    """Run a command; return (seconds, peak RSS in MB of the process itself, exit code)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {err[-2000:]}")
    return dt, usage.ru_maxrss // 1024, p.returncode


def imggit(*args: str, env: dict[str, str]) -> list[str]:
    return [PY, "-m", "imggit", *args]


def report(rows: list[tuple[str, str]]) -> None:
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k.ljust(w)}  {v}", flush=True)
