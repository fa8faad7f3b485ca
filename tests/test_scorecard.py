"""The scorecard comparison (wxeval.scorecard.compare) against independent expectations.

Expectations are hand-written NumPy / scipy: per-init scores recomputed from the in-memory
test arrays (tests/builders.py), the naive test from ``scipy.stats.ttest_rel``, the AR(2)
inflation from a Yule-Walker solve written here, Benjamini-Hochberg from
``scipy.stats.false_discovery_control``. The realistic flow is score → compare: synthetic
stores scored by ``wxeval.api.score`` into a results folder, compared from that folder only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from builders import (
    UPPER,
    case_subset,
    make_case,
    ref_region_weights,
    write_climatology,
    write_forecast,
    write_truth,
)
from scipy import linalg, stats

import wxeval
from wxeval.api import score
from wxeval.scorecard.compare import Inputs, compare, curves, load_inputs, to_dataframe
from wxeval.scorecard.report import build_context, render_report, write_report

REGIONS = ["global", "tropics"]
N_INITS = 16
BASE_MISSING = [3, 7, 11]  # inits the baseline store lacks
B_MISSING = [0, 1]  # inits model_b lacks
#: model_a = truth + scale × (baseline error) + noise × (variable scale) × N(0, 1)
A_SCALE = {"temperature": 0.7, "geopotential": 1.0, "2m_temperature": 1.2}
A_NOISE = {"geopotential": 0.05, "10m_u_component_of_wind": 0.02, "10m_v_component_of_wind": 0.02}
VAR_SCALE = {"temperature": 5.0, "geopotential": 500.0, "2m_temperature": 4.0}


# ---------------------------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------------------------


def ref_per_init(case, var: str, level: int | None, lead_h: int, region: str) -> dict:
    """Per-init mse, mae, bias, acc of one cell, float64 loops over the case's inits."""
    w = ref_region_weights(case, region)
    j = list(case.lead_times).index(pd.Timedelta(hours=lead_h))
    li = None if level is None else case.levels.index(level)
    out = {k: [] for k in ("mse", "mae", "bias", "acc")}
    for i, t in enumerate(case.init_times):
        v = t + case.lead_times[j]
        f = case.forecast[var][i, j].astype(np.float64)
        o = case.truth_at(var, v).astype(np.float64)
        c = case.clim_at(var, v).astype(np.float64)
        if li is not None:
            f, o, c = f[li], o[li], c[li]
        mean = lambda x: float(np.sum(w * x) / np.sum(w))  # noqa: E731
        out["mse"].append(mean((f - o) ** 2))
        out["mae"].append(mean(np.abs(f - o)))
        out["bias"].append(mean(f - o))
        fa, oa = f - c, o - c
        out["acc"].append(mean(fa * oa) / math.sqrt(mean(fa * fa) * mean(oa * oa)))
    return {k: pd.Series(v, index=case.init_times) for k, v in out.items()}


def ref_series(case, var, level, lead_h, region, metric) -> pd.Series:
    """The per-init score a metric is tested on (wind vectors: mse_u + mse_v)."""
    if var == "10m_wind_vector":
        u = ref_per_init(case, "10m_u_component_of_wind", None, lead_h, region)["mse"]
        v = ref_per_init(case, "10m_v_component_of_wind", None, lead_h, region)["mse"]
        return u + v
    key = "mse" if metric in ("rmse", "mse") else metric
    return ref_per_init(case, var, level, lead_h, region)[key]


def ref_ar2_p(d: np.ndarray) -> tuple[float, float]:
    """(p, k): Geer (2016) test, AR(2) coefficients from a Yule-Walker solve."""
    d = np.asarray(d, dtype=np.float64)
    n = d.size
    x = d - d.mean()
    acov = np.array([np.sum(x[: n - lag] * x[lag:]) / n for lag in range(3)])
    rho = acov / acov[0]
    phi = linalg.solve(linalg.toeplitz(rho[:2]), rho[1:3])
    k = math.sqrt((1.0 - rho[1] * phi[0] - rho[2] * phi[1]) / (1.0 - phi.sum()) ** 2)
    se = math.sqrt(np.var(d, ddof=1) / n) * k
    t = d.mean() / se
    return float(2 * stats.t.sf(abs(t), n - 1)), k


def ref_p(a: pd.Series, b: pd.Series, method: str) -> float:
    if method == "naive":
        return float(stats.ttest_rel(a.to_numpy(), b.to_numpy()).pvalue)
    if method == "ar2bc":
        from test_significance import ref_ar2bc

        return ref_ar2bc((a - b).to_numpy())["p"]
    return ref_ar2_p((a - b).to_numpy())[0]


# ---------------------------------------------------------------------------------------------
# Realistic results folder: score → compare
# ---------------------------------------------------------------------------------------------


def _truth_like(case) -> dict:
    """Truth at every (init, lead) valid time, shaped like the forecasts."""
    out = {}
    for var, fc in case.forecast.items():
        o = np.empty(fc.shape, dtype=np.float64)
        for i, t in enumerate(case.init_times):
            for j, lead in enumerate(case.lead_times):
                o[i, j] = case.truth_at(var, t + lead)
        out[var] = o
    return out


