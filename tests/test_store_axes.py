"""Store axes that once gave silent wrong numbers or internal errors (issue 11), for both
``wxeval check`` and ``wxeval score``: scalar and fractional levels, Pa vs hPa, duplicated
leads/times/levels/labels, NaT on a time axis, extra dims, and holes inside the truth under
``missing_truth: pending``/``skip``.

Every case asserts ``check`` and ``score`` alike (exit code and message: they share one
validation path, :func:`wxeval.plan.select_fields` and :func:`wxeval.schema.normalize`), and
every scored case compares with hand-written NumPy (``builders.ref_metrics``) on the small
in-memory arrays.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from builders import case_subset, make_case, ref_metrics, ref_region_weights, write_all
from test_cli_errors import EXIT_DATA, run_in_process

from wxeval.api import score
from wxeval.check import run_checks
from wxeval.config import load_config
from wxeval.levels import LevelMatch, StoredLevel
from wxeval.loaders import clear_cache
from wxeval.plan import make_plan

LEVELS = (500, 850)


@dataclasses.dataclass
class Stores:
    root: Path
    case: object


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> Stores:
    root = tmp_path_factory.mktemp("axes")
    case = make_case(nlat=5, nlon=8, n_inits=4, leads_h=(0, 6, 12), levels=LEVELS,
                     variables=("temperature", "2m_temperature"), dtype=np.float64, seed=3)
    write_all(case, root)
    return Stores(root, case)


def rewrite(src: str | Path, dst: Path, fn) -> str:
    ds = xr.open_zarr(src, decode_timedelta=True).load()
    for v in ds.variables.values():
        v.encoding = {}
    fn(ds).to_zarr(dst, mode="w", zarr_format=2, consolidated=True)
    return str(dst)


def config(s: Stores, tmp_path: Path, model: str | None = None, truth: str | None = None,
           clim: str | None = None, name: str = "cfg.yaml", **evaluation) -> Path:
    cfg = {
        "truth": {"path": truth or s.case.paths["truth"]},
        "climatology": {"path": clim or s.case.paths["climatology"]},
        "models": {"model": {"path": model or s.case.paths["forecast"]}},
        "evaluation": {"regions": ["global"], **evaluation},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def check_and_score(cfg: Path, out: Path):
    chk = run_in_process("check", "--config", cfg, "--all")
    res = run_in_process("score", "--config", cfg, "--output", out, "--model", "model")
    return chk, res


def assert_both_refuse(cfg: Path, out: Path, *fragments: str) -> None:
    """check exits 3 with an error line holding ``fragments``; score exits 3 with the same
    fragments on its one stderr line and writes no result."""
    chk, res = check_and_score(cfg, out)
    assert chk.code == EXIT_DATA, chk.stdout + chk.stderr
    errors = [ln for ln in chk.stdout.splitlines() if ln.startswith("error:")]
    assert any(all(f in ln for f in fragments) for ln in errors), chk.stdout
    assert res.code == EXIT_DATA, res.stdout + res.stderr
    line = res.stderr.strip()
    assert "\n" not in line and line.startswith("wxeval: error:"), res.stderr
    assert all(f in line for f in fragments), line
    assert not (out / "model.nc").exists()


def assert_check_clean(cfg: Path) -> None:
    chk = run_in_process("check", "--config", cfg, "--all")
    assert chk.code == 0, chk.stdout + chk.stderr
    assert not any(ln.startswith("error:") for ln in chk.stdout.splitlines()), chk.stdout


def rmse(table, var, lead, level=None) -> float:
    da = table[var].sel(metric="rmse", region="global", lead_time=lead)
    return float(da.sel(level=level) if level is not None else da)


def assert_rmse_matches_numpy(case, table, var, level_index, level=None) -> None:
    w = ref_region_weights(case, "global")
    for li, lead in enumerate(case.lead_times):
        expected = ref_metrics(case, var, w, level_index, li)["rmse"]
        got = rmse(table, var, lead.to_timedelta64(), level)
        assert abs(got - expected) <= 1e-10 * abs(expected), (var, level, lead, got, expected)


# -- 1. a scalar level coordinate is a one-level store matched by its value -----------------


def test_scalar_level_forecast_is_scored_at_its_level(stores, tmp_path):
    """Written from ``ds.sel(level=850)``: scored at 850 hPa (not the truth's first level), the
    CSV says 850, 2 m temperature (carrying the same scalar coordinate) stays a surface field."""
    s = stores
    fc = rewrite(s.case.paths["forecast"], tmp_path / "s850.zarr", lambda ds: ds.sel(level=850))
    cfg = config(s, tmp_path, fc)
    assert_check_clean(cfg)
    res = run_in_process("score", "--config", cfg, "--output", tmp_path / "out", "--model",
                         "model")
    assert res.code == 0, res.stderr
    table = score(cfg, ["model"]).tables["model"]
    assert list(table["temperature"].level.values) == [850]
    assert "level" not in table["2m_temperature"].dims
    assert_rmse_matches_numpy(s.case, table, "temperature", 1, level=850)
    assert_rmse_matches_numpy(s.case, table, "2m_temperature", None)
    rows = list(csv.DictReader((tmp_path / "out" / "model.csv").open()))
    assert {r["level"] for r in rows if r["variable"] == "temperature"} == {"850"}
    assert {r["level"] for r in rows if r["variable"] == "2m_temperature"} == {""}


def test_scalar_level_forecast_against_a_truth_without_that_level(stores, tmp_path):
    """The reported case: truth (and climatology) at 500 hPa only, forecast at 850: refused by
    check and score alike (was: scored against 500 hPa, exit 0, check clean)."""
    s = stores
    fc = rewrite(s.case.paths["forecast"], tmp_path / "s850.zarr", lambda ds: ds.sel(level=850))
    truth = rewrite(s.case.paths["truth"], tmp_path / "t500.zarr",
                    lambda ds: ds.sel(level=[500]))
    clim = rewrite(s.case.paths["climatology"], tmp_path / "c500.zarr",
                   lambda ds: ds.sel(level=[500]))
    cfg = config(s, tmp_path, fc, truth=truth, clim=clim)
    assert_both_refuse(cfg, tmp_path / "out", "s850.zarr", "'temperature'", "shares no level",
                       "850 hPa (a scalar level coordinate)", "truth [500] hPa")


def test_scalar_level_truth_matched_by_value(stores, tmp_path):
    """Variant: the truth is the one-level store (``sel(level=500)``); a two-level forecast is
    scored at 500 hPa only, equal to NumPy at 500."""
    s = stores
    truth = rewrite(s.case.paths["truth"], tmp_path / "t500s.zarr", lambda ds: ds.sel(level=500))
    cfg = config(s, tmp_path, truth=truth)
    assert_check_clean(cfg)
    table = score(cfg, ["model"]).tables["model"]
    assert list(table["temperature"].level.values) == [500]
    assert_rmse_matches_numpy(s.case, table, "temperature", 0, level=500)
    m = make_plan(load_config(cfg), ["model"]).models[0]
    assert m.level_matches["temperature"] == (LevelMatch(
        500, StoredLevel(500.0, "hPa", False), StoredLevel(500.0, "hPa", True),
        StoredLevel(500.0, "hPa", False)),)
    assert m.level_pairs["temperature"] == [[500.0, 500.0, 500.0], [850.0, None, 850.0]]


def test_scalar_levels_of_both_stores_that_differ_are_refused(stores, tmp_path):
    """Variant: forecast ``sel(level=850)``, truth ``sel(level=500)``: neither has a level
    dimension, and temperature at 850 must not be compared with temperature at 500."""
    s = stores
    fc = rewrite(s.case.paths["forecast"], tmp_path / "s850.zarr", lambda ds: ds.sel(level=850))
    truth = rewrite(s.case.paths["truth"], tmp_path / "t500s.zarr", lambda ds: ds.sel(level=500))
    cfg = config(s, tmp_path, fc, truth=truth, variables=["temperature"])
    assert_both_refuse(cfg, tmp_path / "out", "s850.zarr", "'temperature'",
                       "nothing to compare")


def test_scalar_level_with_a_level_selection_it_lacks(stores, tmp_path):
    """Variant: ``levels: [500]`` asked of a forecast at 850 only: named, with its level."""
    s = stores
    fc = rewrite(s.case.paths["forecast"], tmp_path / "s850.zarr", lambda ds: ds.sel(level=850))
    cfg = config(s, tmp_path, fc, levels=[500], variables=["temperature"])
    assert_both_refuse(cfg, tmp_path / "out", "s850.zarr", "lacks level 500 hPa",
                       "850 hPa (a scalar level coordinate)")


# -- 2. fractional levels: exact matching, never truncated ----------------------------------


@pytest.mark.parametrize("levels, bad", [([500.0, 850.9], "850.9"), ([7.0, 7.5], "7.5")])
def test_fractional_forecast_levels_are_refused(stores, tmp_path, levels, bad):
    s = stores
    fc = rewrite(s.case.paths["forecast"], tmp_path / "frac.zarr",
                 lambda ds: ds.assign_coords(level=levels))
    assert_both_refuse(config(s, tmp_path, fc), tmp_path / "out", "frac.zarr",
                       f"level(s) {bad} hPa are not whole hPa", "never rounds or truncates")


def test_fractional_truth_levels_are_refused(stores, tmp_path):
    """Variant: the truth's levels are the fractional ones (500.4 would have been 500)."""
    s = stores
    truth = rewrite(s.case.paths["truth"], tmp_path / "tfrac.zarr",
                    lambda ds: ds.assign_coords(level=[500.4, 850.0]))
    assert_both_refuse(config(s, tmp_path, truth=truth), tmp_path / "out", "tfrac.zarr",
                       "level(s) 500.4 hPa are not whole hPa")


@pytest.mark.parametrize("levels", [[500.0, 850.9], [50000, 85000], [850, 850]])
def test_refused_levels_do_not_block_the_surface_variables(stores, tmp_path, levels):
    """Variant: a store whose levels are refused (fractional, Pa without units, twice) still
    scores its surface variables when only those are selected (check clean, NumPy values);
    selecting temperature too is refused by both."""
    s = stores
    fc = rewrite(s.case.paths["forecast"], tmp_path / "bad_levels.zarr",
                 lambda ds: ds.assign_coords(level=levels))
    cfg = config(s, tmp_path, fc, variables=["2m_temperature"])
    assert_check_clean(cfg)
    table = score(cfg, ["model"]).tables["model"]
    assert_rmse_matches_numpy(s.case, table, "2m_temperature", None)
    cfg = config(s, tmp_path, fc, name="both.yaml", variables=["2m_temperature", "temperature"])
    assert_both_refuse(cfg, tmp_path / "out", "bad_levels.zarr", "level(s)")


def test_float_levels_within_tolerance_score_like_integers(stores, tmp_path):
    """Variant: levels stored as floats 500.0 and 850.0000000001 (within 1e-6 hPa) are the
    whole hPa 500 and 850: the same numbers as NumPy."""
    s = stores
    fc = rewrite(s.case.paths["forecast"], tmp_path / "float.zarr",
                 lambda ds: ds.assign_coords(level=[500.0, 850.0000000001]))
    cfg = config(s, tmp_path, fc)
    assert_check_clean(cfg)
    table = score(cfg, ["model"]).tables["model"]
    for i, lv in enumerate(LEVELS):
        assert_rmse_matches_numpy(s.case, table, "temperature", i, level=lv)


# -- 3. Pa vs hPa ----------------------------------------------------------------------------


def test_levels_in_pa_without_units_are_refused_with_the_hint(stores, tmp_path):
    s = stores
    fc = rewrite(s.case.paths["forecast"], tmp_path / "pa.zarr",
                 lambda ds: ds.assign_coords(level=[50000, 85000]))
    assert_both_refuse(config(s, tmp_path, fc), tmp_path / "out", "pa.zarr",
                       "level(s) 50000, 85000 cannot be hPa", "in Pa?", "units attribute")


def levels_in_pa(s: Stores, tmp_path: Path, store: str, name: str, levels: list,
                 units: str) -> tuple[str, Path]:
    """Copy ``store`` to ``name`` with its levels relabelled ``levels`` (Pa) and the level
    ``units`` attribute set; assert the check is clean. Returns the store's path and config."""

    def to_pa(ds):
        ds = ds.assign_coords(level=levels)
        ds["level"].attrs["units"] = units
        return ds

    path = rewrite(s.case.paths[store], tmp_path / name, to_pa)
    cfg = config(s, tmp_path, path) if store == "forecast" else config(s, tmp_path, truth=path)
    assert_check_clean(cfg)
    return path, cfg


def test_levels_in_pa_with_units_are_converted(stores, tmp_path, caplog):
    """Declared Pa (``units: Pa``) is divided by 100, logged, scored as NumPy at 500/850 hPa;
    the plan records the stored level each scored level was matched to."""
    s = stores
    fc, cfg = levels_in_pa(s, tmp_path, "forecast", "pa_units.zarr", [50000, 85000], "Pa")
    clear_cache()  # opened (and logged) by the check: open it afresh
    with caplog.at_level(logging.INFO, logger="wxeval"):
        table = score(cfg, ["model"]).tables["model"]
    assert any("converted to hPa" in r.getMessage() and "pa_units.zarr" in r.getMessage()
               for r in caplog.records)
    for i, lv in enumerate(LEVELS):
        assert_rmse_matches_numpy(s.case, table, "temperature", i, level=lv)
    plan = make_plan(load_config(cfg), ["model"])
    matches = plan.models[0].level_matches
    assert matches["2m_temperature"] is None
    assert matches["temperature"][1] == LevelMatch(
        850, StoredLevel(85000.0, "Pa", False), StoredLevel(850.0, "hPa", False),
        StoredLevel(850.0, "hPa", False))
    assert json.dumps([m.key() for m in matches["temperature"]])  # JSON-able for a key
    # Every forecast level as stored, matched or not selected: the same for a level selection.
    expected_pairs = [[50000.0, 500.0, 500.0], [85000.0, 850.0, 850.0]]
    assert plan.models[0].level_pairs == {"temperature": expected_pairs, "2m_temperature": None}
    only_850 = make_plan(load_config(config(s, tmp_path, fc, name="850.yaml", levels=[850])),
                         ["model"]).models[0]
    assert [m.level for m in only_850.level_matches["temperature"]] == [850]
    assert only_850.level_pairs["temperature"] == expected_pairs


def test_truth_levels_in_pa_with_units_are_converted(stores, tmp_path):
    """Variant: the truth is the store in Pa (declared): the same numbers."""
    s = stores
    _, cfg = levels_in_pa(s, tmp_path, "truth", "tpa.zarr", [50000.0, 85000.0], "pascal")
    table = score(cfg, ["model"]).tables["model"]
    assert_rmse_matches_numpy(s.case, table, "temperature", 1, level=850)


def test_levels_off_by_a_factor_of_100_get_the_pa_hint(stores, tmp_path):
    """Variant: forecast levels 5 and 8 (hPa as far as anyone can tell): no level shared, and
    the message points at Pa vs hPa."""
    s = stores
    fc = rewrite(s.case.paths["forecast"], tmp_path / "small.zarr",
                 lambda ds: ds.assign_coords(level=[5, 8]))
    assert_both_refuse(config(s, tmp_path, fc), tmp_path / "out", "small.zarr",
                       "shares no level", "factor of 100", "Pa vs hPa")


# -- 4. duplicated axis values ---------------------------------------------------------------


def test_duplicated_lead_values_are_refused(stores, tmp_path):
    s = stores
    fc = rewrite(s.case.paths["forecast"], tmp_path / "duplead.zarr",
                 lambda ds: ds.assign_coords(
                     prediction_timedelta=ds.prediction_timedelta.values[[0, 1, 1]]))
    assert_both_refuse(config(s, tmp_path, fc), tmp_path / "out", "duplead.zarr",
                       "duplicated lead time(s) 6h")


def test_duplicated_truth_times_are_refused(stores, tmp_path):
    s = stores

    def dup(ds):
        t = ds.time.values.copy()
        t[3] = t[2]
        return ds.assign_coords(time=t)

    truth = rewrite(s.case.paths["truth"], tmp_path / "tdup.zarr", dup)
    assert_both_refuse(config(s, tmp_path, truth=truth), tmp_path / "out", "tdup.zarr",
                       "duplicated times in the truth store")


def test_duplicated_levels_are_refused(stores, tmp_path):
    """Variant: 850 stored twice (e.g. 850 and 850.0000001) in the forecast."""
    s = stores
    fc = rewrite(s.case.paths["forecast"], tmp_path / "duplev.zarr",
                 lambda ds: ds.assign_coords(level=[850.0, 850.0000001]))
    assert_both_refuse(config(s, tmp_path, fc), tmp_path / "out", "duplev.zarr",
                       "level(s) [850] hPa stored more than once")


def test_duplicated_climatology_labels_are_refused(stores, tmp_path):
    s = stores
    clim = rewrite(s.case.paths["climatology"], tmp_path / "cdup.zarr",
                   lambda ds: ds.assign_coords(hour=[0, 6, 6, 18]))
    assert_both_refuse(config(s, tmp_path, clim=clim), tmp_path / "out", "cdup.zarr",
                       "duplicated hour label(s) [6]")


# -- 5. NaT on a time axis -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("store", "axis", "position", "name", "fragments"),
    [
        ("forecast", "time", 2, "nat.zarr",
         ("init time axis holds NaT", "position(s) 2 (0-based")),
        ("truth", "time", -1, "tnat.zarr",
         ("time axis holds NaT", "position(s) {last} (0-based, as stored) of {n}")),
        ("forecast", "prediction_timedelta", 1, "leadnat.zarr",
         ("lead time axis holds NaT", "position(s) 1")),
    ],
    ids=["init", "truth-time", "lead"],
)
def test_nat_on_a_time_axis_names_store_and_position(stores, tmp_path, store, axis, position,
                                                      name, fragments):
    """A NaT on the forecast's init or lead axis or the truth's time axis is refused; ``{n}``
    and ``{last}`` in a fragment are the truth's time count and its last position."""
    s = stores

    def nat(ds):
        t = ds[axis].values.copy()
        t[position] = np.datetime64("NaT") if axis == "time" else np.timedelta64("NaT")
        return ds.assign_coords({axis: t})

    path = rewrite(s.case.paths[store], tmp_path / name, nat)
    cfg = config(s, tmp_path, path) if store == "forecast" else config(s, tmp_path, truth=path)
    n = len(s.case.truth_times)
    assert_both_refuse(cfg, tmp_path / "out", name,
                       *(f.format(n=n, last=n - 1) for f in fragments))


