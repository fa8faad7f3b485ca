"""The report's "where and when" data: error maps, per-init time series, spectra (issue 15).

All compact, for drawing in the page (canvas/SVG, no image files, no plotting library):

* ``maps``: for up to :data:`MAP_ROWS` variables/levels and the leads nearest days 1, 3, 5 and
  10, each model's bias and RMSE map and its RMSE minus the baseline's, from
  ``<model>.maps.nc``; each map is quantised to 15 colour levels (4 bits per grid point,
  :func:`quantise`) on a colour range shared by all models of a row and kind (bias and
  differences symmetric about 0 with the 99th percentile of |value| as the end, RMSE from 0
  to its 99th percentile; values beyond the end take the end colour), base64-encoded; grids
  wider than :data:`MAX_WIDTH` points are thinned by a stride (1.5°: every 2nd point).
  Size: ~3.7 kB per map at 1.5°; 5 models (3 rows × 4 leads × bias, RMSE, difference):
  ~0.6 MB, whatever the period. The coastline is the truth's land fraction at 0.5 (``land`` bits,
  from the maps file), drawn between land and sea cells.
* ``series`` (~17 bytes per init and model: a year of 00/12 UTC inits of 5 models ~60 kB):
  each model's per-init RMSE (from the statistics: √ of the per-init MSE) of the
  first row at the lead nearest day 5 in the report's default region, with the
  :data:`WORST` largest marked.
* ``spectra``: the zonal energy spectra of ``<model>.spectra.nc`` (forecast per model and the
  baseline's truth) at the leads nearest days 1, 5 and 10, 4 significant digits, for log axes.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import xarray as xr

from wxeval.schema import LEAD_TIME, LEVEL

MAP_ROWS = (("geopotential", 500), ("temperature", 850), ("2m_temperature", None))
MAP_DAYS = (1, 3, 5, 10)
SPECTRA_DAYS = (1, 5, 10)
MAX_WIDTH = 120
LEVELS = 15
WORST = 3


def _open(path: Path) -> xr.Dataset | None:
    if not path.is_file():
        return None
    from wxeval.results import read_table

    return read_table(path)


def _near_days(leads: np.ndarray, days) -> list[int]:
    """Indices of the leads nearest each of ``days`` (within half a day), unique, in order."""
    hours = leads / np.timedelta64(1, "h")
    out = []
    for d in days:
        i = int(np.argmin(np.abs(hours - 24 * d)))
        if abs(hours[i] - 24 * d) <= 12 and i not in out:
            out.append(i)
    return out


def quantise(arr: np.ndarray, lo: float, hi: float) -> str:
    """``arr`` as 4-bit levels 0 … 14 of [lo, hi] (15: no value), two per byte (the first
    in the high nibble), row-major, base64."""
    q = np.full(arr.size + arr.size % 2, LEVELS, np.uint8)
    flat = np.asarray(arr, np.float64).ravel()
    ok = np.isfinite(flat)
    if hi > lo:
        q[:flat.size][ok] = np.clip(np.floor((flat[ok] - lo) / (hi - lo) * LEVELS), 0,
                                    LEVELS - 1).astype(np.uint8)
    else:
        q[:flat.size][ok] = LEVELS // 2
    return base64.b64encode((q[0::2] << 4 | q[1::2]).astype(np.uint8).tobytes()).decode()


def _range(arrays, symmetric: bool) -> tuple[float, float]:
    vals = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays] or [np.zeros(0)])
    if vals.size == 0:
        return 0.0, 1.0
    if symmetric:
        m = float(np.percentile(np.abs(vals), 99)) or float(np.abs(vals).max()) or 1.0
        return -m, m
    return 0.0, float(np.percentile(vals, 99)) or float(vals.max()) or 1.0


def _sig(x, digits: int = 4):
    return [None if not np.isfinite(v) else float(f"{v:.{digits}g}") for v in np.ravel(x)]


def maps_data(results_dir: Path, names: list[str], baseline: str, labels: dict) -> dict | None:
    """The ``maps`` block (module doc) or None when no model has maps."""
    files = {n: _open(results_dir / f"{n}.maps.nc") for n in names}
    have = [n for n in names if files[n] is not None]
    if not have:
        return None
    first = files[have[0]]
    lat, lon = first["latitude"].values, first["longitude"].values
    stride = max(1, int(np.ceil(len(lon) / MAX_WIDTH)))
    sub = (slice(None, None, -stride), slice(None, None, stride))  # north up
    rows = []
    for var, level in MAP_ROWS:
        if f"{var}.mse" not in first:
            continue
        if level is not None and (LEVEL not in first[f"{var}.mse"].dims
                                  or level not in first[LEVEL].values):
            continue
        leads = first[LEAD_TIME].values
        picks = _near_days(leads, MAP_DAYS)
        if not picks:
            continue

        def field(name, kind, i, var=var, level=level, leads=leads):
            ds = files[name]
            if ds is None or f"{var}.mse" not in ds:
                return None
            da = ds[f"{var}.{'bias' if kind == 'bias' else 'mse'}"]
            if level is not None:
                da = da.sel({LEVEL: level})
            da = da.sel({LEAD_TIME: leads[i]}) if leads[i] in da[LEAD_TIME].values else None
            if da is None:
                return None
            v = np.asarray(da.values, np.float64)
            return np.sqrt(v) if kind == "rmse" else v

        kinds = {}
        for kind in ("bias", "rmse"):
            per = {(n, i): field(n, kind, i) for n in have for i in picks}
            lo, hi = _range([a for a in per.values() if a is not None], kind == "bias")
            kinds[kind] = {"range": [lo, hi], "maps": {
                n: [None if per[(n, i)] is None else quantise(per[(n, i)][sub], lo, hi)
                    for i in picks] for n in have}}
        if baseline in have:
            diff = {(n, i): (None if field(n, "rmse", i) is None
                             or field(baseline, "rmse", i) is None
                             else field(n, "rmse", i) - field(baseline, "rmse", i))
                    for n in have if n != baseline for i in picks}
            lo, hi = _range([a for a in diff.values() if a is not None], True)
            kinds["diff"] = {"range": [lo, hi], "maps": {
                n: [None if diff[(n, i)] is None else quantise(diff[(n, i)][sub], lo, hi)
                    for i in picks] for n in have if n != baseline}}
        units = first[f"{var}.bias"].attrs.get("units", "")
        rows.append({
            "label": var if level is None else f"{var} {level} hPa", "units": units,
            "lead_days": [float(leads[i] / np.timedelta64(1, "D")) for i in picks],
            **kinds,
        })
    if not rows:
        return None
    land = None
    if "land_sea_mask" in first:
        mask = (np.asarray(first["land_sea_mask"].values)[sub] > 0.5).astype(np.uint8)
        land = base64.b64encode(mask.tobytes()).decode()
    ny, nx = len(lat[sub[0]]), len(lon[sub[1]])
    return {"ny": ny, "nx": nx, "land": land, "rows": rows,
            "models": [{"name": n, "label": labels.get(n, n)} for n in have],
            "lat": [float(lat[sub[0]][0]), float(lat[sub[0]][-1])],
            "lon": [float(lon[sub[1]][0]), float(lon[sub[1]][-1])]}


def series_data(inputs, names: list[str], labels: dict, region: str) -> dict | None:
    """Per-init RMSE of the first scored row at the lead nearest day 5 (module doc)."""
    first = inputs.scores[names[0]]
    for var, level in (*MAP_ROWS, *((v, None) for v in first)):
        ds = first.get(var)
        if ds is None or "mse" not in ds:
            continue
        if (level is None) != (LEVEL not in ds["mse"].dims):
            continue
        if level is not None and level not in ds[LEVEL].values:
            continue
        leads = ds[LEAD_TIME].values
        picks = _near_days(leads, (5,)) or [len(leads) - 1]
        lead = leads[picks[0]]
        out = []
        for n in names:
            s = inputs.scores[n].get(var)
            if s is None or "mse" not in s or lead not in s[LEAD_TIME].values:
                continue
            da = s["mse"].sel({LEAD_TIME: lead, "region": region})
            if level is not None:
                da = da.sel({LEVEL: level})
            v = np.sqrt(np.asarray(da.values, np.float64))
            t = da["init_time"].values
            order = np.argsort(np.where(np.isfinite(v), -v, np.inf), kind="stable")[:WORST]
            out.append({
                "label": labels.get(n, n),
                "t": [int(x) for x in t.astype("datetime64[s]").astype(np.int64)],
                "v": _sig(v),
                "worst": [int(i) for i in order if np.isfinite(v[i])],
            })
        if out:
            return {"row": var if level is None else f"{var} {level} hPa", "region": region,
                    "lead_days": float(lead / np.timedelta64(1, "D")), "series": out}
    return None


def spectra_data(results_dir: Path, names: list[str], baseline: str, labels: dict
                 ) -> dict | None:
    """Spectra of forecasts and the truth at a few leads (module doc)."""
    files = {n: _open(results_dir / f"{n}.spectra.nc") for n in names}
    have = [n for n in names if files[n] is not None]
    if not have:
        return None
    ref = files[baseline] if files.get(baseline) is not None else files[have[0]]
    panels = []
    for name in ref.data_vars:
        if not str(name).endswith(".truth"):
            continue
        var = str(name).removesuffix(".truth")
        da_t = ref[name]
        levels = list(da_t[LEVEL].values) if LEVEL in da_t.dims else [None]
        leads = da_t[LEAD_TIME].values
        for level in levels:
            sel = {} if level is None else {LEVEL: level}
            if not np.isfinite(da_t.sel(sel).values).any():
                continue  # a level without a spectrum for this variable
            for i in _near_days(leads, SPECTRA_DAYS):
                lines = [{"label": "truth", "v": _sig(da_t.sel(sel).isel({LEAD_TIME: i}).values)}]
                for n in have:
                    ds = files[n]
                    if f"{var}.forecast" not in ds or leads[i] not in ds[LEAD_TIME].values:
                        continue
                    f = ds[f"{var}.forecast"].sel(sel).sel({LEAD_TIME: leads[i]}).values
                    lines.append({"label": labels.get(n, n), "v": _sig(f)})
                panels.append({
                    "row": var if level is None else f"{var} {int(level)} hPa",
                    "lead_days": float(leads[i] / np.timedelta64(1, "D")),
                    "k": [int(k) for k in ref["zonal_wavenumber"].values],
                    "lines": lines,
                })
    if not panels:
        return None
    return {"panels": panels, "band": list(ref.attrs.get("latitude_band", [30, 60]))}


def where_when(results_dir, inputs, baseline: str, models: list[str], labels: dict,
               region: str, *, files: bool = True) -> dict:
    """All three blocks (None where the results lack them). ``files`` False: the maps and
    spectra (read from the results' files, which hold every init) are left out (None)."""
    results_dir = Path(results_dir)
    names = [baseline, *models]
    return {
        "maps": maps_data(results_dir, names, baseline, labels) if files else None,
        "series": series_data(inputs, names, labels, region),
        "spectra": spectra_data(results_dir, names, baseline, labels) if files else None,
    }
