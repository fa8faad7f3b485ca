"""Time wxeval.api.score with and without error maps on the benchmark's 1.5° stores.

Usage: ``python scripts/bench_maps.py [--root /tmp/wxeval-bench] [--days 7] [--repeat 2]``.
The stores are the ones ``scripts/benchmark.py`` writes (reused when complete); one model
(``hres_like``), ``--days`` of 00/12 UTC inits, leads 0-240 h every 12 h, 10 fields, every
metric, 16 regions. Each run scores into a fresh folder; runs alternate without/with maps.
Prints the wall times and the extra cost of maps in % of the run without them (best against
best and median against median: the machine may be shared). With maps the run also stores the
map sums in the (fresh) statistics store, as every first run does.
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
    args = ap.parse_args()
    from wxeval.api import score

    paths = benchmark.ensure_stores(args.root, args.grid, {"hres_like": 31}, print)
    cfg = benchmark.make_config(paths, ["hres_like"], args.days)
    from wxeval.config import validate

    data = cfg.model_dump(mode="python")
    data["evaluation"]["maps"] = True
    with_maps = validate(data, source="benchmark")
    score(cfg, ["hres_like"], None, progress=False)  # warm: imports, numba, page cache
    times: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeat):
        for maps in (False, True):
            out = Path(tempfile.mkdtemp(prefix="bench-maps-"))
            c0, t0 = _cpu(), time.perf_counter()
            score(with_maps if maps else cfg, ["hres_like"], out, progress=False)
            times[maps].append(time.perf_counter() - t0)
            cpu[maps].append(_cpu() - c0)
            shutil.rmtree(out)
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


def _cpu() -> float:
    """CPU seconds (user + system) of this process so far, all threads."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


if __name__ == "__main__":
    main()