# -- 6. extra dimensions: check says what score does -----------------------------------------


def refuse_extra_dimension(s: Stores, tmp_path: Path, store: str, var: str, dim: str,
                           name: str, values: tuple[int, ...] = (0, 1)) -> tuple[Path, str]:
    """Copy ``store`` to ``name`` with ``var`` given an extra dimension ``dim`` (``values``);
    assert check and score both refuse it naming the store, variable and dimension. Returns the
    config and the rewritten store's path."""

    def extra(ds):
        ds[var] = ds[var].expand_dims({dim: list(values)}).copy()
        return ds

    path = rewrite(s.case.paths[store], tmp_path / name, extra)
    cfg = config(s, tmp_path, path) if store == "forecast" else config(s, tmp_path, truth=path)
    assert_both_refuse(cfg, tmp_path / "out", name, var, f"unexpected dimension(s) ['{dim}']")
    return cfg, path


def test_extra_forecast_dimension_check_says_what_score_does(stores, tmp_path):
    """A dimension neither scored nor ensemble members (``number`` is: an ensemble store)."""
    cfg, _ = refuse_extra_dimension(stores, tmp_path, "forecast", "2m_temperature", "height",
                                    "ens.zarr")
    # One shared validation: the check's error line is score's message word for word.
    chk, res = check_and_score(cfg, tmp_path / "out2")
    msg = res.stderr.strip().removeprefix("wxeval: error:").strip()
    assert any(ln.endswith(msg) for ln in chk.stdout.splitlines() if ln.startswith("error:"))


