"""The report with an ensemble model beside a deterministic baseline: CRPS cards (the baseline's
CRPS is its MAE), M per model, spread–skill ratio against 1, spread and ensemble-mean RMSE,
rank histograms; the page checked in headless Chromium (as tests/test_report_browser.py)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import xarray as xr
from builders import make_case, write_all
from test_ensemble_score import _config, _members, _ref, write_ensemble
from test_report_browser import Visit, browser  # noqa: F401 - the fixture

from wxeval.api import score
from wxeval.scorecard.report import build_context, write_report


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensrep")
    case = write_all(make_case(variables=("2m_temperature", "geopotential"), n_inits=6,
                               leads_h=(0, 12, 24, 48), seed=8, dtype=np.float64), root)
    members = _members(case, 5, seed=9)
    path = write_ensemble(case, members, root / "ens.zarr")
    models = {"ens": {"path": path, "label": "Ensemble"},
              "det": {"path": case.paths["forecast"], "label": "Deterministic"}}
    cfg = _config(root, case, models, None, "rep")
    score(cfg, ["ens", "det"], root / "out")
    return case, members, root, cfg


def test_report_context_has_the_ensemble_section(results):
    case, members, root, cfg = results
    ctx = build_context(root / "out", ["ens"], "det", config=cfg)
    data = ctx["data"]
    assert [m["name"] for m in data["metrics"]][-1] == "crps"  # added: an ensemble is shown
    assert ctx["models"][0]["members"] == 5 and ctx["baseline_members"] == 1
    ens = data["ensemble"]
    assert [s["name"] for s in ens["series"]] == ["ens"]
    plot = next(p for p in ens["plots"]["global"] if p["row"] == "geopotential 500 hPa")
    # the ratio equals the metric's definition computed here, at lead 24 h
    ref = _ref(case, members, "geopotential", "global", 2, 0)
    np.testing.assert_allclose(plot["ratio"][0][2], ref["spread_skill_ratio"], rtol=1e-3)
    np.testing.assert_allclose(plot["rmse"][0][2], ref["ensemble_mean_rmse"], rtol=1e-3)
    ranks = [r for r in ens["ranks"]["global"] if r["row"] == "geopotential 500 hPa"]
    assert len(ranks) == 3 and all(len(r["bins"]) == 6 for r in ranks)
    np.testing.assert_allclose([np.mean(r["bins"]) for r in ranks], 1.0, rtol=1e-3)
    # the CRPS card of the deterministic baseline holds its MAE
    card = next(c for c in data["cards"] if c["metric"] == "crps")
    assert card["cells"]["global"][0]


def test_report_in_chromium(results, browser, tmp_path):  # noqa: F811
    case, members, root, cfg = results
    html = write_report(root / "out", ["ens"], "det", tmp_path / "report.html", config=cfg)
    v = Visit(browser, html)
    v.check_clean()
    # z500, t2m, z850 rows × (ratio, spread/RMSE); rank histograms at 3 leads per row
    assert v.count("svg.ens-plot") == 3 * 2
    assert v.count("svg.rank-plot") == 3 * 3
    assert v.count("svg.ens-plot .refline") == 3  # the ideal 1 on each ratio plot
    text = v.page.inner_text("body")
    assert "ensemble, M = 5 members" in text and "baseline deterministic" in text
    assert re.search(r"CRPS", text)
    png = v.page.screenshot(full_page=True)
    (tmp_path / "report.png").write_bytes(png)
    section = v.page.locator("section.ensemble").screenshot()
    (tmp_path / "ensemble.png").write_bytes(section)
    print(f"\nscreenshots: {tmp_path / 'report.png'} {tmp_path / 'ensemble.png'}")
    assert json.loads(v.page.locator("#wx-data").text_content())["ensemble"]["series"]


def test_series_keep_their_positions_when_a_model_lacks_a_level(monkeypatch):
    """Model b has no 500 hPa: its place in that row's curves is empty (None), so model c's
    curves are not drawn under b's name."""
    from wxeval import store
    from wxeval.scorecard.ensemble import ensemble_data
    from wxeval.statistics import ENSEMBLE_STATISTICS

    leads = np.array([0, 24], dtype="timedelta64[h]").astype("timedelta64[ns]")
    inits = np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[ns]")

    def stats(levels, var_value):
        shape = (len(ENSEMBLE_STATISTICS), 2, 2, 1, len(levels))
        x = np.ones(shape)
        x[ENSEMBLE_STATISTICS.index("ensemble_size")] = 3.0
        x[ENSEMBLE_STATISTICS.index("sum_ens_var")] = var_value
        da = xr.DataArray(x, dims=("statistic", "init_time", "lead_time", "region", "level"),
                          coords={"statistic": list(ENSEMBLE_STATISTICS), "init_time": inits,
                                  "lead_time": leads, "region": ["global"], "level": levels})
        return xr.Dataset({"temperature": da})

    fake = {"a": stats([500, 850], 4.0), "b": stats([850], 9.0), "c": stats([500, 850], 16.0)}
    monkeypatch.setattr(store, "load_statistics",
                        lambda _dir, name, statistics=None: fake[name])
    data = ensemble_data("unused", ["a", "b", "c"], {}, ["global"])
    rows = {e["row"]: e for e in data["plots"]["global"]}
    row500 = next(e for r, e in rows.items() if "500" in r)
    assert [s[0] for s in row500["spread"]] == [2.0, None, 4.0]  # √4, b missing, √16
    row850 = next(e for r, e in rows.items() if "850" in r)
    assert [s[0] for s in row850["spread"]] == [2.0, 3.0, 4.0]


def test_split_pages_share_the_ensemble_plots_and_equal_pages_made_alone(results, tmp_path):
    """The pages of a report split by init hour read the ensemble plots once (they show every
    init's alike); each page's data equals that of the page made on its own, without sharing
    (and the ensemble plots are really there)."""
    from wxeval.scorecard import ensemble
    from wxeval.scorecard.compare import load_inputs

    case, members, root, cfg = results
    calls = []
    original = ensemble.ensemble_data

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    ensemble.ensemble_data = counted
    try:
        write_report(root / "out", ["ens"], "det", tmp_path / "card.html", config=cfg,
                     by="init_hour")
    finally:
        ensemble.ensemble_data = original
    pages = sorted(p.name for p in tmp_path.glob("card*.html"))
    assert pages == ["card.0.html", "card.12.html", "card.html"] and len(calls) == 1

    inputs = load_inputs(root / "out", ["ens"], "det")
    shared: dict = {}
    for label in (None, 0, 12):
        split = ("init_hour", label)
        with_shared = build_context(root / "out", ["ens"], "det", config=cfg, split=split,
                                    inputs=inputs, shared=shared)["data"]
        alone = build_context(root / "out", ["ens"], "det", config=cfg, split=split,
                              inputs=inputs)["data"]
        assert with_shared == alone
        assert with_shared["ensemble"]["series"]  # the plots, not an empty section
