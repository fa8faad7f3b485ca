"""Derived variables and SEEPS through ``wxeval score``, against NumPy written here on small
stores: wind speed from u10/v10, 24 h precipitation from 6 h windows (forecast without lead 0:
the first complete lead is 24 h) and 6 h / 24 h from a cumulative total, the truth deriving its
24 h sums from ERA5-style 6 h windows; SEEPS from the climatology's threshold and dry fraction
with the p1 mask; the bad inputs of issue 14."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from builders import ref_area_weights

from wxeval.api import score
from wxeval.plan import SelectionError
from wxeval.schema import SchemaError

LAT = np.linspace(-90, 90, 7)
LON = np.arange(8) * 45.0
INITS = pd.date_range("2020-01-02T00", periods=3, freq="12h")
LEADS_H = np.arange(6, 49, 6)  # no lead 0, like GraphCast
TRUTH_T = pd.date_range("2020-01-01T00", "2020-01-05T00", freq="6h")
DRY24, DRY6 = 0.25e-3, 0.1e-3


def _write(path, data: dict, coords: dict) -> str:
    xr.Dataset(data, coords=coords).to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    return str(path)


def _lonlat(a):  # stored (…, longitude, latitude) as WB2
    return np.swapaxes(a, -1, -2)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("precip")
    rng = np.random.default_rng(3)
    nt, nl, ni = len(TRUTH_T), len(LEADS_H), len(INITS)
    shape = (len(LAT), len(LON))
    # truth: 6 h windows (m), with exact zeros (dry) and values at the dry threshold
    o6 = rng.choice([0.0, 0.2e-3, 1e-3, 6e-3], size=(nt, *shape)) * rng.uniform(
        0.5, 2, (nt, *shape))
    o6[10, 0, :3] = DRY6
    ou, ov = rng.normal(0, 5, size=(2, nt, *shape))
    # forecast 6 h windows, a cumulative total (with a small decrease somewhere), winds
    f6 = rng.choice([0.0, 0.2e-3, 1e-3, 6e-3], size=(ni, nl, *shape)) * rng.uniform(
        0.5, 2, (ni, nl, *shape))
    f6[0, 4, 1, :4] = 0.0625e-3  # four of these make exactly the 24 h dry threshold
    f6[0, 5, 1, :4] = 0.0625e-3
    f6[0, 6, 1, :4] = 0.0625e-3
    f6[0, 7, 1, :4] = 0.0625e-3
    f6[1, 2, 3, 3] = np.nan
    f6[2, 6, 4, 4] = -1e-4  # negative precipitation (some ML models): scored as given
    ftp = np.cumsum(rng.uniform(0, 2e-3, size=(ni, nl, *shape)), axis=1)
    ftp[2, 5, 2, 2] = ftp[2, 4, 2, 2] - 1e-4  # a negative 6 h difference: 0
    fu, fv = rng.normal(0, 5, size=(2, ni, nl, *shape))
    # climatology: SEEPS fields and 10 m wind speed
    clim_shape = (4, 366, *shape)
    wet24 = rng.uniform(1e-3, 8e-3, size=clim_shape)
    wet6 = rng.uniform(0.5e-3, 3e-3, size=clim_shape)
    dry24 = rng.uniform(0.0, 1.0, size=clim_shape)
    dry6 = rng.uniform(0.0, 1.0, size=clim_shape)
    dry24[:, :, 0, :] = 0.05  # a latitude row masked (p1 ≤ 0.1)
    dry24[:, :, 6, :] = 0.9  # and one with p1 ≥ 0.85
    cws = rng.uniform(2, 8, size=clim_shape)
    # wet thresholds at exactly the forecast's value somewhere (heavy)
    coords_sp = {"latitude": LAT, "longitude": LON}
    truth = _write(root / "truth.zarr", {
        "total_precipitation_6hr": (("time", "longitude", "latitude"), _lonlat(o6)),
        "10m_u_component_of_wind": (("time", "longitude", "latitude"), _lonlat(ou)),
        "10m_v_component_of_wind": (("time", "longitude", "latitude"), _lonlat(ov)),
    }, {"time": TRUTH_T.values, **coords_sp})
    fdims = ("time", "prediction_timedelta", "longitude", "latitude")
    fcoords = {"time": INITS.values, "prediction_timedelta": pd.to_timedelta(LEADS_H, "h").values,
               **coords_sp}
    six = _write(root / "six.zarr", {
        "total_precipitation_6hr": (fdims, _lonlat(f6)),
        "10m_u_component_of_wind": (fdims, _lonlat(fu)),
        "10m_v_component_of_wind": (fdims, _lonlat(fv)),
    }, fcoords)
    cum = _write(root / "cum.zarr", {"total_precipitation": (fdims, _lonlat(ftp))}, fcoords)
    cdims = ("hour", "dayofyear", "longitude", "latitude")
    clim = _write(root / "clim.zarr", {
        "total_precipitation_24hr_seeps_threshold": (cdims, _lonlat(wet24)),
        "total_precipitation_24hr_seeps_dry_fraction": (cdims, _lonlat(dry24)),
        "total_precipitation_6hr_seeps_threshold": (cdims, _lonlat(wet6)),
        "total_precipitation_6hr_seeps_dry_fraction": (cdims, _lonlat(dry6)),
        "10m_wind_speed": (cdims, _lonlat(cws)),
    }, {"hour": [0, 6, 12, 18], "dayofyear": np.arange(1, 367), **coords_sp})
    return dict(root=root, truth=truth, six=six, cum=cum, clim=clim, o6=o6, ou=ou, ov=ov,
                f6=f6, ftp=ftp, fu=fu, fv=fv, wet24=wet24, wet6=wet6, dry24=dry24, dry6=dry6,
                cws=cws)


def _config(case, path, variables, metrics, models=None, clim=True):
    cfg = {
        "truth": {"path": case["truth"]},
        "models": models or {"six": {"path": case["six"]}, "cum": {"path": case["cum"]}},
        "evaluation": {"variables": variables, "metrics": metrics, "regions": ["global"]},
    }
    if clim:
        cfg["climatology"] = {"path": case["clim"]}
    path.write_text(yaml.safe_dump(cfg))
    return path


# -- hand-written NumPy ------------------------------------------------------------------------


def _truth24(case, v):
    k = TRUTH_T.get_loc(v)
    return case["o6"][k] + case["o6"][k - 1] + case["o6"][k - 2] + case["o6"][k - 3]


def _clim_at(arr, v):
    return arr[v.hour // 6, v.day_of_year - 1]


def _hand_seeps(f, o, wet, p1, dry):
    def cat(x):
        return np.where(x < dry, 0, np.where((x > dry) & (x < wet), 1,
                                              np.where(x >= wet, 2, -1)))
    s = np.zeros(f.shape)
    cf, co = cat(f), cat(o)
    for i in range(f.shape[0]):
        for j in range(f.shape[1]):
            p = p1[i, j]
            m = [[0, 1 / (1 - p), 4 / (1 - p)], [1 / p, 0, 3 / (1 - p)],
                 [1 / p + 3 / (2 + p), 3 / (2 + p), 0]]
            s[i, j] = 0.0 if cf[i, j] < 0 or co[i, j] < 0 else 0.5 * m[cf[i, j]][co[i, j]]
    s[np.isnan(f) | np.isnan(o)] = np.nan
    keep = (p1 > 0.1) & (p1 < 0.85) & ~np.isnan(s)
    w = np.broadcast_to(ref_area_weights(LAT)[:, None], f.shape)
    return (w[keep] * s[keep]).sum() / w[keep].sum()


def _wmean(x):
    w = np.broadcast_to(ref_area_weights(LAT)[:, None], x.shape)
    return (w * x).sum() / w.sum()


def _table(report, model, var, metric):
    return report.tables[model][var].sel(metric=metric, region="global")


def test_wind_speed_and_24h_from_6h_windows(case, tmp_path):
    cfg = _config(case, tmp_path / "c.yaml", ["10m_wind_speed", "total_precipitation_24hr"],
                  ["rmse", "bias", "acc", "seeps"], models={"six": {"path": case["six"]}})
    report = score(cfg, ["six"], tmp_path / "out")
    p1 = case["dry24"].mean(axis=(0, 1))
    for j, lead_h in enumerate(LEADS_H):
        lead = pd.Timedelta(int(lead_h), "h")
        valid = [t + lead for t in INITS]
        fws = np.hypot(case["fu"][:, j], case["fv"][:, j])
        ows = np.stack([np.hypot(case["ou"][TRUTH_T.get_loc(v)], case["ov"][TRUTH_T.get_loc(v)])
                        for v in valid])
        rmse = np.sqrt(np.mean([_wmean((fws[i] - ows[i]) ** 2) for i in range(len(INITS))]))
        np.testing.assert_allclose(_table(report, "six", "10m_wind_speed", "rmse")
                                   .sel(lead_time=lead), rmse, rtol=1e-10)
        c = np.stack([_clim_at(case["cws"], v) for v in valid])
        fa, oa = fws - c, ows - c
        acc = np.mean([_wmean(fa[i] * oa[i]) / np.sqrt(_wmean(fa[i] ** 2) * _wmean(oa[i] ** 2))
                       for i in range(len(INITS))])
        np.testing.assert_allclose(_table(report, "six", "10m_wind_speed", "acc")
                                   .sel(lead_time=lead), acc, rtol=1e-10)
        got = _table(report, "six", "total_precipitation_24hr", "bias").sel(lead_time=lead)
        got_seeps = _table(report, "six", "total_precipitation_24hr", "seeps").sel(lead_time=lead)
        if lead_h < 24:  # a window before the first stored lead: absent (NaN in the table)
            assert np.isnan(got) and np.isnan(got_seeps)
            continue
        f24 = sum(case["f6"][:, j - k] for k in range(4))
        o24 = np.stack([_truth24(case, v) for v in valid])
        bias = np.mean([_wmean(f24[i] - o24[i]) for i in range(len(INITS))])
        np.testing.assert_allclose(got, bias, rtol=1e-10)
        # the NaN forecast value (init 1, lead 18 h) makes the 24 h bias NaN at 24..36 h;
        # SEEPS skips NaN points
        assert np.isfinite(got) == (lead_h > 36) and np.isfinite(got_seeps) and got_seeps > 0
        seeps = np.mean([
            _hand_seeps(f24[i], o24[i], _clim_at(case["wet24"], v), p1, DRY24)
            for i, v in enumerate(valid)
        ])
        np.testing.assert_allclose(got_seeps, seeps, rtol=1e-10)
    # the forecast hits the 24 h dry threshold exactly somewhere (float32 sums aside: 4 × 1/16)
    assert np.any(sum(case["f6"][0, 7 - k, 1, :4] for k in range(4)) == DRY24)
    # the absent leads were never computed: not reported as NaN fields (the one NaN forecast
    # value, init 1 at lead 18 h, reaches the 24 h sums at 18..36 h: those are reported)
    nan_w = report.nan_weight["six"]["total_precipitation_24hr"].sel(region="global")
    assert np.isnan(nan_w.sel(lead_time=pd.Timedelta("18h"))).all()  # not computed
    assert (nan_w.sel(init_time=INITS[1], lead_time=pd.Timedelta("24h")) > 0).all()
    assert (nan_w.sel(init_time=INITS[0]).sel(lead_time=slice("24h", None)) == 0).all()


def test_accumulations_from_cumulative_total(case, tmp_path):
    cfg = _config(case, tmp_path / "c.yaml",
                  ["total_precipitation_6hr", "total_precipitation_24hr"], ["mae", "seeps"],
                  models={"cum": {"path": case["cum"]}})
    report = score(cfg, ["cum"], tmp_path / "out")
    p1 = case["dry6"].mean(axis=(0, 1))
    ftp = case["ftp"]
    for j, lead_h in enumerate(LEADS_H):
        lead = pd.Timedelta(int(lead_h), "h")
        valid = [t + lead for t in INITS]
        before = ftp[:, j - 1] if j > 0 else np.zeros_like(ftp[:, 0])  # tp(0) = 0
        f6 = np.maximum(ftp[:, j] - before, 0.0)
        o6 = np.stack([case["o6"][TRUTH_T.get_loc(v)] for v in valid])
        mae = np.mean([_wmean(np.abs(f6[i] - o6[i])) for i in range(len(INITS))])
        np.testing.assert_allclose(_table(report, "cum", "total_precipitation_6hr", "mae")
                                   .sel(lead_time=lead), mae, rtol=1e-10)
        seeps = np.mean([_hand_seeps(f6[i], o6[i], _clim_at(case["wet6"], v), p1, DRY6)
                         for i, v in enumerate(valid)])
        assert np.isfinite(seeps) and np.isfinite(mae)
        np.testing.assert_allclose(_table(report, "cum", "total_precipitation_6hr", "seeps")
                                   .sel(lead_time=lead), seeps, rtol=1e-10)
        got24 = _table(report, "cum", "total_precipitation_24hr", "mae").sel(lead_time=lead)
        if lead_h < 24:
            assert np.isnan(got24)
            continue
        back = ftp[:, j - 4] if j >= 4 else np.zeros_like(ftp[:, 0])
        f24 = np.maximum(ftp[:, j] - back, 0.0)
        o24 = np.stack([_truth24(case, v) for v in valid])
        mae = np.mean([_wmean(np.abs(f24[i] - o24[i])) for i in range(len(INITS))])
        np.testing.assert_allclose(got24, mae, rtol=1e-10)
        assert np.isfinite(got24)


def test_seeps_without_its_climatology_fields(case, tmp_path):
    root = tmp_path
    ds = xr.open_zarr(case["clim"]).drop_vars(["total_precipitation_24hr_seeps_threshold"])
    ds.to_zarr(root / "clim.zarr", zarr_format=2, consolidated=True)
    cfg = {
        "truth": {"path": case["truth"]}, "climatology": {"path": str(root / "clim.zarr")},
        "models": {"six": {"path": case["six"]}},
        "evaluation": {"variables": ["total_precipitation_24hr"], "metrics": ["seeps"],
                       "regions": ["global"]},
    }
    (root / "c.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(SchemaError, match="total_precipitation_24hr_seeps_threshold"):
        score(root / "c.yaml", ["six"], root / "out")


def test_lead_step_too_coarse_for_the_accumulation(case, tmp_path):
    ds = xr.open_zarr(case["six"]).isel(prediction_timedelta=slice(1, None, 2))  # 12-hourly
    ds.to_zarr(tmp_path / "twelve.zarr", zarr_format=2, consolidated=True)
    cfg = _config(case, tmp_path / "c.yaml", ["total_precipitation_24hr"], ["rmse"],
                  models={"twelve": {"path": str(tmp_path / "twelve.zarr")}})
    with pytest.raises(SelectionError, match="no selected lead has all of them"):
        score(cfg, ["twelve"], tmp_path / "out")


def test_report_shows_mm_and_the_headline_preset(case, tmp_path):
    """The page shows precipitation in mm (tables keep m); ``preset="headline"`` keeps SEEPS of
    24 h precipitation and no RMSE row for it."""
    from wxeval.scorecard.report import build_context

    cfg = _config(case, tmp_path / "c.yaml", ["total_precipitation_24hr"], ["rmse", "seeps"])
    report = score(cfg, ["six", "cum"], tmp_path / "out")
    ctx = build_context(tmp_path / "out", ["cum"], "six", metrics=["rmse"])
    data = ctx["data"]
    assert [r["units"] for r in data["rows"]] == ["mm"]
    (card,) = data["cards"]
    shown = [x for x in card["cells"]["global"][0] if x is not None]
    table = report.tables["cum"]["total_precipitation_24hr"].sel(metric="rmse", region="global")
    expected = [float(f"{x * 1e3:.4g}") for x in table.values if np.isfinite(x)]
    # leads 24..48 h; at 24..36 h the baseline's NaN init is left out of the pairs (the
    # scorecard's common finite pairs), at 42 and 48 h every init counts: the table's value
    assert len(shown) == 5 and shown[3:] == pytest.approx(expected[3:], rel=1e-12)
    assert np.nanmax(table.values) < 0.1  # the table itself stays in metres
    head = build_context(tmp_path / "out", ["cum"], "six", preset="headline")["data"]
    assert [c["metric"] for c in head["cards"]] == ["seeps"]
    seeps = report.tables["cum"]["total_precipitation_24hr"].sel(metric="seeps", region="global")
    got = [x for x in head["cards"][0]["cells"]["global"][0] if x is not None]
    assert got == pytest.approx([float(f"{x:.4g}") for x in seeps.values if np.isfinite(x)])


def test_headline_config_and_preset_agree():
    """configs/wb2-headline.yaml scores every variable and metric of the headline preset."""
    from pathlib import Path

    from wxeval.config import load_config
    from wxeval.scorecard.presets import HEADLINE, metrics_of

    cfg = load_config(Path(__file__).parents[1] / "configs" / "wb2-headline.yaml")
    ev = cfg.evaluation
    vector = {"wind_vector": "u_component_of_wind"}
    for var, level, metric in HEADLINE:
        assert vector.get(var, var) in ev.variables, var
        assert level is None or level in ev.levels
        assert metric in ev.metrics
    assert set(metrics_of("headline")) <= set(ev.metrics)


def test_each_input_chunk_is_read_once(case, tmp_path, monkeypatch):
    """Deriving costs no second read: every (input, lead) of the forecast is read once per
    task, the truth's 6 h windows once (lead chunks of 2 leads: a window spans chunks)."""
    from wxeval import evaluate

    ds = xr.open_zarr(case["cum"])
    ds.chunk({"prediction_timedelta": 2}).to_zarr(
        tmp_path / "cum2.zarr", zarr_format=2, consolidated=True,
        encoding={"total_precipitation": {"chunks": (1, 2, len(LON), len(LAT))}})
    reads = []
    real = evaluate._read

    def counting(da, indexers, *args, **kwargs):
        reads.append((da.name, {k: np.asarray(v).tolist() for k, v in indexers.items()}))
        return real(da, indexers, *args, **kwargs)

    monkeypatch.setattr(evaluate, "_read", counting)
    cfg = _config(case, tmp_path / "c.yaml", ["total_precipitation_24hr"], ["rmse"],
                  models={"cum": {"path": str(tmp_path / "cum2.zarr")}}, clim=False)
    score(cfg, ["cum"], tmp_path / "out")
    from wxeval.schema import INIT_TIME, LEAD_TIME, VALID_TIME

    leads = [(i, lead) for name, sel in reads if name == "total_precipitation"
             for i in sel[INIT_TIME] for lead in sel[LEAD_TIME]]
    assert len(leads) == len(set(leads)) == len(INITS) * len(LEADS_H)  # each chunk once
    truth = [t for name, sel in reads if name == "total_precipitation_6hr"
             for t in sel[VALID_TIME]]
    assert len(truth) == len(set(truth)) > 0


