"""The Python API: score models from a config, resuming from the statistics store.

>>> from wxeval.api import score
>>> report = score("configs/wb2-240x121.yaml", ["graphcast"], output="results/")  # doctest: +SKIP
>>> report.tables["graphcast"]["geopotential"].sel(metric="rmse", level=500)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

import wxeval
import wxeval.kernels  # noqa: F401 - numba and its NumPy support: loaded with the API, not in a task
from wxeval import results, sum_parts
from wxeval.cluster import is_local, run_tasks
from wxeval.config import Config, load_config, parse_memory
from wxeval.evaluate import compute_task, make_tasks
from wxeval.metrics import statistics_for
from wxeval.names import check_name
from wxeval.plan import Plan, make_plan
from wxeval.statistics import ALWAYS, GROUPS, groups_for
from wxeval.store import Collector, StatisticsStore, drop_done, entry_keys, remove_tmp
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
    #: Per model and split (``--by``), the table with the split's dim (:mod:`wxeval.splits`).
    splits: dict[str, dict[str, xr.Dataset]] = field(default_factory=dict)
    #: Per model, the error maps (:mod:`wxeval.maps`) when asked for.
    maps: dict[str, xr.Dataset] = field(default_factory=dict)
    #: Per model, the zonal energy spectra (:mod:`wxeval.spectra`) when asked for.
    spectra: dict[str, xr.Dataset] = field(default_factory=dict)
    #: Fields (init × lead × level) whose map / spectra sums this run computed and stored
    #: (the rest came from the statistics store).
    computed_sum_fields: dict[str, int] = field(default_factory=dict)


def score(
    config: Config | str | Path,
    models: Sequence[str],
    output: str | Path | None = None,
    *,
    scheduler: str | None = None,
    progress: bool | None = None,
    by: Sequence[str] = (),
    keep_statistics: bool = True,
) -> ScoreReport:
    """Score ``models``; write ``<output>/<model>.nc``/``.csv``/``.json`` when ``output`` is set.

    ``keep_statistics=False`` leaves ``report.statistics`` empty: each model's per-init
    statistics are freed once its table is made (the store keeps them; ``load_statistics``
    reads them back), so a run's memory holds one model's statistics at a time.

    ``by``: splits (:mod:`wxeval.splits`: ``season``, ``month``, ``init_hour``) whose tables
    go to ``report.splits`` and, with ``output``, ``<model>.by-<split>.nc``/``.csv``.

    Per-init statistics go to the statistics store (``output.statistics`` in the config, else
    ``<output>/statistics``); a rerun computes only what the store lacks.

    While it runs, the objects that existed before the call are kept out of garbage
    collections (``gc.freeze``; see :func:`_old_objects_frozen`): cyclic garbage the caller
    left behind is freed after the call rather than during it.
    """
    with _old_objects_frozen():
        return _score(config, models, output, scheduler=scheduler, progress=progress, by=by,
                      keep_statistics=keep_statistics)


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


def _score(config, models, output, *, scheduler, progress, by=(),
           keep_statistics=True) -> ScoreReport:
    from wxeval import splits
    from wxeval.check import preflight, write_report

    cfg = load_config(config) if isinstance(config, str | Path) else config
    for split in by:
        splits.check_split(split)
    _check_extras(cfg, by)
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
        statistic_groups=groups_for(statistics_for(plan.metrics, skipna=plan.skipna)),
        stores=plan.stores,
    )
    keys = entry_keys(plan)
    report = ScoreReport({}, {}, pending=plan.pending, skipped=plan.skipped)
    map_sums = _with_maps(tasks, plan, cfg)
    spectra_sums = _with_spectra(tasks, plan, cfg)
    sums_writer = None
    sched = scheduler or cfg.compute.scheduler
    map_acc = None
    if store is not None:
        kinds = sum_parts.kinds_for(plan, map_sums, spectra_sums)
        need = sum_parts.plan(tasks, store, keys, kinds) if kinds else {}
        original = [(task, task.parts) for task in tasks]
        kept, reused = drop_done(tasks, store, keys, [r.key() for r in plan.regions], GROUPS)
        report.reused_fields = reused
        tasks = sum_parts.with_sums_todo(original, kept, need) if kinds else kept
        if map_sums is not None and is_local(sched):
            # tasks on this process's threads add into one map-sum array per layout
            from wxeval.maps import Accumulators

            map_acc = Accumulators()
        sums_writer = sum_parts.Writer(store, keys, {"wxeval_version": wxeval.__version__},
                                       map_sums, map_acc)
        sums_writer.expect(tasks)
    for task in tasks:  # NaN counts come with the fused pass, nearly free
        if not task.regional:
            continue
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
        plan=plan,
        chunk_inits={
            m.name: np.unique(np.concatenate(todo[m.name])) if m.name in todo else m.init_times[:0]
            for m in plan.models
        },
    )
    collector = Collector(store, keys, plan.regions, {"wxeval_version": wxeval.__version__})
    try:
        run_tasks(
            # In this process the tasks read the plan's opened stores; dask workers reopen
            # them from the tasks' specs.
            functools.partial(compute_task, stores=plan.stores, map_acc=map_acc,
                              reuse_memory=True)
            if is_local(sched)
            else compute_task,
            tasks,
            lambda task, res: _on_result(res, collector, sums_writer, map_sums, spectra_sums),
            scheduler=sched,
            num_workers=cfg.compute.workers,
            jobqueue=cfg.compute.jobqueue.model_dump() if cfg.compute.jobqueue else None,
            progress=progress,
        )
    except BaseException:
        try:
            collector.close()  # finished tasks' statistics stored: a rerun does not redo them
        except Exception:  # noqa: BLE001 - the task's error is the one to report
            log.exception("storing the finished tasks' statistics failed too")
        if sums_writer is not None:
            try:
                sums_writer.close()  # finished layouts' sums stored, even when a task failed
            except Exception:  # noqa: BLE001 - the task's error is the one to report
                log.exception("storing the finished map/spectra sums failed too")
        _maps_buffers_clear()
        raise
    if sums_writer is not None:
        sums_writer.flush()  # written while the results are assembled (closed below)
    maps_made = _start_maps(map_sums, sums_writer, plan, cfg, output)
    report.computed_fields = collector.computed_fields
    for m in plan.models:
        stats = collector.collect(m, statistics_for(plan.metrics, skipna=plan.skipna))
        table = _summarize(stats, plan, cfg)
        if keep_statistics:
            report.statistics[m.name] = stats
        report.tables[m.name] = table
        report.nan_weight[m.name] = collector.collect(m, ("nan_weight",))
        nan_found = results.nan_fields(report.nan_weight[m.name])
        report.nan_fields[m.name] = nan_found
        _report_nan(m, nan_found, check_report)
        if output is not None:
            report.outputs[m.name] = results.write_outputs(
                Path(output), m, plan, cfg, table, stats_root, keys, nan_found
            )
        _write_splits(report, m, stats, by, plan, cfg, output)
        _write_spectra(report, m, spectra_sums, plan, cfg, output)
    if maps_made is not None:
        for name, (ds, path) in maps_made.result().items():
            report.maps[name] = ds
            if path is not None:
                report.outputs[name].append(path)
    if output is not None:
        write_report(check_report, Path(output))
    if sums_writer is not None:
        sums_writer.close()
        report.computed_sum_fields = sums_writer.fields
    _maps_buffers_clear()
    if store is not None:
        kinds = sum_parts.kinds_for(plan, map_sums, spectra_sums)
        _compact(store, plan, keys, [k.name for k in kinds])
    return report


def _on_result(res, collector, sums_writer, map_sums, spectra_sums) -> None:
    """A finished task's result: its regional statistics to the collector (and store), its
    maps to the store's writer, which passes them on to ``map_sums`` (without a store, to
    ``map_sums`` directly), its spectra to the writer and ``spectra_sums``."""
    collector.add(res)
    if sums_writer is not None:
        sums_writer.add(res)
    elif map_sums is not None:
        map_sums.add(res)
    if spectra_sums is not None:
        spectra_sums.add(res)


def _maps_buffers_clear() -> None:
    """Free the map-sum buffers a run reused (:data:`wxeval.maps.BUFFERS`) and its tasks'
    read buffers (:func:`wxeval.chunks.release_results`)."""
    from wxeval.chunks import release_results
    from wxeval.maps import BUFFERS

    BUFFERS.clear()
    release_results()


def _with_maps(tasks, plan, cfg):
    """With ``evaluation.maps``: mark the tasks to also sum error maps (:mod:`wxeval.maps`)
    and return the sums' collector, else None. With a statistics store the map sums are kept
    there (:mod:`wxeval.sum_parts`): :func:`wxeval.sum_parts.with_sums_todo` then leaves only
    the inits whose sums are not stored."""
    if not cfg.evaluation.maps:
        return None
    from wxeval.evaluate import truth_grid
    from wxeval.maps import MapSums, check_file_size

    for task in tasks:
        task.maps = True
    sums = MapSums(plan.models)
    for m in plan.models:
        if m.variables:
            sums.grid[m.name] = grid = truth_grid(m.truth, m.variables[0], plan.stores)
            n_points = int(np.prod([len(grid[1][d]) for d in grid[0]]))
            for var in m.variables:
                levels = m.levels[var]
                check_file_size(m.name, var, len(m.lead_times),
                                1 if levels is None else len(levels), n_points)
    return sums


def _start_maps(map_sums, sums_writer, plan, cfg, output):
    """Make and write every model's maps on a thread of their own while this one writes the
    regional results; a future of ``{model: (maps, file or None)}`` (None without maps). The
    maps are made in place of the sums: once the store's writer has written them."""
    if map_sums is None:
        return None
    from concurrent.futures import ThreadPoolExecutor

    def job() -> dict:
        if sums_writer is not None:
            sums_writer.close()
        return {m.name: _make_maps(m, map_sums, plan, cfg, output) for m in plan.models}

    pool = ThreadPoolExecutor(1, thread_name_prefix="wxeval-maps")
    try:
        return pool.submit(job)
    finally:
        pool.shutdown(wait=False)


