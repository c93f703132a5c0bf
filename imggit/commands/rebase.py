"""rebase --onto: replay an image's own steps on a new base."""

from __future__ import annotations

import json

import click

from ..cli import CONTEXT, _ctx, main, out, warn, written


def _fmt(v) -> str:  # type: ignore[no-untyped-def]
    return "(unset)" if v is None else json.dumps(v, ensure_ascii=False)


def _print_plan(plan, picking: bool = False) -> None:  # type: ignore[no-untyped-def]
    from ..model import human_size

    img, up, new = plan.image, plan.upstream, plan.onto
    if picking:
        click.echo(f"picking the top {plan.own_steps} step(s) of {img.describe()} ({len(plan.own_layers)} "
                   f"layer(s), blobs untouched) onto {new.describe()}", err=True)
    else:
        click.echo(f"rebasing {img.describe()} onto {new.describe()} (upstream {up.describe()}: "
                   f"{plan.upstream_how})", err=True)
        click.echo(f"  replaying {plan.own_steps} step(s), {len(plan.own_layers)} layer(s); their blobs are "
                   "untouched", err=True)
    for c in plan.file_conflicts:
        size = lambda n: "absent" if n is None else human_size(n)  # noqa: E731
        mine = "deleted" if c.image_size is None else human_size(c.image_size)
        out(f"{c.kind} /{c.path}  base: {size(c.base_before)} -> {size(c.base_after)}, "
            f"image layer {c.image_layer + 1}: {mine}")
    for c in plan.config_conflicts:
        kept = "the picked steps' value kept" if picking else "image's kept"
        out(f"C config {c.field}  base: {_fmt(c.base)} -> {_fmt(c.theirs)}, image: {_fmt(c.ours)} ({kept})")
    if not plan.checked:
        click.echo("  files not compared (--no-check)", err=True)


@main.command(context_settings=CONTEXT, short_help="Replay an image's own steps on a new base; -i edits them.")
@click.argument("args", nargs=-1, metavar="[UPSTREAM] IMAGE")
@click.option("--onto", "onto", metavar="NEW", help="The new base.")
@click.option("-i", "--interactive", is_flag=True, help="Edit the steps above BASE: reorder, drop, squash, "
              "fixup, reword (rebase -i BASE [IMAGE]).")
@click.option("--todo", "todo_file", type=click.File("r"), metavar="FILE",
              help="With -i: take the todo list from FILE instead of opening $EDITOR ('-' for stdin).")
@click.option("-t", "--tag", metavar="NAME", help="Write the result under this name (default: IMAGE's tag moves).")
@click.option("--strict", is_flag=True, help="Refuse (exit 5, no tag moves) when there is any conflict.")
@click.option("--no-check", "no_check", is_flag=True, help="Do not compare files (reads no layer at all).")
@click.option("-n", "--dry-run", is_flag=True, help="Show the plan and the conflicts; write nothing.")
@click.option("--from", "old", metavar="OLD", help="With --all: the old base.")
@click.option("--all", "all_", is_flag=True, help="Rebase every tagged image built on OLD (in STORE, the only "
              "argument; default the default store).")
@click.option("--timestamp", metavar="TIME", help="Time written into the config (default: now, or "
              "$SOURCE_DATE_EPOCH).")
def rebase(args: tuple[str, ...], onto: str | None, interactive: bool, todo_file, tag: str | None,  # type: ignore[no-untyped-def]
           strict: bool, no_check: bool, dry_run: bool, old: str | None, all_: bool, timestamp: str | None) -> None:
    """Replay an image's own steps on a patched base, without rebuilding (git rebase --onto).

    IMAGE's steps above UPSTREAM keep their layer blobs and land on NEW.
    Without UPSTREAM: the base IMAGE records (its base.digest annotation
    or label), else the deepest tagged ancestor from NEW's repository,
    else the base it records by name, else the deepest tagged ancestor
    from another repository than IMAGE's own. The runtime config is merged three ways (Env and Labels per key); paths
    that IMAGE's layers touch and that NEW changed are reported as
    conflicts (exit 0 with a warning; --strict makes them fatal).

    With -i, edit the steps above BASE instead, like git rebase -i: the
    todo list opens in $EDITOR (or comes from --todo FILE); lines can be
    reordered, dropped, squashed or fixed up into the line above, reworded.

    \b
    Examples:
      imggit rebase --onto base:2 app:1                 upstream found on its own
      imggit rebase --onto base:2 base:1 app:1 -t app:1-rebased
      imggit rebase --onto base:2 --from base:1 --all   every image built on base:1
      imggit rebase -i app:1~4                          edit the top four steps
      imggit rebase -i base:1 app:1 --todo plan.txt
    """
    from ..model import short
    from ..ops import rebase as op

    c = _ctx()
    if interactive:
        _interactive(c, args, todo_file, tag, dry_run)
        return
    if onto is None:
        raise click.UsageError("give the new base with --onto NEW (or edit steps with -i)")
    if all_:
        if old is None:
            raise click.UsageError("--all needs --from OLD (the old base)")
        if len(args) > 1:
            raise click.UsageError("with --all, the only argument is the store")
        rows = op.fleet(c.session, onto, old, args[0] if args else None, check=not no_check, strict=strict,
                        dry_run=dry_run, timestamp=timestamp, progress=c.info)
        if not rows:
            click.echo(f"no tagged image is built on {old}", err=True)
            return
        width = max(len(r.tag) for r in rows)
        out(f"{'IMAGE'.ljust(width)}  OLD ID        NEW ID        CONFLICTS")
        failed = 0
        for r in rows:
            if r.error:
                failed += 1
                out(f"{r.tag.ljust(width)}  {short(r.old)}  failed: {r.error}")
            else:
                out(f"{r.tag.ljust(width)}  {short(r.old)}  {short(r.new) if r.new else '(dry run)':<12}  "
                    f"{r.conflicts}")
        if failed:
            click.echo(f"{failed} of {len(rows)} image(s) failed", err=True)
            c_exit = click.get_current_context()
            c_exit.exit(1)
        return
    if old is not None:
        raise click.UsageError("--from goes with --all; for one image write: rebase --onto NEW OLD IMAGE")
    if len(args) == 1:
        upstream, image = None, args[0]
    elif len(args) == 2:
        upstream, image = args
    else:
        raise click.UsageError("give IMAGE, or UPSTREAM IMAGE")
    from ..errors import Conflict

    try:
        res = op.rebase(c.session, onto, image, upstream, tag=tag, check=not no_check, strict=strict,
                        dry_run=dry_run, timestamp=timestamp)
    except Conflict as e:
        if getattr(e, "plan", None) is not None:
            _print_plan(e.plan)  # type: ignore[attr-defined]
        raise
    plan = res.plan
    _print_plan(plan)
    if plan.conflicts and not dry_run:
        warn(f"{plan.conflicts} conflict(s): the result keeps the image's files and values there "
             "(use --strict to refuse)")
    if dry_run:
        click.echo("dry run: nothing written", err=True)
        return
    written(res)


