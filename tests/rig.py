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
            write_context(d, dockerfile, files)
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


def write_context(d: str, dockerfile: str, files: dict[str, bytes | str] | None = None,
                  mtime: int | None = None) -> None:
    """A build context in ``d``: the Dockerfile and the files (with ``mtime``: mode 0644 and that time)."""
    with open(os.path.join(d, "Dockerfile"), "w") as f:
        f.write(dockerfile)
    for name, data in (files or {}).items():
        p = os.path.join(d, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        if mtime is not None:
            os.chmod(p, 0o644)
            os.utime(p, (mtime, mtime))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """Debian's docker-registry (distribution 2.8) on 127.0.0.1.

    Plain http by default; ``tls=(crt, key)`` serves https; ``htpasswd``
    (the text of an htpasswd file) asks for Basic auth; ``token`` (a
    ``TokenIssuer``) asks for Bearer tokens from it.
    """

    def __init__(self, *, tls: tuple[str, str] | None = None, htpasswd: str | None = None,
                 token: "TokenIssuer | None" = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="imggit-registry-")
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.tls = tls
        self.htpasswd = htpasswd
        self.token = token

    def _extra_config(self) -> str:
        text = ""
        if self.tls:
            text += f"  tls:\n    certificate: {self.tls[0]}\n    key: {self.tls[1]}\n"
        if self.htpasswd is not None:
            path = os.path.join(self.dir, "htpasswd")
            with open(path, "w") as f:
                f.write(self.htpasswd + "\n")
            text += f"auth:\n  htpasswd:\n    realm: imggit-test\n    path: {path}\n"
        elif self.token is not None:
            t = self.token
            text += (f"auth:\n  token:\n    realm: {t.realm}\n    service: {t.service}\n"
                     f"    issuer: {t.issuer}\n    rootcertbundle: {t.ca.crt}\n")
        return text

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
""" + self._extra_config())
        log = open(os.path.join(self.dir, "registry.log"), "wb")
        self.proc = subprocess.Popen([exe, "serve", cfg], stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"docker-registry exited: {self.log_tail()}")
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            time.sleep(0.1)
        raise Unavailable("docker-registry did not start")

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "registry.log"), "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def blob_file(self, digest: str) -> str:
        """Where the registry keeps a blob's bytes (filesystem driver)."""
        hexd = digest.split(":", 1)[1]
        return os.path.join(self.dir, "data", "docker", "registry", "v2", "blobs", "sha256", hexd[:2], hexd, "data")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- registries with TLS and auth ----------------------------------------------------------


def _openssl(*args: str, input: bytes | None = None) -> bytes:
    if not shutil.which("openssl"):
        raise Unavailable("openssl not installed")
    p = subprocess.run(["openssl", *args], input=input, capture_output=True)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {p.stderr.decode(errors='replace')}")
    return p.stdout


class CA:
    """A throwaway certificate authority made with the openssl CLI."""

    def __init__(self, root: str | None = None) -> None:
        self.dir = root or tempfile.mkdtemp(prefix="imggit-ca-")
        self.crt = os.path.join(self.dir, "ca.crt")
        self.key = os.path.join(self.dir, "ca.key")
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", self.crt,
                 "-days", "2", "-subj", "/CN=imggit test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name: str, sans: str = "IP:127.0.0.1,DNS:localhost",
              usage: str = "serverAuth") -> tuple[str, str]:
        """A leaf certificate and its key, signed by this CA."""
        crt, key, csr = (os.path.join(self.dir, f"{name}.{x}") for x in ("crt", "key", "csr"))
        ext = os.path.join(self.dir, f"{name}.ext")
        with open(ext, "w") as f:
            f.write(f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                    f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
                    + (f"subjectAltName={sans}\n" if sans else ""))
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", csr, "-CA", self.crt, "-CAkey", self.key, "-CAcreateserial",
                 "-out", crt, "-days", "2", "-extfile", ext)
        return crt, key

    def certs_d(self, hostport: str) -> str:
        """A certs.d directory (Docker's layout) trusting this CA for ``hostport``."""
        root = os.path.join(self.dir, "certs.d")
        os.makedirs(os.path.join(root, hostport), exist_ok=True)
        shutil.copy(self.crt, os.path.join(root, hostport, "ca.crt"))
        return root

    def stop(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def htpasswd_line(user: str, password: str) -> str:
    """One htpasswd line with a bcrypt hash (what distribution accepts), without apache2-utils."""
    try:
        import bcrypt
    except ImportError:
        raise Unavailable("the bcrypt package is missing (pip install -e '.[test]')") from None
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}"


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """A token server (distribution's token spec) in a thread, signing RS256 JWTs.

    Users in ``users`` get every action they ask for; anonymous clients get
    ``pull`` on the repositories in ``public`` and nothing else. Every token
    request is recorded in ``log`` (user, scopes). ``expire_next`` makes
    that many of the next tokens already expired (to test refresh on 401).
    """

    def __init__(self, ca: CA, users: dict[str, str], public: tuple[str, ...] = (),
                 service: str = "imggit-test", issuer: str = "imggit-test-issuer") -> None:
        import threading

        self.ca = ca
        self.users = users
        self.public = set(public)
        self.service = service
        self.issuer = issuer
        self.crt, self.key = ca.issue("token-signer", sans="", usage="codeSigning")
        self.x5c = __import__("base64").b64encode(_openssl("x509", "-in", self.crt, "-outform", "DER")).decode()
        self.log: list[dict] = []
        self.expire_next = 0
        self.lock = threading.Lock()
        self.server = None
        self.port = 0

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def sign(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        head = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        sig = _openssl("dgst", "-sha256", "-sign", self.key, input=head.encode())
        return head + "." + _b64url(sig)

    def grant(self, user: str | None, scopes: list[str]) -> list[dict]:
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3 or parts[0] != "repository":
                continue
            name, actions = ":".join(parts[1:-1]), [a for a in parts[-1].split(",") if a]
            if user is None:
                actions = [a for a in actions if a == "pull" and name in self.public]
            if actions:
                access.append({"type": "repository", "name": name, "actions": actions})
        return access

    def start(self) -> "TokenIssuer":
        import base64
        import threading
        import uuid
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:  # quiet
                pass

            def _answer(self, form: dict[str, list[str]], method: str) -> None:
                user = None
                auth = self.headers.get("Authorization", "")
                if form.get("grant_type", [""])[0] == "refresh_token":
                    user = form.get("refresh_token", [""])[0].removeprefix("refresh-")
                    if user not in issuer.users:
                        return self._send(401, {"error": "invalid refresh token"})
                elif auth.startswith("Basic "):
                    u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
                    if issuer.users.get(u) != p:
                        with issuer.lock:
                            issuer.log.append({"user": u, "scopes": [], "refused": True, "method": method})
                        return self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                    user = u
                scopes = [s for v in form.get("scope", []) for s in v.split(" ") if s]
                now = int(time.time())
                with issuer.lock:
                    expired = issuer.expire_next > 0
                    issuer.expire_next -= 1 if expired else 0
                    issuer.log.append({"user": user, "scopes": scopes, "expired": expired, "method": method})
                exp = now - 600 if expired else now + 300
                claims = {"iss": issuer.issuer, "sub": user or "", "aud": issuer.service, "exp": exp,
                          "nbf": now - 900 if expired else now - 10, "iat": now - 900 if expired else now,
                          "jti": uuid.uuid4().hex, "access": issuer.grant(user, scopes)}
                token = issuer.sign(claims)
                body = {"token": token, "expires_in": 300}
                if form.get("grant_type"):
                    body = {"access_token": token, "expires_in": 300}
                self._send(200, body)

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer(parse_qs(urlsplit(self.path).query), "GET")

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                self._answer(parse_qs(self.rfile.read(n).decode()), "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
