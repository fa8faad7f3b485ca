"""Benchmark wxeval against the hardware limit on synthetic WeatherBench 2 stores.

Usage::

    python scripts/benchmark.py                       # the full run (1.5°, ~10-25 min)
    python scripts/benchmark.py --quick               # smoke test (64x32, a few days, ~1 min)
    python scripts/benchmark.py --json bench.json --root /tmp/wxeval-bench --naive-limit 900

The job (issue 4): 00/12 UTC inits, leads 0-240 h every 12 h, 10 fields (geopotential,
temperature, u and v wind at 500 and 850 hPa, 2m_temperature, mean_sea_level_pressure), every
metric, the 13 standard regions plus the 3 land regions (the truth carries a land_sea_mask).

Stores are written once under ``--root`` (``<root>/<grid>[-<fields>]-<codec>-<layout>/``) with
:mod:`wxeval.synthetic` and reused when a marker says they are complete for the same
specification: the truth holds only the valid times the longest job needs, the climatology
only the (dayofyear, hour) pairs needed, the first model holds every init of the longest job
and the two others one month. Codecs (``--codecs``): ``lz4`` = Blosc-LZ4, clevel 5, byte
shuffle (WB2's public stores, zarr-python 2's default; the default here) and ``zstd`` = Zstd
level 1. Forecast chunk layouts (``--layouts``): ``lead`` = one chunk per init × lead (WB2's
HRES and GraphCast) and ``init`` = one chunk per init holding all leads and levels; truth and
climatology have one time (or hour × dayofyear) per chunk, all levels, the whole grid.
Measurements (a), (e), (b) for one model and one month, and (p), run for every codec × layout;
everything else only for the first codec and layout. All measurements read the stores from the
page cache (they were just written or read).

Every measurement runs in its own Python subprocess, so its peak RSS (``ru_maxrss``) is clean;
wall and CPU times exclude the imports. Measurements:

(a) ``raw read``: every forecast, truth and climatology chunk the job needs, through
    zarr-python's array API only (``zarr.open_group(store)[var][slices]``), one block per
    (variable, init) for forecasts and per contiguous run of times for truth/climatology,
    spread over a ``ThreadPoolExecutor(2)``; the data is decoded and thrown away. This is the
    practical limit of any evaluator that reads through zarr-python with 2 threads.
(e) ``decode-only``: every forecast, truth and climatology chunk file (a) reads, read as bytes
    (``Path.read_bytes``) and decoded with its numcodecs codec taken from the store's own
    ``.zarray`` (compressor, then filters), into one reused buffer per thread, over a
    ``ThreadPoolExecutor(2)``; nothing else (no zarr-python; listing the files is not timed).
    This is the limit of any evaluator that reads these stores with 2 threads
    (``scripts/decode_only.py``; issue 16).
(f) ``decode + kernel`` (only with ``--only f``): (e), and on the same threads each decoded
    forecast chunk's fields reduced by wxeval's compiled kernel
    (:func:`wxeval.statistics.compute`: errors, anomalies, NaN counts, 16 regions with land)
    against a fixed truth and climatology; no plan, tasks, alignment or outputs. f/e is the
    floor of b/e for this kernel, b/f the cost of everything else wxeval does.
(g) ``decode + products`` (only with ``--only g``): (e), and each stack of decoded forecast
    fields reduced to the six area-weighted product sums alone (d², d, |d|, f′o′, f′², o′²;
    one region, no NaN checks; ``products_only``) against (f)'s fixed truth and climatology
    fields, in one flat vector loop per field: about the least an evaluator forming these
    products per point in float64 does (only Σ w o′², the same for every lead and model at a
    valid time, could be shared), so g/e is close to a floor under its b/e whatever its
    regions, kernel design or pipeline.
(b) ``wxeval``: :func:`wxeval.api.score` with a fresh output folder (statistics store,
    netCDF, CSV and JSON written) for one model and one month, one model and each longer
    ``--months`` range, and three models in one pass (``score(cfg, [m1, m2, m3], ...)``).
(c) ``naive xarray``: a straightforward xarray + dask implementation of rmse, mae, bias and acc
    for all 16 regions (``xr.open_zarr`` with the stores' chunks, ``truth.sel(time=valid_time)``,
    climatology selected by the valid time's dayofyear and hour, weights as xarray,
    ``.weighted(...).mean``, one ``dask.compute``) on one week of inits only; it is killed after
    ``--naive-limit`` seconds and reported as "> limit". wxeval is run on the same week, and
    both tables are compared (max relative difference), so both do the same work.
(k) ``kernel``: the compiled kernel alone on 64 fields in memory, in both storage orders
    (GB/s of forecast per thread).
(h) ``headline``: WeatherBench 2's headline job (``--only h``, stores under
    ``<root>/<grid>-headline``): one month, the eight headline variables with 10 m wind speed
    and 24 h precipitation derived in the pass (RMSE, SEEPS), against reading the same chunks
    through zarr-python with 2 threads; the ratio of their wall times.
(n) ``ensemble`` (only with ``--only n``, self-contained, its own stores under
    ``<root>/ens-<grid>/``): IFS ENS-like stores of 10 and 50 members (one chunk per init ×
    lead × all members; z and t at 500/850 hPa, t2m, msl: 6 fields, 4 inits × 21 leads); wxeval
    (every ensemble metric, the rank histogram and the ensemble mean's rmse/acc/bias/mae, one
    pass, 2 threads) against reading and decoding the same forecast chunks with 2 threads, and
    peak RSS with 50 vs 10 members at the same ``memory_per_task`` (64 MiB, small enough to
    bind). ``python scripts/benchmark.py --only n``.
(p) ``profile``: the one-model, one-month (b) job under :mod:`cProfile` with
    ``scheduler="synchronous"`` (one thread; Blosc's own threads off too), printing the top
    ``--profile-top`` functions by own time, and wxeval's by cumulative time. Profiling slows
    Python calls, so its wall time is not comparable with (b).
(d) ``incremental``: score days 1-30 into a fresh folder, then rerun with the init range
    extended by one day into the same folder; the rerun's wall time as a fraction of the full
    run (target < 10 %), and the same fraction for the whole processes (interpreter start-up
    and imports included, as a cron job pays them).

"GB read" counts uncompressed float32 bytes: forecast fields of every model, plus the unique
truth fields and the unique climatology fields the job needs (each counted once). Throughput
is GB read / wall time. Ratios: b/e and b/a per codec and layout (same bytes; issue 16's
target b/e <= 1.5; b/a's <= 1.5), c/b per byte (naive seconds per
GB over wxeval's, on the same week and vs the month), peak RSS of the longest range over one
month (target <= 1.2), three models over (one model + the extra forecast bytes at the
one-model throughput) (target < 1.5), and the incremental fraction (target < 0.1).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from decode_only import ZarrV2Array, read_and_decode

VARIABLES = (
    "geopotential",
    "temperature",
    "u_component_of_wind",
    "v_component_of_wind",
    "2m_temperature",
    "mean_sea_level_pressure",
)
LEVELS = (500, 850)
#: ``--fields``: the default set above (10 fields), or WeatherBench 2's 1.5° headline set of
#: issue 4's reference job (5 upper-air variables on its 13 levels + 4 surface: 69 fields).
FIELD_SETS = {
    "small": (VARIABLES, LEVELS),
    "wb2": (
        ("geopotential", "temperature", "u_component_of_wind", "v_component_of_wind",
         "specific_humidity", "2m_temperature", "mean_sea_level_pressure",
         "10m_u_component_of_wind", "10m_v_component_of_wind"),
        (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000),
    ),
}
LEAD_HOURS = tuple(range(0, 241, 12))
INIT_HOURS = (0, 12)
START = "2020-01-01"
SEED = 2020
FORMAT = 2  # bump when the store specification below changes
NAIVE_METRICS = ("rmse", "mae", "bias", "acc")
#: ``--codecs``: the synthetic stores' chunk codec (zarr v2 compressor).
CODECS = ("lz4", "zstd")
#: ``--layouts``: forecast chunks of one init × lead, or one init with all leads and levels.
LAYOUTS = {"lead": "chunk per init×lead", "init": "chunk per init"}


def make_codec(name: str):
    """``lz4``: Blosc-LZ4 clevel 5 with byte shuffle (WB2's public stores, zarr-python 2's
    default); ``zstd``: Zstd level 1 (:func:`wxeval.synthetic.default_compressor`)."""
    import numcodecs

    if name == "lz4":
        return numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    if name == "zstd":
        return numcodecs.Zstd(level=1)
    raise SystemExit(f"unknown codec {name!r}; known: {', '.join(CODECS)}")


def layout_chunks(layout: str) -> dict[str, int] | None:
    """The forecast stores' ``chunks=`` of :func:`wxeval.synthetic.write_forecast`."""
    if layout == "lead":
        return None  # synthetic's default: one chunk per init × lead, all levels
    if layout == "init":
        return {"prediction_timedelta": len(LEAD_HOURS)}
    raise SystemExit(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")


# ------------------------------------------------------------------------------- job geometry


def use_fields(name: str) -> None:
    """Select the field set (module-wide, in the parent and in every child)."""
    global VARIABLES, LEVELS
    VARIABLES, LEVELS = FIELD_SETS[name]


def n_fields() -> int:
    from wxeval.synthetic import VARIABLES as KNOWN

    return sum(len(LEVELS) if KNOWN[v][2] else 1 for v in VARIABLES)


def init_times(days: int, first_day: int = 1) -> np.ndarray:
    start = pd.Timestamp(START) + pd.Timedelta(days=first_day - 1)
    return pd.date_range(start, periods=days * len(INIT_HOURS), freq="12h").values


def lead_times() -> np.ndarray:
    return pd.to_timedelta(list(LEAD_HOURS), unit="h").values


def valid_times(inits: np.ndarray) -> np.ndarray:
    return np.unique((inits[:, None] + lead_times()[None, :]).ravel())


def clim_pairs(valid: np.ndarray) -> np.ndarray:
    idx = pd.DatetimeIndex(valid)
    return np.unique(np.stack([idx.day_of_year, idx.hour], axis=1), axis=0)


def job_bytes(days: int, n_models: int, grid: str, first_day: int = 1) -> dict:
    """Uncompressed float32 bytes a job reads: forecasts, unique truth and climatology fields."""
    from wxeval.synthetic import Grid

    g = Grid.named(grid)
    field = 4 * g.nlon * g.nlat * n_fields()
    inits = init_times(days, first_day)
    valid = valid_times(inits)
    fc = n_models * len(inits) * len(LEAD_HOURS) * field
    truth = len(valid) * field
    clim = len(clim_pairs(valid)) * field
    return {"forecast": fc, "truth": truth, "climatology": clim, "total": fc + truth + clim}


def month_days(months: int, quick: bool) -> int:
    if quick:
        return 4 * months
    start = pd.Timestamp(START)
    return int((start + pd.DateOffset(months=months) - start) / pd.Timedelta(days=1))


# ------------------------------------------------------------------------------- stores


def _spec_ok(path: Path, spec: dict) -> bool:
    marker = path.with_name(path.name + ".complete.json")
    return path.exists() and marker.exists() and json.loads(marker.read_text()) == spec


def _mark(path: Path, spec: dict) -> None:
    path.with_name(path.name + ".complete.json").write_text(json.dumps(spec, indent=1))


def store_folder(grid: str, fields: str, codec: str, layout: str) -> str:
    """``<grid>[-<fields>]-<codec>-<layout>``: stores of different specs never share a folder."""
    return f"{grid}{'' if fields == 'small' else '-' + fields}-{codec}-{layout}"


def ensure_stores(
    root: Path, grid: str, model_days: dict[str, int], log, folder: str | None = None,
    codec: str = CODECS[0], layout: str = "lead",
) -> dict[str, Path]:
    """Write (or reuse) truth, climatology and forecast stores under ``root/folder`` (default
    ``root/<grid>-<codec>-<layout>``) with chunks compressed by ``codec`` and forecasts in
    ``layout``; returns paths by role/model."""
    from wxeval import synthetic

    folder = root / (folder or store_folder(grid, "small", codec, layout))
    folder.mkdir(parents=True, exist_ok=True)
    longest = max(model_days.values())
    valid = valid_times(init_times(longest))
    pairs = clim_pairs(valid)
    compressor = make_codec(codec)
    common = {"format": FORMAT, "grid": grid, "variables": VARIABLES, "levels": LEVELS,
              "seed": SEED, "codec": compressor.get_config()}
    common = json.loads(json.dumps(common))
    kw = dict(variables=VARIABLES, levels=LEVELS, grid=grid, seed=SEED, compressor=compressor)
    chunks = layout_chunks(layout)
    paths = {"truth": folder / "era5.zarr", "climatology": folder / "climatology.zarr"}
    jobs = [
        ("truth", {**common, "times": [str(t) for t in valid]},
         lambda p: synthetic.write_truth(p, valid, **kw)),
        ("climatology", {**common, "pairs": pairs.tolist(), "hours": list(INIT_HOURS)},
         lambda p: synthetic.write_climatology(
             p, dayofyears=np.unique(pairs[:, 0]), hours=INIT_HOURS, **kw)),
    ]
    for name, days in model_days.items():
        paths[name] = folder / f"{name}.zarr"
        error = synthetic.DEMO_MODELS[name]
        spec = {**common, "start": START, "days": days, "leads": list(LEAD_HOURS),
                "error": repr(error), "chunks": chunks}
        jobs.append((name, spec, lambda p, d=days, e=error: synthetic.write_forecast(
            p, init_times(d), list(LEAD_HOURS), error=e, chunks=chunks, **kw)))
    for name, spec, write in jobs:
        path = paths[name]
        if _spec_ok(path, spec):
            log(f"reusing {path}")
            continue
        shutil.rmtree(path, ignore_errors=True)
        t0 = time.perf_counter()
        write(path)
        _mark(path, spec)
        log(f"wrote {path} in {time.perf_counter() - t0:.1f} s")
    return paths


def make_config(paths: dict[str, Path], models: list[str], days: int, first_day: int = 1):
    from wxeval.config import validate

    start = pd.Timestamp(START) + pd.Timedelta(days=first_day - 1)
    stop = start + pd.Timedelta(days=days - 1)
    return validate({
        "truth": {"path": str(paths["truth"])},
        "climatology": {"path": str(paths["climatology"])},
        "models": {m: {"path": str(paths[m])} for m in models},
        "evaluation": {
            "init_times": {"start": start.strftime("%Y-%m-%d"), "stop": stop.strftime("%Y-%m-%d"),
                           "hours": list(INIT_HOURS)},
            "lead_times": {"start": "0h", "stop": f"{LEAD_HOURS[-1]}h",
                           "step": f"{LEAD_HOURS[1] - LEAD_HOURS[0]}h"},
            "variables": list(VARIABLES),
            "levels": list(LEVELS),
            "regions": "all",
        },
    }, source="benchmark")


# ------------------------------------------------------------------------------- children


def _usage(t0: float, c0: float) -> dict:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
            "peak_rss_mb": ru.ru_maxrss / 1024}


