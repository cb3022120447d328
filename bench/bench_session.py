"""Benchmark: sessions (issue #13) against what an agent service would build instead.

Measured in one run, on a SQLite store in a temporary directory:

1. **Round trip** of ``execute("x = <n>")``, a real durable commit of one
   changed small value each time: an isolated session, an in-process one; and
   the alternatives, each made as durable (written and fsynced): a
   ``code.InteractiveInterpreter`` plus ``dill.dumps(namespace)`` per step,
   and a Jupyter kernel (``jupyter_client``) whose cell also writes a ``dill``
   snapshot. Each with a small state and with 100 MB more in the namespace.
2. **A new session ready to execute** (the fork server already running;
   the first session of a process pays for starting it, shown too), against a
   new Jupyter kernel and a new ``python`` process importing dill.
3. **Recovery after a worker crash** with 500 MB of state: from the call that
   crashes until the next execution has run; against restarting a Jupyter
   kernel and loading its last dill snapshot.
4. **snapshot_state / restore_state** of a 1 GB state (random floats:
   incompressible), into a session on another store; against ``dill.dumps`` /
   ``dill.loads`` of the same namespace.

Usage: python bench/bench_session.py [--scale 1] [--steps 200] [--runs 3]
(``--scale 0.1`` for a quick look). Not a test: docs/performance.md has the
numbers and the machine.
"""

from __future__ import annotations

import argparse
import code
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dill

import stashdb

MB = 1_000_000
HUNDRED_MB = "import numpy as np\nbulk = np.random.default_rng(1).random({n})"


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def timed(step: Callable[[int], Any], steps: int, warmup: int = 10) -> list[float]:
    for i in range(warmup):
        step(i)
    times = []
    for i in range(steps):
        start = time.perf_counter()
        step(i + warmup)
        times.append(time.perf_counter() - start)
    return times


def durable_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# -- 1. round trips -----------------------------------------------------------------------


def session_round_trip(work: Path, isolated: bool, bulk: int, steps: int) -> float:
    with stashdb.Session(work / "store", isolated=isolated) as s:
        if bulk:
            s.execute(HUNDRED_MB.format(n=bulk))
        return median_ms(timed(lambda i: s.execute(f"x = {i}").raise_for_error(), steps))


def interpreter_round_trip(work: Path, bulk: int, steps: int) -> float:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    interpreter = code.InteractiveInterpreter(namespace)
    if bulk:
        interpreter.runsource(HUNDRED_MB.format(n=bulk), symbol="exec")
    path = work / "state.dill"

    def step(i: int) -> None:
        interpreter.runsource(f"x = {i}")
        state = {k: v for k, v in namespace.items() if not k.startswith("__")}
        durable_write(path, dill.dumps(state))

    return median_ms(timed(step, steps))


KERNEL_SNAPSHOT = (
    "import dill as _dill, os as _os\n"
    "_s = {{k: v for k, v in globals().items() if not k.startswith('_') and "
    "k not in ('In', 'Out', 'exit', 'quit', 'get_ipython')}}\n"
    "with open({path!r}, 'wb') as _f:\n"
    "    _f.write(_dill.dumps(_s)); _f.flush(); _os.fsync(_f.fileno())\n"
)


class Kernel:
    """A Jupyter kernel driven by jupyter_client, as a service would drive one."""

    def __init__(self) -> None:
        from jupyter_client.manager import start_new_kernel

        self.manager, self.client = start_new_kernel(kernel_name="python3")

    def run(self, cell: str) -> None:
        reply = self.client.execute_interactive(cell, timeout=600, output_hook=lambda m: None)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"kernel cell failed: {reply['content']}")

    def restart(self) -> None:
        self.manager.restart_kernel(now=True)
        self.client.wait_for_ready(timeout=120)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def kernel_round_trip(work: Path, bulk: int, steps: int) -> float:
    kernel = Kernel()
    try:
        if bulk:
            kernel.run(HUNDRED_MB.format(n=bulk))
        snapshot = KERNEL_SNAPSHOT.format(path=str(work / "kernel.dill"))
        return median_ms(timed(lambda i: kernel.run(f"x = {i}\n" + snapshot), steps))
    finally:
        kernel.close()


# -- 2. new sessions ----------------------------------------------------------------------


def new_session_ms(work: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        s = stashdb.Session(work / "store")
        s.execute("ready = True")
        times.append(time.perf_counter() - start)
        s.close()
    return median_ms(times)


def first_session_in_a_process_ms(work: Path, runs: int) -> float:
    script = textwrap.dedent(f"""
        import time
        start = time.perf_counter()
        import stashdb
        s = stashdb.Session({str(work / "store")!r})
        s.execute("ready = True")
        print(time.perf_counter() - start)
        s.close()
    """)
    times = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              check=True, cwd=work)
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return median_ms(times)


