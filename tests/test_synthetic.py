"""Tests for wxeval.synthetic: WB2 store layouts, the truth/climatology/forecast relationships."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from wxeval import synthetic as syn

LEVELS = [500, 850]
VARS = ["geopotential", "temperature", "2m_temperature", "10m_u_component_of_wind"]
INITS = pd.date_range("2020-02-27", periods=4, freq="12h")  # crosses the leap day
LEADS = np.arange(0, 73, 12)  # hours
UNITS = {"geopotential": "m**2 s**-2", "temperature": "K", "2m_temperature": "K",
         "10m_u_component_of_wind": "m s**-1"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    return syn.write_archive(root, grid="64x32", init_times=INITS, lead_times=LEADS,
                             variables=VARS, levels=LEVELS, seed=3)


def _area_weights(lat: np.ndarray) -> np.ndarray:
    return np.cos(np.deg2rad(lat)) / np.cos(np.deg2rad(lat)).mean()


def test_grids():
    g = syn.Grid.named("64x32")
    assert g.latitude[0] == -87.1875 and g.latitude[-1] == 87.1875
    assert np.all(np.diff(g.latitude) > 0) and g.longitude[1] == 5.625
    g = syn.GRIDS["240x121"]
    assert g.latitude[0] == -90 and g.latitude[-1] == 90 and g.longitude[-1] == 358.5
    assert syn.GRIDS["1440x721"].latitude[1] == -89.75


def test_store_layouts(archive):
    truth = xr.open_zarr(archive["truth"])
    assert truth["geopotential"].dims == ("time", "level", "longitude", "latitude")
    assert truth["2m_temperature"].dims == ("time", "longitude", "latitude")
    assert truth["land_sea_mask"].dims == ("longitude", "latitude")
    assert truth["time"].dtype == "datetime64[ns]" and truth["level"].dtype == np.int64
    assert truth["latitude"].dtype == np.float64 and truth["longitude"].dtype == np.float64
    assert truth["geopotential"].encoding["chunks"] == (1, 2, 64, 32)
    assert "zstd" in repr(truth["geopotential"].encoding["compressors"]).lower()
    lsm = truth["land_sea_mask"].values
    assert lsm.min() == 0 and lsm.max() == 1 and np.any((lsm > 0.05) & (lsm < 0.95))
    for name, units in UNITS.items():
        assert truth[name].dtype == np.float32 and truth[name].attrs["units"] == units

    fc = xr.open_zarr(archive["graphcast_like"])
    assert fc["temperature"].dims == (
        "time", "prediction_timedelta", "level", "longitude", "latitude")
    assert fc["10m_u_component_of_wind"].dims == (
        "time", "prediction_timedelta", "longitude", "latitude")
    assert fc["prediction_timedelta"].dtype == "timedelta64[ns]"
    assert fc["temperature"].encoding["chunks"] == (1, 1, 2, 64, 32)
    np.testing.assert_array_equal(fc["time"].values, INITS.values)

    clim = xr.open_zarr(archive["climatology"])
    assert clim["geopotential"].dims == ("hour", "dayofyear", "level", "longitude", "latitude")
    assert clim["2m_temperature"].dims == ("hour", "dayofyear", "longitude", "latitude")
    assert list(clim["hour"].values) == [0, 6, 12, 18]
    valid = pd.DatetimeIndex((INITS.values[:, None] + pd.to_timedelta(LEADS, "h").values).ravel())
    assert set(clim["dayofyear"].values) == set(valid.day_of_year)  # only the days needed
    assert set(truth["time"].values) >= set(valid.values)


def test_realistic_values(archive):
    truth = xr.open_zarr(archive["truth"]).isel(time=0)
    w = xr.DataArray(_area_weights(truth["latitude"].values), dims="latitude")
    mean = {k: float(truth[k].weighted(w).mean(("longitude", "latitude")).mean())
            for k in ("2m_temperature", "10m_u_component_of_wind")}
    z = truth["geopotential"].weighted(w).mean(("longitude", "latitude"))
    assert 52000 < float(z.sel(level=500)) < 56000 and 11000 < float(z.sel(level=850)) < 15000
    assert 280 < mean["2m_temperature"] < 295 and abs(mean["10m_u_component_of_wind"]) < 5
    t850 = truth["temperature"].sel(level=850)
    assert float(t850.sel(latitude=0, method="nearest").mean()) > float(
        t850.sel(latitude=87, method="nearest").mean()) + 15


def test_truth_is_climatology_plus_anomaly(archive):
    times = pd.DatetimeIndex(["2020-02-28T06:00", "2020-02-29T18:00", "2020-03-01T00:00"])
    kw = dict(levels=LEVELS, grid="64x32")
    for var in VARS:
        clim = syn.climatology_fields(var, times.day_of_year, times.hour, **kw)
        anom = syn.anomaly_fields(var, times, seed=3, **kw)
        np.testing.assert_allclose(syn.truth_fields(var, times, seed=3, **kw), clim + anom,
                                   rtol=1e-13)
        assert np.abs(anom).max() > 0
    # The stores hold exactly those functions (float32).
    truth = xr.open_zarr(archive["truth"])
    clim = xr.open_zarr(archive["climatology"])
    for var in VARS:
        got = truth[var].sel(time=times).values
        np.testing.assert_array_equal(
            got, syn.truth_fields(var, times, seed=3, **kw).astype(np.float32))
        c = np.stack([clim[var].sel(dayofyear=d, hour=h).values
                      for d, h in zip(times.day_of_year, times.hour, strict=True)])
        np.testing.assert_array_equal(
            c, syn.climatology_fields(var, times.day_of_year, times.hour, **kw).astype(np.float32))
    # Batching never changes values: one time at a time equals all at once.
    one = syn.truth_fields("temperature", times[1:2], seed=3, **kw)
    np.testing.assert_array_equal(one[0], syn.truth_fields("temperature", times, seed=3, **kw)[1])


def _at_valid_time(truth: xr.DataArray, fc: xr.DataArray) -> xr.DataArray:
    """truth(t + l) on the forecast's (time, prediction_timedelta) grid, loaded."""
    valid = fc["time"] + fc["prediction_timedelta"]
    return truth.sel(time=valid.drop_vars(["time", "prediction_timedelta"])).load()


