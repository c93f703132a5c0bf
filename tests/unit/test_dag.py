from imggit import dag
from imggit.model import Layer, chain_ids
from imggit.model import Config, Image


def image(cmds, name):
    ds = ["sha256:" + f"{abs(hash(c)) % 10**60:064d}" for c in cmds]
    hist = [{"created_by": c, "created": f"2024-01-01T00:00:{i:02d}Z"} for i, c in enumerate(cmds)]
    cfg = Config.from_data({"rootfs": {"type": "layers", "diff_ids": ds}, "history": hist})
    ls = [Layer(d, c, d, "x", 1) for d, c in zip(ds, chain_ids(ds))]
    return name, Image.assemble(cfg, None, ls, name=name)


def test_shared_base_drawn_once():
    imgs = [image(["base", "a1", "a2"], "a"), image(["base", "b1"], "b")]
    g = dag.build(imgs)
    assert g.number_of_nodes() == 4
    lines = dag.render(g)
    nodes = [ln for ln in lines if ln.node]
    assert len(nodes) == 4
    text = "\n".join(ln.prefix + (g.nodes[ln.node]["step"].created_by if ln.node else "") for ln in lines)
    assert text.splitlines()[-2].rstrip() == "|/"
    assert text.splitlines()[-1].startswith("* base")
    assert dag.images_built_on(g, nodes[-1].node) == ["a", "b"]


def test_tag_in_the_middle_of_a_chain():
    imgs = [image(["base", "x", "y"], "top"), image(["base", "x"], "mid")]
    g = dag.build(imgs)
    lines = dag.render(g)
    assert all(ln.prefix.startswith("* ") for ln in lines)  # one straight line
    assert [ln.tags for ln in lines] == [["top"], ["mid"], []]


def test_unrelated_images_side_by_side():
    g = dag.build([image(["p"], "p"), image(["q", "q2"], "q")])
    assert len([ln for ln in dag.render(g) if ln.node]) == 3
