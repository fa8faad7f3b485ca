"""The sample: first and last selected init at the shortest and longest selected lead, the truth
at those valid times and the climatology at their (dayofyear, hour); a failed read is a finding,
and the forecast is compared with the truth (latitude flipped, ``time`` holding valid times)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from wxeval import align
from wxeval.check.findings import _short
from wxeval.check.stores import _Store
from wxeval.schema import DAYOFYEAR, HOUR, INIT_TIME, LATITUDE, LEAD_TIME, LEVEL, VALID_TIME


class _SampleChecks:
    def sample_values(self, name, fc, truth, clim, variables, inits, leads) -> None:
        sample_inits = np.unique(inits[[0, -1]])
        sample_leads = np.unique(leads[[0, -1]])
        valid = np.unique((sample_inits[:, None] + sample_leads[None, :]).ravel())
        valid_have = valid[np.isin(valid, truth.ds[VALID_TIME].values)]
        levels = self.config.evaluation.levels
        for var in variables:
            fvals = None
            if fc is not None and var in fc.ds.data_vars:
                sel = {INIT_TIME: sample_inits, LEAD_TIME: sample_leads}
                fvals = self.read(fc, var, sel, levels, ("forecast", tuple(sample_inits)))
            ovals = None
            if var in truth.ds.data_vars and valid_have.size:
                ovals = self.read(
                    truth, var, {VALID_TIME: valid_have}, levels, ("truth", tuple(valid_have))
                )
            if clim is not None and var in clim.ds.data_vars:
                doy, hour = align.climatology_labels(valid)
                ok = np.isin(doy, clim.ds[DAYOFYEAR].values) & np.isin(
                    hour, clim.ds[HOUR].values
                )
                if ok.any():
                    pairs = sorted(set(zip(doy[ok].tolist(), hour[ok].tolist(), strict=True)))
                    sel = {
                        DAYOFYEAR: xr.DataArray([p[0] for p in pairs], dims="pair"),
                        HOUR: xr.DataArray([p[1] for p in pairs], dims="pair"),
                    }
                    self.read(clim, var, sel, levels, ("clim", tuple(pairs)))
            if fvals is not None and ovals is not None:
                self.compare_sample(name, fc, truth, var, fvals, sample_inits, sample_leads,
                                    valid_have)

    def read(self, st: _Store, var: str, sel: dict, levels, tag) -> xr.DataArray | None:
        key = (st.name, var, tag)
        if key in self._sampled:
            return self._cache.get(key) if hasattr(self, "_cache") else None
        self._sampled.add(key)
        if not hasattr(self, "_cache"):
            self._cache = {}
        da = st.ds[var]
        try:
            indexers = {
                k: (v if isinstance(v, xr.DataArray) else list(np.atleast_1d(v)))
                for k, v in sel.items()
            }
            sub = da.sel(indexers)
            if levels and LEVEL in sub.dims:
                sub = sub.sel({LEVEL: [lv for lv in levels if lv in sub[LEVEL].values]})
            values = sub.load()
        except Exception as err:  # noqa: BLE001 - a read failure is a finding
            self.add(
                "error",
                "read",
                st.name,
                var,
                f"{st.name}: cannot read a sample of {var!r}: {_short(err)} "
                "(a corrupted or truncated chunk?)",
            )
            self._cache[key] = None
            return None
        self._cache[key] = values
        self.check_values(st, var, values)
        return values

    def compare_sample(self, name, fc, truth, var, fvals, s_inits, s_leads, valid_have) -> None:
        """Latitude flipped in the data, or ``time`` holding valid times, seen in the sample."""
        lead = s_leads[0]
        init = s_inits[0]
        if init + lead not in valid_have:
            return
        f = fvals.sel({INIT_TIME: init, LEAD_TIME: lead})
        obs = self._cache.get((truth.name, var, ("truth", tuple(valid_have))))
        if obs is None:
            return
        o = obs.sel({VALID_TIME: init + lead})
        if f.shape != o.shape:
            return
        f, o = f.transpose(*o.dims), o
        direct = _rms(f.values - o.values)
        flipped = _rms(f.values - o.isel({LATITUDE: slice(None, None, -1)}).values)
        spread = _rms(o.values - np.nanmean(o.values))
        if np.isfinite(direct) and np.isfinite(flipped) and flipped < 0.5 * direct and (
            direct > 0.2 * spread
        ):
            self.add(
                "error",
                "latitude-flipped",
                fc.name,
                var,
                f"{fc.name}: {var} matches the truth upside down (RMS difference {flipped:.3g} "
                f"flipped vs {direct:.3g} as stored): latitude coordinate does not match the "
                "data order",
            )
        # Valid times on the time axis: judged at the longest sampled lead (most forecasts
        # have a 0 h lead, where init and valid time coincide).
        lead = max(s_leads)
        if (
            lead > np.timedelta64(0, "ns")
            and init + lead in valid_have
            and init in truth.ds[VALID_TIME].values
        ):
            f = fvals.sel({INIT_TIME: init, LEAD_TIME: lead})
            o = obs.sel({VALID_TIME: init + lead})
            if f.shape != o.shape:
                return
            f = f.transpose(*o.dims)
            direct = _rms(f.values - o.values)
            spread = _rms(o.values - np.nanmean(o.values))
            o0 = truth.ds[var].sel({VALID_TIME: init})
            levels = [int(x) for x in f[LEVEL].values] if LEVEL in f.dims else None
            if levels is not None and LEVEL in o0.dims:
                if not set(levels) <= set(o0[LEVEL].values.tolist()):
                    return  # unmatched levels: reported by the plan's level matching
                o0 = o0.sel({LEVEL: levels})
            try:
                o0 = o0.load().transpose(*f.dims)
            except Exception:  # noqa: BLE001
                return
            at_init = _rms(f.values - o0.values)
            if np.isfinite(at_init) and at_init < 0.5 * direct and direct > 0.2 * spread:
                self.add(
                    "error",
                    "init-vs-valid",
                    fc.name,
                    var,
                    f"{fc.name}: {var} at lead {align.format_hours(lead)} matches the truth at "
                    "its 'time' rather than at time + lead: the store's time axis looks like "
                    "valid times, not init times",
                )


def _rms(x: np.ndarray) -> float:
    with np.errstate(invalid="ignore"):
        return float(np.sqrt(np.nanmean(np.square(np.asarray(x, dtype=np.float64)))))
