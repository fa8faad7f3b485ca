"""The ``wxeval`` command line on bad input: exit codes, one-line messages, nothing written.

The contract (``wxeval/cli.py``): exit 2 for usage/config errors, 3 for bad input data, 4 for
I/O failures, 1 for internal errors; every error is ONE line on stderr that starts with
``wxeval: error:``, names what is concerned (store, variable, key) and what is wrong, and shows
no traceback unless ``--debug`` is given. A run that fails writes no result file.

A few cases run ``python -m wxeval.cli`` (or the ``wxeval`` console script) in a real process,
to prove the real exit codes and stderr; the rest use typer's ``CliRunner`` in-process (with
click >= 8.2 it keeps stderr apart from stdout in ``result.stderr``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from builders import (
    FAST_GCS_RETRY,
    Case,
    closed_port,
    make_case,
    write_all,
    write_config,
    write_forecast,
    write_truth,
)
from typer.testing import CliRunner

from wxeval.cli import app

EXIT_INTERNAL, EXIT_USAGE, EXIT_DATA, EXIT_IO = 1, 2, 3, 4
PREFIX = "wxeval: error:"

# --------------------------------------------------------------------------------------------
# Running the CLI
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def run_in_process(*args: str) -> Outcome:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # An exception escaped the CLI: show it, it is what a user would see as a traceback.
        import traceback

        tb = "".join(traceback.format_exception(result.exception))
        return Outcome(result.exit_code, result.stdout, result.stderr + tb)
    return Outcome(result.exit_code, result.stdout, result.stderr)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def run_process(*args: str, env: dict[str, str] | None = None) -> Outcome:
    proc = subprocess.run(
        [sys.executable, "-m", "wxeval.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or _env(),
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def assert_error(out: Outcome, code: int, *fragments: str, output: Path | None = None) -> str:
    """Exit ``code``, one ``wxeval: error:`` line naming every fragment, no traceback."""
    where = f"exit {out.code}\n--- stderr ---\n{out.stderr}\n--- stdout ---\n{out.stdout}"
    assert "Traceback" not in out.stderr, where
    assert "Traceback" not in out.stdout, where
    assert out.code == code, where
    lines = out.stderr.splitlines()
    assert len(lines) == 1, f"expected ONE line on stderr\n{where}"
    line = lines[0]
    assert line.startswith(PREFIX), where
    for frag in fragments:
        assert frag in line, f"message should mention {frag!r}\n{where}"
    if output is not None:
        assert not (output / "model.nc").exists(), f"a result file was written\n{where}"
        assert not (output / "model.csv").exists(), f"a result file was written\n{where}"
    return line


# --------------------------------------------------------------------------------------------
# Stores (tiny: 5 x 8 grid, 4 inits, 5 leads), written once for the module
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Stores:
    root: Path
    case: Case
    model_no_t2m: str  # forecast without 2m_temperature
    truth_no_t2m: str  # truth without 2m_temperature
    truth_short: str  # truth that stops before the last valid times
    truth_short_times: pd.DatetimeIndex
    truth_no_lsm: str  # truth without a land_sea_mask
    clim_few_days: str  # climatology with dayofyear 1..59 only
    clim_few_hours: str  # climatology with hours 0 and 12 only
    model_other_shape: str  # forecast on a 7 x 8 grid
    model_shifted: str  # forecast on a 5 x 8 grid without poles (same shape, other latitudes)
    plain_file: str  # a path that exists but is a plain file


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> Stores:
    root = tmp_path_factory.mktemp("cli_stores")
    case = make_case(nlat=5, nlon=8, n_inits=4, leads_h=(0, 6, 12, 24, 48))
    write_all(case, root)

    no_t2m = [v for v in case.forecast if v != "2m_temperature"]
    model_no_t2m = write_forecast(case, root / "model_no_t2m.zarr", variables=no_t2m)

    other = dataclasses.replace(
        case, truth={k: v for k, v in case.truth.items() if k != "2m_temperature"}, paths={}
    )
    truth_no_t2m = write_truth(other, root / "truth_no_t2m.zarr")

    keep = len(case.truth_times) - 8
    short = dataclasses.replace(
        case,
        truth_times=case.truth_times[:keep],
        truth={k: v[:keep] for k, v in case.truth.items()},
        paths={},
    )
    truth_short = write_truth(short, root / "truth_short.zarr")
    truth_no_lsm = write_truth(
        dataclasses.replace(case, paths={}), root / "truth_no_lsm.zarr", with_lsm=False
    )

    clim = xr.open_zarr(case.paths["climatology"]).load()
    for v in clim.variables.values():
        v.encoding = {}
    clim_few_days = str(root / "clim_few_days.zarr")
    clim.sel(dayofyear=slice(1, 59)).to_zarr(
        clim_few_days, mode="w", zarr_format=2, consolidated=True
    )
    clim_few_hours = str(root / "clim_few_hours.zarr")
    clim.sel(hour=[0, 12]).to_zarr(clim_few_hours, mode="w", zarr_format=2, consolidated=True)

    other_shape = make_case(nlat=7, nlon=8, n_inits=4, leads_h=(0, 6, 12, 24, 48))
    model_other_shape = write_forecast(other_shape, root / "model_7x8.zarr")
    shifted = make_case(nlat=5, nlon=8, poles=False, n_inits=4, leads_h=(0, 6, 12, 24, 48))
    model_shifted = write_forecast(shifted, root / "model_shifted.zarr")

    plain = root / "not_a_store.zarr"
    plain.write_text("just text\n")
    return Stores(
        root=root,
        case=case,
        model_no_t2m=model_no_t2m,
        truth_no_t2m=truth_no_t2m,
        truth_short=truth_short,
        truth_short_times=short.truth_times,
        truth_no_lsm=truth_no_lsm,
        clim_few_days=clim_few_days,
        clim_few_hours=clim_few_hours,
        model_other_shape=model_other_shape,
        model_shifted=model_shifted,
        plain_file=str(plain),
    )


def base_config(stores: Stores, **evaluation) -> dict:
    cfg = {
        "truth": {"path": stores.case.paths["truth"]},
        "climatology": {"path": stores.case.paths["climatology"]},
        "models": {"model": {"path": stores.case.paths["forecast"]}},
    }
    if evaluation:
        cfg["evaluation"] = evaluation
    return cfg


def dump(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def score_args(config: Path, output: Path, *extra: str, model: str = "model") -> list[str]:
    return ["score", "--config", str(config), "--output", str(output), "--model", model, *extra]


# Small, fast runs: one region, two metrics, unless a test says otherwise.
FAST = {"regions": ["global"], "metrics": ["rmse", "bias"], "variables": ["2m_temperature"]}


# --------------------------------------------------------------------------------------------
# Success (real process, console script) and WB2 metric aliases
# --------------------------------------------------------------------------------------------


def test_score_success_writes_results(stores, tmp_path):
    cfg = write_config(tmp_path / "cfg.yaml", stores.case, **FAST)
    out = tmp_path / "out"
    script = Path(sys.executable).with_name("wxeval")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "wxeval.cli"]
    proc = subprocess.run(
        [*cmd, *score_args(cfg, out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert PREFIX not in proc.stderr
    for suffix in ("nc", "csv", "json"):
        assert (out / f"model.{suffix}").is_file(), suffix
    assert "model: wrote" in proc.stdout
    with xr.open_dataset(out / "model.nc") as ds:
        assert list(ds.metric.values) == ["rmse", "bias"]
        assert "2m_temperature" in ds.data_vars
    json.loads((out / "model.json").read_text())


@pytest.mark.parametrize("how", ["config", "flag", "alias-and-name"])
def test_wb2_metric_alias_is_accepted(stores, tmp_path, how):
    evaluation = {**FAST, "metrics": ["rmse_sqrt_before_time_avg"]}
    if how == "alias-and-name":  # the alias and our name are one metric, reported once
        evaluation["metrics"] = ["rmse_sqrt_before_time_avg", "rmse_per_init"]
    extra: list[str] = []
    if how == "flag":
        evaluation.pop("metrics")
        extra = ["--metrics", "rmse_sqrt_before_time_avg"]
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **evaluation))
    out = tmp_path / "out"
    res = run_in_process(*score_args(cfg, out, *extra))
    assert res.code == 0, res.stderr
    with xr.open_dataset(out / "model.nc") as ds:
        assert list(ds.metric.values) == ["rmse_per_init"]
    table = pd.read_csv(out / "model.csv")
    assert set(table["metric"]) == {"rmse_per_init"}


# --------------------------------------------------------------------------------------------
# Variables and levels
# --------------------------------------------------------------------------------------------


def test_missing_variable_real_process(stores, tmp_path):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, variables=["nonexistent"]))
    out = tmp_path / "out"
    res = run_process(*score_args(cfg, out))
    assert_error(
        res, EXIT_DATA, "'nonexistent'", "not in", stores.case.paths["forecast"], output=out
    )


def test_variable_forecast_lacks_but_truth_has(stores, tmp_path):
    cfg = base_config(stores, variables=["2m_temperature"])
    cfg["models"]["model"]["path"] = stores.model_no_t2m
    cfg = dump(tmp_path / "cfg.yaml", cfg)
    out = tmp_path / "out"
    res = run_in_process(*score_args(cfg, out))
    assert_error(res, EXIT_DATA, "'2m_temperature'", "not in", stores.model_no_t2m, output=out)


def test_variable_truth_lacks_but_forecast_has(stores, tmp_path):
    cfg = base_config(stores, variables=["2m_temperature"])
    cfg["truth"]["path"] = stores.truth_no_t2m
    cfg = dump(tmp_path / "cfg.yaml", cfg)
    out = tmp_path / "out"
    res = run_in_process(*score_args(cfg, out))
    assert_error(res, EXIT_DATA, "truth", "'2m_temperature'", "not in", output=out)


def test_variable_flag_override_is_checked_too(stores, tmp_path):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores))
    out = tmp_path / "out"
    res = run_in_process(*score_args(cfg, out, "--variables", "temperature,nonexistent"))
    assert_error(res, EXIT_DATA, "'nonexistent'", "not in", output=out)


def test_missing_level(stores, tmp_path):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, variables=["temperature"], levels=[123]))
    out = tmp_path / "out"
    res = run_in_process(*score_args(cfg, out))
    assert_error(res, EXIT_DATA, "'temperature'", "level 123", output=out)


# --------------------------------------------------------------------------------------------
# Alignment: valid times, grids, climatology labels
# --------------------------------------------------------------------------------------------


def _needed_valid_times(case: Case) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(sorted({t + lead for t in case.init_times for lead in case.lead_times}))


def test_truth_missing_valid_times_are_listed(stores, tmp_path):
    cfg = base_config(stores, **FAST)
    cfg["truth"]["path"] = stores.truth_short
    cfg = dump(tmp_path / "cfg.yaml", cfg)
    out = tmp_path / "out"
    missing = _needed_valid_times(stores.case).difference(stores.truth_short_times)
    assert 0 < len(missing) <= 5  # all of them fit in the message
    res = run_in_process(*score_args(cfg, out))
    line = assert_error(res, EXIT_DATA, stores.truth_short, "valid time", output=out)
    for t in missing:
        assert t.strftime("%Y-%m-%dT%H:%M") in line, line
    assert str(len(missing)) in line


def test_truth_missing_valid_times_for_one_lead(stores, tmp_path):
    # Only the 48 h lead goes beyond the (short) truth: naming it alone still fails ...
    cfg = base_config(stores, **{**FAST, "lead_times": ["48h"]})
    cfg["truth"]["path"] = stores.truth_short
    out = tmp_path / "out"
    res = run_in_process(*score_args(dump(tmp_path / "cfg.yaml", cfg), out))
    last = stores.case.init_times[-1] + pd.Timedelta("48h")
    assert_error(res, EXIT_DATA, stores.truth_short, last.strftime("%Y-%m-%dT%H:%M"), output=out)
    # ... while leads the short truth covers score fine (the check is specific).
    covered = [
        f"{int(lead / pd.Timedelta('1h'))}h"
        for lead in stores.case.lead_times
        if all(t + lead in stores.truth_short_times for t in stores.case.init_times)
    ]
    assert covered and "48h" not in covered
    cfg["evaluation"]["lead_times"] = covered
    out2 = tmp_path / "out2"
    ok = run_in_process(*score_args(dump(tmp_path / "cfg2.yaml", cfg), out2))
    assert ok.code == 0, ok.stderr
    assert (out2 / "model.nc").is_file()


@pytest.mark.parametrize("which", ["other_shape", "shifted"])
def test_grids_differ_is_an_error_not_a_regrid(stores, tmp_path, which):
    path = stores.model_other_shape if which == "other_shape" else stores.model_shifted
    cfg = base_config(stores, **FAST)
    cfg["models"]["model"]["path"] = path
    out = tmp_path / "out"
    res = run_in_process(*score_args(dump(tmp_path / "cfg.yaml", cfg), out))
    assert_error(
        res, EXIT_DATA, "grids differ", "latitude", path, stores.case.paths["truth"], output=out
    )


def test_climatology_lacks_dayofyear(stores, tmp_path):
    cfg = base_config(stores, **{**FAST, "metrics": ["acc"]})
    cfg["climatology"]["path"] = stores.clim_few_days
    out = tmp_path / "out"
    res = run_in_process(*score_args(dump(tmp_path / "cfg.yaml", cfg), out))
    # Valid times run to 2020-03-01 (dayofyear 61); the store stops at dayofyear 59.
    assert_error(res, EXIT_DATA, stores.clim_few_days, "dayofyear 60", output=out)


def test_climatology_lacks_hour(stores, tmp_path):
    cfg = base_config(stores, **{**FAST, "metrics": ["acc"]})
    cfg["climatology"]["path"] = stores.clim_few_hours
    out = tmp_path / "out"
    res = run_in_process(*score_args(dump(tmp_path / "cfg.yaml", cfg), out))
    # Inits at 00/12 UTC with a 6 h lead need hours 6 and 18.
    assert_error(res, EXIT_DATA, stores.clim_few_hours, "hour 6", output=out)


# --------------------------------------------------------------------------------------------
# Empty selections
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "evaluation, fragment",
    [
        ({"init_times": {"start": "2021-01-01", "stop": "2021-01-31"}}, "no init time"),
        ({"init_times": {"hours": [6]}}, "no init time"),
        ({"lead_times": ["3h", "7h"]}, "no lead time"),
        ({"lead_times": {"start": "1h", "stop": "5h", "step": "1h"}}, "no lead time"),
    ],
    ids=["init-range", "init-hours", "lead-list", "lead-range"],
)
def test_empty_selection(stores, tmp_path, evaluation, fragment):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **{**FAST, **evaluation}))
    out = tmp_path / "out"
    res = run_in_process(*score_args(cfg, out))
    assert_error(res, EXIT_DATA, "'model'", fragment, output=out)


def test_empty_selection_from_flags(stores, tmp_path):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **FAST))
    out = tmp_path / "out"
    res = run_in_process(*score_args(cfg, out, "--hours", "6"))
    assert_error(res, EXIT_DATA, "'model'", "no init time", output=out)


# --------------------------------------------------------------------------------------------
# The config file itself
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c.update(evaluaton={"variables": ["temperature"]}), "'evaluaton'"),
        (lambda c: c["evaluation"].update(variable=["temperature"]), "'evaluation.variable'"),
        (
            lambda c: c["evaluation"].update(init_times={"hour": [0]}),
            "'evaluation.init_times.hour'",
        ),
        (lambda c: c["models"]["model"].update(pth="x.zarr"), "'models.model.pth'"),
        (lambda c: c["truth"].update(rename_dims={"lat": "latitude"}), "'truth.rename_dims'"),
    ],
    ids=["top-level", "evaluation.variable", "nested-deeper", "model-key", "store-key"],
)
def test_unknown_config_key(stores, tmp_path, mutate, key):
    cfg = base_config(stores, **FAST)
    mutate(cfg)
    path = dump(tmp_path / "cfg.yaml", cfg)
    out = tmp_path / "out"
    res = run_in_process(*score_args(path, out))
    assert_error(res, EXIT_USAGE, "unknown key", key, str(path), output=out)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("truth: {path: [unclosed\nmodels: {\n", "YAML"),
        ("\tbad: indentation\n", "YAML"),
        ("- truth\n- models\n", "mapping"),
        ("just a sentence\n", "mapping"),
        ("", "mapping"),
    ],
    ids=["broken-flow", "tab", "list", "scalar", "empty"],
)
def test_config_not_yaml_or_not_mapping(tmp_path, text, fragment):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    res = run_in_process(*score_args(path, out))
    assert_error(res, EXIT_USAGE, str(path), fragment, output=out)


def test_config_file_does_not_exist_real_process(tmp_path):
    path = tmp_path / "no-such-config.yaml"
    out = tmp_path / "out"
    res = run_process(*score_args(path, out))
    assert_error(res, EXIT_USAGE, str(path), output=out)
    assert "cannot read" in res.stderr or "No such file" in res.stderr, res.stderr


def test_config_bad_value_names_key(stores, tmp_path):
    cfg = dump(
        tmp_path / "cfg.yaml",
        base_config(stores, **{**FAST, "lead_times": {"start": "0h", "stop": "48h", "step": "x"}}),
    )
    out = tmp_path / "out"
    res = run_in_process(*score_args(cfg, out))
    assert_error(res, EXIT_USAGE, "lead_times", "'x'", output=out)


# --------------------------------------------------------------------------------------------
# Stores that cannot be opened (exit 4, names the path)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["truth", "forecast", "climatology"])
def test_nonexistent_store_path(stores, tmp_path, role):
    missing = str(tmp_path / f"no-such-{role}.zarr")
    cfg = base_config(stores, **FAST)
    if role == "forecast":
        cfg["models"]["model"]["path"] = missing
    else:
        cfg[role]["path"] = missing
    out = tmp_path / "out"
    res = run_in_process(*score_args(dump(tmp_path / "cfg.yaml", cfg), out))
    assert_error(res, EXIT_IO, missing, output=out)


def test_nonexistent_store_path_real_process(stores, tmp_path):
    missing = str(tmp_path / "no-such-truth.zarr")
    cfg = base_config(stores, **FAST)
    cfg["truth"]["path"] = missing
    out = tmp_path / "out"
    res = run_process(*score_args(dump(tmp_path / "cfg.yaml", cfg), out))
    line = assert_error(res, EXIT_IO, missing, output=out)
    assert "no such store" in line or "does not exist" in line, line


def test_store_path_is_a_plain_file(stores, tmp_path):
    cfg = base_config(stores, **FAST)
    cfg["models"]["model"]["path"] = stores.plain_file
    out = tmp_path / "out"
    res = run_in_process(*score_args(dump(tmp_path / "cfg.yaml", cfg), out))
    assert_error(res, EXIT_IO, stores.plain_file, output=out)


def test_unreachable_http_store(stores, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/truth.zarr"
    cfg = base_config(stores, **FAST)
    cfg["truth"]["path"] = url
    out = tmp_path / "out"
    res = run_in_process(*score_args(dump(tmp_path / "cfg.yaml", cfg), out))
    assert_error(res, EXIT_IO, url, output=out)


@pytest.mark.parametrize("command", ["score", "demo", "check"])
def test_output_that_is_a_file_is_a_usage_error(stores, tmp_path, command):
    # --output names a folder: an existing plain file there is a usage error (exit 2) that
    # says so, before anything is read or written (was "…/statistics: Not a directory", exit 4).
    out = tmp_path / "out"
    out.write_text("a plain file where the output folder should be\n")
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **FAST))
    args = {
        "score": score_args(cfg, out),
        "demo": ["demo", "--output", str(out)],
        "check": ["check", "--config", str(cfg), "--model", "model", "--output", str(out)],
    }[command]
    res = run_in_process(*args)
    assert_error(res, EXIT_USAGE, f"--output {out}", "must be a folder", "file of that name")
    assert out.read_text().startswith("a plain file"), "the file was left alone"


def test_output_below_a_file_is_a_usage_error(stores, tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder\n")
    out = blocker / "today"
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **FAST))
    res = run_in_process(*score_args(cfg, out))
    assert_error(res, EXIT_USAGE, f"--output {out}", f"{blocker} is a file, not a folder")


def test_check_output_may_name_a_json_file(stores, tmp_path):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **FAST))
    target = tmp_path / "gate.json"
    res = run_in_process("check", "--config", str(cfg), "--model", "model", "--output",
                         str(target))
    assert res.code == 0, res.stderr
    assert isinstance(json.loads(target.read_text()), list | dict)


def test_unreachable_gcs_store_real_process(stores, tmp_path):
    pytest.importorskip("gcsfs")
    url = "gs://wxeval-test-bucket/truth.zarr"
    cfg = base_config(stores, **FAST)
    cfg["truth"]["path"] = url
    out = tmp_path / "out"
    launcher = tmp_path / "launch.py"
    launcher.write_text(FAST_GCS_RETRY)
    env = _env(
        STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{closed_port()}",
        GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false",
    )
    proc = subprocess.run(
        [sys.executable, str(launcher), *score_args(dump(tmp_path / "cfg.yaml", cfg), out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    res = Outcome(proc.returncode, proc.stdout, proc.stderr)
    assert_error(res, EXIT_IO, url, output=out)


# --------------------------------------------------------------------------------------------
# Names with suggestions: models, metrics, regions
# --------------------------------------------------------------------------------------------


def test_unknown_model_name_suggests(stores, tmp_path):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **FAST))
    out = tmp_path / "out"
    res = run_in_process(*score_args(cfg, out, model="modle"))
    assert_error(res, EXIT_USAGE, "unknown model 'modle'", "did you mean 'model'", output=out)


def test_check_unknown_model_name_is_a_usage_error_too(stores, tmp_path):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **FAST))
    res = run_in_process("check", "--config", str(cfg), "--model", "modle")
    assert_error(res, EXIT_USAGE, "unknown model 'modle'", "did you mean 'model'")
    assert run_in_process("check", "--config", str(cfg), "--model", "model").code == 0


def test_no_model_named(stores, tmp_path):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **FAST))
    out = tmp_path / "out"
    res = run_in_process("score", "--config", str(cfg), "--output", str(out))
    assert_error(res, EXIT_USAGE, "--model", output=out)


@pytest.mark.parametrize("how", ["config", "flag"])
def test_unknown_metric_suggests(stores, tmp_path, how):
    evaluation = {**FAST, "metrics": ["rsme"]}
    extra: list[str] = []
    if how == "flag":
        evaluation.pop("metrics")
        extra = ["--metrics", "rsme"]
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **evaluation))
    out = tmp_path / "out"
    res = run_in_process(*score_args(cfg, out, *extra))
    assert_error(res, EXIT_USAGE, "unknown metric 'rsme'", "did you mean 'rmse'", output=out)


@pytest.mark.parametrize("how", ["config", "flag"])
def test_unknown_region_suggests(stores, tmp_path, how):
    # A misspelt region is a config/usage error (exit 2), like a misspelt model or metric.
    evaluation = {**FAST, "regions": ["tropic"]}
    extra: list[str] = []
    if how == "flag":
        evaluation.pop("regions")
        extra = ["--regions", "tropic"]
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **evaluation))
    out = tmp_path / "out"
    res = run_in_process(*score_args(cfg, out, *extra))
    assert_error(res, EXIT_USAGE, "unknown region 'tropic'", "did you mean 'tropics'", output=out)


def test_custom_region_with_reversed_bounds(stores, tmp_path):
    cfg = base_config(stores, **{**FAST, "custom_regions": {"box": {"lat": [50, 10]}}})
    out = tmp_path / "out"
    res = run_in_process(*score_args(dump(tmp_path / "cfg.yaml", cfg), out))
    assert_error(res, EXIT_USAGE, "region 'box'", "latitude bounds", output=out)


def test_land_region_without_land_sea_mask(stores, tmp_path):
    # A known region the data cannot support is a data error (exit 3) that says what is needed.
    cfg = base_config(stores, **{**FAST, "regions": ["global_land"]})
    cfg["truth"]["path"] = stores.truth_no_lsm
    out = tmp_path / "out"
    res = run_in_process(*score_args(dump(tmp_path / "cfg.yaml", cfg), out))
    assert_error(res, EXIT_DATA, "'global_land'", "land_sea_mask", output=out)


def test_land_sea_mask_in_percent(stores, tmp_path):
    # A land fraction stored in percent would give land points weight 1 after clipping: refused.
    percent = dataclasses.replace(
        stores.case, land_sea_mask=stores.case.land_sea_mask * 100, paths={}
    )
    cfg = base_config(stores, **{**FAST, "regions": ["global_land"]})
    cfg["truth"]["path"] = write_truth(percent, tmp_path / "truth_percent.zarr")
    out = tmp_path / "out"
    res = run_in_process(*score_args(dump(tmp_path / "cfg.yaml", cfg), out))
    assert_error(res, EXIT_DATA, "land_sea_mask spans [0, 100]", "in [0, 1]", output=out)


# --------------------------------------------------------------------------------------------
# --debug
# --------------------------------------------------------------------------------------------


def test_debug_shows_traceback(stores, tmp_path):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, variables=["nonexistent"]))
    out = tmp_path / "out"
    res = run_process("--debug", *score_args(cfg, out))
    assert res.code != 0
    assert "Traceback (most recent call last)" in res.stderr, res.stderr
    assert "'nonexistent'" in res.stderr
    assert not (out / "model.nc").exists()


def test_grid_check_tolerance_accepts_tiny_differences(stores, tmp_path):
    # Grids equal to 1e-3 degrees (README §4) are the same grid: no error, results written.
    case = dataclasses.replace(stores.case, latitude=stores.case.latitude + 4e-4, paths={})
    path = write_forecast(case, tmp_path / "model_nudged.zarr")
    cfg = base_config(stores, **FAST)
    cfg["models"]["model"]["path"] = path
    out = tmp_path / "out"
    res = run_in_process(*score_args(dump(tmp_path / "cfg.yaml", cfg), out))
    assert res.code == 0, res.stderr
    assert (out / "model.nc").is_file()
    assert np.isfinite(pd.read_csv(out / "model.csv")["value"]).all()


# --------------------------------------------------------------------------------------------
# Messages that say what exists: the known names, the available leads (issue 10)
# --------------------------------------------------------------------------------------------

STANDARD_REGIONS = ("global", "tropics", "extra-tropics", "northern-hemisphere", "europe",
                    "north-america", "arctic", "antarctic")


@pytest.mark.parametrize("how", ["config", "flag"])
def test_unknown_region_without_suggestion_lists_the_known_ones(stores, tmp_path, how):
    evaluation = {**FAST, "regions": ["mars"]}
    extra: list[str] = []
    if how == "flag":
        evaluation.pop("regions")
        extra = ["--regions", "mars"]
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **evaluation))
    out = tmp_path / "out"
    line = assert_error(
        run_in_process(*score_args(cfg, out, *extra)), EXIT_USAGE, "unknown region 'mars'",
        "known:", *STANDARD_REGIONS, output=out,
    )
    assert "did you mean" not in line, line


def test_unknown_region_with_suggestion_lists_the_known_ones_too(stores, tmp_path):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **FAST))
    res = run_in_process(*score_args(cfg, tmp_path / "out", "--regions", "europa"))
    assert_error(res, EXIT_USAGE, "did you mean 'europe'", "known:", *STANDARD_REGIONS)


def test_unknown_metric_lists_the_known_ones(stores, tmp_path):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **FAST))
    res = run_in_process(*score_args(cfg, tmp_path / "out", "--metrics", "skill"))
    assert_error(res, EXIT_USAGE, "unknown metric 'skill'", "known:", "rmse", "acc", "bias")


def test_unknown_variable_lists_what_the_store_has(stores, tmp_path):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **FAST))
    res = run_in_process(*score_args(cfg, tmp_path / "out", "--variables", "temprature"))
    assert_error(
        res, EXIT_DATA, "'temprature' not in store", "did you mean 'temperature'",
        "it has:", *sorted(stores.case.forecast), stores.case.paths["forecast"],
    )


def test_missing_level_lists_the_levels_the_store_has(stores, tmp_path):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **FAST))
    res = run_in_process(*score_args(cfg, tmp_path / "out", "--variables", "temperature",
                                     "--levels", "300"))
    assert_error(res, EXIT_DATA, "lacks level 300 hPa", "has [500, 850] hPa")


def test_misspelt_model_lists_each_configured_model_once(stores, tmp_path):
    # A config may itself declare the built-in baselines: they are listed once, not twice.
    cfg = base_config(stores, **FAST)
    cfg["models"]["persistence"] = {"kind": "persistence"}
    path = dump(tmp_path / "cfg.yaml", cfg)
    line = assert_error(
        run_in_process(*score_args(path, tmp_path / "out", model="persistance")),
        EXIT_USAGE, "unknown model 'persistance'", "did you mean 'persistence'",
    )
    listed = line.split("configured: ", 1)[1].rstrip(")").split(", ")
    assert sorted(listed) == ["climatology", "model", "persistence"], line


def _leads_of_case(stores) -> str:
    return ", ".join(f"{int(h / pd.Timedelta('1h'))}h" for h in stores.case.lead_times)


@pytest.mark.parametrize("leads", ["300h:480h:24h", "300h,480h"])
def test_no_lead_left_says_which_leads_the_store_has(stores, tmp_path, leads):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **FAST))
    out = tmp_path / "out"
    res = run_in_process(*score_args(cfg, out, "--leads", leads))
    asked = leads.replace(",", ", ")
    assert _leads_of_case(stores) == "0h, 6h, 12h, 24h, 48h"
    assert_error(
        res, EXIT_DATA, "'model'", "no lead time", f"asked {asked}",
        f"{stores.case.paths['forecast']}) has 0h, 6h, 12h, 24h, 48h", output=out,
    )


def test_check_no_lead_left_says_which_leads_the_store_has(stores, tmp_path):
    cfg = dump(tmp_path / "cfg.yaml", base_config(stores, **FAST))
    res = run_in_process("check", "--config", str(cfg), "--model", "model", "--leads",
                         "300h:480h:24h")
    assert res.code == EXIT_DATA, res.stdout + res.stderr
    errors = [ln for ln in res.stdout.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stdout
    assert "asked 300h:480h:24h" in errors[0], errors[0]
    assert "has 0h, 6h, 12h, 24h, 48h" in errors[0], errors[0]


def test_describe_leads_is_short_for_long_axes():
    from wxeval.plan import describe_leads

    hours = np.arange(0, 241, 12)
    assert describe_leads(hours.astype("timedelta64[h]")) == "0h–240h every 12h (21 leads)"
    odd = np.array([0, 6, 12, 18, 24, 36, 48, 72], "timedelta64[h]")
    assert describe_leads(odd) == "0h, 6h, 12h, …, 48h, 72h (8 leads)"
    assert describe_leads(np.array([], "timedelta64[h]")) == "none"


# --------------------------------------------------------------------------------------------
# scorecard: names and paths that are not there are usage errors (exit 2)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored(stores, tmp_path_factory) -> Path:
    """Results of two models, `model` and `twin` (the same forecast under two names)."""
    root = tmp_path_factory.mktemp("scored")
    cfg = base_config(stores, **FAST)
    cfg["models"]["twin"] = {"path": stores.case.paths["forecast"]}
    path = dump(root / "cfg.yaml", cfg)
    res = run_in_process("score", "--config", str(path), "--output", str(root / "results"),
                         "--model", "model,twin")
    assert res.code == 0, res.stderr
    return root / "results"


def scorecard_args(results: Path, tmp_path: Path, models="twin", baseline="model", *extra):
    return ["scorecard", "--results", str(results), "--models", models, "--baseline", baseline,
            "--output", str(tmp_path / "card.html"), *extra]


def test_scorecard_works_on_these_results(scored, tmp_path):
    res = run_in_process(*scorecard_args(scored, tmp_path))
    assert res.code == 0, res.stderr
    assert (tmp_path / "card.html").is_file()


@pytest.mark.parametrize("which", ["baseline", "models"])
def test_scorecard_name_without_results_is_a_usage_error(scored, tmp_path, which):
    args = (("twin", "hres") if which == "baseline" else ("twin,graphcast", "model"))
    res = run_in_process(*scorecard_args(scored, tmp_path, *args))
    name = "hres" if which == "baseline" else "graphcast"
    assert_error(res, EXIT_USAGE, f"no results for model '{name}'", str(scored),
                 "models with results: model, twin")
    assert not (tmp_path / "card.html").exists()


def test_scorecard_misspelt_name_gets_a_suggestion(scored, tmp_path):
    res = run_in_process(*scorecard_args(scored, tmp_path, "twni", "model"))
    assert_error(res, EXIT_USAGE, "'twni'", "did you mean 'twin'", "models with results")


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--test", "bootstrap"], ("--test 'bootstrap'", "ar2", "naive")),
        (["--metrics", "rsme"], ("unknown metric 'rsme'", "did you mean 'rmse'",
                                 "the scorecard compares")),
        (["--metrics", "acc_pooled"], ("'acc_pooled'", "no per-init score")),
    ],
    ids=["test", "unknown-metric", "pooled-metric"],
)
def test_scorecard_bad_options_are_usage_errors(scored, tmp_path, extra, fragments):
    res = run_in_process(*scorecard_args(scored, tmp_path, "twin", "model", *extra))
    assert_error(res, EXIT_USAGE, *fragments)


def test_scorecard_baseline_among_models_is_a_usage_error(scored, tmp_path):
    res = run_in_process(*scorecard_args(scored, tmp_path, "twin,model", "model"))
    assert_error(res, EXIT_USAGE, "baseline 'model' is also listed")


def test_scorecard_results_must_be_a_folder(scored, tmp_path):
    missing = tmp_path / "no-such-results"
    res = run_in_process(*scorecard_args(missing, tmp_path))
    assert_error(res, EXIT_USAGE, f"--results {missing}", "does not exist", "wxeval score")
    plain = tmp_path / "plain"
    plain.write_text("x\n")
    res = run_in_process(*scorecard_args(plain, tmp_path))
    assert_error(res, EXIT_USAGE, f"--results {plain}", "is a file")


def test_scorecard_output_must_be_a_file_path(scored, tmp_path):
    res = run_in_process("scorecard", "--results", str(scored), "--models", "twin",
                         "--baseline", "model", "--output", str(tmp_path))
    assert_error(res, EXIT_USAGE, f"--output {tmp_path}", "is a folder", "HTML file")


# --------------------------------------------------------------------------------------------
# --version, --help, and a light `import wxeval.cli`
# --------------------------------------------------------------------------------------------


def test_version_real_process():
    import wxeval

    res = run_process("--version")
    assert res.code == 0, res.stderr
    assert res.stdout.strip() == f"wxeval {wxeval.__version__}"
    assert res.stderr == ""


def test_help_real_process_lists_commands_and_version():
    res = run_process("--help")
    assert res.code == 0, res.stderr
    for word in ("score", "demo", "scorecard", "check", "--version"):
        assert word in res.stdout, word


# The scientific stack (typer itself may import pydantic for its own option types).
HEAVY = ("numpy", "pandas", "xarray", "dask", "numba", "zarr", "scipy")


def test_importing_the_cli_imports_no_heavy_module():
    # `wxeval --help` answers at once because the CLI imports its commands' modules lazily.
    code = (
        "import sys, wxeval.cli\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout.strip() == "", f"imported by `import wxeval.cli`: {proc.stdout}"


def test_help_imports_no_heavy_module():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from wxeval.cli import app\n"
        "for args in (['--help'], ['score', '--help'], ['--version']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"imported by --help: {proc.stdout}"
