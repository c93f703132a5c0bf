"""The examples of the user guide still show what imggit prints.

Runs ``docs/tools/examples.py --check`` on every page of docs/ (the pages
with ``registry=`` in their ``<!-- examples: ... -->`` header start their own
``docker-registry`` on loopback, so CI installs it). A page
whose examples no longer match fails with the diff: re-run the page with
``make docs`` (or ``python docs/tools/examples.py PAGE``), read the new
output, and fix the prose if its meaning changed. A page that needs a
program that is not installed (``needs=jq``...) is skipped.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "docs", "tools", "examples.py")

_spec = importlib.util.spec_from_file_location("docs_examples", TOOL)
assert _spec is not None and _spec.loader is not None
examples = importlib.util.module_from_spec(_spec)
sys.modules["docs_examples"] = examples   # dataclasses look their module up there
_spec.loader.exec_module(examples)


def _pages() -> list:
    out = []
    for path in examples.pages_from_args([]):
        page = examples.parse(path)
        if not page.blocks:
            continue
        name = os.path.basename(path)
        needs = list(page.needs) + (["docker-registry"] if page.registry else [])
        out.append(pytest.param(path, needs, id=name))
    return out


@pytest.mark.parametrize("path,needs", _pages())
def test_examples_match(path: str, needs: list[str]) -> None:
    missing = [c for c in needs if shutil.which(c) is None]
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"needs {', '.join(missing)} (CI=true: .ci/run installs them)", pytrace=False)
        pytest.skip(f"needs {', '.join(missing)}")
    p = subprocess.run([sys.executable, TOOL, "--check", path], check=False, capture_output=True, text=True,
                       timeout=600)
    if p.returncode != 0:
        pytest.fail(f"the examples of {os.path.relpath(path, ROOT)} no longer match what imggit prints "
                    f"(run: python docs/tools/examples.py {os.path.basename(path)}, then read the page):\n"
                    + p.stdout + p.stderr, pytrace=False)
