"""The statistics entry key covers everything that determines a number (issue 11).

Each input of the key (wxeval.store.entry_key) is changed between two runs into the *same*
output folder: the second run must give the new numbers, equal to a hand-written NumPy
computation (builders.ref_metrics on the in-memory arrays), never the stored old ones.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml
from builders import (
    make_case,
    ref_metrics,
    ref_region_weights,
    write_all,
    write_climatology,
    write_config,
    write_forecast,
    write_land_sea_mask,
    write_truth,
)

from wxeval import loaders, store
from wxeval.api import score

VARS = ("2m_temperature", "temperature")
METRICS = ("rmse", "rmse_per_init", "mae", "bias", "acc", "acc_pooled")
LAND = ["global_land", "tropics_land", "extra-tropics_land"]


def _case():
    return make_case(dtype=np.float64, n_inits=3, leads_h=(0, 12, 24), variables=VARS)


def _with(case, **changes):
    out = dataclasses.replace(case, **changes)
    out.paths = dict(case.paths)
    return out


def _config(tmp_path: Path, case, name="cfg.yaml", land_sea_mask=None, **evaluation) -> Path:
    path = write_config(tmp_path / name, case, **evaluation)
    if land_sea_mask is not None:
        cfg = yaml.safe_load(path.read_text())
        cfg["land_sea_mask"] = {"path": str(land_sea_mask)}
        path.write_text(yaml.safe_dump(cfg))
    return path


def _run(cfg: Path, out: Path):
    loaders.clear_cache()  # as after a store rewritten in place (a new process in real use)
    return score(cfg, ["model"], out)


def _assert_numpy(case, report, regions, custom=None, variables=VARS, rtol=1e-9):
    """Every (variable, level, lead, region, metric) equals builders.ref_metrics on ``case``."""
    table = report.tables["model"]
    bad = []
    for var in variables:
        levels = list(enumerate(case.levels)) if var == "temperature" else [(None, None)]
        for region in regions:
            w = ref_region_weights(case, region, custom)
            for li, lead in enumerate(case.lead_times):
                for lev_i, lev in levels:
                    ref = ref_metrics(case, var, w, lev_i, li)
                    da = table[var].sel(region=region, lead_time=lead.to_timedelta64())
                    if lev is not None:
                        da = da.sel(level=lev)
                    for m in METRICS:
                        got = float(da.sel(metric=m))
                        if not abs(got - ref[m]) <= rtol * abs(ref[m]):
                            bad.append((var, lev, region, li, m, got, ref[m]))
    assert not bad, f"{len(bad)} mismatches, first {bad[:3]}"


def _differs(case_a, case_b, region, var="2m_temperature"):
    """Guard: the two references really differ (else the test would prove nothing)."""
    a = ref_metrics(case_a, var, ref_region_weights(case_a, region), None, 1)["rmse"]
    b = ref_metrics(case_b, var, ref_region_weights(case_b, region), None, 1)["rmse"]
    assert abs(a - b) > 1e-6 * abs(a)


# -- the land-sea mask ----------------------------------------------------------------------


def test_mask_from_config_a_then_b_then_a_again(tmp_path):
    """The issue's case: mask A, then B = 1 − A into the same output: B's numbers; back to A:
    A's entry is reused (nothing computed) and gives A's numbers."""
    case = write_all(_case(), tmp_path)
    case_b = _with(case, land_sea_mask=1.0 - case.land_sea_mask)
    _differs(case, case_b, "global_land")
    lsm_a = write_land_sea_mask(case, tmp_path / "lsm_a.zarr")
    lsm_b = write_land_sea_mask(case_b, tmp_path / "lsm_b.zarr")
    out = tmp_path / "out"
    regions = LAND + ["global", "tropics"]
    first = _run(_config(tmp_path, case, land_sea_mask=lsm_a, regions=regions), out)
    _assert_numpy(case, first, regions)
    second = _run(_config(tmp_path, case, land_sea_mask=lsm_b, regions=regions), out)
    assert second.computed_fields > 0
    _assert_numpy(case_b, second, regions)
    third = _run(_config(tmp_path, case, land_sea_mask=lsm_a, regions=regions), out)
    assert third.computed_fields == 0 and third.reused_fields > 0
    _assert_numpy(case, third, regions)


def test_mask_file_rewritten_in_place_same_path(tmp_path):
    """Variant: the mask store rewritten in place (same path, same metadata, new values)."""
    case = write_all(_case(), tmp_path)
    case_b = _with(case, land_sea_mask=np.clip(case.land_sea_mask * 0.5 + 0.3, 0, 1))
    _differs(case, case_b, "tropics_land")
    lsm = tmp_path / "lsm.zarr"
    write_land_sea_mask(case, lsm)
    cfg = _config(tmp_path, case, land_sea_mask=lsm, regions=LAND)
    out = tmp_path / "out"
    _assert_numpy(case, _run(cfg, out), LAND)
    write_land_sea_mask(case_b, lsm)
    _assert_numpy(case_b, _run(cfg, out), LAND)


def test_truth_own_mask_rewritten(tmp_path):
    """Variant: no mask in the config: the truth store's own land_sea_mask changes (the truth
    rewritten in place with the same fields and a new mask)."""
    case = write_all(_case(), tmp_path)
    case_b = _with(case, land_sea_mask=1.0 - case.land_sea_mask)
    cfg = _config(tmp_path, case, regions=LAND + ["global"])
    out = tmp_path / "out"
    _assert_numpy(case, _run(cfg, out), LAND + ["global"])
    write_truth(case_b, Path(case.paths["truth"]))
    _assert_numpy(case_b, _run(cfg, out), LAND + ["global"])


def test_mask_fingerprint_is_values_and_source():
    """Unit: the fingerprint follows the mask's values, its source and nothing else."""
    import tempfile

    case = _case()
    with tempfile.TemporaryDirectory() as tmp:
        a = write_land_sea_mask(case, Path(tmp) / "a.zarr")
        a2 = write_land_sea_mask(case, Path(tmp) / "a2.zarr")
        truth = loaders.StoreSpec.make(write_truth(case, Path(tmp) / "t.zarr", with_lsm=False),
                                       "truth", "truth")
        spec = loaders.StoreSpec.make(a, "static", "lsm")
        fp = store.land_sea_mask_fingerprint(truth, spec)
        assert fp == store.land_sea_mask_fingerprint(truth, spec)
        assert fp != store.land_sea_mask_fingerprint(
            truth, loaders.StoreSpec.make(a2, "static", "lsm"))  # another file
        assert store.land_sea_mask_fingerprint(truth, None) == "none"  # truth has no mask
        case.land_sea_mask[0, 0] = np.nextafter(case.land_sea_mask[0, 0], 2.0)
        write_land_sea_mask(case, Path(a))
        loaders.clear_cache()
        assert store.land_sea_mask_fingerprint(truth, spec) != fp  # one value, one ulp


