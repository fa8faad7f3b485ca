"""Forecast chunks holding one init and every lead, read a few inits at a time
(``evaluate._init_major``), against hand-written NumPy: edge cases of the selection (surface
variables, level and lead subsets, inits skipped by ``hours``), layouts (latitude descending,
(latitude, longitude) dims), several models in one task, ``skipna`` with NaN in the truth,
no climatology, float64 stores, and a part too small for the path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from builders import make_case, ref_area_weights, write_climatology, write_truth
from builders import write_forecast as write_case_forecast

from wxeval import evaluate
from wxeval.api import score


def _expected(case, var, lev, li, inits, *, skipna, clim=True):
    """rmse, bias, mae (and acc, acc_pooled with a climatology) of one (level, lead) over the
    init positions ``inits``; ``lev`` None for a surface variable. Float64 loops; a NaN of
    f − o leaves every sum with ``skipna`` (else NaN), one of the climatology the anomaly sums
    (and their weight)."""
    w0 = ref_area_weights(case.latitude)[:, None] * np.ones(len(case.longitude))
    lead = case.lead_times[li]
    nan = float("nan")
    se, err, ae, acc, fo, ff, oo = [], [], [], [], [], [], []
    for i in inits:
        t = case.init_times[i]
        pick = (lambda a: a) if lev is None else (lambda a: a[lev])
        f = pick(case.forecast[var][i, li]).astype(np.float64)
        o = pick(case.truth_at(var, t + lead)).astype(np.float64)
        c = pick(case.clim_at(var, t + lead)).astype(np.float64)
        ok = np.isfinite(f - o)
        ok_a = ok & np.isfinite(c)
        w, wa = np.where(ok, w0, 0.0), np.where(ok_a, w0, 0.0)
        f, o, c = np.nan_to_num(f), np.nan_to_num(o), np.nan_to_num(c)
        if skipna or ok.all():
            se.append(np.sum(w * (f - o) ** 2) / w.sum())
            err.append(np.sum(w * (f - o)) / w.sum())
            ae.append(np.sum(w * np.abs(f - o)) / w.sum())
        else:
            se.append(nan), err.append(nan), ae.append(nan)
        if skipna or ok_a.all():
            fa, oa = f - c, o - c
            fo.append(np.sum(wa * fa * oa) / wa.sum())
            ff.append(np.sum(wa * fa * fa) / wa.sum())
            oo.append(np.sum(wa * oa * oa) / wa.sum())
            acc.append(fo[-1] / np.sqrt(ff[-1] * oo[-1]))
        else:
            fo.append(nan), ff.append(nan), oo.append(nan), acc.append(nan)
    mean = np.nanmean if skipna else np.mean
    out = {"rmse": np.sqrt(mean(se)), "bias": mean(err), "mae": mean(ae)}
    if clim:
        out["acc"] = mean(acc)
        out["acc_pooled"] = mean(fo) / np.sqrt(mean(ff) * mean(oo))
    return out


def _config(path, case, models, *, clim=True, **evaluation):
    cfg = {"truth": {"path": case.paths["truth"]}, "models": models,
           "evaluation": {"regions": ["global"], **evaluation}}
    if clim:
        cfg["climatology"] = {"path": case.paths["climatology"]}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _spy(monkeypatch, group_bytes=1):
    """Record each part's init groups (None: lead-by-lead path); ``group_bytes`` per group."""
    taken = []
    real = evaluate._init_major

    def plan(part, task, stores):
        got = real(part, task, stores)
        taken.append((part.model, None if got is None else [g.tolist() for g in got[-1]]))
        return got

    monkeypatch.setattr(evaluate, "_init_major", plan)
    monkeypatch.setattr(evaluate, "INIT_MAJOR_BYTES", group_bytes)
    return taken


