"""wxeval.synthetic's codec and chunk-layout options change only the storage: the values equal
those of the default store (zstd, one chunk per init × lead) exactly."""

from __future__ import annotations

import json

import numcodecs
import numpy as np
import pandas as pd
import xarray as xr

from wxeval import synthetic as syn

VARS = ["temperature", "2m_temperature"]
LEVELS = [500, 850]
INITS = pd.date_range("2020-02-28", periods=3, freq="12h")
LEADS = [0, 12, 24, 36]
LZ4 = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)


def _zarray(store, var: str) -> dict:
    return json.loads((store / var / ".zarray").read_text())


def _assert_same_values(a, b) -> None:
    da, db = xr.open_zarr(a).load(), xr.open_zarr(b).load()
    assert set(da.data_vars) == set(db.data_vars)
    for name in da.data_vars:
        assert da[name].dims == db[name].dims
        np.testing.assert_array_equal(da[name].values, db[name].values)
    for name in da.coords:
        np.testing.assert_array_equal(da[name].values, db[name].values)


def test_forecast_codec_and_per_init_chunks(tmp_path):
    kw = dict(variables=VARS, levels=LEVELS, grid="64x32", seed=5,
              error=syn.DEMO_MODELS["pangu_like"])
    default = syn.write_forecast(tmp_path / "default.zarr", INITS, LEADS, **kw)
    lz4 = syn.write_forecast(tmp_path / "lz4.zarr", INITS, LEADS, compressor=LZ4, **kw)
    per_init = syn.write_forecast(tmp_path / "per_init.zarr", INITS, LEADS, compressor=LZ4,
                                  chunks={"prediction_timedelta": len(LEADS)}, **kw)
    zstd_init = syn.write_forecast(tmp_path / "zstd_init.zarr", INITS, LEADS,
                                   chunks={"prediction_timedelta": len(LEADS)}, **kw)
    assert _zarray(default, "temperature")["compressor"] == {"id": "zstd", "level": 1}
    assert _zarray(default, "temperature")["chunks"] == [1, 1, 2, 64, 32]
    for store in (lz4, per_init):
        meta = _zarray(store, "temperature")["compressor"]
        assert (meta["id"], meta["cname"], meta["clevel"], meta["shuffle"]) == ("blosc", "lz4",
                                                                                 5, 1)
    assert _zarray(lz4, "temperature")["chunks"] == [1, 1, 2, 64, 32]
    for store in (per_init, zstd_init):
        assert _zarray(store, "temperature")["chunks"] == [1, 4, 2, 64, 32]
        assert _zarray(store, "2m_temperature")["chunks"] == [1, 4, 64, 32]
        # one chunk file per init, written by the writer's direct path
        assert sorted(p.name for p in (store / "temperature").glob("[0-9]*")) == [
            "0.0.0.0.0", "1.0.0.0.0", "2.0.0.0.0"]
    for store in (lz4, per_init, zstd_init):
        _assert_same_values(store, default)
    # and the values are the generator's own (not, e.g., all fill values)
    fc = xr.open_zarr(per_init)["temperature"].isel(time=1).values
    np.testing.assert_array_equal(
        fc, syn.forecast_fields("temperature", INITS[1], LEADS, levels=LEVELS, grid="64x32",
                                seed=5, error=syn.DEMO_MODELS["pangu_like"]))


def test_truth_and_climatology_codec(tmp_path):
    kw = dict(variables=VARS, levels=LEVELS, grid="64x32", seed=5)
    times = pd.date_range("2020-02-28", periods=5, freq="6h")
    truth = [syn.write_truth(tmp_path / f"t{i}.zarr", times, compressor=c, **kw)
             for i, c in enumerate((None, LZ4))]
    clim = [syn.write_climatology(tmp_path / f"c{i}.zarr", dayofyears=[59, 60], hours=[0, 12],
                                  compressor=c, **kw) for i, c in enumerate((None, LZ4))]
    for default, other in (truth, clim):
        assert _zarray(other, "temperature")["compressor"]["cname"] == "lz4"
        _assert_same_values(other, default)
    assert _zarray(truth[1], "land_sea_mask")["compressor"]["cname"] == "lz4"
