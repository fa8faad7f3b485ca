"""The climatology: coverage of the scored (dayofyear, hour), and its period (overlap with the
scored valid times, or unknown)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from wxeval import align
from wxeval.check.stores import _Store
from wxeval.schema import DAYOFYEAR, HOUR


class _ClimatologyChecks:
    def check_clim(self, inits, leads, clim: _Store) -> None:
        valid = np.unique((inits[:, None] + leads[None, :]).ravel())
        try:
            align.climatology_positions(
                valid, clim.ds[DAYOFYEAR].values, clim.ds[HOUR].values, clim.name
            )
        except align.AlignmentError as err:
            self.add("error", "clim-coverage", clim.name, "", str(err))
        key = (clim.name, "period", ())
        if key in self._sampled:
            return
        self._sampled.add(key)
        period, source = climatology_period(clim.raw, clim.spec.path)
        scored = pd.DatetimeIndex(valid)
        first, last = int(scored.year.min()), int(scored.year.max())
        span = f"{first}" if first == last else f"{first}-{last}"
        if period is None:
            self.add(
                "info",
                "clim-period",
                clim.name,
                "",
                f"{clim.name}: climatology period unknown (no attribute states its years)",
            )
        elif period[0] <= last and first <= period[1]:
            self.add(
                "warning",
                "clim-overlap",
                clim.name,
                "",
                f"{clim.name}: climatology period {period[0]}-{period[1]} ({source}) overlaps "
                f"the scored valid times {span}: anomaly scores (ACC) are optimistic",
            )


def climatology_period(raw: xr.Dataset | None, path: str = "") -> tuple[tuple[int, int] | None,
                                                                          str]:
    """``((first_year, last_year), source)`` of a climatology, from its attributes (keys like
    ``climatology_period``, ``period``, ``years``, ``start_year``/``end_year``), a ``time``
    coordinate, or a WB2-style store name (``1990-2019_6h_…``); ``(None, "unknown")`` otherwise."""
    if raw is not None:
        attrs = {str(k).lower(): v for k, v in raw.attrs.items()}
        for key in ("climatology_period", "climatology_years", "period", "years", "time_range",
                    "climatology_time_range"):
            if key in attrs:
                found = _years(str(attrs[key]))
                if found:
                    return found, f"attribute {key!r}"
        start = attrs.get("start_year") or attrs.get("climatology_start_year")
        stop = attrs.get("end_year") or attrs.get("climatology_end_year")
        if start is not None and stop is not None:
            try:
                return (int(start), int(stop)), "attributes start_year/end_year"
            except (TypeError, ValueError):
                pass
        for name in ("time", "climatology_bounds", "time_bounds"):
            if name in raw.variables and np.issubdtype(raw[name].dtype, np.datetime64):
                years = pd.DatetimeIndex(np.ravel(raw[name].values)).year
                return (int(years.min()), int(years.max())), f"coordinate {name!r}"
    base = Path(str(path).rstrip("/")).name
    m = re.match(r"^((?:19|20)\d\d)-((?:19|20)\d\d)(?:[_\-.]|$)", base)
    if m and int(m.group(1)) <= int(m.group(2)):
        return (int(m.group(1)), int(m.group(2))), "store name"
    return None, "unknown"


def _years(text: str) -> tuple[int, int] | None:
    m = re.search(r"((?:18|19|20|21)\d\d)\D{1,5}?((?:18|19|20|21)\d\d)", text)
    if m and int(m.group(1)) <= int(m.group(2)):
        return int(m.group(1)), int(m.group(2))
    m = re.fullmatch(r"\s*((?:18|19|20|21)\d\d)\s*", text)
    if m:
        return int(m.group(1)), int(m.group(1))
    return None
