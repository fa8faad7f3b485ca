"""Sampled values: NaN (error, warning or info depending on ``skipna``) and implausible ranges."""

from __future__ import annotations

import numpy as np
import xarray as xr

from wxeval import align
from wxeval.check.ranges import plausibility
from wxeval.check.stores import _Store
from wxeval.schema import INIT_TIME, LATITUDE, LEVEL, LONGITUDE

NAN_WARN_FRACTION = 0.1  # with skipna: a warning above this NaN fraction of the sample


class _ValueChecks:
    def check_values(self, st: _Store, var: str, values: xr.DataArray) -> None:
        arr = np.asarray(values.values, dtype=np.float64)
        if arr.size == 0:
            return
        nan = ~np.isfinite(arr)
        frac = float(nan.mean())
        skipna = self.config.evaluation.skipna
        if frac == 1.0:
            self.add(
                "error",
                "nan",
                st.name,
                var,
                f"{st.name}: {var}: every sampled value is NaN ({arr.size} values)",
            )
            return
        if frac > 0:
            where = _nan_where(values, nan)
            if not skipna:
                self.add(
                    "error",
                    "nan",
                    st.name,
                    var,
                    f"{st.name}: {var}: {frac:.1%} of sampled values are NaN ({where}): "
                    "regions containing them will score NaN (skipna is off)",
                )
            else:
                self.add(
                    "warning" if frac > NAN_WARN_FRACTION else "info",
                    "nan",
                    st.name,
                    var,
                    f"{st.name}: {var}: {frac:.1%} of sampled values are NaN ({where}); "
                    "skipped (skipna is on)",
                )
        problem = plausibility(var, values.where(np.isfinite(values)))
        if problem:
            severity, text = problem
            self.add(severity, "range", st.name, var, f"{st.name}: {var}: {text}")


def _nan_where(values: xr.DataArray, nan: np.ndarray) -> str:
    """``"init 2020-01-01T00:00, lead 24h"`` for the sampled fields that hold NaN."""
    lead_dims = [d for d in values.dims if d not in (LATITUDE, LONGITUDE, LEVEL)]
    if not lead_dims:
        return "static field"
    axes = tuple(i for i, d in enumerate(values.dims) if d not in lead_dims)
    bad = nan.any(axis=axes) if axes else nan
    parts = []
    for idx in zip(*np.nonzero(bad), strict=True):
        desc = []
        for d, i in zip(lead_dims, idx, strict=True):
            v = values[d].values[i] if d in values.coords else i
            if isinstance(v, np.datetime64):
                desc.append(f"{'init' if d == INIT_TIME else 'time'} {str(v)[:16]}")
            elif isinstance(v, np.timedelta64):
                desc.append(f"lead {align.format_hours(v)}")
            else:
                desc.append(f"{d} {v}")
        parts.append(", ".join(desc))
    return "; ".join(parts[:3]) + (" …" if len(parts) > 3 else "")
