"""The metric core: results equal those of the release before statistic groups, a run computes
only the groups its metrics need, stde and acc_centred against hand-written NumPy, and the
fields that held NaN named in check.json, the manifest and the log."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from builders import make_case, ref_region_weights, write_all, write_config

from wxeval import results
from wxeval.api import load_statistics, score
from wxeval.config import Config
from wxeval.metrics import table_from_statistics

DATA = Path(__file__).parent / "data"
LEGACY = DATA / "legacy_v1"
sys.path.insert(0, str(DATA))
import make_legacy_fixture as legacy  # noqa: E402


def _assert_tables_equal(new: xr.Dataset, old: xr.Dataset) -> None:
    assert set(new.data_vars) == set(old.data_vars)
    for var in old.data_vars:
        a = new[var].sel(metric=old[var]["metric"].values)
        b = old[var]
        a = a.transpose(*b.dims).sel({d: b[d].values for d in b.dims})
        # Float64 rounding of sums taken in another order: 1e-12 relative; a bias near 0 by
        # cancellation (6e-6 from errors of order 1) to 1e-12 of the same cell's MAE, the size
        # of the terms it sums.
        for metric in b["metric"].values:
            x, y = a.sel(metric=metric).values, b.sel(metric=metric).values
            atol = np.zeros_like(y)
            if metric == "bias" and "mae" in b["metric"].values:
                atol = 1e-12 * np.abs(b.sel(metric="mae").values)
            finite = np.isfinite(y)
            np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=f"{var} {metric}")
            assert np.all(np.abs(x - y)[finite] <= (1e-12 * np.abs(y) + atol)[finite]), (
                var, metric)
        assert np.isfinite(b.values).any()


# ---------------------------------------------------------------------------------------------
# Before and after: a fixture written by main 5f4c383 (tests/data/make_legacy_fixture.py)


def test_statistics_of_the_previous_release_are_read():
    """Its format-1 parts (no statistic names in their index) load and give its table."""
    old = results.read_table(LEGACY / f"{legacy.MODEL}.nc")
    stats = load_statistics(LEGACY, legacy.MODEL)
    assert list(stats["geopotential"]["statistic"].values) == [
        "sum_weight", "sum_se", "sum_err", "sum_ae", "sum_fa_oa", "sum_fa2", "sum_oa2"]
    table = results.summarize(stats, [str(m) for m in old["metric"].values])
    _assert_tables_equal(table, old)


def test_table_equals_the_previous_release(tmp_path):
    """The same synthetic inputs (regenerated, seeded) scored now give the old table."""
    paths = legacy.legacy_archive(tmp_path / "archive")
    cfg = Config.model_validate(legacy.legacy_config(paths))
    report = score(cfg, [legacy.MODEL], tmp_path / "out")
    old = results.read_table(LEGACY / f"{legacy.MODEL}.nc")
    _assert_tables_equal(report.tables[legacy.MODEL], old)
    # and a copy of the old statistics store, scored under its old entry keys, is reused:
    # copy it under today's keys (keys are about inputs, unchanged) and rescore nothing.
    manifest = json.loads((tmp_path / "out" / f"{legacy.MODEL}.json").read_text())
    old_manifest = json.loads((LEGACY / f"{legacy.MODEL}.json").read_text())
    store = tmp_path / "old_store"
    for var, key in old_manifest["entry_keys"].items():
        shutil.copytree(LEGACY / "statistics" / legacy.MODEL / var / key,
                        store / legacy.MODEL / var / manifest["entry_keys"][var])
    cfg = Config.model_validate({**legacy.legacy_config(paths),
                                 "output": {"statistics": str(store)}})
    again = score(cfg, [legacy.MODEL], tmp_path / "out2")
    assert again.computed_fields == 0 and again.reused_fields > 0
    _assert_tables_equal(again.tables[legacy.MODEL], old)


# ---------------------------------------------------------------------------------------------
# Only the groups a run needs


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("core")
    case = write_all(make_case(variables=("2m_temperature", "geopotential"), n_inits=4,
                               leads_h=(0, 24), seed=11), root)
    return case, root


def _run(case, root, metrics, name, **evaluation):
    cfg = write_config(root / f"{name}.yaml", case, regions=["global", "tropics"],
                       metrics=metrics, **evaluation)
    text = yaml.safe_load(cfg.read_text())
    text["output"] = {"statistics": str(root / f"{name}-stats")}
    cfg.write_text(yaml.safe_dump(text))
    return score(cfg, ["model"], root / f"{name}-out")


def test_only_the_needed_groups_are_computed(small):
    case, root = small
    first = _run(case, root, ["rmse"], "groups")
    assert first.computed_groups == {"model": {"errors", "nan_counts"}}
    assert first.computed_fields > 0
    second = _run(case, root, ["acc"], "groups")  # same store: only the anomalies group
    assert second.computed_groups == {"model": {"anomalies", "nan_counts"}}
    assert second.computed_fields == first.computed_fields
    third = _run(case, root, ["rmse", "acc", "mae"], "groups")
    assert third.computed_fields == 0 and third.computed_groups == {}
    fourth = _run(case, root, ["acc_centred"], "groups")
    assert fourth.computed_groups == {"model": {"anomaly_sums"}}
    # every number as a run that computed all groups at once
    full = _run(case, root, ["rmse", "acc", "mae", "acc_centred"], "full")
    for var in ("2m_temperature", "geopotential"):
        a = third.tables["model"][var].sel(metric=["rmse", "acc", "mae"])
        np.testing.assert_allclose(a, full.tables["model"][var].sel(metric=["rmse", "acc", "mae"]),
                                   rtol=1e-12)
        np.testing.assert_allclose(fourth.tables["model"][var].sel(metric="acc_centred"),
                                   full.tables["model"][var].sel(metric="acc_centred"), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# stde and acc_centred against hand-written NumPy


def _ref_new_metrics(case, var, w2d, li, lev):
    mse, bias, accc = [], [], []
    lead = case.lead_times[li]
    for i, t in enumerate(case.init_times):
        f = case.forecast[var][i, li].astype(np.float64)
        o = case.truth_at(var, t + lead).astype(np.float64)
        c = case.clim_at(var, t + lead).astype(np.float64)
        if lev is not None:
            f, o, c = f[lev], o[lev], c[lev]
        w = w2d / w2d.sum()
        mse.append(np.sum(w * (f - o) ** 2))
        bias.append(np.sum(w * (f - o)))
        fa, oa = f - c, o - c
        fa, oa = fa - np.sum(w * fa), oa - np.sum(w * oa)
        accc.append(np.sum(w * fa * oa) / np.sqrt(np.sum(w * fa**2) * np.sum(w * oa**2)))
    return np.sqrt(np.mean(mse) - np.mean(bias) ** 2), np.mean(accc)


def test_stde_and_acc_centred_match_numpy(small):
    case, root = small
    report = _run(case, root, ["stde", "acc_centred"], "new")
    table = report.tables["model"]
    checked = 0
    for var in ("2m_temperature", "geopotential"):
        for region in ("global", "tropics"):
            w2d = ref_region_weights(case, region)
            for li, lead in enumerate(case.lead_times):
                levels = list(enumerate(case.levels)) if var == "geopotential" else [(None, None)]
                for lev, level in levels:
                    stde, accc = _ref_new_metrics(case, var, w2d, li, lev)
                    da = table[var].sel(region=region, lead_time=lead)
                    if level is not None:
                        da = da.sel(level=level)
                    np.testing.assert_allclose(float(da.sel(metric="stde")), stde, rtol=1e-9)
                    np.testing.assert_allclose(float(da.sel(metric="acc_centred")), accc,
                                               rtol=1e-9)
                    checked += 1
    assert checked == 2 * 2 * (1 + 2)  # regions × leads × (surface + 2 levels)
    assert "stde" in table.attrs["metric_definitions"]
    assert "squared" not in table["geopotential"].attrs["units_note"]


def test_new_metrics_from_statistics_match_numpy():
    """table_from_statistics on random statistics, NaN inits and skipna included."""
    rng = np.random.default_rng(3)
    names = ("sum_weight", "sum_se", "sum_err", "sum_weight_a", "sum_fa", "sum_oa",
             "sum_fa_oa", "sum_fa2", "sum_oa2")
    stats = {n: rng.uniform(0.5, 2.0, size=(7, 3)) for n in names}
    stats["sum_err"] -= 1.25
    stats["sum_fa"] -= 1.25
    stats["sum_se"][2, 1] = np.nan
    for skipna in (False, True):
        mean = np.nanmean if skipna else np.mean
        s = stats
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            stde = np.sqrt(mean(s["sum_se"] / s["sum_weight"], axis=0)
                           - mean(s["sum_err"] / s["sum_weight"], axis=0) ** 2)
            w = s["sum_weight_a"]
            fbar, obar = s["sum_fa"] / w, s["sum_oa"] / w
            cov = s["sum_fa_oa"] / w - fbar * obar
            vf, vo = s["sum_fa2"] / w - fbar**2, s["sum_oa2"] / w - obar**2
            accc = mean(cov / np.sqrt(vf * vo), axis=0)
        got = table_from_statistics(stats, ("stde", "acc_centred"), skipna=skipna)
        np.testing.assert_allclose(got[0], stde, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(got[1], accc, rtol=1e-12)
        assert np.isnan(got[0][1]) != skipna


# ---------------------------------------------------------------------------------------------
# NaN counts


def test_fields_with_nan_are_named(tmp_path, caplog):
    case = make_case(variables=("2m_temperature",), n_inits=3, leads_h=(0, 24), seed=2)
    case.forecast["2m_temperature"][1, 1, 4, 5] = np.nan  # init 2, lead 24 h
    write_all(case, tmp_path)
    cfg = write_config(tmp_path / "cfg.yaml", case, regions=["global", "tropics"])
    with caplog.at_level(logging.WARNING, logger="wxeval"):
        report = score(cfg, ["model"], tmp_path / "out")
    init = str(np.datetime_as_string(case.init_times[1].to_datetime64(), unit="m"))
    want = [{"variable": "2m_temperature", "level": None, "init_time": init,
             "lead_time_hours": [24.0]}]
    assert report.nan_fields["model"] == want
    manifest = json.loads((tmp_path / "out" / "model.json").read_text())
    assert manifest["nan_fields"] == want
    check = json.loads((tmp_path / "out" / "check.json").read_text())
    found = [f for f in check if f["code"] == "nan-fields"]
    assert len(found) == 1 and found[0]["variable"] == "2m_temperature"
    assert init in found[0]["message"] and "24 h" in found[0]["message"]
    assert any(init in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    # the scorecard's pre-flight box shows check.json's findings
    from wxeval.scorecard.report import _findings

    assert any(init in f["message"] for f in _findings(tmp_path / "out"))
    # a clean run names nothing
    clean = make_case(variables=("2m_temperature",), n_inits=2, leads_h=(0,), seed=2)
    write_all(clean, tmp_path / "clean")
    cfg = write_config(tmp_path / "clean.yaml", clean, regions=["global"])
    assert score(cfg, ["model"], tmp_path / "clean-out").nan_fields == {"model": []}


def test_nan_fields_from_nan_weight():
    inits = pd.date_range("2020-01-01", periods=2, freq="12h")
    leads = pd.to_timedelta([0, 6], unit="h")
    w = np.zeros((1, 2, 2, 2, 1))
    w[0, 1, 0, 1, 0] = 0.5  # second init, lead 0, second region, level 850
    w[0, 0, :, 0, 0] = np.nan  # unknown (an older part): not reported
    da = xr.DataArray(w, dims=("statistic", "init_time", "lead_time", "region", "level"),
                      coords={"statistic": ["nan_weight"], "init_time": inits,
                              "lead_time": leads, "region": ["a", "b"], "level": [850]})
    got = results.nan_fields(xr.Dataset({"t": da}))
    assert got == [{"variable": "t", "level": 850, "init_time": "2020-01-01T12:00",
                    "lead_time_hours": [0.0]}]
