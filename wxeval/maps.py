"""Error maps: per grid point, time-mean bias, MSE and MAE (WB2's SpatialBias/MSE/MAE).

For each model, variable, level, lead and grid point, over the inits t scored:

* ``count`` n = number of inits (with ``skipna``: of inits where f − o is not NaN);
* ``sum_err`` Σ_t (f − o), ``sum_se`` Σ_t (f − o)², ``sum_ae`` Σ_t |f − o|;

and the maps are bias = sum_err / n, mse = sum_se / n, mae = sum_ae / n, rmse = √mse (the
square root of the time-mean MSE, as WB2's ``SpatialMSE`` then √). Without ``skipna`` a NaN in
any init's f − o makes that point's maps NaN (as WB2 computes them); with it, NaN inits are
left out of that point's sums and count. No area weights and no region: every grid point of the
truth's grid, land and sea alike.

The sums are a separate statistic kind from the regional groups of :mod:`wxeval.statistics`
(per grid point, not per region): computed in the same pass over the decoded fields (one
:func:`accumulate` per lead of a task) only when maps are asked for (``evaluation.maps: true``
or ``score --maps``), so the regional path's speed is unchanged otherwise. They add across
inits, so tasks (init blocks, level groups) and stored parts are summed (:class:`MapSums`).

Memory: a task holds its maps' sums, 4 × leads × levels × grid points float64 (1.5°, 13 levels,
41 leads: 0.5 GB; 0.25°: 17.7 GB, so at 0.25° score maps for a few leads/levels at a time); on
the driver's threads the tasks of a layout share one such array (:class:`Accumulators`);
the written file holds 3 float32 maps per lead and level (and the count, unless it is the same
everywhere: then the ``count`` attribute of ``<variable>.bias``): 1.5°, 41 leads, 13 levels:
185 MB per variable; 0.25°: 6.6 GB, so select leads and levels for maps at high resolution.

Statistics store (:mod:`wxeval.sum_parts`): the sums are kept as parts over exact init sets,
3 × 8 B per grid point and field whatever the number of inits (the count too where it varies):
0.70 MB per field at 1.5° (a month of 10 fields × 21 leads: 146 MB, 83 MB on disk),
24.9 MB at 0.25° (a 0.25° year of 4 leads × 8 fields: 0.8 GB, the same as a 0.25° month: a
year of nightly runs is summed into ~1 part per variable). Reruns compute only the inits the
store lacks.

File: ``<output>/<model>.maps.nc``, one data variable per weather variable and map
(``<variable>.bias``, ``.mse``, ``.mae``; the RMSE map is √mse) with dims
``(lead_time[, level], latitude, longitude)``, latitude ascending, plus ``<variable>.count``.
:attr:`wxeval.api.ScoreReport.maps` holds the same maps in float64.
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
import xarray as xr

from wxeval import netcdf_classic as nc_classic
from wxeval.schema import LATITUDE, LEAD_TIME, LEVEL, LONGITUDE

MAP_STATISTICS = ("count", "sum_err", "sum_se", "sum_ae")
MAPS = ("bias", "mse", "mae")
#: Largest variable of a classic netCDF file (64-bit offset) but its last one, in bytes: each
#: map of the maps file must fit (all of a variable's maps have the same size).
FILE_VARIABLE_LIMIT = nc_classic.VARIABLE_LIMIT


def check_file_size(model: str, variable: str, n_leads: int, n_levels: int,
                    n_points: int) -> None:
    """Refuse, before anything is computed, maps whose file could not hold them: one map
    (lead × level × grid point, float32) over :data:`FILE_VARIABLE_LIMIT` (e.g. 0.25° with
    85 leads and 13 levels: 4.6 GB); or whose sums the statistics store could not: one lead's
    sums (4 × level × grid point, float64, one Blosc chunk) over Blosc's 2 GB."""
    import numcodecs.blosc

    from wxeval.config import ConfigError

    chunk = 4 * n_levels * n_points * 8
    if chunk > numcodecs.blosc.MAX_BUFFERSIZE:
        raise ConfigError(
            f"maps of model {model!r}, variable {variable!r}: one lead's sums would take "
            f"{chunk / 2**30:.1f} GiB ({n_levels} level(s) × {n_points} grid points × 4 sums, "
            "float64), over the 2 GiB a stored chunk may hold: score maps for fewer levels "
            "per run (evaluation.levels)")
    size = n_leads * n_levels * n_points * 4
    if size > FILE_VARIABLE_LIMIT:
        raise ConfigError(
            f"maps of model {model!r}, variable {variable!r}: one map would take "
            f"{size / 2**30:.1f} GiB ({n_leads} leads × {n_levels} level(s) × {n_points} grid "
            f"points, float32), over the {FILE_VARIABLE_LIMIT / 2**30:.0f} GiB a classic "
            "netCDF variable may hold: score maps for fewer leads or levels per run (e.g. "
            "--leads 24h,72h,120h,240h, or evaluation.levels)")


