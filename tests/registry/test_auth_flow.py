"""The auth flow driven by hand, without a network; credentials lookup; registry names."""

from __future__ import annotations

import base64
import json
import os
import stat
from urllib.parse import parse_qs, urlsplit

import pytest

from imggit.errors import RefError, RegistryAuthError, UsageError
from imggit.registry import creds
from imggit.registry.auth import Authenticator, Request, parse_challenges
from imggit.registry.names import parse_repo, repo_matches, split_name


class Resp:
    def __init__(self, status: int, headers: dict[str, str] | None = None, body: object = None) -> None:
        self.status_code = status
        self.headers = headers or {}
        self._body = body
        self.closed = False

    def json(self):
        if isinstance(self._body, (dict, list)):
            return self._body
        raise ValueError("not json")

    def close(self) -> None:
        self.closed = True


BEARER = 'Bearer realm="https://auth.example/token",service="reg.example",scope="repository:app:pull"'


def drive(flow, responses):
    """Send responses into a flow; return (requests it made, final response)."""
    sent = [next(flow)]
    for r in responses:
        try:
            sent.append(flow.send(r))
        except StopIteration as stop:
            return sent, stop.value
    raise AssertionError(f"the flow wanted more responses after {len(sent)} requests")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_parse_challenges():
    ch = parse_challenges(BEARER)
    assert len(ch) == 1 and ch[0].scheme == "bearer"
    assert ch[0].params == {"realm": "https://auth.example/token", "service": "reg.example",
                            "scope": "repository:app:pull"}
    both = parse_challenges('Basic realm="Registry Realm", Bearer realm="https://a/t",scope="x y",error="insufficient_scope"')
    assert [c.scheme for c in both] == ["basic", "bearer"]
    assert both[1].scopes == ["x", "y"] and both[1].params["error"] == "insufficient_scope"
    assert parse_challenges('Bearer realm="a\\"b"')[0].params["realm"] == 'a"b'
    assert parse_challenges("") == [] and parse_challenges(None) == []


def test_bearer_anonymous_flow_and_token_cache():
    clock = Clock()
    auth = Authenticator("reg.example", None, clock=clock)
    req = Request("GET", "https://reg.example/v2/app/manifests/1")
    token_resp = Resp(200, body={"token": "T1", "expires_in": 300})
    sent, final = drive(auth.flow(req, ["repository:app:pull"]),
                        [Resp(401, {"WWW-Authenticate": BEARER}), token_resp, Resp(200)])
    assert final.status_code == 200
    assert [r.method for r in sent] == ["GET", "GET", "GET"]
    q = parse_qs(urlsplit(sent[1].url).query)
    assert q == {"service": ["reg.example"], "scope": ["repository:app:pull"]}
    assert "Authorization" not in sent[1].headers                   # anonymous token request
    assert sent[2].headers["Authorization"] == "Bearer T1"
    # the next request goes out with the cached token at once
    sent2, final2 = drive(auth.flow(Request("GET", "https://reg.example/v2/app/blobs/x"),
                                    ["repository:app:pull"]), [Resp(200)])
    assert len(sent2) == 1 and sent2[0].headers["Authorization"] == "Bearer T1"
    # a push needs a wider token: fetched up front, with both actions
    sent3, _ = drive(auth.flow(Request("PUT", "https://reg.example/v2/app/manifests/1"),
                               ["repository:app:pull,push"]),
                     [Resp(200, body={"access_token": "T2"}), Resp(201)])
    assert parse_qs(urlsplit(sent3[0].url).query)["scope"] == ["repository:app:pull,push"]
    assert sent3[1].headers["Authorization"] == "Bearer T2"
    # expiry: after expires_in, a new token is fetched before the request
    clock.t += 400
    sent4, _ = drive(auth.flow(Request("GET", "https://reg.example/v2/app/manifests/1"),
                               ["repository:app:pull"]),
                     [Resp(200, body={"token": "T3", "expires_in": 300}), Resp(200)])
    assert sent4[1].headers["Authorization"] == "Bearer T3"


