"""Plausible values per quantity in ERA5 units (e.g. geopotential vs. height, K vs. °C)."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from wxeval.check.units import _family
from wxeval.schema import LEVEL

G0 = 9.80665


def _isa_height(p_hpa: float) -> float:
    """ICAO standard-atmosphere height (m) at pressure p (hPa)."""
    if p_hpa >= 226.32:
        return 288.15 / 0.0065 * (1.0 - (p_hpa / 1013.25) ** 0.190263)
    return 11000.0 + 287.053 * 216.65 / G0 * math.log(226.32 / max(p_hpa, 1e-3))


def plausibility(var: str, values: xr.DataArray) -> tuple[str, str] | None:
    """``(severity, text)`` when the finite sample values are implausible for ``var`` in ERA5
    units, else None."""
    fam = _family(var)
    arr = np.asarray(values.values, dtype=np.float64)
    if not fam or not np.isfinite(arr).any():
        return None
    with np.errstate(invalid="ignore"):
        mean, amax = float(np.nanmean(arr)), float(np.nanmax(np.abs(arr)))
    if fam == "geopotential":
        if LEVEL in values.dims:
            for lv in values[LEVEL].values:
                lev = np.asarray(values.sel({LEVEL: lv}).values, dtype=np.float64)
                m = float(np.nanmean(lev))
                h = _isa_height(float(lv))
                if not math.isfinite(m) or m <= 0 or h <= 50:
                    continue
                if abs(math.log(m / h)) < abs(math.log(m / (G0 * h))):
                    return "error", (
                        f"mean {m:.4g} at {int(lv)} hPa looks like geopotential height in m "
                        f"(expected about {G0 * h:.4g} m**2 s**-2): multiply by g = {G0}"
                    )
                if not 0.2 < m / (G0 * h) < 5:
                    return "warning", (
                        f"mean {m:.4g} at {int(lv)} hPa is far from the expected "
                        f"{G0 * h:.4g} m**2 s**-2"
                    )
        elif not -1e4 < mean < 1.2e6:
            return "error", f"mean {mean:.4g} outside any plausible m**2 s**-2 range"
        return None
    if fam == "temperature":
        if 150 <= mean <= 350 and amax < 400:
            return None
        if -100 <= mean <= 60:
            return "error", f"mean {mean:.4g} looks like °C, expected K (about 200..320)"
        return "error", f"mean {mean:.4g} is not a plausible temperature in K"
    if fam == "pressure":
        if 8e4 <= mean <= 1.1e5:
            return None
        if 800 <= mean <= 1100:
            return "error", f"mean {mean:.4g} looks like hPa, expected Pa (about 101325)"
        return "error", f"mean {mean:.4g} is not a plausible sea-level pressure in Pa"
    if fam == "wind":
        if amax > 250:
            return "error", f"largest magnitude {amax:.4g} is implausible for m s**-1"
        if amax > 120:
            return "warning", f"largest magnitude {amax:.4g} m s**-1 is unusually large"
        return None
    if fam == "humidity":
        if amax > 1:
            return "error", f"largest value {amax:.4g} looks like g/kg, expected kg/kg"
        return None
    if fam == "precipitation":
        # metres of water: a 6 h / 24 h amount above 1 m or a mean above 2 cm (a 10-day total
        # above 5 m or a mean above 1 m) is mm
        cumulative = var == "total_precipitation"
        if amax > (5.0 if cumulative else 1.0) or mean > (1.0 if cumulative else 0.02):
            return "error", (f"largest value {amax:.4g}, mean {mean:.4g} look like mm, "
                             "expected m (divide by 1000)")
        finite = arr[np.isfinite(arr)]
        negative = float(np.mean(finite < 0))
        if negative > 0:
            return "warning", (
                f"{negative:.2%} of the sampled points are negative (min {finite.min():.3g} m); "
                "scored as given (SEEPS counts them as dry)"
            )
    return None