def accumulate(f: np.ndarray, o: np.ndarray, *, skipna: bool = False,
               out: np.ndarray | None = None, fresh: bool = False,
               o_rows: np.ndarray | None = None) -> np.ndarray:
    """Sums over the first (init) axis of fields f, o (init, …): (4, …) float64 in the order
    of :data:`MAP_STATISTICS`, added to ``out`` when given (C-contiguous), or written to it
    with ``fresh`` (its values, e.g. of ``np.empty``, are ignored: zeroed by the kernel just
    before it sums, while they are in cache) (the compiled kernel, one pass; :func:`reference`
    is the definition in NumPy). ``f`` may be a view with gaps between inits (a lead of a
    block of leads read together): it is not copied. With ``o_rows`` (int, one per init),
    ``o`` is a larger stack (the truth window, (valid, …)) and init i's truth is
    ``o[o_rows[i]]``, read in place (not gathered into a copy)."""
    n = f.shape[0]
    if out is None:
        out = np.empty((4, *f.shape[1:]))
        fresh = True
    # the kernel indexes unchecked: shapes and rows that do not fit are an error, not a read
    # past the end (or sums added to a copy of ``out``)
    if o.shape[1:] != f.shape[1:] or (o_rows is None and o.shape[0] != n):
        raise ValueError(f"maps: truth fields {o.shape} do not match forecast fields {f.shape}")
    if o_rows is not None:
        rows = np.asarray(o_rows)
        if rows.shape != (n,) or (n and not 0 <= rows.min() <= rows.max() < o.shape[0]):
            raise ValueError(f"maps: o_rows must be {n} rows of a truth stack of {o.shape[0]}")
    if out.shape != (4, *f.shape[1:]) or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError(f"maps: out must be C-contiguous float64 of shape {(4, *f.shape[1:])}")
    ff, fstep = _rows(f)
    if o_rows is None:
        oo, ostep = _rows(o)
        ooff = np.arange(n, dtype=np.int64) * ostep
    else:
        oo = np.ascontiguousarray(o).reshape(-1)
        ooff = np.asarray(o_rows, dtype=np.int64) * (oo.size // max(o.shape[0], 1))
    sums = out.reshape(4, -1)
    _accumulate(ff, fstep, oo, ooff, n, sums.shape[1], skipna, sums, fresh)
    return out


def _rows(x: np.ndarray) -> tuple[np.ndarray, int]:
    """``x`` (n, …) as a 1-D C-contiguous array and the step (in elements) between its n rows
    of prod(…) elements: the memory the rows span when each row is contiguous (no copy), else
    a contiguous copy."""
    n = x.shape[0]
    rows = x.reshape(n, -1)  # a view when each row is contiguous
    npts = rows.shape[1]
    if rows.flags.c_contiguous:
        return rows.reshape(-1), npts
    item = rows.itemsize
    if n and rows.strides[1] == item and rows.strides[0] >= 0 and rows.strides[0] % item == 0:
        step = rows.strides[0] // item
        return np.lib.stride_tricks.as_strided(rows, ((n - 1) * step + npts,), (item,)), step
    return np.ascontiguousarray(rows).reshape(-1), npts


#: Grid points per block of :func:`_accumulate`: its sums (3 × 8 B a point) stay in L2 while
#: every init passes over them.
BLOCK = 16384


@numba.njit(nogil=True, cache=True)
def _accumulate(f, fstep, o, ooff, n, npts, skipna, out, fresh):  # pragma: no cover
    """out[:, p] += (count, Σ d, Σ d², Σ |d|) over rows i of f − o (row i of f: f[i * fstep:]
    …, of o: o[ooff[i]:] …, float64 sums). The traffic of ``out`` (read and written once per
    pass), not the inputs', bounds this kernel, so the points go by blocks of :data:`BLOCK`
    (their sums stay in cache while every row passes over them) and rows are taken eight
    (then four, then one) at a time; each row is a contiguous slice, so the loops vectorise
    (a branch-free NaN test with ``skipna``, compiled apart from the plain loop). A 1.5° lead
    of 20 or 32 inits (two levels), data out of cache: 0.30-0.32 ns per point, against
    0.36-0.39 with four rows per pass over the whole sums (10 inits: 0.41-0.45 either way).
    ``fresh``: ``out`` zeroed first (block by block, in cache)."""
    for p0 in range(0, npts, BLOCK):
        m = min(BLOCK, npts - p0)
        if fresh:
            out[:, p0:p0 + m] = 0.0
        if not skipna:
            c = out[0, p0:p0 + m]
            for p in range(m):
                c[p] += n
        if skipna:
            _passes(f, fstep, o, ooff, n, p0, m, True, out)
        else:
            _passes(f, fstep, o, ooff, n, p0, m, False, out)


@numba.njit(inline="always")
def _passes(f, fstep, o, ooff, n, p0, m, skipna, out):  # pragma: no cover - compiled
    """Every row i over points p0 … p0 + m − 1 (``skipna`` a constant where inlined)."""
    c, s1, s2, s3 = out[0, p0:p0 + m], out[1, p0:p0 + m], out[2, p0:p0 + m], out[3, p0:p0 + m]
    i = 0
    while i + 8 <= n:
        _eight(_row(f, fstep, i, p0, m), _at(o, ooff, i, p0, m),
               _row(f, fstep, i + 1, p0, m), _at(o, ooff, i + 1, p0, m),
               _row(f, fstep, i + 2, p0, m), _at(o, ooff, i + 2, p0, m),
               _row(f, fstep, i + 3, p0, m), _at(o, ooff, i + 3, p0, m),
               _row(f, fstep, i + 4, p0, m), _at(o, ooff, i + 4, p0, m),
               _row(f, fstep, i + 5, p0, m), _at(o, ooff, i + 5, p0, m),
               _row(f, fstep, i + 6, p0, m), _at(o, ooff, i + 6, p0, m),
               _row(f, fstep, i + 7, p0, m), _at(o, ooff, i + 7, p0, m), skipna,
               c, s1, s2, s3)
        i += 8
    while i + 4 <= n:
        _four(_row(f, fstep, i, p0, m), _at(o, ooff, i, p0, m),
              _row(f, fstep, i + 1, p0, m), _at(o, ooff, i + 1, p0, m),
              _row(f, fstep, i + 2, p0, m), _at(o, ooff, i + 2, p0, m),
              _row(f, fstep, i + 3, p0, m), _at(o, ooff, i + 3, p0, m), skipna,
              c, s1, s2, s3)
        i += 4
    while i < n:
        _one(_row(f, fstep, i, p0, m), _at(o, ooff, i, p0, m), skipna, c, s1, s2, s3)
        i += 1


@numba.njit(inline="always")
def _row(x, step, i, p0, m):  # pragma: no cover - compiled
    return x[i * step + p0:i * step + p0 + m]


@numba.njit(inline="always")
def _at(x, offsets, i, p0, m):  # pragma: no cover - compiled
    return x[offsets[i] + p0:offsets[i] + p0 + m]


@numba.njit(inline="always")
def _keep(d):  # pragma: no cover - compiled
    """(d, 1) where d is a number, (0, 0) where it is NaN (branch-free: the loops vectorise)."""
    ok = d == d
    return (d if ok else 0.0), (1.0 if ok else 0.0)


@numba.njit(inline="always")
def _eight(f0, o0, f1, o1, f2, o2, f3, o3, f4, o4, f5, o5, f6, o6, f7, o7, skipna, c, s1, s2,
           s3):  # pragma: no cover - compiled
    for p in range(f0.shape[0]):
        d0 = np.float64(f0[p]) - np.float64(o0[p])
        d1 = np.float64(f1[p]) - np.float64(o1[p])
        d2 = np.float64(f2[p]) - np.float64(o2[p])
        d3 = np.float64(f3[p]) - np.float64(o3[p])
        d4 = np.float64(f4[p]) - np.float64(o4[p])
        d5 = np.float64(f5[p]) - np.float64(o5[p])
        d6 = np.float64(f6[p]) - np.float64(o6[p])
        d7 = np.float64(f7[p]) - np.float64(o7[p])
        if skipna:
            d0, k0 = _keep(d0)
            d1, k1 = _keep(d1)
            d2, k2 = _keep(d2)
            d3, k3 = _keep(d3)
            d4, k4 = _keep(d4)
            d5, k5 = _keep(d5)
            d6, k6 = _keep(d6)
            d7, k7 = _keep(d7)
            c[p] += ((k0 + k1) + (k2 + k3)) + ((k4 + k5) + (k6 + k7))
        s1[p] += ((d0 + d1) + (d2 + d3)) + ((d4 + d5) + (d6 + d7))
        s2[p] += ((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)) + (
            (d4 * d4 + d5 * d5) + (d6 * d6 + d7 * d7))
        s3[p] += ((abs(d0) + abs(d1)) + (abs(d2) + abs(d3))) + (
            (abs(d4) + abs(d5)) + (abs(d6) + abs(d7)))


@numba.njit(inline="always")
def _four(f0, o0, f1, o1, f2, o2, f3, o3, skipna, c, s1, s2, s3):  # pragma: no cover - compiled
    for p in range(f0.shape[0]):
        d0 = np.float64(f0[p]) - np.float64(o0[p])
        d1 = np.float64(f1[p]) - np.float64(o1[p])
        d2 = np.float64(f2[p]) - np.float64(o2[p])
        d3 = np.float64(f3[p]) - np.float64(o3[p])
        if skipna:
            k0, k1, k2, k3 = d0 == d0, d1 == d1, d2 == d2, d3 == d3
            d0 = d0 if k0 else 0.0
            d1 = d1 if k1 else 0.0
            d2 = d2 if k2 else 0.0
            d3 = d3 if k3 else 0.0
            c[p] += ((1.0 if k0 else 0.0) + (1.0 if k1 else 0.0)) + (
                (1.0 if k2 else 0.0) + (1.0 if k3 else 0.0))
        s1[p] += (d0 + d1) + (d2 + d3)
        s2[p] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
        s3[p] += (abs(d0) + abs(d1)) + (abs(d2) + abs(d3))


@numba.njit(inline="always")
def _one(f0, o0, skipna, c, s1, s2, s3):  # pragma: no cover - compiled
    for p in range(f0.shape[0]):
        d = np.float64(f0[p]) - np.float64(o0[p])
        if skipna:
            ok = d == d
            d = d if ok else 0.0
            c[p] += 1.0 if ok else 0.0
        s1[p] += d
        s2[p] += d * d
        s3[p] += abs(d)


def reference(f: np.ndarray, o: np.ndarray, *, skipna: bool = False) -> np.ndarray:
    """:func:`accumulate` in plain NumPy."""
    d = np.subtract(f, o, dtype=np.float64)
    out = np.empty((4, *d.shape[1:]))
    if skipna:
        bad = np.isnan(d)
        d[bad] = 0.0
        out[0] = d.shape[0] - bad.sum(axis=0)
    else:
        out[0] = d.shape[0]
    np.sum(d, axis=0, out=out[1])
    np.abs(d, out=d)
    np.sum(d, axis=0, out=out[3])
    np.multiply(d, d, out=d)
    np.sum(d, axis=0, out=out[2])
    return out


def _means_in_place(sums: np.ndarray) -> None:
    """sums (lead, 4, …) → (lead, [count, bias, mse, mae], …) in place, lead by lead (as
    :func:`maps_from_sums`)."""
    for one in sums:
        inv = np.full(one[0].shape, np.nan)
        np.divide(1.0, one[0], out=inv, where=one[0] > 0)
        one[1:] *= inv


def maps_from_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """bias, mse, mae from sums (4, …) (NaN where the count is 0)."""
    inv = np.full(sums[0].shape, np.nan)
    np.divide(1.0, sums[0], out=inv, where=sums[0] > 0)
    return {"bias": sums[1] * inv, "mse": sums[2] * inv, "mae": sums[3] * inv}


class Buffers:
    """Float64 arrays for map sums, reused within a run: a task's sums (4 × leads × levels
    × grid points, 39 MB for two levels at 1.5°) in a fresh array cost more in page faults on
    their first touch (zeroing, huge-page compaction) than the summing itself (the benchmark's
    1.5° month, ``scripts/bench_maps.py``: 0.6 s of kernel with fresh arrays, 0.2 s with
    reused ones); an array a
    run is done with (:meth:`give`) is zeroed and handed out again (:meth:`take`).
    Thread-safe; at most :attr:`KEEP` arrays per shape kept; :meth:`clear` frees them."""

    KEEP = 4

    def __init__(self):
        import threading

        self._lock = threading.Lock()
        self._free: dict[tuple, list[np.ndarray]] = {}

    def take(self, shape: tuple, *, zero: bool = True) -> np.ndarray:
        """A float64 array of ``shape``, zeroed unless ``zero`` is False (its values then
        arbitrary: :func:`accumulate` with ``fresh`` zeroes a lead's sums just before it
        sums into them, while they are in cache, instead of a pass over the whole array)."""
        with self._lock:
            kept = self._free.get(tuple(shape))
            arr = kept.pop() if kept else None
        if arr is None:
            return np.zeros(shape) if zero else np.empty(shape)
        if zero:
            arr.fill(0.0)
        return arr

    def give(self, arr: np.ndarray) -> None:
        """Hand back an array no one reads or writes any more."""
        if arr.dtype != np.float64 or not arr.flags.c_contiguous or arr.base is not None:
            return
        with self._lock:
            kept = self._free.setdefault(arr.shape, [])
            if len(kept) < self.KEEP and not any(a is arr for a in kept):
                kept.append(arr)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


#: The process's map-sum buffers (tasks take, the driver gives back).
BUFFERS = Buffers()


class Accumulator:
    """The shared map sums (lead, 4, level, *spatial) of one layout (model, variable, leads,
    levels) that the tasks of a run on this process's threads add into in place, lead by lead
    (each lead under its own lock: two tasks of the layout on two threads add different leads
    at once, or wait for each other's lead, ~1 ms); ``inits``: those of the tasks that finished
    adding. A lead no task has added yet holds no sums (``started``): the first task writes it
    (:func:`accumulate`'s ``fresh``). A task that fails part way never closes its accumulator
    (:meth:`Accumulators.close`): those sums are then never taken, so never stored (a rerun
    computes their inits again)."""

    def __init__(self, shape: tuple):
        import threading

        self.shape = tuple(shape)
        self.values: np.ndarray | None = None
        self.started = np.zeros(shape[0], bool)
        self.locks = [threading.Lock() for _ in range(shape[0])]
        self.inits: list[np.ndarray] = []
        self.users = 0

    def add(self, li: int, f: np.ndarray, o: np.ndarray, skipna: bool,
            o_rows: np.ndarray | None = None) -> None:
        """Add the sums of lead ``li`` of fields f, o (init, …) (:func:`accumulate`; with
        ``o_rows`` the truth of init i is ``o[o_rows[i]]``)."""
        with self.locks[li]:
            fresh = not self.started[li]
            accumulate(f, o, skipna=skipna, out=self.values[li], fresh=fresh, o_rows=o_rows)
            self.started[li] = True


class Accumulators:
    """The run's :class:`Accumulator` per layout key, for tasks on this process's threads:
    their map sums are added into one array per layout instead of a task's own array each
    (summed afterwards on the driver: ~1 GB of memory traffic a 1.5° month). Thread-safe.

    :meth:`open` before a task adds, :meth:`close` after it added every lead (its inits);
    :meth:`take` hands the driver a layout's sums once no task is adding to them (None if one
    is, or if there are none), and the next task of that layout starts new sums."""

    def __init__(self):
        import threading

        self._lock = threading.Lock()
        self._open: dict[tuple, Accumulator] = {}

    def open(self, key: tuple, shape: tuple) -> Accumulator:
        with self._lock:
            acc = self._open.get(key)
            if acc is None:
                acc = self._open[key] = Accumulator(shape)
                # not zeroed: each lead's first add writes it (``fresh``)
                acc.values = BUFFERS.take(shape, zero=False)
            acc.users += 1
        return acc

    def close(self, acc: Accumulator, inits: np.ndarray) -> None:
        """A task added every lead of its ``inits`` to ``acc``."""
        with self._lock:
            acc.users -= 1
            acc.inits.append(np.asarray(inits))

    def take(self, key: tuple) -> tuple[np.ndarray, np.ndarray] | None:
        """(sums, inits) of ``key`` when no task is adding to them, removed from here."""
        with self._lock:
            acc = self._open.get(key)
            if acc is None or acc.users:
                return None
            del self._open[key]
        if not acc.inits:
            BUFFERS.give(acc.values)
            return None
        acc.values[~acc.started] = 0.0
        return acc.values, np.concatenate(acc.inits)

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._open)


