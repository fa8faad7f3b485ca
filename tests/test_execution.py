"""One pass for all models, resumable runs (kill -9 included), pending truth, and dask clusters.

Expectations come from uninterrupted runs checked elsewhere against NumPy, and from the NumPy
reference in builders for the pieces computed here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from builders import (
    make_case,
    ref_area_weights,
    ref_metrics,
    write_all,
    write_config,
    write_forecast,
    write_truth,
)

from wxeval import evaluate
from wxeval.api import load_statistics, score
from wxeval.loaders import clear_cache


@pytest.fixture()
def two_models(tmp_path):
    case = make_case(dtype=np.float64, n_inits=6, variables=("temperature", "2m_temperature"))
    write_all(case, tmp_path)
    case2 = make_case(dtype=np.float64, n_inits=6, variables=("temperature", "2m_temperature"),
                      seed=0)
    # A second model: the same truth, a different forecast (scaled errors).
    for var in case2.forecast:
        truth_part = case.forecast[var] - case.forecast[var].mean()
        case2.forecast[var] = case.forecast[var] + 0.3 * truth_part
    write_forecast(case2, tmp_path / "model2.zarr")
    models = {"a": {"path": case.paths["forecast"]}, "b": {"path": str(tmp_path / "model2.zarr")}}
    cfg = write_config(tmp_path / "cfg.yaml", case, models=models,
                       regions=["global", "tropics", "global_land"])
    return case, case2, cfg


def _matches_numpy(case, table, var="temperature", level_index=0):
    """Every metric, every lead, global region: against builders' hand-written NumPy."""
    w = ref_area_weights(case.latitude)[:, None] * np.ones(len(case.longitude))
    got = table[var].sel(region="global", level=case.levels[level_index])
    for li in range(len(case.lead_times)):
        ref = ref_metrics(case, var, w, level_index, li)
        for metric, value in ref.items():
            assert float(got.sel(metric=metric).isel(lead_time=li)) == pytest.approx(
                value, rel=1e-10), (metric, li)


def _tables_equal(a: xr.Dataset, b: xr.Dataset, rtol=1e-12):
    assert set(a.data_vars) == set(b.data_vars)
    for v in a.data_vars:
        np.testing.assert_allclose(a[v].values, b[v].values, rtol=rtol, equal_nan=True)


def test_all_models_in_one_pass_read_truth_once(two_models, tmp_path, monkeypatch):
    case, case2, cfg = two_models
    reads = []
    original = evaluate._read

    def counting(da, indexers, leading, spatial, **kw):
        reads.append(("truth" if "valid_time" in indexers else "other", da.name))
        return original(da, indexers, leading, spatial, **kw)

    monkeypatch.setattr(evaluate, "_read", counting)
    together = score(cfg, ["a", "b"], tmp_path / "together", scheduler="synchronous")
    truth_reads_together = sum(1 for kind, _ in reads if kind == "truth")
    reads.clear()
    separate_a = score(cfg, ["a"], tmp_path / "sep_a", scheduler="synchronous")
    separate_b = score(cfg, ["b"], tmp_path / "sep_b", scheduler="synchronous")
    truth_reads_separate = sum(1 for kind, _ in reads if kind == "truth")
    _tables_equal(together.tables["a"], separate_a.tables["a"])
    _tables_equal(together.tables["b"], separate_b.tables["b"])
    assert truth_reads_together * 2 == truth_reads_separate
    _matches_numpy(case, together.tables["a"])
    _matches_numpy(case2, together.tables["b"])


def test_local_cluster_processes_equal_threads(two_models, tmp_path):
    case, case2, cfg = two_models
    threads = score(cfg, ["a", "b"], tmp_path / "threads")
    cluster = score(cfg, ["a", "b"], tmp_path / "cluster", scheduler="local-processes")
    for m in ("a", "b"):
        _tables_equal(threads.tables[m], cluster.tables[m])
    _matches_numpy(case, cluster.tables["a"])
    _matches_numpy(case2, cluster.tables["b"])


def test_jobqueue_cluster_and_job_script_from_config():
    pytest.importorskip("dask_jobqueue")
    from wxeval.cluster import make_jobqueue_cluster
    from wxeval.config import validate

    cfg = validate({
        "truth": {"path": "x"},
        "compute": {
            "scheduler": "jobqueue",
            "jobqueue": {"kind": "slurm", "jobs": 4, "cores": 2, "memory": "8GB",
                         "queue": "short", "walltime": "01:00:00", "account": "wx"},
        },
    })
    cluster = make_jobqueue_cluster(cfg.compute.jobqueue.model_dump())
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p short" in script
    assert "#SBATCH -A wx" in script
    assert "#SBATCH -t 01:00:00" in script
    assert "--nthreads 2" in script or "--nworkers" in script


