"""Store layout quirks (shared/README.md §1, §4) change nothing in the numbers.

The same in-memory case is written in WB2's canonical layout and in each quirky layout (grid
dims named ``lat``/``lon``, latitude descending, longitudes −180..180, no 0 h lead, truth with
descending latitude); every result must equal the canonical one to 1e-12 relative. The
canonical results themselves are checked against the hand-written NumPy reference.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from builders import (
    UPPER,
    make_case,
    ref_metrics,
    ref_region_weights,
    write_all,
    write_climatology_layout,
    write_forecast,
    write_forecast_levels_reversed,
    write_land_sea_mask,
    write_truth,
)

from wxeval.api import score

REGIONS = ["global", "tropics", "europe", "north-america", "arctic", "global_land", "wrapbox"]
CUSTOM = {"wrapbox": {"lat": [-30.0, 50.0], "lon": [300.0, 40.0]}}


def _config(path, truth, clim, model: dict, lsm: str | None = None, **evaluation) -> str:
    cfg = {
        "truth": {"path": truth},
        "climatology": {"path": clim},
        "models": {"model": model},
        "evaluation": {"regions": REGIONS, "custom_regions": CUSTOM, **evaluation},
    }
    if lsm is not None:
        cfg["land_sea_mask"] = {"path": lsm}
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="module")
def canonical(tmp_path_factory):
    root = tmp_path_factory.mktemp("canonical")
    case = write_all(make_case(dtype=np.float64, seed=11), root)
    cfg = _config(root / "cfg.yaml", case.paths["truth"], case.paths["climatology"],
                  {"path": case.paths["forecast"]})
    table = score(cfg, ["model"], root / "out").tables["model"]
    return case, table


def _fresh(case):
    """A shallow copy whose ``paths`` the writers may change without touching the fixture."""
    return dataclasses.replace(case, paths={})


def _score_layout(case, tmp_path, layout, rename=None, truth=None, clim=None, lsm=None,
                  forecast=None, **evaluation):
    fc = forecast or write_forecast(_fresh(case), tmp_path / "fc.zarr", layout)
    model = {"path": fc}
    if rename:
        model["rename"] = rename
    cfg = _config(tmp_path / "cfg.yaml", truth or case.paths["truth"],
                  clim or case.paths["climatology"], model, lsm, **evaluation)
    return score(cfg, ["model"]).tables["model"]  # in memory: no statistics store


def assert_same_tables(got: xr.Dataset, expected: xr.Dataset):
    assert set(got.data_vars) == set(expected.data_vars)
    for var in expected.data_vars:
        g = got[var]
        e = expected[var].sel({d: g[d].values for d in g.dims}).transpose(*g.dims)
        assert g.shape == e.shape, var
        assert int(np.isfinite(e.values).sum()) > 0, var
        np.testing.assert_allclose(g.values, e.values, rtol=1e-12, atol=0, err_msg=var)
        np.testing.assert_array_equal(np.isnan(g.values), np.isnan(e.values))
    np.testing.assert_array_equal(np.sort(got.region.values), np.sort(expected.region.values))
    np.testing.assert_array_equal(np.sort(got.metric.values), np.sort(expected.metric.values))


def test_canonical_matches_numpy_reference(canonical):
    case, table = canonical
    for var in ("temperature", "2m_temperature", "10m_u_component_of_wind"):
        levels = list(enumerate(case.levels)) if var in UPPER else [(None, None)]
        for region in REGIONS:
            w2d = ref_region_weights(case, region, CUSTOM)
            for li, lead in enumerate(case.lead_times):
                for lev_i, lev in levels:
                    ref = ref_metrics(case, var, w2d, lev_i, li)
                    for m, expected in ref.items():
                        da = table[var].sel(metric=m, region=region,
                                            lead_time=lead.to_timedelta64())
                        got = float(da.sel(level=lev) if lev is not None else da)
                        assert abs(got - expected) <= 1e-10 * abs(expected), (
                            var, lev, region, lead, m, got, expected)


def test_lat_lon_names_with_rename(canonical, tmp_path):
    case, table = canonical
    got = _score_layout(case, tmp_path, {"lat_name": "lat", "lon_name": "lon"},
                        rename={"lat": "latitude", "lon": "longitude"})
    assert_same_tables(got, table)


def test_lat_lon_names_renamed_automatically(canonical, tmp_path):
    case, table = canonical
    got = _score_layout(case, tmp_path, {"lat_name": "lat", "lon_name": "lon"})
    assert_same_tables(got, table)


def test_latitude_descending(canonical, tmp_path):
    case, table = canonical
    got = _score_layout(case, tmp_path, {"latitude_descending": True})
    assert_same_tables(got, table)


def test_longitude_minus180_180(canonical, tmp_path):
    case, table = canonical
    got = _score_layout(case, tmp_path, {"longitude_180": True})
    assert_same_tables(got, table)


def test_no_zero_lead(canonical, tmp_path):
    """GraphCast starts at 6 h: the 0 h lead is simply absent from the results."""
    case, table = canonical
    got = _score_layout(case, tmp_path, {"drop_lead_zero": True})
    leads = case.lead_times[case.lead_times != pd.Timedelta(0)]
    np.testing.assert_array_equal(got.lead_time.values, leads.values)
    assert_same_tables(got, table.sel(lead_time=leads.values))


def test_graphcast_like_all_quirks_together(canonical, tmp_path):
    case, table = canonical
    layout = {"lat_name": "lat", "lon_name": "lon", "latitude_descending": True,
              "longitude_180": True, "drop_lead_zero": True}
    got = _score_layout(case, tmp_path, layout)
    leads = case.lead_times[case.lead_times != pd.Timedelta(0)]
    np.testing.assert_array_equal(got.lead_time.values, leads.values)
    assert_same_tables(got, table.sel(lead_time=leads.values))


def test_truth_with_descending_latitude(canonical, tmp_path):
    case, table = canonical
    truth = write_truth(_fresh(case), tmp_path / "truth_desc.zarr",
                        layout={"latitude_descending": True})
    stored = xr.open_zarr(truth)
    assert stored.latitude.values[0] > stored.latitude.values[-1]
    got = _score_layout(case, tmp_path, {}, truth=truth)
    assert_same_tables(got, table)


def test_truth_and_forecast_both_descending(canonical, tmp_path):
    case, table = canonical
    truth = write_truth(_fresh(case), tmp_path / "truth_desc.zarr",
                        layout={"latitude_descending": True})
    got = _score_layout(case, tmp_path, {"latitude_descending": True}, truth=truth)
    assert_same_tables(got, table)


def test_truth_with_longitude_minus180_180(canonical, tmp_path):
    case, table = canonical
    truth = write_truth(_fresh(case), tmp_path / "truth180.zarr", layout={"longitude_180": True})
    got = _score_layout(case, tmp_path, {"longitude_180": True}, truth=truth)
    assert_same_tables(got, table)


def test_climatology_with_quirky_layout(canonical, tmp_path):
    """Climatology with lat/lon names, descending latitude and −180..180 longitudes (ACC)."""
    case, table = canonical
    clim = write_climatology_layout(
        case, tmp_path / "clim.zarr",
        {"lat_name": "lat", "lon_name": "lon", "latitude_descending": True,
         "longitude_180": True},
    )
    got = _score_layout(case, tmp_path, {}, clim=clim)
    assert_same_tables(got, table)


def test_forecast_levels_stored_decreasing(canonical, tmp_path):
    case, table = canonical
    fc = write_forecast_levels_reversed(case, tmp_path / "fc_lev.zarr")
    got = _score_layout(case, tmp_path, {}, forecast=fc)
    np.testing.assert_array_equal(got.level.values, sorted(case.levels))
    assert_same_tables(got, table)


def test_land_sea_mask_from_config_store_with_time_axis(canonical, tmp_path):
    """Truth without a land-sea mask; ``land_sea_mask:`` names an ERA5-like store holding one."""
    case, table = canonical
    truth = write_truth(_fresh(case), tmp_path / "truth_nolsm.zarr", with_lsm=False)
    got = _score_layout(case, tmp_path, {}, truth=truth, lsm=case.paths["truth"])
    assert_same_tables(got, table)


def test_land_sea_mask_from_static_store(canonical, tmp_path):
    """``land_sea_mask:`` names a static store (no time axis, latitude descending)."""
    case, table = canonical
    truth = write_truth(_fresh(case), tmp_path / "truth_nolsm.zarr", with_lsm=False)
    lsm = write_land_sea_mask(case, tmp_path / "lsm.zarr", {"latitude_descending": True})
    got = _score_layout(case, tmp_path, {}, truth=truth, lsm=lsm)
    assert_same_tables(got, table)


def test_no_zero_lead_with_lead_selection_naming_zero(canonical, tmp_path):
    """Asking for 0 h of a store that starts at 6 h: 0 h is absent, the rest is scored."""
    case, table = canonical
    got = _score_layout(case, tmp_path, {"drop_lead_zero": True, "lat_name": "lat",
                                         "lon_name": "lon"},
                        lead_times=["0h", "6h", "24h"])
    leads = pd.to_timedelta(["6h", "24h"])
    np.testing.assert_array_equal(got.lead_time.values, leads.values)
    assert_same_tables(got, table.sel(lead_time=leads.values))


def test_grid_within_tolerance_is_accepted(canonical, tmp_path):
    """Forecast latitudes off by 5e-4° (< 1e-3°): the same grid, the same numbers."""
    case, table = canonical
    lat = case.latitude.copy()
    lat[1:-1] += 5e-4
    shifted = dataclasses.replace(case, latitude=lat, paths={})
    fc = write_forecast(shifted, tmp_path / "fc_shift.zarr")
    got = _score_layout(case, tmp_path, {}, forecast=fc)
    assert_same_tables(got, table)


def test_different_grid_is_an_error_not_a_regrid(canonical, tmp_path):
    case, _ = canonical
    lat = case.latitude.copy()
    lat[1:-1] += 0.5
    shifted = dataclasses.replace(case, latitude=lat, paths={})
    fc = write_forecast(shifted, tmp_path / "fc_shift.zarr")
    with pytest.raises(ValueError, match="grid"):
        _score_layout(case, tmp_path, {}, forecast=fc)
