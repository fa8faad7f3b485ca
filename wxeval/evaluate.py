"""One pass over the data: per-init statistics for every model, variable, level, lead and region.

The work is cut into tasks of (variable, level group, block of init times). A task reads the
truth and climatology fields of its block's valid-time window **once**, then, lead by lead,
the forecast fields of every model sharing that truth, and reduces each field to the weighted
sums of :mod:`wxeval.metrics` for all regions at once (regions are weight masks). Nothing but
the small statistics leaves a task, so memory is bounded by the task size, not by the store.

Alignment is by init (see :mod:`wxeval.align`): forecast (t, l) meets truth at v = t + l.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dask.array  # noqa: F401 - xarray imports it on first arithmetic; pay that at import
import numpy as np
import xarray as xr

from wxeval import maps as _maps
from wxeval import schema
from wxeval import spectra as _spectra
from wxeval.chunks import memory_order, reused_results
from wxeval.indexing import as_slice, positions
from wxeval.loaders import StoreSpec, open_store
from wxeval.plan import ForecastSource, ModelPlan
from wxeval.regions import Region, RegionReducer
from wxeval.schema import (
    DAYOFYEAR,
    HOUR,
    INIT_TIME,
    LAND_SEA_MASK,
    LATITUDE,
    LEAD_TIME,
    LEVEL,
    LONGITUDE,
    MEMBER,
    VALID_TIME,
)
from wxeval.statistics import GROUPS, compute, field_stack, statistic_names

EPOCH = np.datetime64("1970-01-01T00:00", "ns")
TRUTH_STEP = np.timedelta64(6, "h")
#: Longest block of init times per task. Any month-long range contains a whole 16-day block,
#: so peak memory (the largest tasks) is the same for a month as for a year.
MAX_BLOCK_DAYS = 16
#: Forecast bytes read at once by a task (several lead chunks when inits are few).
READ_BYTES = 16 * 2**20
#: Forecast bytes a task decodes at once where a chunk holds one init's leads (WB2-style
#: chunks per init): read init by init up to this, each group's fields reduced in one kernel
#: call while they are still in cache, instead of all inits' leads first (:func:`_init_major`).
INIT_MAJOR_BYTES = 8 * 2**20


@dataclass(eq=False)
class TaskPart:
    model: str
    source: ForecastSource
    init_times: np.ndarray
    lead_times: np.ndarray
    levels: tuple[int, ...] | None
    #: Inits (a boolean mask over ``init_times``) whose map / spectra sums the part computes
    #: when its task asks for them; None: all (:mod:`wxeval.sum_parts` sets them on reruns).
    map_rows: np.ndarray | None = None
    spectra_rows: np.ndarray | None = None


@dataclass(eq=False)
class Task:
    """One unit of work: a variable, a level group and a block of init times, for all models
    that share the same truth and climatology."""

    variable: str
    levels: tuple[int, ...] | None
    truth: StoreSpec
    climatology: StoreSpec | None
    land_sea_mask: StoreSpec | None
    regions: tuple[Region, ...]
    skipna: bool
    parts: tuple[TaskPart, ...]
    block: int = 0
    label: str = field(default="")
    #: Statistic groups to compute (:mod:`wxeval.statistics`), in this order.
    groups: tuple[str, ...] = ("errors", "anomalies")
    #: Also per-grid-point sums for error maps (:mod:`wxeval.maps`).
    maps: bool = False
    #: Also zonal energy spectra of forecast and truth (:mod:`wxeval.spectra`).
    spectra: bool = False
    #: Regional statistics of ``groups`` (False: a task only for maps/spectra of inits whose
    #: regional statistics are stored; it returns none).
    regional: bool = True

    @property
    def cost(self) -> int:
        """Fields the task reads (forecast, plus truth and climatology at each valid time):
        a measure of its run time, to start the longest tasks first."""
        nlev = 1 if self.levels is None else len(self.levels)
        valid = np.unique(
            np.concatenate([(p.init_times[:, None] + p.lead_times).ravel() for p in self.parts])
        )
        forecast = sum(
            len(p.init_times) * len(p.lead_times) * (1 if p.levels is None else len(p.levels))
            for p in self.parts
            if p.source.reads_store
        )
        return forecast + (1 + (self.climatology is not None)) * nlev * len(valid)


# ---------------------------------------------------------------------------------------------
# Planning


def make_tasks(
    models: Sequence[ModelPlan],
    regions: Sequence[Region],
    *,
    land_sea_mask: StoreSpec | None,
    skipna: bool,
    memory_budget: int = 768 * 2**20,
    block: np.timedelta64 | None = None,
    statistic_groups: Sequence[str] = ("errors", "anomalies"),
    stores: Callable[[StoreSpec], xr.Dataset] = open_store,
) -> list[Task]:
    """Cut the work into tasks sized to ``memory_budget`` bytes each (estimated), each computing
    ``statistic_groups`` (those needing a climatology only where one is configured).
    ``stores``: the plan's opened stores (:attr:`wxeval.plan.Plan.stores`)."""
    groups: dict[tuple, list[ModelPlan]] = defaultdict(list)
    for m in models:
        groups[(m.truth, m.climatology)].append(m)
    tasks: list[Task] = []
    for (truth, clim), members in groups.items():
        truth_ds = stores(truth)
        npoints = truth_ds.sizes[LATITUDE] * truth_ds.sizes[LONGITUDE]
        variables = sorted({v for m in members for v in m.variables})
        for var in variables:
            users = [m for m in members if var in m.variables]
            levels = _union_levels(users, var)
            span = max(np.max(m.lead_times) for m in users)
            init_step = min(_init_step(m.init_times) for m in users)
            lead_chunk = max(_lead_chunk(m, var, stores) for m in users)
            blk, groups_of_levels = _choose_block(
                block, levels, npoints, span, init_step, memory_budget, lead_chunk
            )
            for lev_group in groups_of_levels:
                ids = sorted({int(b) for m in users for b in _block_ids(m.init_times, blk)})
                for b in ids:
                    parts = []
                    for m in users:
                        sel = _block_ids(m.init_times, blk) == b
                        leads = _complete_leads(m, var, stores)
                        if not sel.any() or not leads.size:
                            continue
                        mlev = m.levels[var]
                        if mlev is not None:
                            mlev = tuple(x for x in mlev if lev_group is None or x in lev_group)
                            if not mlev:
                                continue
                        parts.append(
                            TaskPart(m.name, m.source, m.init_times[sel], leads, mlev)
                        )
                    if parts:
                        tasks.append(
                            Task(
                                var,
                                lev_group,
                                truth,
                                clim,
                                land_sea_mask,
                                tuple(regions),
                                skipna,
                                tuple(parts),
                                block=b,
                                label=f"{var} block {b}",
                                groups=_groups_for_variable(statistic_groups, var, clim,
                                                            stores),
                            )
                        )
    return tasks


