# ruff: noqa: F811 - ``world`` is a fixture imported from test_check
"""The failure battery: each bad input or fault, and exactly what ``wxeval score`` does with it.

Every case names its expectation: exit code (2 usage, 3 bad input data, 4 I/O), a message
fragment on the single stderr line, and that nothing is written or nothing is lost. Broken stores
come from tests/test_check.py's ``world`` fixture recipe (copies of a good tiny forecast with one
defect each); ``wxeval check`` findings for the same stores are asserted in tests/test_check.py.

Cases marked "needs pre-flight" rely on ``wxeval.check.preflight`` being called at the start of
``wxeval.api.score`` (metadata only); without it wxeval scores those stores quietly wrong or NaN.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from test_check import world  # noqa: F401 - the module-scoped fixture of broken stores
from test_cli_errors import EXIT_DATA, EXIT_IO, EXIT_USAGE, assert_error, run_in_process

from wxeval import results

SECRET = "SECRET123"


def cfg_for(world, tmp_path: Path, model_path: str | None = None, models=None, name="cfg.yaml",
            **evaluation) -> Path:
    cfg = {
        "truth": {"path": world.case.paths["truth"]},
        "climatology": {"path": world.case.paths["climatology"]},
        "models": models or {"model": {"path": model_path or world.paths["good"]}},
        "evaluation": {"regions": ["global", "tropics", "northern-hemisphere",
                                   "southern-hemisphere"], **evaluation},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def score_cli(cfg: Path, out: Path, *extra: str, model: str = "model"):
    return run_in_process("score", "--config", cfg, "--output", out, "--model", model, *extra)


# -- wrong units, flipped or different grids (bad input: exit 3) ------------------------------


def test_geopotential_in_metres_is_refused(world, tmp_path):
    # needs pre-flight: the units attribute 'm' is enough to refuse (metadata only)
    out = tmp_path / "out"
    res = score_cli(cfg_for(world, tmp_path, world.paths["z_metres"]), out)
    assert_error(res, EXIT_DATA, world.paths["z_metres"], "geopotential", "'m'", output=out)


def test_latitude_flipped_with_other_coordinates_grids_differ(world, tmp_path):
    out = tmp_path / "out"
    res = score_cli(cfg_for(world, tmp_path, world.paths["lat_coords"]), out)
    assert_error(res, EXIT_DATA, "grids differ", "latitude", world.paths["lat_coords"],
                 output=out)


# -- NaN-filled chunk: NaN only where it matters (README §2) ---------------------------------


def test_nan_chunk_gives_nan_only_in_affected_regions(world, tmp_path):
    out = tmp_path / "out"
    res = score_cli(cfg_for(world, tmp_path, world.paths["nan_chunk"]), out)
    assert res.code == 0, res.stderr
    df = pd.read_csv(out / "model.csv")
    t = df[(df.variable == "temperature") & (df.metric == "rmse")]
    at48 = t[t.lead_time_hours == 48]
    nan_regions = set(at48[at48.value.isna()].region)
    assert nan_regions == {"global", "northern-hemisphere"}, at48
    assert t[t.lead_time_hours != 48].value.notna().all()
    others = df[(df.variable != "temperature") & (df.metric == "rmse")]
    assert others.value.notna().all(), others[others.value.isna()]


# -- inits: duplicated, unsorted, missing in one model ---------------------------------------


def test_duplicated_init_times_are_refused(world, tmp_path):
    out = tmp_path / "out"
    res = score_cli(cfg_for(world, tmp_path, world.paths["duplicated"]), out)
    assert_error(res, EXIT_DATA, world.paths["duplicated"], "duplicated init times", output=out)


def test_unsorted_init_times_score_like_sorted(world, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert score_cli(cfg_for(world, tmp_path, name="a.yaml"), a).code == 0
    res = score_cli(cfg_for(world, tmp_path, world.paths["unsorted"], name="b.yaml"), b)
    assert res.code == 0, res.stderr
    pd.testing.assert_frame_equal(pd.read_csv(a / "model.csv"), pd.read_csv(b / "model.csv"))


def test_model_missing_inits_each_scored_on_its_own(world, tmp_path):
    models = {"model": {"path": world.paths["good"]},
              "other": {"path": world.paths["fewer_inits"]}}
    out = tmp_path / "out"
    res = run_in_process("score", "--config", cfg_for(world, tmp_path, models=models),
                         "--output", out, "--all")
    assert res.code == 0, res.stderr
    counts = {m: json.loads((out / f"{m}.json").read_text())["init_time_count"] for m in models}
    assert counts == {"model": 4, "other": 3}


# -- corrupted and truncated stores ----------------------------------------------------------


def test_corrupted_chunk_is_a_data_error_naming_store_and_variable(world, tmp_path):
    out = tmp_path / "out"
    res = score_cli(cfg_for(world, tmp_path, world.paths["corrupt"]), out)
    assert_error(res, EXIT_DATA, world.paths["corrupt"], "'temperature'", "corrupted chunk",
                 output=out)


def test_truncated_store_missing_chunks_is_refused(world, tmp_path):
    # needs pre-flight: Zarr reads absent chunk files as NaN
    out = tmp_path / "out"
    res = score_cli(cfg_for(world, tmp_path, world.paths["truncated"]), out)
    assert_error(res, EXIT_DATA, world.paths["truncated"], "2m_temperature", "chunk file",
                 output=out)


def test_truncated_store_missing_zarray_is_refused(world, tmp_path):
    # needs pre-flight: without .zarray/.zmetadata the variable silently vanishes from results
    out = tmp_path / "out"
    res = score_cli(cfg_for(world, tmp_path, world.paths["no_zarray"]), out)
    assert_error(res, EXIT_DATA, world.paths["no_zarray"], "'temperature'", output=out)


def test_truncated_store_missing_zarray_named_variable(world, tmp_path):
    out = tmp_path / "out"
    res = score_cli(cfg_for(world, tmp_path, world.paths["no_zarray"],
                            variables=["temperature"]), out)
    assert_error(res, EXIT_DATA, "'temperature'", "not in store", output=out)


# -- output: disk full, read-only, killed while writing --------------------------------------


@pytest.fixture
def previous(world, tmp_path):
    """A finished run in ``tmp_path/out``; returns (config, out, bytes of every result file)."""
    cfg = cfg_for(world, tmp_path, metrics=["rmse", "bias"])
    out = tmp_path / "out"
    assert score_cli(cfg, out).code == 0
    saved = {p.name: p.read_bytes() for p in out.glob("model.*")}
    return cfg, out, saved


def assert_intact(out: Path, saved: dict) -> None:
    assert {p.name: p.read_bytes() for p in out.glob("model.*")} == saved
    assert not list(out.glob(".model.*.tmp")), "no temporary file left behind"
    with xr.open_dataset(out / "model.nc") as ds:
        assert np.isfinite(ds["temperature"].values).all()


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS], ids=["disk-full", "read-only"])
def test_output_write_error_exit_4_previous_results_intact(previous, monkeypatch, err):
    cfg, out, saved = previous
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(results.os, "fsync", failing_fsync)
    res = score_cli(cfg, out, "--metrics", "rmse,bias,mae")
    monkeypatch.setattr(results.os, "fsync", real_fsync)
    assert_error(res, EXIT_IO, os.strerror(err))
    assert_intact(out, saved)


def test_disk_full_on_a_real_tiny_tmpfs(previous, tmp_path):
    cfg, out, saved = previous
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the injected ENOSPC case covers this")
    try:
        target = mnt / "out"
        shutil.copytree(out, target)
        saved_tmpfs = {p.name: p.read_bytes() for p in target.glob("model.*")}
        free = shutil.disk_usage(mnt).free
        (mnt / "filler").write_bytes(b"\0" * max(free - 4096, 0))
        # A subprocess: a crash on a full disk must not take the test runner down.
        proc = subprocess.run(
            [sys.executable, "-m", "wxeval.cli", "score", "-c", str(cfg), "-o", str(target),
             "-m", "model", "--metrics", "rmse,bias,mae"],
            capture_output=True, text=True, timeout=120,
        )
        assert_intact(target, saved_tmpfs)
        assert proc.returncode == EXIT_IO, (proc.returncode, proc.stderr[-2000:])
        assert "No space left on device" in proc.stderr
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_interrupted_while_writing_results_previous_intact_and_rerun_completes(previous,
                                                                              monkeypatch):
    cfg, out, saved = previous
    real = Path.write_bytes

    def half_then_die(self, data, *args, **kwargs):
        if self.name.startswith(".model.nc"):  # the temporary file of the new results
            real(self, bytes(data)[: len(data) // 2])
            raise KeyboardInterrupt  # like Ctrl-C in the middle of the write
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_bytes", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        from wxeval.api import score
        from wxeval.config import load_config

        score(load_config(cfg), ["model"], out)
    monkeypatch.setattr(Path, "write_bytes", real)
    assert_intact(out, saved)
    assert score_cli(cfg, out).code == 0
    with xr.open_dataset(out / "model.nc") as ds:
        assert np.isfinite(ds["temperature"].values).all()


_SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    FLAG = Path(sys.argv[1])
    real = Path.write_bytes
    def slow(self, data, *a, **k):
        if self.name.startswith(".model.nc"):  # the temporary file of the new results
            real(self, bytes(data)[:100])
            FLAG.write_text("writing")
            time.sleep(60)
        return real(self, data, *a, **k)
    Path.write_bytes = slow
    from wxeval.cli import app
    sys.argv = ["wxeval", *sys.argv[2:]]
    sys.exit(app())
    """
)


