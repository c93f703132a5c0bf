#!/usr/bin/env python3
"""Run the examples of the user guide and write their real output into the pages.

Usage:
    python docs/tools/examples.py [--check] [-v] [PAGE...]

PAGE is a file under docs/ (``docs/log.md``, ``log.md`` or ``log``); without
one, every page of docs/ is done. Without --check, each page is rewritten
with what its commands print now. With --check, nothing is written: the
tool prints a unified diff of each page whose examples no longer match, and
exits 1 if there is any (0 when all match, 2 on a usage or setup error).

Run it with the Python of imggit's virtualenv (``make docs`` does), so that
``imggit`` and ``python`` are that environment's.

How a page declares its examples
--------------------------------
In its first lines, a page that has examples says how to prepare for them:

    <!-- examples: setup=fresh -->
    <!-- examples: setup=fresh registry=localhost:5000 -->

setup= is one of:

    repo      an empty IMGGIT_HOME; the commands start in the repository root
              (the tour in README.md builds the demo images itself)
    demo      the demo images of examples/demo/build.py
    tour      those, and the files that the tour of README.md writes: the OCI
              layout ./out (tags app and tool) and the archive ./app.tar
    fresh     those of build.py and of examples/demo/build_more.py

Every setup but ``repo`` starts in the (empty) scratch directory.
``registry=HOST:PORT`` starts an empty docker-registry on 127.0.0.1: on PORT
when it is free, else on a free port with as many digits, which no line of
the page names. Then HOST:PORT in the commands is replaced by the real
address, and the real address in the output by HOST:PORT, so the page reads
as if the registry were at HOST:PORT. ``needs=CMD,CMD`` names programs
that the examples run besides imggit (jq, skopeo...): without them the
tool stops, and tests/test_docs.py skips the page.

Extra preparation, whose output is not shown, goes in a comment anywhere
in the page. It runs at that point, in a subshell (a cd or an export there
does not carry over), and the run stops if it fails:

    <!-- examples-setup
    imggit cp embedded:demo/app:1 oci:./out:app
    -->

Every ```console block runs, in page order, in one bash process: a line
``$ COMMAND`` is a command (with a here-document, its lines up to the
closing word belong to it), and the lines after it up to the next ``$ ``
are its output (stdout and stderr together), which the tool rewrites.
``$?`` at the start of a command is the exit status of the one before it.
A block right after a line ``<!-- norun -->`` is left as it is.

The environment is the same everywhere, so that the output is too:

    IMGGIT_HOME=/tmp/imggit-docs/home     (made empty first; a lock on
                                          /tmp/imggit-docs/.lock keeps
                                          two runs apart)
    scratch directory /tmp/imggit-docs/scratch   (made empty first)
    HOME=/tmp/imggit-docs/user            (empty: no Docker or git config)
    no DOCKER_HOST, no other IMGGIT_* variable: names without a transport go
    to the embedded store (unless an engine answers on /var/run/docker.sock;
    the tool warns when that socket exists)
    COLUMNS=80  SOURCE_DATE_EPOCH=0  TZ=UTC  LC_ALL=C.UTF-8
    PATH: the virtualenv's bin directory, then the caller's PATH

Normalisation
-------------
Some output differs from run to run whatever the environment. Before it is
compared and when it is written, the tool replaces it with a placeholder
(see NORMALISE below; this is the whole list):

    the time of a move in `imggit reflog`  2026-11-27 23:16  ->  YYYY-MM-DD HH:MM
    the id of a record commit of the journal (its time is in it), as git
    prints it: `* 9c090d0 demo/tool:1: 9bca6ccae8ce`, `9c090d0 refs/imggit/...`
                                           9c090d0  ->  xxxxxxx
    the random part of a temporary file or directory that imggit names
    (tempfile: /tmp/imggit-archive-k2j4_x9q, .../.tmp-0a1b2c3d)
                                           k2j4_x9q  ->  XXXXXXXX
    a transfer rate                        1.2 MB/s  ->  N B/s

and, on a page with registry=HOST:PORT, the registry's real port (see
above) is shown as PORT.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(ROOT, "docs")
BASE = "/tmp/imggit-docs"
HOME = f"{BASE}/home"
SCRATCH = f"{BASE}/scratch"
USER_HOME = f"{BASE}/user"
REGISTRY_DIR = f"{BASE}/registry"
PAGE_TIMEOUT = 600  # seconds for all the commands of one page

SETUPS = {
    "repo": "true",
    "demo": 'python "$IMGGIT_DOCS_ROOT/examples/demo/build.py"\n',
    "tour": 'python "$IMGGIT_DOCS_ROOT/examples/demo/build.py"\n'
            "imggit cp embedded:demo/app:1 oci:./out:app\n"
            "imggit cp embedded:demo/tool:1 oci:./out:tool\n"
            "imggit cp embedded:demo/app:1 docker-archive:app.tar\n",
    "fresh": 'python "$IMGGIT_DOCS_ROOT/examples/demo/build.py"\n'
             'python "$IMGGIT_DOCS_ROOT/examples/demo/build_more.py"\n',
}

# (what, pattern, placeholder): applied to every output, in this order.
NORMALISE = [
    ("time of a move in imggit reflog",
     re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d\b(?!:\d)"), "YYYY-MM-DD HH:MM"),
    ("record commit of the journal, in git log --oneline",
     re.compile(r"^([*|/\\ ]*)[0-9a-f]{7,12}(?= \S+: [0-9a-f]{12}$)", re.MULTILINE), r"\1xxxxxxx"),
    ("record commit of the journal, in git reflog",
     re.compile(r"^[0-9a-f]{7,12}(?= refs/imggit)", re.MULTILINE), "xxxxxxx"),
    ("temporary name made by tempfile",
     re.compile(r"(/(?:tmp|\.tmp-|\.?imggit-(?:archive-|layer-|ociarchive-|ca-)?))[a-z0-9_]{8}\b"), r"\1XXXXXXXX"),
    ("transfer rate",
     re.compile(r"\b\d+(?:\.\d+)? ?[kMG]?i?B/s\b"), "N B/s"),
]

HEADER = re.compile(r"<!--\s*examples:(.*?)-->")
SETUP_BLOCK = re.compile(r"^<!--\s*examples-setup\s*$")
HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")


class Failure(Exception):
    """The run of a page could not be done (bad header, failed setup, missing program)."""


@dataclass
class Block:
    start: int  # index of the first body line
    end: int    # index of the closing ``` line
    commands: list[str] = field(default_factory=list)


@dataclass
class Step:
    """Something to run: the commands of a console block, or a hidden setup comment."""
    kind: str  # "block" or "setup"
    block: Block | None = None
    script: str = ""


@dataclass
class Page:
    path: str
    lines: list[str]
    setup: str | None = None
    registry: str | None = None
    needs: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    @property
    def blocks(self) -> list[Block]:
        return [s.block for s in self.steps if s.kind == "block" and s.block is not None]


def parse_commands(body: list[str], where: str) -> list[str]:
    cmds: list[str] = []
    k = 0
    while k < len(body):
        line = body[k]
        if line.startswith("$ "):
            cmd = line[2:]
            m = HEREDOC.search(cmd)
            if m:
                word = m.group(2)
                k += 1
                while k < len(body) and body[k] != word:
                    cmd += "\n" + body[k]
                    k += 1
                if k == len(body):
                    raise Failure(f"{where}: here-document '{word}' is not closed in its block")
                cmd += "\n" + word
            cmds.append(cmd)
        elif not cmds and line.strip():
            raise Failure(f"{where}: a console block must start with a '$ ' line, not {line!r}")
        k += 1
    return cmds


def parse(path: str) -> Page:
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    page = Page(path, lines)
    name = os.path.relpath(path)
    for ln in lines[:10]:
        m = HEADER.search(ln)
        if m:
            for word in m.group(1).split():
                key, _, value = word.partition("=")
                if key == "setup" and value in SETUPS:
                    page.setup = value
                elif key == "registry" and re.fullmatch(r"[\w.-]+:\d+", value):
                    page.registry = value
                elif key == "needs" and value:
                    page.needs = value.split(",")
                else:
                    raise Failure(f"{name}: bad word {word!r} in the examples header "
                                  f"(setup={'|'.join(SETUPS)}, registry=HOST:PORT, needs=CMD,...)")
            if page.setup is None:
                raise Failure(f"{name}: the examples header names no setup=")
            break
    i = 0
    while i < len(lines):
        if SETUP_BLOCK.match(lines[i]):
            j = i + 1
            while j < len(lines) and lines[j].strip() != "-->":
                j += 1
            if j == len(lines):
                raise Failure(f"{name}:{i + 1}: examples-setup comment is not closed by a line '-->'")
            page.steps.append(Step("setup", script="\n".join(lines[i + 1:j])))
            i = j + 1
        elif lines[i].strip() == "```console":
            norun = i > 0 and lines[i - 1].strip() == "<!-- norun -->"
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            if j == len(lines):
                raise Failure(f"{name}:{i + 1}: console block is not closed")
            if not norun:
                block = Block(i + 1, j, parse_commands(lines[i + 1:j], f"{name}:{i + 1}"))
                page.steps.append(Step("block", block=block))
            i = j + 1
        else:
            i += 1
    if page.steps and page.setup is None:
        raise Failure(f"{name}: has examples to run but no '<!-- examples: setup=... -->' in its first lines "
                      f"(or mark its console blocks '<!-- norun -->')")
    return page


def bin_dir() -> str:
    """The bin directory of the virtualenv imggit is installed in."""
    for d in (os.path.dirname(sys.executable), os.path.join(ROOT, ".venv", "bin")):
        if os.path.exists(os.path.join(d, "imggit")) and os.path.exists(os.path.join(d, "python")):
            return d
    raise Failure("no imggit next to this Python nor in .venv/bin: run it with the virtualenv's Python "
                  "(make docs), after pip install -e .")


def environment(bindir: str) -> dict[str, str]:
    env = {
        "PATH": bindir + os.pathsep + os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": USER_HOME,
        "IMGGIT_HOME": HOME,
        "IMGGIT_DOCS_ROOT": ROOT,
        "COLUMNS": "80",
        "SOURCE_DATE_EPOCH": "0",
        "TZ": "UTC",
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "PYTHONDONTWRITEBYTECODE": "1",
        # the pages document the imggit of this tree, also from a git worktree whose venv is another's
        "PYTHONPATH": ROOT,
    }
    return env


def is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(shown: int, avoid: str) -> int:
    """SHOWN itself when it is free, else a free port with as many digits (so that columns keep their
    width when the real port is shown as SHOWN), and not written anywhere in the page (AVOID)."""
    if is_free(shown):
        return shown
    digits = len(str(shown))
    for port in range(max(shown + 100, 10 ** (digits - 1)), min(10 ** digits, 65536)):
        if str(port) not in avoid and is_free(port):
            return port
    raise Failure(f"no free port of {digits} digits for the registry")


class Registry:
    """An empty docker-registry on 127.0.0.1 and a free port (as tests/rig.py's Registry)."""

    def __init__(self, shown: int, avoid: str) -> None:
        self.port = free_port(shown, avoid)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Registry:
        exe = shutil.which("docker-registry")
        if not exe:
            raise Failure("this page needs docker-registry (apt-get install docker-registry)")
        shutil.rmtree(REGISTRY_DIR, ignore_errors=True)
        os.makedirs(REGISTRY_DIR)
        cfg = os.path.join(REGISTRY_DIR, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {REGISTRY_DIR}/data\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: 127.0.0.1:{self.port}\n")
        with open(os.path.join(REGISTRY_DIR, "log"), "wb") as log:
            self.proc = subprocess.Popen([exe, "serve", cfg], stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"docker-registry exited; see {REGISTRY_DIR}/log")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return self
            time.sleep(0.1)
        raise Failure("docker-registry did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def normalise(text: str) -> str:
    for _, pattern, placeholder in NORMALISE:
        text = pattern.sub(placeholder, text)
    return text


def run_page(page: Page, bindir: str, verbose: bool = False) -> list[str]:
    """Run the page's commands; return the output of each command of its blocks, in order."""
    missing = [c for c in page.needs if not shutil.which(c, path=environment(bindir)["PATH"])]
    if missing:
        raise Failure(f"{os.path.relpath(page.path)} needs {', '.join(missing)}, which is not installed")
    for d in (HOME, SCRATCH, USER_HOME):
        shutil.rmtree(d, ignore_errors=True)
    os.makedirs(SCRATCH)
    os.makedirs(USER_HOME)
    registry = Registry(int(page.registry.rsplit(":", 1)[1]), "\n".join(page.lines)) if page.registry else None
    try:
        if registry:
            registry.start()
        to_real = from_real = None
        if registry:
            shown_host, shown_port = page.registry.rsplit(":", 1)  # type: ignore[union-attr]
            real = str(registry.port)
            to_real = re.compile(rf"\b((?:{re.escape(shown_host)}|127\.0\.0\.1):){shown_port}\b")
            from_real = re.compile(rf"\b((?:{re.escape(shown_host)}|127\.0\.0\.1):){real}\b")

        def command(c: str) -> str:
            return to_real.sub(rf"\g<1>{real}", c) if to_real else c

        def hidden(what: str, text: str) -> str:
            """Run TEXT in a subshell that stops at the first failure; show its trace only if it fails."""
            return (f"( set -ex\n{text}\n) > \"$IMGGIT_DOCS_LOG\" 2>&1 || "
                    f"{{ echo '@@SETUP-FAILED@@ ({what})'; cat \"$IMGGIT_DOCS_LOG\"; exit 99; }}")

        script = ["__s=0", hidden(f"setup={page.setup}", SETUPS[page.setup or "fresh"])]
        if page.setup == "repo":
            script.append('cd "$IMGGIT_DOCS_ROOT"')
        n = 0
        for k, step in enumerate(page.steps):
            if step.kind == "setup":
                script.append(hidden(f"examples-setup comment {k + 1}", command(step.script)))
                continue
            assert step.block is not None
            for cmd in step.block.commands:
                script.append(f"printf '\\n@@MARK-{n}@@\\n'; (exit $__s)")
                script.append("{\n" + command(cmd) + "\n} 2>&1; __s=$?")
                n += 1
        script.append("printf '\\n@@MARK-END@@\\n'")
        env = environment(bindir)
        env["IMGGIT_DOCS_LOG"] = f"{BASE}/setup.log"
        if verbose:
            print(f"--- {os.path.relpath(page.path)}: setup={page.setup}"
                  + (f", registry on 127.0.0.1:{registry.port}" if registry else ""), file=sys.stderr)
        try:
            p = subprocess.run(["bash", "--norc", "--noprofile", "-c", "\n".join(script)], check=False, cwd=SCRATCH,
                               env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=PAGE_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Failure(f"{os.path.relpath(page.path)}: the examples took more than {PAGE_TIMEOUT}s") from None
        text = p.stdout
        if "@@SETUP-FAILED@@" in text:
            raise Failure(f"{os.path.relpath(page.path)}: the setup failed:\n"
                          + text[text.index("@@SETUP-FAILED@@"):])
        if p.stderr.strip():
            sys.stderr.write(f"{os.path.relpath(page.path)}: bash said:\n{p.stderr}")
        outs = []
        for i in range(n):
            mark = f"\n@@MARK-{i}@@\n"
            nxt = f"\n@@MARK-{i + 1}@@\n" if i + 1 < n else "\n@@MARK-END@@\n"
            if mark not in text or nxt not in text:
                raise Failure(f"{os.path.relpath(page.path)}: the run stopped in command {i + 1} "
                              f"(exit {p.returncode}); output so far:\n{text[-3000:]}\n{p.stderr}")
            a = text.index(mark) + len(mark)
            out = text[a:text.index(nxt, a)]
            if from_real:
                out = from_real.sub(rf"\g<1>{shown_port}", out)
            outs.append(normalise(out))
        return outs
    finally:
        if registry:
            registry.stop()


def render(page: Page, outs: list[str]) -> str:
    lines = page.lines
    new: list[str] = []
    pos = 0
    k = 0
    for block in page.blocks:
        new += lines[pos:block.start]
        for cmd in block.commands:
            first, *rest = cmd.split("\n")
            new.append("$ " + first)
            new += rest
            out = outs[k]
            k += 1
            out = out.removesuffix("\n")
            if out:
                new += [ln.rstrip() for ln in out.split("\n")]
        pos = block.end
    new += lines[pos:]
    return "\n".join(new)


def pages_from_args(names: list[str]) -> list[str]:
    if not names:
        return sorted(os.path.join(DOCS, n) for n in os.listdir(DOCS) if n.endswith(".md"))
    out = []
    for n in names:
        for cand in (n, os.path.join(DOCS, n), os.path.join(DOCS, n + ".md")):
            if os.path.isfile(cand):
                out.append(os.path.abspath(cand))
                break
        else:
            raise Failure(f"no page {n!r} (give docs/PAGE.md, PAGE.md or PAGE)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="examples.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="write nothing; print a diff and exit 1 if a page differs")
    ap.add_argument("-v", "--verbose", action="store_true", help="say what runs")
    ap.add_argument("pages", nargs="*", metavar="PAGE")
    args = ap.parse_args(argv)
    try:
        paths = pages_from_args(args.pages)
        parsed = [parse(p) for p in paths]
        bindir = bin_dir()
    except Failure as e:
        print(f"examples.py: {e}", file=sys.stderr)
        return 2
    if os.path.exists("/var/run/docker.sock"):
        print("examples.py: warning: /var/run/docker.sock exists; if an engine answers there, names without a "
              "transport go to it and the output will differ", file=sys.stderr)
    # one run at a time: every page uses the same fixed directories
    os.makedirs(BASE, exist_ok=True)
    with open(os.path.join(BASE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return run_pages(parsed, bindir, check=args.check, verbose=args.verbose)


def run_pages(parsed: list[Page], bindir: str, *, check: bool, verbose: bool) -> int:
    differ = 0
    failed = 0
    for page in parsed:
        rel = os.path.relpath(page.path)
        if not page.blocks:
            continue
        t0 = time.monotonic()
        try:
            outs = run_page(page, bindir, verbose)
        except Failure as e:
            print(f"examples.py: {e}", file=sys.stderr)
            failed += 1
            continue
        old = "\n".join(page.lines)
        new = render(page, outs)
        if verbose:
            print(f"    {rel}: {time.monotonic() - t0:.1f}s", file=sys.stderr)
        if new == old:
            continue
        differ += 1
        if check:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                       rel, rel + " (as run now)"))
        else:
            with open(page.path, "w", encoding="utf-8") as f:
                f.write(new)
            print(f"rewrote {rel}", file=sys.stderr)
    if failed:
        return 2
    return 1 if differ and check else 0


if __name__ == "__main__":
    sys.exit(main())
