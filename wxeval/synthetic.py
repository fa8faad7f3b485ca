"""Seeded synthetic Zarr stores in the real WeatherBench 2 layouts (truth, climatology, forecasts).

The "true atmosphere" is a pure function of (variable, level, valid time, lat, lon, seed)::

    truth(v) = clim(dayofyear(v), hour(v)) + anomaly(v)
    clim     = F0 + season(doy) F1 + cos(2π h/24) F2 + sin(2π h/24) F3
    anomaly  = σ(p, φ) Σ_k a_k m_k(t) r_k(p) P_k(φ) cos(n_k λ - ω_k t + θ_k)        (K = 6)

F0..F3 are static fields in ERA5 units (standard-atmosphere heights and temperatures, jets,
land-sea contrast through :func:`land_sea_mask`); ``season = cos(2π (doy - 16) / 365.25)``
enters with a factor sin φ (opposite hemispheres) and the diurnal term peaks at 15 h local solar
time. The anomaly sums travelling waves with seeded wavenumbers n_k, angular speeds ω_k (h⁻¹,
mostly eastward), phases θ_k, amplitudes a_k (Σ a_k² = 2: RMS ≈ σ), a slow modulation
m_k(t) = 1 + 0.4 sin(...) (8-30 day periods), level profile r_k(p) and meridional envelope
P_k(φ) ∝ cos φ · exp(-((φ - φ_k)/w_k)²) (unit area-weighted RMS); σ(p, φ) is the variable's
anomaly scale, roughly its real global anomaly RMS (e.g. ~640 m² s⁻² for 500 hPa geopotential,
2.5 K for temperature, 700 Pa for mean sea level pressure). A forecast from init t at lead l
(hours) is::

    forecast = float32(truth(t + l)) + float32(σ (g(l) E(t, l) + bias l / 240))
    g(l)     = amplitude (0.05 + 1 - exp(-l / tau_hours))

E (RMS ≈ 1) is a sum of J = 8 synoptic waves whose amplitudes are drawn per (model seed,
variable, init) and which drift zonally with lead, so each init's RMSE grows exactly like g(l)
while scores still vary from init to init. With amplitude = bias = 0 forecasts equal the truth.

Exactness: time factors are computed per scalar with :mod:`math`; the wave sum is a matrix
product of factors rounded to multiples of 2⁻²⁰, whose sums are exact in float64 in any order,
so values never depend on batching, BLAS or threads. Helpers return float64 arrays (forecasts
float32, as stored) in the canonical layout ``(time, [level,] longitude, latitude)``, latitude
ascending, longitude 0..360.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dask.array as dsa
import numcodecs
import numpy as np
import pandas as pd
import xarray as xr
import zarr

G0 = 9.80665  # m s-2
EPOCH = np.datetime64("2000-01-01T00:00", "ns")
VARIABLES: dict[str, tuple[str, str, bool]] = {  # name: (units, long_name, has level)
    "geopotential": ("m**2 s**-2", "Geopotential", True),
    "temperature": ("K", "Temperature", True),
    "u_component_of_wind": ("m s**-1", "U component of wind", True),
    "v_component_of_wind": ("m s**-1", "V component of wind", True),
    "specific_humidity": ("kg kg**-1", "Specific humidity", True),
    "2m_temperature": ("K", "2 metre temperature", False),
    "mean_sea_level_pressure": ("Pa", "Mean sea level pressure", False),
    "10m_u_component_of_wind": ("m s**-1", "10 metre U wind component", False),
    "10m_v_component_of_wind": ("m s**-1", "10 metre V wind component", False),
}
_BLOCK_BYTES = 64 * 2**20  # float64 working block per write; keeps peak memory ~0.5 GB
_CACHE_BYTES = 512 * 2**20  # truth slabs reused across forecast inits


@dataclass(frozen=True)
class Grid:
    """Equiangular grid. ``latitude`` ascending (poles included, or cell centres), lon 0..360."""

    nlon: int
    nlat: int
    poles: bool

    @property
    def latitude(self) -> np.ndarray:
        if self.poles:
            return np.linspace(-90.0, 90.0, self.nlat)
        step = 180.0 / self.nlat
        return -90.0 + step / 2 + step * np.arange(self.nlat)

    @property
    def longitude(self) -> np.ndarray:
        return np.arange(self.nlon) * 360.0 / self.nlon

    @classmethod
    def named(cls, name: str) -> Grid:
        """``"64x32"`` (5.625°, no poles), ``"240x121"`` (1.5°) or ``"1440x721"`` (0.25°)."""
        return GRIDS[name]


GRIDS = {"64x32": Grid(64, 32, False), "240x121": Grid(240, 121, True),
         "1440x721": Grid(1440, 721, True)}


@dataclass(frozen=True)
class Layout:
    """Storage variant of a real store; the physical values at each (lat, lon) never change."""

    lat_name: str = "latitude"
    lon_name: str = "longitude"
    latitude_descending: bool = False  # store 90 → -90
    longitude_180: bool = False  # store -180..180 ascending (starting at -180)
    drop_lead_zero: bool = False  # forecasts only: no 0 h lead (GraphCast)


GRAPHCAST_LAYOUT = Layout(lat_name="lat", lon_name="lon", drop_lead_zero=True)


@dataclass(frozen=True)
class ErrorModel:
    """Forecast error growth, in units of each variable's anomaly scale σ (see module doc)."""

    amplitude: float = 1.0
    tau_hours: float = 240.0
    bias: float = 0.0  # bias reached at 240 h, in σ
    seed: int = 0


