"""Small WB2-layout Zarr stores for tests, built from random arrays kept in memory.

Tests compute their expectations from the in-memory arrays with hand-written NumPy, never with
wxeval. Arrays are held in the *physical* canonical layout (latitude ascending, longitude
0..360, dims (time[, lead], [level,] latitude, longitude)); ``write_*`` store them in WB2's
storage order (time, prediction_timedelta, level, longitude, latitude) with optional layout
quirks (lat/lon names, descending latitude, −180..180 longitudes, no 0 h lead).
"""

from __future__ import annotations

import socket
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import yaml

UPPER = ("temperature", "geopotential")
SURFACE = ("2m_temperature",)
WIND = ("10m_u_component_of_wind", "10m_v_component_of_wind")


@dataclass
class Case:
    latitude: np.ndarray
    longitude: np.ndarray
    levels: list[int]
    init_times: pd.DatetimeIndex
    lead_times: pd.TimedeltaIndex
    truth_times: pd.DatetimeIndex
    forecast: dict[str, np.ndarray]  # (init, lead, [level,] lat, lon)
    truth: dict[str, np.ndarray]  # (time, [level,] lat, lon)
    climatology: dict[str, np.ndarray]  # (hour[4], dayofyear[366], [level,] lat, lon)
    land_sea_mask: np.ndarray  # (lat, lon) fraction
    paths: dict[str, str] = field(default_factory=dict)

    def truth_at(self, var: str, valid) -> np.ndarray:
        return self.truth[var][self.truth_times.get_loc(pd.Timestamp(valid))]

    def clim_at(self, var: str, valid) -> np.ndarray:
        t = pd.Timestamp(valid)
        return self.climatology[var][t.hour // 6, t.day_of_year - 1]


def make_case(
    *,
    nlat: int = 9,
    nlon: int = 16,
    poles: bool = True,
    levels: tuple[int, ...] = (500, 850),
    variables: tuple[str, ...] = UPPER + SURFACE + WIND,
    inits: str | pd.DatetimeIndex = "2020-02-27",
    n_inits: int = 6,
    init_step: str = "12h",
    leads_h: tuple[int, ...] = (0, 6, 12, 24, 48),
    dtype=np.float32,
    seed: int = 0,
) -> Case:
    """Random but structured fields (values of realistic size, errors growing with lead)."""
    rng = np.random.default_rng(seed)
    if poles:
        lat = np.linspace(-90, 90, nlat)
    else:
        lat = -90 + 180 / nlat * (np.arange(nlat) + 0.5)
    lon = np.arange(nlon) * 360.0 / nlon
    init_times = (
        inits if isinstance(inits, pd.DatetimeIndex)
        else pd.date_range(inits, periods=n_inits, freq=init_step)
    )
    lead_times = pd.to_timedelta(list(leads_h), unit="h")
    first, last = init_times[0], init_times[-1] + lead_times.max()
    truth_times = pd.date_range(first.floor("D"), last.ceil("D"), freq="6h")
    shape_lev = (len(levels),)
    base = {"temperature": 250.0, "geopotential": 50000.0, "2m_temperature": 285.0}
    scale = {"temperature": 5.0, "geopotential": 500.0, "2m_temperature": 4.0}
    forecast, truth, clim = {}, {}, {}
    for var in variables:
        lv = shape_lev if var in UPPER else ()
        b, s = base.get(var, 0.0), scale.get(var, 3.0)
        clim[var] = (b + s * rng.normal(size=(4, 366, *lv, nlat, nlon))).astype(dtype)
        truth[var] = (b + s * rng.normal(size=(len(truth_times), *lv, nlat, nlon))).astype(dtype)
        fc = np.empty((len(init_times), len(lead_times), *lv, nlat, nlon), dtype=dtype)
        for i, t in enumerate(init_times):
            for j, lead in enumerate(lead_times):
                o = truth[var][truth_times.get_loc(t + lead)]
                err = s * (0.1 + lead / pd.Timedelta("48h")) * rng.normal(size=o.shape)
                fc[i, j] = (o + err + 0.05 * s).astype(dtype)
        forecast[var] = fc
    lsm = np.clip(rng.uniform(-0.5, 1.5, size=(nlat, nlon)), 0, 1)
    return Case(
        lat, lon, list(levels), init_times, lead_times, truth_times, forecast, truth, clim, lsm
    )


def _spatial(arr: np.ndarray, lat: np.ndarray, lon: np.ndarray, layout: dict):
    """Reorder the trailing (lat, lon) axes to the stored layout and move lon before lat."""
    lat_v, lon_v = lat, lon
    if layout.get("latitude_descending"):
        arr = arr[..., ::-1, :]
        lat_v = lat[::-1]
    if layout.get("longitude_180"):
        lon_wrapped = np.where(lon >= 180, lon - 360, lon)
        order = np.argsort(lon_wrapped)
        arr = arr[..., order]
        lon_v = lon_wrapped[order]
    return np.swapaxes(arr, -1, -2), lat_v, lon_v


def write_forecast(
    case: Case, path: Path, layout: dict | None = None, variables=None, lead_chunk=None
) -> str:
    """The forecast store; ``lead_chunk``: leads per chunk (one init per chunk), else zarr's
    default chunking."""
    layout = layout or {}
    lat_name = layout.get("lat_name", "latitude")
    lon_name = layout.get("lon_name", "longitude")
    leads = case.lead_times
    keep = np.ones(len(leads), bool)
    if layout.get("drop_lead_zero"):
        keep = leads != pd.Timedelta(0)
    data = {}
    lat_v = lon_v = None
    for var in variables or case.forecast:
        arr, lat_v, lon_v = _spatial(case.forecast[var][:, keep], case.latitude, case.longitude,
                                     layout)
        dims = ("time", "prediction_timedelta") + (("level",) if arr.ndim == 5 else ()) + (
            lon_name, lat_name)
        data[var] = (dims, arr, {"units": "K"})
    ds = xr.Dataset(
        data,
        coords={
            "time": case.init_times.values,
            "prediction_timedelta": leads[keep].values,
            "level": case.levels,
            lat_name: lat_v,
            lon_name: lon_v,
        },
    )
    encoding = None
    if lead_chunk is not None:
        encoding = {v: {"chunks": (1, lead_chunk) + ds[v].shape[2:]} for v in data}
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True, encoding=encoding)
    case.paths.setdefault("forecast", str(path))
    return str(path)


