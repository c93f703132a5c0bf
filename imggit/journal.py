"""The journal: a bare git repository that records every tag imggit writes or moves.

Each image imggit writes is mirrored as a chain of commits, one per step
(message: the step's command; tree: ``step.json``; author date: the step's
``created``), so identical steps are identical commits and the git DAG *is*
the layer DAG. On top of an image's last step sits a *record* commit whose
tree holds ``image.json`` (store, tag, id, digest), the exact ``config``
bytes and the ``manifest`` bytes, enough to bring the image back.

Each tag is a ref ``refs/imggit/<store>/<tag>`` (escaped); git's own reflog
records every move with the command line, and ``refs/imggit-log`` collects
every move of every tag, so ``undo`` without a name takes the last one.

    git --git-dir ~/.local/share/imggit/journal.git log --graph --all --oneline
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, cast

from .config import home
from .errors import RefError, RevisionError
from .model import Image, Step, describe_command, short

if TYPE_CHECKING:
    import pygit2

    from .revisions import Rev
    from .session import Resolved, Session
    from .stores.base import Store

GLOBAL_LOG = "refs/imggit-log"
_SAFE = re.compile(r"[A-Za-z0-9_.\-]")


def journal_path() -> str:
    return os.path.join(home(), "journal.git")


def store_key(store: "Store") -> str:
    """A stable name for a store: ``engine``, ``embedded``, ``oci/<path>``, ``docker/<repo>``..."""
    t = store.transport
    if t == "docker-daemon":
        host = getattr(store, "host", "")
        return "engine" if host in ("", "unix:///var/run/docker.sock") else "engine/" + host
    label = getattr(store, "label", None)
    if t == "oci" and label:
        return "embedded"
    loc = getattr(store, "path", None) or getattr(store, "location", None) or ""
    return f"{t}/{loc.lstrip('/')}"


def _escape(text: str) -> str:
    out = []
    for ch in text:
        out.append(ch if _SAFE.match(ch) else "%" + "".join(f"{b:02X}" for b in ch.encode()))
    s = "".join(out)
    return s.replace("..", "%2E%2E").lstrip(".") or "%2E"


def ref_name(store: "Store", tag: str) -> str:
    key = "/".join(_escape(p) for p in store_key(store).split("/") if p)
    return f"refs/imggit/{key}/{_escape(tag)}"


def _time_of(created: str | None) -> int:
    from .render import parse_time

    t = parse_time(created)
    return int(t.timestamp()) if t is not None else 0


@dataclass
class Entry:
    """One move of a tag, newest first in ``reflog``."""

    ref: str
    n: int                     # @{n}
    old: dict[str, Any] | None  # image.json of the old value (None: the tag was created)
    new: dict[str, Any] | None
    message: str
    when: int


class Journal:
    def __init__(self, path: str | None = None) -> None:
        import pygit2

        self.path = path or journal_path()
        if not os.path.exists(os.path.join(self.path, "HEAD")):
            os.makedirs(self.path, exist_ok=True)
            repo = pygit2.init_repository(self.path, bare=True)
            repo.config["core.logAllRefUpdates"] = "always"
            repo.config["user.name"] = "imggit"
            repo.config["user.email"] = "imggit@localhost"
        self.repo: pygit2.Repository = pygit2.Repository(self.path)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        fd = os.open(os.path.join(self.path, "imggit.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # --- mirroring images as commits ----------------------------------------------------

    def _sig(self, when: int) -> "pygit2.Signature":
        import pygit2

        return pygit2.Signature("imggit", "imggit@localhost", when, 0)

    def _tree(self, files: dict[str, bytes]) -> Any:
        import pygit2

        tb = self.repo.TreeBuilder()
        for name, data in sorted(files.items()):
            tb.insert(name, self.repo.create_blob(data), pygit2.GIT_FILEMODE_BLOB)
        return tb.write()

    def mirror_steps(self, image: Image) -> Any:
        """Commits for every step of ``image`` (existing ones are reused); returns the last one's id."""
        parent = None
        for s in image.steps:
            parent = self._step_commit(s, parent)
        return parent

    def _step_commit(self, s: Step, parent: Any) -> Any:
        layer = None
        if s.layer is not None:
            layer = {"digest": s.layer.digest, "diff_id": s.layer.diff_id, "media_type": s.layer.media_type,
                     "size": s.layer.size}
        data = {"step_id": s.step_id, "chain_id": s.chain_id, "history": dict(s.history), "layer": layer}
        tree = self._tree({"step.json": json.dumps(data, indent=1, sort_keys=True).encode()})
        title = describe_command(s.created_by) or s.comment or "(no command)"
        msg = f"{title}\n\n{s.created_by}\n" if s.created_by and s.created_by != title else title + "\n"
        sig = self._sig(_time_of(s.created))
        return self.repo.create_commit(None, sig, sig, msg, tree, [parent] if parent is not None else [])

    def _record_commit(self, store: "Store", tag: str | None, image: Image, config_raw: bytes,
                       command: str) -> Any:
        tip = self.mirror_steps(image)
        info = {"store": store_key(store), "store_desc": store.describe(), "transport": store.transport,
                "location": getattr(store, "path", None) or getattr(store, "location", None),
                "tag": tag, "id": image.id, "digest": image.digest}
        files = {"image.json": json.dumps(info, indent=1, sort_keys=True).encode(), "config": config_raw}
        if image.manifest is not None:
            files["manifest"] = image.manifest.raw
        tree = self._tree(files)
        sig = self._sig(int(time.time()))
        msg = f"{tag or short(image.id)}: {short(image.id)}\n\n{command}\n"
        return self.repo.create_commit(None, sig, sig, msg, tree, [tip] if tip is not None else [])

    # --- recording moves -------------------------------------------------------------------

    def record(self, store: "Store", tag: str, image: Image, config_raw: bytes, command: str | None = None) -> str:
        """Record that ``tag`` in ``store`` now names ``image``. Call before moving the tag."""
        command = command or _command_line()
        with self._lock():
            commit = self._record_commit(store, tag, image, config_raw, command)
            name = ref_name(store, tag)
            message = f"{command}"[:500]
            try:
                ref = self.repo.lookup_reference(name)
                if ref.target != commit:
                    ref.set_target(commit, message)
            except KeyError:
                self.repo.create_reference_direct(name, commit, True, message=message)
            self._global(commit, f"{name} {message}")
        return name

    def note_existing(self, store: "Store", tag: str, image: Image, config_raw: bytes) -> None:
        """Remember where a tag points before imggit moves it, when the journal does not know that
        value yet (imggit never moved it, or something else moved it since): undo can go back there."""
        name = ref_name(store, tag)
        with self._lock():
            try:
                ref = self.repo.lookup_reference(name)
            except KeyError:
                ref = None
            if ref is not None:
                info = self._info(ref.target)
                if info is not None and info.get("id") == image.id:
                    return
            commit = self._record_commit(store, tag, image, config_raw, "(as found)")
            if ref is None:
                self.repo.create_reference_direct(name, commit, True, message="as found")
            else:
                ref.set_target(commit, "as found (moved outside imggit)")

    def forget(self, name: str, message: str) -> None:
        """Drop a tag's ref (the tag was removed); the global log records the removal."""
        with self._lock():
            try:
                ref = self.repo.lookup_reference(name)
            except KeyError:
                return
            target = ref.target
            info = dict(self._info(target) or {})
            info["removed"] = True
            tree = self._tree({"image.json": json.dumps(info, indent=1, sort_keys=True).encode()})
            sig = self._sig(int(time.time()))
            tomb = self.repo.create_commit(None, sig, sig, f"removed {name}\n\n{message}\n", tree, [target])
            ref.delete()
            self._global(tomb, f"{name} {message}")

    def _global(self, commit: Any, message: str) -> None:
        try:
            ref = self.repo.lookup_reference(GLOBAL_LOG)
            ref.set_target(commit, message)
        except KeyError:
            self.repo.create_reference_direct(GLOBAL_LOG, commit, True, message=message)

    # --- reading -----------------------------------------------------------------------------

    def _info(self, oid: Any) -> dict[str, Any] | None:
        if oid is None or str(oid) == "0" * 40:
            return None
        try:
            commit = self.repo[oid]
            return json.loads(cast("pygit2.Blob", commit.tree["image.json"]).data)
        except (KeyError, ValueError):
            return None

    def blobs(self, oid: Any) -> tuple[bytes, bytes | None]:
        commit = self.repo[oid]
        config = cast("pygit2.Blob", commit.tree["config"]).data
        manifest = cast("pygit2.Blob", commit.tree["manifest"]).data if "manifest" in commit.tree else None
        return config, manifest

    def reflog(self, name: str) -> list[Entry]:
        try:
            ref = self.repo.lookup_reference(name)
        except KeyError:
            return []
        out = []
        for n, e in enumerate(ref.log()):
            out.append(Entry(name, n, self._info(e.oid_old), self._info(e.oid_new), e.message or "",
                             e.committer.time))
        return out

    def reflog_oids(self, name: str) -> list[Any]:
        try:
            ref = self.repo.lookup_reference(name)
        except KeyError:
            return []
        return [e.oid_new for e in ref.log()]

    def moves(self) -> list[Entry]:
        """Every move of every tag, newest first."""
        out: list[Entry] = []
        try:
            ref = self.repo.lookup_reference(GLOBAL_LOG)
        except KeyError:
            return out
        for n, e in enumerate(ref.log()):
            refname, _, msg = (e.message or "").partition(" ")
            out.append(Entry(refname, n, None, self._info(e.oid_new), msg, e.committer.time))
        return out

    def refs(self) -> list[str]:
        return [r for r in self.repo.references if r.startswith("refs/imggit/")]

    def live_records(self, max_age: float) -> list[Any]:
        """Record commits of every tag's current value and of reflog entries younger than ``max_age`` s."""
        now = time.time()
        out = []
        names = self.refs()
        for name in names:
            out.append(self.repo.lookup_reference(name).target)
        for name in names + [GLOBAL_LOG]:
            try:
                ref = self.repo.lookup_reference(name)
            except KeyError:
                continue
            for e in ref.log():
                if now - e.committer.time <= max_age:
                    for oid in (e.oid_new, e.oid_old):
                        if str(oid) == "0" * 40:
                            continue
                        out.append(oid)
                        # a removal's tombstone: what it removed is still young
                        try:
                            c = cast("pygit2.Commit", self.repo[oid])
                            if c.parents and "config" not in c.tree:
                                out.append(c.parents[0].id)
                        except (KeyError, ValueError):
                            pass
        return out


