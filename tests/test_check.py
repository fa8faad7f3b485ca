"""``wxeval check``: a clean report on good stores, and one named finding per broken variant.

Stores are tiny (5 x 8 grid, 4 inits, leads 0..48 h) and written once for the module; each
broken variant is a copy of the good forecast (or truth/climatology) with one defect. Every case
asserts the finding's severity and code, a specific message fragment, that it is one line, and
the exit code of ``wxeval check`` (3 when any error, else 0).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from builders import make_case, write_all, write_forecast
from typer.testing import CliRunner

from wxeval import check
from wxeval.check import Finding, climatology_period, plausibility, run_checks, units_verdict
from wxeval.cli import app
from wxeval.config import load_config

G0 = 9.80665


def rewrite(src: str | Path, dst: Path, fn) -> str:
    """Load a store, apply ``fn`` to the Dataset, write it to ``dst`` (one chunk per init/lead
    for forecasts)."""
    ds = xr.open_zarr(src, decode_timedelta=True).load()
    for v in ds.variables.values():
        v.encoding = {}
    ds = fn(ds)
    enc = {}
    if "prediction_timedelta" in ds.dims:
        for name, da in ds.data_vars.items():
            enc[name] = {"chunks": tuple(1 if d in ("time", "prediction_timedelta") else n
                                         for d, n in zip(da.dims, da.shape, strict=True))}
    ds.to_zarr(dst, mode="w", zarr_format=2, consolidated=True, encoding=enc)
    return str(dst)


@dataclasses.dataclass
class World:
    root: Path
    case: object
    paths: dict


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("check")
    case = make_case(nlat=5, nlon=8, n_inits=4, leads_h=(0, 6, 12, 24, 48))
    write_all(case, root)
    fc = case.paths["forecast"]
    p = {"good": rewrite(fc, root / "good.zarr", lambda ds: _fix_units(ds))}
    good = p["good"]

    def z_in_metres(ds):
        ds["geopotential"] = ds["geopotential"] / G0
        ds["geopotential"].attrs["units"] = "m"
        return ds

    def t_in_celsius(ds):
        ds["temperature"] = ds["temperature"] - 273.15
        ds["temperature"].attrs["units"] = "K"  # the attribute lies: the values tell
        return ds

    def lat_flipped_data(ds):
        for v in ds.data_vars:
            ds[v] = ds[v].isel(latitude=slice(None, None, -1)).assign_coords(
                latitude=ds.latitude.values)
        return ds

    def lat_other_coords(ds):
        return ds.assign_coords(latitude=np.linspace(80, -80, ds.sizes["latitude"]))

    def nan_chunk(ds):
        t = ds["temperature"]
        # first init, longest lead (48 h), northern rows only (latitude 45 and 90)
        t[dict(time=0, prediction_timedelta=-1)] = t[dict(time=0, prediction_timedelta=-1)].where(
            t.latitude < 20)
        return ds

    def duplicated(ds):
        times = ds.time.values.copy()
        times[2] = times[1]
        return ds.assign_coords(time=times)

    def unsorted(ds):
        return ds.isel(time=[2, 0, 3, 1])

    def fewer_inits(ds):
        return ds.isel(time=slice(1, None))

    def lead_hours_int(ds):
        return ds.assign_coords(
            prediction_timedelta=(ds.prediction_timedelta.values / np.timedelta64(1, "h"))
            .astype(int))

    def time_is_valid_time(ds):
        # f[t, l] holds the truth at t (not t + l): the time axis labels valid times.
        truth = xr.open_zarr(case.paths["truth"]).load()
        for v in ds.data_vars:
            at = truth[v].sel(time=ds.time.values).transpose(*[d for d in ds[v].dims
                                                             if d != "prediction_timedelta"])
            ds[v] = (ds[v] * 0 + at.expand_dims(prediction_timedelta=ds.prediction_timedelta)
                     .transpose(*ds[v].dims).values).astype(np.float32)
        return ds

    for name, fn in [
        ("z_metres", z_in_metres), ("t_celsius", t_in_celsius), ("lat_flipped", lat_flipped_data),
        ("lat_coords", lat_other_coords), ("nan_chunk", nan_chunk), ("duplicated", duplicated),
        ("unsorted", unsorted), ("fewer_inits", fewer_inits), ("lead_int", lead_hours_int),
        ("valid_time", time_is_valid_time),
    ]:
        p[name] = rewrite(good, root / f"{name}.zarr", lambda ds, fn=fn: fn(_fix_units(ds)))

    # A corrupted chunk (garbage bytes) and a truncated store (chunk files deleted).
    p["corrupt"] = str(root / "corrupt.zarr")
    shutil.copytree(good, p["corrupt"])
    (Path(p["corrupt"]) / "temperature" / "0.0.0.0.0").write_bytes(b"garbage" * 9)
    p["truncated"] = str(root / "truncated.zarr")
    shutil.copytree(good, p["truncated"])
    for key in ("3.0.0.0", "3.4.0.0"):
        (Path(p["truncated"]) / "2m_temperature" / key).unlink()
    p["no_zarray"] = str(root / "no_zarray.zarr")
    shutil.copytree(good, p["no_zarray"])
    (Path(p["no_zarray"]) / "temperature" / ".zarray").unlink()
    (Path(p["no_zarray"]) / ".zmetadata").unlink()

    clim = case.paths["climatology"]
    p["clim_2019_2021"] = rewrite(clim, root / "clim_attr.zarr",
                                  lambda ds: ds.assign_attrs(climatology_period="2019-2021"))
    p["clim_old"] = rewrite(clim, root / "1990-2019_6h_clim.zarr", lambda ds: ds)
    p["clim_named_2015"] = rewrite(clim, root / "2015-2020_6h_clim.zarr", lambda ds: ds)
    return World(root, case, p)


def _fix_units(ds):
    units = {"geopotential": "m**2 s**-2", "temperature": "K", "2m_temperature": "K",
             "10m_u_component_of_wind": "m s**-1", "10m_v_component_of_wind": "m s**-1"}
    for v, u in units.items():
        if v in ds:
            ds[v].attrs["units"] = u
    return ds


def config(world: World, tmp_path: Path, models: dict | None = None, clim: str | None = None,
           **evaluation) -> Path:
    cfg = {
        "truth": {"path": world.case.paths["truth"]},
        "climatology": {"path": clim or world.case.paths["climatology"]},
        "models": models or {"model": {"path": world.paths["good"]}},
    }
    if evaluation:
        cfg["evaluation"] = evaluation
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_check(path: Path, *extra: str):
    res = CliRunner().invoke(app, ["check", "--config", str(path), "--all", *extra])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res


def findings(world, tmp_path, **kw) -> list[Finding]:
    return run_checks(load_config(config(world, tmp_path, **kw)), ["model"] if "models" not in kw
                      else list(kw["models"])).findings


def only(found: list[Finding], severity: str, code: str) -> Finding:
    hits = [f for f in found if f.code == code and f.severity == severity]
    assert len(hits) >= 1, "\n".join(f.line() for f in found)
    assert "\n" not in hits[0].line()
    return hits[0]


# -- clean -------------------------------------------------------------------------------------


def test_good_stores_report_clean(world, tmp_path):
    path = config(world, tmp_path)
    res = run_check(path, "--output", str(tmp_path / "out"))
    assert res.exit_code == 0, res.stdout
    lines = res.stdout.strip().splitlines()
    assert lines[-1].startswith("check: clean"), res.stdout
    assert not any(ln.startswith(("error", "warning")) for ln in lines), res.stdout
    data = json.loads((tmp_path / "out" / "check.json").read_text())
    assert isinstance(data, list) and all(set(d) == {"severity", "code", "store", "variable",
                                                    "message"} for d in data)


def test_preflight_passes_on_good_stores(world, tmp_path):
    report = check.preflight(load_config(config(world, tmp_path)), ["model"])
    assert report.ok


# -- one broken variant, one named finding -----------------------------------------------------

CASES = {
    # name: (severity, code, variable, message fragment)
    "z_metres": ("error", "units", "geopotential", "'m'"),
    "t_celsius": ("error", "range", "temperature", "looks like °C"),
    "lat_flipped": ("error", "latitude-flipped", "", "upside down"),
    "lat_coords": ("error", "grid", "", "grids differ"),
    "nan_chunk": ("error", "nan", "temperature", "lead 48h"),
    "duplicated": ("error", "duplicate-inits", "", "1 duplicated init time"),
    "unsorted": ("warning", "unsorted-inits", "", "not sorted"),
    "lead_int": ("error", "lead-units", "", "expected timedelta64"),
    "corrupt": ("error", "read", "temperature", "cannot read a sample of 'temperature'"),
    "truncated": ("error", "missing-chunks", "2m_temperature", "2 of 20 chunk file(s)"),
    "no_zarray": ("error", "missing-metadata", "temperature", "no array metadata"),
}


@pytest.mark.parametrize("variant", sorted(CASES))
def test_broken_forecast_is_named(world, tmp_path, variant):
    severity, code, var, fragment = CASES[variant]
    path = config(world, tmp_path, models={"model": {"path": world.paths[variant]}})
    res = run_check(path)
    assert res.exit_code == (3 if severity == "error" else 0), res.stdout
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith(f"{severity}: [{code}]")),
                None)
    assert line is not None, res.stdout
    assert fragment in line and world.paths[variant] in line, line
    if var:
        f = only(run_checks(load_config(path), ["model"]).findings, severity, code)
        assert f.variable == var and f.store.endswith(f"({world.paths[variant]})")


def test_check_takes_the_selection_flags_of_score(world, tmp_path):
    """A forecast whose temperature is in °C: checking only 2 m temperature (as a
    `score --variables 2m_temperature` would read) passes, checking temperature fails."""
    path = config(world, tmp_path, models={"model": {"path": world.paths["t_celsius"]}})
    assert run_check(path).exit_code == 3
    res = run_check(path, "--variables", "2m_temperature", "--leads", "0h,12h")
    assert res.exit_code == 0, res.stdout
    res = run_check(path, "--variables", "temperature", "--levels", "500")
    assert res.exit_code == 3 and "looks like °C" in res.stdout, res.stdout
    res = run_check(path, "--hours", "noon")
    assert res.exit_code == 2 and "--hours" in res.stderr + res.stdout


def test_geopotential_in_metres_is_seen_in_the_values_too(world, tmp_path):
    found = findings(world, tmp_path, models={"model": {"path": world.paths["z_metres"]}})
    f = only(found, "error", "range")
    assert "geopotential height in m" in f.message and f.variable == "geopotential"


def test_time_axis_of_valid_times_is_detected(world, tmp_path):
    # Sampled leads 6 h and 12 h (> 0): f(t, 6h) matches the truth at t, not at t + 6 h.
    found = findings(world, tmp_path, models={"model": {"path": world.paths["valid_time"]}},
                     lead_times=["6h", "12h"])
    assert "valid times" in only(found, "error", "init-vs-valid").message


def test_time_axis_of_valid_times_is_detected_with_a_zero_lead(world, tmp_path):
    # The default leads start at 0 h, where init and valid time coincide: still detected.
    found = findings(world, tmp_path, models={"model": {"path": world.paths["valid_time"]}})
    assert "valid times" in only(found, "error", "init-vs-valid").message


def test_model_missing_inits_warns_with_counts(world, tmp_path):
    models = {"model": {"path": world.paths["good"]}, "other": {"path": world.paths[
        "fewer_inits"]}}
    path = config(world, tmp_path, models=models)
    res = run_check(path)
    assert res.exit_code == 0, res.stdout
    f = only(run_checks(load_config(path), list(models)).findings, "warning", "common-inits")
    assert "model 4, other 3; 3 in common; other lacks 1 (2020-02-27T00:00)" in f.message


def test_truth_missing_valid_times_per_lead(world, tmp_path):
    found = findings(world, tmp_path, init_times={"start": "2020-02-27", "stop": "2020-02-29"},
                     lead_times=["0h", "48h"])
    assert not any(f.code == "truth-coverage" for f in found)
    short = world.root / "truth_short.zarr"
    if not short.exists():
        rewrite(world.case.paths["truth"], short, lambda ds: ds.isel(time=slice(0, -6)))
    cfg = yaml.safe_load(config(world, tmp_path).read_text())
    cfg["truth"]["path"] = str(short)
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(cfg))
    f = only(run_checks(load_config(path), ["model"]).findings, "error", "truth-coverage")
    assert "lead 48h: 2 of 4" in f.message and "lead 0h" not in f.message, f.message


@pytest.mark.parametrize(
    "clim, expect",
    [("clim_2019_2021", "2019-2021 (attribute 'climatology_period') overlaps"),
     ("clim_named_2015", "2015-2020 (store name) overlaps"),
     ("clim_old", None)],
)
def test_climatology_period_overlap(world, tmp_path, clim, expect):
    found = findings(world, tmp_path, clim=world.paths[clim])
    hits = [f for f in found if f.code == "clim-overlap"]
    if expect is None:
        assert not hits and not any(f.code == "clim-period" for f in found)
    else:
        assert hits and hits[0].severity == "warning" and expect in hits[0].message


def test_climatology_coverage(world, tmp_path):
    few = world.root / "clim_few.zarr"
    rewrite(world.case.paths["climatology"], few, lambda ds: ds.sel(dayofyear=slice(1, 59)))
    f = only(findings(world, tmp_path, clim=str(few)), "error", "clim-coverage")
    assert "dayofyear 60" in f.message


def test_preflight_raises_plan_exception_types(world, tmp_path):
    from wxeval import schema

    cfg = load_config(config(world, tmp_path, models={"model": {"path": world.paths[
        "truncated"]}}))
    with pytest.raises(schema.SchemaError, match="chunk file"):
        check.preflight(cfg, ["model"])


def test_secrets_are_redacted_from_findings(world, tmp_path):
    # The token is in the store's name too: the "cannot open" message names it, redacted.
    path = config(world, tmp_path,
                  models={"model": {"path": str(world.root / "nope-SECRET123.zarr"),
                                    "storage_options": {"token": "SECRET123"}}})
    res = run_check(path, "--output", str(tmp_path / "o"))
    assert res.exit_code == 3
    assert "SECRET123" not in res.stdout
    assert "SECRET123" not in (tmp_path / "o" / "check.json").read_text()
    assert "nope-<redacted>.zarr" in res.stdout


# -- the rules themselves ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "var, units, verdict",
    [("geopotential", "m**2 s**-2", "ok"), ("geopotential", "m2 s-2", "ok"),
     ("geopotential", "m^2/s^2", "ok"), ("geopotential", "gpm", "wrong"),
     ("temperature", "degC", "wrong"), ("temperature", "°C", "wrong"),
     ("mean_sea_level_pressure", "hPa", "wrong"), ("mean_sea_level_pressure", "Pa", "ok"),
     ("10m_u_component_of_wind", "m/s", "ok"), ("10m_u_component_of_wind", "knots", "wrong"),
     ("specific_humidity", "kg/kg", "ok"), ("geopotential", "K", "unknown")],
)
def test_units_verdict(var, units, verdict):
    assert units_verdict(var, units) == verdict


@pytest.mark.parametrize(
    "var, values, level, expect",
    [("mean_sea_level_pressure", 1013.0, None, "looks like hPa"),
     ("mean_sea_level_pressure", 101300.0, None, None),
     ("2m_temperature", 15.0, None, "looks like °C"),
     ("2m_temperature", 288.0, None, None),
     ("geopotential", 5500.0, 500, "geopotential height in m"),
     ("geopotential", 54000.0, 500, None),
     ("geopotential", 110.0, 1000, "geopotential height in m"),
     ("geopotential", 1100.0, 1000, None),
     ("10m_u_component_of_wind", 400.0, None, "implausible"),
     ("specific_humidity", 12.0, 850, "g/kg")],
)
def test_plausibility(var, values, level, expect):
    arr = np.full((1, 3, 4), values) + np.linspace(-1, 1, 12).reshape(1, 3, 4) * 1e-3 * values
    da = xr.DataArray(arr, dims=("level", "latitude", "longitude"),
                      coords={"level": [level or 1000]})
    if level is None:
        da = da.isel(level=0, drop=True)
    got = plausibility(var, da)
    assert (got is None) if expect is None else (got[0] == "error" and expect in got[1]), got


def test_climatology_period_sources():
    ds = xr.Dataset(attrs={"seed": 2020})
    assert climatology_period(ds, "/a/climatology.zarr") == (None, "unknown")
    assert climatology_period(ds.assign_attrs(period="1990 to 2019"), "x")[0] == (1990, 2019)
    assert climatology_period(ds.assign_attrs(start_year=1991, end_year=2020), "x")[0] == (
        1991, 2020)
    ds_t = xr.Dataset(coords={"time": pd.date_range("1990-01-01", "2017-12-31", periods=3)})
    assert climatology_period(ds_t, "x") == ((1990, 2017), "coordinate 'time'")
    wb2 = "gs://weatherbench2/datasets/era5-hourly-climatology/1990-2019_6h_240x121.zarr"
    assert climatology_period(None, wb2) == ((1990, 2019), "store name")


def test_demo_layout_graphcast_like_is_clean(world, tmp_path):
    # lat/lon names, descending latitude, no 0 h lead: normalised, not an error.
    case = dataclasses.replace(world.case, paths={})
    path = write_forecast(case, tmp_path / "gc.zarr",
                          {"lat_name": "lat", "lon_name": "lon", "drop_lead_zero": True,
                           "latitude_descending": True})
    found = findings(world, tmp_path, models={"model": {"path": path}})
    assert not [f for f in found if f.severity == "error"], [f.line() for f in found]
    assert any(f.code == "latitude-order" and f.severity == "info" for f in found)


def _rechunked(src: str, dst: Path, one_per: tuple[str, ...]) -> str:
    ds = xr.open_zarr(src).load()
    for v in ds.variables.values():
        v.encoding = {}
    enc = {
        n: {"chunks": tuple(1 if d in one_per else k
                            for d, k in zip(da.dims, da.shape, strict=True))}
        for n, da in ds.data_vars.items()
    }
    ds.to_zarr(dst, mode="w", zarr_format=2, consolidated=True, encoding=enc)
    return str(dst)


@pytest.fixture(params=["looked-up", "listed"])
def chunk_lookup(request, monkeypatch):
    """Both ways of finding chunk files: one by one (few needed) and one folder listing."""
    from wxeval.check import local_files

    if request.param == "listed":
        monkeypatch.setattr(local_files, "CHUNK_STAT_LIMIT", 0)
    else:  # these small stores need most of their chunks: listed unless told otherwise
        monkeypatch.setattr(local_files, "CHUNK_LIST_FRACTION", 2.0)
    return request.param


@pytest.mark.parametrize("unneeded", [True, False])
def test_missing_chunk_files_only_count_where_needed(tmp_path, unneeded):
    """A climatology chunked per day and a truth chunked per level: a lost chunk the selection
    does not read (day 300 for January inits; level 850 when scoring 500 hPa) is no error; a
    lost chunk it reads is."""
    case = make_case(nlat=5, nlon=8, n_inits=4, leads_h=(0, 6, 12))
    write_all(case, tmp_path)
    clim = _rechunked(case.paths["climatology"], tmp_path / "clim_days.zarr",
                      ("dayofyear", "hour"))
    truth = _rechunked(case.paths["truth"], tmp_path / "truth_levels.zarr", ("time", "level"))
    day = case.init_times[0].day_of_year
    lost_day = 299 if unneeded else day - 1  # position of dayofyear 300, or of the inits' day
    (tmp_path / "clim_days.zarr" / "temperature" / f"0.{lost_day}.0.0.0").unlink()
    (tmp_path / "truth_levels.zarr" / "temperature" / f"0.{1 if unneeded else 0}.0.0").unlink()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "truth": {"path": truth}, "climatology": {"path": clim},
        "models": {"model": {"path": case.paths["forecast"]}},
        "evaluation": {"levels": [500], "variables": ["temperature"]},
    }))
    found = run_checks(load_config(cfg), ["model"], sample=False).findings
    missing = [f for f in found if f.code == "missing-chunks"]
    if unneeded:
        assert not missing, "\n".join(f.line() for f in missing)
    else:
        assert {f.store.split(" ")[0] for f in missing} == {"truth", "climatology"}, missing


def test_chunk_listing_follows_symlinked_folders_as_lookups_do(tmp_path):
    from wxeval.check.local_files import _chunk_keys

    real = tmp_path / "elsewhere" / "0"
    real.mkdir(parents=True)
    (real / "1").write_bytes(b"x")
    (tmp_path / "var" / "c").mkdir(parents=True)
    (tmp_path / "var" / "c" / "0").symlink_to(real, target_is_directory=True)
    (tmp_path / "var" / "zarr.json").write_text("{}")
    assert _chunk_keys(tmp_path / "var") == {"c/0/1"}
    assert (tmp_path / "var" / "c/0/1").is_file()


@pytest.mark.parametrize("n_days, listed", [(10, True), (1, False)])
def test_chunks_are_listed_when_most_of_an_array_is_needed(tmp_path, monkeypatch, n_days,
                                                           listed):
    """Scoring most of a forecast's inits lists its folders once (cheaper per chunk than a
    lookup each); scoring a day of ten looks its few chunks up. Either way a lost chunk of a
    needed init is reported."""
    from wxeval.check import local_files

    case = make_case(nlat=5, nlon=8, n_inits=10, leads_h=(0, 6, 12))
    write_all(case, tmp_path)
    fc = _rechunked(case.paths["forecast"], tmp_path / "per_init.zarr", ("time",))
    (tmp_path / "per_init.zarr" / "temperature" / "0.0.0.0.0").unlink()  # the first init
    listings = []
    real = local_files._chunk_keys
    monkeypatch.setattr(local_files, "_chunk_keys", lambda f: listings.append(f) or real(f))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "truth": {"path": case.paths["truth"]}, "climatology": {"path": case.paths["climatology"]},
        "models": {"model": {"path": fc}},
        "evaluation": {"variables": ["temperature"], "init_times": {
            "start": str(case.init_times[0]),
            "stop": str(case.init_times[n_days * len(case.init_times) // 10 - 1])}},
    }))
    found = run_checks(load_config(cfg), ["model"], sample=False).findings
    assert "0.0.0.0.0" in only(found, "error", "missing-chunks").message
    forecast_listed = [f for f in listings if "per_init.zarr" in str(f)]
    assert bool(forecast_listed) == listed, listings


def test_sharded_zarr_v3_store_is_complete(tmp_path, chunk_lookup):
    """Chunk objects are named as zarr names them (shards, c/ prefix): a complete sharded
    store is clean, and one lost shard is reported."""
    case = make_case(nlat=5, nlon=8, n_inits=4, leads_h=(0, 6, 12))
    write_all(case, tmp_path)
    ds = xr.open_zarr(case.paths["forecast"]).load()
    for v in ds.variables.values():
        v.encoding = {}
    enc = {n: {"chunks": (1, 1, *da.shape[2:]), "shards": (2, 3, *da.shape[2:])}
           for n, da in ds.data_vars.items()}
    ds.to_zarr(tmp_path / "sharded.zarr", zarr_format=3, consolidated=False, encoding=enc)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "truth": {"path": case.paths["truth"]}, "climatology": {"path": case.paths["climatology"]},
        "models": {"model": {"path": str(tmp_path / "sharded.zarr")}},
    }))
    found = run_checks(load_config(cfg), ["model"], sample=False).findings
    assert not [f for f in found if f.code == "missing-chunks"], [f.line() for f in found]
    shard = tmp_path / "sharded.zarr" / "temperature" / "c" / "1" / "0"
    assert shard.is_dir() or shard.is_file()
    shutil.rmtree(shard) if shard.is_dir() else shard.unlink()
    found = run_checks(load_config(cfg), ["model"], sample=False).findings
    assert "c/1/0" in only(found, "error", "missing-chunks").message


@pytest.mark.parametrize(
    "var, values, expect",
    [("total_precipitation_24hr", 12.0, "look like mm"),  # 12 mm stored as 12
     ("total_precipitation_6hr", 0.5, "look like mm"),  # a dry-ish sample in mm: by its mean
     ("total_precipitation", 30.0, "look like mm"),
     ("total_precipitation_24hr", 0.012, None),
     ("total_precipitation", 0.9, None)],  # a 10-day total of 0.9 m is possible
)
def test_precipitation_in_mm_is_flagged(var, values, expect):
    da = xr.DataArray(np.full((3, 4), values), dims=("latitude", "longitude"))
    got = plausibility(var, da)
    assert (got is None) if expect is None else (got[0] == "error" and expect in got[1]), got


def test_negative_precipitation_share_is_reported():
    arr = np.full((4, 5), 1e-3)
    arr[0, :3] = -1e-5  # 3 of 20 points
    got = plausibility("total_precipitation_6hr", xr.DataArray(arr, dims=("latitude",
                                                                           "longitude")))
    assert got[0] == "warning" and "15.00% of the sampled points are negative" in got[1]
    assert units_verdict("total_precipitation_24hr", "mm") == "wrong"
    assert units_verdict("10m_wind_speed", "kt") == "wrong"
