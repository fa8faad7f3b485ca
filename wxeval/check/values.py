"""Sampled values: NaN (error, warning or info depending on ``skipna``), ±inf (error, named
as inf with counts) and implausible ranges."""

from __future__ import annotations

import numpy as np
import xarray as xr

from wxeval import align
from wxeval.check.ranges import plausibility
from wxeval.check.stores import _Store
from wxeval.schema import INIT_TIME, LATITUDE, LEAD_TIME, LEVEL, LONGITUDE, MEMBER

NAN_WARN_FRACTION = 0.1  # with skipna: a warning above this NaN fraction of the sample


class _ValueChecks:
    def check_values(self, st: _Store, var: str, values: xr.DataArray) -> None:
        """NaN (code ``nan``) and ±inf (code ``inf``) in a sample, named apart with counts:
        ``skipna`` skips NaN points but not inf ones (an inf where a region's weight is > 0
        makes its value inf or NaN; outside every region it never matters)."""
        arr = np.asarray(values.values, dtype=np.float64)
        if arr.size == 0:
            return
        nan = np.isnan(arr)
        pos, neg = np.isposinf(arr), np.isneginf(arr)
        n_nan, n_pos, n_neg = int(nan.sum()), int(pos.sum()), int(neg.sum())
        skipna = self.config.evaluation.skipna
        if n_nan + n_pos + n_neg == arr.size:
            what = "NaN" if n_nan == arr.size else f"NaN or ±inf ({_counts(n_nan, n_pos, n_neg)})"
            self.add(
                "error",
                "nan" if n_nan == arr.size else "inf",
                st.name,
                var,
                f"{st.name}: {var}: every sampled value is {what} ({arr.size} values)",
            )
            return
        if n_nan and MEMBER in values.dims:
            self._all_nan_members(st, var, values, nan)
        if n_pos + n_neg:
            where = _nan_where(values, pos | neg)
            self.add(
                "error",
                "inf",
                st.name,
                var,
                f"{st.name}: {var}: {_counts(0, n_pos, n_neg)} of {arr.size} sampled values "
                f"({(n_pos + n_neg) / arr.size:.1%}) are infinite ({where}): regions containing "
                "them will score inf or NaN (skipna skips NaN only)",
            )
        if n_nan:
            frac = n_nan / arr.size
            where = _nan_where(values, nan)
            if not skipna:
                self.add(
                    "error",
                    "nan",
                    st.name,
                    var,
                    f"{st.name}: {var}: {frac:.1%} of sampled values are NaN ({n_nan} of "
                    f"{arr.size}; {where}): regions containing them will score NaN (skipna is "
                    "off)",
                )
            else:
                self.add(
                    "warning" if frac > NAN_WARN_FRACTION else "info",
                    "nan",
                    st.name,
                    var,
                    f"{st.name}: {var}: {frac:.1%} of sampled values are NaN ({n_nan} of "
                    f"{arr.size}; {where}); skipped (skipna is on)",
                )
        problem = plausibility(var, values.where(np.isfinite(values)))
        if problem:
            severity, text = problem
            self.add(severity, "range", st.name, var, f"{st.name}: {var}: {text}")


    def _all_nan_members(self, st: _Store, var: str, values: xr.DataArray, nan) -> None:
        """An ensemble member whose whole field is NaN in a sampled (init, lead): code
        ``nan-member``, an error (every region of that init and lead scores NaN; with skipna,
        the members left are scored as a smaller ensemble only where all are finite: none)."""
        keep = [values.dims.index(d) for d in (INIT_TIME, LEAD_TIME, MEMBER) if d in values.dims]
        other = tuple(i for i in range(nan.ndim) if i not in keep)
        dead = nan.all(axis=other) if other else nan
        dims = [values.dims[i] for i in sorted(keep)]
        found = []
        for idx in zip(*np.nonzero(dead), strict=True):
            at = dict(zip(dims, idx, strict=True))
            label = values[MEMBER].values[at[MEMBER]] if MEMBER in values.coords else at[MEMBER]
            when = []
            if INIT_TIME in at:
                when.append(f"init {str(values[INIT_TIME].values[at[INIT_TIME]])[:16]}")
            if LEAD_TIME in at:
                when.append(f"lead {align.format_hours(values[LEAD_TIME].values[at[LEAD_TIME]])}")
            found.append(f"member {label} ({', '.join(when)})")
        if found:
            self.add(
                "error",
                "nan-member",
                st.name,
                var,
                f"{st.name}: {var}: ensemble member(s) all NaN: {'; '.join(found[:3])}"
                f"{' …' if len(found) > 3 else ''}: every region of those fields scores NaN",
            )


def _counts(n_nan: int, n_pos: int, n_neg: int) -> str:
    """``"2 NaN, 3 +inf, 1 −inf"`` (zero counts left out)."""
    parts = [f"{n} {name}" for n, name in ((n_nan, "NaN"), (n_pos, "+inf"), (n_neg, "−inf")) if n]
    return ", ".join(parts)


def _nan_where(values: xr.DataArray, nan: np.ndarray) -> str:
    """``"init 2020-01-01T00:00, lead 24h"`` for the sampled fields where ``nan`` (any mask of
    bad values: NaN or inf) is set."""
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
