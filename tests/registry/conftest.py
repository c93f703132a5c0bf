"""Registries with TLS and auth, a fault-injecting proxy, and test images made of random layers."""

from __future__ import annotations

import pytest

import rig

from proxy import FaultProxy


def _need(what: str, err: Exception) -> None:
    msg = f"{what} unavailable: {err}"
    if rig.CI:
        pytest.fail(f"{msg} (CI=true: the real components are required)", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def ca():
    try:
        c = rig.CA()
    except rig.Unavailable as err:
        _need("openssl", err)
    yield c
    c.stop()


@pytest.fixture(scope="session")
def tls_registry(ca):
    """https with a certificate from ``ca``, Basic auth (htpasswd): alice / s3cret."""
    crt, key = ca.issue("registry")
    try:
        r = rig.Registry(tls=(crt, key), htpasswd=rig.htpasswd_line("alice", "s3cret"))
        r.start()
    except rig.Unavailable as err:
        _need("registry with TLS", err)
    r.certs_d = ca.certs_d(r.addr)
    yield r
    r.stop()


@pytest.fixture(scope="session")
def token_issuer(ca):
    t = rig.TokenIssuer(ca, {"bob": "hunter2"}, public=("pub/app",)).start()
    yield t
    t.stop()


@pytest.fixture(scope="session")
def token_registry(token_issuer):
    """Bearer tokens from ``token_issuer``: bob / hunter2 may do anything; anonymous may pull pub/app."""
    try:
        r = rig.Registry(token=token_issuer)
        r.start()
    except rig.Unavailable as err:
        _need("registry with token auth", err)
    r.issuer = token_issuer
    yield r
    r.stop()


@pytest.fixture
def proxy(registry):
    p = FaultProxy(registry.addr).start()
    yield p
    p.stop()


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setenv("IMGGIT_RETRY_BACKOFF", "0.02")
