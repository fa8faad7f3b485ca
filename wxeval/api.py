"""The Python API: score models from a config, resuming from the statistics store.

>>> from wxeval.api import score
>>> report = score("configs/wb2-240x121.yaml", ["graphcast"], output="results/")  # doctest: +SKIP
>>> report.tables["graphcast"]["geopotential"].sel(metric="rmse", level=500)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import logging
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import wxeval
import wxeval.kernels  # noqa: F401 - numba and its NumPy support: loaded with the API, not in a task
from wxeval import results
from wxeval.cluster import run_tasks
from wxeval.config import Config, load_config, parse_memory
from wxeval.evaluate import Task, TaskPart, compute_task, make_tasks
from wxeval.metrics import statistics_for
from wxeval.names import check_name
from wxeval.plan import Plan, make_plan
from wxeval.redact import redacted_config
from wxeval.statistics import ALWAYS, GROUPS, groups_for
from wxeval.store import (
    StatisticsStore,
    entry_key,
    land_sea_mask_fingerprint,
    remove_tmp,
    store_fingerprint,
)
from wxeval.store import load_statistics as load_statistics  # public API (README), moved

log = logging.getLogger("wxeval")


@dataclass
class ScoreReport:
    """What a run did: tables per model, and how much work was computed vs reused."""

    tables: dict[str, xr.Dataset]
    statistics: dict[str, xr.Dataset]
    computed_fields: int = 0
    reused_fields: int = 0
    pending: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: dict[str, np.ndarray] = field(default_factory=dict)  # missing_truth: skip
    outputs: dict[str, list[str]] = field(default_factory=dict)
    #: Statistic groups computed (not reused) per model, e.g. ``{"m": {"errors"}}``.
    computed_groups: dict[str, set[str]] = field(default_factory=dict)
    #: Per model, Σ W over NaN points (``nan_weight``, :mod:`wxeval.statistics`) per
    #: (variable →) init, lead, region[, level]; NaN where unknown (older parts).
    nan_weight: dict[str, xr.Dataset] = field(default_factory=dict)
    #: Per model, the fields that held NaN inside a region (:func:`results.nan_fields`).
    nan_fields: dict[str, list[dict]] = field(default_factory=dict)


def score(
    config: Config | str | Path,
    models: Sequence[str],
    output: str | Path | None = None,
    *,
    scheduler: str | None = None,
    progress: bool | None = None,
) -> ScoreReport:
    """Score ``models``; write ``<output>/<model>.nc``/``.csv``/``.json`` when ``output`` is set.

    Per-init statistics go to the statistics store (``output.statistics`` in the config, else
    ``<output>/statistics``); a rerun computes only what the store lacks.

    While it runs, the objects that existed before the call are kept out of garbage
    collections (``gc.freeze``; see :func:`_old_objects_frozen`): cyclic garbage the caller
    left behind is freed after the call rather than during it.
    """
    with _old_objects_frozen():
        return _score(config, models, output, scheduler=scheduler, progress=progress)


@contextlib.contextmanager
def _old_objects_frozen():
    """Keep the garbage collector off the objects that exist before the run (~2·10^5 from
    xarray, dask, numba…): a full collection scanning them takes ~0.1 s, a fixed cost of every
    nightly rerun. They are collectable again afterwards. Left alone when the caller froze
    objects itself (process-wide state: a ``gc.freeze`` another thread makes during the run is
    undone with this one)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _score(config, models, output, *, scheduler, progress) -> ScoreReport:
    from wxeval.check import preflight, write_report

    cfg = load_config(config) if isinstance(config, str | Path) else config
    plan = make_plan(cfg, list(models))
    for m in plan.models:  # they become file names and statistics folders
        check_name(m.name, "model name")
        for var in m.variables:
            check_name(var, f"variable of {m.name!r}")
        log.info(
            "%s: %d init(s) from %s to %s, %d lead(s), %d variable(s), %d region(s)",
            m.name, len(m.init_times), np.datetime_as_string(m.init_times[0], unit="m"),
            np.datetime_as_string(m.init_times[-1], unit="m"), len(m.lead_times),
            len(m.variables), len(plan.regions),
        )
    if output is not None:
        results.remove_stale_temporaries(output)
    stats_root = cfg.output.statistics or (str(Path(output) / "statistics") if output else None)
    store = None
    if stats_root is not None:
        store = StatisticsStore(stats_root, cfg.output.storage_options or None)
        if store._local:
            remove_tmp(stats_root)
    budget = parse_memory(cfg.compute.memory_per_task)
    tasks = make_tasks(
        plan.models,
        plan.regions,
        land_sea_mask=plan.land_sea_mask,
        skipna=plan.skipna,
        memory_budget=budget,
        statistic_groups=groups_for(statistics_for(plan.metrics)),
    )
    keys = _entry_keys(plan)
    region_keys = [r.key() for r in plan.regions]
    report = ScoreReport({}, {}, pending=plan.pending, skipped=plan.skipped)
    if store is not None:
        tasks, reused = _drop_done(tasks, store, keys, region_keys)
        report.reused_fields = reused
    for task in tasks:  # NaN counts come with the fused pass, nearly free
        if {"errors", "anomalies"} & set(task.groups) or not task.groups:
            task.groups = (*task.groups, *(g for g in ALWAYS if g not in task.groups))
        for p in task.parts:
            report.computed_groups.setdefault(p.model, set()).update(task.groups)
    log.info(
        "%d task(s) to compute; %d field(s) reused from the statistics store",
        len(tasks), report.reused_fields,
    )
    # Longest first: two threads then finish together instead of one waiting on a late
    # upper-air task (a rerun's few tasks differ ~10x in size).
    tasks.sort(key=lambda t: -t.cost)
    # The cheap part of `wxeval check` (metadata only) before computing anything; chunk files
    # are listed for the inits still to compute only.
    todo: dict[str, list] = {}
    for task in tasks:
        for p in task.parts:
            todo.setdefault(p.model, []).append(p.init_times)
    check_report = preflight(
        cfg,
        list(models),
        plan_checked=True,
        chunk_inits={
            m.name: np.unique(np.concatenate(todo[m.name])) if m.name in todo else m.init_times[:0]
            for m in plan.models
        },
    )
    memory: list = []

    def on_result(task: Task, res) -> None:
        for model, (inits, leads, arr) in res.per_model.items():
            report.computed_fields += arr.shape[0] * arr.shape[1] * arr.shape[2]
            da = _as_dataarray(inits, leads, res.model_levels[model], res.regions, arr,
                               res.statistics)
            if store is not None:
                store.write_part(
                    model,
                    res.variable,
                    keys[(model, res.variable)],
                    res.block,
                    da,
                    region_keys,
                    attrs={"wxeval_version": wxeval.__version__},
                )
            else:
                memory.append((model, res.variable, da))

    run_tasks(
        compute_task,
        tasks,
        on_result,
        scheduler=scheduler or cfg.compute.scheduler,
        num_workers=cfg.compute.workers,
        jobqueue=cfg.compute.jobqueue.model_dump() if cfg.compute.jobqueue else None,
        progress=progress,
    )
    for m in plan.models:
        stats = _collect(m, plan, store, keys, memory)
        table = results.summarize(stats, plan.metrics, skipna=plan.skipna)
        report.statistics[m.name] = stats
        report.tables[m.name] = table
        report.nan_weight[m.name] = _collect(m, plan, store, keys, memory, ("nan_weight",))
        nan_found = results.nan_fields(report.nan_weight[m.name])
        report.nan_fields[m.name] = nan_found
        _report_nan(m, nan_found, check_report)
        if output is not None:
            report.outputs[m.name] = _write_outputs(
                Path(output), m, plan, cfg, table, stats_root, keys, nan_found
            )
    if output is not None:
        write_report(check_report, Path(output))
    if store is not None:
        _compact(store, plan, keys)
    return report