def test_perfect_forecast_equals_truth(tmp_path, archive):
    perfect = syn.ErrorModel(amplitude=0.0, bias=0.0)
    path = syn.write_forecast(tmp_path / "perfect.zarr", INITS, LEADS, variables=VARS,
                              levels=LEVELS, grid="64x32", seed=3, error=perfect)
    fc, truth = xr.open_zarr(path), xr.open_zarr(archive["truth"])
    for var in VARS:
        np.testing.assert_array_equal(fc[var].values, _at_valid_time(truth[var], fc).values)


def test_forecast_store_matches_helper(archive):
    fc = xr.open_zarr(archive["pangu_like"])
    got = fc["temperature"].isel(time=2).values
    want = syn.forecast_fields("temperature", INITS[2], LEADS, levels=LEVELS, grid="64x32",
                               seed=3, error=syn.DEMO_MODELS["pangu_like"])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def _canonical(ds: xr.Dataset) -> xr.Dataset:
    """Undo a layout by hand (independent of wxeval.schema)."""
    ds = ds.rename({k: v for k, v in {"lat": "latitude", "lon": "longitude"}.items() if k in ds})
    ds = ds.assign_coords(longitude=np.mod(ds["longitude"].values, 360.0))
    return ds.sortby(["longitude", "latitude"])


@pytest.mark.parametrize("layout", [
    syn.Layout(lat_name="lat", lon_name="lon", drop_lead_zero=True),
    syn.Layout(latitude_descending=True, longitude_180=True),
    syn.Layout(lat_name="lat", lon_name="lon", latitude_descending=True, longitude_180=True,
               drop_lead_zero=True),
])
def test_layout_variants_hold_same_values(tmp_path, archive, layout):
    kw = dict(variables=VARS[1:3], levels=LEVELS, grid="64x32", seed=3,
              error=syn.DEMO_MODELS["graphcast_like"])
    path = syn.write_forecast(tmp_path / "v.zarr", INITS, LEADS, layout=layout, **kw)
    raw = xr.open_zarr(path)
    lat, lon = raw[layout.lat_name].values, raw[layout.lon_name].values
    assert raw["temperature"].dims[-2:] == (layout.lon_name, layout.lat_name)
    assert (np.diff(lat) < 0).all() == layout.latitude_descending
    assert (lon[0] == -180.0) == layout.longitude_180 and np.all(np.diff(lon) > 0)
    leads = raw["prediction_timedelta"].values
    assert (leads[0] > np.timedelta64(0)) == layout.drop_lead_zero
    variant, ref = _canonical(raw), xr.open_zarr(archive["graphcast_like"])
    for var in VARS[1:3]:
        xr.testing.assert_equal(variant[var].load(),
                                    ref[var].sel(prediction_timedelta=leads).load())
    truth = _canonical(xr.open_zarr(syn.write_truth(
        tmp_path / "t.zarr", INITS[:2], variables=["2m_temperature"], grid="64x32", seed=3,
        layout=layout)))
    ref_truth = xr.open_zarr(archive["truth"]).sel(time=INITS[:2])
    for var in ("2m_temperature", "land_sea_mask"):
        np.testing.assert_array_equal(truth[var].values, ref_truth[var].values)