def new_kernel_ms(runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        kernel = Kernel()
        kernel.run("ready = True")
        times.append(time.perf_counter() - start)
        kernel.close()
    return median_ms(times)


def new_process_ms(runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import dill; ready = True"], check=True)
        times.append(time.perf_counter() - start)
    return median_ms(times)


# -- 3. recovery --------------------------------------------------------------------------


def recovery_s(work: Path, size: int, runs: int) -> float:
    times = []
    with stashdb.Session(work / "store") as s:
        s.execute(f"import numpy as np\nstate = np.random.default_rng(2).random({size // 8})")
        for _ in range(runs):
            start = time.perf_counter()
            with contextlib.suppress(stashdb.WorkerCrashed):
                s.execute("import os; os._exit(1)")
            s.execute("checked = float(state[-1])").raise_for_error()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def kernel_recovery_s(work: Path, size: int, runs: int) -> float:
    kernel = Kernel()
    path = str(work / "kernel.dill")
    try:
        kernel.run(f"import numpy as np\nstate = np.random.default_rng(2).random({size // 8})\n"
                   + KERNEL_SNAPSHOT.format(path=path))
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            kernel.restart()
            kernel.run(f"import dill\nglobals().update(dill.loads(open({path!r}, 'rb').read()))\n"
                       "checked = float(state[-1])")
            times.append(time.perf_counter() - start)
        return statistics.median(times)
    finally:
        kernel.close()


# -- 4. bundles ---------------------------------------------------------------------------


def bundle_gbps(work: Path, size: int, runs: int) -> tuple[float, float, int]:
    snaps, restores = [], []
    with stashdb.Session(work / "store") as s:
        s.execute(f"import numpy as np\nstate = np.random.default_rng(3).random({size // 8})")
        for run in range(runs):
            start = time.perf_counter()
            blob = s.snapshot_state()
            snaps.append(time.perf_counter() - start)
            with stashdb.Session(work / f"other-{run}") as other:
                start = time.perf_counter()
                other.restore_state(blob)
                restores.append(time.perf_counter() - start)
                other.execute(f"assert state.size == {size // 8}").raise_for_error()
            shutil.rmtree(work / f"other-{run}")
            length = len(blob)
            del blob
    return size / statistics.median(snaps) / 1e9, size / statistics.median(restores) / 1e9, length


def dill_gbps(size: int, runs: int) -> tuple[float, float]:
    import numpy as np

    state = {"state": np.random.default_rng(3).random(size // 8)}
    dumps, loads = [], []
    for _ in range(runs):
        start = time.perf_counter()
        blob = dill.dumps(state)
        dumps.append(time.perf_counter() - start)
        start = time.perf_counter()
        dill.loads(blob)
        loads.append(time.perf_counter() - start)
        del blob
    return size / statistics.median(dumps) / 1e9, size / statistics.median(loads) / 1e9


# -- the table ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bulk = int(100 * MB * args.scale) // 8
    work = Path(tempfile.mkdtemp(prefix="stashdb-bench-session-"))
    os.chdir(work)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, SQLite store in {work}")
    try:
        print("\n1. execute('x = <n>') round trip, durable; median ms")
        rows = []
        for label, extra in (("small state", 0), (f"+{100 * args.scale:g} MB state", bulk)):
            ours = session_round_trip(work, True, extra, args.steps)
            local = session_round_trip(work, False, extra, args.steps)
            interp = interpreter_round_trip(work, extra, args.steps)
            kernel = kernel_round_trip(work, extra, max(20, args.steps // 4))
            rows.append((label, ours, local, interp, kernel))
        print(f"{'':18}{'isolated':>10}{'in-process':>12}{'interp+dill':>13}{'kernel+dill':>13}"
              f"{'dill/ours':>11}{'kernel/ours':>13}")
        for label, ours, local, interp, kernel in rows:
            print(f"{label:18}{ours:>10.2f}{local:>12.2f}{interp:>13.2f}{kernel:>13.2f}"
                  f"{interp / ours:>10.1f}x{kernel / ours:>12.1f}x")

        print("\n2. a new session ready to execute; median ms")
        warm = new_session_ms(work, 20)
        first = first_session_in_a_process_ms(work, args.runs)
        kernel_start = new_kernel_ms(args.runs)
        process = new_process_ms(args.runs)
        print(f"stashdb session (fork server running)   {warm:8.1f}")
        print(f"stashdb, first in a process (+server)   {first:8.1f}")
        print(f"new Jupyter kernel                      {kernel_start:8.1f}  "
              f"({kernel_start / warm:.0f}x)")
        print(f"new python process importing dill       {process:8.1f}  ({process / warm:.0f}x)")

        size = int(500 * MB * args.scale)
        print(f"\n3. recovery after a crash with {size / MB:g} MB of state, until executing "
              "again; median s")
        ours_rec = recovery_s(work, size, args.runs)
        kernel_rec = kernel_recovery_s(work, size, args.runs)
        print(f"stashdb session      {ours_rec:8.2f}")
        print(f"kernel restart+dill  {kernel_rec:8.2f}  ({kernel_rec / ours_rec:.1f}x)")

        size = int(1000 * MB * args.scale)
        print(f"\n4. snapshot_state / restore_state of {size / MB:g} MB; median GB/s")
        snap, restore, length = bundle_gbps(work, size, args.runs)
        dumps, loads = dill_gbps(size, args.runs)
        print(f"stashdb  snapshot {snap:6.2f}  restore {restore:6.2f}   (bundle "
              f"{length / MB:.0f} MB)")
        print(f"dill     dumps    {dumps:6.2f}  loads   {loads:6.2f}")
    finally:
        os.chdir("/")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
