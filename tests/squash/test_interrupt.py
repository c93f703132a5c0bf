"""A squash killed at any point leaves every store as it was: no tag moved, nothing half-written in view."""

from __future__ import annotations

import glob
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from imggit.layers import build as b
from imggit.session import Session
from imggit.validate import validate


def big_steps(n_layers: int = 4, mb: int = 40):
    rnd = random.Random(1)
    steps = [b.StepSpec("ADD base", b.make_layer([b.directory("base"), b.file("base/f", "base\n")]))]
    for i in range(n_layers):
        steps.append(b.StepSpec(f"RUN fetch {i}", b.make_layer([b.directory("data"),
                                                               b.file(f"data/blob{i}", rnd.randbytes(mb << 20))])))
    return steps


def run_and_kill(args: list[str], ready, env: dict[str, str], timeout: float = 120) -> int:
    p = subprocess.Popen([sys.executable, "-m", "imggit", *args], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if p.poll() is not None:
                pytest.fail(f"imggit finished before it could be killed: {p.stderr.read().decode()}")
            if ready():
                p.send_signal(signal.SIGKILL)
                return p.wait()
            time.sleep(0.01)
        pytest.fail("never reached the point to kill at")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return -1


def _merged_blob_growing(home: str) -> bool:
    for f in glob.glob(os.path.join(home, "tmp", "imggit-*", "merged.blob")):
        try:
            if os.path.getsize(f) > (10 << 20):
                return True
        except OSError:
            pass
    return False


def test_kill_during_the_write_into_an_oci_layout(tmp_path, home):
    layout = tmp_path / "l"
    st = Session().store("oci", str(layout), for_write=True)
    steps = big_steps()
    b.write_image(st, "base", steps[:1])
    b.write_image(st, "app", steps, compress=None)
    before_index = (layout / "index.json").read_bytes()
    before_app = st.get("app").id
    env = dict(os.environ)
    code = run_and_kill(["squash", f"oci:{layout}:base..oci:{layout}:app"], lambda: _merged_blob_growing(str(home)),
                        env)
    assert code == -signal.SIGKILL
    assert (layout / "index.json").read_bytes() == before_index       # no tag moved, no entry added
    st2 = Session().store("oci", str(layout))
    assert st2.get("app").id == before_app
    assert validate(st2, st2.get("app")).ok
    # and a second run completes normally
    r = subprocess.run([sys.executable, "-m", "imggit", "squash", f"oci:{layout}:base..oci:{layout}:app"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert Session().store("oci", str(layout)).get("app").id != before_app


@pytest.mark.engine
def test_kill_during_the_load_into_the_engine(with_engine, tmp_path, home):
    archive = tmp_path / "app.tar"
    st = Session().store("docker-archive", str(archive), for_write=True)
    steps = big_steps(3, 60)
    b.write_image(st, "kill/app:1", steps, family="docker")
    with_engine.docker("load", "-i", str(archive))
    b.write_image(Session().store("docker-archive", str(tmp_path / "base.tar"), for_write=True), "kill/base:1",
                  steps[:1], family="docker")
    with_engine.docker("load", "-i", str(tmp_path / "base.tar"))
    before = with_engine.image_id("kill/app:1")
    images_before = with_engine.docker("images", "-q", "-a").stdout.split()
    env = dict(os.environ)

    def loading() -> bool:
        # the merged layer is streamed straight into docker load: kill once the engine has started
        # receiving it (its temporary import directory exists)
        return bool(glob.glob(os.path.join(with_engine.dir, "root", "tmp", "docker-import-*")))

    code = run_and_kill(["squash", "kill/base:1..kill/app:1", "-t", "kill/app:1"], loading, env)
    assert code == -signal.SIGKILL
    time.sleep(1)
    assert with_engine.image_id("kill/app:1") == before
    assert sorted(with_engine.docker("images", "-q", "-a").stdout.split()) == sorted(images_before)
    from fsutil import listing_from_tar

    listing = listing_from_tar(with_engine.export_fs("kill/app:1"))
    assert "base/f" in listing and "data/blob2" in listing
