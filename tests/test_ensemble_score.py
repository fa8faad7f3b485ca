"""Scoring ensemble stores end to end: every ensemble metric in the table against NumPy written
here (pairwise CRPS over all member pairs), member order, per-init statistics and reuse, the
deterministic metrics of the ensemble mean, a deterministic model's CRPS = MAE, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import yaml
from builders import make_case, ref_region_weights, write_all

from wxeval.api import load_statistics, score
from wxeval.schema import SchemaError

M = 4
ENS_METRICS = ["crps", "crps_skill", "crps_spread", "ensemble_mean_mse", "ensemble_mean_rmse",
               "ensemble_mean_rmse_sqrt_before_time_avg", "debiased_ensemble_mean_mse",
               "ensemble_variance", "ensemble_stddev_sqrt_before_time_avg",
               "spread_skill_ratio", "spread_skill_ratio_corrected", "rank_histogram"]
VARS = ("2m_temperature", "geopotential")
LEVELS13 = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)


def _members(case, m, seed=5):
    """Members x[i, l, k] = truth + independent error (float64), (init, lead, M, [level,] lat,
    lon)."""
    rng = np.random.default_rng(seed)
    out = {}
    for var, fc in case.forecast.items():
        spread = 2.0 if var == "2m_temperature" else 300.0
        x = fc[:, :, None].astype(np.float64) + spread * rng.normal(
            size=(fc.shape[0], fc.shape[1], m, *fc.shape[2:]))
        out[var] = x
    return out


def write_ensemble(case, members, path, dim="number", order=None):
    """The members as a WB2-like store: dims (time, prediction_timedelta, dim, [level,]
    longitude, latitude), one chunk per init × lead × all members."""
    data = {}
    for var, x in members.items():
        if order is not None:
            x = x[:, :, order]
        x = np.swapaxes(x, -1, -2)
        dims = ["time", "prediction_timedelta", dim] + (["level"] if x.ndim == 6 else [])
        dims += ["longitude", "latitude"]
        data[var] = (dims, x)
    ds = xr.Dataset(
        data,
        coords={"time": case.init_times.values, "prediction_timedelta": case.lead_times.values,
                dim: np.arange(next(iter(members.values())).shape[2]), "level": case.levels,
                "latitude": case.latitude, "longitude": case.longitude},
    )
    enc = {v: {"chunks": (1, 1, *ds[v].shape[2:])} for v in data}
    ds.to_zarr(path, zarr_format=2, consolidated=True, encoding=enc)
    return str(path)


def _config(root, case, models, metrics, name, **ev):
    cfg = {
        "truth": {"path": case.paths["truth"]},
        "climatology": {"path": case.paths["climatology"]},
        "models": models,
        "evaluation": {"regions": ["global", "tropics"], "metrics": metrics, **ev},
        "output": {"statistics": str(root / f"{name}-stats")},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def ens(tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    case = write_all(make_case(variables=VARS, n_inits=4, leads_h=(0, 24), seed=3,
                               dtype=np.float64), root)
    members = _members(case, M)
    path = write_ensemble(case, members, root / "ens.zarr")
    return case, members, root, path


def _ref(case, x_all, var, region, li, lev):
    """Per-init values by the definitions (pairwise spread), then the reported values."""
    w = ref_region_weights(case, region)
    w = w / w.sum()
    lead = case.lead_times[li]
    per = {k: [] for k in ("skill", "spread", "mse", "var", "err", "out")}
    for i, t in enumerate(case.init_times):
        x = x_all[var][i, li]
        o = case.truth_at(var, t + lead).astype(np.float64)
        if lev is not None:
            x, o = x[:, lev], o[lev]
        m = x.shape[0]
        mean = x.mean(axis=0)
        pairs = sum(np.abs(x[a] - x[b]) for a in range(m) for b in range(m))
        per["skill"].append(np.sum(w * np.mean(np.abs(x - o), axis=0)))
        per["spread"].append(np.sum(w * pairs / (m * (m - 1))))
        per["mse"].append(np.sum(w * (mean - o) ** 2))
        per["var"].append(np.sum(w * np.var(x, axis=0, ddof=1)))
        per["err"].append(np.sum(w * (mean - o)))
        # rank by sorting (no ties with continuous members): outside the members' range
        rank = np.sum(np.sort(x, axis=0) < o, axis=0)
        per["out"].append(np.sum(w * ((rank == 0) | (rank == m))))
    p = {k: np.array(v) for k, v in per.items()}
    return {
        "crps": np.mean(p["skill"] - 0.5 * p["spread"]),
        "crps_skill": np.mean(p["skill"]),
        "crps_spread": np.mean(p["spread"]),
        "ensemble_mean_mse": np.mean(p["mse"]),
        "ensemble_mean_rmse": np.sqrt(np.mean(p["mse"])),
        "ensemble_mean_rmse_sqrt_before_time_avg": np.mean(np.sqrt(p["mse"])),
        "debiased_ensemble_mean_mse": np.mean(p["mse"] - p["var"] / m),
        "ensemble_variance": np.mean(p["var"]),
        "ensemble_stddev_sqrt_before_time_avg": np.mean(np.sqrt(p["var"])),
        "spread_skill_ratio": np.sqrt(np.mean(p["var"])) / np.sqrt(np.mean(p["mse"])),
        "spread_skill_ratio_corrected":
            np.sqrt(np.mean(p["var"]) * (m + 1) / m) / np.sqrt(np.mean(p["mse"])),
        "rank_histogram": np.mean(p["out"]),
        "rmse": np.sqrt(np.mean(p["mse"])),
        "bias": np.mean(p["err"]),
    }


def test_ensemble_metrics_match_numpy_and_member_order(ens):
    case, members, root, path = ens
    report = score(_config(root, case, {"ens": {"path": path}}, ENS_METRICS + ["rmse", "bias"],
                           "a"), ["ens"], root / "a-out")
    table = report.tables["ens"]
    perm = np.array([2, 0, 3, 1])
    shuffled = write_ensemble(case, members, root / "perm.zarr", dim="realization", order=perm)
    again = score(_config(root, case, {"ens": {"path": shuffled}},
                          ENS_METRICS + ["rmse", "bias"], "b"), ["ens"], root / "b-out")
    checked = 0
    for var in VARS:
        for region in ("global", "tropics"):
            for li, lead in enumerate(case.lead_times):
                levels = list(enumerate(case.levels)) if var == "geopotential" else [(None, None)]
                for lev, level in levels:
                    ref = _ref(case, members, var, region, li, lev)
                    for t in (table, again.tables["ens"]):
                        da = t[var].sel(region=region, lead_time=lead)
                        if level is not None:
                            da = da.sel(level=level)
                        for metric, want in ref.items():
                            np.testing.assert_allclose(float(da.sel(metric=metric)), want,
                                                       rtol=1e-10, err_msg=f"{var} {metric}")
                    checked += 1
    assert checked == 2 * 2 * 3
    # per-init statistics are stored, the rank histogram among them (M + 1 bins)
    stats = load_statistics(root / "a-out", "ens")["2m_temperature"]
    names = list(stats["statistic"].values)
    assert "sum_crps_skill" in names and "rank_04" in names
    ranks = stats.sel(statistic=[f"rank_{k:02d}" for k in range(M + 1)]).sum("statistic")
    np.testing.assert_allclose(ranks, stats.sel(statistic="sum_weight_e"), rtol=1e-12)


def test_rerun_adding_inits_computes_only_new_ones(ens):
    case, members, root, path = ens
    models = {"ens": {"path": path}}
    first = score(_config(root, case, models, ["crps"], "inc",
                          init_times={"stop": str(case.init_times[1])}), ["ens"], root / "i1")
    second = score(_config(root, case, models, ["crps"], "inc"), ["ens"], root / "i2")
    assert first.computed_fields > 0
    assert second.computed_fields == first.computed_fields  # 2 of 4 inits, then the other 2
    full = score(_config(root, case, models, ["crps"], "inc-full"), ["ens"], root / "i3")
    np.testing.assert_allclose(second.tables["ens"]["geopotential"],
                               full.tables["ens"]["geopotential"], rtol=1e-12)


def test_deterministic_crps_is_its_mae(ens):
    case, members, root, path = ens
    report = score(_config(root, case, {"det": {"path": case.paths["forecast"]}},
                           ["crps", "mae", "crps_spread"], "det"), ["det"], root / "det-out")
    t = report.tables["det"]["geopotential"]
    np.testing.assert_allclose(t.sel(metric="crps"), t.sel(metric="mae"), rtol=1e-12)
    assert (t.sel(metric="crps_spread") == 0).all()


def test_truth_with_members_is_refused(ens, tmp_path):
    case, members, root, path = ens
    ds = xr.open_zarr(case.paths["truth"]).load()
    ds["2m_temperature"] = ds["2m_temperature"].expand_dims(number=[0, 1]).copy()
    for v in ds.variables.values():
        v.encoding = {}
    ds.to_zarr(tmp_path / "t.zarr", zarr_format=2, consolidated=True)
    cfg = _config(tmp_path, case, {"ens": {"path": path}}, ["crps"], "t",
                  variables=["2m_temperature"])
    text = yaml.safe_load(cfg.read_text())
    text["truth"] = {"path": str(tmp_path / "t.zarr")}
    cfg.write_text(yaml.safe_dump(text))
    with pytest.raises(SchemaError, match=r"t\.zarr\): 2m_temperature: unexpected dimension.*"
                                          r"'number' looks like ensemble members"):
        score(cfg, ["ens"], tmp_path / "out")


def test_ensemble_dim_named_in_the_config(ens, tmp_path):
    case, members, root, path = ens
    other = write_ensemble(case, members, tmp_path / "draws.zarr", dim="draw")
    cfg = _config(tmp_path, case, {"ens": {"path": other, "ensemble_dim": "draw"}}, ["crps"],
                  "d", variables=["2m_temperature"])
    got = score(cfg, ["ens"], tmp_path / "out").tables["ens"]["2m_temperature"]
    ref = _ref(case, members, "2m_temperature", "global", 1, None)["crps"]
    np.testing.assert_allclose(float(got.sel(metric="crps", region="global").isel(lead_time=1)),
                               ref, rtol=1e-10)


def test_one_member_spread_is_zero_and_said(ens, tmp_path, caplog):
    """WB2's definitions: one member has spread 0, so crps = crps_skill = mae of that member,
    the spread-skill ratio 0; scored so, with a warning naming the model."""
    import logging

    case, members, root, path = ens
    one = {v: x[:, :, :1] for v, x in members.items()}
    p1 = write_ensemble(case, one, tmp_path / "one.zarr")
    cfg = _config(tmp_path, case, {"one": {"path": p1}},
                  ["crps", "crps_spread", "spread_skill_ratio", "mae"], "one",
                  variables=["2m_temperature"])
    with caplog.at_level(logging.WARNING, logger="wxeval"):
        t = score(cfg, ["one"], tmp_path / "out").tables["one"]["2m_temperature"]
    assert (t.sel(metric="crps_spread") == 0).all()
    assert (t.sel(metric="spread_skill_ratio") == 0).all()
    np.testing.assert_allclose(t.sel(metric="crps"), t.sel(metric="mae"), rtol=1e-12)
    assert any("one: one ensemble member" in r.getMessage() for r in caplog.records)


def test_all_nan_member_is_named_by_check_and_score(ens, tmp_path, caplog):
    import logging

    from wxeval.check.run import run_checks
    from wxeval.config import load_config

    case, members, root, path = ens
    bad = {v: x.copy() for v, x in members.items()}
    bad["2m_temperature"][0, 1, 2] = np.nan  # member 2, first init, lead 24 h
    p = write_ensemble(case, bad, tmp_path / "nanm.zarr")
    cfg = _config(tmp_path, case, {"ens": {"path": p}}, ["crps", "rmse"], "nan",
                  variables=["2m_temperature"])
    found = [f for f in run_checks(load_config(cfg), ["ens"]).findings
             if f.code == "nan-member"]
    assert len(found) == 1 and "member 2" in found[0].message and "lead 24" in found[0].message
    with caplog.at_level(logging.WARNING, logger="wxeval"):
        t = score(cfg, ["ens"], tmp_path / "out").tables["ens"]["2m_temperature"]
    init = str(np.datetime_as_string(case.init_times[0].to_datetime64(), unit="m"))
    assert any("ensemble member 2 is all NaN" in r.getMessage() and init in r.getMessage()
               for r in caplog.records)
    assert np.isnan(t.sel(metric="crps").isel(lead_time=1)).all()  # its init is NaN
    assert np.isfinite(t.sel(metric="crps").isel(lead_time=0)).all()


def test_models_with_different_member_counts(ens, tmp_path):
    """Allowed: each model's values use its own M (reported in its statistics)."""
    case, members, root, path = ens
    three = {v: x[:, :, :3] for v, x in members.items()}
    p3 = write_ensemble(case, three, tmp_path / "three.zarr")
    cfg = _config(tmp_path, case, {"four": {"path": path}, "three": {"path": p3}},
                  ["crps", "debiased_ensemble_mean_mse"], "mix", variables=["2m_temperature"])
    report = score(cfg, ["four", "three"], tmp_path / "out")
    for name, x, m in (("four", members, 4), ("three", three, 3)):
        ref = _ref(case, x, "2m_temperature", "tropics", 1, None)
        got = report.tables[name]["2m_temperature"].sel(region="tropics").isel(lead_time=1)
        np.testing.assert_allclose(float(got.sel(metric="crps")), ref["crps"], rtol=1e-10)
        stats = load_statistics(tmp_path / "out", name)["2m_temperature"]
        assert (stats.sel(statistic="ensemble_size") == m).all()


