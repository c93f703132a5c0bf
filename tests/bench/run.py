"""Run every benchmark (``make bench``): each starts its own engine/registry and prints its numbers.

    python tests/bench/run.py              all of them
    python tests/bench/run.py log squash   some of them
    IMGGIT_BENCH_SCALE=0.2 python tests/bench/run.py squash   a smaller squash image (quick check)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = {
    "log": ["bench_log.py"],
    "squash": ["bench_squash.py", "--scale", os.environ.get("IMGGIT_BENCH_SCALE", "1.0")],
    "registry": ["bench_registry.py"],
}


def main() -> int:
    names = sys.argv[1:] or list(BENCHES)
    failed = []
    for name in names:
        if name not in BENCHES:
            print(f"unknown benchmark {name!r}; choose from {', '.join(BENCHES)}", file=sys.stderr)
            return 2
        print(f"=== {name} ===", flush=True)
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, *BENCHES[name]], cwd=HERE)
        print(f"=== {name}: {'ok' if r.returncode == 0 else 'FAILED'} in {time.monotonic() - t0:.0f} s ===\n",
              flush=True)
        if r.returncode != 0:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