def test_sigkill_while_writing_results_previous_intact(previous, tmp_path):
    cfg, out, saved = previous
    launcher, flag = tmp_path / "launch.py", tmp_path / "writing.flag"
    launcher.write_text(_SLOW_WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(launcher), str(flag), "score", "-c", str(cfg), "-o", str(out),
         "-m", "model", "--metrics", "rmse,bias,mae"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "stderr.txt", "w"),
    )
    try:
        deadline = time.monotonic() + 60
        while not flag.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert flag.exists(), (proc.poll(), (tmp_path / "stderr.txt").read_text())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert {p.name: p.read_bytes() for p in out.glob("model.*")} == saved
    with xr.open_dataset(out / "model.nc") as ds:
        assert "mae" not in ds["metric"].values
    res = score_cli(cfg, out, "--metrics", "rmse,bias,mae")
    assert res.code == 0, res.stderr
    with xr.open_dataset(out / "model.nc") as ds:
        assert "mae" in ds["metric"].values


# -- names and configs (usage: exit 2) -------------------------------------------------------


def test_unknown_metric_close_to_a_wb2_name_suggests(world, tmp_path):
    out = tmp_path / "out"
    res = score_cli(cfg_for(world, tmp_path), out, "--metrics", "acc_poled")
    assert_error(res, EXIT_USAGE, "unknown metric 'acc_poled'", "did you mean 'acc_pooled'",
                 output=out)