def _report_nan(m, fields: list[dict], check_report) -> None:
    """Warn on the terminal and add a ``nan-fields`` warning to ``check.json`` (and so to the
    scorecard's pre-flight box) per variable whose fields held NaN inside a region."""
    from wxeval.check import Finding

    store = m.source.store.name if m.source.store is not None else m.name
    for var, message in results.nan_summary(m.name, fields):
        log.warning("%s", message)
        check_report.findings.append(Finding("warning", "nan-fields", store, var, message))


def _compact(store: StatisticsStore, plan: Plan, keys) -> None:
    """Merge small statistics parts (results are already written: a failure here, e.g. no
    permission to delete on a bucket, is logged and leaves the parts as they are)."""
    for m in plan.models:
        for var in m.variables:
            try:
                removed = store.compact(m.name, var, keys[(m.name, var)])
            except Exception as err:  # noqa: BLE001 - best effort, never fails the run
                log.warning("statistics of %s %s: parts not merged (%s)", m.name, var, err)
                return
            if removed:
                log.info("statistics of %s %s: %d parts merged", m.name, var, removed)


def _entry_keys(plan: Plan) -> dict[tuple[str, str], str]:
    """Statistics entry key per (model, variable): see :func:`wxeval.store.entry_key`."""
    keys = {}
    masks: dict = {}
    for m in plan.models:
        if (m.truth, plan.land_sea_mask) not in masks:
            masks[(m.truth, plan.land_sea_mask)] = land_sea_mask_fingerprint(
                m.truth, plan.land_sea_mask
            )
        for var in m.variables:
            if m.source.kind == "zarr":
                fid = store_fingerprint(m.source.store, var)
            else:
                fid = f"baseline:{m.source.kind}"
            keys[(m.name, var)] = entry_key(
                fid, m.truth, m.climatology, var, plan.skipna,
                land_sea_mask=masks[(m.truth, plan.land_sea_mask)],
                levels=m.level_pairs.get(var),
            )
    return keys