def test_extra_dimension_in_the_truth_is_refused(stores, tmp_path):
    """Variant: ERA5's ``expver`` dimension left on the truth's temperature."""
    cfg, truth = refuse_extra_dimension(stores, tmp_path, "truth", "temperature", "expver",
                                        "texp.zarr", values=(1, 5))
    found = [f for f in run_checks(load_config(cfg), ["model"]).findings if f.code == "schema"]
    assert [f.store for f in found] == [f"truth ({truth})"]  # the store concerned, not the model


def test_extra_dimension_of_an_unselected_variable_is_not_an_error(stores, tmp_path):
    """Variant: the variable with the extra dimension is not selected: check and score both go
    ahead."""
    s = stores

    def ens(ds):
        ds["2m_temperature"] = ds["2m_temperature"].expand_dims(height=[0, 1]).copy()
        return ds

    fc = rewrite(s.case.paths["forecast"], tmp_path / "ens.zarr", ens)
    cfg = config(s, tmp_path, fc, variables=["temperature"])
    assert_check_clean(cfg)
    table = score(cfg, ["model"]).tables["model"]
    assert_rmse_matches_numpy(s.case, table, "temperature", 0, level=500)


# -- 7. holes inside the truth are not pending -----------------------------------------------


def _truth_without(s: Stores, tmp_path: Path, drop, name: str) -> str:
    times = pd.DatetimeIndex(s.case.truth_times)
    return rewrite(s.case.paths["truth"], tmp_path / name,
                   lambda ds: ds.drop_sel(time=times[drop]))


