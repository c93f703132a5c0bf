"""The shape every user mistake must have: one line (plus an optional hint), an exit code, no traceback."""


def ok(r):
    """A command that must succeed, without a traceback; returns its result."""
    assert r.code == 0, r
    assert "Traceback" not in r.err, r.err
    return r


def one_line(r, code, *needles):
    assert r.code == code, r
    assert "Traceback" not in r.err and "internal error" not in r.err, r.err
    lines = [l for l in r.err.splitlines() if l.strip()]
    assert 1 <= len(lines) <= 2, r.err
    assert lines[0].startswith("imggit: error: "), r.err
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), r.err
    for n in needles:
        assert n in r.err, (n, r.err)