# -- region definitions and the grid ---------------------------------------------------------


def test_custom_region_bounds_changed(tmp_path):
    case = write_all(_case(), tmp_path)
    box_a = {"box": {"lat": [-30.0, 50.0], "lon": [300.0, 40.0]}}
    box_b = {"box": {"lat": [0.0, 70.0], "lon": [10.0, 100.0]}}
    out = tmp_path / "out"
    regions = ["box", "global"]
    first = _run(_config(tmp_path, case, regions=regions, custom_regions=box_a), out)
    _assert_numpy(case, first, regions, custom=box_a)
    second = _run(_config(tmp_path, case, regions=regions, custom_regions=box_b), out)
    assert second.computed_fields > 0
    _assert_numpy(case, second, regions, custom=box_b)


def test_custom_region_land_flag_changed(tmp_path):
    """Variant: the same box, now weighted by the land fraction."""
    case = write_all(_case(), tmp_path)
    box = {"lat": [-60.0, 60.0], "lon": [0.0, 180.0]}
    out = tmp_path / "out"
    _assert_numpy(case, _run(_config(tmp_path, case, regions=["box"],
                                     custom_regions={"box": box}), out),
                  ["box"], custom={"box": box})
    land = {"box": {**box, "land": True}}
    _assert_numpy(case, _run(_config(tmp_path, case, regions=["box"], custom_regions=land), out),
                  ["box"], custom=land)


