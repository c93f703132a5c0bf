"""pull, push, and docker:// through cp/log/show/ls against a real registry; bad input."""

from __future__ import annotations

import json

import pytest

import rig
from imggit.session import Session
from imggit.validate import validate
from oneline import one_line
from registry_helpers import oci_with_random, push_random, unique

pytestmark = pytest.mark.registry



def test_push_then_pull_round_trip(cli, home, registry, tmp_path, request):
    repo = unique(request)
    src = oci_with_random(tmp_path / "src", "app", "round-trip")
    ref = f"docker://{registry.addr}/{repo}:1"
    r = cli("push", f"oci:{tmp_path / 'src'}:app", ref)
    assert r.code == 0, r
    assert r.out.strip() == src.image.id
    assert "3 layer(s) uploaded" in r.err
    # again: nothing to send
    r = cli("push", f"oci:{tmp_path / 'src'}:app", ref)
    assert r.code == 0 and "0 layer(s) uploaded" in r.err, r
    # pull into a fresh layout: same image id and manifest digest
    r = cli("pull", ref, f"oci:{tmp_path / 'dst'}:got")
    assert r.code == 0, r
    assert r.out.strip() == src.image.id
    st = Session().store("oci", str(tmp_path / "dst"))
    img = st.get("got")
    assert img.id == src.image.id and img.digest == src.image.digest
    assert validate(st, img).ok
    # the default tag of a pull is the full name
    r = cli("pull", "-q", ref, f"oci:{tmp_path / 'dst2'}")
    assert r.code == 0 and r.err == "" and r.out.strip() == src.image.id
    tags = [t for t, _ in Session().store("oci", str(tmp_path / "dst2")).list_images()]
    assert tags == [f"{registry.addr}/{repo}:1"]


def test_pull_into_embedded_store_by_default(cli, home, registry, request):
    repo = unique(request)
    res = push_random(registry.addr, repo, "v1", "embedded")
    r = cli("pull", f"docker://{registry.addr}/{repo}:v1")     # no engine in view: the embedded store
    assert r.code == 0, r
    assert "embedded store" in r.err
    r = cli("log", "--oneline", f"embedded:{registry.addr}/{repo}:v1")
    assert r.code == 0 and "make part2" in r.out, r
    # pull by digest
    r = cli("pull", "-q", f"docker://{registry.addr}/{repo}@{res.image.digest}", "oci:" + str(home / "bydigest"))
    assert r.code == 0 and r.out.strip() == res.image.id, r


def test_log_show_ls_cp_over_docker_transport(cli, home, registry, tmp_path, request):
    repo = unique(request)
    res = push_random(registry.addr, repo, "1", "inspect")
    push_random(registry.addr, repo, "2", "inspect-2")
    ref = f"docker://{registry.addr}/{repo}:1"
    r = cli("log", "--oneline", ref)
    assert r.code == 0 and r.out.count("\n") == 4 and "make part0" in r.out, r
    r = cli("log", "--oneline", ref + "~1")
    assert r.code == 0 and r.out.count("\n") == 3, r
    r = cli("show", "--config", ref)
    assert r.code == 0 and json.loads(r.out)["config"]["Cmd"] == ["/bin/sh"]
    r = cli("show", "--manifest", ref)
    assert r.code == 0 and r.out.encode() == res.image.manifest.raw   # byte for byte, no newline added
    r = cli("show", ref)
    assert r.code == 0, r
    r = cli("ls", "-q", f"docker://{registry.addr}/{repo}")
    assert r.code == 0 and r.out.split() == [f"{registry.addr}/{repo}:1", f"{registry.addr}/{repo}:2"], r
    # cp between two repositories of the registry: blobs are mounted, not sent
    r = cli("cp", ref, f"docker://{registry.addr}/{repo}-copy:1")
    assert r.code == 0 and r.out.strip() == res.image.id, r
    assert "0 layer(s) written" in r.err, r
    # a past step of a registry image, by image id
    r = cli("log", "--oneline", f"docker://{registry.addr}/{repo}:{res.image.id[7:19]}")
    assert r.code == 0, r


def test_unknown_repo_and_tag_are_exit_2(cli, home, registry, request):
    repo = unique(request)
    one_line(cli("pull", f"docker://{registry.addr}/{repo}-none:1", "oci:" + str(home / "x")), 2,
             "no repository", f"{repo}-none")
    push_random(registry.addr, repo, "1", "unknown-tag")
    one_line(cli("pull", f"docker://{registry.addr}/{repo}:nope", "oci:" + str(home / "x")), 2,
             "no image 'nope'")
    one_line(cli("log", f"docker://{registry.addr}/{repo}:nope"), 2, "no image 'nope'")
    one_line(cli("log", f"docker://{registry.addr}/{repo}@sha256:" + "0" * 64), 2, "not found")
    one_line(cli("pull", f"docker://{registry.addr}/Bad_Name:1"), 2, "invalid repository name")
    one_line(cli("push", f"docker://{registry.addr}/{repo}:1", "oci:" + str(home / "y")), 2,
             "not a registry reference")


def test_unreachable_registry_is_exit_4(cli, home):
    port = rig.free_port()
    one_line(cli("pull", f"docker://127.0.0.1:{port}/app:1", "oci:" + str(home / "x")), 4,
             "cannot reach registry", f"127.0.0.1:{port}")
    one_line(cli("log", f"docker://127.0.0.1:{port}/app:1"), 4, "cannot reach registry")


def test_push_uses_the_source_tag(cli, home, registry, tmp_path, request):
    repo = unique(request)
    res = oci_with_random(tmp_path / "src", "app", "tagless")
    r = cli("push", f"oci:{tmp_path / 'src'}:app", f"docker://{registry.addr}/{repo}")
    assert r.code == 0 and "as app" in r.err, r
    assert Session().store("docker", f"{registry.addr}/{repo}").get("app").id == res.image.id


def test_a_name_of_another_repository_is_refused(cli, home, registry, tmp_path, request):
    """tag docker://reg/app:1 other:slim would land in reg/app as 'slim': say so instead."""
    repo = unique(request)
    push_random(registry.addr, repo, "1", "wrong-repo")
    r = cli("tag", f"docker://{registry.addr}/{repo}:1", "other:slim")
    assert r.code == 2 and "names repository other" in r.err and f"docker://{registry.addr}/other:slim" in r.err, r
    assert "Traceback" not in r.err
    r = cli("tag", f"docker://{registry.addr}/{repo}:1", f"{repo}:slim")   # its own repository: fine
    assert r.code == 0, r
