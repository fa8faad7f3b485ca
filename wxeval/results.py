"""Metric tables from statistics, and their files: WB2-compatible netCDF and a tidy CSV.

netCDF (``<output>/<model>.nc``): one data variable per weather variable, dims
``(metric, region, lead_time[, level])``, coords ``metric`` (str), ``region`` (str),
``lead_time`` (timedelta64), ``level`` (int) — the layout of WeatherBench 2's result files, plus
units and provenance attributes. The file is classic netCDF (64-bit offset, written by scipy:
~3 ms, where HDF5-based netCDF-4 took ~0.1 s for a table of a few MB, a fixed cost of every
nightly run); any netCDF reader opens it (``xarray.open_dataset`` picks the engine itself).
WB2 calls our ``rmse_per_init`` ``rmse_sqrt_before_time_avg`` and has no ``rmse`` (its users
take √mse): ``rmse`` here is exactly √``mse``.

CSV (``<output>/<model>.csv``), one row per value, header
``variable,level,region,lead_time_hours,metric,value`` (``level`` empty for surface variables).

Every file is written to a temporary name and renamed, so a reader sees the old or the new
file, never half of one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from wxeval.metric_defs import BY_NAME, REGISTRY
from wxeval.metrics import (
    METRICS,
    VECTOR_METRICS,
    per_init_scores,
    table_from_statistics,
    vector_table_from_statistics,
)
from wxeval.schema import EXPECTED_UNITS, INIT_TIME, LEAD_TIME, LEVEL, WIND_VECTORS

CSV_HEADER = ["variable", "level", "region", "lead_time_hours", "metric", "value"]


def per_init(statistics: xr.Dataset) -> dict[str, xr.Dataset]:
    """Per-init scores (mse, bias, mae, acc, …) of every variable, wind vectors included."""
    out = {str(v): per_init_scores(statistics[v]) for v in statistics.data_vars}
    for (u, v), name in WIND_VECTORS.items():
        if u in out and v in out and "mse" in out[u] and "mse" in out[v]:
            mse = out[u]["mse"] + out[v]["mse"]  # the vector's statistics of unit weight
            stats = {"sum_weight": xr.ones_like(mse), "sum_se": mse}
            terms = {t: fn for m in REGISTRY if m.vector for t, fn in m.terms.items()}
            with np.errstate(invalid="ignore"):
                out[name] = xr.Dataset({t: fn(stats) for t, fn in terms.items()})
    return out


def summarize(
    statistics: xr.Dataset, metrics: Sequence[str] = METRICS, *, skipna: bool = False
) -> xr.Dataset:
    """The WB2-layout metrics table from per-init statistics (mean over ``init_time``).

    Each variable's statistics go through :func:`wxeval.metrics.table_from_statistics` as one
    array; wind vectors (:data:`wxeval.schema.WIND_VECTORS`) get the vector metrics."""
    metrics = tuple(dict.fromkeys(metrics))  # a metric named twice (alias and name): once
    arrays = {str(v): _statistics_array(statistics[v]) for v in statistics.data_vars}
    tables = {}
    for name, (da, values) in arrays.items():
        names = [str(x) for x in da["statistic"].values.tolist()]
        table = table_from_statistics(values, metrics, skipna=skipna, names=names)
        tables[name] = _table_array(da, table, metrics, name)
    for (u, v), name in WIND_VECTORS.items():
        wanted = tuple(m for m in metrics if m in VECTOR_METRICS)
        if u not in arrays or v not in arrays or not wanted:
            continue
        du, dv = xr.align(arrays[u][0], arrays[v][0], join="inner", copy=False)
        first = ["sum_weight", "sum_se"]
        values = vector_table_from_statistics(
            du.sel(statistic=first).values, dv.sel(statistic=first).values, wanted, skipna=skipna
        )
        tables[name] = _table_array(du, values, wanted, name)
    ds = xr.Dataset(tables)
    ds.attrs["metric_definitions"] = METRIC_DOC
    return ds


def _statistics_array(da: xr.DataArray) -> tuple[xr.DataArray, np.ndarray]:
    """``da`` as (statistic, init_time, lead_time, region[, level]) and its values."""
    dims = ["statistic", INIT_TIME, LEAD_TIME, "region"] + ([LEVEL] if LEVEL in da.dims else [])
    da = da.transpose(*dims)
    return da, da.values


def _table_array(da: xr.DataArray, values: np.ndarray, metrics, name: str) -> xr.DataArray:
    """Metric values (metric, lead_time, region[, level]) as the table's (metric, region,
    lead_time[, level]) DataArray with the coordinates of ``da``."""
    cell_dims = list(da.dims[2:])
    coords = {k: c for k, c in da.coords.items() if set(c.dims) <= set(cell_dims)}
    coords["metric"] = list(metrics)
    out = xr.DataArray(values, dims=["metric", *cell_dims], coords=coords)
    order = ["metric", "region", LEAD_TIME] + ([LEVEL] if LEVEL in cell_dims else [])
    out = out.transpose(*order)
    out.attrs["units"] = units_of(name)
    out.attrs["units_note"] = units_note([str(m) for m in metrics])
    return out


def units_note(metrics: Sequence[str]) -> str:
    """Which of ``metrics`` are in the variable's units, its square, or dimensionless."""
    rules = {"same": "in these units", "squared": "in their square", "none": "dimensionless"}
    parts = []
    for rule, words in rules.items():
        names = [m for m in metrics if BY_NAME[m].units == rule]
        if names:
            parts.append(f"{', '.join(names)} {words}")
    return "; ".join(parts)


