"""squash on OCI layouts and archives (no engine): history, ranges, reproducibility, bad input."""

from __future__ import annotations

import json
import os

import pytest

from imggit.layers import build as b
from imggit.session import Session
from imggit.validate import validate

from refapply import apply_all


def steps():
    return [
        b.StepSpec("ADD base", b.make_layer([b.directory("etc"), b.file("etc/passwd", "root\n"),
                                             b.file("etc/shadow", "secret\n", 0o600)])),
        b.StepSpec("ENV A=1", None),
        b.StepSpec("RUN build", b.make_layer([b.directory("app"), b.file("app/big", b"x" * 5000),
                                              b.file("app/tmp", b"t" * 3000)])),
        b.StepSpec("RUN rm tmp", b.make_layer([b.directory("app"), b.whiteout("app/tmp"),
                                               b.whiteout("etc/shadow")])),
        b.StepSpec("RUN chmod", b.make_layer([b.directory("app"), b.file("app/big", b"x" * 5000, 0o755)])),
        b.StepSpec("RUN top", b.make_layer([b.file("top", "top")])),
        b.StepSpec('CMD ["/app/big"]', None),
    ]


@pytest.fixture
def layout(tmp_path, home):
    st = Session().store("oci", str(tmp_path / "l"), for_write=True)
    b.write_image(st, "base", steps()[:2], {"Env": ["A=1"]})
    b.write_image(st, "app", steps(), {"Env": ["A=1"], "Cmd": ["/app/big"], "Labels": {"k": "v"}})
    return tmp_path / "l"


def fs(store, tag):
    img = store.get(tag)
    layers = []
    for i in range(len(img.layers)):
        from imggit.layers.compress import open_decompressed

        f = store.open_blob(img, i)
        layers.append(open_decompressed(f)[0].read())
    return apply_all(layers).listing(), img


def test_squash_above_base_keeps_fs_config_and_history(cli, layout):
    r = cli("squash", f"oci:{layout}:base..oci:{layout}:app", "-t", f"oci:{layout}:sq", "--timestamp", "0")
    assert r.code == 0, r
    st = Session().store("oci", str(layout))
    (want, _), orig = fs(st, "app")
    (got, _), new = fs(st, "sq")
    assert want == got
    assert validate(st, new).ok
    assert len(new.layers) == 2 and new.layers[0].digest == orig.layers[0].digest  # base blob untouched
    assert new.config.runtime == orig.config.runtime
    hist = new.config.history
    assert [h.get("created_by") for h in hist[:7]] == [h.get("created_by") for h in orig.config.history]
    assert all(h.get("empty_layer") for h in hist[2:7])
    assert hist[7]["created_by"].startswith("imggit squash") and "empty_layer" not in hist[7]
    assert hist[7]["created"] == "1970-01-01T00:00:00Z"
    # the whiteout of a base file is kept, the one of a range-only file dropped
    from imggit.layers import tarfmt
    from imggit.layers.compress import open_decompressed
    import io

    names = [m.path for m in tarfmt.TarReader(io.BytesIO(open_decompressed(st.open_blob(new, 1))[0].read()))]
    assert "etc/.wh.shadow" in names and "app/.wh.tmp" not in names and "app/tmp" not in names
    # the input image is unchanged and its tag did not move
    assert st.get("app").id == orig.id


def test_no_keep_history_and_message(cli, layout):
    r = cli("squash", f"oci:{layout}:app", "--no-keep-history", "-m", "flat!", "-t", f"oci:{layout}:flat")
    assert r.code == 0, r
    st = Session().store("oci", str(layout))
    img = st.get("flat")
    assert len(img.layers) == 1 and len(img.steps) == 1
    assert img.config.history[0]["comment"].startswith("flat!; merged [\"ADD base\"")


def test_middle_range_replays_the_steps_above(cli, layout):
    st = Session().store("oci", str(layout))
    orig = st.get("app")
    r = cli("squash", f"oci:{layout}:app~5..oci:{layout}:app~2", "-t", f"oci:{layout}:mid")
    assert r.code == 0, r
    (want, _), _ = fs(st, "app")
    (got, _), new = fs(st, "mid")
    assert want == got
    assert len(new.layers) == 3
    assert new.layers[-1].digest == orig.layers[-1].digest     # the step above: same blob
    assert new.layers[-1].diff_id == orig.layers[-1].diff_id
    assert new.layers[-1].chain_id != orig.layers[-1].chain_id  # on a new parent
    assert [s.created_by for s in new.steps][-2:] == ["RUN top", 'CMD ["/app/big"]']