def _groups_for_variable(groups: Sequence[str], var: str, clim: StoreSpec | None,
                         stores=open_store) -> tuple[str, ...]:
    """The groups of ``groups`` that apply to ``var``: those needing a climatology only where
    one is configured (and holds ``var``, a derived variable's ACC only when it does), SEEPS
    only for the accumulations it is defined for."""
    from wxeval.derived import SEEPS_DRY_THRESHOLD

    has = clim is not None and var in stores(clim).data_vars
    return tuple(
        g for g in groups
        if (g == "seeps" and clim is not None and var in SEEPS_DRY_THRESHOLD)
        or (g != "seeps" and (has or not GROUPS[g].needs_climatology))
    )


def _complete_leads(m: ModelPlan, var: str, stores=open_store) -> np.ndarray:
    """The model's leads at which ``var`` is defined: all, except for an accumulation derived
    from the forecast store, the leads whose windows are all stored (wxeval.derived)."""
    if not m.source.reads_store:
        return m.lead_times
    from wxeval.derived import complete_leads, recipe_in

    fc = stores(m.source.store)
    r = recipe_in(fc, var)
    if r is None:
        return m.lead_times
    return m.lead_times[complete_leads(r, m.lead_times, fc[LEAD_TIME].values)]


def _union_levels(models: Sequence[ModelPlan], var: str) -> tuple[int, ...] | None:
    levels = [m.levels[var] for m in models]
    if all(lv is None for lv in levels):
        return None
    return tuple(sorted({x for lv in levels if lv is not None for x in lv}))


def _init_step(init_times: np.ndarray) -> np.timedelta64:
    if len(init_times) < 2:
        return np.timedelta64(12, "h").astype("timedelta64[ns]")
    return np.min(np.diff(init_times))