def _needing(case, valid_times) -> np.ndarray:
    """Indices of the inits that need any of ``valid_times`` (hand-computed, by loops)."""
    need = []
    for i, t in enumerate(case.init_times):
        if any(t + lead in set(pd.DatetimeIndex(valid_times)) for lead in case.lead_times):
            need.append(i)
    return np.array(need, dtype=int)


def test_hole_inside_the_truth_is_an_error_under_pending(stores, tmp_path):
    s = stores
    hole = pd.DatetimeIndex(s.case.truth_times)[4]  # inside: not the first nor the last
    truth = _truth_without(s, tmp_path, [4], "hole.zarr")
    cfg = config(s, tmp_path, truth=truth, missing_truth="pending")
    assert_both_refuse(cfg, tmp_path / "out", "hole.zarr", "inside its range",
                       hole.strftime("%Y-%m-%dT%H:%M"), "missing_truth: skip")


def test_hole_inside_the_truth_skipped_when_asked(stores, tmp_path, caplog):
    """``missing_truth: skip``: the inits needing the hole are skipped, listed in the manifest
    and a warning; the others are scored exactly as NumPy over them."""
    s = stores
    truth_times = pd.DatetimeIndex(s.case.truth_times)
    truth = _truth_without(s, tmp_path, [4], "hole.zarr")
    cfg = config(s, tmp_path, truth=truth, missing_truth="skip")
    skipped = _needing(s.case, truth_times[[4]])
    assert 0 < len(skipped) < len(s.case.init_times)
    chk = run_in_process("check", "--config", cfg, "--all")
    assert chk.code == 0, chk.stdout
    assert any(ln.startswith("warning: [truth-coverage]") and "skipped" in ln
               for ln in chk.stdout.splitlines()), chk.stdout
    res = run_in_process("score", "--config", cfg, "--output", tmp_path / "out", "--model",
                         "model")
    assert res.code == 0, res.stderr
    assert f"model: {len(skipped)} init(s) skipped" in res.stdout
    manifest = json.loads((tmp_path / "out" / "model.json").read_text())
    assert [pd.Timestamp(t) for t in manifest["skipped_init_times"]] == list(
        s.case.init_times[skipped])
    assert manifest["pending_init_times"] == []
    with caplog.at_level(logging.WARNING, logger="wxeval"):
        report = score(cfg, ["model"])
    assert any("skipped" in r.getMessage() for r in caplog.records)
    kept = np.setdiff1d(np.arange(len(s.case.init_times)), skipped)
    sub = case_subset(s.case, kept)
    assert_rmse_matches_numpy(sub, report.tables["model"], "temperature", 1, level=850)