def write_truth(case: Case, path: Path, layout: dict | None = None, with_lsm: bool = True) -> str:
    layout = layout or {}
    data = {}
    lat_v = lon_v = None
    for var, arr in case.truth.items():
        stored, lat_v, lon_v = _spatial(arr, case.latitude, case.longitude, layout)
        dims = ("time",) + (("level",) if stored.ndim == 4 else ()) + ("longitude", "latitude")
        data[var] = (dims, stored)
    if with_lsm:
        lsm, _, _ = _spatial(case.land_sea_mask, case.latitude, case.longitude, layout)
        data["land_sea_mask"] = (("longitude", "latitude"), lsm)
    ds = xr.Dataset(
        data,
        coords={
            "time": case.truth_times.values,
            "level": case.levels,
            "latitude": lat_v,
            "longitude": lon_v,
        },
    )
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    case.paths["truth"] = str(path)
    return str(path)


def write_climatology(case: Case, path: Path) -> str:
    data = {}
    for var, arr in case.climatology.items():
        stored = np.swapaxes(arr, -1, -2)
        dims = ("hour", "dayofyear") + (("level",) if stored.ndim == 5 else ()) + (
            "longitude", "latitude")
        data[var] = (dims, stored)
    ds = xr.Dataset(
        data,
        coords={
            "hour": [0, 6, 12, 18],
            "dayofyear": np.arange(1, 367),
            "level": case.levels,
            "latitude": case.latitude,
            "longitude": case.longitude,
        },
    )
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    case.paths["climatology"] = str(path)
    return str(path)


def write_all(case: Case, root: Path, layout: dict | None = None) -> Case:
    write_truth(case, root / "truth.zarr")
    write_climatology(case, root / "clim.zarr")
    write_forecast(case, root / "model.zarr", layout)
    return case


def write_config(path: Path, case: Case, models: dict | None = None, **evaluation) -> Path:
    """A config with ``truth``, ``climatology`` and one model ``model`` (or ``models``)."""
    cfg = {
        "truth": {"path": case.paths["truth"]},
        "climatology": {"path": case.paths["climatology"]},
        "models": models or {"model": {"path": case.paths["forecast"]}},
    }
    if evaluation:
        cfg["evaluation"] = evaluation
    path.write_text(yaml.safe_dump(cfg))
    return path


# -- hand-written NumPy reference -------------------------------------------------------------


def ref_area_weights(lat_deg: np.ndarray) -> np.ndarray:
    """w_i = sin(b_{i+1}) − sin(b_i), cell bounds at midpoints and the poles; mean 1."""
    phi = np.deg2rad(lat_deg)
    bounds = np.concatenate([[-np.pi / 2], (phi[:-1] + phi[1:]) / 2, [np.pi / 2]])
    w = np.sin(bounds[1:]) - np.sin(bounds[:-1])
    return w / w.mean()


