"""Config and command-line values are read as written, or refused (issue 11).

- Lead times: numbers are hours everywhere (range bounds, lists, one value, ``--leads``), never
  nanoseconds; the scored leads are checked against the store's leads by hand, and the RMSE at
  12 h against NumPy.
- Init times: relative words are refused; a UTC offset is converted to UTC (naive).
- Names that become file names (models, custom regions, variables, rename targets) cannot
  leave the output folder: refused with exit 2, and nothing is written anywhere.
- ``true``/``false`` or fractions where an integer is expected are refused, not coerced.

Every refusal is exit 2 with ONE ``wxeval: error:`` line naming the key or flag.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from builders import make_case, ref_area_weights, ref_metrics, write_all
from test_cli_errors import EXIT_USAGE, assert_error, run_in_process, run_process

from wxeval.align import parse_duration
from wxeval.config import ConfigError, load_config

LEADS_H = (0, 6, 12, 24, 48)  # what the forecast store holds
FAST = {"regions": ["global"], "metrics": ["rmse"], "variables": ["2m_temperature"]}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """4 inits (2020-02-27T00 … 2020-02-28T12, every 12 h), leads 0/6/12/24/48 h."""
    root = tmp_path_factory.mktemp("config_values")
    c = make_case(nlat=5, nlon=8, n_inits=4, leads_h=LEADS_H)
    write_all(c, root)
    return c


def config(case, models: dict | None = None, **evaluation) -> dict:
    return {
        "truth": {"path": case.paths["truth"]},
        "climatology": {"path": case.paths["climatology"]},
        "models": models or {"model": {"path": case.paths["forecast"]}},
        "evaluation": {**FAST, **evaluation},
    }


def write(path: Path, cfg: dict | str) -> Path:
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    return path


def score(cfg: Path, out: Path, *flags: str, model: str = "model"):
    return run_in_process("score", "-c", cfg, "-o", out, "-m", model, *flags)


def _score_ok(case, tmp_path: Path, evaluation: dict, flags: tuple[str, ...]) -> Path:
    """Score ``case`` with the ``evaluation`` settings and CLI ``flags``; assert exit 0."""
    cfg = write(tmp_path / "cfg.yaml", config(case, **evaluation))
    out = tmp_path / "out"
    res = score(cfg, out, *flags)
    assert res.code == 0, res.stderr
    return out


def scored_leads_h(out: Path, model: str = "model") -> list[float]:
    with xr.open_dataset(out / f"{model}.nc") as ds:
        return [float(x / np.timedelta64(1, "h")) for x in ds.lead_time.values]


def scored_inits(out: Path, model: str = "model") -> list[str]:
    return json.loads((out / f"{model}.json").read_text())["init_times"]


def files_under(root: Path) -> set[str]:
    return {
        str(Path(d, f).relative_to(root))
        for d, dirs, files in os.walk(root)
        for f in files + dirs
    }


# --------------------------------------------------------------------------------------------
# Lead times: numbers are hours
# --------------------------------------------------------------------------------------------


def test_parse_duration_numbers_are_hours_also_as_text():
    h = np.timedelta64(1, "h")
    assert parse_duration(24) == 24 * h
    assert parse_duration("24") == 24 * h  # pandas alone: 24 ns
    assert parse_duration(" 12.5 ") == np.timedelta64(12 * 60 + 30, "m")
    assert parse_duration(np.int64(6)) == 6 * h
    assert parse_duration("90min") == np.timedelta64(90, "m")
    for bad in ("nan", float("nan"), float("inf"), True, "x", "1e300", "h", "12 parsecs",
                "100000000d"):
        with pytest.raises(ValueError, match="cannot read duration"):
            parse_duration(bad)


def test_parse_duration_units_any_case_without_pandas_deprecations():
    """``10d`` (the README's example) and ``12H``: pandas warns on both (errors in pandas 4)."""
    h = np.timedelta64(1, "h")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_duration("10d") == 240 * h
        assert parse_duration("12H") == 12 * h
        assert parse_duration("1D") == 24 * h
        assert parse_duration("2d12h") == 60 * h
        assert parse_duration("6h30m") == np.timedelta64(390, "m")
        assert parse_duration("90 min") == np.timedelta64(90, "m")
        assert parse_duration("1.5h") == np.timedelta64(90, "m")
        assert parse_duration("P1DT12H") == 36 * h  # other forms: pandas
        assert parse_duration("1 days 06:00:00") == 30 * h


@pytest.mark.parametrize(
    "lead_times, flags, expected_h",
    [
        ({"start": 0, "stop": 24, "step": 12}, (), [0, 12, 24]),
        ({"start": "0h", "stop": 48, "step": "12h"}, (), [0, 12, 24, 48]),  # 36 h: not stored
        ({"stop": 24.0, "step": "12"}, (), [0, 12, 24]),  # start defaults to 0 h
        ([12, 24], (), [12, 24]),
        (["12", "24"], (), [12, 24]),
        (24, (), [24]),
        (None, ("--leads", "0:48:12"), [0, 12, 24, 48]),
        (None, ("--leads", "0:24:12h"), [0, 12, 24]),
        (None, ("--leads", "12,24"), [12, 24]),
        (None, ("--leads", "0.1, 6"), [6]),  # 0.1 h = 6 min: not stored, dropped
    ],
    ids=["range-numbers", "range-mixed", "range-float-and-text", "list-numbers", "list-text",
         "one-number", "flag-range-numbers", "flag-range-mixed", "flag-list", "flag-fraction"],
)
def test_numeric_leads_are_hours(case, tmp_path, lead_times, flags, expected_h):
    evaluation = {} if lead_times is None else {"lead_times": lead_times}
    out = _score_ok(case, tmp_path, evaluation, flags)
    assert scored_leads_h(out) == expected_h


def test_rmse_at_12h_of_a_numeric_range_matches_numpy(case, tmp_path):
    leads = {"start": 0, "stop": 24, "step": 12}
    cfg = write(tmp_path / "cfg.yaml", config(case, lead_times=leads))
    out = tmp_path / "out"
    res = score(cfg, out)
    assert res.code == 0, res.stderr
    w = ref_area_weights(case.latitude)[:, None] * np.ones(len(case.longitude))[None, :]
    expected = {
        h: ref_metrics(case, "2m_temperature", w, None, LEADS_H.index(h))["rmse"]
        for h in (0, 12, 24)
    }
    # Independently, at 12 h: RMSE = sqrt(mean over inits of the area-weighted mean sq. error).
    wn = w / w.sum()
    mse = [
        float(np.sum(wn * (case.forecast["2m_temperature"][i, 2].astype(np.float64)
                           - case.truth_at("2m_temperature", t + pd.Timedelta("12h"))) ** 2))
        for i, t in enumerate(case.init_times)
    ]
    assert math.isclose(expected[12], math.sqrt(np.mean(mse)), rel_tol=1e-12)
    with xr.open_dataset(out / "model.nc") as ds:
        got = ds["2m_temperature"].sel(metric="rmse", region="global")
        for h, value in expected.items():
            assert math.isclose(
                float(got.sel(lead_time=np.timedelta64(h, "h"))), value, rel_tol=1e-5
            ), h


@pytest.mark.parametrize(
    "lead_times, fragments",
    [
        ({"start": 0, "stop": "x", "step": 12}, ["evaluation.lead_times", "stop", "'x'"]),
        ({"start": 0, "stop": 24, "step": 0}, ["evaluation.lead_times", "step must be positive"]),
        ({"start": 48, "stop": 24, "step": 12}, ["evaluation.lead_times", "before start"]),
        ({"start": 0, "stop": 24, "stpe": 12}, ["evaluation.lead_times", "unknown key 'stpe'"]),
        ([12, -6], ["evaluation.lead_times", "item 1", "negative"]),
        ([12, float("nan")], ["evaluation.lead_times", "item 1", "nan"]),
        ([True], ["evaluation.lead_times", "item 0", "True"]),
        (["12 parsecs"], ["evaluation.lead_times", "'12 parsecs'"]),
        ([], ["evaluation.lead_times", "empty"]),
    ],
    ids=["range-text", "range-zero-step", "range-reversed", "range-unknown-key", "negative",
         "nan", "bool", "unit", "empty-list"],
)
def test_unreadable_leads_are_usage_errors(case, tmp_path, lead_times, fragments):
    cfg = write(tmp_path / "cfg.yaml", config(case, lead_times=lead_times))
    out = tmp_path / "out"
    assert_error(score(cfg, out), EXIT_USAGE, str(cfg), *fragments, output=out)
    assert not out.exists()


@pytest.mark.parametrize(
    "flag, fragment",
    [
        ("0:abc:12", "'abc'"),
        ("0:48", "START:STOP:STEP"),
        ("0:24:0", "step must be positive"),
        ("12,-6", "negative"),
        (",", "at least one"),
        ("12,nan", "nan"),
    ],
)
def test_unreadable_leads_flag_is_a_usage_error(case, tmp_path, flag, fragment):
    cfg = write(tmp_path / "cfg.yaml", config(case))
    out = tmp_path / "out"
    assert_error(score(cfg, out, "--leads", flag), EXIT_USAGE, "--leads", fragment, output=out)


# --------------------------------------------------------------------------------------------
# Init times: fixed dates, UTC
# --------------------------------------------------------------------------------------------

ALL_INITS = ["2020-02-27T00:00", "2020-02-27T12:00", "2020-02-28T00:00", "2020-02-28T12:00"]


@pytest.mark.parametrize(
    "start, flags, expected",
    [
        ("2020-02-27T12:00", (), ALL_INITS[1:]),  # naive: UTC, the reference
        ("2020-02-27T12:00Z", (), ALL_INITS[1:]),
        ("2020-02-27T12:00+00:00", (), ALL_INITS[1:]),
        ("2020-02-27T18:00+06:00", (), ALL_INITS[1:]),  # = 12:00 UTC
        ("2020-02-28T01:00+02:00", (), ALL_INITS[2:]),  # = 27th 23:00 UTC
        (None, ("--start", "2020-02-27T12:00Z"), ALL_INITS[1:]),
        (None, ("--start", "2020-02-27T07:00-05:00"), ALL_INITS[1:]),  # = 12:00 UTC
        (None, ("--stop", "2020-02-27"), ALL_INITS[:2]),  # a date-only stop: the whole day
        (None, ("--start", "20200228"), ALL_INITS[2:]),
    ],
    ids=["naive", "Z", "+00:00", "+06:00", "+02:00-previous-day", "flag-Z", "flag-05:00",
         "flag-date-stop", "flag-compact-date"],
)
def test_init_times_with_utc_offsets_are_converted_to_utc(case, tmp_path, start, flags,
                                                          expected):
    evaluation = {} if start is None else {"init_times": {"start": start}}
    out = _score_ok(case, tmp_path, evaluation, flags)
    assert scored_inits(out) == expected


def test_yaml_timestamps_are_read_as_utc(case, tmp_path):
    """Unquoted YAML times are date-time objects (one with a zone): the same rules apply."""
    text = yaml.safe_dump(config(case)).replace(
        "evaluation:\n",
        "evaluation:\n  init_times: {start: 2020-02-27T18:00:00+06:00, stop: 2020-02-28}\n",
    )
    path = write(tmp_path / "cfg.yaml", text)
    loaded = load_config(path).evaluation.init_times
    assert (loaded.start, loaded.stop) == ("2020-02-27T12:00:00", "2020-02-28")
    out = tmp_path / "out"
    res = score(path, out)
    assert res.code == 0, res.stderr
    assert scored_inits(out) == ALL_INITS[1:]


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("start", "yesterday", "'yesterday' depends on the day"),
        ("stop", "today", "'today' depends on the day"),
        ("start", "Now", "'Now' depends on the day"),
        ("start", "2020-13-45", "cannot read date '2020-13-45'"),
        ("start", "1500-01-01", "outside the years"),
        ("stop", 1.5, "expected a date"),
        ("stop", True, "expected a date"),
    ],
)
def test_unreadable_init_times_are_usage_errors(case, tmp_path, key, value, fragment):
    cfg = write(tmp_path / "cfg.yaml", config(case, init_times={key: value}))
    out = tmp_path / "out"
    assert_error(score(cfg, out), EXIT_USAGE, str(cfg), f"evaluation.init_times.{key}",
                 fragment, output=out)