def child_raw(p: dict) -> dict:
    """(a) Read every needed chunk through zarr's array API with 2 threads."""
    import zarr

    paths, days, models = p["paths"], p["days"], p["models"]
    inits = init_times(days, p.get("first_day", 1))
    valid = valid_times(inits)
    pairs = clim_pairs(valid)
    t0, c0 = time.perf_counter(), time.process_time()
    groups = {k: zarr.open_group(v, mode="r") for k, v in paths.items()
              if k in ("truth", "climatology", *models)}

    def runs(pos: np.ndarray) -> list[slice]:
        pos = np.sort(pos)
        cut = np.flatnonzero(np.diff(pos) != 1) + 1
        return [slice(int(r[0]), int(r[-1]) + 1) for r in np.split(pos, cut)]

    blocks = []  # (array, selection)
    tg = groups["truth"]
    tpos = _time_positions(tg, "time", valid)
    cg = groups["climatology"]
    doys, hours = cg["dayofyear"][...], cg["hour"][...]
    for var in VARIABLES:
        for s in runs(tpos):
            blocks.append((tg[var], (s,)))
        for h in np.unique(pairs[:, 1]):
            hpos = int(np.flatnonzero(hours == h)[0])
            dpos = np.flatnonzero(np.isin(doys, pairs[pairs[:, 1] == h, 0]))
            for s in runs(dpos):
                blocks.append((cg[var], (hpos, s)))
        for m in models:
            g = groups[m]
            ipos = _time_positions(g, "time", inits)
            nlead = g["prediction_timedelta"].shape[0]
            for i in ipos:
                blocks.append((g[var], (int(i), slice(0, nlead))))

    return _read_blocks(blocks, t0, c0)


def _read_blocks(blocks: list, t0: float, c0: float) -> dict:
    """Read every ``(array, selection)`` block (2 threads); usage since ``t0, c0``, bytes, count."""
    from concurrent.futures import ThreadPoolExecutor

    def read(block) -> int:
        arr, sel = block
        return arr[sel].nbytes

    with ThreadPoolExecutor(2) as pool:
        nbytes = sum(pool.map(read, blocks))
    return {**_usage(t0, c0), "bytes_read": int(nbytes), "blocks": len(blocks)}


def _time_positions(group, name: str, wanted: np.ndarray) -> np.ndarray:
    """Positions of ``wanted`` datetimes on a CF-encoded time axis of a zarr group."""
    arr = group[name]
    return _cf_positions(name, arr[...], dict(arr.attrs), wanted, group.store)