def test_bearer_refresh_on_401_and_scope_widening_for_mounts():
    auth = Authenticator("reg.example", creds.Credentials("bob", "pw", source="--creds"))
    drive(auth.flow(Request("GET", "https://reg.example/v2/"), []), [Resp(401, {"WWW-Authenticate": BEARER}),
                                                                     Resp(200, body={"token": "A"}), Resp(200)])
    # the registry refuses the cached token (expired early): one fresh token, then the answer
    scopes = ["repository:b:pull,push", "repository:a:pull"]
    sent, final = drive(auth.flow(Request("POST", "https://reg.example/v2/b/blobs/uploads/?mount=d&from=a"),
                                  scopes),
                        [Resp(200, body={"token": "B"}),           # up-front token for the new scopes
                         Resp(401, {"WWW-Authenticate": BEARER.replace("app:pull", "b:pull,push")
                                    + ',error="invalid_token"'}),
                         Resp(200, body={"token": "C"}), Resp(201)])
    assert final.status_code == 201
    token_reqs = [r for r in sent if r.url.startswith("https://auth.example/")]
    assert len(token_reqs) == 2
    for tr in token_reqs:
        got = parse_qs(urlsplit(tr.url).query)["scope"]
        assert "repository:a:pull" in got and "repository:b:pull,push" in got, got
        assert tr.headers["Authorization"] == "Basic " + base64.b64encode(b"bob:pw").decode()
    assert sent[-1].headers["Authorization"] == "Bearer C"
    # a second 401 with a fresh token is handed back (the caller reports it)
    sent, final = drive(auth.flow(Request("GET", "https://reg.example/v2/c/manifests/1"), ["repository:c:pull"]),
                        [Resp(200, body={"token": "D"}), Resp(401, {"WWW-Authenticate": BEARER}),
                         Resp(200, body={"token": "E"}), Resp(401, {"WWW-Authenticate": BEARER})])
    assert final.status_code == 401


def test_token_server_refusal_is_a_typed_error():
    auth = Authenticator("reg.example", creds.Credentials("bob", "bad", source="--creds"))
    flow = auth.flow(Request("GET", "https://reg.example/v2/app/manifests/1"), ["repository:app:pull"])
    next(flow)
    flow.send(Resp(401, {"WWW-Authenticate": BEARER}))
    with pytest.raises(RegistryAuthError) as e:
        flow.send(Resp(401))
    assert e.value.status == 401 and "--creds" in str(e.value)


def test_oauth2_refresh_token_is_posted():
    auth = Authenticator("reg.example", creds.Credentials(None, None, "REFRESH", source="config"))
    sent, final = drive(auth.flow(Request("GET", "https://reg.example/v2/app/tags/list"), ["repository:app:pull"]),
                        [Resp(401, {"WWW-Authenticate": BEARER}), Resp(200, body={"access_token": "X"}),
                         Resp(200)])
    assert sent[1].method == "POST"
    assert sent[1].form["grant_type"] == "refresh_token" and sent[1].form["refresh_token"] == "REFRESH"
    assert sent[1].form["scope"] == "repository:app:pull" and sent[1].form["service"] == "reg.example"
    assert sent[2].headers["Authorization"] == "Bearer X"


def test_basic_flow():
    auth = Authenticator("reg.example", creds.Credentials("alice", "s3cret", source="--creds"))
    basic = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    sent, final = drive(auth.flow(Request("GET", "https://reg.example/v2/"), []),
                        [Resp(401, {"WWW-Authenticate": 'Basic realm="r"'}), Resp(200)])
    assert final.status_code == 200 and sent[1].headers["Authorization"] == basic
    sent, _ = drive(auth.flow(Request("GET", "https://reg.example/v2/x/tags/list"), []), [Resp(200)])
    assert sent[0].headers["Authorization"] == basic                 # known now: sent up front
    # refused credentials: the 401 comes back, no loop
    sent, final = drive(auth.flow(Request("GET", "https://reg.example/v2/x/tags/list"), []),
                        [Resp(401, {"WWW-Authenticate": 'Basic realm="r"'})])
    assert final.status_code == 401 and len(sent) == 1
    # no credentials at all: the 401 comes back
    anon = Authenticator("reg.example", None)
    sent, final = drive(anon.flow(Request("GET", "https://reg.example/v2/"), []),
                        [Resp(401, {"WWW-Authenticate": 'Basic realm="r"'})])
    assert final.status_code == 401