def test_truth_starting_after_the_first_valid_time_is_not_pending(stores, tmp_path):
    """Variant: the truth lacks its *first* time (before, not after, the truth's range):
    missing data, not truth yet to come."""
    s = stores
    first = pd.DatetimeIndex(s.case.truth_times)[0]
    truth = _truth_without(s, tmp_path, [0], "late_start.zarr")
    cfg = config(s, tmp_path, truth=truth, missing_truth="pending")
    assert_both_refuse(cfg, tmp_path / "out", "late_start.zarr", "inside its range",
                       first.strftime("%Y-%m-%dT%H:%M"))


def test_truth_ending_early_is_still_pending(stores, tmp_path):
    """Variant (the intended use): truth ending early leaves inits pending, exit 0; the scored
    inits equal NumPy over them."""
    s = stores
    truth_times = pd.DatetimeIndex(s.case.truth_times)
    n = len(truth_times)
    truth = _truth_without(s, tmp_path, list(range(n - 4, n)), "short.zarr")
    cfg = config(s, tmp_path, truth=truth, missing_truth="pending")
    waiting = _needing(s.case, truth_times[n - 4:])
    assert 0 < len(waiting) < len(s.case.init_times)
    chk = run_in_process("check", "--config", cfg, "--all")
    assert chk.code == 0 and "stay pending" in chk.stdout, chk.stdout
    report = score(cfg, ["model"])
    np.testing.assert_array_equal(report.pending["model"], s.case.init_times[waiting].values)
    kept = np.setdiff1d(np.arange(len(s.case.init_times)), waiting)
    assert_rmse_matches_numpy(case_subset(s.case, kept), report.tables["model"],
                              "2m_temperature", None)