def test_unknown_region_in_check_is_named_with_a_suggestion(world, tmp_path):
    path = cfg_for(world, tmp_path)
    data = yaml.safe_load(path.read_text())
    data["evaluation"]["regions"] = ["nothern-hemisphere"]
    path.write_text(yaml.safe_dump(data))
    res = run_in_process("check", "--config", path, "--all")
    assert res.code == 3, res.stdout
    assert "did you mean 'northern-hemisphere'" in res.stdout, res.stdout


def test_yaml_python_tag_is_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "cfg.yaml"
    path.write_text(
        f'truth: !!python/object/apply:os.system ["touch {marker}"]\nmodels: {{}}\n'
    )
    out = tmp_path / "out"
    for args in (["score", "-c", path, "-o", out, "-m", "x"], ["check", "-c", path, "--all"]):
        res = run_in_process(*args)
        assert_error(res, EXIT_USAGE, str(path), "not valid YAML", output=out)
    assert not marker.exists(), "the YAML tag was executed"


def test_config_that_is_binary_garbage(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    out = tmp_path / "out"
    res = run_in_process("score", "-c", path, "-o", out, "-m", "model")
    assert_error(res, EXIT_USAGE, str(path), output=out)


# -- credentials never written or shown ------------------------------------------------------


def test_credentials_never_in_results_logs_or_errors(world, tmp_path, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    models = {"model": {"path": world.paths["good"], "storage_options": {"token": SECRET}}}
    path = cfg_for(world, tmp_path, models=models)
    data = yaml.safe_load(path.read_text())
    data["truth"]["storage_options"] = {"token": SECRET}
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    res = run_in_process("--verbose", "score", "-c", path, "-o", out, "-m", "model")
    assert res.code == 0, res.stderr
    assert SECRET not in res.stdout + res.stderr + caplog.text
    for f in out.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    with xr.open_dataset(out / "model.nc") as ds:
        assert SECRET not in json.dumps({k: str(v) for k, v in ds.attrs.items()})
    # In an error: a store that does not exist, configured with the token.
    # The store's name holds the token too, so that every message naming the path would
    # show it unless redacted (a local path alone never puts the token in a message).
    data["models"]["model"]["path"] = str(tmp_path / f"missing-{SECRET}.zarr")
    path.write_text(yaml.safe_dump(data))
    res = run_in_process("score", "-c", path, "-o", tmp_path / "o2", "-m", "model")
    assert res.code == EXIT_IO and SECRET not in res.stderr + res.stdout, res.stderr
    assert "missing-<redacted>.zarr" in res.stderr + res.stdout, res.stderr
    res = run_in_process("check", "-c", path, "--all", "-o", tmp_path / "o3")
    assert res.code == EXIT_DATA and SECRET not in res.stdout
    assert SECRET not in (tmp_path / "o3" / "check.json").read_text()
    assert "missing-<redacted>.zarr" in (tmp_path / "o3" / "check.json").read_text()


def test_truncated_truth_is_caught_for_a_model_sharing_it_with_a_scored_one(tmp_path):
    """Model a is already scored; a truth chunk that only model b needs disappears: scoring
    a and b together must refuse (the pre-flight lists b's chunks, not only a's)."""
    from builders import make_case, write_climatology, write_forecast, write_truth

    from wxeval.api import score
    from wxeval.loaders import clear_cache
    from wxeval.schema import SchemaError

    case = make_case(variables=("2m_temperature",), n_inits=4, leads_h=(0, 6, 12))
    write_truth(case, tmp_path / "one.zarr")
    ds = xr.open_zarr(tmp_path / "one.zarr").load()
    for v in ds.variables.values():
        v.encoding = {}
    chunks = (1, len(case.longitude), len(case.latitude))  # one chunk file per time
    ds.to_zarr(tmp_path / "truth.zarr", zarr_format=2, consolidated=True,
               encoding={"2m_temperature": {"chunks": chunks}})
    write_climatology(case, tmp_path / "clim.zarr")
    write_forecast(case, tmp_path / "a.zarr")
    write_forecast(case, tmp_path / "b.zarr")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "truth": {"path": str(tmp_path / "truth.zarr")},
        "climatology": {"path": str(tmp_path / "clim.zarr")},
        "models": {m: {"path": str(tmp_path / f"{m}.zarr")} for m in ("a", "b")},
    }))
    assert score(cfg, ["a"], tmp_path / "out").computed_fields > 0
    pos = list(pd.DatetimeIndex(case.truth_times)).index(pd.Timestamp(case.init_times[1]))
    os.remove(tmp_path / "truth.zarr" / "2m_temperature" / f"{pos}.0.0")
    clear_cache()
    with pytest.raises(SchemaError, match=r"chunk file\(s\) needed are missing"):
        score(cfg, ["a", "b"], tmp_path / "out")
    assert not (tmp_path / "out" / "b.nc").exists()


def test_forecast_with_an_extra_dimension_names_the_store(tmp_path):
    """A forecast dimension that is neither scored nor ensemble members (``height``) is refused
    with the store and dimension named (``number`` is an ensemble: tests/test_ensemble_score)."""
    from builders import make_case, write_all

    from wxeval.api import score
    from wxeval.schema import SchemaError

    case = make_case(variables=("2m_temperature",), n_inits=2, leads_h=(0, 6))
    write_all(case, tmp_path)
    ds = xr.open_zarr(case.paths["forecast"]).load()
    for v in ds.variables.values():
        v.encoding = {}
    ds["2m_temperature"] = ds["2m_temperature"].expand_dims(height=[0, 1]).copy()
    ds.to_zarr(tmp_path / "ens.zarr", zarr_format=2, consolidated=True)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "truth": {"path": case.paths["truth"]}, "climatology": {"path": case.paths["climatology"]},
        "models": {"model": {"path": str(tmp_path / "ens.zarr")}},
    }))
    with pytest.raises(SchemaError, match=r"ens\.zarr\): 2m_temperature: unexpected dimension"):
        score(cfg, ["model"], tmp_path / "out")
    assert not (tmp_path / "out" / "model.nc").exists()