def _model_a(case, seed=5):
    rng = np.random.default_rng(seed)
    obs = _truth_like(case)
    fc = {}
    for var, f in case.forecast.items():
        err = f.astype(np.float64) - obs[var]
        noise = A_NOISE.get(var, 0.0) * VAR_SCALE.get(var, 3.0) * rng.normal(size=f.shape)
        fc[var] = (obs[var] + A_SCALE.get(var, 1.0) * err + noise).astype(f.dtype)
    return dataclasses.replace(case, forecast=fc, paths={})


def _model_b(case):
    obs = _truth_like(case)
    fc = {v: (obs[v] + 0.9 * (f - obs[v])).astype(f.dtype) for v, f in case.forecast.items()}
    full = dataclasses.replace(case, forecast=fc, paths={})
    return case_subset(full, [i for i in range(N_INITS) if i not in B_MISSING])


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    """Baseline ``base`` (lacks 3 inits), ``model_a`` (all inits), ``model_b`` (lacks 2 inits)
    and ``persistence``, scored with wxeval.api.score into a results folder."""
    root = tmp_path_factory.mktemp("scorecard")
    case = make_case(n_inits=N_INITS, leads_h=(0, 24, 48), seed=3, dtype=np.float64)
    write_truth(case, root / "truth.zarr")
    write_climatology(case, root / "clim.zarr")
    base = case_subset(case, [i for i in range(N_INITS) if i not in BASE_MISSING])
    cases = {"base": base, "model_a": _model_a(case), "model_b": _model_b(case)}
    models = {}
    for name, c in cases.items():
        models[name] = {"path": write_forecast(c, root / f"{name}.zarr")}
    models["model_a"]["label"] = "Model A"
    models["persistence"] = {"kind": "persistence"}
    cfg = {
        "truth": {"path": case.paths["truth"]},
        "climatology": {"path": case.paths["climatology"]},
        "models": models,
        "evaluation": {
            "regions": REGIONS,
            "lead_times": ["0h", "24h", "48h"],
            "init_times": {
                "start": str(case.init_times[0]),
                "stop": str(case.init_times[-1]),
                "hours": [0, 12],
            },
        },
    }
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    score(root / "config.yaml", list(models), root / "results")
    return {"root": root, "results": root / "results", "config": root / "config.yaml",
            "cases": cases, "case": case}


def _cell(ds, model, metric, row, region, lead_h):
    return ds.sel(model=model, metric=metric, row=row, region=region,
                  lead_time=pd.Timedelta(hours=lead_h))


def _common(a_case, b_case):
    return a_case.init_times.intersection(b_case.init_times)


# ---------------------------------------------------------------------------------------------
# Hand-made per-init data: relative change and sign conventions per metric
# ---------------------------------------------------------------------------------------------


def _handmade(model: dict, base: dict, n_inits: int = 6) -> Inputs:
    """Inputs for one surface variable ``v`` (1 region, leads 0 and 24 h) from per-init
    arrays ``{score: array (lead, init)}``."""
    inits = pd.date_range("2021-01-01", periods=n_inits, freq="12h")
    leads = pd.to_timedelta([0, 24], unit="h")

    def ds(arrays):
        return xr.Dataset(
            {
                k: (("init_time", "lead_time", "region"), np.asarray(v, float).T[:, :, None])
                for k, v in arrays.items()
            },
            coords={"init_time": inits, "lead_time": leads, "region": ["global"]},
        )

    return Inputs(Path("."), "b", ["m"], {"b": {"v": ds(base)}, "m": {"v": ds(model)}},
                  {"b": {}, "m": {}})


BASE = {
    "mse": [[0, 0, 0, 0, 0, 0], [4.0, 5.0, 6.0, 5.0, 4.0, 6.0]],
    "mae": [[0, 0, 0, 0, 0, 0], [1.5, 1.8, 2.0, 1.9, 1.6, 2.1]],
    "acc": [[1, 1, 1, 1, 1, 1], [0.80, 0.82, 0.78, 0.81, 0.79, 0.83]],
    "bias": [[0, 0, 0, 0, 0, 0], [-0.5, -0.6, -0.4, -0.5, -0.45, -0.55]],
}
MODEL = {
    "mse": [[0.5, 0.4, 0.6, 0.5, 0.4, 0.5], [3.0, 4.5, 4.0, 5.0, 3.0, 4.0]],
    "mae": [[0.2, 0.1, 0.3, 0.2, 0.1, 0.2], [1.7, 1.9, 2.3, 2.0, 1.8, 2.2]],
    "acc": [[0.99, 0.98, 0.99, 0.97, 0.99, 0.98], [0.85, 0.84, 0.86, 0.83, 0.87, 0.85]],
    "bias": [[0.1, 0.1, 0.2, 0.1, 0.1, 0.1], [0.3, 0.25, 0.35, 0.3, 0.28, 0.32]],
}