def _drop_done(tasks, store, keys, region_keys):
    """Remove every task part the store already covers, group by group: a task keeps the
    inits that lack any of its groups and computes only the groups lacking there. Count the
    reused fields (fields whose every group is stored)."""
    kept, reused = [], 0
    for task in tasks:
        parts = []
        missing: set[str] = set()
        for p in task.parts:
            todo = np.zeros(len(p.init_times), bool)
            for g in task.groups:
                have = store.coverage(
                    p.model,
                    task.variable,
                    keys[(p.model, task.variable)],
                    p.init_times,
                    p.lead_times,
                    p.levels,
                    region_keys,
                    GROUPS[g].statistics,
                )
                # Recompute the inits that lack anything (whole lead/level/region rows).
                lacking = ~have.all(axis=(1, 2, 3))
                if lacking.any():
                    missing.add(g)
                    todo |= lacking
            nfields = len(p.lead_times) * (1 if p.levels is None else len(p.levels))
            reused += int((~todo).sum()) * nfields
            if todo.any():
                parts.append(
                    TaskPart(p.model, p.source, p.init_times[todo], p.lead_times, p.levels)
                )
        if parts:
            task.parts = tuple(parts)
            task.groups = tuple(g for g in task.groups if g in missing)
            kept.append(task)
    return kept, reused


def _as_dataarray(inits, leads, levels, regions, arr, statistics) -> xr.DataArray:
    da = xr.DataArray(
        arr,
        dims=("init_time", "lead_time", "level", "region", "statistic"),
        coords={
            "init_time": inits,
            "lead_time": leads,
            "level": list(levels) if levels is not None else [0],
            "region": list(regions),
            "statistic": list(statistics),
        },
    )
    if levels is None:
        da = da.isel(level=0, drop=True)
    dims = ["statistic", "init_time", "lead_time", "region"] + (["level"] if levels else [])
    return da.transpose(*dims)


