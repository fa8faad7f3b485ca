"""Zonal energy spectra (WB2's ZonalEnergySpectrum) equal a NumPy FFT (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
from builders import make_case, write_all, write_config

from wxeval.api import score
from wxeval.spectra import EARTH_RADIUS_M, zonal_spectrum

R = 6367.5e3  # WB2: mean of the equatorial (6378 km) and polar (6357 km) radii


def _ref_spectrum(row: np.ndarray, lat: float) -> np.ndarray:
    """S[k] of one latitude circle by the DFT sum written out (no FFT)."""
    n = len(row)
    ks = np.arange(n // 2 + 1)
    fk = np.array([np.sum(row * np.exp(-2j * np.pi * k * np.arange(n) / n)) / n for k in ks])
    c = 2 * np.pi * R * np.cos(np.deg2rad(lat))
    s = c * np.abs(fk) ** 2
    s[1:] *= 2
    return s


def test_spectrum_by_hand_and_parseval():
    assert EARTH_RADIUS_M == R
    rng = np.random.default_rng(0)
    lat = np.array([30.0, 45.0])
    f = rng.normal(size=(2, 16))
    got = zonal_spectrum(f, lat)
    for i in range(2):
        np.testing.assert_allclose(got[i], _ref_spectrum(f[i], lat[i]), rtol=1e-12)
    # a pure wave of wavenumber 3 and amplitude a: S[3] = 2 C (a/2)^2, nothing elsewhere
    x = np.arange(16)
    s = zonal_spectrum(2.0 * np.cos(2 * np.pi * 3 * x / 16)[None], np.array([60.0]))[0]
    c = 2 * np.pi * R * 0.5
    np.testing.assert_allclose(s[3], 2 * c * 1.0, rtol=1e-12)
    assert np.abs(np.delete(s, 3)).max() < 1e-12 * c


@pytest.fixture(scope="module")
def spec_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("spectra")
    case = make_case(variables=("geopotential", "temperature", "10m_u_component_of_wind"),
                     levels=(500, 850), n_inits=3, leads_h=(0, 24), seed=6, nlat=13, nlon=16,
                     dtype=np.float64)
    write_all(case, root, layout={"longitude_180": True})
    cfg = write_config(root / "cfg.yaml", case, regions=["global"], spectra=True,
                       metrics=["rmse"])
    return case, root, score(cfg, ["model"], root / "out")


def test_spectra_equal_numpy_fft(spec_case):
    case, root, report = spec_case
    ds = report.spectra["model"]
    band = (case.latitude >= 30) & (case.latitude <= 60)
    assert band.sum() == 3  # 30°, 45° and 60° on a 15° grid (both bounds inclusive)
    for var, level in (("geopotential", 500), ("temperature", 850),
                       ("10m_u_component_of_wind", None)):
        li = None if level is None else case.levels.index(level)
        for j, lead in enumerate(case.lead_times):
            fs, ts = [], []
            for i, t in enumerate(case.init_times):
                f = case.forecast[var][i, j]
                o = case.truth_at(var, t + lead)
                if li is not None:
                    f, o = f[li], o[li]
                rows = np.flatnonzero(band)
                fs.append(np.mean([_ref_spectrum(f[r], case.latitude[r]) for r in rows], 0))
                ts.append(np.mean([_ref_spectrum(o[r], case.latitude[r]) for r in rows], 0))
            sel = {} if level is None else {"level": level}
            got_f = ds[f"{var}.forecast"].sel(sel).isel(lead_time=j).values
            got_t = ds[f"{var}.truth"].sel(sel).isel(lead_time=j).values
            np.testing.assert_allclose(got_f, np.mean(fs, 0), rtol=1e-10)
            np.testing.assert_allclose(got_t, np.mean(ts, 0), rtol=1e-10)
            np.testing.assert_allclose(ds[f"{var}.ratio"].sel(sel).isel(lead_time=j).values,
                                       np.mean(fs, 0) / np.mean(ts, 0), rtol=1e-10)
    # one level axis for the file: temperature has no spectrum at 500 hPa (NaN)
    assert np.isnan(ds["temperature.forecast"].sel(level=500).values).all()
    assert (root / "out" / "model.spectra.nc").is_file()