DEMO_MODELS: dict[str, ErrorModel] = {
    "graphcast_like": ErrorModel(amplitude=1.5, tau_hours=300.0, bias=0.02, seed=101),
    "pangu_like": ErrorModel(amplitude=1.7, tau_hours=300.0, bias=-0.05, seed=202),
    "hres_like": ErrorModel(amplitude=2.0, tau_hours=320.0, bias=0.08, seed=303),
}

#: The demo's ensemble: (error model, members M). Each member's error is drawn independently
#: with the same growth, so the members and the truth are exchangeable only for the error part.
DEMO_ENSEMBLES: dict[str, tuple[ErrorModel, int]] = {
    "ens_like": (ErrorModel(amplitude=1.6, tau_hours=300.0, bias=0.0, seed=404), 5),
}

# (lat0, lon0, lat radius, lon radius) in degrees: crude continents.
_CONTINENTS = [(52, 95, 22, 65), (48, 15, 12, 22), (3, 20, 33, 24), (22, 78, 12, 10),
               (48, 260, 22, 38), (-15, 298, 28, 16), (-25, 134, 12, 18), (72, 318, 10, 16)]


def _grid(grid: Grid | str) -> Grid:
    return GRIDS[grid] if isinstance(grid, str) else grid


def land_sea_mask(grid: Grid | str) -> np.ndarray:
    """Land fraction 0..1, shape (lon, lat): smooth continent blobs with fractional coasts."""
    grid = _grid(grid)
    lat, lon = grid.latitude[None, :], grid.longitude[:, None]
    frac = np.clip((-lat - 68.0) / 5.0 + 0.5, 0.0, 1.0) + 0.0 * lon
    for lat0, lon0, rlat, rlon in _CONTINENTS:
        dlon = (lon - lon0 + 180.0) % 360.0 - 180.0
        dist = np.sqrt(((lat - lat0) / rlat) ** 2 + (dlon / rlon) ** 2)
        frac = np.maximum(frac, np.clip((1.0 - dist) / 0.25 + 0.5, 0.0, 1.0))
    return frac