def test_grid_latitudes_changed_in_place(tmp_path):
    """All three stores rewritten in place on other latitudes (same shape and values): the
    area weights and region masks change, and so must the numbers."""
    case = write_all(_case(), tmp_path)
    regions = ["global", "tropics", "northern-hemisphere", "global_land"]
    out = tmp_path / "out"
    cfg = _config(tmp_path, case, regions=regions)
    _assert_numpy(case, _run(cfg, out), regions)
    nlat = len(case.latitude)
    moved = _with(case, latitude=-90 + 180 / nlat * (np.arange(nlat) + 0.5))  # no poles
    _differs(case, moved, "tropics")
    write_truth(moved, Path(case.paths["truth"]))
    write_climatology(moved, Path(case.paths["climatology"]))
    write_forecast(moved, Path(case.paths["forecast"]))
    _assert_numpy(moved, _run(cfg, out), regions)


# -- levels ----------------------------------------------------------------------------------


def test_forecast_levels_relabelled(tmp_path):
    """The forecast's level labels swapped (data at 500 now labelled 850): each forecast level
    is matched to another truth level; the numbers follow."""
    case = write_all(_case(), tmp_path)
    out = tmp_path / "out"
    cfg = _config(tmp_path, case, regions=["global"], variables=["temperature"])
    _assert_numpy(case, _run(cfg, out), ["global"], variables=["temperature"])
    write_forecast(_with(case, levels=case.levels[::-1]), Path(case.paths["forecast"]))
    fc = dict(case.forecast)
    fc["temperature"] = fc["temperature"][:, :, ::-1].copy()
    swapped = _with(case, forecast=fc)  # the same store, seen on the truth's level order
    _assert_numpy(swapped, _run(cfg, out), ["global"], variables=["temperature"])


def test_level_matching_is_in_the_key(tmp_path):
    """Unit: the key changes with the truth level a forecast level is matched to and with
    exact level values (850.9 is not 850, as it was when levels were truncated), and a level
    *selection* keeps it (parts are indexed by level)."""
    case = write_all(_case(), tmp_path)
    truth = loaders.StoreSpec.make(case.paths["truth"], "truth", "truth")

    def key(levels):
        return store.entry_key("f", truth, None, "temperature", False, levels=levels)

    assert key([[500.0, 500.0, None], [850.0, 850.0, None]]) != key(
        [[500.0, 500.0, None], [850.0, 925.0, None]])
    assert key(None) != key([[500.0, 500.0, None]])
    assert store.entry_key("f", truth, None, "t", False, recipe="sqrt(u^2+v^2)") != store.entry_key(
        "f", truth, None, "t", False)
    ds = loaders.open_store(truth)
    for values in ([500.0, 850.0], [500.0, 850.9]):
        moved = ds.assign_coords(level=values)
        path = tmp_path / f"t{values[1]}.zarr"
        moved.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    fp = [store.store_fingerprint(loaders.StoreSpec.make(str(tmp_path / f"t{v}.zarr"), "truth",
                                                         "t"), "temperature")
          for v in (850.0, 850.9)]
    assert fp[0] != fp[1]
    # The level pairs of a plan, and a level selection keeping the key.
    from wxeval.config import load_config
    from wxeval.plan import make_plan
    from wxeval.store import entry_keys

    both = make_plan(load_config(_config(tmp_path, case, name="a.yaml")), ["model"])
    one = make_plan(load_config(_config(tmp_path, case, name="b.yaml", levels=[500])), ["model"])
    m = both.models[0]
    assert m.level_pairs["temperature"] == [[500.0, 500.0, 500.0], [850.0, 850.0, 850.0]]
    assert m.level_pairs["2m_temperature"] is None
    assert entry_keys(both) == entry_keys(one)