@pytest.mark.parametrize(
    "flag, value, fragment",
    [
        ("--start", "yesterday", "depends on the day"),
        ("--stop", "tomorrow", "depends on the day"),
        ("--stop", "2020-02-30", "cannot read date"),
    ],
)
def test_unreadable_init_time_flags_are_usage_errors(case, tmp_path, flag, value, fragment):
    cfg = write(tmp_path / "cfg.yaml", config(case))
    out = tmp_path / "out"
    assert_error(score(cfg, out, flag, value), EXIT_USAGE, flag, repr(value), fragment,
                 output=out)
    res = run_in_process("check", "-c", cfg, "-m", "model", flag, value)
    assert_error(res, EXIT_USAGE, flag, fragment)


# --------------------------------------------------------------------------------------------
# Names that would leave the output folder
# --------------------------------------------------------------------------------------------

BAD_NAMES = ["../escaped", "a/b", "/abs", "..", ".", ".hidden", "a\\b", "tab\tname", "", " ",
             "bell\x07", "check", "x" * 200]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n)[:20])
def test_bad_model_names_are_refused_and_nothing_is_written(case, tmp_path, name):
    root = tmp_path / "root"
    (root / "cfgdir").mkdir(parents=True)
    cfg = write(root / "cfgdir" / "cfg.yaml",
                config(case, models={name: {"path": case.paths["forecast"]}}))
    before = files_under(root)
    res = score(cfg, root / "a" / "out", model=name)
    assert_error(res, EXIT_USAGE, str(cfg), "models", "model name", repr(name)[:40])
    assert files_under(root) == before
    res = run_in_process("check", "-c", cfg, "-m", name, "-o", root / "a" / "out")
    assert_error(res, EXIT_USAGE, "model name")
    assert files_under(root) == before