class MapSums:
    """Sums per (model, variable), (lead, 4, level, *spatial): of the stored parts a run uses
    and of its finished tasks; :meth:`dataset` turns them into the maps in place."""

    def __init__(self, models):
        self._models = {m.name: m for m in models}
        self.sums: dict[tuple[str, str], np.ndarray] = {}
        #: Entries whose sums :meth:`dataset` has turned into means (in place).
        self._means: set[tuple[str, str]] = set()
        self.grid: dict[str, tuple[tuple[str, str], dict[str, np.ndarray]]] = {}

    def add(self, res) -> None:
        """Add a :class:`wxeval.evaluate.TaskResult`'s maps (``res.maps``); its arrays are
        kept or handed back to :data:`BUFFERS`."""
        for model, (leads, levels, sums, _inits) in getattr(res, "maps", {}).items():
            if not self.add_sums(model, res.variable, leads, levels, sums):
                BUFFERS.give(sums)
            self.grid[model] = res.map_grid

    def add_sums(self, model: str, var: str, leads, levels, sums: np.ndarray) -> bool:
        """Add sums (lead, 4, level, *spatial) of ``leads`` and ``levels``. Returns True when
        ``sums`` itself became the total (the first whole-field sums: no copy), which the
        caller must then leave unchanged."""
        m = self._models[model]
        all_leads = m.lead_times
        all_levels = m.levels[var]
        key = (model, var)
        nlev = 1 if all_levels is None else len(all_levels)
        li = np.searchsorted(all_leads, leads)
        lv = np.array([0] if levels is None else [list(all_levels).index(x) for x in levels])
        whole = len(li) == len(all_leads) and len(lv) == nlev and (lv == np.arange(nlev)).all()
        if key not in self.sums and whole:
            self.sums[key] = sums
            return True
        if key not in self.sums:
            self.sums[key] = BUFFERS.take((len(all_leads), 4, nlev, *sums.shape[3:]))
        if whole:
            self.sums[key] += sums
        else:
            target = self.sums[key]
            for a, lead_pos in enumerate(li):
                target[lead_pos][:, lv] += sums[a]
        return False

    def add_stored(self, model: str, var: str, part, values: np.ndarray, cells) -> None:
        """Add a stored part's sums (:class:`wxeval.sum_parts.Part`, ``values`` as stored) at
        ``cells`` ((lead in ns, level) pairs)."""
        from wxeval.sum_parts import full_maps

        values = full_maps(part, values)
        m = self._models[model]
        key = (model, var)
        all_levels = m.levels[var]
        if key not in self.sums:
            nlev = 1 if all_levels is None else len(all_levels)
            self.sums[key] = BUFFERS.take((len(m.lead_times), 4, nlev, *values.shape[3:]))
        target = self.sums[key]
        lead_pos = _positions(m.lead_times.astype("timedelta64[ns]").astype(np.int64))
        lev_pos = _positions(all_levels or [None])
        src_lead, src_lev = _positions(part.leads), _positions(part.levels)
        for lead, lev in cells:
            target[lead_pos[lead], :, lev_pos[lev]] += values[src_lead[lead], :, src_lev[lev]]

    def dataset(self, model: str) -> xr.Dataset:
        """The maps of ``model`` (see the module doc), float64, latitude ascending. The sums
        become the maps in place: nothing may be added afterwards (nor read as sums)."""
        m = self._models[model]
        out = {}
        for (name, var), sums in sorted(self.sums.items()):
            if name != model:
                continue
            spatial, coords = self.grid[model]
            # The maps in the truth's storage order, computed in place of the sums (no new
            # arrays: their page faults cost more than the arithmetic), then views in (lead,
            # level, lat, lon) order (a copy only to sort coordinates; the file's writer
            # transposes while it converts to float32).
            if (name, var) not in self._means:
                _means_in_place(sums)
                self._means.add((name, var))
            maps = {"bias": sums[:, 1], "mse": sums[:, 2], "mae": sums[:, 3],
                    "count": sums[:, 0]}
            lat, lon = coords[LATITUDE], coords[LONGITUDE]
            ilat, ilon = np.argsort(lat, kind="stable"), np.argsort(lon, kind="stable")
            levels = m.levels[var]
            cell = [LEAD_TIME, LEVEL, LATITUDE, LONGITUDE]
            cell_coords = {LEAD_TIME: m.lead_times, LATITUDE: lat[ilat], LONGITUDE: lon[ilon]}
            if levels is None:
                cell.remove(LEVEL)
            else:
                cell_coords[LEVEL] = list(levels)
            for k in (*MAPS, "count"):
                values = maps[k]
                if spatial[0] != LATITUDE:
                    values = np.swapaxes(values, -1, -2)
                if (np.diff(ilat) != 1).any():
                    values = values[..., ilat, :]
                if (np.diff(ilon) != 1).any():
                    values = values[..., ilon]
                if levels is None:
                    values = values[:, 0]
                out[f"{var}.{k}"] = xr.DataArray(values, dims=cell, coords=cell_coords)
        ds = xr.Dataset(out)
        ds.attrs["maps_definition"] = (
            "per grid point over the inits scored: bias = mean(f - o), mse = mean((f - o)^2), "
            "mae = mean(|f - o|); count = inits in the mean (RMSE map: sqrt(mse))")
        return ds