def _make_maps(m, map_sums, plan, cfg, output) -> tuple:
    """The maps of model ``m`` and, with ``output``, the file they are written to."""
    from wxeval import maps

    ds = map_sums.dataset(m.name)
    if ds.data_vars:
        _add_land_sea_mask(ds, m, plan)
    path = None
    if output is not None:
        path = maps.write_maps(ds, Path(output), m.name, results.provenance(m, plan, cfg))
    return ds, path


def _with_spectra(tasks, plan, cfg):
    """With ``evaluation.spectra``: the tasks also sum zonal spectra (:mod:`wxeval.spectra`;
    like maps, kept in the statistics store)."""
    if not cfg.evaluation.spectra:
        return None
    from wxeval.spectra import SpectraSums

    for task in tasks:
        task.spectra = True
    return SpectraSums(plan.models)


def _add_land_sea_mask(ds: xr.Dataset, m, plan) -> None:
    """The truth's land fraction on the maps' grid (``land_sea_mask``, for coastlines), when
    there is one."""
    from wxeval.evaluate import land_sea_mask_array
    from wxeval.schema import LATITUDE, LONGITUDE

    try:
        lsm = land_sea_mask_array(m.truth, plan.land_sea_mask, plan.stores)
    except Exception as err:  # noqa: BLE001 - a report extra: no coastline then
        log.info("maps of %s: no land_sea_mask for coastlines (%s)", m.name, err)
        return
    truth = plan.stores(m.truth)
    lat, lon = truth[LATITUDE].values, truth[LONGITUDE].values
    lsm = lsm[np.argsort(lat, kind="stable")][:, np.argsort(lon, kind="stable")]
    ds["land_sea_mask"] = xr.DataArray(lsm, dims=(LATITUDE, LONGITUDE),
                                       coords={LATITUDE: ds[LATITUDE], LONGITUDE: ds[LONGITUDE]})