def test_escaping_model_name_real_process(case, tmp_path):
    """The issue's own command, in a real process: exit 2, nothing beside or inside out/."""
    root = tmp_path / "root"
    root.mkdir()
    cfg = write(root / "cfg.yaml",
                config(case, models={"../escaped": {"path": case.paths["forecast"]}}))
    before = files_under(root)
    res = run_process("score", "-c", cfg, "-m", "../escaped", "-o", root / "out")
    assert_error(res, EXIT_USAGE, str(cfg), "models", "model name '../escaped'",
                 "path separator")
    assert files_under(root) == before


@pytest.mark.parametrize(
    "mutate, fragments",
    [
        (lambda c: c["evaluation"].update(custom_regions={"../r": {"lat": [0, 10]}}),
         ["evaluation.custom_regions", "region name '../r'"]),
        (lambda c: c["evaluation"].update(custom_regions={"global": {"lat": [0, 10]}}),
         ["evaluation.custom_regions", "'global' is a built-in region"]),
        (lambda c: c["evaluation"].update(variables=["../2m_temperature"]),
         ["evaluation.variables", "variable '../2m_temperature'"]),
        (lambda c: c["models"]["model"].update(rename={"2m_temperature": "../t2m"}),
         ["models.model.rename", "rename target '../t2m'"]),
        (lambda c: c["truth"].update(rename={"2m_temperature": "a/b"}),
         ["truth.rename", "rename target 'a/b'"]),
        (lambda c: c["models"].update(MODEL={"path": c["models"]["model"]["path"]}),
         ["models", "'MODEL' and 'model' differ only in case"]),
    ],
    ids=["region-escape", "region-shadows-builtin", "variable", "model-rename", "truth-rename",
         "case-collision"],
)
def test_other_bad_names_are_refused(case, tmp_path, mutate, fragments):
    cfg_dict = config(case)
    mutate(cfg_dict)
    root = tmp_path / "root"
    root.mkdir()
    cfg = write(root / "cfg.yaml", cfg_dict)
    before = files_under(root)
    assert_error(score(cfg, root / "out"), EXIT_USAGE, str(cfg), *fragments)
    assert files_under(root) == before


