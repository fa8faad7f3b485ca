"""Scoring by valid time (WB2's by_valid): equals a hand selection in NumPy (issue 15)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from builders import make_case, ref_area_weights, ref_metrics, write_all, write_config
from typer.testing import CliRunner

from wxeval.api import score
from wxeval.by_valid import in_window, inits_verifying
from wxeval.cli import app

START, STOP = "2020-02-28T12", "2020-02-29T12"


def test_window_by_hand():
    v = pd.DatetimeIndex(["2020-02-28T06", "2020-02-28T12", "2020-02-29T18", "2020-03-01"]).values
    assert in_window(v, START, STOP, None).tolist() == [False, True, False, False]
    assert in_window(v, "2020-02-28", "2020-02-29", None).tolist() == [True, True, True, False]
    assert in_window(v, None, None, [6, 18]).tolist() == [True, False, True, False]
    inits = pd.date_range("2020-02-26", periods=6, freq="12h").values
    leads = pd.to_timedelta([0, 48], unit="h").values
    # t + 48 h in [28 Feb 12 UTC, 29 Feb 12 UTC]: 26 Feb 12 UTC … 27 Feb 12 UTC; t + 0: 28 Feb
    # 12 UTC (inits run to 28 Feb 12 UTC)
    got = inits_verifying(inits, leads, START, STOP, None)
    assert [str(x)[:13] for x in got] == ["2020-02-26T12", "2020-02-27T00", "2020-02-27T12",
                                          "2020-02-28T12"]


@pytest.fixture(scope="module")
def valid_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("byvalid")
    case = write_all(make_case(variables=("2m_temperature", "temperature"), levels=(850,),
                               inits="2020-02-26", n_inits=8, leads_h=(0, 24, 48), seed=9,
                               nlat=5, nlon=8), root)
    cfg = write_config(root / "cfg.yaml", case, regions=["global"], alignment="by_valid",
                       init_times={"start": START, "stop": STOP},
                       metrics=["rmse", "bias", "mae", "acc"])
    return case, root, cfg, score(cfg, ["model"], root / "out")


def test_by_valid_equals_a_hand_selection(valid_case):
    case, _, _, report = valid_case
    lo, hi = pd.Timestamp(START), pd.Timestamp(STOP)
    inits = report.statistics["model"]["init_time"].values
    want_inits = [t for t in case.init_times
                  if any(lo <= t + lead <= hi for lead in case.lead_times)]
    np.testing.assert_array_equal(inits, pd.DatetimeIndex(want_inits).values)
    w = ref_area_weights(case.latitude)[:, None] * np.ones(len(case.longitude))
    table = report.tables["model"]
    for j, lead in enumerate(case.lead_times):
        keep = np.array([lo <= t + lead <= hi for t in case.init_times])
        assert keep.sum() == 3  # 12-hourly inits, a 24 h window
        sub = dataclasses.replace(case, init_times=case.init_times[keep],
                                  forecast={v: a[keep] for v, a in case.forecast.items()})
        for var, level in (("2m_temperature", None), ("temperature", 0)):
            ref = ref_metrics(sub, var, w, level, j)
            for metric in ("rmse", "bias", "mae", "acc"):
                cell = table[var].sel(metric=metric, region="global").isel(lead_time=j)
                got = float(cell.values if level is None else cell.values[level])
                np.testing.assert_allclose(got, ref[metric], rtol=1e-10)


def test_cli_by_valid(valid_case, tmp_path):
    case, root, _, report = valid_case
    plain = write_config(root / "plain.yaml", case, regions=["global"],
                         metrics=["rmse", "bias", "mae", "acc"])
    res = CliRunner().invoke(app, ["score", "-c", str(plain), "-o", str(tmp_path), "--all",
                                   "--start", START, "--stop", STOP, "--by-valid"])
    assert res.exit_code == 0, res.output
    from wxeval.results import read_table

    got = read_table(tmp_path / "model.nc")
    np.testing.assert_allclose(got["2m_temperature"].values,
                               report.tables["model"]["2m_temperature"].values, rtol=1e-12)
    bad = CliRunner().invoke(app, ["score", "-c", str(plain), "-o", str(tmp_path), "--all",
                                   "--by-valid", "--by", "season"])
    assert bad.exit_code == 2 and "by_valid" in bad.output


def test_by_valid_refuses_maps(valid_case, tmp_path):
    case, root, cfg, _ = valid_case
    from wxeval.config import ConfigError

    bad = write_config(tmp_path / "bad.yaml", case, regions=["global"], alignment="by_valid",
                       maps=True)
    with pytest.raises(ConfigError, match="by_valid"):
        score(bad, ["model"], tmp_path / "out")