def _isa(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ICAO standard atmosphere: (height m, temperature K) at pressure p hPa."""
    trop = 288.15 / 0.0065 * (1.0 - (p / 1013.25) ** 0.190263)
    strat = 11000.0 + 287.053 * 216.65 / G0 * np.log(226.32 / np.maximum(p, 1e-3))
    h = np.where(p >= 226.32, trop, strat)
    return h, np.maximum(288.15 - 0.0065 * h, 216.65)


def _key(variable: str) -> int:
    return zlib.crc32(variable.encode())


def _p(variable: str, levels: tuple[int, ...]) -> np.ndarray:
    if variable not in VARIABLES:
        raise ValueError(f"unknown variable {variable!r}; known: {sorted(VARIABLES)}")
    if VARIABLES[variable][2] and not levels:
        raise ValueError(f"{variable} needs at least one pressure level")
    return np.asarray(levels if VARIABLES[variable][2] else (1000,), float)[:, None, None]


@functools.lru_cache(maxsize=32)
def _clim_terms(variable: str, levels: tuple[int, ...], grid: Grid) -> tuple:
    """Static F0, F1, F2, F3 (broadcastable to (level, lon, lat); F1-F3 may be None) and the
    anomaly scale σ = σ_p (level,) × σ_φ (lat,)."""
    p = _p(variable, levels)
    lat_deg = grid.latitude[None, None, :]
    lat, lon = np.deg2rad(lat_deg), np.deg2rad(grid.longitude)[None, :, None]
    mu, coslat, lsm = np.sin(lat), np.cos(lat), land_sea_mask(grid)[None]
    jet = 30.0 * np.exp(-((np.log(p / 250.0) / 0.9) ** 2))  # m s-1 jet-level profile
    f1 = diurnal = None  # seasonal term, amplitude of the diurnal cycle
    sig_lat = 1.0
    if variable == "geopotential":
        h = _isa(p)[0]
        merid = 7000.0 * h / _isa(np.array(500.0))[0]  # m2 s-2, equator minus pole at 500 hPa
        f0, f1, sig = G0 * h - merid * (mu**2 - 1 / 3), -0.2 * merid * mu, 100 + 0.01 * G0 * h
    elif variable == "temperature":
        w = np.clip((p - 150.0) / 850.0, 0.0, 1.0)
        f0, f1, sig = _isa(p)[1] + 40.0 * w * (1 / 3 - mu**2), -8.0 * w * mu, 2.5
        diurnal = 2.0 * lsm * w**6 * coslat
    elif variable == "u_component_of_wind":
        f0 = jet * np.exp(-(((np.abs(lat_deg) - 40.0) / 12.0) ** 2))
        f0 = f0 - 6.0 * np.cos(3 * lat) * (p / 1000.0) ** 4
        f1, sig = 0.3 * mu * f0, 2.5 + 0.2 * jet
    elif variable == "v_component_of_wind":
        f0, sig = -2.5 * np.sin(2 * lat) * np.tanh((p - 500.0) / 150.0), 2.5 + 0.2 * jet
    elif variable == "specific_humidity":
        sig_lat = 1e-5 + 0.018 * coslat**3
        f0 = 1e-5 + 0.018 * coslat**3 * (p / 1000.0) ** 3
        f1, sig = -0.2 * mu * f0, 0.08 * (p / 1000.0) ** 3
    elif variable == "2m_temperature":
        f0, f1, sig = 303.0 - (45.0 + 8.0 * lsm) * mu**2, -(3.0 + 12.0 * lsm) * mu, 3.0
        diurnal = (0.5 + 5.0 * lsm) * coslat
    elif variable == "mean_sea_level_pressure":
        f0, f1, sig = 101325.0 - 900.0 * np.cos(6 * lat), (1400.0 * lsm - 400.0) * mu, 700.0
    else:  # 10 m winds, weaker over land
        u = "_u_" in variable
        f0 = (1.0 - 0.4 * lsm) * (-6.0 * np.cos(3 * lat) if u else -2.5 * np.sin(2 * lat))
        f1, sig = (0.25 * mu * f0 if u else None), 2.5
    psi = lon - 1.25 * np.pi  # local solar time 15 h at the diurnal maximum
    f2 = None if diurnal is None else diurnal * np.cos(psi)
    f3 = None if diurnal is None else -diurnal * np.sin(psi)
    sig_p = np.broadcast_to(sig, p.shape).ravel()
    return f0, f1, f2, f3, sig_p, np.broadcast_to(sig_lat, lat.shape).ravel()


def _full(variable: str, out: np.ndarray) -> np.ndarray:
    return out if VARIABLES[variable][2] else out[:, 0]


def _times(times: Iterable) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(times))
    if arr.dtype.kind != "M":
        arr = np.asarray(pd.DatetimeIndex(arr))
    return arr.astype("datetime64[ns]")


def _leads(leads: Iterable) -> np.ndarray:
    """Lead times as timedelta64[ns]; plain numbers are hours."""
    arr = np.atleast_1d(np.asarray(leads))
    if arr.dtype.kind in "iuf":
        return np.asarray(pd.to_timedelta(arr, unit="h"), "timedelta64[ns]")
    return np.asarray(pd.to_timedelta(arr), "timedelta64[ns]")


def climatology_fields(variable: str, dayofyear: Iterable[int], hour: Iterable[int], *,
                       levels: Sequence[int] = (), grid: Grid | str = "64x32") -> np.ndarray:
    """clim at paired (dayofyear, hour) values: shape (n, [level,] lon, lat), ERA5 units."""
    grid = _grid(grid)
    f0, f1, f2, f3 = _clim_terms(variable, tuple(int(v) for v in levels), grid)[:4]
    doy, hr = np.atleast_1d(dayofyear), np.atleast_1d(hour)
    fac = np.array([[math.cos(2 * math.pi * (d - 16) / 365.25), math.cos(2 * math.pi * h / 24),
                     math.sin(2 * math.pi * h / 24)] for d, h in zip(doy, hr, strict=True)])
    fac = fac.reshape(-1, 3, 1, 1, 1)
    out = np.empty((len(fac), _p(variable, tuple(levels)).shape[0], grid.nlon, grid.nlat))
    out[...] = f0
    for i, term in enumerate((f1, f2, f3)):
        if term is not None:
            out += fac[:, i] * term
    return _full(variable, out)


def _quantise(x: np.ndarray) -> np.ndarray:
    """Round to multiples of 2⁻²⁰. Products of two such numbers are multiples of 2⁻⁴⁰, so any
    sum of them below 2¹³ in magnitude is exact in float64: matrix products of quantised
    factors do not depend on summation order (BLAS, threads, batch shapes)."""
    return np.round(x * 2.0**20) / 2.0**20


def _matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``a @ b`` into ``out`` in row blocks of M·N·K ≤ 2¹⁸, below which OpenBLAS stays on one
    thread: its thread hand-off dominates these thin products (K ≤ 17) and stalls badly on a
    busy machine (measured 150× slower), while our writer threads use the other cores."""
    rows = max(1, 2**18 // (a.shape[-1] * b.shape[-1]))
    for r in range(0, a.shape[-2], rows):
        np.matmul(a[..., r:r + rows, :], b, out=out[..., r:r + rows, :])
    return out


def _profiles(rng: np.random.Generator, count: int, grid: Grid, logp: np.ndarray,
              centres: tuple[float, float], widths: tuple[float, float]) -> tuple:
    """Level profiles 1 + 0.25 sin(β ln p + γ) (count, level) and meridional envelopes
    P(φ) = cos φ exp(-((φ - φ_c)/w)²) (count, lat), centres alternating between hemispheres,
    scaled to unit area-weighted RMS (on a fixed 0.25° reference, so grid-independent)."""
    centre = np.where(np.arange(count) % 2 == 0, 1.0, -1.0) * rng.uniform(*centres, count)
    width, beta, gamma = rng.uniform(*widths, count), rng.uniform(1, 3, count), rng.uniform(
        0, 2 * np.pi, count)

    def envelope(lat: np.ndarray) -> np.ndarray:
        return np.cos(np.deg2rad(lat)) * np.exp(-(((lat - centre[:, None]) / width[:, None]) ** 2))

    ref = np.linspace(-90.0, 90.0, 721)
    w = np.cos(np.deg2rad(ref))
    norm = np.sqrt((envelope(ref) ** 2 * w).sum(1) / w.sum())
    prof = 1.0 + 0.25 * np.sin(beta[:, None] * logp[None] + gamma[:, None])
    return prof, envelope(grid.latitude) / norm[:, None]


@functools.lru_cache(maxsize=32)
def _anomaly_basis(variable: str, levels: tuple[int, ...], grid: Grid, seed: int) -> tuple:
    """r_k(p) P_k(φ) as (level, 2K, lat), cos/sin(n_k λ) as (2K, lon), wave parameters, σ."""
    rng = np.random.default_rng([seed, _key(variable)])
    k = 6
    n = rng.integers(1, 8, k)
    omega = np.deg2rad(n * rng.uniform(-2.0, 12.0, k)) / 24.0  # rad h-1, mostly eastward
    amp = rng.uniform(0.5, 1.5, k)
    amp *= np.sqrt(2.0 / np.sum(amp**2))
    modulation = 2 * np.pi / (24.0 * rng.uniform(8.0, 30.0, k))  # rad h-1, 8-30 day periods
    params = np.stack([amp, omega, rng.uniform(0, 2 * np.pi, k), modulation,
                       rng.uniform(0, 2 * np.pi, k)], 1)
    logp = np.log(_p(variable, levels)[:, 0, 0])
    prof, env = _profiles(rng, k, grid, logp, (20.0, 60.0), (20.0, 40.0))
    shape = _quantise(prof[:, :, None] * env[:, None, :])  # (K, level, lat), |.| < 5
    shape = np.ascontiguousarray(np.concatenate([shape, shape]).transpose(1, 0, 2))
    angle = n[:, None] * np.deg2rad(grid.longitude)[None]
    sig_p, sig_lat = _clim_terms(variable, levels, grid)[4:]
    sigma = sig_p[:, None, None] * sig_lat[None, None, :]
    return shape, np.concatenate([np.cos(angle), np.sin(angle)]), params, sigma


def anomaly_fields(variable: str, times: Iterable, *, levels: Sequence[int] = (),
                   grid: Grid | str = "64x32", seed: int = 0) -> np.ndarray:
    """The travelling-wave anomaly at valid ``times``: shape (n, [level,] lon, lat)."""
    grid = _grid(grid)
    shape, zonal, params, sigma = _anomaly_basis(variable, tuple(int(v) for v in levels), grid,
                                                 seed)
    hours = (_times(times) - EPOCH) / np.timedelta64(1, "h")
    coef = np.array([[f(om * t - ph) * a * (1 + 0.4 * math.sin(mw * t + mp))
                      for f in (math.cos, math.sin) for a, om, ph, mw, mp in params]
                     for t in hours]).reshape(len(hours), 1, -1)  # (time, 1, 2K), |.| < 2
    out = np.empty((len(hours), shape.shape[0], grid.nlon, grid.nlat))
    _matmul(_quantise(coef * zonal.T[None])[:, None], shape[None], out)  # exact sums
    out *= sigma
    return _full(variable, out)


def truth_fields(variable: str, times: Iterable, *, levels: Sequence[int] = (),
                 grid: Grid | str = "64x32", seed: int = 0) -> np.ndarray:
    """truth = climatology_fields(dayofyear, hour of each time) + anomaly_fields: (n, [L,] X, Y)."""
    times = _times(times)
    day = times.astype("datetime64[D]")
    doy = (day - times.astype("datetime64[Y]")).astype(np.int64) + 1
    hour = (times - day) // np.timedelta64(1, "h")
    out = climatology_fields(variable, doy, hour, levels=levels, grid=grid)
    out += anomaly_fields(variable, times, levels=levels, grid=grid, seed=seed)
    return out


@functools.lru_cache(maxsize=32)
def _error_basis(variable: str, levels: tuple[int, ...], grid: Grid, seed: int) -> tuple:
    """J = 8 cos/sin mode pairs plus a uniform bias mode, as separable unit-scale factors
    level (2J+1, L) × lon (2J+1, X) × lat (2J+1, Y, quantised), the scale σ (L, 1, Y), and
    the wavenumbers."""
    rng = np.random.default_rng([seed, _key(variable), 0])
    j = 8
    n, phase = rng.integers(2, 13, j), rng.uniform(0, 2 * np.pi, j)
    logp = np.log(_p(variable, levels)[:, 0, 0])
    prof, env = _profiles(rng, j, grid, logp, (10.0, 65.0), (15.0, 35.0))
    angle = n[:, None] * np.deg2rad(grid.longitude)[None] + phase[:, None]
    sig_p, sig_lat = _clim_terms(variable, levels, grid)[4:]
    lev = np.concatenate([prof, prof, np.ones((1, len(logp)))])
    lon = np.concatenate([np.cos(angle), np.sin(angle)]) / np.sqrt(j)  # E has RMS ≈ 1
    lon = np.concatenate([lon, np.ones((1, grid.nlon))])
    lat = _quantise(np.concatenate([env, env, np.ones((1, grid.nlat))]))
    return lev, lon, lat, sig_p[:, None, None] * sig_lat[None, None, :], n


def _error(variable: str, init, lead_hours: np.ndarray, levels: tuple[int, ...], grid: Grid,
           error: ErrorModel, out: np.ndarray | None = None) -> np.ndarray:
    """float32 σ (g(l) E(t, l) + bias l/240) as (lead·level·lon, lat), written into ``out``.

    Mode amplitudes are drawn per (model seed, variable, init); the pattern drifts zonally with
    lead at a per-init speed, so its mean square is constant and RMSE grows exactly like g(l).
    The mode sum is a float64 product of quantised unit-scale factors (exact, see
    :func:`_quantise`), scaled by σ afterwards: a value does not depend on how many leads are
    generated together, on BLAS blocking or on threads (float32 products did: one rounding step
    between stores with and without the 0 h lead).
    """
    lev, lon, lat, sigma, n = _error_basis(variable, levels, grid, error.seed)
    init_s = int(np.datetime64(init, "s").astype(np.int64)) + 2**34  # non-negative after 1678
    rng = np.random.default_rng([error.seed, _key(variable), 1 + init_s])
    z = rng.standard_normal((2, len(n)))
    lh = lead_hours[:, None]
    drift = n * np.deg2rad(rng.uniform(-10.0, 10.0)) / 24.0 * lh  # (lead, J) radians
    gain = error.amplitude * (1.05 - np.exp(-lh / error.tau_hours))
    coef = np.concatenate([gain * (z[0] * np.cos(drift) - z[1] * np.sin(drift)),
                           gain * (z[0] * np.sin(drift) + z[1] * np.cos(drift)),
                           error.bias * lh / 240.0], axis=1)  # (lead, 2J + 1)
    lhs = _quantise(coef[:, None, None, :] * lev.T[None, :, None, :] * lon.T[None, None, :, :])
    rows = len(lhs) * lhs.shape[1] * lhs.shape[2]
    total = _matmul(lhs.reshape(rows, -1), lat, np.empty((rows, grid.nlat)))
    total = total.reshape(len(lhs), lhs.shape[1], grid.nlon, grid.nlat)
    total *= sigma[None]
    if out is None:
        out = np.empty((rows, grid.nlat), np.float32)
    out[...] = total.reshape(rows, grid.nlat)
    return out


def forecast_error(variable: str, init_time, lead_times: Iterable, *, levels: Sequence[int] = (),
                   grid: Grid | str = "64x32", error: ErrorModel) -> np.ndarray | None:
    """float32 σ (g(l) E(t, l) + bias l/240) for one init: (lead, [level,] lon, lat).

    None when ``amplitude == bias == 0`` (then forecasts equal the truth exactly).
    """
    if error.amplitude == 0 and error.bias == 0:
        return None
    grid, levels = _grid(grid), tuple(int(v) for v in levels)
    lead_hours = _leads(lead_times) / np.timedelta64(1, "h")
    out = _error(variable, _times(init_time)[0], lead_hours, levels, grid, error)
    return _full(variable, out.reshape(len(lead_hours), -1, grid.nlon, grid.nlat))


def forecast_fields(variable: str, init_time, lead_times: Iterable, *, levels: Sequence[int] = (),
                    grid: Grid | str = "64x32", seed: int = 0, error: ErrorModel) -> np.ndarray:
    """What forecast stores hold: float32(truth(init + lead)) + forecast_error (float32)."""
    out = truth_fields(variable, _times(init_time)[0] + _leads(lead_times), levels=levels,
                       grid=grid, seed=seed).astype(np.float32)
    err = forecast_error(variable, init_time, lead_times, levels=levels, grid=grid, error=error)
    return out if err is None else out + err


# ----------------------------------------------------------------------------- store writing


def _layout_axes(grid: Grid, layout: Layout) -> tuple[np.ndarray, ...]:
    """(lon order, lon values, lat order, lat values) of the stored axes."""
    lon, lon_idx = grid.longitude, np.arange(grid.nlon)
    if layout.longitude_180:
        lon = np.where(lon >= 180.0, lon - 360.0, lon)
        lon_idx = np.argsort(lon, kind="stable")
        lon = lon[lon_idx]
    lat_idx = np.arange(grid.nlat)[::-1] if layout.latitude_descending else np.arange(grid.nlat)
    return lon_idx, lon, lat_idx, grid.latitude[lat_idx]


def _to_layout(block: np.ndarray, grid: Grid, layout: Layout) -> np.ndarray:
    lon_idx, _, lat_idx, _ = _layout_axes(grid, layout)
    if layout.longitude_180:
        block = block[..., lon_idx, :]
    if layout.latitude_descending:
        block = block[..., lat_idx]
    return block.astype(np.float32)


def default_compressor() -> numcodecs.abc.Codec:
    """The codec of synthetic stores unless one is given: zstd level 1 (fast to write)."""
    return numcodecs.Zstd(level=1)


def _create(path, lead_dims: dict[str, np.ndarray], variables: Sequence[str], levels,
            grid: Grid, layout: Layout, chunks: Mapping[str, int] | None, attrs: dict,
            statics: Mapping[str, np.ndarray] | None = None,
            compressor: numcodecs.abc.Codec | None = None) -> zarr.Group:
    """Write coordinates, metadata and static variables; return the group for region writes.

    ``compressor`` (a numcodecs codec; default :func:`default_compressor`) compresses every
    data variable and the static ones; coordinates keep xarray's default.
    """
    compressor = compressor or default_compressor()
    _, lon, _, lat = _layout_axes(grid, layout)
    ll = {layout.lon_name: lon, layout.lat_name: lat}
    coords = {**lead_dims, "level": np.asarray(levels, np.int64), **ll}
    chunks = {**{d: 1 for d in lead_dims}, **(chunks or {})}
    data_vars, encoding = {}, {}
    for name in variables:
        units, long_name, has_level = VARIABLES[name]
        dims = (*lead_dims, *(("level",) if has_level else ()), layout.lon_name, layout.lat_name)
        shape = tuple(len(coords[d]) for d in dims)
        chunk = tuple(min(chunks.get(d, n), n) for d, n in zip(dims, shape, strict=True))
        data = dsa.empty(shape, chunks=shape, dtype=np.float32)  # one task: never computed
        data_vars[name] = xr.Variable(dims, data, {"units": units, "long_name": long_name})
        encoding[name] = {"compressors": [compressor], "chunks": chunk}
    for name, field in (statics or {}).items():
        data_vars[name] = xr.Variable(tuple(ll), _to_layout(field, grid, layout),
                                      {"units": "(0 - 1)", "long_name": "Land-sea mask"})
        encoding[name] = {"compressors": [compressor]}
    ds = xr.Dataset(data_vars, coords, attrs={"source": "wxeval.synthetic", **attrs})
    ds["level"].attrs.update(units="millibars", long_name="pressure_level")
    ds[layout.lat_name].attrs.update(units="degrees_north", long_name="latitude")
    ds[layout.lon_name].attrs.update(units="degrees_east", long_name="longitude")
    if not any(VARIABLES[v][2] for v in variables):
        ds = ds.drop_vars("level")
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True, compute=False, encoding=encoding)
    return zarr.open_group(str(path), mode="r+", zarr_format=2)


class _Writer:
    """Writes blocks from two background threads while the next block is computed.

    A block starts at ``start`` on the leading dims and spans the trailing ones. Chunk-aligned
    blocks of local stores are encoded and written as Zarr v2 chunk files directly (the
    ``compressor``'s bytes of the C-order chunk at ``<var>/<i>.<j>...``, NaN-padded at the
    edges; it must be the store's, as given to :func:`_create`): 3-4× less CPU than
    zarr-python's per-chunk path. Anything else goes through zarr, synchronously.
    """

    def __init__(self, path, compressor: numcodecs.abc.Codec | None = None) -> None:
        self._root = None if "://" in str(path) else Path(path)
        self._pool, self._pending = ThreadPoolExecutor(2), deque()
        self._codec = compressor or default_compressor()

    def put(self, array: zarr.Array, start: tuple[int, ...], block: np.ndarray) -> None:
        start = start + (0,) * (block.ndim - len(start))
        stop = tuple(a + n for a, n in zip(start, block.shape, strict=True))
        aligned = all(a % c == 0 and (b % c == 0 or b == n) for a, b, c, n in
                      zip(start, stop, array.chunks, array.shape, strict=True))
        if self._root is None or not aligned:
            self._drain(0)
            array[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))] = block
            return
        self._pending.append(self._pool.submit(self._write_chunks, array, start, block))
        self._drain(2)

    def _write_chunks(self, array: zarr.Array, start: tuple[int, ...], block: np.ndarray) -> None:
        folder = self._root / array.path
        first = [a // c for a, c in zip(start, array.chunks, strict=True)]
        for rel in np.ndindex(*(-(-n // c) for n, c in zip(block.shape, array.chunks,
                                                             strict=True))):
            sel = tuple(slice(r * c, (r + 1) * c) for r, c in zip(rel, array.chunks, strict=True))
            chunk = block[sel]
            if chunk.shape != array.chunks:  # edge chunk: stored full size, NaN-padded
                padded = np.full(array.chunks, np.nan, np.float32)
                padded[tuple(slice(0, n) for n in chunk.shape)] = chunk
                chunk = padded
            key = ".".join(str(f + r) for f, r in zip(first, rel, strict=True))
            (folder / key).write_bytes(self._codec.encode(np.ascontiguousarray(chunk)))

    def _drain(self, keep: int) -> None:
        while len(self._pending) > keep:
            self._pending.popleft().result()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc) -> None:
        self._drain(0)
        self._pool.shutdown()


