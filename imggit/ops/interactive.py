"""``rebase -i BASE IMAGE``: reorder, drop, squash, reword the steps above BASE.

The todo list is text, one line per step, like git's:

    pick   3f2a1b2c3d4e RUN apt-get update
    squash 9a8b7c6d5e4f RUN apt-get install -y curl
    drop   1b2c3d4e5f6a RUN rm -rf /tmp/build
    reword 5f6e7d8c9b0a COPY app /app   (the rest of the line becomes the step's command)

``parse_todo`` and ``plan_todo`` are pure; ``run`` merges the layers of
squashed groups with the tar engine and keeps every other layer's blob.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, cast

from ..errors import NothingToDo, UsageError
from ..layers import fetch
from ..layers import index as lindex
from ..layers import merge
from ..layers.fsview import FsView
from ..model import Config, Layer, Step, describe_command, short
from ..session import Resolved, Session, range_start
from ..stores.base import WriteResult, tmpdir
from .truncate import Dropped, fields_set_by

ACTIONS = {"p": "pick", "pick": "pick", "r": "reword", "reword": "reword", "s": "squash", "squash": "squash",
           "f": "fixup", "fixup": "fixup", "d": "drop", "drop": "drop"}


@dataclass
class TodoLine:
    action: str
    step: Step
    text: str           # reword: the new command
    lineno: int


def todo_text(r: Resolved, start: int, base_text: str) -> str:
    steps = r.steps[start:]
    lines = [f"# rebase {len(steps)} step(s) of {r.text} above {base_text}",
             "#",
             "#  p, pick <step>          keep the step",
             "#  r, reword <step> <text> keep it, with <text> as its command (created_by)",
             "#  s, squash <step>        merge its layer into the step above it in this list;",
             "#                          its history entry stays, empty",
             "#  f, fixup <step>         like squash, and its history entry goes",
             "#  d, drop <step>          remove the step (removing its line does too)",
             "#",
             "# Lines run top to bottom, oldest first; reorder them to reorder the steps.",
             ""]
    for s in steps:
        text = describe_command(s.created_by) or s.comment or "(no command)"
        lines.append(f"pick {short(s.step_id)} {text}")
    return "\n".join(lines) + "\n"


_LINE = re.compile(r"^(\S+)\s+(\S+)(?:\s+(.*))?$")


def parse_todo(text: str, steps: list[Step]) -> list[TodoLine]:
    out: list[TodoLine] = []
    seen: set[str] = set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise UsageError(f"todo line {n}: {line!r} is not ACTION STEP [TEXT]")
        action, ident, rest = m.group(1).lower(), m.group(2).lower(), (m.group(3) or "").strip()
        if action not in ACTIONS:
            raise UsageError(f"todo line {n}: unknown action {m.group(1)!r}",
                             hint="use pick, reword, squash, fixup or drop")
        step = _find(ident, steps, n)
        if step.step_id in seen:
            raise UsageError(f"todo line {n}: step {ident} is listed twice")
        seen.add(step.step_id)
        act = ACTIONS[action]
        if act == "reword" and not rest:
            raise UsageError(f"todo line {n}: reword needs the new command after the step id")
        out.append(TodoLine(act, step, rest, n))
    first = next((t for t in out if t.action != "drop"), None)
    if first is not None and first.action in ("squash", "fixup"):
        raise UsageError(f"todo line {first.lineno}: cannot {first.action} the first step: there is no "
                         "step before it to merge into", hint="make it a pick")
    return out


def _find(ident: str, steps: list[Step], n: int) -> Step:
    ident = ident.removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{4,64}", ident):
        raise UsageError(f"todo line {n}: {ident!r} is not a step id")
    found = [s for s in steps if s.step_id[7:].startswith(ident)]
    if not found:
        found = [s for s in steps if s.chain_id and s.layer is not None and s.chain_id[7:].startswith(ident)]
    if not found:
        raise UsageError(f"todo line {n}: no step {ident} above the base", hint="take the ids from the todo list")
    if len(found) > 1:
        raise UsageError(f"todo line {n}: step id {ident} is ambiguous; give more digits")
    return found[0]


@dataclass
class Group:
    lead: TodoLine
    followers: list[TodoLine] = field(default_factory=list)

    @property
    def steps(self) -> list[TodoLine]:
        return [self.lead, *self.followers]

    @property
    def layer_steps(self) -> list[Step]:
        return [t.step for t in self.steps if t.step.layer is not None]


@dataclass
class TodoPlan:
    groups: list[Group]
    dropped: list[Step]
    warnings: list[str]
    config_dropped: list[Dropped]


def plan_todo(lines: list[TodoLine], steps: list[Step], touched: dict[int, set[str]]) -> TodoPlan:
    """Group the lines, and warn where a dropped or moved step's paths are touched by a later step.

    ``touched`` maps a step index to the paths its layer writes or deletes.
    """
    groups: list[Group] = []
    for t in lines:
        if t.action == "drop":
            continue
        if t.action in ("squash", "fixup"):
            groups[-1].followers.append(t)
        else:
            groups.append(Group(t))
    listed = {t.step.step_id for t in lines if t.action != "drop"}
    dropped = [s for s in steps if s.step_id not in listed]
    warnings = []
    order = [t.step for g in groups for t in g.steps]
    pos = {s.step_id: i for i, s in enumerate(order)}
    for s in dropped:
        mine = touched.get(s.index, set())
        for later in steps[s.index - steps[0].index + 1:]:
            if later.step_id in listed:
                common = mine & touched.get(later.index, set())
                if common:
                    warnings.append(f"dropped step {s.index + 1} ({describe_command(s.created_by)[:40]}) wrote "
                                    f"{_few(common)}, which step {later.index + 1} also touches: it may depend on it")
    kept = [s for s in steps if s.step_id in listed]
    for a in kept:
        for b in kept:
            if a.index < b.index and pos[a.step_id] > pos[b.step_id]:
                common = touched.get(a.index, set()) & touched.get(b.index, set())
                if common:
                    warnings.append(f"step {a.index + 1} now comes after step {b.index + 1}; both touch "
                                    f"{_few(common)}: the later one wins")
    return TodoPlan(groups, dropped, warnings, fields_set_by(dropped))


def _few(paths: set[str]) -> str:
    ps = sorted("/" + p for p in paths)
    return ", ".join(ps[:3]) + (f" and {len(ps) - 3} more" if len(ps) > 3 else "")


@dataclass
class InteractiveResult:
    source: Resolved
    plan: TodoPlan
    dest: object = None
    tag: str | None = None
    result: WriteResult | None = None


def run(session: Session, base: str, image: str, todo: str | None, *, tag: str | None = None,
        dry_run: bool = False, compress: str | None = "auto", level: int | None = None,
        edit=None, on_plan=None) -> InteractiveResult:  # type: ignore[no-untyped-def]
    from .surgery import NewLayer, _codec, _destination, _needed, write_blob, write_rewritten

    from ..session import check_ancestor

    left, r = session.resolve(base), session.resolve(image)
    check_ancestor(left, r)
    if not r.is_tip:
        raise UsageError(f"{image!r} is a past step; rebase -i rewrites an image")
    start = range_start(left, r)
    steps = list(r.steps[start:])
    if not steps:
        raise UsageError(f"{image!r} has no step above {base!r}")
    if todo is None:
        text = todo_text(r, start, left.text)
        todo = edit(text) if edit is not None else None
        if todo is None or todo == text:
            raise NothingToDo("the todo list is unchanged: nothing to do")
    lines = parse_todo(todo, steps)
    if not lines:
        raise NothingToDo("the todo list is empty: nothing done (to drop every step, list them with drop)")
    idx = lindex.index_layers(r.store, r.image, range(r.nlayers))
    touched: dict[int, set[str]] = {}
    v = FsView()
    for s in r.steps:
        if s.layer_index is not None:
            ch = v.apply(idx[s.layer_index], s.layer_index)
            touched[s.index] = {c.path for c in ch if not (c.new is not None and c.new.is_dir)}
    plan = plan_todo(lines, steps, touched)
    res = InteractiveResult(r, plan)
    if on_plan is not None:
        on_plan(plan)   # warnings go out before anything is written
    if dry_run:
        return res
    dst, name = _destination(session, r, tag)
    res.dest, res.tag = dst, name
    codec = _codec(dst, compress)
    family = "oci" if codec == "zstd" or r.image.manifest is None else r.image.manifest.family
    nbase = sum(1 for s in r.steps[:start] if s.layer is not None)
    layers: list[Layer | NewLayer] = list(r.image.layers[:nbase])
    old_index: list[int | None] = list(range(nbase))
    merges: list[tuple[int, list[int]]] = []   # position in layers -> old layer indices merged there
    history = [dict(s.history) for s in r.steps[:start]]
    for g in plan.groups:
        ls = cast("list[int]", [s.layer_index for s in g.layer_steps])   # steps with a layer: never None
        lead = dict(g.lead.step.history)
        if g.lead.action == "reword":
            lead["created_by"] = g.lead.text
        if ls:
            lead.pop("empty_layer", None)
            if len(ls) == 1:
                layers.append(r.image.layers[ls[0]])
                old_index.append(ls[0])
            else:
                merges.append((len(layers), ls))
                layers.append(NewLayer(Layer("", "", "", "", 0), ""))
                old_index.append(None)
        else:
            lead["empty_layer"] = True
        history.append(lead)
        for t in g.followers:
            if t.action == "squash":
                h = dict(t.step.history)
                h["empty_layer"] = True
                history.append(h)
    workdir = tmpdir()
    try:
        to_merge = sorted({i for _, ls in merges for i in ls})
        extra = sorted(_needed(dst, r, layers, old_index) - set(to_merge)) if hasattr(r.store, "spool_layers") else []
        files = fetch.materialize(r.store, r.image, to_merge + extra, workdir) if (to_merge or extra) else {}
        for pos, ls in merges:
            # mypy does not narrow old_index[k]; the condition makes it an int where it is used
            below = [lindex.index_layers(r.store, r.image,
                                         [old_index[k]])[old_index[k]]  # type: ignore[index,list-item]
                     if old_index[k] is not None else None for k in range(pos)]
            if any(b is None for b in below):
                base_view = merge.BaseView(None)   # a merged layer below: whiteouts kept, to be safe
            else:
                base_view = merge.base_view(below)  # type: ignore[arg-type]
            mplan = merge.plan_merge([files[i].members for i in ls], base_view)
            paths = [files[i].path for i in ls]
            if mplan.base_sources:
                # hardlinks that keep bytes of a file below that the group changed: read those layers too
                src = [cast(int, old_index[k]) for k in mplan.base_sources]
                more = fetch.materialize(r.store, r.image, src, workdir)
                paths += [more[i].path for i in src]
            nl, _ = write_blob(workdir, f"group-{pos}", codec, family, level,
                               cast("Callable[[Any], Any]",
                                    lambda out, mplan=mplan, paths=paths: merge.write_merged(mplan, paths, out)))
            layers[pos] = nl
        data = dict(r.image.config.data)
        rootfs = dict(data.get("rootfs") or {"type": "layers"})
        rootfs["diff_ids"] = [l.layer.diff_id if isinstance(l, NewLayer) else l.diff_id for l in layers]
        data["rootfs"] = rootfs
        if r.image.config.history:
            data["history"] = history
        config = Config.from_data(data)
        res.result = write_rewritten(session, r, dst, name, layers, config, files, old_index)
        return res
    finally:
        fetch.rmtree(workdir)
