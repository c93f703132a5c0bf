"""Real registries with TLS + Basic auth (htpasswd) and with Bearer tokens from a token server."""

from __future__ import annotations

import base64
import json

import pytest

from imggit.errors import RegistryAuthError, RegistryError
from imggit.session import Session
from registry_helpers import oci_with_random, push_random, unique
from test_registry_cli import one_line

pytestmark = pytest.mark.registry


@pytest.fixture
def trust(tls_registry, monkeypatch):
    monkeypatch.setenv("IMGGIT_CERTS_D", tls_registry.certs_d)
    return tls_registry


# --- TLS + Basic -------------------------------------------------------------------------------


def test_tls_basic_push_pull_with_creds_flag(cli, home, trust, tmp_path, request):
    repo = unique(request)
    src = oci_with_random(tmp_path / "src", "app", "tls-basic")
    ref = f"docker://{trust.addr}/{repo}:1"
    r = cli("push", "--creds", "alice:s3cret", f"oci:{tmp_path / 'src'}:app", ref)
    assert r.code == 0 and r.out.strip() == src.image.id, r
    r = cli("pull", "--creds", "alice:s3cret", ref, f"oci:{tmp_path / 'dst'}")
    assert r.code == 0 and r.out.strip() == src.image.id, r


def test_tls_basic_creds_from_env_and_docker_config(cli, home, trust, tmp_path, monkeypatch, request):
    repo = unique(request)
    push_random(trust.addr, repo, "1", "env-creds", creds="alice:s3cret")
    ref = f"docker://{trust.addr}/{repo}:1"
    monkeypatch.setenv("IMGGIT_REGISTRY_AUTH", "alice:s3cret")
    assert cli("log", "--oneline", ref).code == 0
    monkeypatch.delenv("IMGGIT_REGISTRY_AUTH")
    cfg = tmp_path / "dockercfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps(
        {"auths": {trust.addr: {"auth": base64.b64encode(b"alice:s3cret").decode()}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    r = cli("log", "--oneline", ref)
    assert r.code == 0, r


def test_global_creds_and_tls_verify_reach_every_verb(cli, home, tls_registry, tmp_path, monkeypatch, request):
    """imggit --creds / --tls-verify before the verb: log, tag (registry-native) and extract use them."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    monkeypatch.setenv("IMGGIT_CERTS_D", tls_registry.certs_d)
    repo = unique(request)
    res = push_random(tls_registry.addr, repo, "1", "global-creds", creds="alice:s3cret")
    ref = f"docker://{tls_registry.addr}/{repo}:1"
    one_line(cli("log", "--oneline", ref), 4, "requires authentication")
    r = cli("--creds", "alice:s3cret", "log", "--oneline", ref)
    assert r.code == 0 and len(r.out.splitlines()) == len(res.image.steps), r
    r = cli("--creds", "alice", "show", ref, input="s3cret\n")          # the password is asked for
    assert r.code == 0 and res.image.id[7:19] in r.out, r
    one_line(cli("--creds", "alice:wrong", "show", ref), 4, "refused the credentials from --creds")
    r = cli("--creds", "alice:s3cret", "tag", ref + "~1", f"docker://{tls_registry.addr}/{repo}:below")
    assert r.code == 0, r
    r = cli("--creds", "alice:s3cret", "extract", ref, str(tmp_path / "x"))
    assert r.code == 0 and any((tmp_path / "x").iterdir()), r
    # an untrusted certificate, then verification turned off for the whole command
    monkeypatch.setenv("IMGGIT_CERTS_D", str(tmp_path / "empty-certs.d"))
    one_line(cli("--creds", "alice:s3cret", "log", ref), 4, "not trusted")
    r = cli("--creds", "alice:s3cret", "--tls-verify=false", "log", "--oneline", ref)
    assert r.code == 0, r


def test_tls_basic_refused_and_missing_credentials(cli, home, trust, request, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    repo = unique(request)
    push_random(trust.addr, repo, "1", "refused", creds="alice:s3cret")
    ref = f"docker://{trust.addr}/{repo}:1"
    one_line(cli("pull", "--creds", "alice:wrong", ref, "oci:" + str(tmp_path / "x")), 4,
             "refused the credentials from --creds", "hint: ")
    one_line(cli("pull", ref, "oci:" + str(tmp_path / "x")), 4, "requires authentication",
             "--creds USER:PASSWORD", "IMGGIT_REGISTRY_AUTH", "docker login")
    assert not (tmp_path / "x").exists() or not Session().store("oci", str(tmp_path / "x")).list_images()


def test_tls_untrusted_certificate_and_tls_verify_false(cli, home, tls_registry, request, monkeypatch, tmp_path):
    monkeypatch.setenv("IMGGIT_CERTS_D", str(tmp_path / "empty-certs.d"))
    repo = unique(request)
    ref = f"docker://{tls_registry.addr}/{repo}:1"
    one_line(cli("log", ref), 4, "not trusted", "certs.d", "--tls-verify=false")
    # verification off: talks TLS without checking (the error now is about the missing image)
    monkeypatch.setenv("IMGGIT_REGISTRY_AUTH", "alice:s3cret")
    one_line(cli("pull", "--tls-verify=false", ref, "oci:" + str(tmp_path / "x")), 2, "no repository")


def test_tls_registry_store_api(home, trust, request):
    repo = unique(request)
    res = push_random(trust.addr, repo, "1", "api", creds="alice:s3cret")
    s = Session()
    s.registry_options["creds"] = "alice:s3cret"
    st = s.store("docker", f"{trust.addr}/{repo}")
    assert st.get("1").id == res.image.id
    assert st.client.t.scheme == "https"


# --- Bearer tokens ------------------------------------------------------------------------------------


def test_token_push_pull_and_scopes(cli, home, token_registry, tmp_path, request):
    issuer = token_registry.issuer
    repo = unique(request)
    src = oci_with_random(tmp_path / "src", "app", "token")
    ref = f"docker://{token_registry.addr}/{repo}:1"
    start = len(issuer.log)
    r = cli("push", "--creds", "bob:hunter2", f"oci:{tmp_path / 'src'}:app", ref)
    assert r.code == 0, r
    log = issuer.log[start:]
    assert all(e["user"] == "bob" for e in log)
    assert any(f"repository:{repo}:pull,push" in e["scopes"] for e in log)
    assert len(log) <= 3, log          # tokens are cached, not fetched per request
    r = cli("pull", "--creds", "bob:hunter2", ref, f"oci:{tmp_path / 'dst'}")
    assert r.code == 0 and r.out.strip() == src.image.id, r


def test_token_refresh_when_the_registry_refuses_it(home, token_registry, request):
    issuer = token_registry.issuer
    repo = unique(request)
    res = push_random(token_registry.addr, repo, "1", "refresh", creds="bob:hunter2")
    issuer.expire_next = 1            # the next token is already expired: the registry answers 401
    start = len(issuer.log)
    s = Session()
    s.registry_options["creds"] = "bob:hunter2"
    img = s.store("docker", f"{token_registry.addr}/{repo}").get("1")
    assert img.id == res.image.id
    log = issuer.log[start:]
    assert log[0]["expired"] and not log[1]["expired"], log
    assert log[0]["scopes"] == log[1]["scopes"] == [f"repository:{repo}:pull"]


def test_token_cross_repo_mount_widens_scope(home, token_registry, request):
    issuer = token_registry.issuer
    repo = unique(request)
    res = push_random(token_registry.addr, repo, "1", "mount", creds="bob:hunter2")
    s = Session()
    s.registry_options["creds"] = "bob:hunter2"
    src = s.store("docker", f"{token_registry.addr}/{repo}")
    dst = s.store("docker", f"{token_registry.addr}/{repo}-2")
    start = len(issuer.log)
    from imggit.ops.copy import write_image

    out, sent = write_image(s, src, src.get("1"), dst, "1")
    assert out.image.id == res.image.id and sent == 0
    assert dst.pusher.mounted == 4 and dst.pusher.uploaded == 0     # 3 layers and the config
    scopes = [sc for e in issuer.log[start:] for sc in e["scopes"]]
    assert f"repository:{repo}:pull" in scopes and f"repository:{repo}-2:pull,push" in scopes, scopes


def test_token_anonymous_public_pull_and_refusals(cli, home, token_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    res = push_random(token_registry.addr, "pub/app", "1", "public", creds="bob:hunter2")
    r = cli("pull", "-q", f"docker://{token_registry.addr}/pub/app:1", f"oci:{tmp_path / 'dst'}")
    assert r.code == 0 and r.out.strip() == res.image.id, r
    # anonymous push is refused; the message says how to give credentials
    one_line(cli("push", f"oci:{tmp_path / 'dst'}:{token_registry.addr}/pub/app:1",
                 f"docker://{token_registry.addr}/pub/app:2"), 4, "requires authentication", "--creds")
    # wrong password: the token server refuses
    r = cli("pull", "--creds", "bob:wrong", f"docker://{token_registry.addr}/pub/app:1", f"oci:{tmp_path / 'x'}")
    one_line(r, 4, "refused", "--creds")


def test_errors_are_typed(home, token_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    s = Session()
    st = s.store("docker", f"{token_registry.addr}/private/app")
    with pytest.raises(RegistryAuthError) as e:
        st.get("1")
    assert e.value.status == 401 and isinstance(e.value, RegistryError)
