"""Round trips with the real engine, docker push, and skopeo."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import rig
from imggit.session import Session
from imggit.validate import validate
from registry_helpers import oci_with_random, unique

pytestmark = [pytest.mark.registry, pytest.mark.engine]

DOCKERFILE = """FROM busybox:base
RUN mkdir -p /app && echo {seed} > /app/seed && dd if=/dev/urandom of=/app/blob bs=1k count=300 2>/dev/null
ENV APP=1
RUN ln -s /app/seed /app/link && echo more > /app/more
CMD ["cat", "/app/seed"]
"""


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    if not shutil.which("skopeo"):
        if rig.CI:
            pytest.fail("skopeo is required under CI=true")
        pytest.skip("skopeo not installed")
    p = subprocess.run(["skopeo", *args], capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    return p


@pytest.fixture
def app(with_engine, request):
    tag = f"reginterop/{unique(request)}:1"
    image_id = with_engine.build(tag, DOCKERFILE.format(seed=request.node.name))
    return tag, image_id


def test_engine_push_pull_engine_same_image_id(cli, with_engine, registry, app, request):
    tag, image_id = app
    repo = unique(request)
    ref = f"docker://{registry.addr}/{repo}:1"
    r = cli("push", f"docker-daemon:{tag}", ref)
    assert r.code == 0 and r.out.strip() == image_id, r
    # pushed layers are gzip, in the docker media-type family, and validate
    st = Session().store("docker", f"{registry.addr}/{repo}")
    img = st.get("1")
    assert img.id == image_id
    assert all(l.media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip" for l in img.layers)
    assert validate(st, img).ok
    # a second push sends nothing (the diff ids are known to match the compressed blobs)
    r = cli("push", f"docker-daemon:{tag}", ref)
    assert r.code == 0 and "0 layer(s) uploaded" in r.err, r
    # remove it from the engine, pull it back: same image id, runs
    with_engine.docker("rmi", tag)
    r = cli("pull", ref, f"docker-daemon:{tag}")
    assert r.code == 0 and r.out.strip() == image_id, r
    assert with_engine.image_id(tag) == image_id
    assert with_engine.run(tag).strip() == request.node.name


def test_skopeo_copies_what_imggit_pushed(cli, home, registry, tmp_path, request):
    repo = unique(request)
    src = oci_with_random(tmp_path / "src", "app", "skopeo-reads")
    r = cli("push", f"oci:{tmp_path / 'src'}:app", f"docker://{registry.addr}/{repo}:1")
    assert r.code == 0, r
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.addr}/{repo}:1", f"oci:{tmp_path / 'sk'}:x")
    idx = json.loads((tmp_path / "sk" / "index.json").read_text())
    assert idx["manifests"][0]["digest"] == src.image.digest          # the manifest, byte for byte
    p = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{registry.addr}/{repo}:1")
    assert p.stdout == src.image.manifest.raw


def test_imggit_pulls_what_docker_push_pushed(cli, with_engine, registry, app, tmp_path, request):
    tag, image_id = app
    repo = unique(request)
    remote = f"{registry.addr}/{repo}:1"
    with_engine.docker("tag", tag, remote)
    with_engine.docker("push", remote)
    r = cli("pull", f"docker://{remote}", f"oci:{tmp_path / 'out'}:got")
    assert r.code == 0 and r.out.strip() == image_id, r
    st = Session().store("oci", str(tmp_path / "out"))
    assert validate(st, st.get("got")).ok
    r = cli("log", "--oneline", f"docker://{remote}")
    assert r.code == 0 and "CMD" in r.out, r


def test_imggit_pulls_what_skopeo_pushed(cli, home, registry, tmp_path, request):
    repo = unique(request)
    src = oci_with_random(tmp_path / "src", "app", "skopeo-writes")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:app", f"docker://{registry.addr}/{repo}:1")
    r = cli("pull", f"docker://{registry.addr}/{repo}:1", f"oci:{tmp_path / 'out'}:got")
    assert r.code == 0 and r.out.strip() == src.image.id, r
    st = Session().store("oci", str(tmp_path / "out"))
    assert validate(st, st.get("got")).ok


def test_multi_platform_index_picks_the_platform(cli, home, registry, tmp_path, request, monkeypatch):
    """An index (with an attestation entry) pushed by skopeo --all: imggit picks linux/amd64 or arm64."""
    import hashlib

    from imggit.layers import build as b

    repo = unique(request)
    lay = tmp_path / "multi"
    st = Session().store("oci", str(lay), for_write=True)
    amd = b.write_image(st, "amd", [b.StepSpec("amd", b.make_layer([b.file("arch", "amd64")]))], architecture="amd64")
    arm = b.write_image(st, "arm", [b.StepSpec("arm", b.make_layer([b.file("arch", "arm64")]))], architecture="arm64")
    att = b.write_image(st, "att", [b.StepSpec("att", b.make_layer([b.file("x", "attestation")]))],
                        architecture="unknown", os_name="unknown")
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": att.image.manifest.media_type, "digest": att.image.digest, "size": len(att.image.manifest.raw),
         "platform": {"os": "unknown", "architecture": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
        {"mediaType": arm.image.manifest.media_type, "digest": arm.image.digest, "size": len(arm.image.manifest.raw),
         "platform": {"os": "linux", "architecture": "arm64"}},
        {"mediaType": amd.image.manifest.media_type, "digest": amd.image.digest, "size": len(amd.image.manifest.raw),
         "platform": {"os": "linux", "architecture": "amd64"}}]}
    raw = json.dumps(index).encode()
    digest = st.put_bytes(raw)
    data = json.loads((lay / "index.json").read_text())
    data["manifests"] = [{"mediaType": index["mediaType"], "digest": digest, "size": len(raw),
                          "annotations": {"org.opencontainers.image.ref.name": "multi"}}]
    (lay / "index.json").write_text(json.dumps(data))
    assert hashlib.sha256(raw).hexdigest() == digest.split(":")[1]
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{lay}:multi", f"docker://{registry.addr}/{repo}:1")
    for platform, want in (("linux/amd64", amd), ("linux/arm64", arm)):
        monkeypatch.setenv("IMGGIT_PLATFORM", platform)
        r = cli("--platform", platform, "pull", "-q", f"docker://{registry.addr}/{repo}:1", f"oci:{tmp_path / platform.replace('/', '-')}")
        assert r.code == 0 and r.out.strip() == want.image.id, r
    r = cli("--platform", "linux/s390x", "log", f"docker://{registry.addr}/{repo}:1")
    assert r.code == 2 and "no image for platform linux/s390x" in r.err and "unknown" not in r.err.split("has:")[1], r
