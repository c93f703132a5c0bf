import pytest

from imggit.errors import RefError, RevisionError
from imggit.revisions import parse_range, parse_ref, parse_rev, parse_store


@pytest.mark.parametrize("text,transport,location,name", [
    ("app:1", None, None, "app:1"),
    ("localhost:5000/a/b:1", None, None, "localhost:5000/a/b:1"),
    ("docker-daemon:app:1", "docker-daemon", None, "app:1"),
    ("oci:/tmp/x:app", "oci", "/tmp/x", "app"),
    ("oci:../x", "oci", "../x", None),
    ("docker-archive:a.tar:app:1", "docker-archive", "a.tar", "app:1"),
    ("oci-archive:a.tar", "oci-archive", "a.tar", None),
    ("embedded:demo/app:1", "embedded", None, "demo/app:1"),
    ("docker://localhost:5000/a/b:1", "docker", "localhost:5000/a/b", "1"),
    ("docker://reg.io/x@sha256:ab", "docker", "reg.io/x", "@sha256:ab"),
    ("app@sha256:abc", None, None, "app@sha256:abc"),
])
def test_parse_ref(text, transport, location, name):
    r = parse_ref(text)
    assert (r.transport, r.location, r.name) == (transport, location, name)


@pytest.mark.parametrize("bad,msg", [
    ("dir:/x", "not supported"), ("http://x", "unknown transport"), ("foo:/abs", "unknown transport"),
    ("oci:", "no path"), ("docker:x", "registry reference"),
])
def test_parse_ref_errors(bad, msg):
    with pytest.raises(RefError, match=msg):
        parse_ref(bad)


def test_revision_suffixes():
    assert parse_rev("app:1~2").ops == (("~", 2),)
    assert parse_rev("app:1~").ops == (("~", 1),)
    assert parse_rev("app:1^^").ops == (("~", 1), ("~", 1))
    assert parse_rev("app:1@{3}").ops == (("@", 3),)
    assert parse_rev("oci:/x~y:t~1").ref.location == "/x~y"
    with pytest.raises(RevisionError, match="one parent"):
        parse_rev("app^2")


def test_ranges():
    r = parse_range("deb:12..app:1~1")
    assert r.left.ref.name == "deb:12" and r.right.ops == (("~", 1),)
    r = parse_range("oci:../d:a..oci:../d:b")
    assert r.left.ref.location == "../d" and r.right.ref.name == "b"
    assert parse_range("app").left is None
    with pytest.raises(RevisionError):
        parse_range("app..")


def test_parse_store():
    assert parse_store("oci:/x").location == "/x"
    assert parse_store("docker-daemon:").transport == "docker-daemon"
    assert parse_store(None).transport is None
    with pytest.raises(RefError, match="not a store"):
        parse_store("app:1")