def _check(table, case, var, levels, leads, inits, *, skipna=False, clim=True):
    """Every (level, lead) of ``table[var]`` against :func:`_expected`; ``levels`` the
    positions in ``case.levels`` (None: surface), ``leads`` positions in ``case.lead_times``."""
    da = table[var].sel(region="global")
    assert da.sizes["lead_time"] == len(leads)
    for lev in levels:
        got_lev = da if lev is None else da.sel(level=case.levels[lev])
        for k, li in enumerate(leads):
            want = _expected(case, var, lev, li, inits, skipna=skipna, clim=clim)
            for metric, value in want.items():
                got = float(got_lev.sel(metric=metric).isel(lead_time=k))
                assert got == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), (
                    var, metric, lev, li)
    if not clim:
        assert np.isnan(da.sel(metric="acc").values).all()  # no climatology: no ACC


def _write(case, root, lead_chunk=5, layout=None):
    write_truth(case, root / "truth.zarr")
    write_climatology(case, root / "clim.zarr")
    return write_case_forecast(case, root / "fc.zarr", layout, lead_chunk=lead_chunk)


LEADS = (0, 6, 12, 24, 48)


def test_surface_and_level_subset_and_lead_subset(tmp_path, monkeypatch):
    """2m_temperature (no level axis) and temperature at 850 hPa only, at leads 6 h and 24 h
    of the store's five: the path is taken (all leads in one chunk) and matches NumPy."""
    case = make_case(n_inits=4, variables=("temperature", "2m_temperature"), leads_h=LEADS)
    fc = _write(case, tmp_path)
    cfg = _config(tmp_path / "c.yaml", case, {"m": {"path": fc}}, levels=[850],
                  lead_times=["6h", "24h"], metrics=["rmse", "bias", "mae", "acc", "acc_pooled"])
    taken = _spy(monkeypatch)
    table = score(cfg, ["m"], None, scheduler="synchronous").tables["m"]
    assert taken and all(g is not None and {len(x) for x in g} == {1} for _, g in taken)
    _check(table, case, "2m_temperature", [None], [1, 3], range(4))
    _check(table, case, "temperature", [1], [1, 3], range(4))


def test_inits_skipped_by_hours(tmp_path, monkeypatch):
    """``hours: [0]`` of 12-hourly inits: every other init of the store (not contiguous)."""
    case = make_case(n_inits=8, variables=("temperature",), leads_h=LEADS)
    fc = _write(case, tmp_path)
    cfg = _config(tmp_path / "c.yaml", case, {"m": {"path": fc}}, init_times={"hours": [0]},
                  metrics=["rmse", "bias", "mae", "acc", "acc_pooled"])
    taken = _spy(monkeypatch, group_bytes=2 * 5 * 2 * 9 * 16 * 4)  # two inits per group
    table = score(cfg, ["m"], None, scheduler="synchronous").tables["m"]
    assert [g for _, g in taken if g is not None] == [[[0, 1], [2]]]  # inits 0, 2, 4 of the store
    _check(table, case, "temperature", [0, 1], range(5), [0, 2, 4, 6])


def test_two_models_one_chunked_per_init(tmp_path, monkeypatch):
    """Two models in one task: one store with a chunk per init (the path), one with zarr's
    default chunks (lead by lead); a lat-descending layout for the first."""
    case = make_case(n_inits=4, variables=("temperature", "2m_temperature"), leads_h=LEADS)
    fc = _write(case, tmp_path, layout={"latitude_descending": True})
    other = write_case_forecast(case, tmp_path / "other.zarr")
    cfg = _config(tmp_path / "c.yaml", case, {"a": {"path": fc}, "b": {"path": other}},
                  metrics=["rmse", "bias", "mae", "acc", "acc_pooled"])
    taken = _spy(monkeypatch)
    report = score(cfg, ["a", "b"], None, scheduler="synchronous")
    assert {m for m, g in taken if g is not None} == {"a"}
    assert {m for m, g in taken if g is None} == {"b"}
    for name in ("a", "b"):
        _check(report.tables[name], case, "temperature", [0, 1], range(5), range(4))
        _check(report.tables[name], case, "2m_temperature", [None], range(5), range(4))