def test_reproducible_with_source_date_epoch(cli, layout, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    ids = []
    for tag in ("r1", "r2"):
        r = cli("squash", f"oci:{layout}:base..oci:{layout}:app", "-t", f"oci:{layout}:{tag}")
        assert r.code == 0, r
        ids.append(r.out.strip())
    assert ids[0] == ids[1]
    st = Session().store("oci", str(layout))
    assert st.get("r1").digest == st.get("r2").digest


def test_tag_moves_without_t(cli, layout):
    st = Session().store("oci", str(layout))
    old = st.get("app").id
    r = cli("squash", f"oci:{layout}:base..oci:{layout}:app")
    assert r.code == 0, r
    assert st.get("app").id == r.out.strip() != old
    assert old[7:19] in r.err
    assert st.get(old).id == old     # still reachable by id


def test_dry_run_writes_nothing(cli, layout):
    before = json.load(open(layout / "index.json"))
    nblobs = len(os.listdir(layout / "blobs" / "sha256"))
    r = cli("squash", "-n", f"oci:{layout}:base..oci:{layout}:app")
    assert r.code == 0, r
    assert "would squash" in r.out and "dropped: 8.0 kB" in r.out and "/app/tmp" in r.out
    assert json.load(open(layout / "index.json")) == before
    assert len(os.listdir(layout / "blobs" / "sha256")) == nblobs


def test_nothing_to_do(cli, layout):
    r = cli("squash", f"oci:{layout}:app~1..oci:{layout}:app")
    assert r.code == 0 and "nothing to squash" in r.err and ("carry no layer" in r.err or "carries no layer" in r.err)
    r = cli("squash", f"oci:{layout}:app~2..oci:{layout}:app")
    assert r.code == 0 and "single layer" in r.err


def test_into_other_stores(cli, layout, tmp_path):
    for dst in (f"docker-archive:{tmp_path}/a.tar:app:sq", f"oci-archive:{tmp_path}/o.tar:sq",
                f"oci:{tmp_path}/other:sq"):
        r = cli("squash", f"oci:{layout}:base..oci:{layout}:app", "-t", dst)
        assert r.code == 0, (dst, r)
    s = Session()
    for ref in (f"docker-archive:{tmp_path}/a.tar", f"oci-archive:{tmp_path}/o.tar", f"oci:{tmp_path}/other"):
        from imggit.revisions import parse_ref

        pr = parse_ref(ref)
        st = s.store(pr.transport, pr.location)
        img = st.get(None)
        assert validate(st, img).ok, ref


def test_compression_choices(cli, layout):
    for codec, mt in (("zstd", "+zstd"), ("none", "layer.v1.tar"), ("gzip", "+gzip")):
        r = cli("squash", f"oci:{layout}:base..oci:{layout}:app", "-t", f"oci:{layout}:c-{codec}",
                "--compress", codec)
        assert r.code == 0, r
        st = Session().store("oci", str(layout))
        img = st.get(f"c-{codec}")
        assert img.layers[1].media_type.endswith(mt)
        assert img.layers[0].digest == st.get("app").layers[0].digest   # never recompressed
        assert validate(st, img).ok


def test_bad_ranges(cli, layout, tmp_path):
    st = Session().store("oci", str(layout))
    b.write_image(st, "other", [b.StepSpec("x", b.make_layer([b.file("x", "x")]))])
    r = cli("squash", f"oci:{layout}:other..oci:{layout}:app")
    assert r.code == 2 and "not an ancestor" in r.err
    r = cli("squash", f"oci:{layout}:app~9..oci:{layout}:app")
    assert r.code == 2 and "past the first step" in r.err


def test_corrupt_layer_stops_before_any_tag_moves(cli, layout):
    st = Session().store("oci", str(layout))
    img = st.get("app")
    path = st.blob_file(img.layers[2].digest)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x55
    open(path, "wb").write(bytes(data))
    before = json.load(open(layout / "index.json"))
    r = cli("squash", f"oci:{layout}:base..oci:{layout}:app")
    assert r.code == 3, r
    assert "layer 2" in r.err
    assert json.load(open(layout / "index.json")) == before