def _cf_positions(name: str, raw: np.ndarray, attrs: dict, wanted: np.ndarray,
                  where) -> np.ndarray:
    """Positions of ``wanted`` datetimes on a CF-encoded time axis (raw values, attributes)."""
    import xarray as xr

    attrs = {k: v for k, v in attrs.items() if k != "_ARRAY_DIMENSIONS"}
    decoded = xr.conventions.decode_cf_variable(name, xr.Variable((name,), raw, attrs)).values
    pos = pd.Index(decoded).get_indexer(wanted)
    if (pos < 0).any():
        raise SystemExit(f"{where}: {name} lacks {int((pos < 0).sum())} needed time(s)")
    return pos


def _v2_time_positions(store, name: str, wanted: np.ndarray) -> np.ndarray:
    """:func:`_time_positions` from the Zarr v2 files themselves (no zarr-python)."""
    raw = ZarrV2Array.open(store, name).read()
    attrs = json.loads((Path(store) / name / ".zattrs").read_text())
    return _cf_positions(name, raw, attrs, wanted, store)


def job_chunk_files(paths: dict, days: int, models: list[str],
                    first_day: int = 1) -> list[tuple[ZarrV2Array, Path]]:
    """Every forecast, truth and climatology chunk file of the job, with its array: the
    chunks holding the job's inits (all leads, levels and grid points) of every model, its
    valid times in the truth and its (hour, dayofyear) pairs in the climatology, for every
    variable; each file once. Read without zarr-python (``.zarray`` and coordinate chunks)."""
    inits = init_times(days, first_day)
    valid = valid_times(inits)
    pairs = clim_pairs(valid)
    truth, clim = Path(paths["truth"]), Path(paths["climatology"])
    tpos = _v2_time_positions(truth, "time", valid)
    ipos = {m: _v2_time_positions(paths[m], "time", inits) for m in models}
    doys = ZarrV2Array.open(clim, "dayofyear").read()
    hours = ZarrV2Array.open(clim, "hour").read()
    clim_sel = []
    for h in np.unique(pairs[:, 1]):
        hpos = np.flatnonzero(hours == h)[:1]
        need = pairs[pairs[:, 1] == h, 0]
        dpos = np.flatnonzero(np.isin(doys, need))
        if len(hpos) != 1 or len(dpos) != len(need):
            raise SystemExit(f"{clim}: lacks (dayofyear, hour) pairs of hour {h}")
        clim_sel.append([hpos, dpos])
    files = []
    for var in VARIABLES:
        arrays = [(ZarrV2Array.open(truth, var), [tpos])]
        arrays += [(ZarrV2Array.open(clim, var), sel) for sel in clim_sel]
        arrays += [(ZarrV2Array.open(paths[m], var), [ipos[m]]) for m in models]
        for arr, sel in arrays:
            files += [(arr, f) for f in arr.chunk_files(sel)]
    return files


def child_decode(p: dict) -> dict:
    """(e) Read every needed chunk file as bytes and decode it with its codec, 2 threads."""
    files = job_chunk_files(p["paths"], p["days"], p["models"], p.get("first_day", 1))
    t0, c0 = time.perf_counter(), time.process_time()
    res = read_and_decode(files, threads=2)
    return {**_usage(t0, c0), **res}


def child_floor(p: dict) -> dict:
    """(f) (e) plus the compiled kernel: every chunk file (e) reads, read as bytes and decoded
    with its codec on 2 threads; forecast chunks are decoded into a per-thread stack of
    :data:`FLOOR_FIELDS` fields (or one chunk's, when more), and each full stack is reduced by
    :func:`wxeval.statistics.compute` (errors, anomalies and NaN counts; the 16 regions with
    the truth's land fraction, as (b)) against a fixed truth and climatology of the same
    fields (the kernel's time does not depend on the values, only on them being finite). No
    plan, tasks, alignment or outputs: the floor of any evaluator built on this kernel.

    With ``p["kernel"] == "products"`` ((g)), each stack gets only the six area-weighted
    product sums of :func:`products_only` (one region, the globe; no NaN checks) against (f)'s
    truth and climatology fields: about the least an evaluator that forms these products per
    point in float64 does on the decoded data, whatever its regions, kernel design or
    pipeline. The sums over all fields are returned as ``products``."""
    if p.get("kernel") == "products":
        return _decode_plus(p, _products_reducer)
    return _decode_plus(p, _wxeval_reducer)


def _wxeval_reducer(truth: Path, lat: np.ndarray, lon: np.ndarray):
    """(f)'s reduction of a stack of (lon, lat) fields: wxeval's kernel, 16 regions with land."""
    from wxeval.regions import LAND_REGIONS, STANDARD_REGIONS, RegionReducer
    from wxeval.statistics import compute

    lsm_arr = ZarrV2Array.open(truth, "land_sea_mask")
    dims = json.loads((lsm_arr.folder / ".zattrs").read_text())["_ARRAY_DIMENSIONS"]
    if dims != ["longitude", "latitude"]:
        raise SystemExit(f"{truth}: land_sea_mask dims {dims}, expected (longitude, latitude)")
    reducer = RegionReducer([*STANDARD_REGIONS.values(), *LAND_REGIONS.values()], lat, lon,
                            lsm_arr.read().astype(np.float64).T, lon_axis=-2)
    o, c = floor_fields(len(lon), len(lat))
    groups = ("errors", "anomalies", "nan_counts")
    compute(groups, o[:1], o[:1], c[:1], reducer)  # load the compiled code (not timed)

    def reduce(stack: np.ndarray, n: int) -> None:
        at = np.arange(n) % len(o)
        compute(groups, stack, o, c, reducer, at=(np.arange(n), at, at))

    return reduce, None


def _products_reducer(truth: Path, lat: np.ndarray, lon: np.ndarray):
    """(g)'s reduction: :func:`products_only` against (f)'s fields; every stack's six sums
    are added (under a lock) into ``total``, which the measurement returns."""
    import threading

    o, c = floor_fields(len(lon), len(lat))
    w = np.broadcast_to(np.cos(np.deg2rad(lat))[None, :], (len(lon), len(lat))).ravel().copy()
    total = np.zeros(6)
    lock = threading.Lock()
    products_only(o[:1], o, c, np.zeros(1, np.int64), w, np.zeros(6))  # compile (not timed)

    def reduce(stack: np.ndarray, n: int) -> None:
        out = np.zeros(6)
        products_only(stack[:n], o, c, np.arange(n) % len(o), w, out)
        with lock:
            total[:] += out

    return reduce, total


def floor_fields(nlon: int, nlat: int) -> tuple[np.ndarray, np.ndarray]:
    """(f)'s and (g)'s fixed truth and climatology fields, one per lead of the job (so that,
    as in a real job, each forecast field meets other truth and climatology fields):
    (lead, lon, lat) float32."""
    rng = np.random.default_rng(0)
    shape = (len(LEAD_HOURS), nlon, nlat)
    o = (280 + 10 * rng.standard_normal(shape)).astype(np.float32)
    c = (280 + 10 * rng.standard_normal(shape)).astype(np.float32)
    return o, c


def products_only(f: np.ndarray, o: np.ndarray, c: np.ndarray, at: np.ndarray, w: np.ndarray,
                  out: np.ndarray) -> None:
    """out[k] += Σ_i Σ_points w × product k of (f[i], o[at[i]], c[at[i]]), products d², d, |d|,
    f′o′, f′², o′² (d = f − o, f′ = f − c, o′ = o − c) in float64: one flat vector loop per
    field (``wxeval.kernels._flat_sums``), compiled on first use."""
    global _products_compiled
    if _products_compiled is None:
        import numba

        from wxeval.kernels import _flat_sums

        @numba.njit(nogil=True)
        def run(f, o, c, at, w, out):
            dst = np.empty(6)
            for i in range(f.shape[0]):
                _flat_sums(f[i].ravel(), o[at[i]].ravel(), c[at[i]].ravel(), True, w, w, False,
                           dst, dst)
                for k in range(6):
                    out[k] += dst[k]

        _products_compiled = run
    _products_compiled(f, o, c, np.asarray(at, np.int64), w, out)


_products_compiled = None