def test_lat_lon_dims_float64_no_climatology(tmp_path, monkeypatch):
    """A float64 store with dims (..., latitude, longitude) (the truth's are (longitude,
    latitude)), no climatology configured: no ACC, the rest matches NumPy."""
    case = make_case(n_inits=3, variables=("temperature",), leads_h=LEADS, dtype=np.float64)
    write_truth(case, tmp_path / "truth.zarr")
    write_climatology(case, tmp_path / "clim.zarr")
    arr = case.forecast["temperature"]
    ds = xr.Dataset(
        {"temperature": (("time", "prediction_timedelta", "level", "latitude", "longitude"),
                         arr)},
        coords={"time": case.init_times.values, "prediction_timedelta": case.lead_times.values,
                "level": case.levels, "latitude": case.latitude, "longitude": case.longitude})
    fc = str(tmp_path / "fc.zarr")
    ds.to_zarr(fc, zarr_format=2, consolidated=True,
               encoding={"temperature": {"chunks": (1, 5, 2, 9, 16)}})
    cfg = _config(tmp_path / "c.yaml", case, {"m": {"path": fc}}, clim=False)
    taken = _spy(monkeypatch)
    table = score(cfg, ["m"], None, scheduler="synchronous").tables["m"]
    assert any(g is not None for _, g in taken)
    _check(table, case, "temperature", [0, 1], range(5), range(3), clim=False)


@pytest.mark.parametrize("skipna", [False, True])
def test_nan_in_truth_and_climatology(tmp_path, monkeypatch, skipna):
    """A NaN in the truth at one valid time (seen by several (init, lead) pairs) and one in
    the climatology at one hour of one day (in the anomaly sums only: ``sum_weight_a``)."""
    case = make_case(n_inits=4, variables=("temperature",), leads_h=LEADS, dtype=np.float64)
    bad_time = case.init_times[1] + pd.Timedelta("12h")  # init 1 + 12 h, init 2 + 0 h, ...
    case.truth["temperature"][case.truth_times.get_loc(bad_time), 0, 3, 5] = np.nan
    case.climatology["temperature"][1, bad_time.day_of_year - 1, 1, 6, 2] = np.nan  # 06 h
    fc = _write(case, tmp_path)
    cfg = _config(tmp_path / "c.yaml", case, {"m": {"path": fc}}, skipna=skipna,
                  metrics=["rmse", "bias", "mae", "acc", "acc_pooled"])
    taken = _spy(monkeypatch)
    table = score(cfg, ["m"], None, scheduler="synchronous").tables["m"]
    assert taken and all(g is not None for _, g in taken)
    _check(table, case, "temperature", [0, 1], range(5), range(4), skipna=skipna)


def test_part_smaller_than_a_group_reads_lead_by_lead(tmp_path, monkeypatch):
    """With the default group size every init fits one group: the path is not taken."""
    case = make_case(n_inits=3, variables=("temperature",), leads_h=LEADS)
    fc = _write(case, tmp_path)
    cfg = _config(tmp_path / "c.yaml", case, {"m": {"path": fc}})
    taken = _spy(monkeypatch, group_bytes=evaluate.INIT_MAJOR_BYTES)
    table = score(cfg, ["m"], None, scheduler="synchronous").tables["m"]
    assert taken and all(g is None for _, g in taken)
    _check(table, case, "temperature", [0, 1], range(5), range(3))


def test_models_with_different_levels_and_longitudes_180(tmp_path, monkeypatch):
    """Model ``a`` stores 500 and 850 hPa (longitudes -180..180), model ``b`` only 850 hPa:
    the task reads the truth at both levels and ``b``'s fields pair with its second level."""
    case = make_case(n_inits=4, variables=("temperature",), leads_h=LEADS)
    fc = _write(case, tmp_path, layout={"longitude_180": True})
    arr = case.forecast["temperature"][:, :, 1:]
    ds = xr.Dataset(
        {"temperature": (("time", "prediction_timedelta", "level", "longitude", "latitude"),
                         np.swapaxes(arr, -1, -2))},
        coords={"time": case.init_times.values, "prediction_timedelta": case.lead_times.values,
                "level": [850], "latitude": case.latitude, "longitude": case.longitude})
    only850 = str(tmp_path / "b.zarr")
    ds.to_zarr(only850, zarr_format=2, consolidated=True,
               encoding={"temperature": {"chunks": (1, 5, 1, 16, 9)}})
    cfg = _config(tmp_path / "c.yaml", case, {"a": {"path": fc}, "b": {"path": only850}},
                  metrics=["rmse", "bias", "mae", "acc", "acc_pooled"])
    taken = _spy(monkeypatch)
    report = score(cfg, ["a", "b"], None, scheduler="synchronous")
    assert {m for m, g in taken if g is not None} == {"a", "b"}
    _check(report.tables["a"], case, "temperature", [0, 1], range(5), range(4))
    _check(report.tables["b"], case, "temperature", [1], range(5), range(4))