def _block_ids(init_times: np.ndarray, block: np.timedelta64) -> np.ndarray:
    return ((init_times - EPOCH) // block).astype(np.int64)


def _lead_chunk(m: ModelPlan, var: str, stores=open_store) -> int:
    """Forecast fields per init a task holds at once: a lead chunk; for an ensemble of M
    members, M fields per lead twice (the next lead group is read ahead), the members of one
    lead reshaped (M) and their float64 mean (2), so that a task's memory stays within budget
    whatever M."""
    if not m.source.reads_store:
        return 1
    fc = stores(m.source.store)
    if var not in fc:
        return 1
    nm = int(fc[var].sizes.get(MEMBER, 1))
    fields = _chunk_size(fc[var], LEAD_TIME) * nm
    return fields * 2 + nm + 2 if MEMBER in fc[var].dims else fields


def _choose_block(block, levels, npoints, span, init_step, budget, lead_chunk=1):
    """Largest block (in days, power of two ≤ MAX_BLOCK_DAYS) whose estimated memory fits;
    split levels into groups when even one day does not fit."""
    nlev = 1 if levels is None else len(levels)
    field_bytes = npoints * 4

    def estimate(days: float, nl: int) -> float:
        blk = np.timedelta64(int(days * 86400), "s")
        window = (blk + span) / TRUTH_STEP + 1
        inits = max(1.0, blk / init_step)
        # truth + climatology window, forecast fields of one lead chunk, truth/clim slabs
        return nl * field_bytes * (2 * window + inits * (lead_chunk + 2))

    level_groups: list[tuple[int, ...] | None] = [levels]
    if levels is not None:
        per = nlev
        while per > 1 and estimate(1, per) > budget:
            per = math.ceil(per / 2)
        level_groups = [tuple(levels[i : i + per]) for i in range(0, nlev, per)]
    if block is not None:
        return block.astype("timedelta64[ns]"), level_groups
    nl = 1 if levels is None else len(level_groups[0])
    days = MAX_BLOCK_DAYS
    while days > 1 and estimate(days, nl) > budget:
        days //= 2
    return np.timedelta64(days, "D").astype("timedelta64[ns]"), level_groups


# ---------------------------------------------------------------------------------------------
# Execution of one task (runs on a thread or a dask worker; opens stores itself)


@dataclass(eq=False)
class TaskResult:
    """Statistics of one task: per model, an array (init, lead, level, region, statistic)
    with the statistics ``statistics`` (those of the task's groups, group by group)."""

    variable: str
    levels: tuple[int, ...] | None
    block: int
    per_model: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # inits, leads, stats
    regions: tuple[str, ...]
    model_levels: dict[str, tuple[int, ...] | None]
    statistics: tuple[str, ...] = ()
    #: Per model (leads, levels, map sums (lead, 4, level, *spatial), the inits summed)
    #: (:mod:`wxeval.maps`).
    maps: dict = field(default_factory=dict)
    #: The spatial dims of the map (and spectra) sums and their coordinates.
    map_grid: tuple = ()
    #: Per model (leads, levels, spectra sums (lead, level, 2, K), the inits summed)
    #: (:mod:`wxeval.spectra`).
    spectra: dict = field(default_factory=dict)


def compute_task(
    task: Task, stores: Callable[[StoreSpec], xr.Dataset] = open_store,
    map_acc: _maps.Accumulators | None = None, reuse_memory: bool = False,
) -> TaskResult:
    """The statistics of one task. ``stores`` opens a store from its spec: on a dask worker
    :func:`~wxeval.loaders.open_store`; on the driver's threads the plan's opened stores.
    ``map_acc`` (on the driver's threads): map sums are added into the run's shared sums of
    their layout (:class:`wxeval.maps.Accumulators`), and the result's ``maps`` hold None in
    place of the sums; else each task returns its own. ``reuse_memory``: the task's reads
    take the memory of this thread's earlier tasks' reads (:func:`wxeval.chunks.reused_results`;
    the caller frees it with :func:`wxeval.chunks.release_results`)."""
    if reuse_memory:
        with reused_results():
            return _compute_task(task, stores, map_acc)
    return _compute_task(task, stores, map_acc)


def _compute_task(task: Task, stores, map_acc) -> TaskResult:
    truth = stores(task.truth)
    tda = _field_or_stand_in(truth, task.variable, task.truth.name)
    spatial = schema.spatial_dims(tda)
    weights = _weights(task.truth, task.land_sea_mask, task.regions, spatial, stores)

    # Valid times needed by any model of the task (plus init times for persistence).
    need = [p.init_times[:, None] + p.lead_times[None, :] for p in task.parts]
    need += [p.init_times[:, None] for p in task.parts if p.source.reads_truth_at_init]
    valid = np.unique(np.concatenate([n.ravel() for n in need]))
    tpos = _positions(truth[VALID_TIME].values, valid, task.truth.name, "valid_time")
    truth_lev = _level_positions(tda, task.levels, task.truth.name)
    obs = _read_truth(truth, tda, task, valid, tpos, truth_lev, spatial)

    clim_fields = None
    cslot = None
    seeps_inputs = (
        _seeps_reader(task, valid, spatial, stores) if "seeps" in task.groups else None
    )
    if _needs_clim_fields(task, stores):
        clim = stores(task.climatology)
        cda = _data_var(clim, task.variable, task.climatology.name)
        from wxeval.align import climatology_positions

        doy_pos, hour_pos = climatology_positions(
            valid, clim[DAYOFYEAR].values, clim[HOUR].values, task.climatology.name
        )
        pairs, cslot = np.unique(np.stack([doy_pos, hour_pos], axis=1), axis=0, return_inverse=True)
        cslot = cslot.ravel()
        clim_lev = _level_positions(cda, task.levels, task.climatology.name)
        # An outer (orthogonal) read of the few days × hours needed, then the (day, hour) pairs
        # picked in NumPy: pointwise indexing in xarray/zarr builds an index per element.
        days, day_of_pair = np.unique(pairs[:, 0], return_inverse=True)
        hours, hour_of_pair = np.unique(pairs[:, 1], return_inverse=True)
        block = _read(
            cda, {DAYOFYEAR: days, HOUR: hours, **clim_lev}, [DAYOFYEAR, HOUR, LEVEL], spatial,
            store=task.climatology.name,
        )
        clim_fields = block[day_of_pair.ravel(), hour_of_pair.ravel()]
        del block

    nreg = weights.n_regions
    names = statistic_names(task.groups)
    nstat = len(names)
    per_model = {}
    model_levels = {}
    maps_out: dict = {}
    spectra_out: dict = {}
    # The truth and climatology windows are read in place by the kernels (field stacks and
    # per-field positions in them), not gathered into per-lead copies.
    o_stack = obs.reshape(-1, *obs.shape[2:])
    c_stack = None if clim_fields is None else clim_fields.reshape(-1, *clim_fields.shape[2:])
    for part in task.parts:
        lev_sel = _subset_positions(task.levels, part.levels)
        lev_pos = np.arange(obs.shape[1])[lev_sel]
        nlev = 1 if part.levels is None else len(part.levels)
        out = np.empty((len(part.init_times), len(part.lead_times), nlev, nreg, nstat))
        map_sums = _map_sums(task, part, obs.shape[2:], map_acc)
        acc = map_sums[2] if map_sums is not None and map_acc is not None else None
        # an init's truth for its map sums is one whole field stack of the window, obs[vslot]
        in_place = obs.flags.c_contiguous and np.array_equal(lev_pos, np.arange(obs.shape[1]))
        mrows, srows = _rows(part.map_rows), _rows(part.spectra_rows)
        spec = (_spectra.for_part(task, part, spatial, _grid(tda, spatial))
                if task.spectra and (srows is None or srows.size) else None)
        init_major = (None if map_sums is not None or spec is not None or seeps_inputs
                      is not None or not task.regional else _init_major(part, task, stores))
        read_lead = (None if init_major is not None else
                     _forecast_reader(part, task, spatial, obs, valid, clim_fields, cslot,
                                      stores))
        if init_major is not None:
            fda, ipos, lpos, flev, groups = init_major
            for g in groups:
                # (init, lead, level, *spatial): the group's chunks decoded straight into it
                f = _read(fda, {INIT_TIME: ipos[g], LEAD_TIME: lpos, **flev},
                          [INIT_TIME, LEAD_TIME, LEVEL], spatial, store=part.source.store.name)
                vslot = np.searchsorted(valid, part.init_times[g][:, None]
                                        + part.lead_times[None, :])
                o_at = (vslot[..., None] * obs.shape[1] + lev_pos).ravel()
                c_at = (None if c_stack is None else
                        (cslot[vslot][..., None] * clim_fields.shape[1] + lev_pos).ravel())
                f_stack, f_at = field_stack(f)
                got = compute(task.groups, f_stack, o_stack, c_stack, weights,
                              skipna=task.skipna,
                              at=(f_at, o_at, f_at if c_at is None else c_at))
                stats = np.concatenate([got[g_] for g_ in task.groups], axis=-1)
                out[g] = stats.reshape(*f.shape[:3], nreg, nstat)
                del f, f_stack
        for li, lead in enumerate(part.lead_times if init_major is None else ()):
            f = read_lead(li)  # (init, level, [member,] *spatial)
            vslot = np.searchsorted(valid, part.init_times + lead)
            o_at = (vslot[:, None] * obs.shape[1] + lev_pos[None, :]).ravel()
            c_at = (None if c_stack is None
                    else (cslot[vslot][:, None] * clim_fields.shape[1] + lev_pos[None, :]).ravel())
            n = f.shape[0] * f.shape[1]
            members = None
            if f.ndim == 5:  # an ensemble: its deterministic scores are the ensemble mean's
                members = f.reshape(n, *f.shape[2:])
                f = _member_mean(members).reshape(*f.shape[:2], *f.shape[3:])
            # Maps and spectra of a forecast (of an ensemble: of its mean, like its rmse).
            if acc is not None and spec is None and in_place:
                # the truth window read in place (an init's truth: obs[vslot[i]]), no gather
                acc.add(li, _take(f, mrows), obs, task.skipna, o_rows=_take(vslot, mrows))
            elif map_sums is not None or spec is not None:
                o = obs[vslot][:, lev_sel]  # gathered for maps and spectra only
                if acc is not None:
                    acc.add(li, _take(f, mrows), _take(o, mrows), task.skipna)
                elif map_sums is not None:
                    _maps.accumulate(_take(f, mrows), _take(o, mrows), skipna=task.skipna,
                                     out=map_sums[2][li], fresh=True)
                if spec is not None:
                    spec.add(li, _take(f, srows), _take(o, srows))
            if not task.regional:
                continue
            # Every group from the same decoded arrays (one read of each chunk).
            f_stack, f_at = field_stack(f)
            got = compute(
                task.groups,
                f_stack,
                o_stack,
                c_stack,
                weights,
                skipna=task.skipna,
                seeps=None if seeps_inputs is None else seeps_inputs(vslot, n),
                members=members,
                at=(f_at, o_at, f_at if c_at is None else c_at),
            )
            if members is not None:
                _warn_nan_members(members, part, task.variable, lead, f.shape[:2], stores)
            stats = np.concatenate([got[g] for g in task.groups], axis=-1)
            out[:, li] = stats.reshape(f.shape[0], f.shape[1], nreg, nstat)
        if read_lead is not None:
            getattr(read_lead, "close", lambda: None)()
        if task.regional:
            per_model[part.model] = (part.init_times, part.lead_times, out)
        model_levels[part.model] = part.levels
        if map_sums is not None:
            if acc is not None:
                map_acc.close(acc, _take(part.init_times, mrows))
                map_sums = (*map_sums[:2], None)
            maps_out[part.model] = (*map_sums, _take(part.init_times, mrows))
        if spec is not None:
            spectra_out[part.model] = (spec.leads, spec.levels, spec.sums,
                                       _take(part.init_times, srows))
    return TaskResult(
        task.variable,
        task.levels,
        task.block,
        per_model,
        tuple(r.name for r in task.regions),
        model_levels,
        names,
        maps_out,
        (spatial, _grid(tda, spatial)) if maps_out or spectra_out else (),
        spectra_out,
    )


def _warn_nan_members(members: np.ndarray, part: TaskPart, var: str, lead, shape,
                      stores=open_store) -> None:
    """Name (in the log) each ensemble member whose whole field is NaN: its store, variable,
    member label, init and lead. Only fields whose mean holds a NaN are looked at."""
    n, m = members.shape[:2]
    flat = members.reshape(n, m, -1)
    suspect = np.flatnonzero(np.isnan(flat[:, :, 0]).any(axis=1))
    if suspect.size == 0:
        return
    import logging

    fc = stores(part.source.store)  # the member labels (var may be derived: not stored)
    labels = fc[MEMBER].values if MEMBER in fc.coords else np.arange(m)
    for k in suspect:
        dead = np.flatnonzero(np.isnan(flat[k]).all(axis=1))
        init = part.init_times[k // shape[1]]
        for j in dead:
            logging.getLogger("wxeval").warning(
                "%s: %s: ensemble member %s is all NaN at init %s, lead %s: its regions score "
                "NaN", part.source.store.name, var, labels[j],
                np.datetime_as_string(init, unit="m"), lead.astype("timedelta64[h]"),
            )


def _member_mean(members: np.ndarray) -> np.ndarray:
    """Ensemble mean x̄ = (1/M) Σ_i x_i of members (N, M, *spatial), accumulated in float64;
    of float32 members rounded to float32 (WB2's stores, as WB2's own mean). Other types
    (float16 included, which would lose digits) keep the float64 mean."""
    mean = members.mean(axis=1, dtype=np.float64)
    if members.dtype == np.float32:
        return mean.astype(np.float32)
    return mean


def _grid(tda: xr.DataArray, spatial) -> dict[str, np.ndarray]:
    return {d: tda[d].values for d in spatial}


def _rows(mask: np.ndarray | None) -> np.ndarray | None:
    """Positions of a part's rows mask (None: every row)."""
    return None if mask is None or mask.all() else np.flatnonzero(mask)


def _take(x: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return x if rows is None else x[rows]


def truth_grid(truth: StoreSpec, variable: str, stores=open_store) -> tuple:
    """(spatial dims in the truth's storage order, their coordinates): the grid of the map sums
    of ``variable``."""
    tda = _field_or_stand_in(stores(truth), variable, truth.name)
    spatial = schema.spatial_dims(tda)
    return spatial, _grid(tda, spatial)


def _map_sums(task: Task, part: TaskPart, spatial_shape,
              map_acc: _maps.Accumulators | None = None) -> tuple | None:
    """(leads, levels, sums (lead, 4, level, *spatial)) for a part's map sums, if asked: a
    reused buffer (:data:`wxeval.maps.BUFFERS`) whose leads ``accumulate(fresh=True)`` writes;
    with ``map_acc``, its layout's shared :class:`wxeval.maps.Accumulator` (opened: the caller
    closes it) in place of the sums."""
    if not task.maps or (part.map_rows is not None and not part.map_rows.any()):
        return None
    nlev = 1 if part.levels is None else len(part.levels)
    shape = (len(part.lead_times), len(_maps.MAP_STATISTICS), nlev, *spatial_shape)
    if map_acc is not None:
        from wxeval.sum_parts import Writer

        key = Writer._key(("maps", part.model, task.variable), part.lead_times, part.levels)
        return part.lead_times, part.levels, map_acc.open(key, shape)
    # not zeroed: each lead's sums are written (accumulate's ``fresh``) by the lead's one call
    sums = _maps.BUFFERS.take(
        (len(part.lead_times), len(_maps.MAP_STATISTICS), nlev, *spatial_shape), zero=False)
    return part.lead_times, part.levels, sums


def _init_major(part: TaskPart, task: Task, stores) -> tuple | None:
    """For a forecast whose chunks hold one init each and every lead of the part (so
    :func:`_forecast_reader` would decode all the part's inits before the first lead is
    reduced), what reading it init by init needs: (array, init positions, lead positions,
    level positions, groups of part inits, each up to :data:`INIT_MAJOR_BYTES` and at least
    one init); else None (members, derived variables, built-in baselines, several inits or
    several read groups of leads per chunk, or a part that fits in one group anyway)."""
    if not part.source.reads_store:
        return None
    fc = stores(part.source.store)
    if task.variable not in fc.data_vars:
        return None
    fda = fc[task.variable]
    if MEMBER in fda.dims or _chunk_size(fda, INIT_TIME) != 1:
        return None
    fda, ipos, lpos, flev = _forecast_selection(part, task, fc)
    lead_chunk = _chunk_size(fda, LEAD_TIME)
    if lead_chunk < 2 or len(np.unique(lpos // lead_chunk)) != 1:
        return None
    nlev = 1 if part.levels is None else len(part.levels)
    per_init = (len(lpos) * nlev * fda.dtype.itemsize
                * math.prod(fda.sizes[d] for d in schema.spatial_dims(fda)))
    per_group = max(1, INIT_MAJOR_BYTES // max(per_init, 1))
    n = len(part.init_times)
    if n <= per_group:
        return None
    groups = [np.arange(i, min(i + per_group, n)) for i in range(0, n, per_group)]
    return fda, ipos, lpos, flev, groups


def _forecast_selection(part: TaskPart, task: Task, fc: xr.Dataset) -> tuple:
    """The part's forecast array in store ``fc`` and its positions there: (array, init
    positions, lead positions, level positions), each lookup failing with the store's name."""
    name = part.source.store.name
    fda = _data_var(fc, task.variable, name)
    ipos = _positions(fc[INIT_TIME].values, part.init_times, name, "init_time")
    lpos = _positions(fc[LEAD_TIME].values, part.lead_times, name, "lead_time")
    return fda, ipos, lpos, _level_positions(fda, part.levels, name)


def _forecast_reader(
    part: TaskPart, task: Task, spatial, obs: np.ndarray, valid: np.ndarray, clim_fields, cslot,
    stores: Callable[[StoreSpec], xr.Dataset] = open_store,
) -> Callable[[int], np.ndarray]:
    lev_sel = _subset_positions(task.levels, part.levels)
    if part.source.reads_truth_at_init:
        at_init = obs[np.searchsorted(valid, part.init_times)][:, lev_sel]
        return lambda li: at_init
    if part.source.reads_climatology:
        # The climatology of the task's valid-time window is already in memory.
        def read_clim(li: int) -> np.ndarray:
            vslot = np.searchsorted(valid, part.init_times + part.lead_times[li])
            return clim_fields[cslot[vslot]][:, lev_sel]

        return read_clim
    fc = stores(part.source.store)
    if task.variable not in fc.data_vars:  # a derived variable (wxeval.derived)
        return _derived_forecast_reader(part, task, spatial, fc)
    fda, ipos, lpos, flev = _forecast_selection(part, task, fc)

    # Leads stored together in one chunk are read together (once), then served lead by lead;
    # consecutive lead chunks are read together up to READ_BYTES (few inits: few reads).
    lead_chunk = _chunk_size(fda, LEAD_TIME)
    nlev = 1 if part.levels is None else len(part.levels)
    per_lead = (len(ipos) * nlev * fda.sizes.get(MEMBER, 1) * fda.dtype.itemsize
                * math.prod(fda.sizes[d] for d in spatial))
    group_of = _read_groups(lpos // lead_chunk, per_lead)
    cache: dict[str, object] = {"group": None, "data": None, "members": None, "next": None}

    # One lead per chunk: the group is read lead-major, so that each lead's fields are one
    # contiguous block (chunks decoded straight into it); several leads per chunk: init-major,
    # each chunk decoded straight into its block, a lead a strided view.
    lead_major = lead_chunk == 1

    def load(group: int) -> tuple[np.ndarray, np.ndarray]:
        members = np.flatnonzero(group_of == group)
        sel = {INIT_TIME: ipos, LEAD_TIME: lpos[members], **flev}
        leading = [LEAD_TIME, INIT_TIME] if lead_major else [INIT_TIME, LEAD_TIME]
        return members, _read(fda, sel, [*leading, LEVEL, MEMBER], spatial,
                              store=part.source.store.name)

    # An ensemble's next lead group is read while this one is computed (its statistics cost
    # about as much as decoding it): one thread per reader, counted in the task size
    # (_lead_chunk), shut down by compute_task.
    pool = ThreadPoolExecutor(1) if MEMBER in fda.dims and group_of.max() > 0 else None

    def read(li: int) -> np.ndarray:
        group = group_of[li]
        if cache["group"] != group:
            nxt = cache["next"]
            members, data = (nxt[1].result() if nxt is not None and nxt[0] == group
                             else load(group))
            cache.update(group=group, members=members, data=data, next=None)
            if pool is not None and group < group_of.max():
                cache["next"] = (group + 1, pool.submit(load, group + 1))
        k = int(np.flatnonzero(cache["members"] == li)[0])
        return cache["data"][k] if lead_major else cache["data"][:, k]

    read.close = (lambda: pool.shutdown(cancel_futures=True)) if pool else (lambda: None)
    return read


# ---------------------------------------------------------------------------------------------
# Derived variables and SEEPS inputs (issue 14), read in the same task as everything else


def _needs_clim_fields(task: Task, stores=open_store) -> bool:
    """The climatology of the variable is read only for anomaly groups or the climatology
    baseline (SEEPS reads its own fields; RMSE alone reads none)."""
    if task.climatology is None or task.variable not in stores(task.climatology).data_vars:
        return False
    return any(GROUPS[g].needs_climatology and g != "seeps" for g in task.groups) or any(
        p.source.reads_climatology for p in task.parts
    )


def _field_or_stand_in(ds: xr.Dataset, var: str, name: str) -> xr.DataArray:
    """``ds[var]``, or for a variable derived from ``ds`` its first input (dims, levels)."""
    from wxeval.derived import recipe_in

    r = recipe_in(ds, var) if var not in ds.data_vars else None
    return _data_var(ds, r.inputs[0] if r is not None else var, name)


def _read_truth(truth, tda, task: Task, valid, tpos, truth_lev, spatial) -> np.ndarray:
    """Truth fields at ``valid`` (valid, level, *spatial): read, or derived from inputs read
    once at the union of the times the recipe's windows need (v − offset)."""
    from wxeval.derived import recipe_in

    name = task.truth.name
    r = recipe_in(truth, task.variable) if task.variable not in truth.data_vars else None
    if r is None:
        return _read(tda, {VALID_TIME: tpos, **truth_lev}, [VALID_TIME, LEVEL], spatial,
                     store=name)
    times = np.unique(np.concatenate([valid - off for off in r.offsets]))
    pos = _positions(truth[VALID_TIME].values, times, name, "valid_time")
    inputs = {}
    for v in r.inputs:
        da = _data_var(truth, v, name)
        inputs[v] = _read(da, {VALID_TIME: pos, **_level_positions(da, task.levels, name)},
                          [VALID_TIME, LEVEL], spatial, store=name)
    return r.apply([inputs[v][np.searchsorted(times, valid - off)] for v, off in r.reads])


def _derived_forecast_reader(
    part: TaskPart, task: Task, spatial, fc
) -> Callable[[int], np.ndarray]:
    """Lead by lead, a derived forecast field (init, level, *spatial) from its inputs at leads
    l − offset. Each input's needed leads are read in whole lead chunks (merged up to
    READ_BYTES), each chunk once: a chunk is kept while a later lead still needs it. A
    cumulative input at lead 0 that the store lacks is 0 (nothing accumulated at the init)."""
    from wxeval.derived import recipe_in

    name = part.source.store.name
    recipe = recipe_in(fc, task.variable)
    if recipe is None:
        _data_var(fc, task.variable, name)  # raises: not in store
    stored = fc[LEAD_TIME].values.astype("timedelta64[ns]")
    ipos = _positions(fc[INIT_TIME].values, part.init_times, name, "init_time")
    need = np.unique(np.concatenate([part.lead_times - off for off in recipe.offsets]))
    need = need[np.isin(need, stored)]
    lpos = _positions(stored, need, name, "lead_time")
    nlev = 1 if part.levels is None else len(part.levels)
    # An ensemble's inputs carry the member axis after the level (as the reader returns it).
    nmem = fc.sizes[MEMBER] if any(MEMBER in fc[v].dims for v in recipe.inputs) else 0
    shape = (len(ipos), nlev, *((nmem,) if nmem else ()), *(fc.sizes[d] for d in spatial))
    span = max(recipe.offsets)
    inputs = {}
    for v in recipe.inputs:
        da = _data_var(fc, v, name)
        per_lead = math.prod(shape) * da.dtype.itemsize
        inputs[v] = (da, _level_positions(da, part.levels, name),
                     _read_groups(lpos // _chunk_size(da, LEAD_TIME), per_lead))
    cache: dict[tuple[str, int], np.ndarray] = {}

    def at(v: str, lead: np.timedelta64) -> np.ndarray:
        da, flev, group_of = inputs[v]
        k = np.searchsorted(need, lead)
        if k >= len(need) or need[k] != lead:  # lead 0 of a cumulative input (checked in plan)
            return np.zeros(shape, da.dtype if da.dtype.kind == "f" else np.float32)
        group = int(group_of[k])
        members = np.flatnonzero(group_of == group)
        if (v, group) not in cache:
            sel = {INIT_TIME: ipos, LEAD_TIME: lpos[members], **flev}
            cache[(v, group)] = _read(da, sel, [INIT_TIME, LEAD_TIME, LEVEL], spatial, store=name)
        return cache[(v, group)][:, k - members[0]]

    def read(li: int) -> np.ndarray:
        lead = part.lead_times[li]
        out = recipe.apply([at(v, lead - off) for v, off in recipe.reads])
        for v, group in list(cache):  # later leads need only leads ≥ this lead − span
            last = need[np.flatnonzero(inputs[v][2] == group)[-1]]
            if last < lead - span:
                del cache[(v, group)]
        return out

    return read


_P1: dict[tuple, np.ndarray] = {}
_P1_LOCK = threading.Lock()


def _seeps_p1(clim: StoreSpec, var: str, spatial: tuple[str, str], stores=open_store
              ) -> np.ndarray:
    """p1 per grid point (spatial order): ``<var>_seeps_dry_fraction`` averaged over all hours
    and days of year (kept per climatology, variable and order: read once per process)."""
    from wxeval.seeps import p1_of

    key = (clim, var, spatial)
    with _P1_LOCK:
        hit = _P1.get(key)
    if hit is not None:
        return hit
    da = _data_var(stores(clim), f"{var}_seeps_dry_fraction", clim.name)
    values = _read(da, {}, [DAYOFYEAR, HOUR, LEVEL], spatial, store=clim.name)
    p1 = p1_of(values, (0, 1, 2))  # (dayofyear, hour, level of 1, *spatial)
    with _P1_LOCK:
        if len(_P1) >= 8:
            _P1.clear()
        _P1[key] = p1
    return p1


def _seeps_reader(task: Task, valid: np.ndarray, spatial, stores=open_store) -> Callable:
    """``(vslot, n) -> (wet, p1, dry)`` for :func:`wxeval.statistics.compute`: the wet threshold
    ``<var>_seeps_threshold`` at each field's valid time (its day of year and hour), p1 and the
    dry threshold (metres)."""
    from wxeval.align import climatology_positions
    from wxeval.derived import SEEPS_DRY_THRESHOLD

    clim = stores(task.climatology)
    da = _data_var(clim, f"{task.variable}_seeps_threshold", task.climatology.name)
    doy_pos, hour_pos = climatology_positions(
        valid, clim[DAYOFYEAR].values, clim[HOUR].values, task.climatology.name
    )
    days, day_of = np.unique(doy_pos, return_inverse=True)
    hours, hour_of = np.unique(hour_pos, return_inverse=True)
    block = _read(da, {DAYOFYEAR: days, HOUR: hours}, [DAYOFYEAR, HOUR, LEVEL], spatial,
                  store=task.climatology.name)
    wet = block[day_of.ravel(), hour_of.ravel(), 0]  # (valid, *spatial)
    p1 = _seeps_p1(task.climatology, task.variable, tuple(spatial), stores)
    dry = SEEPS_DRY_THRESHOLD[task.variable]

    def inputs(vslot: np.ndarray, n: int):
        w = wet[vslot]
        return np.broadcast_to(w[:, None], (len(vslot), n // len(vslot), *w.shape[1:])
                               ).reshape(n, *w.shape[1:]), p1, dry

    return inputs


def _read_groups(chunk_of_lead: np.ndarray, per_lead: int) -> np.ndarray:
    """Group id per lead: whole lead chunks, consecutive ones merged while the group's leads
    hold at most :data:`READ_BYTES` (a chunk is never split)."""
    group_of = np.empty(len(chunk_of_lead), dtype=np.int64)
    group, size, previous = -1, 0, None
    for i, chunk in enumerate(chunk_of_lead.tolist()):
        if chunk != previous:
            members = int(np.count_nonzero(chunk_of_lead == chunk))
            if group < 0 or (size + members) * per_lead > READ_BYTES:
                group, size = group + 1, 0
            size += members
            previous = chunk
        group_of[i] = group
    return group_of


def _chunk_size(da: xr.DataArray, dim: str) -> int:
    """Stored chunk length of ``da`` along ``dim`` (1 when unknown)."""
    chunks = da.encoding.get("chunks") or da.encoding.get("preferred_chunks")
    if isinstance(chunks, dict):
        return int(chunks.get(dim, 1))
    if chunks is not None and dim in da.dims:
        try:
            return max(1, int(chunks[da.dims.index(dim)]))
        except (IndexError, TypeError, ValueError):
            return 1
    return 1


def _data_var(ds: xr.Dataset, var: str, name: str) -> xr.DataArray:
    if var not in ds.data_vars:
        raise schema.SchemaError(f"{name}: variable {var!r} not in store")
    return ds[var]


def _positions(axis: np.ndarray, values: np.ndarray, name: str, what: str) -> np.ndarray:
    """Positions of ``values`` on ``axis``; a missing one is a SchemaError naming ``name``."""
    idx = positions(axis, values)
    if (idx < 0).any():
        from wxeval.align import describe_times

        raise schema.SchemaError(
            f"{name}: {what} values missing from the store: {describe_times(values[idx < 0])}"
        )
    return idx


def _level_positions(da: xr.DataArray, levels, name: str) -> dict:
    """Positions of ``levels`` (hPa) on ``da``'s level axis; none for a one-level store (a
    scalar ``level`` coordinate equal to the only level asked for: read as it is)."""
    if levels is None:
        return {}
    if LEVEL not in da.dims:
        if LEVEL in da.coords and da[LEVEL].ndim == 0 and tuple(levels) == (int(da[LEVEL]),):
            return {}
        raise schema.SchemaError(f"{name}: variable {da.name!r} has no level dimension")
    idx = positions(da[LEVEL].values, list(levels))
    if (idx < 0).any():
        lacking = [lv for lv, i in zip(levels, idx, strict=True) if i < 0]
        raise schema.SchemaError(f"{name}: variable {da.name!r} lacks level(s) {lacking}")
    return {LEVEL: idx}


def _subset_positions(levels: tuple[int, ...] | None, subset: tuple[int, ...] | None):
    if levels is None or subset is None:
        return slice(None)
    pos = [levels.index(x) for x in subset]
    if pos == list(range(len(levels))):
        return slice(None)
    return np.asarray(pos)


def _read(
    da: xr.DataArray, indexers: dict, leading: list[str], spatial, store: str = "store"
) -> np.ndarray:
    """Read an orthogonal selection as NumPy with dims (leading…, level, [member,] *spatial);
    variables without levels get a length-1 level axis. Values are read in the store's own dimension
    order and transposed in NumPy (a lazy transpose would make xarray index pointwise)."""
    # Variable.isel: the data only (DataArray.isel also slices every coordinate and index).
    sub = da.variable.isel({k: as_slice(v) for k, v in indexers.items()})
    lead_dims = [d for d in leading if d in sub.dims and d not in (LEVEL, MEMBER)]
    order = (lead_dims + ([LEVEL] if LEVEL in sub.dims else [])
             + ([MEMBER] if MEMBER in sub.dims else []) + list(spatial))
    extra = [d for d in sub.dims if d not in order]
    if extra:
        raise schema.SchemaError(
            f"{store}: {da.name}: unexpected dimension(s) {extra} (fields are scored on time, "
            "lead, level, latitude and longitude: select or average the others first)"
        )
    # Allocated in the order returned (the spatial dims in the store's order, as transposing
    # them would need a copy), so that the leading axes of the result are C-contiguous.
    memory = order[: len(order) - len(spatial)] + [d for d in sub.dims if d in spatial]
    with memory_order([sub.dims.index(d) for d in memory]):
        arr = np.asarray(sub.values)
    axes = [sub.dims.index(d) for d in order]
    if axes != list(range(len(axes))):
        arr = np.transpose(arr, axes)
    if LEVEL not in sub.dims:
        arr = np.expand_dims(arr, len(lead_dims))
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    return arr


_WEIGHTS: dict[tuple, RegionReducer] = {}
_WEIGHTS_KEPT = 16
_WEIGHTS_LOCK = threading.Lock()


def _weights(
    truth: StoreSpec,
    lsm: StoreSpec | None,
    regions: tuple[Region, ...],
    spatial: tuple[str, str],
    stores: Callable[[StoreSpec], xr.Dataset] = open_store,
) -> RegionReducer:
    """Region reducer for fields in the truth's storage order of the spatial dims (kept per
    truth, mask, regions and order: the last :data:`_WEIGHTS_KEPT`)."""
    key = (truth, lsm, regions, spatial)
    with _WEIGHTS_LOCK:
        hit = _WEIGHTS.get(key)
    if hit is not None:
        return hit
    ds = stores(truth)
    lat, lon = ds[LATITUDE].values, ds[LONGITUDE].values
    mask = None
    if any(r.land for r in regions):
        mask = land_sea_mask_array(truth, lsm, stores)
    lon_axis = -2 if spatial == (LONGITUDE, LATITUDE) else -1
    reducer = RegionReducer(regions, lat, lon, mask, lon_axis=lon_axis)
    with _WEIGHTS_LOCK:
        while len(_WEIGHTS) >= _WEIGHTS_KEPT:
            _WEIGHTS.pop(next(iter(_WEIGHTS)))
        _WEIGHTS[key] = reducer
    return reducer


def clear_weights() -> None:
    """Forget the region reducers (a land-sea mask rewritten in place) and the SEEPS p1
    fields (a climatology rewritten in place)."""
    with _WEIGHTS_LOCK:
        _WEIGHTS.clear()
    with _P1_LOCK:
        _P1.clear()


def land_sea_mask_array(
    truth: StoreSpec, lsm: StoreSpec | None, stores: Callable[[StoreSpec], xr.Dataset] = open_store
) -> np.ndarray:
    """Land fraction on the truth grid, (latitude, longitude), from ``lsm`` or the truth."""
    source = lsm or truth
    ds = stores(source)
    if LAND_SEA_MASK not in ds.variables:
        raise schema.SchemaError(f"{source.name}: no {LAND_SEA_MASK!r} variable")
    da = ds[LAND_SEA_MASK]
    drop = [d for d in da.dims if d not in (LATITUDE, LONGITUDE)]
    if drop:
        da = da.isel({d: 0 for d in drop})
    if lsm is not None:
        schema.check_same_grid(ds, stores(truth), lsm.name, truth.name)
    values = np.asarray(da.values, dtype=np.float64)  # store order, transposed in NumPy
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
        raise schema.SchemaError(
            f"{source.name}: {LAND_SEA_MASK} spans [{finite.min():g}, {finite.max():g}], expected "
            "a land fraction in [0, 1] (a mask in percent must be divided by 100)"
        )
    return values if da.dims == (LATITUDE, LONGITUDE) else values.T


__all__ = [
    "Task",
    "TaskResult",
    "compute_task",
    "make_tasks",
    "VALID_TIME",
]
