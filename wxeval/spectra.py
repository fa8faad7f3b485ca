"""Zonal energy spectra of forecast and truth (WB2's ``ZonalEnergySpectrum``), per lead.

Along a latitude circle φ of L equally spaced longitudes with values f[l], l = 0 … L−1:

    F[k] = (1/L) Σ_l f[l] e^{−2πikl/L},   k = 0 … ⌊L/2⌋   (``numpy.fft.rfft(f) / L``)
    S[0] = C(φ) |F[0]|²,   S[k] = 2 C(φ) |F[k]|² for k > 0 (the Nyquist term too, as WB2)

with C(φ) = 2π R cos φ the circle's circumference in metres, R = 6 367 500 m (WB2's mean of
the equatorial and polar radii, 6378 and 6357 km). So Σ_k S[k] ≈ ∫ f² dℓ around the circle;
S has the units of f² × m. The wavenumber k is per circle (k cycles around the latitude
circle; wavelength C(φ)/k).

The spectrum of one field is the plain (unweighted) mean of S over the latitude rows with
``band[0] ≤ φ ≤ band[1]`` (default 30–60° N), then averaged over the inits scored, for the
forecast and for the truth at the same valid times, per lead (and level); ``ratio`` =
forecast / truth by wavenumber (< 1: the forecast lacks energy at that scale, i.e. blurs). A
NaN on a row makes that field's spectrum NaN.

Computed in the same pass as the statistics (``evaluation.spectra: true`` or
``score --spectra``) for the variables and levels of :data:`DEFAULT` that a run scores
(geopotential 500 hPa, temperature 850 hPa, 10 m wind components); sums over inits per task,
added across tasks. File: ``<output>/<model>.spectra.nc``, variables ``<variable>.forecast``,
``.truth``, ``.ratio`` with dims ``(lead_time[, level], zonal_wavenumber)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from wxeval.schema import LATITUDE, LEAD_TIME, LEVEL, LONGITUDE

EARTH_RADIUS_M = 1000 * (6357 + 6378) / 2
BAND = (30.0, 60.0)
#: Variables with spectra and their levels (None: a surface variable).
DEFAULT: dict[str, tuple[int, ...] | None] = {
    "geopotential": (500,),
    "temperature": (850,),
    "10m_u_component_of_wind": None,
    "10m_v_component_of_wind": None,
}


def zonal_spectrum(f: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    """S (…, nlat, L//2+1) of fields f (…, nlat, L) on latitudes ``lat_deg`` (module doc)."""
    fk = np.fft.rfft(np.asarray(f, np.float64), axis=-1) / f.shape[-1]
    power = (fk * np.conj(fk)).real
    power[..., 1:] *= 2.0
    circ = 2 * np.pi * EARTH_RADIUS_M * np.cos(np.deg2rad(np.asarray(lat_deg, np.float64)))
    return power * circ[:, None]


def band_rows(lat_deg: np.ndarray, band=BAND) -> np.ndarray:
    return np.flatnonzero((lat_deg >= band[0]) & (lat_deg <= band[1]))


class PartSpectra:
    """Sums over a task part's inits of the band-mean spectra, per lead and level:
    ``sums`` (lead, level, 2 [forecast, truth], K) and the part's ``levels`` kept."""

    def __init__(self, part, spatial, coords, levels_kept):
        self.leads = part.lead_times
        self.lev_pos, self.levels = levels_kept
        self.lat_first = spatial[0] == LATITUDE
        lat = coords[LATITUDE]
        self.rows = band_rows(lat)
        self.lat = lat[self.rows]
        lon = coords[LONGITUDE]
        self.lon_order = np.argsort(lon, kind="stable")
        nk = len(lon) // 2 + 1
        self.sums = np.zeros((len(self.leads), len(self.levels), 2, nk))

    def add(self, li: int, f: np.ndarray, o: np.ndarray) -> None:
        """Add the fields (init, level, *spatial) of lead ``li``."""
        for k, x in enumerate((f, o)):
            x = x[:, self.lev_pos]
            x = x[..., self.rows, :] if self.lat_first else np.swapaxes(x[..., self.rows], -1, -2)
            x = x[..., self.lon_order]
            s = zonal_spectrum(x, self.lat).mean(axis=-2)  # (init, level, K)
            self.sums[li, :, k] += s.sum(axis=0)


def levels_for(variable: str, levels: tuple[int, ...] | None) -> tuple | None:
    """The levels of ``levels`` with spectra of ``variable`` ((None,) for a surface variable),
    None when there are none."""
    if variable not in DEFAULT:
        return None
    want = DEFAULT[variable]
    if want is None:
        return (None,) if levels is None else None
    if levels is None:
        return None
    return tuple(lev for lev in levels if lev in want) or None


def for_part(task, part, spatial, coords) -> PartSpectra | None:
    """The spectra accumulator of a part, if the task asks for spectra of its variable."""
    if not getattr(task, "spectra", False):
        return None
    kept = levels_for(task.variable, part.levels)
    if kept is None or len(band_rows(coords[LATITUDE])) == 0:
        return None
    if kept == (None,):
        return PartSpectra(part, spatial, coords, ([0], kept))
    return PartSpectra(part, spatial, coords, ([part.levels.index(lev) for lev in kept], kept))


class SpectraSums:
    """Spectra sums of finished tasks per (model, variable, level) and lead."""

    def __init__(self, models):
        self._models = {m.name: m for m in models}
        self.sums: dict[tuple[str, str, int | None], np.ndarray] = {}
        self.counts: dict[tuple[str, str, int | None], np.ndarray] = {}

    def add(self, res) -> None:
        for model, (leads, levels, sums, inits) in getattr(res, "spectra", {}).items():
            n_inits = len(inits)
            all_leads = self._models[model].lead_times
            li = np.searchsorted(all_leads, leads)
            for j, lev in enumerate(levels):
                key = (model, res.variable, lev)
                if key not in self.sums:
                    self.sums[key] = np.zeros((len(all_leads), *sums.shape[2:]))
                    self.counts[key] = np.zeros(len(all_leads))
                self.sums[key][li] += sums[:, j]
                self.counts[key][li] += n_inits

    def reset(self) -> None:
        self.sums.clear()
        self.counts.clear()

    def add_stored(self, model: str, var: str, part, values: np.ndarray, cells) -> None:
        """Add a stored part's sums (:class:`wxeval.sum_parts.Part`; ``values`` (lead, level,
        2, K)) at ``cells`` ((lead in ns, level) pairs), counting its inits."""
        all_leads = self._models[model].lead_times.astype("timedelta64[ns]").astype(np.int64)
        lead_pos = {v: i for i, v in enumerate(all_leads.tolist())}
        src_lead = {v: i for i, v in enumerate(part.leads)}
        src_lev = {v: i for i, v in enumerate(part.levels)}
        for lead, lev in cells:
            key = (model, var, lev)
            if key not in self.sums:
                self.sums[key] = np.zeros((len(all_leads), *values.shape[2:]))
                self.counts[key] = np.zeros(len(all_leads))
            self.sums[key][lead_pos[lead]] += values[src_lead[lead], src_lev[lev]]
            self.counts[key][lead_pos[lead]] += len(part.inits)

    def dataset(self, model: str) -> xr.Dataset:
        m = self._models[model]
        out = {}
        by_var: dict[str, list] = {}
        for (name, var, lev) in sorted(self.sums, key=lambda k: (k[1], k[2] or 0)):
            if name == model:
                by_var.setdefault(var, []).append(lev)
        for var, levels in by_var.items():
            arr = np.stack([self.sums[(model, var, lev)] / self.counts[(model, var, lev)][
                :, None, None] for lev in levels], axis=1)  # (lead, level, 2, K)
            dims = [LEAD_TIME, LEVEL, "zonal_wavenumber"]
            coords = {LEAD_TIME: m.lead_times, "zonal_wavenumber": np.arange(arr.shape[-1])}
            if levels == [None]:
                arr = arr[:, 0]
                dims.remove(LEVEL)
            else:
                coords[LEVEL] = list(levels)
            fc, tr = arr[..., 0, :], arr[..., 1, :]
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = fc / tr
            for k, v in (("forecast", fc), ("truth", tr), ("ratio", ratio)):
                out[f"{var}.{k}"] = xr.DataArray(v, dims=dims, coords=coords)
        ds = xr.Dataset(out)
        ds.attrs.update({
            "spectrum_definition": (
                "F[k] = rfft(f)/L along each latitude circle; S[0] = C|F[0]|^2, "
                "S[k] = 2C|F[k]|^2 (k > 0), C = 2 pi R cos(lat), R = 6367500 m; unweighted "
                "mean over latitudes in the band, then over inits; ratio = forecast/truth"),
            "latitude_band": list(BAND),
            "earth_radius_m": EARTH_RADIUS_M,
        })
        return ds


def write_spectra(ds: xr.Dataset, out: Path, model: str, attrs: dict) -> str:
    from wxeval import results

    path = out / f"{model}.spectra.nc"
    results.write_netcdf(ds, path, attrs)
    return str(path)