def test_missing_chunk_of_a_selected_pa_level_is_found(stores, tmp_path):
    """Variant: levels in (declared) Pa and ``levels: [850]``: the check lists the chunks of
    85000 Pa (not of a raw value 850 that the store does not hold) and finds the lost one."""
    s = stores
    ds = xr.open_zarr(s.case.paths["forecast"], decode_timedelta=True).load()
    for v in ds.variables.values():
        v.encoding = {}
    ds = ds.assign_coords(level=[50000, 85000])
    ds["level"].attrs["units"] = "Pa"
    per_level = {"temperature": {"chunks": (1, 1, 1, 8, 5)}}
    ds.to_zarr(tmp_path / "pa_chunks.zarr", zarr_format=2, consolidated=True,
               encoding=per_level)
    (tmp_path / "pa_chunks.zarr" / "temperature" / "0.0.1.0.0").unlink()  # 850 hPa, 1st init
    cfg = config(s, tmp_path, str(tmp_path / "pa_chunks.zarr"), levels=[850],
                 variables=["temperature"])
    assert_both_refuse(cfg, tmp_path / "out", "pa_chunks.zarr", "temperature",
                       "1 of 12 chunk file(s) needed are missing")


def test_hole_skips_persistence_inits(stores, tmp_path):
    """Variant: a baseline (persistence) under ``missing_truth: skip``: its inits are the
    truth's own times (the hole is no init), those verifying at the hole are skipped, check
    and score alike; the rest equals NumPy (f = truth at the init)."""
    s = stores
    truth_times = pd.DatetimeIndex(s.case.truth_times)
    truth = _truth_without(s, tmp_path, [4], "hole.zarr")  # 2020-02-28T00: an init time
    cfg_path = tmp_path / "persist.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "truth": {"path": truth},
        "climatology": {"path": s.case.paths["climatology"]},
        "models": {"model": {"kind": "persistence"}},
        "evaluation": {"regions": ["global"], "missing_truth": "skip",
                       "variables": ["2m_temperature"], "lead_times": ["6h", "12h"],
                       "init_times": {"start": "2020-02-27", "stop": "2020-02-28T12",
                                      "hours": [0, 12]}},
    }))
    chk = run_in_process("check", "--config", cfg_path, "--all")
    assert chk.code == 0 and "skipped" in chk.stdout, chk.stdout
    report = score(cfg_path, ["model"])
    hole = truth_times[4]
    # by hand: inits are the truth's 00/12 UTC times; skipped when t + 6 h or t + 12 h is the hole
    inits = [t for t in pd.date_range("2020-02-27", "2020-02-28T12", freq="12h") if t != hole]
    expect_skipped = [t for t in inits if hole in (t + pd.Timedelta("6h"),
                                                   t + pd.Timedelta("12h"))]
    assert len(expect_skipped) == 1
    assert list(pd.DatetimeIndex(report.skipped["model"])) == expect_skipped
    kept = [t for t in inits if t not in expect_skipped]
    w = ref_region_weights(s.case, "global")
    for lead in ("6h", "12h"):
        mse = [np.sum(w * (s.case.truth_at("2m_temperature", t)
                           - s.case.truth_at("2m_temperature", t + pd.Timedelta(lead))) ** 2)
               / np.sum(w) for t in kept]
        got = rmse(report.tables["model"], "2m_temperature", pd.Timedelta(lead).to_timedelta64())
        assert abs(got - np.sqrt(np.mean(mse))) <= 1e-10 * got