def test_relative_change_and_sign_per_metric():
    ds = compare(None, ["m"], "b", inputs=_handmade(MODEL, BASE),
                 metrics=["rmse", "mae", "acc", "bias", "mse"])
    at = {"model": "m", "row": "v", "region": "global", "lead_time": pd.Timedelta(hours=24)}
    cell = ds.sel(at)
    mse_m, mse_b = np.mean(MODEL["mse"][1]), np.mean(BASE["mse"][1])
    # rmse: root of the mean MSE (not the mean of per-init roots), lower is better
    rm, rb = math.sqrt(mse_m), math.sqrt(mse_b)
    assert cell["value"].sel(metric="rmse") == pytest.approx(rm, rel=1e-12)
    assert cell["baseline_value"].sel(metric="rmse") == pytest.approx(rb, rel=1e-12)
    assert cell["relative_change"].sel(metric="rmse") == pytest.approx((rm - rb) / rb * 100)
    assert cell["improvement"].sel(metric="rmse") == pytest.approx((rb - rm) / rb * 100)
    assert int(cell["better"].sel(metric="rmse")) == 1
    assert cell["relative_change"].sel(metric="mse") == pytest.approx((mse_m - mse_b) / mse_b * 100)
    # mae: the model is worse here
    m, b = np.mean(MODEL["mae"][1]), np.mean(BASE["mae"][1])
    assert m > b
    assert cell["relative_change"].sel(metric="mae") == pytest.approx((m - b) / b * 100)
    assert int(cell["better"].sel(metric="mae")) == -1
    assert cell["improvement"].sel(metric="mae") < 0
    # acc: (m - b) / (1 - b), higher is better
    m, b = np.mean(MODEL["acc"][1]), np.mean(BASE["acc"][1])
    assert cell["relative_change"].sel(metric="acc") == pytest.approx((m - b) / (1 - b) * 100)
    assert cell["improvement"].sel(metric="acc") == pytest.approx((m - b) / (1 - b) * 100)
    assert int(cell["better"].sel(metric="acc")) == 1
    # bias: values, no percentage; better = smaller |bias| (0.3 vs -0.5)
    m, b = np.mean(MODEL["bias"][1]), np.mean(BASE["bias"][1])
    assert cell["value"].sel(metric="bias") == pytest.approx(m)
    assert cell["baseline_value"].sel(metric="bias") == pytest.approx(b)
    assert np.isnan(cell["relative_change"].sel(metric="bias"))
    assert int(cell["better"].sel(metric="bias")) == 1
    assert cell["improvement"].sel(metric="bias") == pytest.approx((abs(b) - abs(m)) / abs(b) * 100)
    # the paired naive test of per-init MSE for rmse, per-init MAE for mae
    naive = compare(None, ["m"], "b", inputs=_handmade(MODEL, BASE), method="naive",
                    metrics=["rmse", "mae", "acc", "bias"]).sel(at)
    for metric, key in (("rmse", "mse"), ("mae", "mae"), ("acc", "acc"), ("bias", "bias")):
        p = stats.ttest_rel(MODEL[key][1], BASE[key][1]).pvalue
        assert naive["p_value"].sel(metric=metric) == pytest.approx(p, rel=1e-9)
        assert int(naive["n"].sel(metric=metric)) == 6


def test_zero_baseline_is_na_never_inf():
    ds = compare(None, ["m"], "b", inputs=_handmade(MODEL, BASE),
                 metrics=["rmse", "mae", "acc", "bias"])
    lead0 = ds.sel(model="m", row="v", region="global", lead_time=pd.Timedelta(0))
    # baseline error 0, baseline acc 1: undefined relative change, shown as n/a
    assert np.isnan(lead0["relative_change"]).all()
    assert np.isnan(lead0["improvement"]).all()
    assert np.isfinite(lead0["value"]).all() and np.isfinite(lead0["baseline_value"]).all()
    for name, da in ds.data_vars.items():
        if da.dtype.kind == "f":
            assert not np.isinf(da.values).any(), name
    # worse than a perfect baseline is still "worse" (for colour-blind readers of the hover)
    assert (lead0["better"].sel(metric=["rmse", "mae", "acc", "bias"]) == -1).all()
    df = to_dataframe(ds)
    assert df.loc[df["lead_time_hours"] == 0, "relative_change"].isna().all()


def test_identical_models_are_not_testable():
    ds = compare(None, ["m"], "b", inputs=_handmade(BASE, BASE), metrics=["rmse", "acc"])
    cell = ds.sel(model="m", row="v", region="global", lead_time=pd.Timedelta(hours=24))
    assert not cell["testable"].any()
    assert np.isnan(cell["p_value"]).all()
    assert (cell["significance"] == 0).all()
    assert (cell["relative_change"] == 0).all()


def test_options_are_checked():
    inputs = _handmade(MODEL, BASE)
    with pytest.raises(ValueError, match="no per-init score"):
        compare(None, ["m"], "b", inputs=inputs, metrics=["acc_pooled"])
    with pytest.raises(ValueError, match="method"):
        compare(None, ["m"], "b", inputs=inputs, method="ar1")
    with pytest.raises(ValueError, match="correction"):
        compare(None, ["m"], "b", inputs=inputs, correction="bonferroni")
    # WB2's metric names are accepted
    ds = compare(None, ["m"], "b", inputs=inputs, metrics=["rmse_sqrt_before_time_avg"])
    assert list(ds["metric"].values) == ["rmse_per_init"]


# ---------------------------------------------------------------------------------------------
# score → compare
# ---------------------------------------------------------------------------------------------