def ref_box_mask(lat, lon, lat_range, lon_ranges) -> np.ndarray:
    inside_lat = (lat >= lat_range[0]) & (lat <= lat_range[1])
    inside_lon = np.zeros(lon.shape, bool)
    for lo, hi in lon_ranges:
        inside_lon |= (lon >= lo) & (lon <= hi)
    return (inside_lat[:, None] & inside_lon[None, :]).astype(float)


def ref_metrics(case: Case, var: str, weights2d: np.ndarray, level_index: int | None,
                lead_index: int) -> dict[str, float]:
    """All metrics for one (variable, level, lead, region), float64, by loops over inits."""
    def mean(x):
        return float(np.sum(weights2d * x) / np.sum(weights2d))

    mse, mae, bias, acc, fo, ff, oo = [], [], [], [], [], [], []
    lead = case.lead_times[lead_index]
    for i, t in enumerate(case.init_times):
        v = t + lead
        f = case.forecast[var][i, lead_index].astype(np.float64)
        o = case.truth_at(var, v).astype(np.float64)
        c = case.clim_at(var, v).astype(np.float64)
        if level_index is not None:
            f, o, c = f[level_index], o[level_index], c[level_index]
        mse.append(mean((f - o) ** 2))
        mae.append(mean(np.abs(f - o)))
        bias.append(mean(f - o))
        fa, oa = f - c, o - c
        fo.append(mean(fa * oa))
        ff.append(mean(fa * fa))
        oo.append(mean(oa * oa))
        acc.append(fo[-1] / np.sqrt(ff[-1] * oo[-1]))
    return {
        "mse": float(np.mean(mse)),
        "rmse": float(np.sqrt(np.mean(mse))),
        "rmse_per_init": float(np.mean(np.sqrt(mse))),
        "mae": float(np.mean(mae)),
        "bias": float(np.mean(bias)),
        "acc": float(np.mean(acc)),
        "acc_pooled": float(np.mean(fo) / np.sqrt(np.mean(ff) * np.mean(oo))),
    }


# -- hand-written region table (shared/README.md §3), independent of wxeval.regions ----------


def _lon360(lon) -> np.ndarray:
    return np.mod(np.asarray(lon, dtype=np.float64), 360.0)


def _all(x) -> np.ndarray:
    return np.ones(np.shape(x), bool)


def _between(x, lo, hi) -> np.ndarray:
    return (x >= lo) & (x <= hi)


#: name -> (latitude predicate, longitude predicate); bounds inclusive, longitudes 0..360.
#: The names of shared/README.md §3, written out independently of wxeval.
STANDARD_REGION_NAMES = (
    "global", "tropics", "extra-tropics", "northern-hemisphere", "southern-hemisphere",
    "europe", "north-america", "north-atlantic", "north-pacific", "east-asia", "ausnz",
    "arctic", "antarctic",
)
LAND_REGION_NAMES = ("global_land", "extra-tropics_land", "tropics_land")

REF_REGIONS = {
    "global": (_all, _all),
    "tropics": (lambda la: _between(la, -20, 20), _all),
    "extra-tropics": (lambda la: np.abs(la) >= 20, _all),
    "northern-hemisphere": (lambda la: _between(la, 20, 90), _all),
    "southern-hemisphere": (lambda la: _between(la, -90, -20), _all),
    "europe": (lambda la: _between(la, 35, 75), lambda lo: (lo >= 347.5) | (lo <= 42.5)),
    "north-america": (lambda la: _between(la, 25, 60), lambda lo: _between(lo, 240, 285)),
    "north-atlantic": (lambda la: _between(la, 25, 65), lambda lo: _between(lo, 290, 350)),
    "north-pacific": (lambda la: _between(la, 25, 60), lambda lo: _between(lo, 145, 230)),
    "east-asia": (lambda la: _between(la, 25, 60), lambda lo: _between(lo, 102.5, 150)),
    "ausnz": (lambda la: _between(la, -45, -12.5), lambda lo: _between(lo, 120, 175)),
    "arctic": (lambda la: _between(la, 60, 90), _all),
    "antarctic": (lambda la: _between(la, -90, -60), _all),
}
REF_LAND_REGIONS = {"global_land": "global", "extra-tropics_land": "extra-tropics",
                    "tropics_land": "tropics"}