def test_kill_9_during_run_resumes_to_identical_results(tmp_path):
    case = make_case(dtype=np.float64, n_inits=16, init_step="12h",
                     variables=("temperature", "2m_temperature", "geopotential"))
    write_all(case, tmp_path)
    cfg = write_config(tmp_path / "cfg.yaml", case)
    with open(cfg) as fh:
        data = yaml.safe_load(fh)
    data["compute"] = {"memory_per_task": "40KiB"}  # many small tasks (1-day blocks)
    cfg.write_text(yaml.safe_dump(data))
    full = score(cfg, ["model"], tmp_path / "uninterrupted")
    # A child process that SIGKILLs itself in the middle of writing its 4th statistics part.
    child = textwrap.dedent(f"""
        import os, signal
        from wxeval import store
        real = store._part_objects
        count = [0]
        class Dying(dict):  # killed after writing two of the part's objects
            def items(self):
                for i, item in enumerate(dict.items(self)):
                    if i == 2:
                        os.kill(os.getpid(), signal.SIGKILL)
                    yield item
        def dying(*a, **k):
            count[0] += 1
            objects = real(*a, **k)
            return Dying(objects) if count[0] == 4 else objects
        store._part_objects = dying
        from wxeval.api import score
        score({str(cfg)!r}, ["model"], {str(tmp_path / "resumed")!r}, scheduler="synchronous")
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    stats_dir = tmp_path / "resumed" / "statistics"
    committed = [p for p in stats_dir.rglob("*.zarr") if (p / ".wxeval-complete").exists()]
    leftovers = [p for p in stats_dir.rglob(".tmp-*")]
    assert len(committed) == 3 and leftovers, (committed, leftovers)
    assert not (tmp_path / "resumed" / "model.nc").exists()
    clear_cache()
    resumed = score(cfg, ["model"], tmp_path / "resumed")
    assert 0 < resumed.computed_fields < full.computed_fields
    assert resumed.reused_fields > 0
    _tables_equal(full.tables["model"], resumed.tables["model"], rtol=1e-12)
    _matches_numpy(case, resumed.tables["model"], "geopotential", 1)
    assert not list(stats_dir.rglob(".tmp-*"))


def test_pending_inits_are_filled_in_when_truth_arrives(tmp_path):
    case = make_case(dtype=np.float64, n_inits=8, variables=("temperature",))
    write_all(case, tmp_path)
    full_truth_times = case.truth_times
    # The truth ends early: the last inits' long leads cannot be verified yet.
    cut = full_truth_times[full_truth_times <= case.init_times[5] + pd.Timedelta("12h")]
    short = make_case(dtype=np.float64, n_inits=8, variables=("temperature",))
    short.truth = {k: v[: len(cut)] for k, v in case.truth.items()}
    short.truth_times = cut
    write_truth(short, tmp_path / "truth.zarr")
    cfg = write_config(tmp_path / "cfg.yaml", case,
                       missing_truth="pending", regions=["global"])
    first = score(cfg, ["model"], tmp_path / "out")
    pending = first.pending["model"]
    assert len(pending) > 0
    done_inits = first.statistics["model"]["init_time"].values
    assert not np.isin(pending, done_inits).any()
    # The default mode refuses and names the missing valid times.
    strict = write_config(tmp_path / "strict.yaml", case, regions=["global"])
    with pytest.raises(ValueError, match="valid time"):
        score(strict, ["model"], tmp_path / "strict")
    # Nightly: the truth store grows; the same command now scores only the pending inits.
    write_truth(case, tmp_path / "truth.zarr")
    clear_cache()
    second = score(cfg, ["model"], tmp_path / "out")
    assert second.pending.get("model", np.array([])).size == 0
    per_field = len(case.lead_times) * len(case.levels)
    assert second.computed_fields == len(pending) * per_field
    reference = score(cfg, ["model"], tmp_path / "fresh")
    _tables_equal(second.tables["model"], reference.tables["model"])
    _matches_numpy(case, second.tables["model"])


def test_changed_setting_invalidates_only_its_entries(tmp_path):
    case = make_case(dtype=np.float64, n_inits=4, variables=("temperature", "2m_temperature"))
    write_all(case, tmp_path)
    cfg = write_config(tmp_path / "cfg.yaml", case, regions=["global"])
    first = score(cfg, ["model"], tmp_path / "out")
    with open(cfg) as fh:
        data = yaml.safe_load(fh)
    data["evaluation"]["skipna"] = True
    cfg.write_text(yaml.safe_dump(data))
    second = score(cfg, ["model"], tmp_path / "out")
    assert second.reused_fields == 0 and second.computed_fields == first.computed_fields
    # Adding a region computes only the missing region's values for the same inits.
    data["evaluation"]["regions"] = ["global", "tropics"]
    cfg.write_text(yaml.safe_dump(data))
    third = score(cfg, ["model"], tmp_path / "out")
    assert third.computed_fields == first.computed_fields
    stats = load_statistics(tmp_path / "out", "model")
    assert list(stats["region"].values) == ["global", "tropics"]
    assert np.isfinite(stats["temperature"].values).all()


def test_nightly_runs_compact_their_parts_and_keep_every_number(tmp_path, monkeypatch):
    from wxeval import store

    monkeypatch.setattr(store, "COMPACT_AFTER", 3)
    case = make_case(dtype=np.float64, n_inits=8, variables=("temperature",))
    write_all(case, tmp_path)
    stamps = [t.isoformat() for t in pd.DatetimeIndex(case.init_times)]
    for night in range(1, 5):  # inits 1-2, then 1-4, 1-6, 1-8: one new part per night
        cfg = write_config(tmp_path / "cfg.yaml", case, regions=["global"],
                           init_times={"start": stamps[0], "stop": stamps[2 * night - 1]})
        report = score(cfg, ["model"], tmp_path / "out")
        assert report.computed_fields == 2 * len(case.lead_times) * len(case.levels)
        parts = list((tmp_path / "out" / "statistics").rglob("*.zarr"))
        assert len(parts) == (night if night < 3 else night - 2), night  # 3 parts -> 1
    _matches_numpy(case, report.tables["model"])
    fresh = score(cfg, ["model"], tmp_path / "fresh")
    _tables_equal(report.tables["model"], fresh.tables["model"])


def test_scheduled_job_scripts_are_valid():
    root = os.path.join(os.path.dirname(__file__), "..", "scripts")
    for name in ("nightly.sh", "slurm_nightly.sbatch"):
        path = os.path.join(root, name)
        text = open(path).read()
        assert "wxeval score" in text and "wxeval scorecard" in text
        assert subprocess.run(["bash", "-n", path]).returncode == 0
        # Every flag the scripts pass exists on its command (e.g. check's --stop).
        from typer.testing import CliRunner

        from wxeval.cli import app

        command = " ".join(text.replace("\\\n", " ").split("\n")).split("wxeval ")[1:]
        for call in command:
            sub = call.split()[0]
            if sub not in ("check", "score", "scorecard"):
                continue
            usage = CliRunner().invoke(app, [sub, "--help"], terminal_width=200).stdout
            for flag in (w for w in call.split() if w.startswith("--")):
                assert flag in usage, (name, sub, flag)


def test_progress_bar_and_all_models(two_models, tmp_path):
    """`--all` scores every configured model; a progress bar is drawn when asked for."""
    import contextlib
    import io

    from wxeval.api import score as run

    case, case2, cfg = two_models
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        report = run(cfg, ["a", "b"], tmp_path / "p", progress=True)
    import re

    assert re.search(r"scoring: 100%.*\| (\d+)/\1 tasks", err.getvalue()), err.getvalue()
    assert set(report.tables) == {"a", "b"}
    proc = subprocess.run(
        [sys.executable, "-m", "wxeval.cli", "score", "--config", str(cfg), "--all",
         "--output", str(tmp_path / "all")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "all" / "a.nc").exists() and (tmp_path / "all" / "b.nc").exists()
    assert "computed" in proc.stdout and "reused 0" in proc.stdout


def test_results_get_ordinary_file_permissions(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the final file must be 0666 & ~umask."""
    import stat

    from wxeval.results import atomic_write

    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "x.txt", lambda tmp: open(tmp, "w").write("hello"))
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o644
    assert (tmp_path / "x.txt").read_text() == "hello"
    assert not list(tmp_path.glob(".*.tmp"))


