"""Ensembles scored on derived variables (6 h precipitation from a cumulative total per member,
10 m wind speed per member): the ensemble mean's RMSE and the CRPS against NumPy written here,
M recorded, and an all-NaN member named without a crash."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from wxeval import synthetic as syn
from wxeval import synthetic_precip
from wxeval.api import score

INITS = pd.date_range("2020-01-01", periods=3, freq="12h")
LEADS = [0, 6, 12, 18, 24]
M = 3


def _weights(lat: np.ndarray) -> np.ndarray:
    phi = np.deg2rad(np.sort(lat))
    b = np.concatenate([[-np.pi / 2], (phi[1:] + phi[:-1]) / 2, [np.pi / 2]])
    w = np.sin(b[1:]) - np.sin(b[:-1])
    return w / w.mean()


def _archive(root, nan_member=False):
    truth_times = pd.date_range("2019-12-31T18", "2020-01-03", freq="6h")
    truth = syn.write_truth(root / "era5.zarr", truth_times,
                            variables=["10m_u_component_of_wind", "10m_v_component_of_wind"],
                            grid="64x32", seed=1)
    synthetic_precip.add_truth(truth, grid="64x32", seed=1)
    err = syn.ErrorModel(amplitude=1.0, tau_hours=200.0, seed=9)
    ens = syn.write_ensemble_forecast(
        root / "ens.zarr", INITS, LEADS, members=M, error=err, grid="64x32", seed=1,
        variables=["10m_u_component_of_wind", "10m_v_component_of_wind"])
    synthetic_precip.add_forecast(ens, grid="64x32", seed=1, error=err, members=M)
    if nan_member:
        ds = xr.open_zarr(ens).load()
        ds["10m_u_component_of_wind"][:, :, 1] = np.nan
        ens = root / "ens-nan.zarr"
        ds.to_zarr(ens, zarr_format=2, consolidated=True)
    return truth, ens


def _config(root, truth, ens, variables, metrics):
    cfg = {"truth": {"path": str(truth)}, "models": {"ens": {"path": str(ens)}},
           "evaluation": {"variables": variables, "metrics": metrics, "regions": ["global"],
                          "lead_times": {"start": "0h", "stop": "24h", "step": "6h"}}}
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_ensemble_of_derived_variables_matches_numpy(tmp_path):
    truth, ens = _archive(tmp_path)
    cfg = _config(tmp_path, truth, ens, ["total_precipitation_6hr", "10m_wind_speed"],
                  ["rmse", "crps"])
    report = score(cfg, ["ens"], tmp_path / "out")
    assert json.loads((tmp_path / "out" / "ens.json").read_text())["members"] == M
    fc, tr = xr.open_zarr(ens), xr.open_zarr(truth)
    order = np.argsort(tr["latitude"].values)
    w = _weights(tr["latitude"].values)
    six = np.timedelta64(6, "h")
    for lead_h in (6, 12, 24):
        lead = np.timedelta64(lead_h, "h").astype("timedelta64[ns]")
        mse, crps = [], []
        for t in INITS.values:
            tp = fc["total_precipitation"].sel(time=t)
            x = np.maximum(tp.sel(prediction_timedelta=lead).values.astype(np.float64)
                           - tp.sel(prediction_timedelta=lead - six).values, 0.0)  # (M, x, y)
            o = tr["total_precipitation_6hr"].sel(time=t + lead).values.astype(np.float64)
            skill = np.abs(x - o).mean(0)
            spread = np.abs(x[:, None] - x[None]).sum((0, 1)) / (M * (M - 1))
            mse.append((((x.mean(0) - o) ** 2)[:, order] * w).mean())
            crps.append(((skill - 0.5 * spread)[:, order] * w).mean())
        got = report.tables["ens"]["total_precipitation_6hr"].sel(region="global",
                                                                  lead_time=lead)
        np.testing.assert_allclose(float(got.sel(metric="rmse")), np.sqrt(np.mean(mse)),
                                   rtol=1e-6)
        np.testing.assert_allclose(float(got.sel(metric="crps")), np.mean(crps), rtol=1e-6)
    lead = np.timedelta64(12, "h").astype("timedelta64[ns]")
    mse = []
    for t in INITS.values:
        u = fc["10m_u_component_of_wind"].sel(time=t, prediction_timedelta=lead).values
        v = fc["10m_v_component_of_wind"].sel(time=t, prediction_timedelta=lead).values
        speed = np.hypot(u.astype(np.float64), v.astype(np.float64)).mean(0)
        o = np.hypot(tr["10m_u_component_of_wind"].sel(time=t + lead).values.astype(np.float64),
                     tr["10m_v_component_of_wind"].sel(time=t + lead).values.astype(np.float64))
        mse.append((((speed - o) ** 2)[:, order] * w).mean())
    got = report.tables["ens"]["10m_wind_speed"].sel(region="global", lead_time=lead,
                                                     metric="rmse")
    np.testing.assert_allclose(float(got), np.sqrt(np.mean(mse)), rtol=1e-6)


def test_all_nan_member_of_a_derived_variable_is_named(tmp_path, caplog):
    truth, ens = _archive(tmp_path, nan_member=True)
    cfg = _config(tmp_path, truth, ens, ["10m_wind_speed"], ["rmse"])
    with caplog.at_level(logging.WARNING, logger="wxeval"):
        score(cfg, ["ens"], tmp_path / "out")
    assert any("member 1 is all NaN" in r.getMessage() for r in caplog.records)


def test_ensemble_dim_not_in_the_store_is_named(tmp_path):
    from typer.testing import CliRunner

    from wxeval.cli import app

    truth, ens = _archive(tmp_path)
    cfg = yaml.safe_load(_config(tmp_path, truth, ens, ["10m_wind_speed"], ["rmse"]).read_text())
    cfg["models"]["ens"]["ensemble_dim"] = "nosuch"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["score", "-c", str(tmp_path / "cfg.yaml"), "-m", "ens",
                                   "-o", str(tmp_path / "out")])
    assert res.exit_code == 3
    assert "ensemble_dim 'nosuch'" in res.output and "not a dimension" in res.output


def test_more_members_than_rank_slots_is_said(tmp_path, caplog):
    """M + 1 > RANK_BINS: asking for rank_histogram by name is a clear error; with the ensemble
    defaults it is left out and said (never a silently NaN histogram)."""
    import pytest

    from wxeval.config import load_config
    from wxeval.plan import SelectionError, make_plan
    from wxeval.statistics import RANK_BINS

    truth = syn.write_truth(tmp_path / "era5.zarr", pd.date_range("2020-01-01", "2020-01-02",
                                                                  freq="6h"),
                            variables=["2m_temperature"], grid="64x32", seed=1)
    ens = syn.write_ensemble_forecast(
        tmp_path / "big.zarr", INITS[:1], [0, 6], members=RANK_BINS, grid="64x32", seed=1,
        error=syn.ErrorModel(seed=3), variables=["2m_temperature"])
    cfg = _config(tmp_path, truth, ens, ["2m_temperature"], ["crps", "rank_histogram"])
    with pytest.raises(SelectionError, match=f"at most {RANK_BINS - 1} members"):
        make_plan(load_config(cfg), ["ens"])
    data = yaml.safe_load(cfg.read_text())
    del data["evaluation"]["metrics"]
    cfg.write_text(yaml.safe_dump(data))
    with caplog.at_level(logging.WARNING, logger="wxeval"):
        plan = make_plan(load_config(cfg), ["ens"])
    assert "crps" in plan.metrics and "rank_histogram" not in plan.metrics
    assert any("rank_histogram keeps at most" in r.getMessage() for r in caplog.records)