METRIC_DOC = (
    "Latitude-weighted regional means per init, then unweighted mean over inits. "
    + "; ".join(m.doc for m in REGISTRY)
    + ". Alignment by init: truth at valid_time = init_time + lead_time."
)


def nan_fields(nan_weight: xr.Dataset) -> list[dict]:
    """The fields that held NaN inside a scored region, from the ``nan_weight`` statistic
    (:mod:`wxeval.statistics`: Σ W over the points where f − o is NaN, > 0 in some region):
    one entry per variable, level and init, ``{"variable", "level", "init_time",
    "lead_time_hours"}`` (``level`` None for surface variables), sorted."""
    out = []
    for name in sorted(str(v) for v in nan_weight.data_vars):
        da = nan_weight[name]
        if "statistic" in da.dims:
            da = da.isel(statistic=0, drop=True)
        if LEVEL not in da.dims:
            da = da.expand_dims({LEVEL: [None]})
        da = da.transpose(LEVEL, INIT_TIME, LEAD_TIME, "region")
        held = (da.values > 0).any(axis=-1)  # (level, init, lead); NaN (unknown) is not > 0
        hours = da[LEAD_TIME].values / np.timedelta64(1, "h")
        for li, ii in zip(*np.nonzero(held.any(axis=-1)), strict=True):
            level = da[LEVEL].values[li]
            out.append({
                "variable": name,
                "level": None if level is None else int(level),
                "init_time": str(np.datetime_as_string(da[INIT_TIME].values[ii], unit="m")),
                "lead_time_hours": [float(h) for h in hours[held[li, ii]]],
            })
    return out


def nan_summary(model: str, fields: list[dict], limit: int = 3) -> list[tuple[str, str]]:
    """One line per variable (and level) naming the inits and leads of ``fields``
    (:func:`nan_fields`): ``[(variable, message), ...]``."""
    by_var: dict[tuple, list[dict]] = {}
    for f in fields:
        by_var.setdefault((f["variable"], f["level"]), []).append(f)
    lines = []
    for (var, level), items in by_var.items():
        where = "; ".join(
            f"init {f['init_time']} lead(s) {', '.join(f'{h:g}' for h in f['lead_time_hours'])} h"
            for f in items[:limit]
        )
        more = f"; … (+{len(items) - limit} init(s))" if len(items) > limit else ""
        name = var if level is None else f"{var} level {level}"
        lines.append((var, (
            f"model {model}, {name}: NaN in forecast or truth inside a scored region at "
            f"{len(items)} init(s): {where}{more} (those scores are NaN, or skip the NaN "
            "points with skipna)"
        )))
    return lines


def units_of(name: str) -> str:
    """Units of a variable's scores (wind vectors in m s**-1); "" when unknown."""
    if name in WIND_VECTORS.values():
        return "m s**-1"
    return EXPECTED_UNITS.get(name, "")


