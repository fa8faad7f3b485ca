"""One direction through the package: the plan holds the opened stores, and everything after it
on the driver (tasks, keys, the pre-flight check, the tasks run on threads) reads them from the
plan instead of opening each store again."""

from __future__ import annotations

import pickle
import sys
from collections import Counter

import numpy as np
import pytest
from builders import make_case, ref_area_weights, ref_metrics, write_all, write_config

from wxeval import loaders
from wxeval.api import score
from wxeval.config import load_config
from wxeval.evaluate import make_tasks
from wxeval.plan import make_plan


def _spy(monkeypatch) -> Counter:
    """Count calls of ``loaders.open_store`` by store name, whichever module calls it."""
    calls: Counter = Counter()
    original = loaders.open_store

    def counting(spec):
        calls[spec.name] += 1
        return original(spec)

    for name, mod in list(sys.modules.items()):
        if name.startswith("wxeval") and getattr(mod, "open_store", None) is original:
            monkeypatch.setattr(mod, "open_store", counting)
    return calls


@pytest.fixture()
def setup(tmp_path):
    case = make_case(dtype=np.float64, n_inits=4, variables=("temperature", "2m_temperature"))
    write_all(case, tmp_path)
    models = {"model": {"path": case.paths["forecast"]}, "persistence": {"kind": "persistence"}}
    hours = [f"{int(h)}h" for h in np.asarray(case.lead_times, "timedelta64[h]").astype(int)]
    inits = np.asarray(case.init_times, "datetime64[m]")
    first, last = str(inits[0]), str(inits[-1])
    cfg = write_config(tmp_path / "cfg.yaml", case, models=models, lead_times=hours,
                       init_times={"start": first, "stop": last},
                       regions=["global", "tropics", "global_land"])
    return case, cfg


def test_threaded_score_opens_each_store_once(setup, tmp_path, monkeypatch):
    case, cfg = setup
    loaders.clear_cache()
    calls = _spy(monkeypatch)
    report = score(cfg, ["model", "persistence"], tmp_path / "out", scheduler="threads")
    # forecast, truth (also the land-sea mask and persistence's source), climatology
    assert len(calls) == 3, calls
    assert set(calls.values()) == {1}, calls
    # and the numbers are those of the hand-written NumPy reference
    w = ref_area_weights(case.latitude)[:, None] * np.ones(len(case.longitude))
    got = report.tables["model"]["temperature"].sel(region="global", level=case.levels[0])
    for li in range(len(case.lead_times)):
        ref = ref_metrics(case, "temperature", w, 0, li)
        for metric in ("rmse", "bias", "mae", "acc"):
            assert float(got.sel(metric=metric).isel(lead_time=li)) == pytest.approx(
                ref[metric], rel=1e-10), (metric, li)


def test_tasks_for_workers_carry_specs_not_datasets(setup):
    _, cfg = setup
    plan = make_plan(load_config(cfg), ["model", "persistence"])
    tasks = make_tasks(plan.models, plan.regions, land_sea_mask=plan.land_sea_mask,
                       skipna=plan.skipna, stores=plan.stores)
    assert tasks
    for task in tasks:
        assert len(pickle.dumps(task)) < 20_000  # specs, never opened datasets
    with pytest.raises(TypeError, match="driver"):
        pickle.dumps(plan.stores)


def test_preflight_checks_the_plan_it_is_given(setup, monkeypatch):
    """With a plan, the pre-flight takes its selection and variables (no second resolution)
    and finds the same as without one."""
    from wxeval import plan as plan_module
    from wxeval.check import preflight

    _, cfg = setup
    config = load_config(cfg)
    names = ["model", "persistence"]
    without = preflight(config, names).findings
    plan = make_plan(config, names)
    resolved = []
    monkeypatch.setattr(plan_module, "select_fields",
                        lambda *a, **k: resolved.append(a) or pytest.fail("resolved again"))
    with_plan = preflight(config, names, plan=plan).findings
    assert resolved == []
    assert with_plan == without
    assert len(plan.models[1].selected_init_times) == 4  # persistence: the case's inits
