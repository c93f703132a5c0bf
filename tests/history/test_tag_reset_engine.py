"""``tag REF~N NAME`` and ``reset REF~N``: a past step as an image, against the real engine.

The classic builder keeps a parent image for every step, so a past step's
config is exact there: the result *is* that parent image. An image loaded
from an archive has no parents in the engine; then the tip's config is used
and every field a dropped step set is named (or ``--config-from``).
"""

from __future__ import annotations

import pytest
from oneline import one_line

from imggit.layers import build as b
from imggit.session import Session
from imggit.stores import daemon as daemon_mod
from imggit.stores.ocilayout import OCILayout

engine = pytest.mark.engine

APP = """FROM busybox:base
ENV STAGE={stage}
RUN mkdir /srv && echo one > /srv/one
LABEL tier=backend
RUN echo two > /srv/two
EXPOSE 8080
USER root
WORKDIR /srv
CMD ["cat", "/srv/one"]
"""
STEPS = 9          # busybox:base's one step + 8


def history_ids(e, ref: str) -> list[str]:
    """The engine's image for each step, newest first (``docker history``)."""
    return e.docker("history", "-q", "--no-trunc", ref).stdout.decode().split()


@pytest.fixture(scope="module")
def tr(engine):
    ids = {"app": engine.build("tr/app:1", APP.format(stage="app"))}
    # the same kind of image, but loaded from an archive: the engine has none of its parent images
    engine.build("tr/lone:1", APP.format(stage="lone"))
    archive = engine.dir + "/lone.tar"
    engine.docker("save", "-o", archive, "tr/lone:1")
    engine.docker("rmi", "tr/lone:1")
    engine.docker("load", "-i", archive)
    ids["lone"] = engine.image_id("tr/lone:1")
    assert history_ids(engine, "tr/lone:1")[1:] == ["<missing>"] * (STEPS - 1)
    return ids


