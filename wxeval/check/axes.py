"""Time axes of a forecast store as stored: duplicated or unsorted inits, an init axis described
as valid time, lead times without timedelta units or with implausible lengths."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wxeval import align, schema
from wxeval.check.stores import _Store
from wxeval.schema import INIT_TIME, LEAD_TIME


class _ForecastAxisChecks:
    def _raw_forecast_checks(self, st: _Store) -> None:
        raw, name = st.raw, st.name
        renamed = {v: k for k, v in st.spec.rename}
        tname = renamed.get(INIT_TIME, "time" if "time" in raw.dims else INIT_TIME)
        if tname in raw.coords:
            idx = pd.Index(raw[tname].values)
            dup = idx[idx.duplicated()]
            if len(dup):
                self.add(
                    "error",
                    "duplicate-inits",
                    name,
                    "",
                    f"{name}: {len(dup)} duplicated init time(s) in the forecast store: "
                    f"{align.describe_times(np.unique(dup.values))}",
                )
            elif not idx.is_monotonic_increasing and not idx.hasnans:  # NaT: refused apart
                self.add(
                    "warning",
                    "unsorted-inits",
                    name,
                    "",
                    f"{name}: init times are not sorted in the store (wxeval sorts them; "
                    "reads may be slower)",
                )
            attrs = " ".join(str(raw[tname].attrs.get(k, "")) for k in ("long_name",
                                                                        "standard_name"))
            if "valid" in attrs.lower():
                self.add(
                    "warning",
                    "init-vs-valid",
                    name,
                    "",
                    f"{name}: its {tname!r} axis is described as {attrs.strip()!r}: wxeval "
                    "reads it as the init time",
                )
        lname = renamed.get(LEAD_TIME) or next(
            (k for k, v in schema.COMMON_RENAMES.items() if v == LEAD_TIME and k in raw.coords),
            LEAD_TIME,
        )
        if lname not in raw.coords:
            return
        lead = raw[lname]
        if not np.issubdtype(lead.dtype, np.timedelta64):
            units = lead.attrs.get("units") or lead.encoding.get("units")
            self.add(
                "error",
                "lead-units",
                name,
                "",
                f"{name}: lead time {lname!r} has dtype {lead.dtype}"
                + (f" and units {units!r}" if units else " and no units")
                + ": expected timedelta64 (set units like 'hours' on the store)",
            )
            return
        hours = lead.values / np.timedelta64(1, "h")
        if np.any(hours < 0):
            self.add("error", "lead-units", name, "", f"{name}: negative lead times")
        elif hours.size and hours.max() > 0 and hours.max() < 1:
            self.add(
                "warning",
                "lead-units",
                name,
                "",
                f"{name}: longest lead time is {hours.max() * 3600:g} s: were hours stored "
                "with units 'seconds'?",
            )
        elif hours.size and hours.max() > 24 * 90:
            self.add(
                "warning",
                "lead-units",
                name,
                "",
                f"{name}: longest lead time is {hours.max() / 24:g} days: were hours stored "
                "with units of minutes or days?",
            )