def test_common_init_pairing_with_gaps(realistic):
    ds = compare(realistic["results"], ["model_a", "model_b"], "base")
    cases = realistic["cases"]
    note_a = str(ds["pairing_note"].sel(model="model_a").item())
    note_b = str(ds["pairing_note"].sel(model="model_b").item())
    assert "baseline lacks 3 inits of model_a" in note_a
    assert "13 common inits" in note_a
    assert "model_b lacks 2 inits of the baseline" in note_b
    assert "baseline lacks 3 inits of model_b" in note_b
    assert "11 common inits" in note_b
    assert "gaps" in note_a  # the common series has holes: said, and taken as consecutive
    assert ds["n_common_inits"].sel(model="model_a") == N_INITS - 3
    assert ds["n_dropped_model_inits"].sel(model="model_a") == 3
    assert ds["n_dropped_baseline_inits"].sel(model="model_b") == 2
    assert ds["n_common_inits"].sel(model="model_b") == N_INITS - 5
    # values over the common inits only, both sides
    for model in ("model_a", "model_b"):
        common = _common(cases[model], cases["base"])
        for var, level, region, lead in [("temperature", 850, "global", 24),
                                         ("2m_temperature", None, "tropics", 48)]:
            row = var if level is None else f"{var} {level}"
            a = ref_series(cases[model], var, level, lead, region, "rmse")[common]
            b = ref_series(cases["base"], var, level, lead, region, "rmse")[common]
            cell = _cell(ds, model, "rmse", row, region, lead)
            assert int(cell["n"]) == len(common)
            assert float(cell["value"]) == pytest.approx(math.sqrt(a.mean()), rel=1e-9)
            assert float(cell["baseline_value"]) == pytest.approx(math.sqrt(b.mean()), rel=1e-9)
            rel = (math.sqrt(a.mean()) - math.sqrt(b.mean())) / math.sqrt(b.mean()) * 100
            assert float(cell["relative_change"]) == pytest.approx(rel, rel=1e-9)
            if model == "model_b":  # the baseline over model_b's common inits, not all its own
                full = ref_series(cases["base"], var, level, lead, region, "rmse")
                assert float(cell["baseline_value"]) != pytest.approx(math.sqrt(full.mean()))


@pytest.mark.parametrize("method", ["naive", "ar2", "ar2bc"])
def test_tests_match_independent_computation(realistic, method):
    ds = compare(realistic["results"], ["model_a"], "base", method=method,
                 metrics=["rmse", "acc", "mae", "bias"])
    cases = realistic["cases"]
    common = _common(cases["model_a"], cases["base"])
    checked = 0
    for metric in ("rmse", "acc", "mae", "bias"):
        for var, level in [("temperature", 500), ("geopotential", 850), ("2m_temperature", None),
                           ("10m_wind_vector", None)]:
            if var == "10m_wind_vector" and metric != "rmse":
                continue
            row = var if level is None else f"{var} {level}"
            for lead in (24, 48):
                a = ref_series(cases["model_a"], var, level, lead, "global", metric)[common]
                b = ref_series(cases["base"], var, level, lead, "global", metric)[common]
                cell = _cell(ds, "model_a", metric, row, "global", lead)
                assert float(cell["p_value"]) == pytest.approx(ref_p(a, b, method), rel=1e-6)
                if method == "ar2":
                    k = ref_ar2_p((a - b).to_numpy())[1]
                    assert float(cell["inflation"]) == pytest.approx(k, rel=1e-9)
                    assert float(cell["effective_n"]) == pytest.approx(len(a) / k**2, rel=1e-9)
                elif method == "ar2bc":
                    from test_significance import ref_ar2bc

                    ref = ref_ar2bc((a - b).to_numpy())
                    assert float(cell["inflation"]) == pytest.approx(ref["k"], rel=1e-7)
                    assert float(cell["effective_n"]) == pytest.approx(ref["neff"], rel=1e-7)
                    assert float(cell["dof"]) == pytest.approx(ref["dof"], rel=1e-5)
                else:
                    assert float(cell["inflation"]) == 1.0
                checked += 1
    assert checked == 26


def _ref_card_p(ds, cases, model, metric, method):
    """Independent p-values for every cell of one card (model × metric)."""
    common = _common(cases[model], cases["base"])
    p = np.full(ds["p_value"].sel(model=model, metric=metric).shape, np.nan)
    for ri, (var, level) in enumerate(zip(ds["variable"].values, ds["level"].values,
                                          strict=True)):
        level = None if np.isnan(level) else int(level)
        if var not in cases[model].forecast and var != "10m_wind_vector":
            continue
        if var == "10m_wind_vector" and metric not in ("rmse", "mse"):
            continue
        for gi, region in enumerate(ds["region"].values):
            for li, lead in enumerate(ds["lead_time"].values):
                lead_h = int(lead / np.timedelta64(1, "h"))
                a = ref_series(cases[model], var, level, lead_h, region, metric)[common]
                b = ref_series(cases["base"], var, level, lead_h, region, metric)[common]
                p[ri, gi, li] = ref_p(a, b, method)
    return p


