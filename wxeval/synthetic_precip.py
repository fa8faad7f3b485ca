"""Synthetic precipitation for the demo archive, added to stores :mod:`wxeval.synthetic` wrote.

Precipitation falls where the synthetic mean-sea-level-pressure anomaly a (Pa) is low: the 6-hour
accumulation ending at valid time v is (metres of water)::

    tp6(v) = RATE · max(0, −a(v)/σ − OFFSET),   σ = 700 Pa

A forecast from init t uses its own pressure anomaly, a(t + l) + e(t, l) with e the model's
mean-sea-level-pressure error (:func:`wxeval.synthetic.forecast_error`), so models rank in
precipitation as they do in pressure. Stores get:

* the truth: ``total_precipitation_6hr`` (ERA5 style), at every truth time;
* a forecast: a cumulative ``total_precipitation`` along the lead (Σ of the 6-hour amounts
  since the init, as IFS stores it) and/or ``total_precipitation_6hr`` at its leads;
* the climatology: ``<name>_seeps_threshold`` and ``<name>_seeps_dry_fraction`` for the 6 h and
  24 h accumulations, estimated from the archive's own truth per grid point (dry fraction: share
  of values below the dry threshold; wet threshold: the 2/3 quantile of the wet values, as in
  Rodwell et al. 2010), the same for every hour and day of year.

Existing variables are never rewritten: the new ones are appended to the stores.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from wxeval import synthetic
from wxeval.derived import SEEPS_DRY_THRESHOLD

RATE = 2e-3  # m per 6 h per unit of normalised pressure deficit
OFFSET = 0.3
SIGMA = 700.0
H6 = np.timedelta64(6, "h")


def _tp6(anomaly: np.ndarray) -> np.ndarray:
    return RATE * np.maximum(0.0, -anomaly / SIGMA - OFFSET)


def truth_tp6(times, *, grid, seed: int) -> np.ndarray:
    """tp6 at valid ``times``: (n, lon, lat) float64."""
    a = synthetic.anomaly_fields("mean_sea_level_pressure", times, grid=grid, seed=seed)
    return _tp6(a)


def forecast_tp6(init, last_lead_hours: int, *, grid, seed: int,
                 error: synthetic.ErrorModel) -> np.ndarray:
    """The forecast's 6-hour amounts ending at leads 6, 12, …, last (n, lon, lat)."""
    leads = np.arange(6, last_lead_hours + 1, 6)
    valid = np.datetime64(init, "ns") + (leads * np.timedelta64(1, "h")).astype("timedelta64[ns]")
    a = synthetic.anomaly_fields("mean_sea_level_pressure", valid, grid=grid, seed=seed)
    e = synthetic.forecast_error("mean_sea_level_pressure", init, leads, grid=grid, error=error)
    return _tp6(a if e is None else a + e)


def _append(path: Path, data: dict) -> None:
    """Append new variables (dims already in the store) and re-consolidate the metadata."""
    ds = xr.Dataset(data)
    for v in ds.data_vars:
        units = "1" if v.endswith("_dry_fraction") else "m"
        ds[v].attrs.update(units=units, long_name=v.replace("_", " "))
    ds.to_zarr(path, mode="a", zarr_format=2, consolidated=True)


def add_truth(path: Path, *, grid, seed: int) -> np.ndarray:
    """Append ``total_precipitation_6hr`` to the truth store; returns it (time, lon, lat)."""
    with xr.open_zarr(path) as ds:
        times = ds["time"].values
        dims = ds["2m_temperature"].dims if "2m_temperature" in ds else ("time", "longitude",
                                                                         "latitude")
    tp6 = truth_tp6(times, grid=grid, seed=seed).astype(np.float32)
    _append(path, {"total_precipitation_6hr": (dims, tp6)})
    return tp6


def add_forecast(path: Path, *, grid, seed: int, error: synthetic.ErrorModel,
                 cumulative: bool = True, six_hour: bool = False, members: int = 0) -> None:
    """Append ``total_precipitation`` (cumulative) and/or ``total_precipitation_6hr``.

    ``members`` > 0: an ensemble store (member dim ``number`` after the lead, as IFS ENS); member
    k's amounts use the error model with seed ``error.seed + k`` (independent draws)."""
    import dataclasses

    with xr.open_zarr(path) as ds:
        inits, leads = ds["time"].values, ds["prediction_timedelta"].values
        lon_name = "lon" if "lon" in ds.dims else "longitude"
        lat_name = "lat" if "lat" in ds.dims else "latitude"
    hours = (leads / np.timedelta64(1, "h")).astype(int)
    last = max(int(hours.max()), 6)
    errors = [error] if not members else [
        dataclasses.replace(error, seed=error.seed + k) for k in range(members)]
    cum = np.empty((len(inits), len(leads), len(errors), *_shape(grid)), np.float32)
    six = np.empty_like(cum)
    for i, t in enumerate(inits):
        for k, err in enumerate(errors):
            amounts = forecast_tp6(t, last, grid=grid, seed=seed, error=err)  # leads 6..last
            total = np.concatenate([np.zeros((1, *amounts.shape[1:])),
                                    np.cumsum(amounts, axis=0)])
            cum[i, :, k] = total[hours // 6]
            six[i, :, k] = np.where((hours > 0)[:, None, None],
                                    amounts[np.maximum(hours // 6 - 1, 0)], 0.0)
    if members:
        dims = ("time", "prediction_timedelta", "number", lon_name, lat_name)
    else:
        dims = ("time", "prediction_timedelta", lon_name, lat_name)
        cum, six = cum[:, :, 0], six[:, :, 0]
    data = {}
    if cumulative:
        data["total_precipitation"] = (dims, cum)
    if six_hour:
        data["total_precipitation_6hr"] = (dims, six)
    _append(path, data)


def _shape(grid) -> tuple[int, int]:
    g = synthetic._grid(grid)
    return g.nlon, g.nlat


def add_seeps_climatology(path: Path, truth_tp6_values: np.ndarray) -> None:
    """Append the SEEPS fields for the 6 h and 24 h accumulations, from the truth's tp6
    (time, lon, lat) (24 h = sums of four consecutive 6 h values)."""
    with xr.open_zarr(path) as ds:
        nh, nd = ds.sizes["hour"], ds.sizes["dayofyear"]
    tp6 = np.asarray(truth_tp6_values, np.float64)
    tp24 = tp6[3:] + tp6[2:-1] + tp6[1:-2] + tp6[:-3]
    data = {}
    for name, values in (("total_precipitation_6hr", tp6), ("total_precipitation_24hr", tp24)):
        dry = SEEPS_DRY_THRESHOLD[name]
        frac = (values < dry).mean(axis=0)
        wet = np.where(values >= dry, values, np.nan)
        with warnings.catch_warnings():  # a point that never rains: threshold = dry one
            warnings.simplefilter("ignore", RuntimeWarning)
            thr = np.nanquantile(wet, 2 / 3, axis=0)
        thr = np.where(np.isfinite(thr), thr, dry)
        dims = ("hour", "dayofyear", "longitude", "latitude")
        data[f"{name}_seeps_threshold"] = (
            dims, np.broadcast_to(thr, (nh, nd, *thr.shape)).astype(np.float32))
        data[f"{name}_seeps_dry_fraction"] = (
            dims, np.broadcast_to(frac, (nh, nd, *frac.shape)).astype(np.float32))
    _append(path, data)