def test_crps_of_a_deterministic_forecast_and_by_valid(tmp_path, monkeypatch):
    """The ensemble groups of a deterministic forecast (a one-member ensemble: crps = mae)
    through the path, and ``alignment: by_valid`` (a different set of inits per lead)."""
    case = make_case(n_inits=6, variables=("2m_temperature",), leads_h=LEADS)
    fc = _write(case, tmp_path)
    cfg = _config(tmp_path / "c.yaml", case, {"m": {"path": fc}}, metrics=["crps", "mae"])
    taken = _spy(monkeypatch)
    table = score(cfg, ["m"], None, scheduler="synchronous").tables["m"]
    assert any(g is not None for _, g in taken)
    da = table["2m_temperature"].sel(region="global")
    for li in range(5):
        want = _expected(case, "2m_temperature", None, li, range(6), skipna=False)["mae"]
        assert float(da.sel(metric="crps").isel(lead_time=li)) == pytest.approx(want, rel=1e-9)
    # by valid time: valid times in [day 2 00 h, day 2 12 h]
    start, stop = case.init_times[2], case.init_times[3]
    cfg = _config(tmp_path / "v.yaml", case, {"m": {"path": fc}}, metrics=["rmse"],
                  alignment="by_valid", init_times={"start": str(start), "stop": str(stop)})
    table = score(cfg, ["m"], None, scheduler="synchronous").tables["m"]
    da = table["2m_temperature"].sel(region="global", metric="rmse")
    for li, lead in enumerate(case.lead_times):
        inits = [i for i, t in enumerate(case.init_times) if start <= t + lead <= stop]
        want = (_expected(case, "2m_temperature", None, li, inits, skipna=False)["rmse"]
                if inits else np.nan)
        got = float(da.sel(lead_time=lead.to_timedelta64()))
        assert got == pytest.approx(want, rel=1e-9, nan_ok=True), li


@pytest.mark.parametrize("skipna", [False, True])
def test_acc_pooled_computes_anomaly_sums_with_skipna_only(tmp_path, monkeypatch, skipna):
    """``acc_pooled`` needs ``sum_weight_a`` (the ``anomaly_sums`` group) with skipna only;
    ``acc_centred`` needs it always."""
    case = make_case(n_inits=2, variables=("2m_temperature",), leads_h=(0, 6))
    fc = _write(case, tmp_path, lead_chunk=2)
    seen = []
    real = evaluate.compute
    monkeypatch.setattr(evaluate, "compute",
                        lambda groups, *a, **k: seen.append(tuple(groups)) or real(groups, *a, **k))
    for metrics in (["acc_pooled"], ["acc_pooled", "acc_centred"]):
        seen.clear()
        cfg = _config(tmp_path / "c.yaml", case, {"m": {"path": fc}}, skipna=skipna,
                      metrics=metrics)
        table = score(cfg, ["m"], None, scheduler="synchronous").tables["m"]
        assert seen and all(("anomaly_sums" in g) == (skipna or len(metrics) == 2) for g in seen)
        want = _expected(case, "2m_temperature", None, 1, range(2), skipna=skipna)["acc_pooled"]
        got = table["2m_temperature"].sel(region="global", metric="acc_pooled").isel(lead_time=1)
        assert float(got) == pytest.approx(want, rel=1e-9)
