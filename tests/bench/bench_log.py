"""`imggit log` of a 100-step engine image: metadata only, well under a second.

Builds a 100-step image with the classic builder in a private engine, then
times `imggit log` (a fresh process each time, Python start included)
against `docker history`. (tests/engine/test_interop.py proves it never calls `docker save`.)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time

from common import PY, report, rig, run


def main() -> dict[str, float]:
    engine = rig.Engine().start()
    try:
        engine.import_busybox("busybox:base")
        lines = ["FROM busybox:base"]
        for i in range(99):
            lines.append(f"RUN echo {i} > /step{i}" if i % 20 == 0 else f"LABEL step{i}={i}")
        t0 = time.monotonic()
        engine.build("bench/hundred:1", "\n".join(lines) + "\n")
        build = time.monotonic() - t0
        env = engine.env()
        env["IMGGIT_HOME"] = os.path.join(engine.dir, "imggit-home")
        times, dtimes = [], []
        for _ in range(5):
            dt, rss, _ = run([PY, "-m", "imggit", "log", "--oneline", "bench/hundred:1"], env=env)
            times.append(dt)
            dt2, _, _ = run(["docker", "history", "--no-trunc", "bench/hundred:1"], env=env)
            dtimes.append(dt2)
        out = subprocess.run([PY, "-m", "imggit", "log", "--json", "bench/hundred:1"], env=env,
                             capture_output=True, text=True, check=True).stdout
        assert out.count('"step_id"') == 100, "expected 100 steps"
        res = {"imggit_log_s": statistics.median(times), "docker_history_s": statistics.median(dtimes),
               "imggit_peak_rss_mb": rss}
        print("log of a 100-step engine image (median of 5, fresh process each time):")
        report([("imggit log --oneline", f"{res['imggit_log_s']:.3f} s (peak RSS {rss} MB)"),
                ("docker history", f"{res['docker_history_s']:.3f} s"),
                ("(image build, not timed)", f"{build:.0f} s")])
        return res
    finally:
        engine.stop()


if __name__ == "__main__":
    main()