def no_layer_bytes(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a layer was read or loaded")

    monkeypatch.setattr(daemon_mod.DockerDaemon, "_save_pass", boom)
    monkeypatch.setattr(daemon_mod.DockerDaemon, "_load", boom)


@engine
def test_tag_of_a_past_step_is_the_classic_builders_parent_image(tr, cli, with_engine, monkeypatch):
    e = with_engine
    parent = history_ids(e, "tr/app:1")[2]
    assert parent.startswith("sha256:")
    no_layer_bytes(monkeypatch)                      # a tag: metadata only
    r = cli("tag", "tr/app:1~2", "tr/app:past")
    assert r.code == 0, r
    assert "config: exact" in r.err and parent[7:19] in r.err, r.err
    assert r.out.strip() == parent
    assert e.image_id("tr/app:past") == parent     # same id: the same config, byte for byte
    assert e.inspect("tr/app:past")["Config"] == e.inspect(parent)["Config"]
    cfg = e.inspect("tr/app:past")["Config"]
    assert cfg["User"] == "root" and "8080/tcp" in cfg["ExposedPorts"]
    assert not cfg.get("WorkingDir") and cfg["Cmd"] == ["/bin/sh"]     # what the dropped steps set is gone
    assert e.run("tr/app:past", "cat", "/srv/one", "/srv/two") == "one\ntwo\n"
    assert "STAGE=app" in e.run("tr/app:past", "env").split()
    assert e.image_id("tr/app:1") == tr["app"]       # the source did not change


@engine
def test_tag_by_layers_and_by_id(tr, cli, with_engine):
    e = with_engine
    hist = history_ids(e, "tr/app:1")
    # --layers: ~1 is the step that carries the layer below the top one (RUN mkdir /srv), 6 steps back
    r = cli("tag", "--layers", "tr/app:1~1", "tr/app:onelayer")
    assert r.code == 0, r
    assert e.image_id("tr/app:onelayer") == hist[6]
    assert e.run("tr/app:onelayer", "ls", "/srv").split() == ["one"]
    # a revision named by image id
    r = cli("tag", tr["app"][7:19] + "~4", "tr/app:byid")
    assert r.code == 0, r
    assert e.image_id("tr/app:byid") == hist[4]


@engine
def test_tag_of_a_past_step_into_an_oci_layout_keeps_the_exact_config(tr, cli, with_engine, tmp_path):
    e = with_engine
    parent = history_ids(e, "tr/app:1")[2]
    r = cli("tag", "tr/app:1~2", f"oci:{tmp_path}/o:past")
    assert r.code == 0, r
    img = OCILayout(str(tmp_path / "o")).get("past")
    assert img.id == parent
    assert len(img.layers) == 3
    assert [l.diff_id for l in img.layers] == e.inspect(parent)["RootFS"]["Layers"]
    # and back into the engine under another name: the same image
    r = cli("cp", f"oci:{tmp_path}/o:past", "docker-daemon:tr/app:roundtrip")
    assert r.code == 0, r
    assert e.image_id("tr/app:roundtrip") == parent


@engine
def test_tag_of_a_past_step_without_a_parent_image_names_the_dropped_fields(tr, cli, with_engine):
    e = with_engine
    r = cli("tag", "tr/lone:1~2", "tr/lone:past")
    assert r.code == 0, r
    assert "warning:" in r.err
    lines = r.err.splitlines()
    assert any(l.split()[:3] == ["WorkingDir", "step", "8:"] and "WORKDIR /srv" in l for l in lines), r.err
    assert any(l.split()[:3] == ["Cmd", "step", "9:"] and "CMD" in l for l in lines), r.err
    assert not any(l.split()[:1] in (["User"], ["ExposedPorts"], ["Env"]) for l in lines), r.err
    assert "--config-from" in r.err
    info = e.inspect("tr/lone:past")
    assert info["RootFS"]["Layers"] == e.inspect("tr/lone:1")["RootFS"]["Layers"]   # no layer dropped by ~2
    assert info["Config"]["Cmd"] == ["cat", "/srv/one"]        # kept as the tip has it (and reported)
    assert info["Config"]["WorkingDir"] == "/srv"
    assert len(info["RootFS"]["Layers"]) == 3
    hist = e.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "tr/lone:past").stdout.decode()
    assert "WORKDIR" not in hist and "CMD" not in hist and "USER root" in hist
    assert e.run("tr/lone:past").strip() == "one"
    # further back, below a layer: the layers above are dropped too
    r = cli("tag", "tr/lone:1~5", "tr/lone:older")
    assert r.code == 0, r
    assert len(e.inspect("tr/lone:older")["RootFS"]["Layers"]) == 2
    assert e.run("tr/lone:older", "ls", "/srv").split() == ["one"]
    for field in ("ExposedPorts", "User", "WorkingDir", "Cmd"):
        assert any(l.split()[:1] == [field] for l in r.err.splitlines()), (field, r.err)
    # --config-from: the runtime config of another image
    r = cli("tag", "--config-from", "busybox:base", "tr/lone:1~2", "tr/lone:plain")
    assert r.code == 0, r
    assert "config: from the config of busybox:base" in r.err
    cfg = e.inspect("tr/lone:plain")["Config"]
    assert cfg["Cmd"] == ["/bin/sh"] and not cfg.get("WorkingDir") and not cfg.get("User")
    assert e.run("tr/lone:plain", "cat", "/srv/two").strip() == "two"


@engine
def test_reset_moves_the_tag_down_and_undo_restores_it(tr, cli, with_engine, monkeypatch):
    e = with_engine
    e.docker("tag", tr["app"], "tr/app:r")
    parent = history_ids(e, "tr/app:1")[2]
    no_layer_bytes(monkeypatch)
    r = cli("reset", "tr/app:r~2")
    assert r.code == 0, r
    assert f"tr/app:r: {tr['app'][7:19]} -> {parent[7:19]}" in r.err
    assert e.image_id("tr/app:r") == parent
    assert e.image_id("tr/app:1") == tr["app"]
    r = cli("reflog", "tr/app:r")
    assert r.code == 0, r
    assert [l.split()[1] for l in r.out.splitlines()] == [parent[7:19], tr["app"][7:19]]
    r = cli("undo", "tr/app:r")
    assert r.code == 0, r
    assert e.image_id("tr/app:r") == tr["app"]
    assert e.run("tr/app:r").strip() == "one"


@engine
def test_reset_without_a_parent_image_and_undo(tr, cli, with_engine):
    e = with_engine
    e.docker("tag", tr["lone"], "tr/lone:r")
    r = cli("reset", "tr/lone:r~1")
    assert r.code == 0, r
    assert "Cmd" in r.err and "warning:" in r.err
    new = e.image_id("tr/lone:r")
    assert new != tr["lone"] and e.run("tr/lone:r").strip() == "one"
    assert cli("undo", "tr/lone:r").code == 0
    assert e.image_id("tr/lone:r") == tr["lone"]
    assert cli("undo", "tr/lone:r").code == 0          # undo of the undo
    assert e.image_id("tr/lone:r") == new


