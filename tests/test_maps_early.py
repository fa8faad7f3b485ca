"""Maps made from each variable's sums as soon as its last layout is stored
(:meth:`wxeval.maps.MapSums.finish` on the sums' writer thread), not at the end of the run."""

from __future__ import annotations

import numpy as np
import pytest
from builders import make_case, write_all
from test_maps_store import FIELDS, VARS, _check_maps, _config, case_root  # noqa: F401

import wxeval.api as api
from wxeval import maps as maps_mod
from wxeval.api import score


@pytest.mark.parametrize("budget", [None, "2 KiB"], ids=["one-task", "many-tasks"])
@pytest.mark.parametrize("skipna", [False, True], ids=["nan", "skipna"])
def test_maps_are_made_once_all_sums_of_a_variable_are_stored(
        case_root, tmp_path, monkeypatch, skipna, budget):  # noqa: F811
    case, _ = case_root
    events: list = []
    real_finish = maps_mod.MapSums.finish
    real_task = api.compute_task

    def finish(self, model, var):
        events.append(("finish", var))
        return real_finish(self, model, var)

    def task(t, *a, **k):
        res = real_task(t, *a, **k)
        events.append(("task", t.variable))
        return res

    monkeypatch.setattr(maps_mod.MapSums, "finish", finish)
    monkeypatch.setattr(api, "compute_task", task)
    cfg = _config(tmp_path / "c.yaml", case, skipna=skipna, maps=True, budget=budget)
    report = score(cfg, ["model"], tmp_path / "out")
    _check_maps(report, case, range(8), skipna)  # NumPy time means, 1e-10
    assert report.computed_sum_fields["maps"] == 8 * 3 * FIELDS
    for var in VARS:
        finished = [i for i, e in enumerate(events) if e == ("finish", var)]
        tasks = [i for i, e in enumerate(events) if e == ("task", var)]
        assert len(finished) == 1, (var, events)  # made once, by the writer
        assert tasks and finished[0] > max(tasks)  # after the variable's last task
    if budget:
        assert len([e for e in events if e[0] == "task"]) > 2  # several layouts or blocks


def test_sums_added_after_the_maps_were_made_are_refused():
    m = type("M", (), {"name": "m", "lead_times": np.array([0, 1]), "levels": {"v": None}})
    sums = maps_mod.MapSums([m])
    sums.grid["m"] = (("latitude", "longitude"),
                      {"latitude": np.array([-1.0, 0.0, 1.0]), "longitude": np.array([0.0, 5.0])})
    one = np.ones((2, 4, 1, 3, 2))
    sums.add_sums("m", "v", np.array([0, 1]), None, one.copy())
    sums.finish("m", "v")
    np.testing.assert_array_equal(sums.sums[("m", "v")][:, 1:], 1.0)  # Σ/count = 1/1
    with pytest.raises(RuntimeError, match="after their maps were made"):
        sums.add_sums("m", "v", np.array([0, 1]), None, one.copy())
    sums.finish("m", "v")  # again: nothing changes
    np.testing.assert_array_equal(sums.sums[("m", "v")][:, 1:], 1.0)


@pytest.mark.parametrize("skipna", [False, True], ids=["nan", "skipna"])
def test_maps_file_from_maps_converted_early(tmp_path, monkeypatch, skipna):
    """The file holds the float32 of the maps the run returns (equal to NumPy time means),
    converted by :meth:`MapSums.finish` on the writer thread, for a forecast stored with
    descending latitudes and longitudes from -180 (the maps sort both)."""
    from wxeval.results import read_table

    case = make_case(variables=VARS, levels=(500, 850), n_inits=8, leads_h=(0, 24, 48), seed=7,
                     nlat=7, nlon=12, dtype=np.float64)
    case.forecast["temperature"][3, 1, 0, 2, 5] = np.nan
    write_all(case, tmp_path, layout={"latitude_descending": True, "longitude_180": True})
    converted: list = []
    real = maps_mod.MapSums.file_values

    def spy(self, model):
        out = real(self, model)
        converted.append(sorted(out))
        return out

    monkeypatch.setattr(maps_mod.MapSums, "file_values", spy)
    cfg = _config(tmp_path / "c.yaml", case, skipna=skipna, maps=True)
    report = score(cfg, ["model"], tmp_path / "out")
    _check_maps(report, case, range(8), skipna)
    assert converted and "temperature.bias" in converted[0]  # made early, not at the end
    ds = report.maps["model"]
    file = read_table(tmp_path / "out" / "model.maps.nc")
    for var in VARS:
        for k in ("bias", "mse", "mae"):
            np.testing.assert_array_equal(file[f"{var}.{k}"].values,
                                          ds[f"{var}.{k}"].values.astype(np.float32))
    assert ("temperature.count" in file) == skipna