def _write_spectra(report: ScoreReport, m, sums, plan, cfg, output) -> None:
    if sums is None:
        return
    from wxeval import spectra

    ds = sums.dataset(m.name)
    report.spectra[m.name] = ds
    if output is not None and ds.data_vars:
        report.outputs[m.name].append(
            spectra.write_spectra(ds, Path(output), m.name, results.provenance(m, plan, cfg)))


def _check_extras(cfg, by) -> None:
    """Maps, spectra and ``--by`` splits average over inits: not with a valid-time window."""
    from wxeval.config import ConfigError

    ev = cfg.evaluation
    if ev.alignment != "by_valid":
        return
    if ev.maps or ev.spectra:
        raise ConfigError("evaluation.maps/spectra: not with alignment by_valid (they average "
                          "over inits, not over a valid-time window)")
    if by:
        raise ConfigError("--by splits inits: not with alignment by_valid (valid-time windows)")


def _summarize(stats, plan, cfg) -> xr.Dataset:
    """The metrics table: the mean over inits, or by valid time (:mod:`wxeval.by_valid`)."""
    ev = cfg.evaluation
    if ev.alignment == "by_valid":
        from wxeval.by_valid import summarize_by_valid

        it = ev.init_times
        return summarize_by_valid(stats, plan.metrics, it.start, it.stop, it.hours,
                                  skipna=plan.skipna)
    return results.summarize(stats, plan.metrics, skipna=plan.skipna)