def _batches(n: int, chunk: int, rows: int) -> list[tuple[int, int]]:
    """Chunk-aligned [start, stop) ranges of at least one chunk and about ``rows`` rows."""
    step = max(chunk, rows // chunk * chunk)
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def _slab_bytes(variable: str, levels, grid: Grid) -> int:
    return 8 * grid.nlon * grid.nlat * (len(levels) if VARIABLES[variable][2] else 1)


def write_truth(path, times: Iterable, *, variables: Sequence[str], levels: Sequence[int] = (),
                grid: Grid | str = "64x32", seed: int = 0, chunks: Mapping[str, int] | None = None,
                layout: Layout = Layout(), compressor: numcodecs.abc.Codec | None = None) -> Path:
    """ERA5-like store: ``var(time, [level,] longitude, latitude)`` + ``land_sea_mask``.

    ``compressor``: numcodecs codec of the chunks (default :func:`default_compressor`).
    """
    grid, times = _grid(grid), np.unique(_times(times))
    g = _create(path, {"time": times}, variables, levels, grid, layout, chunks, {"seed": seed},
                {"land_sea_mask": land_sea_mask(grid)}, compressor)
    with _Writer(path, compressor) as writer:
        for var in variables:
            rows = _BLOCK_BYTES // _slab_bytes(var, levels, grid)
            for a, b in _batches(len(times), g[var].chunks[0], rows):
                block = truth_fields(var, times[a:b], levels=levels, grid=grid, seed=seed)
                writer.put(g[var], (a,), _to_layout(block, grid, layout))
    return Path(path)


def write_climatology(path, *, variables: Sequence[str], levels: Sequence[int] = (),
                      grid: Grid | str = "64x32", seed: int = 0,
                      dayofyears: Iterable[int] = range(1, 367),
                      hours: Iterable[int] = (0, 6, 12, 18),
                      chunks: Mapping[str, int] | None = None,
                      layout: Layout = Layout(),
                      compressor: numcodecs.abc.Codec | None = None) -> Path:
    """``var(hour, dayofyear, [level,] longitude, latitude)``, exactly the clim term.

    ``seed`` is accepted for symmetry: the climatology does not depend on it. ``compressor``:
    numcodecs codec of the chunks (default :func:`default_compressor`).
    """
    grid = _grid(grid)
    doys, hrs = np.unique(np.asarray(list(dayofyears), np.int64)), np.asarray(list(hours), np.int64)
    g = _create(path, {"hour": hrs, "dayofyear": doys}, variables, levels, grid, layout, chunks,
                {"seed": seed}, compressor=compressor)
    with _Writer(path, compressor) as writer:
        for var in variables:
            rows = _BLOCK_BYTES // _slab_bytes(var, levels, grid)
            for i, hour in enumerate(hrs):
                for a, b in _batches(len(doys), g[var].chunks[1], rows):
                    block = climatology_fields(var, doys[a:b], [hour] * (b - a), levels=levels,
                                               grid=grid)
                    writer.put(g[var], (i, a), _to_layout(block, grid, layout)[None])
    return Path(path)


def write_forecast(path, init_times: Iterable, lead_times: Iterable, *, variables: Sequence[str],
                   levels: Sequence[int] = (), grid: Grid | str = "64x32", seed: int = 0,
                   error: ErrorModel, layout: Layout = Layout(),
                   chunks: Mapping[str, int] | None = None,
                   compressor: numcodecs.abc.Codec | None = None) -> Path:
    """WB2 forecast store ``var(time, prediction_timedelta, [level,] longitude, latitude)``.

    ``time`` is the init time; plain-number lead times are hours. ``seed`` must be the truth's.
    ``chunks`` (dim -> size) defaults to one chunk per init × lead holding all levels (WB2's
    HRES, GraphCast); ``{"prediction_timedelta": len(lead_times)}`` stores one chunk per init
    holding all leads and levels. ``compressor``: numcodecs codec of the chunks (default
    :func:`default_compressor`).
    """
    grid, inits, leads = _grid(grid), np.unique(_times(init_times)), np.unique(_leads(lead_times))
    if layout.drop_lead_zero:
        leads = leads[leads > np.timedelta64(0, "ns")]
    g = _create(path, {"time": inits, "prediction_timedelta": leads}, variables, levels, grid,
                layout, chunks, {"seed": seed, "error_model": repr(error)}, compressor=compressor)
    with _Writer(path, compressor) as writer:
        for var in variables:
            _forecast_variable(writer, g[var], var, inits, leads, levels, grid, seed, error,
                               layout)
    return Path(path)


def _forecast_variable(writer: _Writer, array: zarr.Array, var: str, inits: np.ndarray,
                       leads: np.ndarray, levels, grid: Grid, seed: int, error: ErrorModel,
                       layout: Layout) -> None:
    """Write one variable in chunk-aligned (init, lead) blocks; truth slabs reused by valid time.

    Buffers are preallocated and rotated (3 blocks: one being filled, ≤ 2 being written).
    """
    slab, levels = _slab_bytes(var, levels, grid), tuple(int(v) for v in levels)
    (ci, cl), rows = array.chunks[:2], _BLOCK_BYTES // slab
    lead_batches = _batches(len(leads), cl, rows // ci)
    init_batches = _batches(len(inits), ci, rows // len(leads) if len(lead_batches) == 1 else 1)
    ni, nl = init_batches[0][1], lead_batches[0][1]
    buffers = [np.empty((ni, nl, *array.shape[2:]), np.float32) for _ in range(3)]
    canonical = np.empty((nl, *array.shape[2:]), np.float32)
    identity = not (layout.longitude_180 or layout.latitude_descending)
    with_error = error.amplitude != 0 or error.bias != 0
    lead_hours = leads / np.timedelta64(1, "h")
    cache: dict[np.datetime64, np.ndarray] = {}  # valid time -> float32 canonical truth
    for n, ((a, b), (c, d)) in enumerate(
            (ib, lb) for ib in init_batches for lb in lead_batches):
        block = buffers[n % 3][: b - a, : d - c]
        for i, init in enumerate(inits[a:b]):
            valid = init + leads[c:d]
            todo = [v for v in valid if v not in cache]
            if todo:
                new = truth_fields(var, todo, levels=levels, grid=grid, seed=seed)
                cache.update(zip(todo, new.astype(np.float32), strict=True))
            fields = block[i] if identity else canonical[: d - c]  # contiguous
            if with_error:
                _error(var, init, lead_hours[c:d], levels, grid, error,
                       out=fields.reshape(-1, grid.nlat))
                for j, v in enumerate(valid):
                    fields[j] += cache[v]
            else:
                np.stack([cache[v] for v in valid], out=fields)
            if not identity:
                block[i] = _to_layout(fields, grid, layout)
        writer.put(array, (a, c), block)
        if d == len(leads) and b < len(inits):  # valid times before the next init are done
            cache = {v: f for v, f in cache.items() if v >= inits[b]}
        while len(cache) * slab // 2 > _CACHE_BYTES:
            cache.pop(next(iter(cache)))


def member_error(error: ErrorModel, member: int) -> ErrorModel:
    """The error model of ensemble member ``member``: the same growth, its own draws."""
    return dataclasses.replace(error, seed=error.seed * 1000 + 7919 * (member + 1))


def write_ensemble_forecast(path, init_times: Iterable, lead_times: Iterable, *,
                            variables: Sequence[str], levels: Sequence[int] = (),
                            grid: Grid | str = "64x32", seed: int = 0, error: ErrorModel,
                            members: int, layout: Layout = Layout(),
                            chunks: Mapping[str, int] | None = None,
                            compressor: numcodecs.abc.Codec | None = None) -> Path:
    """WB2 IFS ENS-like store ``var(time, prediction_timedelta, number, [level,] longitude,
    latitude)``: member k = float32(truth(init + lead)) + σ (g(l) E_k(t, l) + bias l/240), each
    member's E drawn independently (:func:`member_error`). One chunk per init × lead × all
    members unless ``chunks`` says otherwise."""
    grid, inits, leads = _grid(grid), np.unique(_times(init_times)), np.unique(_leads(lead_times))
    levels = tuple(int(v) for v in levels)
    g = _create(path, {"time": inits, "prediction_timedelta": leads,
                       "number": np.arange(members, dtype=np.int64)}, variables, levels, grid,
                layout, {"number": members, **(chunks or {})},
                {"seed": seed, "error_model": repr(error), "members": members},
                compressor=compressor)
    lead_hours = leads / np.timedelta64(1, "h")
    with _Writer(path, compressor) as writer:
        for var in variables:
            array = g[var]
            cl = array.chunks[1]
            for i, init in enumerate(inits):
                truth = truth_fields(var, init + leads, levels=levels, grid=grid,
                                     seed=seed).astype(np.float32)
                for c in range(0, len(leads), cl):
                    d = min(c + cl, len(leads))
                    block = np.empty((1, d - c, members, *array.shape[3:]), np.float32)
                    for k in range(members):
                        err = _error(var, init, lead_hours[c:d], levels, grid,
                                     member_error(error, k))
                        fields = truth[c:d] + err.reshape(truth[c:d].shape)
                        block[0, :, k] = _to_layout(fields, grid, layout)
                    writer.put(array, (i, c), block)
    return Path(path)


def write_archive(root, *, grid: Grid | str = "64x32", init_times: Iterable,
                  lead_times: Iterable, variables: Sequence[str], levels: Sequence[int] = (),
                  models: Mapping[str, ErrorModel] = DEMO_MODELS, seed: int = 0,
                  truth_times: Iterable | None = None, climatology_days="needed",
                  layouts: Mapping[str, Layout] | None = None,
                  chunks: Mapping[str, int] | None = None,
                  ensembles: Mapping[str, tuple[ErrorModel, int]] | None = None,
                  compressor: numcodecs.abc.Codec | None = None) -> dict[str, Path]:
    """Write ``root/era5.zarr``, ``root/climatology.zarr`` and ``root/<model>.zarr``
    (``ensembles``: name → (error model, M) written by :func:`write_ensemble_forecast`).

    Truth covers every valid time (6-hourly from the first to the last) unless ``truth_times``
    is given; ``climatology_days`` is ``"needed"`` (days of year of the truth), ``"all"`` or
    a list. ``layouts`` optionally stores some models in a real variant layout; ``chunks``
    (dim name -> size) applies to every store having that dim (fewer, larger chunk files
    write much faster on small grids); ``compressor`` (numcodecs codec, default
    :func:`default_compressor`) applies to every store. Returns ``{"truth": ...,
    "climatology": ..., <model>: ...}``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    clash = {"truth", "climatology"} & set(models)
    if clash:
        raise ValueError(f"model names {sorted(clash)} are reserved")
    inits, leads = _times(init_times), _leads(lead_times)
    if truth_times is None:
        valid = np.unique((inits[:, None] + leads[None, :]).ravel())
        truth_times = np.union1d(valid, pd.date_range(valid[0], valid[-1], freq="6h").values)
    truth_idx = pd.DatetimeIndex(_times(truth_times))
    if isinstance(climatology_days, str):
        if climatology_days not in ("needed", "all"):
            raise ValueError("climatology_days must be 'needed', 'all' or a list of days")
        days = truth_idx.day_of_year if climatology_days == "needed" else range(1, 367)
    else:
        days = climatology_days
    hours = sorted({0, 6, 12, 18} | set(truth_idx.hour))
    kw = dict(variables=variables, levels=levels, grid=grid, seed=seed, chunks=chunks,
              compressor=compressor)
    paths = {"truth": write_truth(root / "era5.zarr", truth_idx, **kw),
             "climatology": write_climatology(root / "climatology.zarr", dayofyears=days,
                                              hours=hours, **kw)}
    for name, error in models.items():
        paths[name] = write_forecast(root / f"{name}.zarr", inits, leads, error=error,
                                     layout=(layouts or {}).get(name, Layout()), **kw)
    for name, (error, members) in (ensembles or {}).items():
        paths[name] = write_ensemble_forecast(root / f"{name}.zarr", inits, leads, error=error,
                                              members=members, **kw)
    return paths