def _command_line() -> str:
    args = [os.path.basename(sys.argv[0]) if sys.argv else "imggit"] + sys.argv[1:]
    if args and args[0] in ("__main__.py", "-m"):
        args[0] = "imggit"
    return " ".join(args)


def enabled() -> bool:
    return os.environ.get("IMGGIT_JOURNAL", "1") not in ("0", "false", "no")


def open_journal() -> Journal | None:
    if not enabled():
        return None
    return Journal()


# --- REF@{N} -------------------------------------------------------------------------------


def resolve_reflog(session: "Session", rev: "Rev", *, layers: bool = False) -> "Resolved":
    """``REF@{N}``: the image the tag named N moves ago (then any ``~N`` after it)."""
    from .session import _back, Resolved

    ops = list(rev.ops)
    i = next(k for k, (op, _) in enumerate(ops) if op == "@")
    n = ops[i][1]
    before, after = ops[:i], ops[i + 1:]
    if before:
        raise RevisionError(f"{rev.text!r}: @{{N}} goes right after the name (e.g. app:1@{{2}}~1)")
    store = session.store(rev.ref.transport, rev.ref.location) if rev.ref.transport else session.default_store()
    tag = rev.ref.name
    if not tag:
        raise RevisionError(f"{rev.text!r}: @{{N}} needs a tag")
    from .stores.archive import short_docker_name

    journal = Journal()
    candidates = [tag]
    with contextlib.suppress(Exception):
        candidates.append(short_docker_name(tag))
    oids: list[Any] = []
    for t in candidates:
        oids = journal.reflog_oids(ref_name(store, t))
        if oids:
            break
    if not oids:
        raise RevisionError(f"the journal has no record of {tag!r} in {store.describe()}",
                            hint="only tags that imggit wrote or moved have a reflog")
    if n >= len(oids):
        raise RevisionError(f"{rev.text!r}: the journal has only {len(oids)} value(s) of {tag!r} "
                            f"(@{{0}}..@{{{len(oids) - 1}}})")
    info = journal._info(oids[n])
    if info is None:
        raise RevisionError(f"{rev.text!r}: that journal entry has no image record")
    image = find_or_restore(session, store, journal, oids[n], info)
    upto = len(image.steps)
    for _op, k in after:
        upto = _back(image, upto, k, layers, rev.text)
    return Resolved(store, image, upto, rev.text, rev.ref)


def find_or_restore(session: "Session", store: "Store", journal: Journal, oid: Any, info: dict[str, Any]) -> Image:
    """The image a journal record names: from its store by id, else rebuilt from the recorded
    config and manifest when the store still has its blobs."""
    try:
        img = store.get(info["id"])
        if img.id == info["id"]:
            return img
    except RefError:
        pass
    config_raw, manifest_raw = journal.blobs(oid)
    from .model import Config, Manifest

    config = Config.parse(config_raw)
    manifest = Manifest.parse(manifest_raw) if manifest_raw else None
    img = Image.assemble(config, manifest, name=None, source=store.describe(), extra={"restored": True})
    missing = store.needed_layers(img.layers)
    if missing:
        raise RefError(f"image {short(info['id'])} is gone from {store.describe()} and {len(missing)} of its "
                       f"layer(s) too ({', '.join(short(img.layers[i].diff_id) for i in sorted(missing))})",
                       hint="copy it back from where it came from, or pick another @{N}")
    return img