def _write_splits(report: ScoreReport, m, stats, by, plan, cfg, output) -> None:
    """The split tables of model ``m`` (``--by``) into the report and, with ``output``, files."""
    from wxeval import splits

    for split in by:
        table = splits.summarize_by(stats, split, plan.metrics, skipna=plan.skipna)
        report.splits.setdefault(m.name, {})[split] = table
        if output is not None:
            report.outputs[m.name] += splits.write_split(
                table, Path(output), m.name, split, results.provenance(m, plan, cfg)
            )


def _report_nan(m, fields: list[dict], check_report) -> None:
    """Warn on the terminal and add a ``nan-fields`` warning to ``check.json`` (and so to the
    scorecard's pre-flight box) per variable whose fields held NaN inside a region."""
    from wxeval.check import Finding

    store = m.source.store.name if m.source.store is not None else m.name
    for var, message in results.nan_summary(m.name, fields):
        log.warning("%s", message)
        check_report.findings.append(Finding("warning", "nan-fields", store, var, message))


def _compact(store: StatisticsStore, plan: Plan, keys, kinds: Sequence[str] = ()) -> None:
    """Merge small statistics parts, and the map/spectra parts of ``kinds``
    (:func:`wxeval.sum_parts.compact`) (results are already written: a failure here, e.g. no
    permission to delete on a bucket, is logged and leaves the parts as they are)."""
    for m in plan.models:
        for var in m.variables:
            try:
                removed = store.compact(m.name, var, keys[(m.name, var)])
                for kind in kinds:
                    removed += sum_parts.compact(store, kind, m.name, var, keys[(m.name, var)])
            except Exception as err:  # noqa: BLE001 - best effort, never fails the run
                log.warning("statistics of %s %s: parts not merged (%s)", m.name, var, err)
                continue  # the other entries are merged still
            if removed:
                log.info("statistics of %s %s: %d parts merged", m.name, var, removed)
