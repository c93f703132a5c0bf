from __future__ import annotations

import os
import sys

import pytest
from click.testing import CliRunner

sys.path.insert(0, os.path.dirname(__file__))

import rig  # noqa: E402


def _need(what: str, err: Exception) -> None:
    msg = f"{what} unavailable: {err}"
    if rig.CI:
        pytest.fail(f"{msg} (CI=true: the real components are required)", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def engine():
    """A private Docker engine for the whole session, with a busybox base image."""
    e = rig.Engine()
    try:
        e.start()
    except rig.Unavailable as err:
        e.stop()
        _need("Docker engine", err)
    try:
        e.import_busybox("busybox:base")
        yield e
    finally:
        e.stop()


@pytest.fixture(scope="session")
def registry():
    r = rig.Registry()
    try:
        r.start()
    except rig.Unavailable as err:
        r.stop()
        _need("registry", err)
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh $IMGGIT_HOME (embedded store, journal, cache) for one test; no engine in view."""
    h = tmp_path / "imggit-home"
    monkeypatch.setenv("IMGGIT_HOME", str(h))
    monkeypatch.setenv("DOCKER_HOST", "unix://" + str(tmp_path / "no-engine.sock"))
    from imggit.stores import daemon

    daemon._engine_cache.clear()
    return h


@pytest.fixture
def with_engine(engine, home, monkeypatch):
    """``home`` plus DOCKER_HOST pointing at the session engine."""
    monkeypatch.setenv("DOCKER_HOST", engine.host)
    from imggit.stores import daemon

    daemon._engine_cache.clear()
    return engine


class Cli:
    """Runs imggit in-process and returns (exit code, stdout, stderr)."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None):
        from imggit.cli import main

        res = self.runner.invoke(main, list(args), input=input, catch_exceptions=False)
        return Result(res.exit_code, res.stdout, res.stderr)


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def cli():
    return Cli()
