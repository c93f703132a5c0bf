"""diff, blame, waste: what is in the layers, and what they change."""

from __future__ import annotations

import difflib
import json

import click

from ..cli import CONTEXT, _ctx, main, out, style


def status_line(c, show_size: bool = True) -> str:  # type: ignore[no-untyped-def]
    from ..model import human_size

    color = {"A": "green", "D": "red", "M": "yellow", "T": "magenta"}[c.status]
    m = c.new if c.new is not None else c.old
    kind = "/" if m is not None and m.is_dir else ""
    text = f"{style(c.status, fg=color)}  /{c.path}{kind}"
    if show_size and m is not None and m.is_file:
        if c.status == "M" and c.old is not None and c.new is not None and c.old.is_file:
            text += f"  {human_size(c.old.size)} -> {human_size(c.new.size)}"
        else:
            text += f"  {human_size(m.size)}"
    elif show_size and m is not None and m.is_symlink:
        text += f" -> {m.linkname}"
    return text


def stat_lines(stat, width: int = 40, limit: int | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    from ..model import human_size

    files = stat.files
    if not files:
        return [" (no file changes)"]
    biggest = max((c.size for c in files), default=0) or 1
    plen = min(max(len(c.path) for c in files) + 1, 60)
    lines = []
    for c in files[:limit] if limit else files:
        bar = "+" if c.status != "D" else "-"
        n = max(1, round(width * c.size / biggest)) if c.size else 0
        path = "/" + c.path
        if len(path) > plen:
            path = "..." + path[-(plen - 3):]
        lines.append(f" {c.status} {path.ljust(plen)} | {human_size(c.size):>9} "
                     + style(bar * n, fg="green" if bar == "+" else "red"))
    if limit and len(files) > limit:
        lines.append(f" ... and {len(files) - limit} more")
    lines.append(f" {len(files)} file(s) changed: {stat.added} added, {stat.modified} modified, "
                 f"{stat.deleted} deleted" + (f", {stat.typechanged} type changed" if stat.typechanged else "")
                 + f" (+{human_size(stat.bytes_added)}, -{human_size(stat.bytes_deleted)})")
    return lines


def change_json(c) -> dict:  # type: ignore[no-untyped-def]
    def m(x):  # type: ignore[no-untyped-def]
        if x is None:
            return None
        return {"type": x.type, "size": x.size, "mode": x.mode & 0o7777, "uid": x.uid, "gid": x.gid,
                "mtime": x.mtime, "linkname": x.linkname or None}
    return {"status": c.status, "path": "/" + c.path, "old": m(c.old), "new": m(c.new)}


@main.command(context_settings=CONTEXT)
@click.argument("a")
@click.argument("b")
@click.argument("paths", nargs=-1, metavar="[-- PATH...]")
@click.option("--stat", "as_stat", is_flag=True, help="Per-file sizes and a summary.")
@click.option("--name-status", is_flag=True, help="Only status letters and paths.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("-p", "--patch", is_flag=True, help="Unified content diff of text files (under --max-size).")
@click.option("--max-size", type=int, default=1 << 20, show_default=True, help="Largest file -p compares.")
def diff(a: str, b: str, paths: tuple[str, ...], as_stat: bool, name_status: bool, as_json: bool, patch: bool,
         max_size: int) -> None:
    """File-level difference between two revisions or images.

    Compares the filesystems A and B make (type, size, mode, owner, mtime,
    link target, xattrs, content hash; -p shows the content diff). A: added
    in B, D: deleted,
    M: modified, T: type changed.

    \b
    Examples:
      imggit diff app:1~3 app:1
      imggit diff base:1 base:2 -- /etc
      imggit diff -p app:1 app:2 -- /etc/app.conf
    """
    from ..ops import files

    c = _ctx()
    res = files.diff(c.session, a, b, list(paths))
    if as_json:
        out(json.dumps({"a": res.a.text, "b": res.b.text, "changes": [change_json(x) for x in res.changes]},
                       indent=2))
        return
    if as_stat:
        from ..layers.fsview import Stat

        for line in stat_lines(Stat.of(res.changes)):
            out(line)
        return
    for ch in res.changes:
        out(status_line(ch, show_size=not name_status) if not name_status else f"{ch.status}\t/{ch.path}")
        if patch and ch.status in ("A", "M", "D"):
            sides = []
            too_big = False
            for r_, m_ in ((res.a, ch.old), (res.b, ch.new)):
                if m_ is None or not m_.is_file:
                    sides.append(b"")
                    continue
                e = files.view_of(r_)[ch.path]
                data = files.file_content(r_, e.layer, m_, max_size)
                if data is None:
                    too_big = True
                    data = b""
                sides.append(data)
            if too_big:
                out(f"    (not compared: larger than --max-size {max_size})")
                continue
            old, new = sides
            if b"\0" in old[:8192] or b"\0" in new[:8192]:
                out("    (binary files differ)")
                continue
            try:
                ta, tb = old.decode(), new.decode()
            except UnicodeDecodeError:
                out("    (binary files differ)")
                continue
            for line in difflib.unified_diff(ta.splitlines(), tb.splitlines(), f"a/{ch.path}", f"b/{ch.path}",
                                             lineterm=""):
                color = "green" if line.startswith("+") else "red" if line.startswith("-") else None
                out(style(line, fg=color) if color else line)


@main.command(context_settings=CONTEXT, short_help='The steps that wrote (or deleted) each path.')
@click.argument("ref")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
def blame(ref: str, paths: tuple[str, ...]) -> None:
    """For each path, the step that last wrote it and every step that wrote or deleted it.

    PATH may be a glob (quote it): '/etc/*.conf'.
    """
    from ..model import human_size, short
    from ..ops import files
    from ..render import step_text

    c = _ctx()
    r, results = files.blame(c.session, ref, list(paths))
    for b in results:
        if not b.events:
            out(f"{b.path}: no step of {r.text} writes it")
            continue
        last = b.last
        assert last is not None
        if b.exists:
            out(f"{b.path}: last written by step {last.step.index + 1} ({short(last.step.chain_id)}) "
                f"{step_text(last.step)}")
        else:
            out(f"{b.path}: deleted by step {last.step.index + 1} ({short(last.step.chain_id)}) "
                f"{step_text(last.step)}; earlier layers still ship it")
        for e in b.events:
            size = human_size(e.member.size) if e.member is not None and e.member.is_file and e.status != "D" else ""
            out(f"  step {e.step.index + 1:<3} {short(e.step.chain_id)}  {e.status}  {size:>9}  {step_text(e.step)}")


@main.command(context_settings=CONTEXT, short_help='Bytes an image ships that its filesystem cannot see.')
@click.argument("ref")
@click.option("--deleted", is_flag=True, help="List the files a later step deleted but the image still "
              "carries, with the step that added them (the leaked-secret case).")
@click.option("-n", "--top", type=int, default=10, show_default=True, help="How many paths to list.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def waste(ref: str, deleted: bool, top: int, as_json: bool) -> None:
    """Bytes an image ships that its final filesystem cannot see.

    A file version is wasted when a later step overwrites or deletes it:
    every pull still downloads it. Each version is counted once, in the
    layer that carries it. Also says what squashing the top steps would save.
    """
    from ..model import human_size
    from ..ops import files
    from ..render import step_text

    c = _ctx()
    res = files.waste(c.session, ref)
    r = res.resolved
    if as_json:
        out(json.dumps({
            "image": r.text, "total_file_bytes": res.total_file_bytes, "wasted_bytes": res.total,
            "per_step": {str(k + 1): v for k, v in sorted(res.per_step.items())},
            "squash_savings": [{"from_step": i + 1, "bytes": n} for i, n in res.squash_savings],
            "versions": [{"path": "/" + w.path, "step": w.step.index + 1, "size": w.size, "fate": w.fate,
                          "by_step": w.by.index + 1 if w.by else None} for w in res.wasted],
        }, indent=2))
        return
    if deleted:
        ds = sorted(res.deleted, key=lambda w: (w.step.index, w.path))
        if not ds:
            out(f"{r.text}: no deleted file is still carried")
            return
        out(f"{r.text}: {len(ds)} deleted file(s) still carried ({human_size(sum(w.size for w in ds))}):")
        for w in ds:
            by = w.by
            out(f"  /{w.path}  {human_size(w.size)}  added by step {w.step.index + 1} ({step_text(w.step)}), "
                f"deleted by step {by.index + 1 if by else '?'}")
        return
    pct = 100 * res.total / res.total_file_bytes if res.total_file_bytes else 0
    out(f"{r.text}: {human_size(res.total)} of {human_size(res.total_file_bytes)} of file content "
        f"({pct:.0f}%) is invisible in the final filesystem")
    if not res.wasted:
        return
    out("by step:")
    for idx, n in sorted(res.per_step.items(), key=lambda x: -x[1]):
        out(f"  step {idx + 1:<3} {human_size(n):>9}  {step_text(r.image.steps[idx])}")
    out("largest:")
    for w in sorted(res.wasted, key=lambda w: -w.size)[:top]:
        by_step = f" by step {w.by.index + 1}" if w.by else ""
        out(f"  {human_size(w.size):>9}  /{w.path}  (step {w.step.index + 1}, {w.fate}{by_step})")
    if res.squash_savings:
        out("squashing from a step to the top would save:")
        for idx, n in res.squash_savings:
            if n:
                back = len(r.steps) - idx
                cmd = f"imggit squash {r.text}" if idx == 0 else f"imggit squash {r.text}~{back}..{r.text}"
                out(f"  {human_size(n):>9}  {cmd}")