# --- credentials ----------------------------------------------------------------------------


def test_credentials_precedence(tmp_path, monkeypatch):
    cfg = tmp_path / "docker"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:hubpw").decode()},
        "reg.example:5000": {"auth": base64.b64encode(b"cfg:cfgpw").decode()},
        "other.example": {"identitytoken": "TOK"}}}))
    env = {"DOCKER_CONFIG": str(cfg)}
    c = creds.find("reg.example:5000", env=env)
    assert (c.username, c.password) == ("cfg", "cfgpw") and "auths" in c.source
    assert creds.find("docker.io", env=env).username == "hub"
    assert creds.find("other.example", env=env).identity_token == "TOK"
    assert creds.find("nowhere.example", env=env) is None
    env2 = dict(env, IMGGIT_REGISTRY_AUTH="envu:envp")
    assert creds.find("reg.example:5000", env=env2).username == "envu"
    assert creds.find("reg.example:5000", "cli:clip", env=env2).username == "cli"
    with pytest.raises(UsageError):
        creds.find("reg.example:5000", "nopassword-colon-missing", env=env)
    assert "hubpw" not in repr(creds.find("docker.io", env=env))


def test_credential_helpers(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-fake"
    helper.write_text('#!/bin/sh\nread server\nif [ "$server" = "reg.example:5000" ]; then\n'
                      '  echo \'{"ServerURL":"reg.example:5000","Username":"helped","Secret":"pw"}\'\n'
                      'elif [ "$server" = "tok.example" ]; then\n'
                      '  echo \'{"ServerURL":"tok.example","Username":"<token>","Secret":"IDTOKEN"}\'\n'
                      'else echo "credentials not found in native keychain"; exit 1; fi\n')
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cfg = tmp_path / "docker"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"credsStore": "fake",
                                                 "credHelpers": {"special.example": "missing"},
                                                 "auths": {"inline.example": {"auth": base64.b64encode(b"i:p").decode()}}}))
    env = {"DOCKER_CONFIG": str(cfg)}
    c = creds.find("reg.example:5000", env=env)
    assert (c.username, c.password) == ("helped", "pw") and "docker-credential-fake" in c.source
    assert creds.find("tok.example", env=env).identity_token == "IDTOKEN"
    assert creds.find("unknown.example", env=env) is None
    assert creds.find("inline.example", env=env).username == "i"    # store has nothing: inline entry
    with pytest.raises(UsageError, match="not installed"):
        creds.find("special.example", env=env)


# --- names --------------------------------------------------------------------------------------


def test_names_expand_like_docker_pull():
    assert str(parse_repo("busybox")) == "docker.io/library/busybox"
    assert str(parse_repo("user/app")) == "docker.io/user/app"
    assert parse_repo("docker.io/busybox").repo == "library/busybox"
    assert parse_repo("index.docker.io/library/x").api_host == "registry-1.docker.io"
    r = parse_repo("127.0.0.1:5000/a/b")
    assert (r.host, r.repo, r.api_host) == ("127.0.0.1:5000", "a/b", "127.0.0.1:5000")
    assert parse_repo("localhost/app").host == "localhost"
    with pytest.raises(RefError):
        parse_repo("127.0.0.1:5000/Upper")
    assert split_name("1").tag == "1"
    assert split_name("host:5000/app:2").tag == "2" and split_name("host:5000/app:2").repo == "host:5000/app"
    assert split_name("@sha256:" + "a" * 64).digest == "sha256:" + "a" * 64
    assert split_name("sha256:abcd").id_prefix == "sha256:abcd"
    assert split_name("abcdef123456").id_prefix == "abcdef123456"
    assert repo_matches("contract/app", parse_repo("127.0.0.1:5/x/contract/app"))
    assert not repo_matches("contract/nope", parse_repo("127.0.0.1:5/x/contract/app"))
    assert repo_matches("busybox", parse_repo("busybox"))