@pytest.mark.parametrize("method", ["naive", "ar2"])
def test_significance_markers_match_independent_bh(realistic, method):
    ds = compare(realistic["results"], ["model_a", "model_b"], "base", method=method,
                 metrics=["rmse", "mae"])
    cases = realistic["cases"]
    for model, metric in (("model_a", "rmse"), ("model_a", "mae"), ("model_b", "mae")):
        p_ref = _ref_card_p(ds, cases, model, metric, method)
        card = ds.sel(model=model, metric=metric)
        np.testing.assert_allclose(card["p_value"].values, p_ref, rtol=1e-6, equal_nan=True)
        finite = np.isfinite(p_ref)
        assert finite.sum() == int(card["testable"].sum()) > 30
        expected = np.zeros(p_ref.shape, dtype=int)
        for alpha in (0.05, 0.01):
            adjusted = stats.false_discovery_control(p_ref[finite], method="bh")
            flags = np.zeros(p_ref.shape, dtype=bool)
            flags[finite] = adjusted <= alpha
            expected += flags
            assert (card["significant"].sel(alpha=alpha).values == flags).all()
        assert (card["significance"].values == expected).all()
        # the card is not trivially all-significant or all-not
        if model == "model_a":
            assert 0 < (expected > 0).sum() < finite.sum()
    assert "Benjamini-Hochberg" in ds.attrs["multiple_testing_description"]
    assert ds.attrs["multiple_testing"] == "bh"


def test_sidak_and_uncorrected(realistic):
    cases = realistic["cases"]
    for correction in ("sidak", "none"):
        ds = compare(realistic["results"], ["model_a"], "base", method="naive",
                     metrics=["mae"], correction=correction)
        p_ref = _ref_card_p(ds, cases, "model_a", "mae", "naive")
        m = np.isfinite(p_ref).sum()
        for alpha in (0.05, 0.01):
            level = 1 - (1 - alpha) ** (1 / m) if correction == "sidak" else alpha
            want = np.isfinite(p_ref) & (np.nan_to_num(p_ref, nan=1.0) <= level)
            got = ds["significant"].sel(model="model_a", metric="mae", alpha=alpha).values
            assert (got == want).all(), (correction, alpha)


def test_better_sign_and_colours_realistic(realistic):
    """model_a: temperature errors × 0.7 (better), 2m temperature × 1.2 (worse)."""
    ds = compare(realistic["results"], ["model_a"], "base")
    t = ds.sel(model="model_a", row="temperature 850", region="global")
    t2 = ds.sel(model="model_a", row="2m_temperature", region="global")
    for metric in ("rmse", "mae", "acc", "bias"):
        assert (t["better"].sel(metric=metric) == 1).all(), metric
        assert (t2["better"].sel(metric=metric) == -1).all(), metric
        assert (t["improvement"].sel(metric=metric) > 0).all()
        assert (t2["improvement"].sel(metric=metric) < 0).all()
    # error scaled by 0.7 -> rmse and mae exactly 30 % lower (bias too: |bias| 30 % smaller)
    np.testing.assert_allclose(t["relative_change"].sel(metric="rmse"), -30.0, rtol=1e-9)
    np.testing.assert_allclose(t["relative_change"].sel(metric="mae"), -30.0, rtol=1e-9)
    np.testing.assert_allclose(t["improvement"].sel(metric="bias"), 30.0, rtol=1e-9)
    assert t["relative_change"].sel(metric="bias").isnull().all()


def test_zero_baseline_realistic_persistence(realistic):
    """Persistence at lead 0 is the truth itself: error 0, acc 1 -> n/a, never inf."""
    ds = compare(realistic["results"], ["model_a"], "persistence")
    lead0 = ds.sel(lead_time=pd.Timedelta(0), model="model_a")
    assert np.isnan(lead0["relative_change"].sel(metric=["rmse", "mae", "acc"])).all()
    assert np.isfinite(lead0["value"].sel(metric="rmse")).all()
    assert (lead0["baseline_value"].sel(metric="rmse") == 0).all()
    assert not np.isinf(ds["relative_change"]).any()
    note = str(ds["pairing_note"].sel(model="model_a").item())
    assert re.search(r"\d+ common inits used|all \d+ inits common", note)
    ctx = build_context(realistic["results"], ["model_a"], "persistence")
    card = next(c for c in ctx["data"]["cards"] if c["metric"] == "rmse")
    cells = _page_cells(ctx["data"], card, "global")
    lead0_cells = [row[0] for row in cells]
    assert lead0_cells and all(c["c"] is None and c["v"] is not None for c in lead0_cells)


def test_to_dataframe(realistic):
    ds = compare(realistic["results"], ["model_a", "model_b"], "base")
    df = to_dataframe(ds)
    assert len(df) == ds.sizes["model"] * ds.sizes["metric"] * ds.sizes["row"] * \
        ds.sizes["region"] * ds.sizes["lead_time"]
    assert list(df.columns[:6]) == ["model", "metric", "variable", "level", "region",
                                    "lead_time_hours"]
    assert df["level"].dtype == "Int64"
    assert df.loc[df["variable"] == "2m_temperature", "level"].isna().all()
    assert set(df.loc[df["variable"] == "temperature", "level"]) == {500, 850}
    assert {"significant_0.05", "significant_0.01", "p_value", "effective_n"} <= set(df.columns)
    # no wind-vector acc, bias or mae
    wv = df[(df["variable"] == "10m_wind_vector") & (df["metric"] != "rmse")]
    assert wv["value"].isna().all()


def test_unknown_model_is_a_clear_error(realistic):
    from wxeval.config import ConfigError  # a usage error: exit 2 from the CLI

    with pytest.raises(ConfigError, match="no results for model 'nope'.*model_a"):
        load_inputs(realistic["results"], ["nope"], "base")
    with pytest.raises(ValueError, match="baseline"):
        load_inputs(realistic["results"], ["base"], "base")


# ---------------------------------------------------------------------------------------------
# The HTML file (static checks; the browser checks are in test_report_browser.py)
# ---------------------------------------------------------------------------------------------


