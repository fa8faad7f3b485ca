"""The report's where-and-when block: maps, per-init series, spectra (issue 15)."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from builders import case_subset, make_case, write_climatology, write_forecast, write_truth

from wxeval.api import score
from wxeval.scorecard.report import write_report
from wxeval.scorecard.where_when import LEVELS, quantise


def _unpack(text: str, n: int) -> np.ndarray:
    b = np.frombuffer(base64.b64decode(text), np.uint8)
    return np.stack([b >> 4, b & 15], axis=1).ravel()[:n]


def test_quantise_by_hand():
    arr = np.array([[-1.0, 0.0, 0.99], [np.nan, 5.0, -0.34]])
    got = _unpack(quantise(arr, -1.0, 1.0), 6)
    # 15 levels over [-1, 1]: floor((x + 1) / 2 * 15), clipped to 0 … 14; NaN is 15
    assert got.tolist() == [0, 7, 14, 15, 14, 4]
    assert LEVELS == 15


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("where")
    case = make_case(variables=("geopotential", "2m_temperature"), levels=(500,), n_inits=6,
                     leads_h=(0, 24, 72, 120), seed=8, nlat=9, nlon=16, dtype=np.float64)
    write_truth(case, root / "truth.zarr")
    write_climatology(case, root / "clim.zarr")
    base = write_forecast(case_subset(case, list(range(6))), root / "base.zarr")
    other = case_subset(case, list(range(6)))
    other.forecast = {v: a + 0.3 * np.sin(np.arange(a.shape[-1])) for v, a in case.forecast.items()}
    cfg = {"truth": {"path": case.paths["truth"]},
           "climatology": {"path": case.paths["climatology"]},
           "models": {"base": {"path": base},
                      "other": {"path": write_forecast(other, root / "other.zarr")}},
           "evaluation": {"regions": ["global", "tropics"], "maps": True}}
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    report = score(root / "cfg.yaml", ["base", "other"], root / "results")
    html = write_report(root / "results", ["other"], "base", root / "r.html").read_text()
    data = json.loads(re.search(r'id="wx-data">(.*?)</script>', html, re.S).group(1))
    return case, other, report, data["where"], html


def test_maps_block_decodes_to_the_maps(two_models):
    case, other, report, where, _ = two_models
    m = where["maps"]
    assert (m["ny"], m["nx"]) == (9, 16)
    z = [r for r in m["rows"] if r["label"] == "geopotential 500 hPa"][0]
    assert z["lead_days"] == [1.0, 3.0, 5.0]  # day 10 is not scored
    # RMSE of "other" at day 3, by hand, north up
    j = list(case.lead_times).index(pd.Timedelta("72h"))
    d = np.stack([other.forecast["geopotential"][i, j, 0]
                  - case.truth_at("geopotential", t + case.lead_times[j])[0]
                  for i, t in enumerate(case.init_times)])
    rmse = np.sqrt((d ** 2).mean(0))[::-1]
    lo, hi = z["rmse"]["range"]
    want = np.clip(np.floor((rmse - lo) / (hi - lo) * 15), 0, 14)
    np.testing.assert_array_equal(_unpack(z["rmse"]["maps"]["other"][1], rmse.size),
                                  want.ravel())
    # the difference map: other's RMSE minus the baseline's
    db = np.stack([case.forecast["geopotential"][i, j, 0]
                   - case.truth_at("geopotential", t + case.lead_times[j])[0]
                   for i, t in enumerate(case.init_times)])
    diff = rmse - np.sqrt((db ** 2).mean(0))[::-1]
    lo, hi = z["diff"]["range"]
    assert lo == -hi
    want = np.clip(np.floor((diff - lo) / (hi - lo) * 15), 0, 14)
    np.testing.assert_array_equal(_unpack(z["diff"]["maps"]["other"][1], diff.size),
                                  want.ravel())
    land = _unpack_bytes(m["land"])
    np.testing.assert_array_equal(land, (case.land_sea_mask[::-1] > 0.5).ravel())


def test_split_pages_show_no_maps(two_models):
    """A page of one init hour: the series of its inits; maps and spectra (every init) are
    left to the page of all inits."""
    from pathlib import Path

    from wxeval.scorecard.report import build_context

    case, other, report, where, html = two_models
    folder = Path(report.outputs["base"][0]).parent
    ctx = build_context(folder, ["other"], "base", split=("init_hour", 0))
    assert ctx["data"]["where"]["maps"] is None and ctx["data"]["where"]["spectra"] is None
    n0 = int(np.sum(case.init_times.hour == 0))
    assert len(ctx["data"]["where"]["series"]["series"][0]["t"]) == n0


def _unpack_bytes(text):
    return np.frombuffer(base64.b64decode(text), np.uint8).astype(bool)


def test_series_marks_the_worst_inits(two_models):
    case, other, report, where, _ = two_models
    s = where["series"]
    assert s["row"] == "geopotential 500 hPa" and s["lead_days"] == 5.0
    j = list(case.lead_times).index(pd.Timedelta("120h"))
    rmse = report.statistics["base"]["geopotential"].sel(
        statistic="sum_se", region="global", level=500).isel(lead_time=j).values
    weight = report.statistics["base"]["geopotential"].sel(
        statistic="sum_weight", region="global", level=500).isel(lead_time=j).values
    per_init = np.sqrt(rmse / weight)  # the statistics' own per-init RMSE (4 digits shown)
    base = s["series"][0]
    np.testing.assert_allclose(base["v"], per_init, rtol=1e-3)
    assert base["worst"] == np.argsort(-per_init)[:3].tolist()


def test_report_without_maps_has_no_block(tmp_path):
    case = make_case(variables=("2m_temperature",), n_inits=3, leads_h=(0, 24), seed=1)
    write_truth(case, tmp_path / "t.zarr")
    write_climatology(case, tmp_path / "c.zarr")
    a = write_forecast(case, tmp_path / "a.zarr")
    cfg = {"truth": {"path": case.paths["truth"]},
           "climatology": {"path": case.paths["climatology"]},
           "models": {"a": {"path": a}, "p": {"path": write_forecast(case, tmp_path / "p.zarr")}},
           "evaluation": {"regions": ["global"]}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    score(tmp_path / "cfg.yaml", ["a", "p"], tmp_path / "res")
    html = write_report(tmp_path / "res", ["p"], "a", tmp_path / "r.html").read_text()
    data = json.loads(re.search(r'id="wx-data">(.*?)</script>', html, re.S).group(1))
    assert data["where"]["maps"] is None and data["where"]["spectra"] is None
    assert data["where"]["series"] is not None  # per-init scores are always there
    assert "Error maps" not in html


from test_report_browser import Visit, browser, distinct_colours  # noqa: E402, F401


def test_where_when_in_chromium(browser, two_models, tmp_path):  # noqa: F811
    case, other, report, where, html = two_models
    path = tmp_path / "r.html"
    path.write_text(html)
    v = Visit(browser, path)
    v.check_clean()  # no console error, no request, no dialog
    n_rows, n_leads = len(where["maps"]["rows"]), 3
    # per row: bias and RMSE for 2 models, the difference for 1, at 3 leads
    assert v.count("canvas.wmap") == sum(
        (2 + 2 + 1) * len(r["lead_days"]) for r in where["maps"]["rows"])
    assert n_rows == 2 and all(len(r["lead_days"]) == n_leads for r in where["maps"]["rows"])
    assert v.count("#where-series svg.wplot circle") == 2 * 3  # worst 3 inits per model
    png = v.page.locator("section.where").screenshot()
    (tmp_path / "where.png").write_bytes(png)
    assert distinct_colours(png) > 30
    v.page.close()