def _interactive(c, args, todo_file, tag, dry_run) -> None:  # type: ignore[no-untyped-def]
    from ..ops import interactive
    from ..render import step_text
    from ..revisions import parse_rev

    if len(args) == 1:
        base = args[0]
        image = parse_rev(base).ref.text
    elif len(args) == 2:
        base, image = args
    else:
        raise click.UsageError("rebase -i takes BASE [IMAGE]")
    todo = todo_file.read() if todo_file is not None else None

    def edit(text: str) -> str | None:
        return click.edit(text, extension=".imggit-todo")

    def show(plan) -> None:  # type: ignore[no-untyped-def]
        """The plan and its warnings, printed before anything is written."""
        for g in plan.groups:
            names = ", ".join(f"{t.action} {t.step.index + 1}" for t in g.steps)
            click.echo(f"  {names}: {step_text(g.lead.step) if g.lead.action != 'reword' else g.lead.text}",
                       err=True)
        for s in plan.dropped:
            click.echo(f"  drop {s.index + 1}: {step_text(s)}", err=True)
        for w in plan.warnings:
            warn(w)
        if plan.config_dropped:
            warn("dropped steps set these config fields; the result keeps them as the image has them:")
            for d in plan.config_dropped:
                click.echo(f"  {d.field:<12} step {d.step.index + 1}: {d.command}", err=True)

    res = interactive.run(c.session, base, image, todo, tag=tag, dry_run=dry_run, edit=edit, on_plan=show)
    if dry_run:
        click.echo("dry run: nothing written", err=True)
        return
    written(res)


@main.command(name="cherry-pick", context_settings=CONTEXT, short_help="Append the top steps of one image onto another.")
@click.argument("range_", metavar="SRC~N..")
@click.argument("onto", metavar="ONTO")
@click.option("-t", "--tag", metavar="NAME", help="Write the result under this name (default: ONTO's tag moves).")
@click.option("--strict", is_flag=True, help="Refuse when a conflict is found.")
@click.option("--no-check", "no_check", is_flag=True, help="Do not compare files.")
@click.option("-n", "--dry-run", is_flag=True, help="Show the plan; write nothing.")
def cherry_pick(range_: str, onto: str, tag: str | None, strict: bool, no_check: bool, dry_run: bool) -> None:
    """Append steps of one image (their layers and history) onto another.

    SRC~N.. means the top N steps of SRC (SRC~N..SRC). Their layer blobs are
    untouched; the config changes those steps made are carried over (a
    three-way merge, as rebase does).

    \b
    Example:
      imggit cherry-pick tools:1~2.. app:1          app:1 gets tools:1's top two steps
    """
    from ..model import short
    from ..ops import rebase as op
    from ..revisions import parse_rev

    c = _ctx()
    left, sep, right = range_.rpartition("..")
    if not sep or not left:
        raise click.UsageError("write the steps as SRC~N.. or SRC~N..SRC")
    if not right:
        right = parse_rev(left).ref.text
    o = parse_rev(onto)
    res = op.rebase(c.session, onto, right, left, tag=tag or onto, check=not no_check, strict=strict,
                    dry_run=dry_run)
    _print_plan(res.plan, picking=True)
    if dry_run:
        click.echo("dry run: nothing written", err=True)
        return
    r = res.result
    assert r is not None
    assert res.dest is not None   # op.rebase always sets the destination store
    moved = f" (was {short(r.previous)})" if r.previous and r.previous != r.image.id else ""
    click.echo(f"{res.tag or o.ref.name or onto} in {res.dest.describe()} -> {short(r.image.id)}{moved}",
               err=True)
    out(r.image.id)