def test_task_size_counts_the_members(ens):
    """make_tasks' memory estimate holds M fields per lead (and the per-lead copies): at the
    same budget, 50 members get a block of inits (or a level group) ~M times smaller."""
    from wxeval import evaluate

    case, members, root, path = ens
    from wxeval.config import load_config
    from wxeval.plan import make_plan

    plan = make_plan(load_config(_config(root, case, {"ens": {"path": path}}, ["crps"], "size")),
                     ["ens"])
    m = plan.models[0]
    assert m.members == M
    assert evaluate._lead_chunk(m, "geopotential") == 2 * M + M + 2  # read ahead: twice
    npoints, span, step = 121 * 240, np.timedelta64(10, "D"), np.timedelta64(12, "h")
    budget = 768 * 2**20
    sizes = {}
    for nm in (1, 10, 50):
        blk, groups = evaluate._choose_block(None, LEVELS13, npoints, span, step, budget,
                                             lead_chunk=nm * 3 + 2)
        sizes[nm] = blk / np.timedelta64(1, "D") * len(groups[0])  # days × levels per task
    assert sizes[50] < sizes[10] < sizes[1]


def test_synthetic_ensemble_members_are_independent_error_draws(tmp_path):
    """Member k = forecast_fields with member_error(k) (truth + its own error), stored with
    one chunk per init × lead × all members; the existing stores are not changed by it."""
    from wxeval import synthetic as syn

    err = syn.ErrorModel(amplitude=1.0, tau_hours=300.0, seed=404)
    p = syn.write_ensemble_forecast(tmp_path / "e.zarr", ["2020-01-01", "2020-01-01T12"],
                                    [0, 24], variables=["geopotential", "2m_temperature"],
                                    levels=[500, 850], members=3, error=err)
    ds = xr.open_zarr(p)
    assert ds["geopotential"].dims[:3] == ("time", "prediction_timedelta", "number")
    assert ds["geopotential"].encoding["chunks"][:3] == (1, 1, 3)
    for k in range(3):
        want = syn.forecast_fields("geopotential", "2020-01-01T12", [24], levels=[500, 850],
                                   error=syn.member_error(err, k))
        np.testing.assert_array_equal(ds["geopotential"].values[1, 1, k], want[0])
    x = ds["2m_temperature"].values[0, 1]
    assert np.std(x[0] - x[1]) > 0  # distinct draws