def test_errors_grow_with_lead_and_differ_by_model(archive):
    truth = xr.open_zarr(archive["truth"])["geopotential"].sel(level=500)
    clim = xr.open_zarr(archive["climatology"])["geopotential"].sel(level=500).load()
    w = _area_weights(truth["latitude"].values)
    rmse, acc = {}, {}
    for name in syn.DEMO_MODELS:
        fc = xr.open_zarr(archive[name])["geopotential"].sel(level=500)
        valid = pd.DatetimeIndex((fc["time"] + fc["prediction_timedelta"]).values.ravel())
        c = np.stack([clim.sel(dayofyear=v.day_of_year, hour=v.hour).values for v in valid])
        c = c.reshape(fc.shape)
        f, o = fc.values.astype(np.float64), _at_valid_time(truth, fc).values.astype(np.float64)
        mse = np.mean(w * (f - o) ** 2, axis=(2, 3))  # (init, lead)
        fa, oa = f - c, o - c
        acc_t = np.mean(w * fa * oa, axis=(2, 3)) / np.sqrt(
            np.mean(w * fa**2, axis=(2, 3)) * np.mean(w * oa**2, axis=(2, 3)))
        rmse[name], acc[name] = np.sqrt(mse.mean(0)), acc_t.mean(0)
        assert rmse[name][0] > 0
        assert np.all(np.diff(rmse[name]) > 0), rmse[name]
        assert rmse[name][-1] > 3 * rmse[name][0]
        assert 0.5 < acc[name][-1] < acc[name][0] < 1.0
        assert np.all(np.diff(acc[name]) < 0.01), acc[name]


def test_demo_models_are_ordered():
    """Over many inits at 240 h: graphcast_like < pangu_like < hres_like, for every variable."""
    inits = pd.date_range("2020-01-01", periods=40, freq="12h")
    w = _area_weights(syn.GRIDS["64x32"].latitude)
    for var in ["geopotential", "2m_temperature", "10m_u_component_of_wind"]:
        levels = [500] if var == "geopotential" else []
        rmse = {name: np.sqrt(np.mean([np.mean(w * syn.forecast_error(
            var, t, [240], levels=levels, error=model) ** 2) for t in inits]))
            for name, model in syn.DEMO_MODELS.items()}
        assert rmse["graphcast_like"] < rmse["pangu_like"] < rmse["hres_like"], (var, rmse)


def test_per_init_scores_vary(archive):
    fc = xr.open_zarr(archive["hres_like"])["2m_temperature"].isel(prediction_timedelta=-1)
    truth = xr.open_zarr(archive["truth"])["2m_temperature"]
    lead = fc["prediction_timedelta"].values
    errs = [float(np.sqrt(((fc.sel(time=t) - truth.sel(time=t + lead)) ** 2).mean()))
            for t in fc["time"].values]
    assert np.std(errs) > 0.01 * np.mean(errs)


def test_chunks_and_batches(tmp_path):
    times = pd.date_range("2021-12-31", periods=9, freq="6h")
    path = syn.write_truth(tmp_path / "c.zarr", times, variables=["mean_sea_level_pressure"],
                           grid="64x32", chunks={"time": 4})
    ds = xr.open_zarr(path)
    assert ds["mean_sea_level_pressure"].encoding["chunks"] == (4, 64, 32) and "level" not in ds
    np.testing.assert_array_equal(
        ds["mean_sea_level_pressure"].values,
        syn.truth_fields("mean_sea_level_pressure", times, grid="64x32").astype(np.float32))
    assert 95000 < float(ds["mean_sea_level_pressure"].min())
    assert float(ds["mean_sea_level_pressure"].max()) < 106000
    with pytest.raises(ValueError, match="unknown variable"):
        syn.truth_fields("vorticity", times)
    with pytest.raises(ValueError, match="pressure level"):
        syn.truth_fields("temperature", times)


def test_unaligned_and_custom_chunks(tmp_path):
    # Hour chunks of 4 with one hour written at a time go through zarr (read-modify-write).
    path = syn.write_climatology(tmp_path / "clim.zarr", variables=["temperature"], levels=[850],
                                 dayofyears=[1, 2, 3], chunks={"hour": 4, "dayofyear": 2})
    clim = xr.open_zarr(path)["temperature"]
    assert clim.encoding["chunks"] == (4, 2, 1, 64, 32)
    want = syn.climatology_fields("temperature", [3, 3, 3, 3], [0, 6, 12, 18], levels=[850])
    np.testing.assert_array_equal(clim.sel(dayofyear=3).values, want.astype(np.float32))
    # Forecast chunks that do not divide the axes (NaN-padded edge chunks on disk).
    fc_path = syn.write_forecast(tmp_path / "fc.zarr", INITS[:3], LEADS, variables=["temperature"],
                                 levels=LEVELS, seed=3, error=syn.DEMO_MODELS["hres_like"],
                                 chunks={"time": 2, "prediction_timedelta": 3})
    fc = xr.open_zarr(fc_path)["temperature"]
    assert fc.encoding["chunks"] == (2, 3, 2, 64, 32) and not np.isnan(fc.values).any()
    want = syn.forecast_fields("temperature", INITS[2], LEADS, levels=LEVELS, seed=3,
                               error=syn.DEMO_MODELS["hres_like"])
    np.testing.assert_allclose(fc.isel(time=2).values, want, rtol=1e-6)