@pytest.mark.parametrize("statistics", [False, True], ids=["default", "configured-statistics"])
def test_a_good_run_writes_only_into_output_and_statistics(case, tmp_path, statistics):
    """Names with dots, spaces and dashes are fine; every file lands in OUTPUT (or the
    configured statistics location)."""
    name = "my model-1.v2"
    root = tmp_path / "root"
    root.mkdir()
    cfg_dict = config(
        case,
        models={name: {"path": case.paths["forecast"]}},
        custom_regions={"box.north 1": {"lat": [0, 45], "lon": [0, 90]}},
        regions=["global", "box.north 1"],
    )
    if statistics:
        cfg_dict["output"] = {"statistics": str(root / "stats")}
    cfg = write(root / "cfg.yaml", cfg_dict)
    before = files_under(root)
    res = score(cfg, root / "out", model=name)
    assert res.code == 0, res.stderr
    new = files_under(root) - before
    allowed = ("out", "stats") if statistics else ("out",)
    assert new and all(Path(f).parts[0] in allowed for f in new), sorted(new)
    assert {f"out/{name}.{s}" for s in ("nc", "csv", "json")} <= new
    stats_root = "stats" if statistics else "out/statistics"
    assert f"{stats_root}/{name}" in new


def test_load_statistics_refuses_a_name_outside_the_folder(tmp_path):
    from wxeval.api import load_statistics

    with pytest.raises(ValueError, match="model name '../x'"):
        load_statistics(tmp_path, "../x")