@engine
def test_tag_moving_an_existing_name_and_undo(tr, cli, with_engine):
    e = with_engine
    e.docker("tag", tr["app"], "tr/app:mv")
    r = cli("tag", "tr/app:1~3", "tr/app:mv")
    assert r.code == 0, r
    assert f"(was {tr['app'][7:19]})" in r.err
    assert e.image_id("tr/app:mv") == history_ids(e, "tr/app:1")[3]
    assert cli("undo", "tr/app:mv").code == 0
    assert e.image_id("tr/app:mv") == tr["app"]


@engine
def test_user_mistakes_are_one_line_errors(tr, cli, with_engine):
    e = with_engine
    one_line(cli("reset", tr["app"] + "~1"), 2, "does not start from a tag")
    one_line(cli("reset", tr["app"][7:19] + "~1"), 2, "does not start from a tag")
    one_line(cli("reset", "tr/app:1"), 2, "already points")
    one_line(cli("reset", "tr/app:1~20"), 2, "past the first step")
    one_line(cli("reset", "tr/nothere:1~1"), 2, "tr/nothere:1")
    one_line(cli("tag", "tr/app:1~20", "tr/app:x"), 2, "past the first step")
    one_line(cli("tag", "tr/app:1~1", "tr/app:x~1"), 2, "revision suffix")
    assert e.image_id("tr/app:1") == tr["app"]
    assert e.docker("image", "inspect", "tr/app:x", check=False).returncode != 0


# --- OCI layouts (no engine) ---------------------------------------------------------------------


@pytest.fixture
def layout(tmp_path, home):
    st = Session().store("oci", str(tmp_path / "l"), for_write=True)
    base = [b.StepSpec("ADD rootfs", b.make_layer([b.file("etc/os", "1")])), b.StepSpec("ENV B=1", None)]
    b.write_image(st, "base", base, {"Env": ["B=1"], "Cmd": ["sh"]})
    b.write_image(st, "app", base + [
        b.StepSpec("RUN a", b.make_layer([b.file("a", "a")])),
        b.StepSpec("ENV A=1", None),
        b.StepSpec("USER app", None),
        b.StepSpec("RUN b", b.make_layer([b.file("b", "b")])),
        b.StepSpec('ENTRYPOINT ["/a"]', None),
        b.StepSpec("LABEL x=y", None),
    ], {"Env": ["B=1", "A=1"], "Cmd": ["sh"], "User": "app", "Entrypoint": ["/a"], "Labels": {"x": "y"}})
    return tmp_path / "l"


def test_oci_past_step_exact_from_a_tagged_image(cli, layout):
    st = OCILayout(str(layout))
    r = cli("tag", f"oci:{layout}:app~6", f"oci:{layout}:again")
    assert r.code == 0, r
    assert "config: from base" in r.err and "exactly these steps" in r.err
    assert st.get("again").id == st.get("base").id


def test_oci_past_step_from_the_tip_config(cli, layout):
    st = OCILayout(str(layout))
    r = cli("tag", f"oci:{layout}:app~2", f"oci:{layout}:mid")
    assert r.code == 0, r
    named = [l.split()[0] for l in r.err.splitlines() if l.startswith("  ")]
    assert named == ["Entrypoint", "Labels"], r.err
    mid = st.get("mid")
    assert len(mid.layers) == 3 and len(mid.steps) == 6
    assert mid.layers[-1].digest == st.get("app").layers[-1].digest
    assert mid.config.runtime["Entrypoint"] == ["/a"]
    r = cli("tag", "--config-from", f"oci:{layout}:base", f"oci:{layout}:app~2", f"oci:{layout}:mid2")
    assert r.code == 0, r
    assert st.get("mid2").config.runtime == st.get("base").config.runtime
    # reset in a layout, and undo
    old = st.get("app").id
    r = cli("reset", f"oci:{layout}:app~2")
    assert r.code == 0, r
    assert st.get("app").id == mid.id                  # the same image as the tag above: exact from it
    assert "config: from mid" in r.err and "exactly these steps" in r.err
    assert cli("undo", f"oci:{layout}:app").code == 0
    assert st.get("app").id == old