def test_shipped_ensemble_config_is_valid():
    from pathlib import Path

    from wxeval.config import load_config

    cfg = load_config(Path(__file__).parents[1] / "configs" / "wb2-ens-240x121.yaml")
    assert {"ifs_ens", "ens_mean", "neuralgcm_ens"} <= set(cfg.models)
    assert cfg.models["ifs_ens"].path == ("gs://weatherbench2/datasets/ifs_ens/2018-2022-240x121_"
                                          "equiangular_with_poles_conservative.zarr")
    assert "era5/" in cfg.truth.path and "crps" in cfg.evaluation.metrics
    for m in cfg.models.values():
        assert m.path.startswith("gs://weatherbench2/datasets/") and "240x121" in m.path


def test_maps_of_an_ensemble_are_those_of_its_mean(ens, tmp_path):
    """--maps on an ensemble store: per grid point, the time-mean bias and MSE of the ensemble
    mean x̄ (as its rmse), against NumPy on the members."""
    case, members, root, path = ens
    cfg = _config(tmp_path, case, {"ens": {"path": path}}, ["rmse"], "maps", maps=True)
    maps = score(cfg, ["ens"], tmp_path / "out").maps["ens"]
    for var in VARS:
        xbar = members[var].mean(axis=2)  # (init, lead, [level,] lat, lon)
        o = np.stack([np.stack([case.truth_at(var, t + lead) for lead in case.lead_times])
                      for t in case.init_times]).astype(np.float64)
        d = xbar - o
        np.testing.assert_allclose(maps[f"{var}.bias"].values, d.mean(axis=0), rtol=1e-10)
        np.testing.assert_allclose(maps[f"{var}.mse"].values, (d**2).mean(axis=0), rtol=1e-10)