# --------------------------------------------------------------------------------------------
# Numbers pydantic would coerce silently
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "section, values, fragments",
    [
        ("evaluation", {"init_times": {"hours": [True]}}, ["evaluation.init_times.hours.0",
                                                          "True"]),
        ("evaluation", {"init_times": {"hours": [12.5]}}, ["evaluation.init_times.hours.0",
                                                          "fractional"]),
        ("evaluation", {"init_times": {"hours": [24]}}, ["hours", "between 0 and 23"]),
        ("evaluation", {"levels": [850.9]}, ["evaluation.levels.0", "fractional"]),
        ("evaluation", {"levels": [True]}, ["evaluation.levels.0", "True"]),
        ("evaluation", {"custom_regions": {"r": {"lat": [True, 10]}}},
         ["evaluation.custom_regions.r.lat.0", "True"]),
        ("evaluation", {"custom_regions": {"r": {"lat": [0, 10], "lon": [float("nan"), 10]}}},
         ["evaluation.custom_regions.r.lon", "finite"]),
        ("compute", {"workers": True}, ["compute.workers", "True"]),
        ("compute", {"workers": 0}, ["compute.workers", "greater than or equal to 1"]),
        ("compute", {"memory_per_task": "lots"}, ["compute.memory_per_task", "'lots'"]),
        ("compute", {"memory_per_task": "-1GB"}, ["compute.memory_per_task", "positive"]),
        ("compute", {"jobqueue": {"jobs": 0}}, ["compute.jobqueue.jobs", "greater than"]),
    ],
    ids=["hours-bool", "hours-fraction", "hours-24", "levels-fraction", "levels-bool",
         "lat-bool", "lon-nan", "workers-bool", "workers-zero", "memory-text",
         "memory-negative", "jobs-zero"],
)
def test_values_are_not_coerced_silently(case, tmp_path, section, values, fragments):
    cfg_dict = config(case)
    cfg_dict.setdefault(section, {}).update(values)
    cfg = write(tmp_path / "cfg.yaml", cfg_dict)
    out = tmp_path / "out"
    assert_error(score(cfg, out), EXIT_USAGE, str(cfg), *fragments, output=out)


def test_integers_written_as_text_are_read_as_those_integers(case, tmp_path):
    """``hours: ["12"]`` and ``levels: ["500"]`` are explicit conversions: the same selection as
    the numbers."""
    cfg = write(
        tmp_path / "cfg.yaml",
        config(case, variables=["temperature"], levels=["500"], init_times={"hours": ["12"]},
               lead_times=[12]),
    )
    out = tmp_path / "out"
    res = score(cfg, out)
    assert res.code == 0, res.stderr
    assert scored_inits(out) == [ALL_INITS[1], ALL_INITS[3]]
    with xr.open_dataset(out / "model.nc") as ds:
        assert [int(x) for x in ds.level.values] == [500]


def test_validate_reports_the_key_for_the_python_api(case):
    from wxeval.config import validate

    with pytest.raises(ConfigError, match=r"api: evaluation\.lead_times: item 0: .*negative"):
        validate(config(case, lead_times=[-1]), source="api")