def test_read_groups_merge_whole_lead_chunks_up_to_the_budget(monkeypatch):
    monkeypatch.setattr(evaluate, "READ_BYTES", 100)
    chunk_of_lead = np.array([0, 0, 1, 1, 2, 2, 3])
    # 20 bytes per lead: chunks of 2 leads (40 B) merge in pairs (80 B), never split.
    assert evaluate._read_groups(chunk_of_lead, 20).tolist() == [0, 0, 0, 0, 1, 1, 1]
    # A chunk larger than the budget is read alone, whole.
    assert evaluate._read_groups(chunk_of_lead, 60).tolist() == [0, 0, 1, 1, 2, 2, 3]
    assert evaluate._read_groups(np.zeros(5, int), 60).tolist() == [0] * 5


def test_read_size_does_not_change_the_numbers(tmp_path, monkeypatch):
    case = make_case(dtype=np.float64, n_inits=4, variables=("temperature",))
    write_all(case, tmp_path)
    write_forecast(case, tmp_path / "one_lead_per_chunk.zarr", lead_chunk=1)
    cfg = write_config(tmp_path / "cfg.yaml", case, regions=["global"],
                       models={"model": {"path": str(tmp_path / "one_lead_per_chunk.zarr")}})
    reads = []
    original = evaluate._read

    def counting(da, indexers, leading, spatial, **kw):
        if "init_time" in indexers:
            reads.append(len(np.atleast_1d(indexers["lead_time"])))
        return original(da, indexers, leading, spatial, **kw)

    monkeypatch.setattr(evaluate, "_read", counting)
    monkeypatch.setattr(evaluate, "READ_BYTES", 1)  # one lead chunk per read
    small = score(cfg, ["model"], None, scheduler="synchronous")
    assert reads and set(reads) == {1}  # every read holds one lead
    reads.clear()
    monkeypatch.setattr(evaluate, "READ_BYTES", 2**40)  # every lead at once
    large = score(cfg, ["model"], None, scheduler="synchronous")
    assert set(reads) == {len(case.lead_times)}
    _tables_equal(small.tables["model"], large.tables["model"], rtol=0)
    _matches_numpy(case, large.tables["model"])