def _collect(m, plan: Plan, store, keys, memory, statistics=None) -> xr.Dataset:
    """The statistics ``statistics`` (default: those the plan's metrics need) of model ``m``,
    one data variable per weather variable; NaN where a statistic was not computed."""
    if statistics is None:
        statistics = statistics_for(plan.metrics)
    region_names = [r.name for r in plan.regions]
    region_keys = [r.key() for r in plan.regions]
    out = {}
    for var in m.variables:
        lev = m.levels[var]
        if store is not None:
            da = store.load(
                m.name,
                var,
                keys[(m.name, var)],
                m.init_times,
                m.lead_times,
                lev,
                region_names,
                region_keys,
                statistics,
            )
        else:
            pieces = [d for (mm, v, d) in memory if mm == m.name and v == var]
            da = xr.combine_by_coords([p.to_dataset(name=var) for p in pieces])[var]
            da = da.reindex(statistic=list(statistics))
            da = da.sel(init_time=m.init_times, lead_time=m.lead_times)
        out[var] = da
    ds = xr.Dataset(out)
    ds.attrs["model"] = m.name
    return ds


def provenance(m, plan: Plan, cfg: Config) -> dict[str, Any]:
    """Inputs, selection, config (credentials redacted) and versions, for result attributes."""
    import dask
    import zarr

    inputs = {"truth": {"path": m.truth.path, "storage_options": m.truth.redacted_options()}}
    if m.climatology is not None:
        inputs["climatology"] = {"path": m.climatology.path}
    if m.source.store is not None:
        inputs["forecast"] = {
            "path": m.source.store.path,
            "rename": dict(m.source.store.rename),
            "storage_options": m.source.store.redacted_options(),
        }
    else:
        inputs["forecast"] = {"baseline": m.source.kind}
    return {
        "title": f"wxeval scores of {m.name}",
        "model": m.name,
        "alignment": "by init: truth at valid_time = init_time + lead_time",
        "inputs": inputs,
        "init_time_first": str(np.datetime_as_string(m.init_times[0], unit="m")),
        "init_time_last": str(np.datetime_as_string(m.init_times[-1], unit="m")),
        "init_time_count": int(len(m.init_times)),
        "lead_time_hours": [float(x / np.timedelta64(1, "h")) for x in m.lead_times],
        "regions": {
            r.name: {"lat": r.lat_bands, "lon": r.lon_bands, "land": r.land} for r in plan.regions
        },
        "skipna": int(plan.skipna),
        "config": redacted_config(cfg),
        "wxeval_version": wxeval.__version__,
        "versions": _versions(dask, zarr),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def _versions(dask, zarr) -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "xarray": xr.__version__,
        "dask": dask.__version__,
        "zarr": zarr.__version__,
    }


def _write_outputs(out: Path, m, plan, cfg, table, stats_root, keys, nan_found=()) -> list[str]:
    prov = provenance(m, plan, cfg)
    nc, csv, manifest = out / f"{m.name}.nc", out / f"{m.name}.csv", out / f"{m.name}.json"
    results.write_netcdf(table, nc, prov)
    results.write_csv(table, csv)
    results.write_json(
        {
            **prov,
            "statistics_store": (
                "statistics" if stats_root == str(out / "statistics") else stats_root
            ),
            "entry_keys": {var: keys[(m.name, var)] for var in m.variables},
            "init_times": [str(np.datetime_as_string(t, unit="m")) for t in m.init_times],
            "variables": {
                var: (list(m.levels[var]) if m.levels[var] else None) for var in m.variables
            },
            "region_names": [r.name for r in plan.regions],
            "region_keys": [r.key() for r in plan.regions],
            "metrics": list(plan.metrics),
            "pending_init_times": [str(t) for t in plan.pending.get(m.name, [])],
            "skipped_init_times": [str(t) for t in plan.skipped.get(m.name, [])],
            "nan_fields": list(nan_found),
        },
        manifest,
    )
    return [str(nc), str(csv), str(manifest)]