def _page_cells(data: dict, card: dict, region: str) -> list[list[dict]]:
    """The cells of one card and region as the page reads them (the compact layout that
    ``report._data`` documents), one dict per (card row, lead)."""
    n_leads = len(data["lead_days"])
    v, b, c, p, s, miss, e = card["cells"][region]
    base = data["baselines"][b]
    common = data["models"][card["model"]]["common"]
    out = []
    for i in range(len(card["rows"])):
        row = []
        for j in range(n_leads):
            k = i * n_leads + j
            m = 0 if miss == 0 else miss[k]
            row.append({"v": v[k], "b": None if v[k] is None else base[k], "c": c[k],
                        "p": p[k], "s": int(s[k]), "n": common - m if v[k] is not None else 0,
                        "e": e[k]})
        out.append(row)
    return out


def _embedded_json(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="wx-data">(.*?)</script>', html, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def test_report_is_self_contained_and_escaped(realistic, tmp_path):
    evil = "<script>alert(1)</script>"
    cfg = yaml.safe_load(realistic["config"].read_text())
    cfg["models"]["model_a"]["label"] = evil
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    results = realistic["results"]
    check = results / "check.json"
    check.write_text(json.dumps([{"severity": "warning", "message": "<b>units</b> & more"}]))
    try:
        html = render_report(results, ["model_a", "model_b"], "base", config=tmp_path / "cfg.yaml")
    finally:
        check.unlink()
    assert evil not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # escaped in HTML text
    assert "<b>units</b>" not in html and "&lt;b&gt;units&lt;/b&gt; &amp; more" in html
    data = _embedded_json(html)
    assert data["models"][0]["label"] == evil  # intact as data (escaped as \u003c in the page)
    assert html.count("<script") == 2  # the data block and the page's own script
    # no external resource of any kind
    for pattern in (r'\bsrc\s*=\s*["\']?(https?:)?//', r'\bhref\s*=\s*["\']?(https?:)?//',
                    r"url\(\s*['\"]?(https?:)?//", r"@import", r"<link[^>]+stylesheet",
                    r"fetch\(", r"XMLHttpRequest", r"\.src\s*="):
        assert not re.search(pattern, html), pattern
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp and "'sha256-" in csp
    # the provenance block
    for text in ("Provenance", "Geer (2016)", "Benjamini-Hochberg", "optimistic",
                 str(results.resolve()), f"wxeval {wxeval.__version__}", "init"):
        assert text in html, text


def test_report_cards_and_layout(realistic, tmp_path):
    out = write_report(realistic["results"], ["model_a", "model_b"], "base",
                       tmp_path / "r" / "card.html", config=realistic["config"])
    html = out.read_text()
    data = _embedded_json(html)
    assert data["models"][0]["label"] == "Model A"  # the config's label
    assert data["regions"] == REGIONS and data["default_region"] == "global"
    assert data["lead_days"] == [0.0, 1.0, 2.0]
    rows = [r["label"] for r in data["rows"]]
    assert rows[:4] == ["geopotential 500 hPa", "geopotential 850 hPa", "temperature 500 hPa",
                        "temperature 850 hPa"]
    assert "2m_temperature" in rows
    cards = {(c["model"], c["metric"]): c for c in data["cards"]}
    assert set(cards) == {(m, k) for m in (0, 1) for k in ("rmse", "acc", "mae", "bias")}
    n_upper = 2 * len(UPPER)
    assert len(cards[(0, "rmse")]["rows"]) == n_upper + 1 + 2 + 1  # + t2m, u10, v10, wind vector
    assert len(cards[(0, "acc")]["rows"]) == n_upper + 1 + 2
    assert len(_page_cells(data, cards[(0, "rmse")], "tropics")[0]) == 3
    # compact: one list per field over the card's (row, lead) cells, no per-cell keys
    assert all(len(col) == len(cards[(0, "rmse")]["rows"]) * 3
               for col in cards[(0, "rmse")]["cells"]["tropics"] if isinstance(col, list | str))
    assert data["curves"]["n_inits"] == N_INITS - 5  # common to base, model_a and model_b


def test_cli_scorecard(realistic, tmp_path):
    from typer.testing import CliRunner

    from wxeval.cli import app

    out = tmp_path / "cli.html"
    res = CliRunner().invoke(app, ["scorecard", "--results", str(realistic["results"]),
                                   "--models", "model_a,model_b", "--baseline", "base",
                                   "--output", str(out), "--test", "naive"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and "naive paired t-test" in out.read_text()


@pytest.mark.parametrize("test, words", [("ar2", "Geer (2016) paired t-test"),
                                         ("ar2bc", "bias-corrected AR(2) fit"),
                                         (None, "bias-corrected AR(2) fit")])
def test_cli_scorecard_test_names(realistic, tmp_path, test, words):
    """--test takes every method name (default ar2bc); the method note names the test and
    quotes its measured size for n like this card's."""
    from typer.testing import CliRunner

    from wxeval.cli import app
    from wxeval.scorecard.significance import MEASURED_SIZE

    out = tmp_path / "cli.html"
    args = ["scorecard", "--results", str(realistic["results"]), "--models", "model_a",
            "--baseline", "base", "--output", str(out)] + (["--test", test] if test else [])
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert words in html
    method = test or "ar2bc"
    m = re.search(r"size at 5 %: measured ([0-9.]+) % at n = (\d+) with .*? median n of the "
                  r"tested cells: ([0-9.]+)", html, re.S)
    assert m, "method note without the measured size"
    at_07, near, median = float(m.group(1)), int(m.group(2)), float(m.group(3))
    assert 4 <= median <= N_INITS
    assert near == min(MEASURED_SIZE[method], key=lambda v: abs(math.log(v / median)))
    assert at_07 == pytest.approx(MEASURED_SIZE[method][near][0])


def test_cli_scorecard_unknown_test_names_the_choices(realistic, tmp_path):
    from typer.testing import CliRunner

    from wxeval.cli import app

    res = CliRunner().invoke(app, ["scorecard", "--results", str(realistic["results"]),
                                   "--models", "model_a", "--baseline", "base", "--output",
                                   str(tmp_path / "x.html"), "--test", "geer2"])
    # exit code: 3 like every ValueError of the scorecard options today (README: usage = 2;
    # left to the CLI's error mapping)
    assert res.exit_code != 0
    assert "ar2bc, ar2, naive" in res.output and "geer2" in res.output


def _shifted(inputs: Inputs, name: str, days: int = 0, region: str | None = None) -> Inputs:
    """``inputs`` with series ``name`` moved by ``days`` or renamed to ``region``."""
    scores = {k: dict(v) for k, v in inputs.scores.items()}
    ds = scores[name]["v"]
    ds = ds.assign_coords(init_time=ds["init_time"] + pd.Timedelta(days=days))
    if region is not None:
        ds = ds.assign_coords(region=[region])
    scores[name]["v"] = ds
    return dataclasses.replace(inputs, scores=scores)


def test_no_common_init_or_cell_is_a_clear_error():
    inputs = _shifted(_handmade(MODEL, BASE), "m", days=30)
    with pytest.raises(ValueError, match="m and the baseline b share no init time"):
        compare(None, ["m"], "b", inputs=inputs)
    inputs = _shifted(_handmade(MODEL, BASE), "m", region="tropics")
    with pytest.raises(ValueError, match=r"no \(variable, level, region, lead\) in common"):
        compare(None, ["m"], "b", inputs=inputs)


def test_curves_without_an_init_common_to_all_series():
    # m shares the first 3 inits with b, n the last 3: each pair compares, no curve does.
    base = _handmade(MODEL, BASE, n_inits=6)
    scores = {"b": base.scores["b"], "m": {"v": base.scores["m"]["v"].isel(init_time=slice(0, 3))},
              "n": {"v": base.scores["m"]["v"].isel(init_time=slice(3, 6))}}
    inputs = Inputs(Path("."), "b", ["m", "n"], scores, {"b": {}, "m": {}, "n": {}})
    ds = compare(None, ["m", "n"], "b", inputs=inputs)
    assert list(ds["n_common_inits"].values) == [3, 3]
    cv = curves(inputs, metrics=["rmse"])
    assert cv.attrs["n_inits"] == 0 and cv.attrs["init_first"] == ""
    assert np.isnan(cv["value"].values).all() and (cv["n"].values == 0).all()


# ---------------------------------------------------------------------------------------------
# The page's data: compact, at the precision shown, the bias colour, against hand computation
# ---------------------------------------------------------------------------------------------


def _sig_digits(x) -> int:
    """Significant digits of a JSON number as written (1.23e-05 -> 3, 1200 -> 2)."""
    mant = repr(float(x)).split("e")[0].replace("-", "").replace(".", "").lstrip("0")
    return len(mant.rstrip("0")) if mant else 0


def test_page_values_match_hand_computation(realistic):
    """Values, colours, p, n and effective n of the page's cells, against NumPy/scipy."""
    ctx = build_context(realistic["results"], ["model_a", "model_b"], "base", method="ar2")
    data = ctx["data"]
    cases = realistic["cases"]
    labels = [r["label"] for r in data["rows"]]
    cards = {(data["models"][c["model"]]["name"], c["metric"]): c for c in data["cards"]}
    checked = 0
    for model in ("model_a", "model_b"):
        common = _common(cases[model], cases["base"])
        assert data["models"][int(model == "model_b")]["common"] == len(common)
        for var, level, region, lead in [("temperature", 850, "global", 24),
                                         ("2m_temperature", None, "tropics", 48)]:
            label = f"{var} {level} hPa" if level else var
            j = [0, 24, 48].index(lead)
            mse_a = ref_series(cases[model], var, level, lead, region, "rmse")[common]
            mse_b = ref_series(cases["base"], var, level, lead, region, "rmse")[common]
            card = cards[(model, "rmse")]
            cell = _page_cells(data, card, region)[card["rows"].index(labels.index(label))][j]
            rm, rb = math.sqrt(mse_a.mean()), math.sqrt(mse_b.mean())
            assert cell["v"] == pytest.approx(rm, rel=5e-4) and _sig_digits(cell["v"]) <= 4
            assert cell["b"] == pytest.approx(rb, rel=5e-4) and _sig_digits(cell["b"]) <= 4
            assert cell["c"] == pytest.approx((rb - rm) / rb * 100, abs=0.05 + 1e-9)
            assert cell["n"] == len(common)
            p, k = ref_ar2_p((mse_a - mse_b).to_numpy())
            assert cell["p"] == (0 if p < 1e-3 else pytest.approx(p, rel=0.05))
            assert cell["e"] == pytest.approx(len(common) / k**2, rel=0.05, abs=0.5)
            # bias: change of |bias| over the baseline's RMSE (same inits), in %
            ba = ref_series(cases[model], var, level, lead, region, "bias")[common].mean()
            bb = ref_series(cases["base"], var, level, lead, region, "bias")[common].mean()
            card = cards[(model, "bias")]
            cell = _page_cells(data, card, region)[card["rows"].index(labels.index(label))][j]
            assert cell["v"] == pytest.approx(ba, rel=5e-4)
            assert cell["b"] == pytest.approx(bb, rel=5e-4)
            assert cell["c"] == pytest.approx((abs(bb) - abs(ba)) / rb * 100, abs=0.05 + 1e-9)
            checked += 1
    assert checked == 4


def test_bias_colour_needs_no_rmse_card(realistic):
    """The bias colour uses the baseline RMSE even when rmse is not among the cards; the
    other cards (and their multiple-testing treatment) are those of the metrics asked for."""
    alone = build_context(realistic["results"], ["model_a"], "base", metrics=["bias", "mae"])
    both = build_context(realistic["results"], ["model_a"], "base", metrics=["bias", "mae", "rmse"])
    assert [c["metric"] for c in alone["data"]["cards"]] == ["bias", "mae"]
    assert [m["name"] for m in alone["data"]["metrics"]] == ["bias", "mae"]
    for metric in ("bias", "mae"):
        a = next(c for c in alone["data"]["cards"] if c["metric"] == metric)
        b = next(c for c in both["data"]["cards"] if c["metric"] == metric)
        for region in REGIONS:
            cols_a, cols_b = a["cells"][region], b["cells"][region]
            assert cols_a[0] == cols_b[0] and cols_a[2:] == cols_b[2:], (metric, region)


def test_bias_change_small_arrays():
    """(|b| - |m|) / RMSE_b * 100; NaN for a zero baseline RMSE or a missing value."""
    from wxeval.scorecard.report import bias_change

    m = np.array([0.3, -0.5, 0.1, np.nan, 0.2])
    b = np.array([-0.5, 0.25, 0.1, 0.2, 0.0])
    r = np.array([2.0, 5.0, 1.0, 1.0, 0.0])
    got = bias_change(m, b, r)
    np.testing.assert_allclose(got[:3], [(0.5 - 0.3) / 2 * 100, (0.25 - 0.5) / 5 * 100, 0.0])
    assert np.isnan(got[3:]).all()


def test_row_display_label():
    from wxeval.scorecard.report import row_display_label

    assert row_display_label("geopotential", 500.0) == "geopotential 500 hPa"
    assert row_display_label("2m_temperature", np.nan) == "2m_temperature"
    assert row_display_label("2m_temperature", None) == "2m_temperature"


def test_crps_card_uses_mae_for_deterministic_models_only():
    """A deterministic model's CRPS is its MAE (one member); an ensemble whose CRPS was not
    stored has no CRPS series: its ensemble mean's MAE is not its CRPS."""
    from wxeval.scorecard.compare import _per_init_series

    mae = xr.DataArray(np.array([1.0, 2.0, 4.0]), dims="init_time")
    det = xr.Dataset({"mae": mae})
    assert _per_init_series(det, "crps").values.tolist() == [1.0, 2.0, 4.0]
    ens = xr.Dataset({"mae": mae}, attrs={"members": 5})
    assert _per_init_series(ens, "crps") is None
    stored = xr.Dataset({"mae": mae, "crps": mae / 2}, attrs={"members": 5})
    assert _per_init_series(stored, "crps").values.tolist() == [0.5, 1.0, 2.0]


def test_block_aligns_like_xarray_sel_and_reindex():
    """compare._block (NumPy indexing) against xarray's sel + reindex on a small array with
    levels, a region and a lead the layout has and the scores lack, inits in another order;
    an init the scores lack is a KeyError, as with sel."""
    from wxeval.scorecard.compare import _block

    rng = np.random.default_rng(1)
    inits = pd.date_range("2020-01-01", periods=5, freq="12h").values
    leads = pd.to_timedelta([0, 24, 48], unit="h").values
    da = xr.DataArray(rng.normal(size=(5, 3, 2, 2)).astype(np.float32),
                      dims=("init_time", "lead_time", "region", "level"),
                      coords={"init_time": inits, "lead_time": leads,
                              "region": ["global", "tropics"], "level": [500, 850]})
    want_inits = inits[[3, 0, 4]]
    regions = ["tropics", "europe", "global"]
    layout_leads = pd.to_timedelta([24, 12, 48, 0], unit="h").values
    got = _block(da, want_inits, regions, layout_leads)
    ref = (da.sel(init_time=want_inits)
           .reindex(region=regions, lead_time=layout_leads, fill_value=np.nan)
           .transpose("level", "region", "lead_time", "init_time").astype(np.float64).values)
    assert got.dtype == np.float64 and got.shape == ref.shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(got, ref)
    assert np.isnan(got[:, 1]).all() and np.isnan(got[:, :, 1]).all()
    surface = da.isel(level=0, drop=True)
    np.testing.assert_array_equal(_block(surface, want_inits, regions, layout_leads), ref[0])
    with pytest.raises(KeyError):
        _block(da, np.array([np.datetime64("2021-01-01T00", "ns")]), regions, layout_leads)