def _positions(values) -> dict:
    return {v: i for i, v in enumerate(list(values))}


def write_maps(ds: xr.Dataset, out: Path, model: str, attrs: dict) -> str:
    """Write ``<out>/<model>.maps.nc`` (classic netCDF, atomically); return its path.

    The same file :func:`wxeval.results.write_netcdf` writes with ``dtype="float32"`` (same
    variables, attributes and encodings; ``tests/test_maps.py`` compares them), written by
    :mod:`wxeval.netcdf_classic`: each map converted once, from float64 to big-endian float32,
    into a reused buffer (xarray's and scipy's path copy every map twice more)."""
    from wxeval import netcdf_classic as nc
    from wxeval import results

    path = out / f"{model}.maps.nc"
    keep = {}
    for name, da in ds.data_vars.items():
        if name.endswith(".count"):
            n = da.values
            if n.size and (n == n.flat[0]).all():  # the same everywhere: an attribute
                ds[name.removesuffix(".count") + ".bias"].attrs["count"] = float(n.flat[0])
                continue
        keep[name] = da

    def attrs_of(a) -> dict:
        return {k: results._attr(v) for k, v in a.items()}

    variables = {}
    for name in ds.coords:  # as xarray encodes them
        c = ds[name]
        if name == LEAD_TIME:
            variables[name] = nc.Variable(c.dims, c.values / np.timedelta64(1, "h"), ">f8", {
                **attrs_of(c.attrs), "dtype": "timedelta64[ns]", "units": "hours",
                "_FillValue": np.float64(np.nan)})
        elif name == LEVEL:
            variables[name] = nc.Variable(c.dims, c.values, ">i4", attrs_of(c.attrs))
        else:
            variables[name] = nc.Variable(c.dims, c.values, ">f8", {
                **attrs_of(c.attrs), "_FillValue": np.float64(np.nan)})
    for name, da in keep.items():
        variables[name] = nc.Variable(da.dims, da.values, ">f4", {
            **attrs_of(da.attrs), "_FillValue": np.float32(np.nan)})
    gattrs = attrs_of({**ds.attrs, **attrs})
    results.atomic_write(path, lambda tmp: nc.write(tmp, dict(ds.sizes), variables, gattrs))
    return str(path)
