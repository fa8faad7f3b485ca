"""Map and spectra sums kept in the statistics store (issue 15, wxeval/sum_parts.py).

Every run's maps are compared with time means per grid point written here in NumPy (float64,
1e-10), and its spectra with the DFT of tests/test_spectra.py; the work a run does is counted
by a spy on compute_task (the inits whose sums each task computes)."""

from __future__ import annotations

import itertools
import shutil
import time

import numpy as np
import pytest
import yaml
from builders import make_case, write_all, write_config
from test_spectra import _ref_spectrum

import wxeval.api as api
from wxeval import sum_parts
from wxeval.api import score

VARS = ("2m_temperature", "temperature")
FIELDS = 3  # per init and lead: 2m_temperature + temperature at 500 and 850 hPa


def _t(t) -> str:
    return str(np.datetime64(t, "ns"))


def _ref_maps(case, var, inits, skipna):
    """(lead, [level,] lat, lon) bias, mse, mae and count over ``inits`` (positions)."""
    out = {k: [] for k in ("bias", "mse", "mae", "count")}
    for j, lead in enumerate(case.lead_times):
        d = np.stack([case.forecast[var][i, j].astype(np.float64)
                      - case.truth_at(var, case.init_times[i] + lead).astype(np.float64)
                      for i in inits])
        ok = ~np.isnan(d) if skipna else np.ones(d.shape, bool)
        n = ok.sum(axis=0).astype(float)
        dz = np.where(ok, d, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["bias"].append(dz.sum(0) / n)
            out["mse"].append((dz * dz).sum(0) / n)
            out["mae"].append(np.abs(dz).sum(0) / n)
        out["count"].append(n)
    return {k: np.stack(v) for k, v in out.items()}


def _check_maps(report, case, inits, skipna):
    ds = report.maps["model"]
    for var in VARS:
        ref = _ref_maps(case, var, inits, skipna)
        for k in ("bias", "mse", "mae", "count"):
            np.testing.assert_allclose(ds[f"{var}.{k}"].values, ref[k], rtol=1e-10, atol=0,
                                       equal_nan=True, err_msg=f"{var}.{k}")


@pytest.fixture(scope="module")
def case_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mapstore")
    case = make_case(variables=VARS, levels=(500, 850), n_inits=8, leads_h=(0, 24, 48), seed=5,
                     nlat=7, nlon=12, dtype=np.float64)
    case.forecast["2m_temperature"][2, 1, 3, 4] = np.nan  # one init, lead 24 h, one point
    case.forecast["temperature"][6, 2, 1, 0, 0] = np.nan  # a pole point at 850 hPa
    assert (case.land_sea_mask > 0.5).any() and (case.land_sea_mask < 0.5).any()
    write_all(case, root)
    return case, root


def _config(path, case, *, skipna, inits=None, budget=None, **extra):
    ev = {"regions": ["global", "global_land"], "skipna": skipna, "metrics": ["rmse", "bias"],
          **extra}
    if inits is not None:
        times = case.init_times[list(inits)]
        ev["init_times"] = {"start": str(times[0]), "stop": str(times[-1])}
    write_config(path, case, **ev)
    if budget:
        cfg = yaml.safe_load(path.read_text())
        cfg["compute"] = {"memory_per_task": budget}
        path.write_text(yaml.safe_dump(cfg))
    return path


class Spy:
    """compute_task, recording per task the inits whose map sums it computes and whether it
    computes regional statistics; ``fail_after`` tasks it raises (an interrupted run)."""

    def __init__(self, monkeypatch, fail_after=None):
        self.maps: list[set] = []
        self.regional: list[bool] = []
        self.fail_after = fail_after
        real = api.compute_task

        def spy(task, *a, **k):
            if self.fail_after is not None and len(self.maps) >= self.fail_after:
                raise RuntimeError("interrupted")
            inits = set()
            for p in task.parts:
                rows = p.map_rows if p.map_rows is not None else np.ones(len(p.init_times), bool)
                if task.maps:
                    inits |= {(_t(t), task.variable, task.levels) for t in p.init_times[rows]}
            self.maps.append(inits)
            self.regional.append(task.regional)
            return real(task, *a, **k)

        monkeypatch.setattr(api, "compute_task", spy)

    def inits(self) -> set:
        return {t for s in self.maps for (t, _, _) in s}


@pytest.mark.parametrize("skipna", [False, True], ids=["nan", "skipna"])
def test_fresh_rerun_and_split_runs(case_root, tmp_path, monkeypatch, skipna):
    case, root = case_root
    everything = range(8)
    full = _config(tmp_path / "full.yaml", case, skipna=skipna, maps=True)
    spy = Spy(monkeypatch)
    fresh = score(full, ["model"], tmp_path / "a")
    _check_maps(fresh, case, everything, skipna)
    assert fresh.computed_sum_fields["maps"] == 8 * 3 * FIELDS
    # the rerun computes nothing (no task at all) and gives the same maps, from the store
    spy.maps.clear()
    again = score(full, ["model"], tmp_path / "a")
    assert spy.maps == [] and again.computed_fields == 0
    assert again.computed_sum_fields["maps"] == 0
    _check_maps(again, case, everything, skipna)

    # two init ranges, then the whole: the second run computes only the new inits
    first = _config(tmp_path / "first.yaml", case, skipna=skipna, maps=True, inits=range(5))
    half = score(first, ["model"], tmp_path / "b")
    _check_maps(half, case, range(5), skipna)
    spy.maps.clear()
    both = score(full, ["model"], tmp_path / "b")
    assert spy.inits() == {_t(t) for t in case.init_times[5:]}
    assert both.computed_sum_fields["maps"] == 3 * 3 * FIELDS
    _check_maps(both, case, everything, skipna)
    parts = sum_parts.list_parts(api.StatisticsStore(str(tmp_path / "b" / "statistics")),
                                 "maps", "model", "temperature",
                                 next(iter(_keys(tmp_path / "b", "temperature"))))
    # one per task (init block) of each run, disjoint, each naming its exact inits
    assert len(parts) >= 2
    for a, b in itertools.combinations(parts, 2):
        assert a.inits.isdisjoint(b.inits)
    assert sum(len(q.inits) for q in parts) == 8


def _keys(out, var):
    folder = out / "statistics" / "model" / var
    return sorted(p.name.removesuffix(".maps") for p in folder.glob("*.maps"))


def test_interrupted_run_resumes(case_root, tmp_path, monkeypatch):
    """Tasks finished before the interruption are not computed again; the maps equal the
    NumPy means."""
    case, root = case_root
    cfg = _config(tmp_path / "c.yaml", case, skipna=False, maps=True, budget="1KiB")
    spy = Spy(monkeypatch, fail_after=3)
    real_write = api.StatisticsStore.write_part

    def slow_write(self, *args, **kwargs):  # a slow disk: the failure comes first
        time.sleep(0.2)
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(api.StatisticsStore, "write_part", slow_write)
    with pytest.raises(RuntimeError, match="interrupted"):
        score(cfg, ["model"], tmp_path / "out", scheduler="synchronous")
    # the finished tasks' regional statistics are stored before the error reaches the caller
    # (written on the collector's thread, waited for when the run fails)
    stored = [p for p in (tmp_path / "out" / "statistics" / "model").glob("*/*/b*.zarr/"
                                                                       ".wxeval-complete")
              if "." not in p.parent.parent.name]  # not the map sums' parts (<key>.maps)
    assert len(stored) == sum(spy.regional[:3]) > 0
    done = set().union(*spy.maps)
    assert done  # three tasks finished: their parts are stored
    spy.maps.clear()
    spy.fail_after = None
    resumed = score(cfg, ["model"], tmp_path / "out", scheduler="synchronous")
    redo = set().union(*spy.maps)
    assert redo and done.isdisjoint(redo)  # nothing finished is computed again
    total = {(_t(t), v, lev) for t in case.init_times
             for v, lev in (("2m_temperature", None), ("temperature", (500,)),
                            ("temperature", (850,)))}
    assert done | redo == total  # (1 KiB per task: one level per task)
    assert resumed.reused_fields > 0
    _check_maps(resumed, case, range(8), False)


def test_maps_added_to_a_store_with_regional_statistics(case_root, tmp_path, monkeypatch):
    """Only the maps are computed: no regional statistics of stored inits again."""
    case, root = case_root
    plain = score(_config(tmp_path / "p.yaml", case, skipna=False), ["model"], tmp_path / "o")
    spy = Spy(monkeypatch)
    mapped = score(_config(tmp_path / "m.yaml", case, skipna=False, maps=True), ["model"],
                   tmp_path / "o")
    assert spy.maps and not any(spy.regional)  # map-only tasks
    assert mapped.computed_fields == 0 and mapped.reused_fields > 0
    assert mapped.computed_sum_fields["maps"] == 8 * 3 * FIELDS
    _check_maps(mapped, case, range(8), False)
    for var in VARS:
        np.testing.assert_array_equal(mapped.tables["model"][var].values,
                                      plain.tables["model"][var].values)
    # and a rerun computes nothing
    spy.maps.clear()
    assert score(_config(tmp_path / "m.yaml", case, skipna=False, maps=True), ["model"],
                 tmp_path / "o").computed_sum_fields["maps"] == 0


def test_compaction_sums_parts_without_double_counting(case_root, tmp_path, monkeypatch):
    case, root = case_root
    out = tmp_path / "out"
    for stop in (2, 5, 8):  # three runs: three parts per entry
        score(_config(tmp_path / f"r{stop}.yaml", case, skipna=True, maps=True,
                      inits=range(stop)), ["model"], out)
    store = api.StatisticsStore(str(out / "statistics"))
    key = _keys(out, "2m_temperature")[0]
    parts = sum_parts.list_parts(store, "maps", "model", "2m_temperature", key)
    assert len(parts) == 3
    saved = tmp_path / "saved"
    shutil.copytree(parts[0].path, saved)  # as if the merge's deletion of it failed
    assert sum_parts.compact(store, "maps", "model", "2m_temperature", key, min_parts=2) == 3
    merged = sum_parts.list_parts(store, "maps", "model", "2m_temperature", key)
    assert [len(q.inits) for q in merged] == [8] and merged[0].name.startswith("c")
    shutil.copytree(saved, parts[0].path)  # the old part is back: overlapping the merged one
    spy = Spy(monkeypatch)
    rerun = score(tmp_path / "r8.yaml", ["model"], out)
    assert spy.maps == []
    _check_maps(rerun, case, range(8), True)  # the merged part once, never plus the old one
    # that run's compaction deleted the old part (the merged one holds its inits)
    assert [q.path for q in sum_parts.list_parts(store, "maps", "model", "2m_temperature",
                                                 key)] == [merged[0].path]
    # a narrower run cannot take inits out of the merged sum: it computes its own
    narrow = score(tmp_path / "r5.yaml", ["model"], out)
    assert spy.inits() == {_t(t) for t in case.init_times[:5]}
    _check_maps(narrow, case, range(5), True)
    spy.maps.clear()
    _check_maps(score(tmp_path / "r8.yaml", ["model"], out), case, range(8), True)
    assert spy.maps == []
    assert len(sum_parts.list_parts(store, "maps", "model", "2m_temperature", key)) == 1


def test_plan_never_double_counts():
    """Random stored parts (overlapping init sets, different cells): at every cell the chosen
    stored parts and the computed inits are pairwise disjoint and hold exactly the inits
    wanted there."""
    rng = np.random.default_rng(3)
    cells = [(lead, lev) for lead in (0, 1, 2) for lev in (500, 850)]
    used = computed = 0
    for _ in range(300):
        blocks = [frozenset(range(4 * b, 4 * b + 4)) for b in range(3)]
        slots = [sum_parts.Slot(b, [c for c in cells if rng.random() < 0.8] or cells[:1])
                 for b in blocks]
        stored = []
        for k in range(rng.integers(0, 7)):
            inits = frozenset(rng.choice(14, size=rng.integers(1, 6), replace=False).tolist())
            pc = [c for c in cells if rng.random() < 0.7] or cells[:1]
            idx = {"init_time": sorted(inits), "lead_time": sorted({c[0] for c in pc}),
                   "level": sorted({c[1] for c in pc})}
            stored.append(sum_parts.Part(f"x/b{k:06d}.zarr", idx, inits))
        chosen = sum_parts.plan_entry(slots, stored)
        for c in cells:
            wanted = frozenset().union(*(s.inits for s in slots if c in s.cells))
            if not wanted:
                continue
            sets = [q.inits for q in chosen[c]]
            sets += [frozenset(s.todo) for s in slots if c in s.cells]
            for a, b in itertools.combinations(sets, 2):
                assert a.isdisjoint(b)
            assert frozenset().union(*sets) == wanted
            for q in chosen[c]:
                assert c in q.cells and q.inits <= wanted
            used += len(chosen[c])
            computed += sum(len(s.todo) for s in slots if c in s.cells)
    assert used > 100 and computed > 100  # both stored and computed sums were exercised


def test_spectra_kept_in_the_store(tmp_path, monkeypatch):
    case = make_case(variables=("geopotential", "10m_u_component_of_wind"), levels=(500, 850),
                     n_inits=4, leads_h=(0, 24), seed=7, nlat=13, nlon=16, dtype=np.float64)
    write_all(case, tmp_path)
    full = write_config(tmp_path / "full.yaml", case, regions=["global"], spectra=True,
                        metrics=["rmse"])
    first = write_config(tmp_path / "first.yaml", case, regions=["global"], spectra=True,
                         metrics=["rmse"], init_times={"start": str(case.init_times[0]),
                                                       "stop": str(case.init_times[1])})
    plain = write_config(tmp_path / "plain.yaml", case, regions=["global"], metrics=["rmse"])
    band = np.flatnonzero((case.latitude >= 30) & (case.latitude <= 60))

    def check(report, inits):
        ds = report.spectra["model"]
        for var, level in (("geopotential", 500), ("10m_u_component_of_wind", None)):
            li = None if level is None else case.levels.index(level)
            for j, lead in enumerate(case.lead_times):
                fs, ts = [], []
                for i in inits:
                    f = case.forecast[var][i, j]
                    o = case.truth_at(var, case.init_times[i] + lead)
                    f, o = (f, o) if li is None else (f[li], o[li])
                    fs.append(np.mean([_ref_spectrum(f[r], case.latitude[r]) for r in band], 0))
                    ts.append(np.mean([_ref_spectrum(o[r], case.latitude[r]) for r in band], 0))
                sel = {} if level is None else {"level": level}
                np.testing.assert_allclose(ds[f"{var}.forecast"].sel(sel).values[j],
                                           np.mean(fs, 0), rtol=1e-10)
                np.testing.assert_allclose(ds[f"{var}.truth"].sel(sel).values[j],
                                           np.mean(ts, 0), rtol=1e-10)

    spy = Spy(monkeypatch)
    check(score(first, ["model"], tmp_path / "o"), range(2))
    spy.maps.clear()
    grown = score(full, ["model"], tmp_path / "o")  # adds the two new inits only
    check(grown, range(4))
    assert grown.computed_sum_fields["spectra"] == 2 * 2 * 2  # inits × leads × (z500, u10)
    spy.maps.clear()
    again = score(full, ["model"], tmp_path / "o")
    assert spy.maps == [] and again.computed_sum_fields["spectra"] == 0
    check(again, range(4))
    # spectra added to a store with the regional statistics: spectra-only tasks
    score(plain, ["model"], tmp_path / "p")
    spy.regional.clear()
    added = score(full, ["model"], tmp_path / "p")
    assert spy.regional and not any(spy.regional) and added.computed_fields == 0
    check(added, range(4))


def test_map_sums_on_gs(case_root, tmp_path, gcs, monkeypatch):
    """The same on a ``gs://`` statistics store (GCS emulator): parts written object by object
    with the commit marker last, found again by a rerun, which computes nothing."""
    import uuid

    import gcsfs

    case, root = case_root
    twin = score(_config(tmp_path / "twin.yaml", case, skipna=False, maps=True), ["model"],
                 tmp_path / "twin")
    blobs = [p for p in (tmp_path / "twin" / "statistics").rglob("*") if p.is_file()]
    if any(p.read_bytes().endswith(b"\r") for p in blobs):
        pytest.xfail("an object ends in \\r: the GCS emulator drops that byte when gcsfs "
                     "uploads it (README §7); not a wxeval bug")
    gcsfs.GCSFileSystem(token="anon").mkdir("wxeval-maps-test")
    cfg = _config(tmp_path / "gs.yaml", case, skipna=False, maps=True)
    data = yaml.safe_load(cfg.read_text())
    data["output"] = {"statistics": f"gs://wxeval-maps-test/s-{uuid.uuid4().hex[:8]}",
                      "storage_options": {"token": "anon"}}
    cfg.write_text(yaml.safe_dump(data))
    first = score(cfg, ["model"], tmp_path / "o1")
    _check_maps(first, case, range(8), False)
    gcsfs.GCSFileSystem.clear_instance_cache()
    spy = Spy(monkeypatch)
    again = score(cfg, ["model"], tmp_path / "o2")
    assert spy.maps == [] and again.computed_sum_fields["maps"] == 0
    _check_maps(again, case, range(8), False)
    assert twin.computed_sum_fields == first.computed_sum_fields


def test_part_deleted_while_planning_is_planned_again(case_root, tmp_path, monkeypatch):
    """A stored part that disappears between listing and reading (another job's compaction):
    the plan starts again from a new listing, without the sums read before counted twice."""
    case, root = case_root
    cfg = _config(tmp_path / "c.yaml", case, skipna=False, maps=True)
    first = _config(tmp_path / "f.yaml", case, skipna=False, maps=True, inits=range(5))
    score(first, ["model"], tmp_path / "o")
    score(cfg, ["model"], tmp_path / "o")  # two parts per entry now
    real = sum_parts.read_values
    calls = []

    def flaky(store, part):
        calls.append(part.path)
        if len(calls) == 2:  # the second part read: gone (after the first was added)
            raise FileNotFoundError(part.path)
        return real(store, part)

    monkeypatch.setattr(sum_parts, "read_values", flaky)
    spy = Spy(monkeypatch)
    again = score(cfg, ["model"], tmp_path / "o")
    assert len(calls) > 2 and spy.maps == []
    _check_maps(again, case, range(8), False)


def test_a_truncated_stored_part_is_an_error_not_garbage_maps(case_root, tmp_path):
    """A stored map-sums chunk cut short (a full disk, a copy interrupted) is refused with a
    message naming the part, not decoded from past its end into silently wrong maps."""
    from wxeval.chunks import DamagedArrayError

    case, _ = case_root
    full = _config(tmp_path / "full.yaml", case, skipna=False, maps=True)
    score(full, ["model"], tmp_path / "a")
    chunk = sorted((tmp_path / "a" / "statistics").rglob("*.maps/*/sums/0.*"))[0]
    chunk.write_bytes(chunk.read_bytes()[:20])
    with pytest.raises(DamagedArrayError, match="damaged"):
        score(full, ["model"], tmp_path / "a")


@pytest.mark.parametrize("damage", ["no init_time", "shape", "statistics order",
                                    "level not a list", "lead_time a number", "grid shape"])
def test_a_part_with_an_unusable_index_is_ignored_and_recomputed(case_root, tmp_path, damage):
    """A part whose index lacks a key, states a shape that is not its leads × statistics ×
    levels, or lists the map statistics out of their written order, is ignored (logged): its
    inits are computed again and the maps still equal the NumPy time means."""
    import json

    case, _ = case_root
    full = _config(tmp_path / "full.yaml", case, skipna=False, maps=True)
    score(full, ["model"], tmp_path / "a")
    marker = sorted((tmp_path / "a" / "statistics").rglob(f"*.maps/*/{sum_parts.MARKER}"))[0]
    idx = json.loads(marker.read_text())
    if damage == "no init_time":
        del idx["init_time"]
    elif damage == "shape":
        idx["shape"][0] += 1
    elif damage == "level not a list":
        idx["level"] = 500
    elif damage == "lead_time a number":
        idx["lead_time"] = 0
    elif damage == "grid shape":
        idx["shape"][-1] += 1
    else:
        idx["statistics"] = idx["statistics"][::-1]
    marker.write_text(json.dumps(idx))
    again = score(full, ["model"], tmp_path / "a")
    assert again.computed_sum_fields["maps"] > 0
    _check_maps(again, case, range(8), False)