def to_tidy(table: xr.Dataset) -> pd.DataFrame:
    """One row per value with the columns of :data:`CSV_HEADER`."""
    frames = []
    for name, da in table.data_vars.items():
        df = da.to_dataframe(name="value").reset_index()
        if LEVEL not in df:
            df[LEVEL] = pd.NA
        df["variable"] = name
        df["lead_time_hours"] = df[LEAD_TIME] / pd.Timedelta(hours=1)
        frames.append(df[CSV_HEADER])
    if not frames:
        return pd.DataFrame(columns=CSV_HEADER)
    df = pd.concat(frames, ignore_index=True)
    df[LEVEL] = df[LEVEL].astype("Int64")
    return df.sort_values(
        ["variable", LEVEL, "region", "lead_time_hours", "metric"],
        na_position="first",
        ignore_index=True,
    )


def write_netcdf(table: xr.Dataset, path: str | Path, attrs: dict,
                 dtype: str = "float64") -> None:
    """Atomically write the WB2-layout table with provenance attributes (classic netCDF:
    ``level`` is stored as int32, strings as UTF-8 characters); data as ``dtype``."""
    ds = table.copy(deep=False).load()  # values in memory (the store writes NumPy values only)
    ds.attrs.update({k: _attr(v) for k, v in attrs.items()})
    for name in ds.data_vars:
        ds[name].encoding.update({"dtype": dtype})
    ds[LEAD_TIME].encoding.update({"units": "hours", "dtype": "float64"})
    # Serialise in memory, then write with the plain file API: a full disk is an ordinary
    # ENOSPC error, and readers never see a half-written file. (The same bytes as
    # ``ds.to_netcdf(engine="scipy")``, which would import dask.distributed, ~0.5 s, only to
    # look for a cluster client.)
    from xarray.backends import ScipyDataStore

    buffer = io.BytesIO()
    store = ScipyDataStore(buffer, mode="w", format="NETCDF3_64BIT")
    try:
        ds.dump_to_store(store)
        store.sync()
        payload = buffer.getvalue()
    finally:
        store.close()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(payload))


def write_csv(table: xr.Dataset, path: str | Path) -> None:
    """The tidy table (:func:`to_tidy`'s rows and order) as CSV: numbers with 10 significant
    digits, NaN and absent levels as empty fields."""
    data = "".join(_csv_chunks(table)).encode("utf-8")  # as pandas, whatever the locale
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _csv_chunks(table: xr.Dataset):
    """CSV text built per variable from the arrays (pandas would take ~5x longer for the
    ~10^5 rows of a full table): rows sorted by variable, level, region, lead, metric.

    The rows of a variable are one ``%``-template formatted in a single call: one row
    template per (lead, metric) with a placeholder for the (variable, level, region) prefix;
    the value is the last field, so ``,nan`` at a line end is an absent value (NaN)."""
    yield ",".join(CSV_HEADER) + "\n"
    for name in sorted(str(v) for v in table.data_vars):
        da = table[name]
        levels = [""]
        if LEVEL in da.dims:
            da = da.isel({LEVEL: np.argsort(da[LEVEL].values, kind="stable")})
            levels = [str(int(x)) for x in da[LEVEL].values]
        else:
            da = da.expand_dims({LEVEL: 1}, axis=-1)
        regions = [str(r) for r in da["region"].values]
        metrics = [str(m) for m in da["metric"].values]
        r_order, m_order = np.argsort(regions, kind="stable"), np.argsort(metrics, kind="stable")
        hours = da[LEAD_TIME].values / np.timedelta64(1, "h")
        h_order = np.argsort(hours, kind="stable")
        da = da.isel(region=r_order, metric=m_order, lead_time=h_order)
        values = da.transpose(LEVEL, "region", LEAD_TIME, "metric").values
        if values.size == 0:
            continue
        # A quoted name with a line break could hold ",nan\n" itself: format cell by cell then.
        by_cell = any("\n" in x for x in (name, *regions, *metrics))
        value = "%s" if by_cell else "%.10g"
        hour_cells = [f"{h:.10g}" for h in hours[h_order].tolist()]
        metric_cells = [_escape(_csv_field(metrics[i])) for i in m_order]
        var_cell = _escape(_csv_field(name))
        prefixes = [
            f"{var_cell},{level},{_escape(_csv_field(regions[ri]))}," for level in levels
            for ri in r_order
        ]
        if any("\0" in m for m in metric_cells):  # holds the placeholder: spell every row out
            template = "".join(
                f"{p}{h},{m},{value}\n" for p in prefixes for h in hour_cells for m in metric_cells
            )
        else:
            rows = "".join(f"\0{h},{m},{value}\n" for h in hour_cells for m in metric_cells)
            template = "".join(rows.replace("\0", p) for p in prefixes)
        if by_cell:
            yield template % tuple("" if x != x else f"{x:.10g}" for x in values.ravel().tolist())
        else:
            yield (template % tuple(values.ravel().tolist())).replace(",nan\n", ",\n")