def test_float32_members_have_a_float32_mean_as_wb2(ens, tmp_path):
    """Members stored as float32 (WB2's stores): the deterministic metrics are those of the
    ensemble mean accumulated in float64 and rounded to float32, as WB2's mean of float32
    members is float32; the ensemble group's own mean (ensemble_mean_rmse) stays float64.
    Against NumPy here, at 1e-10."""
    case, members, root, _ = ens
    m32 = {var: x.astype(np.float32) for var, x in members.items()}
    path = write_ensemble(case, m32, tmp_path / "ens32.zarr")
    cfg = _config(tmp_path, case, {"ens": {"path": path}},
                  ["rmse", "bias", "ensemble_mean_rmse"], "f32")
    table = score(cfg, ["ens"], tmp_path / "out").tables["ens"]
    var = "2m_temperature"
    w = ref_region_weights(case, "global")
    w = w / w.sum()
    for li, lead in enumerate(case.lead_times):
        se32, err32, se64 = [], [], []
        for i, t in enumerate(case.init_times):
            x = m32[var][i, li].astype(np.float64)
            o = case.truth_at(var, t + lead).astype(np.float64)
            mean64 = x.mean(axis=0)
            mean32 = mean64.astype(np.float32).astype(np.float64)
            se32.append(np.sum(w * (mean32 - o) ** 2))
            err32.append(np.sum(w * (mean32 - o)))
            se64.append(np.sum(w * (mean64 - o) ** 2))
        got = table[var].sel(region="global", lead_time=lead)
        np.testing.assert_allclose(float(got.sel(metric="rmse")), np.sqrt(np.mean(se32)),
                                   rtol=1e-10)
        np.testing.assert_allclose(float(got.sel(metric="bias")), np.mean(err32), rtol=1e-10)
        np.testing.assert_allclose(float(got.sel(metric="ensemble_mean_rmse")),
                                   np.sqrt(np.mean(se64)), rtol=1e-10)


def test_member_mean_rounds_float32_only():
    """float32 members: the float64 mean rounded to float32 (as WB2); float16 and float64
    members: the float64 mean itself (float16 would lose digits). Against NumPy."""
    from wxeval.evaluate import _member_mean

    rng = np.random.default_rng(5)
    x = rng.normal(280, 10, size=(2, 5, 3, 4))
    for dtype, want_dtype in ((np.float32, np.float32), (np.float16, np.float64),
                              (np.float64, np.float64)):
        members = x.astype(dtype)
        want = members.astype(np.float64).sum(axis=1) / 5
        got = _member_mean(members)
        assert got.dtype == want_dtype
        np.testing.assert_allclose(got, want.astype(want_dtype), rtol=1e-12)
