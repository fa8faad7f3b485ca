"""Scorecard presets: a fixed set of (variable, level, metric) cards, and the units the report
shows.

``headline``: the deterministic headline scores of WeatherBench 2 (Rasp et al. 2024, "WeatherBench
2: A Benchmark for the Next Generation of Data-Driven Global Weather Models", JAMES 16,
e2023MS004019, doi:10.1029/2023MS004019, its table of headline scores): RMSE of Z500, T850,
Q700, the 850 hPa wind vector, T2M, 10 m wind speed and MSLP, and SEEPS of 24-hour
precipitation. See configs/wb2-headline.yaml.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import xarray as xr

from wxeval.metric_defs import BY_NAME

T = TypeVar("T")

#: (variable, level or None, metric)
HEADLINE: tuple[tuple[str, int | None, str], ...] = (
    ("geopotential", 500, "rmse"),
    ("temperature", 850, "rmse"),
    ("specific_humidity", 700, "rmse"),
    ("wind_vector", 850, "rmse"),
    ("2m_temperature", None, "rmse"),
    ("10m_wind_speed", None, "rmse"),
    ("mean_sea_level_pressure", None, "rmse"),
    ("total_precipitation_24hr", None, "seeps"),
)
PRESETS: dict[str, tuple[tuple[str, int | None, str], ...]] = {"headline": HEADLINE}

#: Units the report shows instead of the tables' SI units: (units, factor from SI).
DISPLAY_UNITS: dict[str, tuple[str, float]] = {
    "total_precipitation": ("mm", 1e3),
    "total_precipitation_6hr": ("mm", 1e3),
    "total_precipitation_24hr": ("mm", 1e3),
}


def metrics_of(preset: str) -> tuple[str, ...]:
    """The metrics of ``preset``, in card order."""
    return tuple(dict.fromkeys(m for _, _, m in PRESETS[preset]))


def keep_mask(ds: xr.Dataset, preset: str) -> xr.DataArray:
    """(metric, row) True where the preset shows that metric for that row's variable/level."""
    wanted = {(v, lev, m) for v, lev, m in PRESETS[preset]}
    levels = [None if np.isnan(x) else int(x) for x in ds["level"].values]
    metrics = [str(m) for m in ds["metric"].values]
    mask = np.array([[(str(v), lev, m) in wanted
                      for v, lev in zip(ds["variable"].values, levels, strict=True)]
                     for m in metrics])
    return xr.DataArray(mask, dims=("metric", "row"), coords={"metric": ds["metric"]})


def apply_preset(ds: xr.Dataset, preset: str | None, fields) -> xr.Dataset:
    """``fields`` of ``ds`` NaN outside the preset's cards (the page drops rows without values)."""
    if preset is None:
        return ds
    keep = keep_mask(ds, preset)
    out = ds.copy()
    for f in fields:
        if f in out:
            out[f] = out[f].where(keep)
    return out


def to_display_units(ds: xr.Dataset, fields) -> xr.Dataset:
    """Values of ``fields`` in the report's units (precipitation in mm): × factor for metrics
    in the variable's units, × factor² for squared ones; dimensionless metrics unchanged."""
    factor = np.array([DISPLAY_UNITS.get(str(v), ("", 1.0))[1] for v in ds["variable"].values])
    if (factor == 1.0).all():
        return ds
    power = np.array([{"same": 1, "squared": 2}.get(BY_NAME[str(m)].units, 0)
                      for m in ds["metric"].values])
    scale = xr.DataArray(factor[None, :] ** power[:, None], dims=("metric", "row"),
                         coords={"metric": ds["metric"]})
    out = ds.copy()
    for f in fields:
        if f in out:
            out[f] = out[f] * scale
    return out


def display_units(variable: str, units: str) -> str:
    """The units the report shows for ``variable`` (its SI ``units`` unless converted)."""
    return DISPLAY_UNITS.get(variable, (units, 1.0))[0]


def first_rows(preferred: Sequence[T], present: Sequence[T], most: int) -> list[T]:
    """The rows to draw: those of ``preferred`` in ``present`` (in preferred order), then the
    other ``present`` rows in their order, at most ``most`` in all."""
    rows = [r for r in preferred if r in present]
    for r in present:
        if len(rows) >= most:
            break
        if r not in rows:
            rows.append(r)
    return rows[:most]