def _escape(text: str) -> str:
    return text.replace("%", "%%")


def _csv_field(text: str) -> str:
    """One CSV field, quoted as pandas' ``to_csv`` (minimal quoting, "\n" line ends) would."""
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_json(obj: dict, path: str | Path) -> None:
    text = json.dumps(obj, indent=2, default=str, sort_keys=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_manifest(results_dir: str | Path, model: str) -> dict:
    """The manifest ``<results_dir>/<model>.json`` that ``wxeval score`` wrote (provenance, the
    statistics store, entry keys, inits, leads, variables, regions, metrics)."""
    from wxeval.names import check_name

    check_name(model, "model name")
    return json.loads((Path(results_dir) / f"{model}.json").read_text())


def read_table(path: str | Path) -> xr.Dataset:
    """A table written by :func:`write_netcdf`."""
    with open(path, "rb") as fh:
        hdf5 = fh.read(8) == b"\x89HDF\r\n\x1a\n"
    try:
        with xr.open_dataset(path) as ds:
            return ds.load()
    except ValueError as err:
        if not hdf5:
            raise
        raise ValueError(
            f"{path}: a netCDF-4 (HDF5) table, as earlier wxeval builds wrote (now classic "
            "netCDF): install h5netcdf to read it, or rerun `wxeval score` into its folder (the "
            f"statistics are reused, nothing is recomputed) ({err})"
        ) from err


def _attr(value):
    if isinstance(value, int | np.integer) and not -(2**31) <= value < 2**31:
        return str(value)  # classic netCDF attributes hold 32-bit integers at most
    if isinstance(value, str | int | float | np.integer | np.floating):
        return value
    return json.dumps(value, default=str, sort_keys=True)


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete temporary files that a killed run left behind in an output folder."""
    folder = Path(folder)
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def _read_umask() -> int:
    """The process umask, read once at import: ``os.umask`` can only be read by setting it,
    which other threads creating files at that moment would see."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def atomic_write(path: str | Path, write) -> None:
    """Write through ``write(tmp_path)`` then rename over ``path`` (same folder, so atomic).
    The file gets the usual permissions (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# Provenance and the files of one model


def provenance(m, plan, cfg) -> dict:
    """Inputs, selection, config (credentials redacted) and versions of model ``m``
    (:class:`wxeval.plan.ModelPlan` of ``plan``), for result attributes and the manifest."""
    import datetime as _dt

    import wxeval
    from wxeval.redact import redacted_config

    inputs: dict = {
        "truth": {"path": m.truth.path, "storage_options": m.truth.redacted_options()}
    }
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
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def _versions() -> dict[str, str]:
    import platform

    import dask
    import zarr

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "xarray": xr.__version__,
        "dask": dask.__version__,
        "zarr": zarr.__version__,
    }


def write_outputs(
    out: Path, m, plan, cfg, table, stats_root, keys, nan_found=()
) -> list[str]:
    """Write ``<out>/<model>.nc``, ``.csv`` and the manifest ``.json`` of model ``m``;
    return their paths."""
    prov = provenance(m, plan, cfg)
    nc, csv, manifest = out / f"{m.name}.nc", out / f"{m.name}.csv", out / f"{m.name}.json"
    write_netcdf(table, nc, prov)
    write_csv(table, csv)
    write_json(
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
            # ensemble members M (0: deterministic): the scorecard shows a deterministic
            # model's MAE as its CRPS (M = 1), never an ensemble's (its mean's MAE is not CRPS)
            "members": int(getattr(m, "members", 0)),
            "pending_init_times": [str(t) for t in plan.pending.get(m.name, [])],
            "skipped_init_times": [str(t) for t in plan.skipped.get(m.name, [])],
            "nan_fields": list(nan_found),
        },
        manifest,
    )
    return [str(nc), str(csv), str(manifest)]
