"""Helpers for the registry tests: unique repository names, random images, subprocess env."""

from __future__ import annotations

import hashlib
import os
import random

from imggit.layers import build as b
from imggit.session import Session


def unique(request, prefix: str = "t") -> str:
    return prefix + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:10]


def random_steps(seed: str, layers: int = 3, size: int = 200_000) -> list[b.StepSpec]:
    """Layers of random (incompressible) bytes, one file each, plus an empty step."""
    rnd = random.Random(seed)
    steps = []
    for i in range(layers):
        data = rnd.randbytes(size)
        steps.append(b.StepSpec(f"RUN make part{i}", b.make_layer([b.directory("data"),
                                                                    b.file(f"data/part{i}", data)])))
        if i == 0:
            steps.append(b.StepSpec("ENV A=1", None))
    return steps


def push_random(addr: str, repo: str, tag: str, seed: str, layers: int = 3, size: int = 200_000,
                **options):
    """Write a random image straight into a registry through the store; returns the WriteResult."""
    s = Session()
    s.registry_options.update(options)
    st = s.store("docker", f"{addr}/{repo}")
    return b.write_image(st, tag, random_steps(seed, layers, size), {"Cmd": ["/bin/sh"]})


def oci_with_random(path, tag: str, seed: str, layers: int = 3, size: int = 200_000):
    s = Session()
    st = s.store("oci", str(path), for_write=True)
    return b.write_image(st, tag, random_steps(seed, layers, size), {"Cmd": ["/bin/sh"]})


def env_for_subprocess(home) -> dict[str, str]:
    env = dict(os.environ)
    env["IMGGIT_HOME"] = str(home)
    env["DOCKER_HOST"] = "unix:///nonexistent/imggit-test.sock"
    return env
