"""Tables by season, month and init hour from the stored per-init statistics (issue 15)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from builders import (
    make_case,
    ref_area_weights,
    ref_metrics,
    write_all,
    write_config,
    write_forecast,
)
from typer.testing import CliRunner

from wxeval import splits
from wxeval.api import score
from wxeval.cli import app
from wxeval.results import read_table

INITS = pd.DatetimeIndex(
    ["2020-02-28T00", "2020-02-29T12", "2020-03-01T00", "2020-03-01T12", "2020-06-01T00",
     "2020-12-01T12"]
)


def test_labels_by_hand():
    t = pd.DatetimeIndex(["2020-12-31T18", "2021-01-01T00", "2021-03-01", "2021-05-31T23",
                          "2021-06-01", "2021-08-31", "2021-09-01T06", "2021-11-30T12"]).values
    assert splits.labels(t, "season").tolist() == [
        "DJF", "DJF", "MAM", "MAM", "JJA", "JJA", "SON", "SON"]
    assert splits.labels(t, "month").tolist() == [12, 1, 3, 5, 6, 8, 9, 11]
    assert splits.labels(t, "init_hour").tolist() == [18, 0, 0, 23, 0, 0, 6, 12]
    assert splits.present(splits.labels(t, "season"), "season") == list(splits.SEASONS)


@pytest.fixture(scope="module")
def split_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("splits")
    case = write_all(make_case(variables=("2m_temperature", "temperature"), levels=(500,),
                               inits=INITS, leads_h=(0, 24), seed=5, nlat=5, nlon=8), root)
    cfg = write_config(root / "cfg.yaml", case, regions=["global", "tropics"],
                       metrics=["rmse", "bias", "acc", "mae"])
    report = score(cfg, ["model"], root / "out", by=("season", "month", "init_hour"))
    return case, root, report


def _restricted_run(case, root, keep: np.ndarray, name: str) -> xr.Dataset:
    """A run on a forecast store that holds only the inits ``keep``."""
    sub = dataclasses.replace(
        case, init_times=case.init_times[keep],
        forecast={v: a[keep] for v, a in case.forecast.items()}, paths=dict(case.paths))
    path = write_forecast(sub, root / f"{name}.zarr")
    cfg = write_config(root / f"{name}.yaml", sub, {"model": {"path": path}},
                       regions=["global", "tropics"], metrics=["rmse", "bias", "acc", "mae"])
    report = score(cfg, ["model"], root / f"{name}-out")
    assert report.statistics["model"].init_time.size == keep.sum()
    return report.tables["model"]


@pytest.mark.parametrize("by", ["season", "init_hour"])
def test_split_equals_a_run_restricted_to_its_inits(split_case, by):
    case, root, report = split_case
    table = report.splits["model"][by]
    lab = splits.labels(case.init_times.values, by)
    assert table[by].values.tolist() == splits.present(lab, by)
    for label in table[by].values.tolist():
        want = _restricted_run(case, root, lab == label, f"{by}-{label}")
        got = table.sel({by: label}, drop=True)
        for var in want.data_vars:
            np.testing.assert_array_equal(got[var].values, want[var].values)  # exactly


def test_split_matches_numpy_by_hand(split_case):
    case, _, report = split_case
    table = report.splits["model"]["month"]
    w = ref_area_weights(case.latitude)[:, None] * np.ones(len(case.longitude))
    keep = np.asarray(case.init_times.month == 3)
    sub = dataclasses.replace(case, init_times=case.init_times[keep],
                              forecast={v: a[keep] for v, a in case.forecast.items()})
    for j in range(len(case.lead_times)):
        ref = ref_metrics(sub, "2m_temperature", w, None, j)
        for metric in ("rmse", "bias", "mae", "acc"):
            got = table["2m_temperature"].sel(month=3, metric=metric, region="global").values[j]
            np.testing.assert_allclose(got, ref[metric], rtol=1e-10)


def test_split_files(split_case):
    case, root, report = split_case
    out = root / "out"
    nc = read_table(out / "model.by-season.nc")
    assert nc["2m_temperature"].dims == ("season", "metric", "region", "lead_time")
    assert nc["temperature"].dims == ("season", "metric", "region", "lead_time", "level")
    assert nc.attrs["split"] == "season"
    np.testing.assert_array_equal(nc["temperature"].values,
                                  report.splits["model"]["season"]["temperature"].values)
    csv = pd.read_csv(out / "model.by-init-hour.csv")
    assert list(csv.columns[:2]) == ["init_hour", "variable"]
    row = csv[(csv.init_hour == 12) & (csv.variable == "2m_temperature") & (csv.region == "global")
              & (csv.lead_time_hours == 24) & (csv.metric == "rmse")]
    want = report.splits["model"]["init_hour"]["2m_temperature"].sel(
        init_hour=12, metric="rmse", region="global").values[1]
    assert len(row) == 1 and float(row.value.iloc[0]) == pytest.approx(want, rel=1e-9)
    assert len(csv) == sum(
        report.splits["model"]["init_hour"][v].size for v in ("2m_temperature", "temperature"))


def test_cli_by(split_case, tmp_path):
    case, root, _ = split_case
    res = CliRunner().invoke(app, ["score", "-c", str(root / "cfg.yaml"), "-o",
                                   str(tmp_path / "o"), "--all", "--by", "season"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "model.by-season.nc").is_file()
    bad = CliRunner().invoke(app, ["score", "-c", str(root / "cfg.yaml"), "-o",
                                   str(tmp_path / "o"), "--all", "--by", "weekday"])
    assert bad.exit_code == 2 and "--by 'weekday'" in bad.output


# ---------------------------------------------------------------------------------------------
# Scorecard by init hour: a page equals the report of a run restricted to those inits

from test_scorecard import _embedded_json, realistic  # noqa: E402, F401


def test_scorecard_split_equals_a_restricted_run(realistic, tmp_path):  # noqa: F811
    import yaml

    from wxeval.scorecard.report import write_report

    out = write_report(realistic["results"], ["model_a", "model_b"], "base",
                       tmp_path / "card.html", by="init_hour")
    pages = sorted(p.name for p in tmp_path.glob("*.html"))
    assert pages == ["card.0.html", "card.12.html", "card.html"]
    cfg = yaml.safe_load(realistic["config"].read_text())
    cfg["evaluation"]["init_times"]["hours"] = [12]
    (tmp_path / "h12.yaml").write_text(yaml.safe_dump(cfg))
    score(tmp_path / "h12.yaml", ["base", "model_a", "model_b"], tmp_path / "h12")
    ref = write_report(tmp_path / "h12", ["model_a", "model_b"], "base", tmp_path / "ref.html")
    got, want = (_embedded_json((tmp_path / n).read_text()) for n in ("card.12.html", ref.name))
    assert got["cards"] == want["cards"] and got["curves"] == want["curves"]
    assert got["cards"] != _embedded_json(out.read_text())["cards"]
    html = (tmp_path / "card.12.html").read_text()
    assert 'href="card.0.html"' in html and 'href="card.html"' in html
    assert '<span class="split-on">12</span>' in html


def test_cli_scorecard_by(realistic, tmp_path):  # noqa: F811
    args = ["scorecard", "--results", str(realistic["results"]), "--models", "model_a",
            "--baseline", "base", "--output", str(tmp_path / "s.html")]
    res = CliRunner().invoke(app, [*args, "--by", "season"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.glob("*.html")) == ["s.DJF.html", "s.MAM.html",
                                                               "s.html"]
    bad = CliRunner().invoke(app, [*args, "--by", "week"])
    assert bad.exit_code == 2 and "--by 'week'" in bad.output