def test_level_selection_keeps_the_entry(tmp_path):
    """Not in the key: scoring 500 and 850 hPa, then 500 hPa only, computes nothing."""
    case = write_all(_case(), tmp_path)
    out = tmp_path / "out"
    first = _run(_config(tmp_path, case, regions=["global"], variables=["temperature"]), out)
    second = _run(_config(tmp_path, case, regions=["global"], variables=["temperature"],
                          levels=[500]), out)
    assert first.computed_fields > 0 and second.computed_fields == 0 < second.reused_fields
    assert list(second.tables["model"]["level"].values) == [500]
    _assert_numpy(case, first, ["global"], variables=["temperature"])


# -- the other inputs ------------------------------------------------------------------------


def test_climatology_changed(tmp_path):
    case = write_all(_case(), tmp_path)
    out = tmp_path / "out"
    _assert_numpy(case, _run(_config(tmp_path, case, regions=["global"]), out), ["global"])
    clim = {k: v * 1.01 for k, v in case.climatology.items()}
    other = _with(case, climatology=clim)
    write_climatology(other, tmp_path / "clim_b.zarr")
    _assert_numpy(other, _run(_config(tmp_path, other, regions=["global"]), out), ["global"])


def test_forecast_and_truth_stores_changed(tmp_path):
    """Another forecast store, then another truth store, under the same model name."""
    case = write_all(_case(), tmp_path)
    out = tmp_path / "out"
    _assert_numpy(case, _run(_config(tmp_path, case, regions=["global"]), out), ["global"])
    fc = {k: v + 0.5 for k, v in case.forecast.items()}
    other_fc = _with(case, forecast=fc)
    other_fc.paths.pop("forecast")
    write_forecast(other_fc, tmp_path / "model_b.zarr")
    _assert_numpy(other_fc, _run(_config(tmp_path, other_fc, regions=["global"]), out),
                  ["global"])
    truth = {k: v - 0.25 for k, v in case.truth.items()}
    other_truth = _with(other_fc, truth=truth)
    write_truth(other_truth, tmp_path / "truth_b.zarr")
    _assert_numpy(other_truth, _run(_config(tmp_path, other_truth, regions=["global"]), out),
                  ["global"])


def test_skipna_changed(tmp_path):
    case = _case()
    case.forecast["2m_temperature"][1, 1, 2, 3] = np.nan
    write_all(case, tmp_path)
    out = tmp_path / "out"
    lead = case.lead_times[1].to_timedelta64()
    first = _run(_config(tmp_path, case, regions=["global"], variables=["2m_temperature"]), out)
    assert np.isnan(float(first.tables["model"]["2m_temperature"].sel(
        region="global", lead_time=lead, metric="rmse")))
    second = _run(_config(tmp_path, case, regions=["global"], variables=["2m_temperature"],
                          skipna=True), out)
    got = float(second.tables["model"]["2m_temperature"].sel(
        region="global", lead_time=lead, metric="rmse"))
    w = ref_region_weights(case, "global")
    mse = []
    for i, t in enumerate(case.init_times):
        f = case.forecast["2m_temperature"][i, 1]
        o = case.truth_at("2m_temperature", t + case.lead_times[1])
        ok = ~np.isnan(f)
        mse.append(np.sum(w[ok] * (f[ok] - o[ok]) ** 2) / w[ok].sum())
    assert got == pytest.approx(np.sqrt(np.mean(mse)), rel=1e-10)


def test_entries_of_an_older_key_definition_are_not_read(tmp_path, monkeypatch):
    """A statistics folder written under another key definition (as by wxeval before this
    key): not read, no crash, everything recomputed, the numbers NumPy's."""
    case = write_all(_case(), tmp_path)
    out = tmp_path / "out"
    cfg = _config(tmp_path, case, regions=["global", "global_land"])
    monkeypatch.setattr(store, "KEY_VERSION", 1)
    old = _run(cfg, out)
    monkeypatch.undo()
    new = _run(cfg, out)
    assert new.reused_fields == 0 and new.computed_fields == old.computed_fields > 0
    _assert_numpy(case, new, ["global", "global_land"])
    keys = sorted(p.name for p in (out / "statistics" / "model" / "2m_temperature").iterdir())
    assert len(keys) == 2  # both entries kept side by side, never mixed