def test_wind_speed_per_level(tmp_path):
    rng = np.random.default_rng(7)
    levels = [500, 850]
    times = pd.date_range("2020-01-01", periods=8, freq="6h")
    inits, leads = times[:3], pd.to_timedelta([0, 12], "h")
    u, v = rng.normal(0, 8, size=(2, len(times), 2, len(LAT), len(LON)))
    fu, fv = rng.normal(0, 8, size=(2, len(inits), len(leads), 2, len(LAT), len(LON)))
    tdims = ("time", "level", "longitude", "latitude")
    fdims = ("time", "prediction_timedelta", "level", "longitude", "latitude")
    sp = {"latitude": LAT, "longitude": LON, "level": levels}
    truth = _write(tmp_path / "t.zarr", {"u_component_of_wind": (tdims, _lonlat(u)),
                                         "v_component_of_wind": (tdims, _lonlat(v))},
                   {"time": times.values, **sp})
    fc = _write(tmp_path / "f.zarr", {"u_component_of_wind": (fdims, _lonlat(fu)),
                                      "v_component_of_wind": (fdims, _lonlat(fv))},
                {"time": inits.values, "prediction_timedelta": leads.values, **sp})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "truth": {"path": truth}, "models": {"m": {"path": fc}},
        "evaluation": {"variables": ["wind_speed"], "levels": [850], "metrics": ["rmse"],
                       "regions": ["global"]}}))
    report = score(cfg, ["m"], tmp_path / "out")
    for j, lead in enumerate(leads):
        mse = []
        for i, t in enumerate(inits):
            k = times.get_loc(t + lead)
            f = np.sqrt(fu[i, j, 1] ** 2 + fv[i, j, 1] ** 2)
            o = np.sqrt(u[k, 1] ** 2 + v[k, 1] ** 2)
            mse.append(_wmean((f - o) ** 2))
        got = report.tables["m"]["wind_speed"].sel(metric="rmse", region="global", level=850,
                                                    lead_time=lead)
        np.testing.assert_allclose(got, np.sqrt(np.mean(mse)), rtol=1e-10)


def test_cli_scorecard_preset(case, tmp_path):
    from typer.testing import CliRunner

    from wxeval.cli import app

    cfg = _config(case, tmp_path / "c.yaml", ["total_precipitation_24hr"], ["rmse", "seeps"])
    score(cfg, ["six", "cum"], tmp_path / "out")
    base = ["scorecard", "--results", str(tmp_path / "out"), "--models", "cum",
            "--baseline", "six", "--output", str(tmp_path / "h.html")]
    ok = CliRunner().invoke(app, [*base, "--preset", "headline"])
    assert ok.exit_code == 0, ok.output
    assert '"metric":"seeps"' in (tmp_path / "h.html").read_text()
    bad = CliRunner().invoke(app, [*base, "--preset", "nope"])
    assert bad.exit_code == 2 and "headline" in bad.output