def _decode_plus(p: dict, make_reducer) -> dict:
    """(e)'s reads and decodes with each stack of forecast fields passed to the reducer that
    ``make_reducer(truth, lat, lon)`` returns (with what it sums into, or None)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    files = job_chunk_files(p["paths"], p["days"], p["models"], p.get("first_day", 1))
    truth = Path(p["paths"]["truth"])
    lat = ZarrV2Array.open(truth, "latitude").read()
    lon = ZarrV2Array.open(truth, "longitude").read()
    reducer, sums = make_reducer(truth, lat, lon)
    forecast = {str(Path(p["paths"][m]).resolve()) for m in p["models"]}
    npts = len(lon) * len(lat)
    most = max(arr.chunk_size // npts for arr, _ in files)
    local = threading.local()

    def reduce(stack: np.ndarray, n: int) -> int:
        reducer(stack, n)
        return n

    def work(part) -> tuple[int, int, int]:
        buffers = local.__dict__.setdefault("buffers", {})
        # one stack per thread, as (e) keeps one decode buffer per thread: a new stack per
        # part paid the first touch of its pages each time (~1.3 ms per MB on this machine),
        # which (e) does not
        if "stack" not in buffers:
            buffers["stack"] = np.empty((max(FLOOR_FIELDS, most), len(lon), len(lat)),
                                        np.float32)
        stack = buffers["stack"]
        flat = stack.reshape(-1)
        read = decoded = done = filled = 0
        for arr, path in part:
            blob = path.read_bytes()
            if str(arr.folder.parent.resolve()) in forecast and arr.dtype == np.float32:
                n = arr.chunk_size // npts
                if filled + n > len(stack):
                    done += reduce(stack, filled)
                    filled = 0
                decoded += arr.decode(blob, out=flat[filled * npts:(filled + n) * npts]).nbytes
                filled += n
            else:
                key = (arr.chunk_size, arr.dtype)
                if key not in buffers:
                    buffers[key] = np.empty(arr.chunk_size, arr.dtype)
                decoded += arr.decode(blob, out=buffers[key]).nbytes
            read += len(blob)
        if filled:
            done += reduce(stack, filled)
        return read, decoded, done

    t0, c0 = time.perf_counter(), time.process_time()
    # forecast files of one variable stay together in a part, as (e) batches them
    parts = [files[i:i + 64] for i in range(0, len(files), 64)]
    with ThreadPoolExecutor(2) as pool:
        totals = list(pool.map(work, parts))
    out = {**_usage(t0, c0), "files": len(files),
           "file_bytes": sum(t[0] for t in totals), "decoded_bytes": sum(t[1] for t in totals),
           "kernel_fields": sum(t[2] for t in totals)}
    if sums is not None:
        out["products"] = sums.tolist()
    return out


#: (f): forecast fields decoded into one stack before the kernel reduces them (wxeval's tasks
#: reduce a lead's inits and levels at once: 16-64 fields at 1.5°).
FLOOR_FIELDS = 64


def child_profile(p: dict) -> dict:
    """(p) One ``wxeval.api.score`` under cProfile, single-threaded: the top functions by own
    and by cumulative time (seconds include the profiler's overhead)."""
    import cProfile
    import pstats

    import numcodecs

    from wxeval.api import score

    numcodecs.blosc.use_threads = False  # decoding runs in the main thread: keep it at one
    # The job's files read once first: the profile is of a warm page cache, as the timed
    # runs are (their best run). Some machines evict page-cache pages idle for a minute
    # (DAMON reclaim), and a cold read showed up here as 0.9 s of file reads.
    for _, path in job_chunk_files(p["paths"], p["days"], p["models"], p.get("first_day", 1)):
        path.read_bytes()
    paths = {k: Path(v) for k, v in p["paths"].items()}
    cfg = make_config(paths, p["models"], p["days"], p.get("first_day", 1))
    shutil.rmtree(p["output"], ignore_errors=True)
    prof = cProfile.Profile()
    t0, c0 = time.perf_counter(), time.process_time()
    prof.enable()
    score(cfg, p["models"], p["output"], scheduler="synchronous", progress=False)
    prof.disable()
    out = _usage(t0, c0)
    rows = [(_func_label(*key), nc, tt, ct)
            for key, (_, nc, tt, ct, _) in pstats.Stats(prof).stats.items()]
    top = p.get("top", 15)
    out["profiled_seconds"] = sum(r[2] for r in rows)
    out["own"] = [list(r) for r in sorted(rows, key=lambda r: -r[2])[:top]]
    # By cumulative time, wxeval's own functions only (above them: dask's call chain).
    ours = [r for r in rows if r[0].startswith("wxeval/")]
    out["cumulative"] = [list(r) for r in sorted(ours, key=lambda r: -r[3])[:top]]
    return out


def _func_label(filename: str, line: int, func: str) -> str:
    """``wxeval/kernels.py:12(f)``, ``numcodecs/blosc.py:3(g)`` or ``{built-in}(h)``."""
    if filename == "~":
        return f"{{built-in}} {func}"
    for anchor in ("site-packages/", "/wxeval/", "lib/python3"):
        if anchor in filename:
            filename = filename.split(anchor, 1)[1]
            if anchor == "/wxeval/":
                filename = "wxeval/" + filename
            break
    return f"{filename}:{line}({func})"


def child_wxeval(p: dict) -> dict:
    """(b)/(d) ``wxeval.api.score`` of one job into ``p["output"]``."""
    import xarray as xr

    from wxeval.api import score

    paths = {k: Path(v) for k, v in p["paths"].items()}
    cfg = make_config(paths, p["models"], p["days"], p.get("first_day", 1))
    if p.get("fresh", True):
        shutil.rmtree(p["output"], ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    report = score(cfg, p["models"], p["output"], progress=False)
    out = {**_usage(t0, c0), "computed_fields": report.computed_fields,
           "reused_fields": report.reused_fields}
    if p.get("dump_table"):
        table: xr.Dataset = report.tables[p["models"][0]]
        out["table"] = _dump(table[[v for v in VARIABLES]].sel(metric=list(NAIVE_METRICS)))
    return out


def _dump(ds) -> dict:
    """{var: nested values (metric, region, lead[, level])} after sorting the coordinates."""
    out = {}
    for var in VARIABLES:
        da = ds[var]
        order = ["metric", "region", "lead_time"] + (["level"] if "level" in da.dims else [])
        da = da.transpose(*order).sel(metric=list(NAIVE_METRICS)).sortby("region")
        out[var] = {"regions": [str(r) for r in da["region"].values],
                    "values": np.asarray(da.values, float).tolist()}
    return out


def child_naive(p: dict) -> dict:
    """(c) The straightforward xarray + dask implementation (one dask.compute)."""
    import dask
    import xarray as xr

    from wxeval.regions import LAND_REGIONS, STANDARD_REGIONS

    paths, model = p["paths"], p["models"][0]
    inits = init_times(p["days"], p.get("first_day", 1))
    t0, c0 = time.perf_counter(), time.process_time()
    fc = xr.open_zarr(paths[model], chunks={}, decode_timedelta=True)
    truth = xr.open_zarr(paths["truth"], chunks={})
    clim = xr.open_zarr(paths["climatology"], chunks={})
    fc = fc.sel(time=inits).rename(time="init_time", prediction_timedelta="lead_time")
    valid = fc["init_time"] + fc["lead_time"]  # (init_time, lead_time)
    lat = np.deg2rad(truth["latitude"])
    bounds = np.concatenate([[-np.pi / 2], (lat.values[:-1] + lat.values[1:]) / 2, [np.pi / 2]])
    wlat = xr.DataArray(np.sin(bounds[1:]) - np.sin(bounds[:-1]), dims="latitude",
                        coords={"latitude": truth["latitude"]})
    wlat = wlat / wlat.mean()
    lsm = truth["land_sea_mask"].load().clip(0, 1)
    weights = {}
    for region in [*STANDARD_REGIONS.values(), *LAND_REGIONS.values()]:
        lat_ok = xr.zeros_like(truth["latitude"], dtype=bool)
        for lo, hi in region.lat_bands:
            lat_ok = lat_ok | ((truth["latitude"] >= lo - 1e-6) & (truth["latitude"] <= hi + 1e-6))
        lon = truth["longitude"] % 360
        lon_ok = xr.zeros_like(lon, dtype=bool)
        for lo, hi in region.lon_bands:
            lon_ok = lon_ok | ((lon >= lo - 1e-6) & (lon <= hi + 1e-6))
        w = wlat * (lat_ok & lon_ok)
        weights[region.name] = w * lsm if region.land else w
    space = ("longitude", "latitude")
    results = {}
    for var in VARIABLES:
        f = fc[var]
        o = truth[var].sel(time=valid)
        c = clim[var].sel(dayofyear=valid.dt.dayofyear, hour=valid.dt.hour)
        if "level" in f.dims:
            f, o, c = (x.sel(level=list(LEVELS)) for x in (f, o, c))
        err, fa, oa = f - o, f - c, o - c
        for name, w in weights.items():
            def wmean(x, w=w):
                return x.weighted(w).mean(space)

            results[(var, "rmse", name)] = np.sqrt(wmean(err**2).mean("init_time"))
            results[(var, "mae", name)] = wmean(abs(err)).mean("init_time")
            results[(var, "bias", name)] = wmean(err).mean("init_time")
            acc = wmean(fa * oa) / np.sqrt(wmean(fa**2) * wmean(oa**2))
            results[(var, "acc", name)] = acc.mean("init_time")
    (values,) = dask.compute(results, scheduler="threads", num_workers=2)
    out = _usage(t0, c0)
    table = {}
    for var in VARIABLES:
        regions = sorted(weights)
        rows = []
        for metric in NAIVE_METRICS:
            rows.append([values[(var, metric, r)].transpose(
                "lead_time", *(["level"] if "level" in values[(var, metric, r)].dims else [])
            ).values.tolist() for r in regions])
        table[var] = {"regions": regions, "values": rows}
    out["table"] = table
    return out


def child_kernel(p: dict) -> dict:
    """(k) The compiled kernel alone on fields in memory, for both storage orders: forecast
    GB/s per thread (64 float32 fields of the job's grid, 16 regions with land, climatology)."""
    from wxeval.metrics import accumulate_statistics
    from wxeval.regions import LAND_REGIONS, STANDARD_REGIONS, RegionReducer
    from wxeval.synthetic import Grid

    g = Grid.named(p["grid"])
    lat = np.linspace(-90, 90, g.nlat)
    lon = np.arange(g.nlon) * 360.0 / g.nlon
    regions = [*STANDARD_REGIONS.values(), *LAND_REGIONS.values()]
    rng = np.random.default_rng(0)
    lsm = rng.random((g.nlat, g.nlon))
    out = {}
    for name, lon_axis, shape in (("lon_first", -2, (64, g.nlon, g.nlat)),
                                  ("lat_first", -1, (64, g.nlat, g.nlon))):
        reducer = RegionReducer(regions, lat, lon, lsm, lon_axis=lon_axis)
        f, o, c = (rng.normal(size=shape).astype(np.float32) for _ in range(3))
        accumulate_statistics(f[:1], o[:1], c[:1], reducer)  # load the compiled code
        args = (f, o, c, reducer)
        best = min(_timed(accumulate_statistics, *args) for _ in range(5))
        out[f"{name}_gb_per_s"] = f.nbytes / 1e9 / best
    return out


# ------------------------------------------------------------------------------- (h) headline


#: (h) WeatherBench 2's headline job (issue 14): the eight headline variables, 10 m wind speed
#: derived from u10/v10 and 24 h precipitation derived from a cumulative total (as IFS stores
#: it) in the pass; RMSE of each and SEEPS of the precipitation.
HEADLINE_INPUTS = ("geopotential", "temperature", "specific_humidity", "u_component_of_wind",
                   "v_component_of_wind", "2m_temperature", "mean_sea_level_pressure",
                   "10m_u_component_of_wind", "10m_v_component_of_wind")
HEADLINE_VARIABLES = ("geopotential", "temperature", "specific_humidity", "u_component_of_wind",
                      "v_component_of_wind", "2m_temperature", "mean_sea_level_pressure",
                      "10m_wind_speed", "total_precipitation_24hr")
HEADLINE_LEVELS = (500, 700, 850)


def headline_stores(root: Path, grid: str, days: int, log) -> dict[str, Path]:
    """Truth (with 6 h precipitation, from 18 h before the first valid time), a climatology
    holding the SEEPS fields, one model with a cumulative ``total_precipitation``."""
    from wxeval import synthetic, synthetic_precip

    folder = root / f"{grid}-headline"
    folder.mkdir(parents=True, exist_ok=True)
    inits = init_times(days)
    valid = valid_times(inits)
    times = pd.date_range(valid[0] - np.timedelta64(18, "h"), valid[-1], freq="6h").values
    paths = {"truth": folder / "era5.zarr", "climatology": folder / "climatology.zarr",
             "model": folder / "model.zarr"}
    spec = {"format": FORMAT, "grid": grid, "days": days, "headline": 2}
    if all(_spec_ok(p, spec) for p in paths.values()):
        log(f"reusing {folder}")
        return paths
    kw = dict(variables=HEADLINE_INPUTS, levels=HEADLINE_LEVELS, grid=grid, seed=SEED)
    t0 = time.perf_counter()
    for p in paths.values():
        shutil.rmtree(p, ignore_errors=True)
    synthetic.write_truth(paths["truth"], times, **kw)
    tp6 = synthetic_precip.add_truth(paths["truth"], grid=grid, seed=SEED)
    synthetic.write_climatology(paths["climatology"], dayofyears=np.unique(
        clim_pairs(valid)[:, 0]), hours=INIT_HOURS, **kw)  # RMSE and SEEPS read none of it
    synthetic_precip.add_seeps_climatology(paths["climatology"], tp6)
    error = synthetic.DEMO_MODELS["hres_like"]
    synthetic.write_forecast(paths["model"], inits, list(LEAD_HOURS), error=error, **kw)
    synthetic_precip.add_forecast(paths["model"], grid=grid, seed=SEED, error=error)
    for p in paths.values():
        _mark(p, spec)
    log(f"wrote the headline stores in {time.perf_counter() - t0:.1f} s")
    return paths


def _headline_config(paths: dict, days: int):
    from wxeval.config import validate

    stop = pd.Timestamp(START) + pd.Timedelta(days=days - 1)
    return validate({
        "truth": {"path": str(paths["truth"])},
        "climatology": {"path": str(paths["climatology"])},
        "models": {"model": {"path": str(paths["model"])}},
        "evaluation": {
            "init_times": {"start": START, "stop": stop.strftime("%Y-%m-%d"),
                           "hours": list(INIT_HOURS)},
            "lead_times": {"start": "0h", "stop": f"{LEAD_HOURS[-1]}h", "step": "12h"},
            "variables": list(HEADLINE_VARIABLES), "levels": list(HEADLINE_LEVELS),
            "regions": "all", "metrics": ["rmse", "seeps"],
        },
    }, source="benchmark headline")


def child_headline_wxeval(p: dict) -> dict:
    """(h) ``wxeval.api.score`` of the headline job (derived variables in the pass)."""
    from wxeval.api import score

    cfg = _headline_config(p["paths"], p["days"])
    shutil.rmtree(p["output"], ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    report = score(cfg, ["model"], p["output"], progress=False)
    return {**_usage(t0, c0), "computed_fields": report.computed_fields,
            "reused_fields": report.reused_fields}


def child_headline_raw(p: dict) -> dict:
    """(h) The same chunks read once through zarr's array API with 2 threads: the forecast's
    stored inputs per init (all leads), the truth's inputs at the valid times and, for the
    24 h precipitation, the 6 h windows before them, the SEEPS fields of the climatology."""
    import zarr

    inits = init_times(p["days"])
    valid = valid_times(inits)
    window = np.unique(np.concatenate([valid - np.timedelta64(h, "h") for h in (0, 6, 12, 18)]))
    t0, c0 = time.perf_counter(), time.process_time()
    fg = zarr.open_group(p["paths"]["model"], mode="r")
    tg = zarr.open_group(p["paths"]["truth"], mode="r")
    cg = zarr.open_group(p["paths"]["climatology"], mode="r")
    blocks = []
    nlead = fg["prediction_timedelta"].shape[0]
    for var in (*HEADLINE_INPUTS, "total_precipitation"):
        for i in _time_positions(fg, "time", inits):
            blocks.append((fg[var], (int(i), slice(0, nlead))))
    for var, times in ((v, valid) for v in HEADLINE_INPUTS):
        pos = np.sort(_time_positions(tg, "time", times))
        blocks += [(tg[var], (slice(int(a), int(a) + 1),)) for a in pos]
    pos = np.sort(_time_positions(tg, "time", window))
    blocks += [(tg["total_precipitation_6hr"], (slice(int(a), int(a) + 1),)) for a in pos]
    for name in ("total_precipitation_24hr_seeps_threshold",
                 "total_precipitation_24hr_seeps_dry_fraction"):
        blocks.append((cg[name], (slice(None),)))

    return _read_blocks(blocks, t0, c0)


def run_headline(args, grid: str, log) -> dict:
    """(h): the headline job against reading the same chunks; returns the rows and ratio."""
    days = month_days(1, args.quick)
    paths = {k: str(v) for k, v in headline_stores(args.root, grid, days, log).items()}
    out = args.root / f"{grid}-headline" / "output"
    runs = {}
    for kind, label in (("headline_raw", "(h) raw zarr read of the headline job's chunks"),
                        ("headline_wxeval", "(h) wxeval headline job (derived in the pass)")):
        best = None
        for i in range(args.repeat):
            log(f"{label} (run {i + 1}/{args.repeat}) …")
            res = run_child(kind, {"paths": paths, "days": days, "output": str(out)}, None, log)
            log(f"  {res['wall']:.2f} s, {res['peak_rss_mb']:.0f} MB")
            best = res if best is None or res["wall"] < best["wall"] else best
        runs[kind] = {**best, "label": label}
    ratio = runs["headline_wxeval"]["wall"] / runs["headline_raw"]["wall"]
    log(f"  headline job / raw read of the same chunks: {ratio:.2f} "
        f"({runs['headline_raw']['bytes_read'] / 1e9:.2f} GB)")
    return {"grid": grid, "days": days, "runs": runs, "ratio": ratio}


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


CHILDREN = {"raw": child_raw, "wxeval": child_wxeval, "naive": child_naive,
            "kernel": child_kernel, "decode": child_decode, "profile": child_profile,
            "floor": child_floor}
CHILDREN.update(headline_raw=child_headline_raw, headline_wxeval=child_headline_wxeval)


# ------------------------------------------------------------------- (n) ensemble forecasts
# Self-contained: its own stores under <root>/ens-<grid>/, its own children and table.

ENS_VARIABLES = ("geopotential", "temperature", "2m_temperature", "mean_sea_level_pressure")
ENS_LEVELS = (500, 850)
ENS_DAYS = 2  # 4 inits × 21 leads
ENS_MEMBERS = (10, 50)
ENS_MEMORY = "64MiB"  # the same task size for both member counts (small: it must bind)
ENS_FORMAT = 2


def ensure_ensemble_stores(root: Path, grid: str, log) -> dict[str, str]:
    """Truth, climatology and one IFS ENS-like store per member count (one chunk per init ×
    lead × all members), written once."""
    from wxeval import synthetic

    folder = root / f"ens-{grid}"
    inits = init_times(ENS_DAYS)
    valid = valid_times(inits)
    paths = {"truth": folder / "era5.zarr", "climatology": folder / "climatology.zarr",
             **{f"ens{m}": folder / f"ens{m}.zarr" for m in ENS_MEMBERS}}
    spec = {"format": ENS_FORMAT, "grid": grid, "days": ENS_DAYS, "members": ENS_MEMBERS}
    kw = dict(variables=ENS_VARIABLES, levels=ENS_LEVELS, grid=grid, seed=SEED)
    if not _spec_ok(folder, spec):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        log(f"(n) writing the ensemble archive ({grid}) under {folder} …")
        synthetic.write_truth(paths["truth"], valid, **kw)
        days = sorted(set(pd.DatetimeIndex(valid).day_of_year))
        synthetic.write_climatology(paths["climatology"], dayofyears=days, **kw)
        for m in ENS_MEMBERS:
            synthetic.write_ensemble_forecast(
                paths[f"ens{m}"], inits, np.array(LEAD_HOURS), members=m,
                error=synthetic.ErrorModel(amplitude=1.6, tau_hours=300.0, seed=404), **kw)
        _mark(folder, spec)
    return {k: str(v) for k, v in paths.items()}


def child_ens_raw(p: dict) -> dict:
    """(n) Read and decode every chunk of the ensemble store the job needs (2 threads)."""
    from concurrent.futures import ThreadPoolExecutor

    import zarr

    t0, c0 = time.perf_counter(), time.process_time()
    g = zarr.open_group(p["paths"][p["model"]], mode="r")
    ipos = _time_positions(g, "time", init_times(ENS_DAYS))
    nlead = g["prediction_timedelta"].shape[0]
    blocks = [(g[v], int(i), j) for v in ENS_VARIABLES for i in ipos for j in range(nlead)]
    with ThreadPoolExecutor(2) as pool:
        nbytes = sum(pool.map(lambda b: b[0][b[1], b[2]].nbytes, blocks))
    return {**_usage(t0, c0), "bytes_read": int(nbytes), "blocks": len(blocks)}


def child_ens_wxeval(p: dict) -> dict:
    """(n) ``wxeval score`` of the ensemble: the ensemble metrics, rank histogram and the
    deterministic metrics of the ensemble mean, one pass, 2 threads."""
    from wxeval.api import score
    from wxeval.config import validate
    from wxeval.metric_defs import ENSEMBLE_DEFAULTS

    start = pd.Timestamp(START)
    stop = start + pd.Timedelta(days=ENS_DAYS - 1)
    cfg = validate({
        "truth": {"path": p["paths"]["truth"]},
        "climatology": {"path": p["paths"]["climatology"]},
        "models": {p["model"]: {"path": p["paths"][p["model"]]}},
        "evaluation": {
            "init_times": {"start": start.strftime("%Y-%m-%d"),
                           "stop": stop.strftime("%Y-%m-%d"), "hours": list(INIT_HOURS)},
            "lead_times": {"start": "0h", "stop": f"{LEAD_HOURS[-1]}h", "step": "12h"},
            "variables": list(ENS_VARIABLES), "levels": list(ENS_LEVELS), "regions": "all",
            "metrics": [*ENSEMBLE_DEFAULTS, "rmse", "acc", "bias", "mae"],
        },
        "compute": {"memory_per_task": p["memory"]},
    }, source="benchmark-ensemble")
    shutil.rmtree(p["output"], ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    report = score(cfg, [p["model"]], p["output"], progress=False)
    return {**_usage(t0, c0), "computed_fields": report.computed_fields}


CHILDREN.update(ens_raw=child_ens_raw, ens_wxeval=child_ens_wxeval)


def ensemble_benchmark(root: Path, grid: str, repeat: int, log) -> dict:
    """(n): wxeval on the 10-member store against reading and decoding its chunks (best of
    ``repeat``), and peak RSS with 50 vs 10 members at the same ``memory_per_task``."""
    paths = ensure_ensemble_stores(root, grid, log)
    out = root / f"ens-{grid}" / "outputs"
    rows = {}

    def best(label, kind, **params):
        runs = []
        for i in range(repeat):
            log(f"{label} (run {i + 1}/{repeat}) …")
            runs.append(run_child(kind, {"paths": paths, **params}, None, log))
            log(f"  {runs[-1]['wall']:.2f} s, {runs[-1]['peak_rss_mb']:.0f} MB")
        rows[label] = {"wall": min(r["wall"] for r in runs),
                       "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                       **{k: v for k, v in runs[0].items()
                          if k in ("bytes_read", "computed_fields")}}
        return rows[label]

    raw = best("(n) read+decode ens10 chunks", "ens_raw", model="ens10")
    w10 = best("(n) wxeval ens10", "ens_wxeval", model="ens10", memory=ENS_MEMORY,
               output=str(out / "ens10"))
    w50 = best("(n) wxeval ens50", "ens_wxeval", model="ens50", memory=ENS_MEMORY,
               output=str(out / "ens50"))
    return {"grid": grid, "inits": ENS_DAYS * len(INIT_HOURS), "leads": len(LEAD_HOURS),
            "fields": 2 * len(ENS_LEVELS) + 2, "memory_per_task": ENS_MEMORY,
            "rows": rows,
            "ratios": {
                "wxeval / read+decode, 10 members (target <= 1.5)": w10["wall"] / raw["wall"],
                "peak RSS 50 / 10 members (target <= 1.5)":
                    w50["peak_rss_mb"] / w10["peak_rss_mb"]}}


def ensemble_markdown(res: dict) -> str:
    lines = [f"## (n) ensemble, {res['grid']}, {res['inits']} inits × {res['leads']} leads × "
             f"{res['fields']} fields, memory_per_task {res['memory_per_task']}", "",
             "| run | wall (s) | peak RSS (MB) | GB read |", "| --- | ---: | ---: | ---: |"]
    for label, r in res["rows"].items():
        gb = r.get("bytes_read")
        lines.append(f"| {label} | {r['wall']:.2f} | {r['peak_rss_mb']:.0f} | "
                     f"{'' if gb is None else f'{gb / 1e9:.2f}'} |")
    lines += ["", *(f"- {k}: {v:.2f}" for k, v in res["ratios"].items())]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- parent


def run_child(kind: str, params: dict, limit: float | None, log) -> dict:
    """Run one measurement in a fresh interpreter; poll its VmHWM in case it must be killed.
    Dirty pages of earlier steps (e.g. the restored rerun snapshot) are flushed first, so that
    their write-back does not land inside the measured run."""
    os.sync()
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--child", kind, json.dumps(params), str(result)]
        proc = subprocess.Popen(cmd, start_new_session=True)
        start, hwm = time.perf_counter(), 0.0
        while proc.poll() is None:
            hwm = max(hwm, _vm_hwm_mb(proc.pid))
            if limit is not None and time.perf_counter() - start > limit:
                os.killpg(proc.pid, 9)
                proc.wait()
                log(f"  {kind}: killed after {limit:.0f} s")
                return {"killed": True, "wall": float(limit), "peak_rss_mb": hwm}
            time.sleep(0.2)
        process_wall = time.perf_counter() - start
        if proc.returncode != 0 or not result.exists():
            raise SystemExit(f"measurement {kind} failed (exit {proc.returncode})")
        return {**json.loads(result.read_text()), "process_wall": process_wall}


def _vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def compare_tables(a: dict, b: dict) -> float:
    """Max relative difference between two dumped tables (same regions, sorted); values below
    1e-3 of the largest magnitude of their (variable, metric) are compared to that floor, so
    near-zero biases (float32 rounding noise) do not dominate."""
    worst = 0.0
    for var in VARIABLES:
        ra, rb = a[var]["regions"], b[var]["regions"]
        if ra != rb:
            raise SystemExit(f"{var}: region lists differ: {ra} vs {rb}")
        x, y = np.asarray(a[var]["values"], float), np.asarray(b[var]["values"], float)
        if x.shape != y.shape:
            raise SystemExit(f"{var}: table shapes differ: {x.shape} vs {y.shape}")
        floor = 1e-3 * np.nanmax(np.abs(y).reshape(len(y), -1), axis=1)
        floor = floor.reshape(-1, *([1] * (y.ndim - 1)))
        worst = max(worst, float(np.nanmax(np.abs(x - y) / np.maximum(np.abs(y), floor))))
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="/tmp/wxeval-bench", type=Path,
                    help="where synthetic stores and outputs go (reused when complete)")
    ap.add_argument("--grid", default="240x121", help="synthetic grid (64x32, 240x121, ...)")
    ap.add_argument("--months", default="1,3",
                    help="init ranges for (b), in months from 2020-01-01; the first is the base")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 64x32 and 4 days per 'month' (2 per 'week')")
    ap.add_argument("--skip-naive", action="store_true", help="skip (c)")
    ap.add_argument("--skip-three-months", action="store_true",
                    help="score only the first --months entry in (b)")
    ap.add_argument("--naive-limit", type=float, default=900.0,
                    help="seconds after which (c) is killed and reported as '> limit'")
    ap.add_argument("--repeat", type=int, default=2,
                    help="repeat (a), the one-month (b) runs (1 and 3 models) and both runs "
                         "of (d); the fastest counts")
    ap.add_argument("--fields", choices=sorted(FIELD_SETS), default="small",
                    help="small: 10 fields (default); wb2: the 69 fields of issue 4's reference "
                         "job (stores under <root>/<grid>-wb2-<codec>-<layout>)")
    ap.add_argument("--only", default="a,e,b,c,d,k",
                    help="comma-separated measurements to run (default a,e,b,c,d,k; 'e' may "
                         "be given as 'decode', 'f' (decode + kernel, not run by default) as "
                         "'floor', 'g' (decode + the weighted products alone, not run by "
                         "default) as 'products', 'p' (the profile, not run by default) as "
                         "'profile'; 'h': the headline job, 'n' (or 'ensemble'): the ensemble "
                         "job, both on their own stores and only on request; without 'b' only "
                         "the first model's month is written)")
    ap.add_argument("--codecs", default=",".join(CODECS),
                    help="chunk codecs of the synthetic stores, first = the one of (b)'s "
                         "longer ranges, (c), (d): lz4 (Blosc-LZ4 + shuffle, WB2's), zstd")
    ap.add_argument("--layouts", default=",".join(LAYOUTS),
                    help="forecast chunk layouts: lead (one chunk per init x lead, WB2's "
                         "HRES/GraphCast), init (one chunk per init, all leads and levels)")
    ap.add_argument("--profile-top", type=int, default=15,
                    help="(p): how many functions to print by own and by cumulative time")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, params, result = args.child
        params = json.loads(params)
        use_fields(params.get("fields", "small"))
        res = CHILDREN[kind](params)
        Path(result).write_text(json.dumps(res))
        return 0

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    grid = "64x32" if args.quick else args.grid
    use_fields(args.fields)
    aliases = {"decode": "e", "profile": "p", "ensemble": "n", "headline": "h", "floor": "f",
               "products": "g"}
    only = {aliases.get(x, x) for x in args.only.split(",")}
    codecs, layouts = args.codecs.split(","), args.layouts.split(",")
    for c in codecs:
        make_codec(c)
    for lay in layouts:
        layout_chunks(lay)
    combos = [(c, lay) for c in codecs for lay in layouts]
    primary = combos[0]
    if "n" in only:  # self-contained (its own stores): run first, alone if only n
        print(ensemble_markdown(ensemble_benchmark(args.root, grid, args.repeat, log)))
        only.discard("n")
    if "h" in only:  # (h) the headline job, on its own stores
        headline = run_headline(args, grid, log)
        print(f"headline job / raw read of the same chunks: {headline['ratio']:.2f}")
        if args.json and only == {"h"}:
            args.json.write_text(json.dumps(headline, indent=1, default=str))
        only.discard("h")
    if not only:
        return 0
    months = [int(m) for m in args.months.split(",")]
    if args.skip_three_months:
        months = months[:1]
    days = {m: month_days(m, args.quick) for m in months}
    base = days[months[0]]
    week = 2 if args.quick else 7
    inc_days = base - 1  # days 1..30 then 1..31 for a 31-day month
    models = list(__import__("wxeval.synthetic", fromlist=["DEMO_MODELS"]).DEMO_MODELS)[:3]
    m1 = models[0]
    if "b" in only:  # the longer ranges and the three-model pass need more forecasts
        model_days = {m1: max(days.values())}
        model_days.update({m: base for m in models[1:]})
    else:
        model_days = {m1: base}
    t_start, load_start = time.perf_counter(), os.getloadavg()
    rows: list[dict] = []
    stores = {}  # combo -> (paths as str, outputs folder)

    def ensure(combo: tuple[str, str]) -> tuple[dict, Path]:
        if combo not in stores:
            folder = store_folder(grid, args.fields, *combo)
            paths = ensure_stores(args.root, grid, model_days if combo == primary else {m1: base},
                                  log, folder=folder, codec=combo[0], layout=combo[1])
            out_root = args.root / folder / "outputs"
            out_root.mkdir(parents=True, exist_ok=True)
            stores[combo] = ({k: str(v) for k, v in paths.items()}, out_root)
        return stores[combo]

    def measure(label, kind, job_days, job_models, repeat=1, limit=None, prepare=None,
                combo=primary, **extra):
        params = {"paths": ensure(combo)[0], "days": job_days, "models": job_models,
                  "fields": args.fields, **extra}
        runs = []
        for i in range(repeat):
            log(f"{label} (run {i + 1}/{repeat}) …")
            if prepare is not None:
                prepare()
            runs.append(run_child(kind, params, limit, log))
            log(f"  {runs[-1]['wall']:.2f} s, {runs[-1]['peak_rss_mb']:.0f} MB")
        best = min(runs, key=lambda r: r["wall"])
        nbytes = job_bytes(job_days, len(job_models), grid, extra.get("first_day", 1))
        row = {"label": label, "kind": kind, "days": job_days, "models": job_models,
               "codec": combo[0], "layout": combo[1],
               "inits": job_days * len(INIT_HOURS), "gb": nbytes["total"] / 1e9,
               "bytes": nbytes, "walls": [r["wall"] for r in runs],
               "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
               **{k: v for k, v in best.items() if k not in ("table", "peak_rss_mb")}}
        row["gb_per_s"] = None if best.get("killed") else row["gb"] / best["wall"]
        rows.append(row)
        return row, best

    def tag(combo: tuple[str, str]) -> str:
        return f"{combo[0]}, {LAYOUTS[combo[1]]}"

    # Per codec × layout: (a), (e) and (b) for one model and one month, then (p).
    per_combo: dict[tuple[str, str], dict[str, dict]] = {}
    profiles = []
    for combo in combos:
        if combo != primary and not only & {"a", "e", "f", "g", "b", "p"}:
            continue
        _, out_root = ensure(combo)
        got = per_combo.setdefault(combo, {})
        if "a" in only:
            got["a"], _ = measure(f"(a) raw zarr read, {base} d, 1 model [{tag(combo)}]", "raw",
                                  base, [m1], repeat=args.repeat, combo=combo)
        if "e" in only:
            got["e"], _ = measure(f"(e) decode-only, {base} d, 1 model [{tag(combo)}]",
                                  "decode", base, [m1], repeat=args.repeat, combo=combo)
        if "f" in only:
            got["f"], _ = measure(f"(f) decode + kernel, {base} d, 1 model [{tag(combo)}]",
                                  "floor", base, [m1], repeat=args.repeat, combo=combo)
        if "g" in only:
            got["g"], _ = measure(f"(g) decode + products, {base} d, 1 model [{tag(combo)}]",
                                  "floor", base, [m1], repeat=args.repeat, combo=combo,
                                  kernel="products")
        if "b" in only:
            got["b"], _ = measure(f"(b) wxeval, {base} d, 1 model [{tag(combo)}]", "wxeval",
                                  base, [m1], repeat=args.repeat, combo=combo,
                                  output=str(out_root / "b1"))
        if "p" in only:
            log(f"(p) profile of (b), {base} d, 1 model, synchronous [{tag(combo)}] …")
            prof = run_child("profile", {"paths": ensure(combo)[0], "days": base, "models": [m1],
                                         "fields": args.fields, "top": args.profile_top,
                                         "output": str(out_root / "profile")}, None, log)
            log(f"  {prof['wall']:.2f} s under cProfile")
            profiles.append({"tag": tag(combo), "days": base, **prof})

    pstr, out_root = ensure(primary)
    b1 = per_combo.get(primary, {}).get("b")
    b3 = None
    longer = {}
    if "b" in only:
        for m in months[1:]:
            if "a" in only:
                measure(f"(a) raw zarr read, {days[m]} d, 1 model [{tag(primary)}]", "raw",
                        days[m], [m1])
            longer[m], _ = measure(f"(b) wxeval, {days[m]} d, 1 model [{tag(primary)}]",
                                   "wxeval", days[m], [m1], output=str(out_root / f"b{m}"))
        # Repeated like the one-model run it is compared with (a single first run partly
        # reads the other models' stores from disk: 1.58 vs 1.19 in two runs of one day).
        b3, _ = measure(f"(b) wxeval, {base} d, {len(models)} models, one pass "
                        f"[{tag(primary)}]", "wxeval", base, models, repeat=args.repeat,
                        output=str(out_root / "b3models"))
    naive = bweek = None
    max_diff = None
    if "c" in only and not args.skip_naive:
        bweek, bw_res = measure(f"(b) wxeval, {week} d, 1 model [{tag(primary)}]", "wxeval",
                                week, [m1], output=str(out_root / "bweek"), dump_table=True)
        naive, nv_res = measure(f"(c) naive xarray+dask, {week} d, 1 model [{tag(primary)}]",
                                "naive", week, [m1], limit=args.naive_limit)
        if not nv_res.get("killed"):
            max_diff = compare_tables(nv_res["table"], bw_res["table"])
            log(f"  naive vs wxeval tables: max relative difference {max_diff:.2e}")
    dfull = drerun = None
    if "d" in only:
        inc_out = str(out_root / "incremental")
        snapshot = out_root / "incremental-before-rerun"
        dfull, _ = measure(f"(d) wxeval, days 1-{inc_days}, fresh [{tag(primary)}]", "wxeval",
                           inc_days, [m1], repeat=args.repeat, output=inc_out)
        shutil.rmtree(snapshot, ignore_errors=True)
        shutil.copytree(inc_out, snapshot)

        def restore() -> None:  # every rerun starts from the same 30-day state
            shutil.rmtree(inc_out, ignore_errors=True)
            shutil.copytree(snapshot, inc_out)
        drerun, _ = measure(f"(d) wxeval rerun, days 1-{inc_days + 1}, same folder "
                            f"[{tag(primary)}]", "wxeval", inc_days + 1, [m1],
                            repeat=args.repeat, output=inc_out, fresh=False, prepare=restore)
        drerun["gb"] = job_bytes(1, 1, grid, inc_days + 1)["total"] / 1e9  # only the new day
        drerun["gb_per_s"] = drerun["gb"] / drerun["wall"]
    kernel = None
    if "k" in only:
        log("(k) compiled kernel alone, both storage orders …")
        kernel = run_child("kernel", {"grid": grid, "fields": args.fields}, None, log)
        log(f"  lon-first {kernel['lon_first_gb_per_s']:.2f} GB/s, "
            f"lat-first {kernel['lat_first_gb_per_s']:.2f} GB/s per thread")

    ratios = {}
    if kernel is not None:
        ratios["kernel GB/s per thread, (longitude, latitude) order (WB2)"] = (
            kernel["lon_first_gb_per_s"])
        ratios["kernel GB/s per thread, (latitude, longitude) order"] = (
            kernel["lat_first_gb_per_s"])
    # per codec × layout: (numerator, denominator, what the ratio is)
    pairs = (("b", "e", "b/e wxeval / decode-only [{}] (issue 16 target <= 1.5)"),
             ("b", "a", "b/a wxeval / zarr API [{}] (target <= 1.5)"),
             ("f", "e", "f/e decode + kernel / decode-only [{}] (the floor of b/e)"),
             ("b", "f", "b/f wxeval / decode + kernel [{}] (the pipeline's cost)"),
             ("g", "e", "g/e decode + weighted products / decode-only [{}] (about the floor of "
                        "any evaluator forming the products per point)"),
             ("a", "e", "a/e zarr API / decode-only [{}]"))
    for combo, got in per_combo.items():
        for num, den, label in pairs:
            if num in got and den in got:
                ratios[label.format(tag(combo))] = got[num]["wall"] / got[den]["wall"]
    if naive is not None:
        c_spb = naive["wall"] / naive["gb"]  # a lower bound when killed
        for key, ref in (("same week", bweek), ("base range", b1)):
            if ref is None:
                continue
            value = c_spb / (ref["wall"] / ref["gb"])
            ratios[f"c/b per byte (naive week vs wxeval {key})"] = (
                f"> {value:.0f}" if naive.get("killed") else value)
    for m, row in longer.items():
        ratios[f"peak RSS {m} months / {months[0]} month (target <= 1.2)"] = (
            row["peak_rss_mb"] / b1["peak_rss_mb"])
        ratios[f"wall {m} months / {months[0]} month per byte"] = (
            (row["wall"] / row["gb"]) / (b1["wall"] / b1["gb"]))
    if b3 is not None:
        extra_fc = b3["bytes"]["forecast"] - b1["bytes"]["forecast"]
        expected = b1["wall"] + extra_fc / 1e9 / b1["gb_per_s"]
        ratios[f"{len(models)} models / (1 model + extra forecast bytes) (target < 1.5)"] = (
            b3["wall"] / expected)
        ratios[f"{len(models)} models / 1 model (wall)"] = b3["wall"] / b1["wall"]
    if drerun is not None:
        ratios["incremental rerun / full run (target < 0.10)"] = drerun["wall"] / dfull["wall"]
        ratios["incremental rerun / full run, whole processes (start-up and imports included)"] = (
            drerun["process_wall"] / dfull["process_wall"])
    if max_diff is not None:
        ratios["naive vs wxeval tables, max relative difference"] = max_diff

    report = {"grid": grid, "field_set": args.fields, "quick": args.quick, "root": str(args.root),
              "fields": n_fields(), "leads": len(LEAD_HOURS), "regions": 16,
              "cpu_count": os.cpu_count(), "load_average": (load_start, os.getloadavg()),
              "rows": rows, "ratios": ratios, "profiles": profiles,
              "total_seconds": time.perf_counter() - t_start}
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


def markdown(report: dict) -> str:
    lines = [f"Grid {report['grid']}, {report['fields']} fields, {report['leads']} leads, "
             f"{report['regions']} regions, {report['cpu_count']} CPUs"
             f"{' (quick)' if report['quick'] else ''}; load average (1, 5, 15 min) "
             + " at the start, ".join(", ".join(f"{x:.1f}" for x in la)
                                      for la in report["load_average"]) + " at the end.", "",
             "| measurement | inits | wall s | CPU s | GB read | GB/s | peak RSS MB | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["rows"]:
        wall = f"> {r['wall']:.0f}" if r.get("killed") else f"{r['wall']:.2f}"
        gbs = "–" if r["gb_per_s"] is None else f"{r['gb_per_s']:.3f}"
        cpu = f"{r['cpu']:.1f}" if "cpu" in r else "–"
        notes = []
        if len(r["walls"]) > 1:
            notes.append("runs " + ", ".join(f"{w:.2f}" for w in r["walls"]))
        if "file_bytes" in r:
            notes.append(f"{r['files']} chunk files, {r['file_bytes'] / 1e9:.3f} GB in files")
        if "computed_fields" in r:
            notes.append(f"computed {r['computed_fields']}, reused {r['reused_fields']}")
        if r.get("killed"):
            notes.append("killed at the limit")
        lines.append(f"| {r['label']} | {r['inits']} | {wall} | {cpu} | {r['gb']:.3f} | {gbs} "
                     f"| {r['peak_rss_mb']:.0f} | {'; '.join(notes)} |")
    lines += ["", "| ratio | value |", "|---|---:|"]
    for k, v in report["ratios"].items():
        lines.append(f"| {k} | {v if isinstance(v, str) else f'{v:.3g}'} |")
    for prof in report.get("profiles", []):
        lines += ["", f"(p) profile [{prof['tag']}]: {prof['days']} d, 1 model, one thread "
                      f"(synchronous), {prof['wall']:.1f} s wall under cProfile, "
                      f"{prof['profiled_seconds']:.1f} s own time in all."]
        for name in ("own", "cumulative"):
            what = "function" if name == "own" else "wxeval function"
            lines += ["", f"| {what}, top by {name} time | calls | own s | cumulative s |",
                      "|---|---:|---:|---:|"]
            for func, calls, own, cum in prof[name]:
                lines.append(f"| `{func}` | {calls} | {own:.2f} | {cum:.2f} |")
    lines.append("")
    lines.append(f"Total benchmark time {report['total_seconds']:.0f} s.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
