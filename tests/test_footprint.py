"""Lean reads of the statistics store (``load_statistics(statistics=...)``): the scorecard
reads only the statistics its pages show (no rank-histogram slots for its tests, the M + 1
slots of an ensemble for its histograms), and every number it shows is unchanged: checked
against NumPy and against the tables (made from the full statistics) on a small archive
scored with a 4-member ensemble and a deterministic model."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from builders import make_case, ref_region_weights, write_all
from test_ensemble_score import _config, _members, _ref, write_ensemble

from wxeval.api import score
from wxeval.statistics import ENSEMBLE_STATISTICS, RANK_STATISTICS
from wxeval.store import load_statistics

M = 4
VARS = ("2m_temperature", "geopotential")


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("lean")
    case = write_all(make_case(variables=VARS, n_inits=5, leads_h=(0, 24, 48), seed=11,
                               dtype=np.float64), root)
    members = _members(case, M, seed=12)
    models = {"ens": {"path": write_ensemble(case, members, root / "ens.zarr")},
              "det": {"path": case.paths["forecast"]}}
    # the default metrics plus the ensemble ones (rank_histogram) for both models
    cfg = _config(root, case, models, None, "lean")
    score(cfg, ["ens", "det"], root / "out")
    return case, members, root / "out"


def _mse_ref(case, var, li, lev, region="global") -> np.ndarray:
    """Per-init area-weighted MSE of the deterministic forecast, by the definition."""
    w = ref_region_weights(case, region)
    out = []
    for i, t in enumerate(case.init_times):
        f = case.forecast[var][i, li].astype(np.float64)
        o = case.truth_at(var, t + case.lead_times[li]).astype(np.float64)
        if lev is not None:
            f, o = f[lev], o[lev]
        out.append(np.sum(w * (f - o) ** 2) / np.sum(w))
    return np.array(out)


def test_a_subset_read_holds_only_the_statistics_asked_for(scored):
    case, _, out = scored
    sub = load_statistics(out, "det", statistics=("sum_se", "rank_01", "sum_weight"))
    da = sub["geopotential"]
    # in group order
    assert [str(s) for s in da["statistic"].values] == ["sum_weight", "sum_se", "rank_01"]
    mse = (da.sel(statistic="sum_se") / da.sel(statistic="sum_weight")).sel(region="global")
    for li in range(len(case.lead_times)):
        np.testing.assert_allclose(mse.isel(lead_time=li, level=0).values,
                                   _mse_ref(case, "geopotential", li, 0), rtol=1e-12)
    full = load_statistics(out, "det")
    assert "rank_50" in full["geopotential"]["statistic"].values  # by default: everything


def test_scorecard_reads_no_rank_slots_and_matches_numpy_and_the_tables(scored):
    from wxeval.scorecard.compare import compare, load_inputs

    case, members, out = scored
    inputs = load_inputs(out, ["ens"], "det")
    for per_var in inputs.scores.values():
        for ds in per_var.values():
            assert "rank_outside" not in ds.data_vars  # the rank slots were not read
    cmp = compare(out, ["ens"], "det", metrics=["rmse", "mae", "crps"], inputs=inputs)
    row = np.flatnonzero((cmp["variable"].values == "geopotential")
                         & (cmp["level"].values == case.levels[0]))[0]
    li = 1  # 24 h
    at = {"row": row, "lead_time": li}
    det_rmse = np.sqrt(np.mean(_mse_ref(case, "geopotential", li, 0)))
    np.testing.assert_allclose(
        cmp["baseline_value"].sel(model="ens", metric="rmse", region="global").isel(at),
        det_rmse, rtol=1e-10)
    np.testing.assert_allclose(
        cmp["value"].sel(model="ens", metric="crps", region="global").isel(at),
        _ref(case, members, "geopotential", "global", li, 0)["crps"], rtol=1e-10)
    # every compared cell equals the model's table (made from the full statistics)
    for name, key in (("ens", "value"), ("det", "baseline_value")):
        with xr.open_dataset(out / f"{name}.nc") as table:
            for r in range(cmp.sizes["row"]):
                var = str(cmp["variable"].values[r])
                t = table[var]
                if "level" in t.dims:
                    t = t.sel(level=int(cmp["level"].values[r]))
                for metric in ("rmse", "mae", "crps"):
                    got = cmp[key].sel(model="ens", metric=metric).isel(row=r)
                    want = t.sel(metric=metric).sel(region=got["region"].values,
                                                    lead_time=got["lead_time"].values)
                    np.testing.assert_allclose(got.values, want.transpose(*got.dims).values,
                                               rtol=1e-12)


def test_ensemble_section_reads_m_plus_1_rank_slots_and_its_histogram_matches_numpy(
        scored, monkeypatch):
    from wxeval import store
    from wxeval.scorecard.ensemble import ensemble_data

    case, members, out = scored
    asked = []
    real = store.load_statistics

    def spy(results_dir, model, storage_options=None, *, statistics=None):
        asked.append((model, tuple(statistics) if statistics is not None else None))
        return real(results_dir, model, storage_options, statistics=statistics)

    monkeypatch.setattr(store, "load_statistics", spy)
    data = ensemble_data(out, ["det", "ens"], {}, ["global"])
    assert data["members"] == {"det": 1, "ens": M}
    assert asked == [("det", ENSEMBLE_STATISTICS), ("ens", ENSEMBLE_STATISTICS),
                     ("ens", (*ENSEMBLE_STATISTICS, *RANK_STATISTICS[:M + 1]))]
    ranks = [r for r in data["ranks"]["global"] if r["row"] == f"geopotential {case.levels[0]} hPa"]
    assert [r["lead"] for r in ranks] == [1.0, 2.0]
    w = ref_region_weights(case, "global")
    for r in ranks:
        li = int(r["lead"])  # leads 0, 24, 48 h: index = days
        counts = np.zeros(M + 1)
        for i, t in enumerate(case.init_times):
            x = members["geopotential"][i, li][:, 0]
            o = case.truth_at("geopotential", t + case.lead_times[li])[0]
            rank = np.sum(x < o, axis=0)  # continuous members: no ties
            counts += [np.sum(w * (rank == k)) for k in range(M + 1)]
        want = counts / (len(case.init_times) * np.sum(w)) * (M + 1)
        np.testing.assert_allclose(r["bins"], want, rtol=1e-3)  # shown to 4 digits


def test_score_without_keeping_statistics_gives_the_same_tables(scored, tmp_path):
    """``keep_statistics=False`` (the demo's run) keeps no statistics in the report; the
    tables are those of the definition and of a run keeping them."""
    case, _, out = scored
    cfg = _config(tmp_path, case, {"det": {"path": case.paths["forecast"]}}, ["rmse", "mae"],
                  "nokeep")
    report = score(cfg, ["det"], tmp_path / "out", keep_statistics=False)
    assert report.statistics == {}
    table = report.tables["det"]["geopotential"]
    for li in range(len(case.lead_times)):
        got = table.sel(metric="rmse", region="global", level=case.levels[0]).isel(lead_time=li)
        np.testing.assert_allclose(
            got, np.sqrt(np.mean(_mse_ref(case, "geopotential", li, 0))), rtol=1e-10)
    kept = score(cfg, ["det"], tmp_path / "out2")
    assert set(kept.statistics) == {"det"}
    xr.testing.assert_identical(kept.tables["det"], report.tables["det"])


def test_demo_archive_is_written_with_byte_shuffled_blosc(tmp_path, monkeypatch):
    """The demo's archive codec (lossless: the same values, ~0.2 GB less on disk than plain
    zstd): Blosc lz4 with byte shuffle, as WB2's stores; scoring such stores is checked in
    tests/test_synthetic_codecs.py."""
    import numcodecs

    from wxeval import demo, synthetic

    seen = {}

    def fake_write_archive(folder, **kw):
        seen.update(kw)
        return {}

    monkeypatch.setattr(synthetic, "write_archive", fake_write_archive)
    monkeypatch.setattr(demo, "add_precipitation", lambda paths: None)
    (tmp_path / "archive").mkdir()  # (write_archive would make it)
    demo.write_demo_archive(tmp_path / "archive")
    codec = seen["compressor"]
    assert isinstance(codec, numcodecs.Blosc)
    assert codec.get_config() | {"blocksize": 0} == {
        "id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": numcodecs.Blosc.SHUFFLE,
        "blocksize": 0}
    # noise like the demo's forecast errors: exact round trip, smaller than zstd level 1
    x = (250 + 5 * np.random.default_rng(0).normal(size=(21, 64, 32))).astype(np.float32)
    blob = codec.encode(x)
    np.testing.assert_array_equal(np.frombuffer(codec.decode(blob), np.float32).reshape(x.shape),
                                  x)
    assert len(blob) < len(numcodecs.Zstd(level=1).encode(x))


def test_a_subset_read_refuses_unknown_names(scored):
    """A misspelt statistic, or a bare string, is an error naming it, not an empty read."""
    _, _, out = scored
    with pytest.raises(ValueError, match="nope"):
        load_statistics(out, "det", statistics=("sum_se", "nope"))
    with pytest.raises(TypeError, match="sum_se"):
        load_statistics(out, "det", statistics="sum_se")
