"""Time wxeval.api.score with and without error maps on the benchmark's 1.5° stores.

Usage: ``python scripts/bench_maps.py [--root /tmp/wxeval-bench] [--days 7] [--repeat 2]``.
The stores are the ones ``scripts/benchmark.py`` writes (reused when complete); one model
(``hres_like``), ``--days`` of 00/12 UTC inits, leads 0-240 h every 12 h, 10 fields, every
metric, 16 regions. Each run scores into a fresh folder; runs alternate without/with maps.
Prints the wall times and the extra cost of maps in % of the run without them (best against
best and median against median: the machine may be shared). With maps the run also stores the
map sums in the (fresh) statistics store, as every first run does.

Then, side by side, what the maps' memory alone costs on this machine: the run's map sums
(float64, count, bias, MSE and MAE per lead, level and grid point: what the tasks add into
and the maps are made from) are that many bytes the run without maps never holds, so a run
with maps touches them for the first time. Timed: allocating and writing that many bytes on
two threads (as two tasks do), once after the process has been idle ``--idle`` seconds (memory
freed that long ago has gone back to the machine) and once straight after freeing them; each
in % of the best run without maps.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchmark  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="/tmp/wxeval-bench", type=Path)
    ap.add_argument("--grid", default="240x121")
    ap.add_argument("--days", default=7, type=int)
    ap.add_argument("--repeat", default=2, type=int)
    ap.add_argument("--idle", default=6.0, type=float,
                    help="seconds idle before the first-touch measurement (default 6)")
    args = ap.parse_args()
    from wxeval.api import score

    paths = benchmark.ensure_stores(args.root, args.grid, {"hres_like": max(31, args.days)},
                                    print)
    cfg = benchmark.make_config(paths, ["hres_like"], args.days)
    from wxeval.config import validate

    data = cfg.model_dump(mode="python")
    data["evaluation"]["maps"] = True
    with_maps = validate(data, source="benchmark")
    for warm in (cfg, with_maps):  # warm: imports, numba (the maps' kernels too), page cache
        score(warm, ["hres_like"], None, progress=False)
    times: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    sums_bytes = 0
    for _ in range(args.repeat):
        for maps in (False, True):
            out = Path(tempfile.mkdtemp(prefix="bench-maps-"))
            c0, t0 = _cpu(), time.perf_counter()
            report = score(with_maps if maps else cfg, ["hres_like"], out, progress=False)
            times[maps].append(time.perf_counter() - t0)
            cpu[maps].append(_cpu() - c0)
            shutil.rmtree(out)
            if maps:  # the maps are made in place of the sums: the same arrays
                sums_bytes = sum(da.nbytes for name, da in report.maps["hres_like"].items()
                                 if "." in name)
            del report
    import statistics

    plain, mapped = min(times[False]), min(times[True])
    print(f"without maps: {times[False]} s; with maps: {times[True]} s")
    print(f"maps cost {100 * (mapped - plain) / plain:.1f} % of the run (best of {args.repeat})")
    plain, mapped = statistics.median(times[False]), statistics.median(times[True])
    print(f"maps cost {100 * (mapped - plain) / plain:.1f} % of the run (median of "
          f"{args.repeat})")
    # CPU seconds (user + system, all threads) are less sensitive to other jobs on the machine
    plain, mapped = statistics.median(cpu[False]), statistics.median(cpu[True])
    print(f"CPU without maps: {cpu[False]} s; with maps: {cpu[True]} s")
    print(f"maps cost {100 * (mapped - plain) / plain:.1f} % of the run's CPU time (median)")
    best = min(times[False])
    time.sleep(args.idle)
    idle = first_touch(sums_bytes)
    again = first_touch(sums_bytes)
    print(f"the run's map sums, {sums_bytes / 2**20:.0f} MiB, first written on 2 threads: "
          f"{idle:.3f} s after {args.idle:g} s idle = {100 * idle / best:.1f} % of the run without "
          f"maps; {again:.3f} s straight after freeing them = {100 * again / best:.1f} %")


def first_touch(nbytes: int) -> float:
    """Seconds to allocate and write ``nbytes`` of float64 memory (half on each of two
    threads, as two tasks add their sums), then free it."""
    import threading

    import numpy as np

    halves = [nbytes // 16, nbytes // 8 - nbytes // 16]  # float64 elements per thread

    def touch(n: int) -> None:
        a = np.empty(n)
        a.fill(1.0)  # not 0: zeros of fresh memory may be left to the kernel

    threads = [threading.Thread(target=touch, args=(n,)) for n in halves]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def _cpu() -> float:
    """CPU seconds (user + system) of this process so far, all threads."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


if __name__ == "__main__":
    main()
