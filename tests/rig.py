"""The real components the tests use: a private Docker engine and a registry.

Both run on temporary directories, on loopback or a private socket, and
are stopped at the end. When a binary is missing the tests that need it
are skipped, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class Unavailable(Exception):
    pass


class Engine:
    """A private dockerd (vfs storage, no bridge, no iptables) on a unix socket."""

    def __init__(self, root: str | None = None) -> None:
        self.dir = root or tempfile.mkdtemp(prefix="imggit-engine-")
        self.sock = os.path.join(self.dir, "docker.sock")
        self.host = f"unix://{self.sock}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> "Engine":
        dockerd = shutil.which("dockerd")
        if not dockerd or not shutil.which("docker"):
            raise Unavailable("dockerd/docker not installed (apt-get install docker.io)")
        if os.geteuid() != 0:
            raise Unavailable("dockerd needs root")
        log = open(os.path.join(self.dir, "dockerd.log"), "wb")
        self.proc = subprocess.Popen(
            [dockerd, "--storage-driver=vfs", "--iptables=false", "--ip6tables=false", "--bridge=none",
             f"--data-root={self.dir}/root", f"--exec-root={self.dir}/exec", f"--pidfile={self.dir}/docker.pid",
             "-H", self.host],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"dockerd exited: {self.log_tail()}")
            if os.path.exists(self.sock) and self.docker("version", check=False).returncode == 0:
                return self
            time.sleep(0.2)
        raise Unavailable(f"dockerd did not answer within {timeout}s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "dockerd.log"), "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def env(self) -> dict[str, str]:
        e = dict(os.environ)
        e["DOCKER_HOST"] = self.host
        e["DOCKER_BUILDKIT"] = "0"
        return e

    def docker(self, *args: str, input: bytes | None = None, check: bool = True,
               timeout: float = 600) -> subprocess.CompletedProcess[bytes]:
        p = subprocess.run(["docker", *args], input=input, capture_output=True, env=self.env(), timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {p.stderr.decode(errors='replace')}")
        return p

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # vfs leaves plain directories; unmount anything left under exec-root, then remove
        subprocess.run(["sh", "-c", f"grep -o ' {self.dir}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l"],
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- helpers for building test images ---------------------------------------------

    def import_busybox(self, tag: str = "busybox:base") -> str:
        """A base image from Debian's static busybox (docker import), with the usual applets."""
        bb = shutil.which("busybox") or "/bin/busybox"
        with tempfile.TemporaryDirectory() as d:
            os.chmod(d, 0o755)   # the image's root: mkdtemp makes it 0700, which locks out USER nobody
            os.makedirs(os.path.join(d, "bin"))
            for sub in ("etc", "tmp", "root", "usr/bin"):
                os.makedirs(os.path.join(d, sub), exist_ok=True)
            shutil.copy(bb, os.path.join(d, "bin", "busybox"))
            for applet in ("sh", "ls", "cat", "echo", "mkdir", "rm", "ln", "chmod", "chown", "mkfifo", "touch",
                           "cp", "mv", "stat", "find", "sha256sum", "head", "dd", "setfattr", "true", "sleep",
                           "printf", "test", "[", "sed", "sort", "wc", "xargs", "tar", "id", "grep", "env",
                           "readlink", "rmdir", "truncate", "seq"):
                os.symlink("busybox", os.path.join(d, "bin", applet))
            with open(os.path.join(d, "etc", "passwd"), "w") as f:
                f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
            with open(os.path.join(d, "etc", "group"), "w") as f:
                f.write("root:x:0:\nnogroup:x:65534:\n")
            tar = subprocess.run(["tar", "-C", d, "-c", "."], capture_output=True, check=True).stdout
        self.docker("import", "-c", 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
                    "-c", 'CMD ["/bin/sh"]', "-", tag, input=tar)
        return tag

    def build(self, tag: str, dockerfile: str, files: dict[str, bytes | str] | None = None) -> str:
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "Dockerfile"), "w") as f:
                f.write(dockerfile)
            for name, data in (files or {}).items():
                p = os.path.join(d, name)
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "wb") as f:
                    f.write(data.encode() if isinstance(data, str) else data)
            self.docker("build", "-q", "-t", tag, d)
        return self.image_id(tag)

    def image_id(self, ref: str) -> str:
        return self.docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.decode().strip()

    def inspect(self, ref: str) -> dict:
        return json.loads(self.docker("image", "inspect", ref).stdout)[0]

    def run(self, image: str, *cmd: str) -> str:
        return self.docker("run", "--rm", "--network", "none", image, *cmd).stdout.decode()

    def export_fs(self, image: str) -> bytes:
        """The image's filesystem as ``docker export`` of a created container."""
        cid = self.docker("create", image, "/bin/true").stdout.decode().strip()
        try:
            return self.docker("export", cid).stdout
        finally:
            self.docker("rm", cid, check=False)

    def load(self, archive: bytes) -> str:
        return self.docker("load", input=archive).stdout.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """Debian's docker-registry (distribution 2.8) on 127.0.0.1, plain http."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="imggit-registry-")
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> "Registry":
        exe = shutil.which("docker-registry")
        if not exe:
            raise Unavailable("docker-registry not installed (apt-get install docker-registry)")
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {self.dir}/data
  delete:
    enabled: true
http:
  addr: {self.addr}
""")
        log = open(os.path.join(self.dir, "registry.log"), "wb")
        self.proc = subprocess.Popen([exe, "serve", cfg], stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable("docker-registry exited")
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            time.sleep(0.1)
        raise Unavailable("docker-registry did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