def ref_region_mask(lat, lon, name: str, custom: dict | None = None) -> np.ndarray:
    """0/1 mask (lat, lon) of a standard region, a land region's base box, or a custom box
    ``custom[name] = {"lat": [lo, hi], "lon": [lo, hi]}`` (longitudes may wrap, e.g. [350, 20])."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = _lon360(lon)
    if custom and name in custom:
        (a, b), (c, d) = custom[name]["lat"], custom[name].get("lon", (0, 360))
        in_lat = _between(lat, a, b)
        if d - c >= 360:
            in_lon = _all(lon)
        elif c % 360.0 <= d % 360.0:
            in_lon = _between(lon, c % 360.0, d % 360.0)
        else:  # wraps through 0°
            in_lon = (lon >= c % 360.0) | (lon <= d % 360.0)
    else:
        lat_pred, lon_pred = REF_REGIONS[REF_LAND_REGIONS.get(name, name)]
        in_lat, in_lon = lat_pred(lat), lon_pred(lon)
    return (in_lat[:, None] & in_lon[None, :]).astype(np.float64)


def ref_region_weights(case: Case, name: str, custom: dict | None = None) -> np.ndarray:
    """W_ij = w_i · m_ij on the case grid (m × land fraction for ``*_land`` regions)."""
    w = ref_area_weights(case.latitude)[:, None] * ref_region_mask(
        case.latitude, case.longitude, name, custom
    )
    if name in REF_LAND_REGIONS or (custom and custom.get(name, {}).get("land")):
        w = w * case.land_sea_mask
    return w


def case_subset(case: Case, init_index=None) -> Case:
    """The same case restricted to some inits (for references over an init selection)."""
    import dataclasses

    idx = np.arange(len(case.init_times)) if init_index is None else np.asarray(init_index)
    return dataclasses.replace(
        case,
        init_times=case.init_times[idx],
        forecast={k: v[idx] for k, v in case.forecast.items()},
        paths=dict(case.paths),
    )


def write_climatology_layout(case: Case, path: Path, layout: dict | None = None) -> str:
    """Like :func:`write_climatology`, with the layout quirks of :func:`write_forecast`
    (``lat_name``/``lon_name``, ``latitude_descending``, ``longitude_180``)."""
    layout = layout or {}
    lat_name = layout.get("lat_name", "latitude")
    lon_name = layout.get("lon_name", "longitude")
    data = {}
    lat_v = lon_v = None
    for var, arr in case.climatology.items():
        stored, lat_v, lon_v = _spatial(arr, case.latitude, case.longitude, layout)
        dims = ("hour", "dayofyear") + (("level",) if stored.ndim == 5 else ()) + (
            lon_name, lat_name)
        data[var] = (dims, stored)
    ds = xr.Dataset(
        data,
        coords={
            "hour": [0, 6, 12, 18],
            "dayofyear": np.arange(1, 367),
            "level": case.levels,
            lat_name: lat_v,
            lon_name: lon_v,
        },
    )
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    return str(path)


def write_land_sea_mask(case: Case, path: Path, layout: dict | None = None) -> str:
    """A static land-sea-mask store: only ``land_sea_mask`` on (longitude, latitude), no time."""
    lsm, lat_v, lon_v = _spatial(case.land_sea_mask, case.latitude, case.longitude, layout or {})
    ds = xr.Dataset(
        {"land_sea_mask": (("longitude", "latitude"), lsm)},
        coords={"latitude": lat_v, "longitude": lon_v},
    )
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    return str(path)


def write_forecast_levels_reversed(case: Case, path: Path) -> str:
    """The forecast store with its ``level`` axis stored in decreasing order (1000 → 50)."""
    data = {}
    for var, arr in case.forecast.items():
        if arr.ndim == 5:
            arr = arr[:, :, ::-1]
        stored = np.swapaxes(arr, -1, -2)
        dims = ("time", "prediction_timedelta") + (("level",) if stored.ndim == 5 else ()) + (
            "longitude", "latitude")
        data[var] = (dims, stored)
    ds = xr.Dataset(
        data,
        coords={
            "time": case.init_times.values,
            "prediction_timedelta": case.lead_times.values,
            "level": case.levels[::-1],
            "latitude": case.latitude,
            "longitude": case.longitude,
        },
    )
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    return str(path)


# gcsfs retries a refused connection 6 times with exponential back-off (1, 2, 4, 8, 16 s, ~30 s
# per request); this launcher script removes only the back-off sleeps, then runs the real CLI
# in a real process.
FAST_GCS_RETRY = textwrap.dedent(
    """
    import asyncio, sys, types
    import gcsfs.retry
    _sleep = asyncio.sleep
    async def _no_backoff(delay, *args, **kwargs):
        await _sleep(0)
    gcsfs.retry.asyncio = types.SimpleNamespace(sleep=_no_backoff)
    from wxeval.cli import app
    sys.argv[0] = "wxeval"
    sys.exit(app())
    """
)


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then closed again on exit)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
