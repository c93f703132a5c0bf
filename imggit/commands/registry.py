"""pull, push: images to and from registries, with progress on a terminal."""

from __future__ import annotations

import sys
import threading
from typing import Any

import click

from ..cli import CONTEXT, _ctx, main, out  # noqa: F401

_JOBS = click.IntRange(1, 64)


def _common(f: Any) -> Any:
    f = click.option("-j", "--jobs", type=_JOBS, default=4, show_default=True,
                     help="Blobs transferred at once.")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="No progress and no summary; print only the image id.")(f)
    f = click.option("--creds", metavar="USER[:PASSWORD]",
                     help="Registry credentials (default: IMGGIT_REGISTRY_AUTH, then Docker's config.json "
                          "and credential helpers, then anonymous). Without :PASSWORD it is asked for.")(f)
    f = click.option("--tls-verify", type=click.BOOL, default=None, metavar="BOOL",
                     help="Verify the registry's TLS certificate (default: true; CA certificates in "
                          "/etc/docker/certs.d/HOST:PORT/ are trusted). false also allows plain HTTP.")(f)
    return f


class ProgressView:
    """One bar per blob and a total (bytes, rate, ETA) on stderr; thread-safe."""

    def __init__(self, verb: str) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.verb = verb
        self.progress = Progress(TextColumn("{task.description}", justify="left"), BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=False)
        self.tasks: dict[str, Any] = {}
        self.done: dict[str, int] = {}
        self.total: Any = None
        self.lock = threading.Lock()

    def __enter__(self) -> "ProgressView":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def _task(self, key: str, what: str, total: int | None) -> Any:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"{what:<9} {key[7:19]}", total=total)
            self.done[key] = 0
        return self.tasks[key]

    def _set(self, key: str, n: int) -> None:
        self.done[key] = n
        self.progress.update(self.tasks[key], completed=n)
        if self.total is not None:
            self.progress.update(self.total, completed=sum(self.done.values()))

    def __call__(self, ev: Any) -> None:
        from ..registry import progress as P

        with self.lock:
            if self.total is None:    # the total's bar comes first, whatever event comes first
                self.total = self.progress.add_task(f"[bold]{self.verb} total", total=None)
            if ev.kind == P.PLAN:
                self.progress.update(self.total, total=ev.n or None)
                return
            if not ev.key:
                return
            t = self._task(ev.key, ev.what, ev.total)
            what = f"{ev.what:<9} {ev.key[7:19]}"
            if ev.kind == P.START:
                self.progress.update(t, description=what, total=ev.total)
                self._set(ev.key, ev.n)
            elif ev.kind == P.ADVANCE:
                self._set(ev.key, self.done[ev.key] + ev.n)
            elif ev.kind == P.RESTART:
                self._set(ev.key, 0)
            elif ev.kind == P.RETRY:
                self.progress.update(t, description=f"{what} [yellow]retry: {ev.note}")
            elif ev.kind in (P.DONE, P.CACHED, P.EXISTS, P.MOUNTED):
                label = {P.DONE: "", P.CACHED: " [dim]cached", P.EXISTS: " [dim]exists",
                         P.MOUNTED: f" [dim]mounted from {ev.note}"}[ev.kind]
                self.progress.update(t, description=what + label, total=ev.total or ev.n or 1)
                self._set(ev.key, ev.total or ev.n or 1)


def _options(jobs: int, quiet: bool, creds: str | None, tls_verify: bool | None, verb: str) -> Any:
    from ..ops.transfer import TransferOptions

    from ..cli import registry_options

    opts = registry_options(creds, tls_verify)
    view = ProgressView(verb) if not quiet and sys.stderr.isatty() else None
    return TransferOptions(jobs=jobs, progress=view, creds=opts.get("creds"), tls_verify=opts.get("tls_verify")), view


def _report(res: Any, verb: str, quiet: bool, fetched: str) -> None:
    from ..model import human_size, short

    r = res.result
    img = r.image
    if not quiet:
        name = res.dest.normalize_tag(res.tag) if res.tag else None
        click.echo(f"{verb} {res.source.text} to {res.dest.describe()}" + (f" as {name}" if name else "")
                   + f": {r.written_blobs} layer(s) {fetched} ({human_size(r.written_bytes)}), "
                   + f"{len(img.layers) - r.written_blobs} already there", err=True)
        if r.previous and r.previous != img.id:
            click.echo(f"{res.tag} moved from {short(r.previous)}", err=True)
    out(img.id)


@main.command(context_settings=CONTEXT)
@click.argument("src", metavar="REF")
@click.argument("dest", required=False, metavar="[DEST]")
@_common
def pull(src: str, dest: str | None, jobs: int, quiet: bool, creds: str | None, tls_verify: bool | None) -> None:
    """Download an image from a registry.

    REF is docker://HOST/REPO[:TAG|@DIGEST] (or a Docker Hub name such as
    alpine:3). DEST is where it goes (default: the engine when one answers,
    else the embedded store), e.g. oci:DIR[:TAG] or docker-daemon:NAME:TAG.
    Layers DEST lacks are downloaded in parallel, each verified against its
    digest; a broken or interrupted download resumes where it stopped (also
    after the process was killed). Nothing is tagged unless every blob verified.

    \b
    Examples:
      imggit pull docker://registry.example:5000/app:1
      imggit pull docker://127.0.0.1:5000/app:1 oci:./out:app
      imggit pull -j 8 alpine:3 embedded:
    """
    from ..ops import transfer

    options, view = _options(jobs, quiet, creds, tls_verify, "pull")
    c = _ctx()
    if view is None:
        res = transfer.pull(c.session, src, dest, options)
    else:
        with view:
            res = transfer.pull(c.session, src, dest, options)
    _report(res, "pulled", quiet, "fetched")


@main.command(context_settings=CONTEXT)
@click.argument("src", metavar="SRC")
@click.argument("dest", metavar="docker://HOST/REPO[:TAG]")
@_common
def push(src: str, dest: str, jobs: int, quiet: bool, creds: str | None, tls_verify: bool | None) -> None:
    """Upload an image to a registry.

    Only the blobs the registry lacks are sent; a blob another repository
    of the same registry holds is mounted, not uploaded. Uncompressed
    layers (from the engine) are gzip-compressed on the way. The manifest
    goes last, so the tag moves only when everything is there. Without a
    TAG, SRC's tag is used.

    \b
    Examples:
      imggit push app:1 docker://registry.example:5000/app:1
      imggit push oci:./out:app docker://127.0.0.1:5000/app
    """
    from ..ops import transfer

    options, view = _options(jobs, quiet, creds, tls_verify, "push")
    c = _ctx()
    if view is None:
        res = transfer.push(c.session, src, dest, options)
    else:
        with view:
            res = transfer.push(c.session, src, dest, options)
    _report(res, "pushed", quiet, "uploaded")