@pytest.mark.parametrize("scheduler", ["threads", "synchronous"])
def test_tasks_start_in_the_order_given(scheduler):
    from wxeval.cluster import run_tasks

    started, finished = [], []
    order = [7, 3, 11, 0, 5, 9, 1, 8, 2, 10, 4, 6]  # longest first in practice: any order
    run_tasks(started.append, order, lambda task, _: finished.append(task),
              scheduler=scheduler, num_workers=1, progress=False)
    assert started == order
    assert sorted(finished) == sorted(order)


def test_task_cost_counts_the_fields_read(two_models):
    from wxeval.config import load_config
    from wxeval.plan import make_plan

    _, _, cfg = two_models
    plan = make_plan(load_config(cfg), ["a", "b"])
    tasks = evaluate.make_tasks(plan.models, plan.regions, land_sea_mask=plan.land_sea_mask,
                                skipna=False)
    for t in tasks:
        nlev = 1 if t.levels is None else len(t.levels)
        valid = {int(i + lead) for p in t.parts for i in p.init_times.astype("i8")
                 for lead in p.lead_times.astype("i8")}
        forecast = sum(len(p.init_times) * len(p.lead_times) * nlev for p in t.parts)
        assert t.cost == forecast + 2 * nlev * len(valid)


def test_default_threads_run_never_imports_distributed(two_models, tmp_path):
    """dask.distributed costs ~0.5 s to import, a fixed cost of every nightly run: only the
    cluster back-ends may load it."""
    _, _, cfg = two_models
    code = textwrap.dedent(f"""
        import sys
        from wxeval.api import score
        score({str(cfg)!r}, ["a"], {str(tmp_path / "out")!r}, progress=False)
        print("distributed" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
    assert (tmp_path / "out" / "a.nc").is_file()


def test_score_freezes_old_objects_only_while_it_runs(two_models, tmp_path, monkeypatch):
    """Objects older than the run are kept out of garbage collections during it (a full
    collection over the libraries' objects costs ~0.1 s) and are collectable afterwards; a
    caller's own freeze is left alone."""
    import gc

    from wxeval import api

    _, _, cfg = two_models
    seen = []
    real = api.make_plan
    monkeypatch.setattr(api, "make_plan", lambda *a, **k: seen.append(gc.get_freeze_count())
                        or real(*a, **k))
    assert gc.get_freeze_count() == 0
    score(cfg, ["a"], tmp_path / "one", progress=False)
    assert seen[-1] > 0 and gc.get_freeze_count() == 0
    gc.freeze()
    try:
        score(cfg, ["a"], tmp_path / "two", progress=False)
        assert gc.get_freeze_count() > 0  # not unfrozen by the run
    finally:
        gc.unfreeze()
