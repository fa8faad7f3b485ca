"""Metrics against a hand-written float64 NumPy reference (shared/README.md §2, §4, §5).

Every expectation is computed here or in ``builders`` from the in-memory arrays of a
``builders.Case``, never by wxeval itself.
"""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from builders import (
    LAND_REGION_NAMES,
    STANDARD_REGION_NAMES,
    SURFACE,
    UPPER,
    case_subset,
    make_case,
    ref_area_weights,
    ref_metrics,
    ref_region_weights,
    write_all,
    write_config,
)

from wxeval.api import load_statistics, score
from wxeval.metrics import STATISTICS, accumulate_statistics

ALL_METRICS = ("rmse", "rmse_per_init", "mse", "mae", "bias", "acc", "acc_pooled")
STANDARD = STANDARD_REGION_NAMES
LAND = LAND_REGION_NAMES
CUSTOM = {"wrapbox": {"lat": [-30.0, 50.0], "lon": [300.0, 40.0]}}
ALL_REGIONS = STANDARD + LAND + tuple(CUSTOM)
U, V = "10m_u_component_of_wind", "10m_v_component_of_wind"
H = pd.Timedelta(hours=1)


def rel_err(got: float, expected: float) -> float:
    if expected == 0:
        return abs(got)
    return abs(got - expected) / abs(expected)


def lead_value(table: xr.Dataset, var: str, metric: str, region: str, lead, level=None) -> float:
    da = table[var].sel(metric=metric, region=region, lead_time=np.timedelta64(lead, "ns"))
    if level is not None:
        da = da.sel(level=level)
    return float(da)


def levels_of(case, var):
    return list(enumerate(case.levels)) if var in UPPER else [(None, None)]


def check_table(case, table, variables, regions, rtol, metrics=ALL_METRICS, custom=CUSTOM,
                leads=None):
    """Compare every (variable, level, lead, region, metric) against ``ref_metrics``
    (``leads``: only these lead times, default all of the case's)."""
    failures = []
    wanted = case.lead_times if leads is None else pd.to_timedelta(leads)
    for var in variables:
        for region in regions:
            w2d = ref_region_weights(case, region, custom)
            for li, lead in enumerate(case.lead_times):
                if lead not in wanted:
                    continue
                for lev_i, lev in levels_of(case, var):
                    ref = ref_metrics(case, var, w2d, lev_i, li)
                    for m in metrics:
                        got = lead_value(table, var, m, region, lead, lev)
                        if not rel_err(got, ref[m]) <= rtol:
                            failures.append((var, lev, region, lead / H, m, got, ref[m]))
    assert not failures, f"{len(failures)} mismatches, first: {failures[:5]}"


# --------------------------------------------------------------------------------------------
# accumulate_statistics against NumPy sums


def _ref_stats(f, o, c, w):
    """(N, R, 7) statistics by explicit loops; NaN-free inputs."""
    n, r = f.shape[0], w.shape[0]
    out = np.empty((n, r, len(STATISTICS)))
    for i in range(n):
        d = f[i] - o[i]
        fa, oa = f[i] - c[i], o[i] - c[i]
        for k in range(r):
            out[i, k] = [
                w[k].sum(),
                np.sum(w[k] * d**2),
                np.sum(w[k] * d),
                np.sum(w[k] * np.abs(d)),
                np.sum(w[k] * fa * oa),
                np.sum(w[k] * fa**2),
                np.sum(w[k] * oa**2),
            ]
    return out


def _ref_scale(f, o, c, w):
    """Σ W |term| per statistic: the scale for relative errors of signed sums."""
    n, r = f.shape[0], w.shape[0]
    out = np.empty((n, r, len(STATISTICS)))
    for i in range(n):
        d = f[i] - o[i]
        fa, oa = f[i] - c[i], o[i] - c[i]
        for k in range(r):
            terms = [np.ones_like(d), d**2, d, np.abs(d), fa * oa, fa**2, oa**2]
            out[i, k] = [np.sum(np.abs(w[k] * t)) for t in terms]
    return out


def _random_inputs(seed=0, n=7, s=300, r=4):
    rng = np.random.default_rng(seed)
    c = 280 + 5 * rng.normal(size=(n, s))
    o = c + 3 * rng.normal(size=(n, s))
    f = o + 0.5 + 2 * rng.normal(size=(n, s))
    w = rng.uniform(0.1, 2.0, size=(r, s))
    w[1, rng.uniform(size=s) < 0.5] = 0.0  # a masked region
    w[2] *= rng.uniform(0, 1, size=s)  # fractional land-like weights
    w[3, :] = 0.0
    w[3, :10] = 1.0  # a tiny box
    return f, o, c, w


def test_accumulate_statistics_matches_numpy_sums():
    f, o, c, w = _random_inputs()
    got = accumulate_statistics(f, o, c, w)
    assert got.shape == (f.shape[0], w.shape[0], len(STATISTICS))
    assert got.dtype == np.float64
    expected, scale = _ref_stats(f, o, c, w), _ref_scale(f, o, c, w)
    np.testing.assert_array_less(np.abs(got - expected), 1e-12 * scale + 1e-300)


def test_accumulate_statistics_float32_inputs_summed_in_float64():
    f, o, c, w = _random_inputs(seed=1)
    f32, o32, c32 = (x.astype(np.float32) for x in (f, o, c))
    got = accumulate_statistics(f32, o32, c32, w)
    f64, o64, c64 = (x.astype(np.float64) for x in (f32, o32, c32))
    expected, scale = _ref_stats(f64, o64, c64, w), _ref_scale(f64, o64, c64, w)
    np.testing.assert_array_less(np.abs(got - expected), 1e-12 * scale + 1e-300)


def test_accumulate_statistics_without_climatology():
    f, o, c, w = _random_inputs(seed=2)
    got = accumulate_statistics(f, o, None, w)
    expected, scale = _ref_stats(f, o, c, w), _ref_scale(f, o, c, w)
    np.testing.assert_array_less(np.abs(got[..., :4] - expected[..., :4]), 1e-12 * scale[..., :4])
    assert np.isnan(got[..., 4:]).all()


IDX = {name: k for k, name in enumerate(STATISTICS)}
ERROR_STATS = ("sum_se", "sum_err", "sum_ae")


def _nan_setup(where: str):
    """Inputs with one NaN at a point inside region 0 and outside region 1."""
    f, o, c, w = _random_inputs(seed=4)
    w[1, :] = 1.0
    p = 17
    w[1, p] = 0.0
    {"forecast": f, "truth": o, "climatology": c}[where][3, p] = np.nan
    return f, o, c, w, p


@pytest.mark.parametrize("where", ["forecast", "truth"])
def test_nan_inside_region_makes_statistics_nan(where):
    f, o, c, w, p = _nan_setup(where)
    got = accumulate_statistics(f, o, c, w)
    for name in ERROR_STATS + ("sum_fa_oa", "sum_fa2" if where == "forecast" else "sum_oa2"):
        assert np.isnan(got[3, 0, IDX[name]]), name
    # Other fields are untouched.
    ok = [i for i in range(f.shape[0]) if i != 3]
    expected = _ref_stats(f[ok], o[ok], c[ok], w)
    np.testing.assert_allclose(got[ok], expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("where", ["forecast", "truth", "climatology"])
def test_nan_outside_region_has_no_effect(where):
    f, o, c, w, p = _nan_setup(where)
    got = accumulate_statistics(f, o, c, w)
    keep = np.arange(f.shape[1]) != p
    expected = _ref_stats(f[:, keep], o[:, keep], c[:, keep], w[:, keep])
    scale = _ref_scale(f[:, keep], o[:, keep], c[:, keep], w[:, keep])
    assert np.isfinite(got[:, 1]).all()
    np.testing.assert_array_less(np.abs(got[:, 1] - expected[:, 1]), 1e-12 * scale[:, 1])


def test_nan_in_climatology_inside_region_only_affects_acc_sums():
    f, o, c, w, p = _nan_setup("climatology")
    got = accumulate_statistics(f, o, c, w)
    assert np.isnan(got[3, 0, [IDX["sum_fa_oa"], IDX["sum_fa2"], IDX["sum_oa2"]]]).all()
    # MSE, bias and MAE do not involve the climatology.
    ref = _ref_stats(f, o, np.where(np.isnan(c), 0.0, c), w)
    np.testing.assert_allclose(got[3, 0, 1:4], ref[3, 0, 1:4], rtol=1e-12)
    assert got[3, 0, 0] == pytest.approx(w[0].sum(), rel=1e-12)
    assert w[0, p] > 0


@pytest.mark.parametrize("where", ["forecast", "truth"])
def test_skipna_drops_nan_points_from_sums_and_weight(where):
    f, o, c, w, p = _nan_setup(where)
    rng = np.random.default_rng(9)
    arr = {"forecast": f, "truth": o}[where]
    arr[0, rng.choice(f.shape[1], 25, replace=False)] = np.nan  # several NaN in another field
    got = accumulate_statistics(f, o, c, w, skipna=True)
    assert np.isfinite(got).all()
    for i in range(f.shape[0]):
        good = ~np.isnan(arr[i])
        expected = _ref_stats(f[i : i + 1, good], o[i : i + 1, good], c[i : i + 1, good],
                              w[:, good])[0]
        np.testing.assert_allclose(got[i], expected, rtol=1e-12, atol=1e-9)
    # Weight really lost the NaN point of region 0 (it is inside region 0).
    assert got[3, 0, IDX["sum_weight"]] == pytest.approx(w[0].sum() - w[0, p], rel=1e-12)
    assert got[3, 1, IDX["sum_weight"]] == pytest.approx(w[1].sum(), rel=1e-12)


# --------------------------------------------------------------------------------------------
# The compiled kernel (the path scoring takes: fields on a grid, a RegionReducer) against the
# same NumPy sums, in both storage orders; reference weights from builders' own masks.

GRID_LAT = np.linspace(-90.0, 90.0, 13)
GRID_LON = np.arange(24) * 15.0
#: (name, latitude band, longitude bands, land): custom boxes, and their reference masks.
GRID_REGIONS = (
    ("all", (-90, 90), ((0, 360),), False),
    ("band", (-20, 40), ((0, 360),), False),
    ("box", (30, 60), ((45, 120),), False),
    ("land", (-90, 90), ((0, 360),), True),
)


def _grid_inputs(seed: int, lon_first: bool):
    """Fields (N, A, B) in the storage order, a RegionReducer, dense (lat, lon)-flattened fields
    and reference weights (R, S) built with builders' area weights and box masks."""
    from builders import ref_box_mask

    from wxeval.regions import RegionReducer, custom_region

    rng = np.random.default_rng(seed)
    nlat, nlon, n = len(GRID_LAT), len(GRID_LON), 5
    lsm = np.clip(rng.uniform(-0.5, 1.5, size=(nlat, nlon)), 0, 1)
    c = 280 + 5 * rng.normal(size=(n, nlat, nlon))
    o = c + 3 * rng.normal(size=(n, nlat, nlon))
    f = o + 0.5 + 2 * rng.normal(size=(n, nlat, nlon))
    area = ref_area_weights(GRID_LAT)[:, None]
    w = np.array([
        (area * ref_box_mask(GRID_LAT, GRID_LON, lat, lons) * (lsm if land else 1.0)).ravel()
        for _, lat, lons, land in GRID_REGIONS
    ])
    regions = [custom_region(name, lat, lons[0], land=land)
               for name, lat, lons, land in GRID_REGIONS]
    reducer = RegionReducer(regions, GRID_LAT, GRID_LON, lsm, lon_axis=-2 if lon_first else -1)
    return f, o, c, reducer, w


def _stored(x, lon_first):
    return np.ascontiguousarray(x.transpose(0, 2, 1) if lon_first else x)


def _flat(x):
    return x.reshape(x.shape[0], -1)


@pytest.mark.parametrize("lon_first", [True, False], ids=["lon-lat", "lat-lon"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_kernel_matches_numpy_sums(lon_first, dtype):
    f, o, c, reducer, w = _grid_inputs(5, lon_first)
    f, o, c = (x.astype(dtype).astype(np.float64) for x in (f, o, c))
    got = accumulate_statistics(*(_stored(x.astype(dtype), lon_first) for x in (f, o, c)),
                                reducer)
    expected, scale = _ref_stats(_flat(f), _flat(o), _flat(c), w), _ref_scale(
        _flat(f), _flat(o), _flat(c), w)
    np.testing.assert_array_less(np.abs(got - expected), 1e-12 * scale + 1e-300)
    got = accumulate_statistics(_stored(f, lon_first), _stored(o, lon_first), None, reducer)
    np.testing.assert_array_less(np.abs(got[..., :4] - expected[..., :4]),
                                 1e-12 * scale[..., :4] + 1e-300)
    assert np.isnan(got[..., 4:]).all()


@pytest.mark.parametrize("lon_first", [True, False], ids=["lon-lat", "lat-lon"])
@pytest.mark.parametrize("where", ["forecast", "truth", "climatology"])
def test_compiled_kernel_nan_semantics(lon_first, where):
    """A NaN at a point of region "box" only: box's sums NaN (error sums unless it is in the
    climatology, and the ACC sums it enters), other regions as without the point; with skipna
    the point leaves sums and weight."""
    f, o, c, reducer, w = _grid_inputs(6, lon_first)
    ia, io = 9, 5  # latitude 45, longitude 75: inside "box" (and "all", "land" if land there)
    p = ia * len(GRID_LON) + io
    arrays = {"forecast": f, "truth": o, "climatology": c}
    arrays[where][2, ia, io] = np.nan
    args = [_stored(x, lon_first) for x in (f, o, c)]
    got = accumulate_statistics(*args, reducer)
    keep = np.arange(w.shape[1]) != p
    ref = _ref_stats(_flat(f)[:, keep], _flat(o)[:, keep], _flat(c)[:, keep], w[:, keep])
    hit = {"forecast": ERROR_STATS + ("sum_fa_oa", "sum_fa2"),
           "truth": ERROR_STATS + ("sum_fa_oa", "sum_oa2"),
           "climatology": ("sum_fa_oa", "sum_fa2", "sum_oa2")}[where]
    box = 2
    for name in hit:
        assert np.isnan(got[2, box, IDX[name]]), name
    clean = [k for k in range(len(GRID_REGIONS)) if w[k, p] == 0]
    assert box not in clean and clean  # "band" does not reach latitude 45
    np.testing.assert_allclose(got[2][clean], ref[2][clean], rtol=1e-12)
    others = [i for i in range(f.shape[0]) if i != 2]
    np.testing.assert_allclose(got[others], _ref_stats(
        _flat(f)[others], _flat(o)[others], _flat(c)[others], w), rtol=1e-12)
    if where != "climatology":
        skipped = accumulate_statistics(*args, reducer, skipna=True)
        assert np.isfinite(skipped).all()
        np.testing.assert_allclose(skipped[2], ref[2], rtol=1e-12)


# --------------------------------------------------------------------------------------------
# End to end through score()


@pytest.fixture(scope="module")
def scored64(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e64")
    case = write_all(make_case(dtype=np.float64), root)
    cfg = write_config(root / "cfg.yaml", case, custom_regions=CUSTOM)
    report = score(cfg, ["model"], root / "out")
    return case, report, root / "out", cfg


@pytest.fixture(scope="module")
def scored32(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e32")
    case = write_all(make_case(dtype=np.float32, seed=5), root)
    cfg = write_config(
        root / "cfg.yaml", case, custom_regions=CUSTOM,
        regions=["global", "tropics", "europe", "global_land", "wrapbox"],
    )
    report = score(cfg, ["model"], root / "out")
    return case, report


def _ref_table(stats: np.ndarray, skipna: bool) -> dict[str, np.ndarray]:
    """The metrics table written out by hand from statistics (7, T, *cells)."""
    w, se, err, ae, fo, ff, oo = stats
    mean = np.nanmean if skipna else np.mean
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an all-NaN cell
        mse_t = se / w
        return {
            "rmse": np.sqrt(mean(mse_t, axis=0)),
            "rmse_per_init": mean(np.sqrt(mse_t), axis=0),
            "mse": mean(mse_t, axis=0),
            "mae": mean(ae / w, axis=0),
            "bias": mean(err / w, axis=0),
            "acc": mean(fo / np.sqrt(ff * oo), axis=0),
            "acc_pooled": mean(fo / w, axis=0) / np.sqrt(mean(ff / w, axis=0)
                                                         * mean(oo / w, axis=0)),
        }


@pytest.mark.parametrize("skipna", [False, True])
def test_table_from_statistics_matches_numpy(skipna):
    from wxeval.metrics import METRICS, table_from_statistics, vector_table_from_statistics

    rng = np.random.default_rng(5)
    shape = (len(STATISTICS), 9, 4, 3, 2)  # statistic, init, lead, region, level
    stats = rng.uniform(0.5, 2.0, size=shape)
    stats[2] -= 1.25  # signed error sums
    stats[4] -= 1.25
    stats[1, 3, 0, 0, 0] = np.nan  # one NaN init in a cell
    stats[:, :, 1, 1, 0] = np.nan  # a cell NaN at every init
    stats[0, 2, 2, 2, 1] = 0.0  # zero weight: inf / nan per-init scores
    stats[4:, 5, 3, 0, 1] = np.nan  # ACC sums only
    got = table_from_statistics(stats, METRICS, skipna=skipna)
    ref = _ref_table(stats, skipna)
    for i, m in enumerate(METRICS):
        np.testing.assert_allclose(got[i], ref[m], rtol=1e-13, equal_nan=True, err_msg=m)
    # Metric order as asked; wind vectors: per-init MSE of u plus that of v.
    np.testing.assert_array_equal(table_from_statistics(stats, ("acc", "mse"), skipna=skipna),
                                  got[[METRICS.index("acc"), METRICS.index("mse")]])
    other = rng.uniform(0.5, 2.0, size=shape)
    vec = vector_table_from_statistics(stats, other, ("rmse", "mse", "rmse_per_init"),
                                       skipna=skipna)
    mean = np.nanmean if skipna else np.mean
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mse_t = stats[1] / stats[0] + other[1] / other[0]
        want = [np.sqrt(mean(mse_t, axis=0)), mean(mse_t, axis=0), mean(np.sqrt(mse_t), axis=0)]
    np.testing.assert_allclose(vec, np.stack(want), rtol=1e-13, equal_nan=True)
    with pytest.raises(ValueError, match="not defined for a wind vector"):
        vector_table_from_statistics(stats, other, ("acc",))


def test_regions_in_table_are_all_standard_land_and_custom(scored64):
    _, report, _, _ = scored64
    table = report.tables["model"]
    assert set(table.region.values) == set(ALL_REGIONS)
    assert len(table.region) == len(ALL_REGIONS)


@pytest.mark.parametrize("var", UPPER + SURFACE + (U, V))
def test_every_metric_region_lead_float64(scored64, var):
    case, report, _, _ = scored64
    check_table(case, report.tables["model"], [var], ALL_REGIONS, rtol=1e-10)


def test_every_metric_float32_stores(scored32):
    case, report = scored32
    table = report.tables["model"]
    for var in (U,) + UPPER + SURFACE:
        assert table[var].dtype == np.float64
    check_table(
        case, table, UPPER + SURFACE + (U,),
        ["global", "tropics", "europe", "global_land", "wrapbox"], rtol=1e-5,
    )


def _wind_ref(case, w2d, li):
    lead = case.lead_times[li]
    per_init = []
    for i, t in enumerate(case.init_times):
        v = t + lead
        du = case.forecast[U][i, li].astype(float) - case.truth_at(U, v).astype(float)
        dv = case.forecast[V][i, li].astype(float) - case.truth_at(V, v).astype(float)
        per_init.append(np.sum(w2d * (du**2 + dv**2)) / np.sum(w2d))
    per_init = np.array(per_init)
    return {
        "mse": per_init.mean(),
        "rmse": math.sqrt(per_init.mean()),
        "rmse_per_init": np.sqrt(per_init).mean(),
    }


def test_wind_vector(scored64):
    case, report, _, _ = scored64
    table = report.tables["model"]
    assert "10m_wind_vector" in table
    for region in ("global", "tropics", "europe", "global_land", "wrapbox"):
        w2d = ref_region_weights(case, region, CUSTOM)
        for li, lead in enumerate(case.lead_times):
            ref = _wind_ref(case, w2d, li)
            for m, expected in ref.items():
                got = lead_value(table, "10m_wind_vector", m, region, lead)
                assert rel_err(got, expected) <= 1e-10, (region, lead, m, got, expected)


def test_invariants(scored64):
    _, report, _, _ = scored64
    table = report.tables["model"]
    for var in UPPER + SURFACE + (U, V, "10m_wind_vector"):
        da = table[var]
        rmse, per_init = da.sel(metric="rmse"), da.sel(metric="rmse_per_init")
        assert bool((rmse >= per_init * (1 - 1e-14)).all()), var
        assert bool((rmse > per_init).any()), var
        np.testing.assert_allclose(rmse**2, da.sel(metric="mse"), rtol=1e-12)
    for var in UPPER + SURFACE:
        acc, pooled = table[var].sel(metric="acc"), table[var].sel(metric="acc_pooled")
        assert not np.allclose(acc, pooled, rtol=1e-6, atol=0), var


# --------------------------------------------------------------------------------------------
# Built-in baselines


BASELINE_EVAL = {
    "init_times": {"start": "2020-02-27", "stop": "2020-02-29", "hours": [0, 12]},
    "lead_times": ["0h", "6h", "24h", "48h"],
    "variables": ["temperature", "2m_temperature"],
    "regions": ["global", "tropics", "europe", "global_land"],
}


def _baseline_ref(case, kind, var, w2d, inits, lead, lev_i):
    mse, bias = [], []
    for t in inits:
        v = t + lead
        f = case.truth_at(var, t) if kind == "persistence" else case.clim_at(var, v)
        o = case.truth_at(var, v)
        d = f.astype(float) - o.astype(float)
        if lev_i is not None:
            d = d[lev_i]
        mse.append(np.sum(w2d * d**2) / np.sum(w2d))
        bias.append(np.sum(w2d * d) / np.sum(w2d))
    return {"rmse": math.sqrt(np.mean(mse)), "bias": float(np.mean(bias)), "mse": np.mean(mse)}


@pytest.mark.parametrize("kind", ["persistence", "climatology"])
def test_builtin_baselines(scored64, tmp_path, kind):
    case = scored64[0]
    cfg = write_config(tmp_path / "cfg.yaml", case, **BASELINE_EVAL)
    report = score(cfg, [kind])
    table = report.tables[kind]
    inits = pd.date_range("2020-02-27", "2020-02-29T12", freq="12h")
    np.testing.assert_array_equal(report.statistics[kind].init_time.values, inits.values)
    leads = pd.to_timedelta(BASELINE_EVAL["lead_times"])
    np.testing.assert_array_equal(table.lead_time.values, leads.values)
    for var in ("temperature", "2m_temperature"):
        for region in BASELINE_EVAL["regions"]:
            w2d = ref_region_weights(case, region)
            for lead in leads:
                for lev_i, lev in levels_of(case, var):
                    ref = _baseline_ref(case, kind, var, w2d, inits, lead, lev_i)
                    for m in ("rmse", "bias", "mse"):
                        got = lead_value(table, var, m, region, lead, lev)
                        if kind == "persistence" and lead == pd.Timedelta(0):
                            assert abs(got) <= 1e-12, (var, region, m, got)
                        else:
                            assert rel_err(got, ref[m]) <= 1e-10, (var, region, lead, m, got,
                                                                   ref[m])


# --------------------------------------------------------------------------------------------
# Selections


def _score_with(case, tmp_path, **evaluation):
    cfg = write_config(tmp_path / "cfg.yaml", case, **evaluation)
    return score(cfg, ["model"])  # in memory: no output files, no statistics store


def test_lead_times_list(scored64, tmp_path):
    case = scored64[0]
    rep = _score_with(case, tmp_path, lead_times=["24h", "6h"], variables=["2m_temperature"],
                      regions=["global"])
    table = rep.tables["model"]
    np.testing.assert_array_equal(table.lead_time.values, pd.to_timedelta(["6h", "24h"]).values)
    check_table(case, table, ["2m_temperature"], ["global"], rtol=1e-10, leads=["6h", "24h"])
    assert rep.computed_fields == len(case.init_times) * 2


def test_lead_times_range_stop_inclusive(scored64, tmp_path):
    case = scored64[0]
    rep = _score_with(case, tmp_path, lead_times={"start": "0h", "stop": "24h", "step": "12h"},
                      variables=["2m_temperature"], regions=["global"])
    np.testing.assert_array_equal(
        rep.tables["model"].lead_time.values, pd.to_timedelta(["0h", "12h", "24h"]).values
    )


def test_init_hours(scored64, tmp_path):
    case = scored64[0]
    rep = _score_with(case, tmp_path, init_times={"hours": [0]},
                      variables=["temperature"], regions=["global", "europe"])
    want = case.init_times[case.init_times.hour == 0]
    assert len(want) == 3
    np.testing.assert_array_equal(rep.statistics["model"].init_time.values, want.values)
    sub = case_subset(case, np.flatnonzero(case.init_times.hour == 0))
    check_table(sub, rep.tables["model"], ["temperature"], ["global", "europe"], rtol=1e-10)


def test_date_only_stop_includes_whole_day(scored64, tmp_path):
    case = scored64[0]
    rep = _score_with(case, tmp_path,
                      init_times={"start": "2020-02-27T12", "stop": "2020-02-28"},
                      variables=["2m_temperature"], regions=["tropics"])
    want = pd.DatetimeIndex(["2020-02-27T12", "2020-02-28T00", "2020-02-28T12"])
    np.testing.assert_array_equal(rep.statistics["model"].init_time.values, want.values)
    sub = case_subset(case, [1, 2, 3])
    np.testing.assert_array_equal(sub.init_times, want)
    check_table(sub, rep.tables["model"], ["2m_temperature"], ["tropics"], rtol=1e-10)


def test_variables_levels_regions_metrics_subsets(scored64, tmp_path):
    case = scored64[0]
    rep = _score_with(
        case, tmp_path,
        variables=["geopotential", "2m_temperature"], levels=[850],
        regions=["europe", "global"], metrics=["rmse", "rmse_sqrt_before_time_avg", "acc"],
    )
    table = rep.tables["model"]
    assert set(table.data_vars) == {"geopotential", "2m_temperature"}
    np.testing.assert_array_equal(table.level.values, [850])
    assert table["2m_temperature"].dims == ("metric", "region", "lead_time")
    assert list(table.region.values) == ["europe", "global"]
    assert set(table.metric.values) == {"rmse", "rmse_per_init", "acc"}
    w2d = ref_region_weights(case, "europe")
    for li, lead in enumerate(case.lead_times):
        ref = ref_metrics(case, "geopotential", w2d, case.levels.index(850), li)
        for m in ("rmse", "rmse_per_init", "acc"):
            got = lead_value(table, "geopotential", m, "europe", lead, 850)
            assert rel_err(got, ref[m]) <= 1e-10


# --------------------------------------------------------------------------------------------
# Result files


def test_netcdf_layout(scored64):
    case, report, out, _ = scored64
    ds = xr.open_dataset(out / "model.nc")
    try:
        ds = ds.load()
    finally:
        ds.close()
    assert set(ds.data_vars) >= set(UPPER + SURFACE + (U, V, "10m_wind_vector"))
    for var in UPPER:
        assert ds[var].dims == ("metric", "region", "lead_time", "level")
    for var in SURFACE + (U, V, "10m_wind_vector"):
        assert ds[var].dims == ("metric", "region", "lead_time")
    assert ds.metric.dtype.kind in "UO" and ds.region.dtype.kind in "UO"
    assert set(str(m) for m in ds.metric.values) == set(ALL_METRICS)
    assert set(str(r) for r in ds.region.values) == set(ALL_REGIONS)
    assert np.issubdtype(ds.lead_time.dtype, np.timedelta64)
    np.testing.assert_array_equal(ds.lead_time.values, case.lead_times.values)
    assert np.issubdtype(ds.level.dtype, np.integer)
    np.testing.assert_array_equal(ds.level.values, case.levels)
    for var in UPPER + SURFACE:
        assert ds[var].attrs.get("units")
    # Provenance: the attributes name the forecast store that was scored.
    assert any(case.paths["forecast"] in str(v) for v in ds.attrs.values())
    # Same numbers as the in-memory table, and as the reference.
    table = report.tables["model"]
    for var in UPPER + SURFACE + (U,):
        xr.testing.assert_allclose(ds[var], table[var].transpose(*ds[var].dims), rtol=0, atol=0)
    check_table(case, ds, ["temperature", "2m_temperature"], ["global", "europe"], rtol=1e-10)
    # Classic netCDF, readable without xarray (lead times in hours).
    from scipy.io import netcdf_file

    with netcdf_file(out / "model.nc", "r", mmap=False) as nc:
        assert nc.variables["lead_time"].units in (b"hours", "hours")
        np.testing.assert_array_equal(
            nc.variables["lead_time"][:], case.lead_times.values / np.timedelta64(1, "h")
        )
        assert nc.variables["geopotential"].dimensions == ("metric", "region", "lead_time", "level")


def _netcdf_values(ds: xr.Dataset) -> dict:
    """{(variable, level or None, region, lead hours, metric): value} from the netCDF table."""
    out = {}
    for var, da in ds.data_vars.items():
        coords = [da[d].values for d in da.dims]
        for idx in np.ndindex(da.shape):
            c = dict(zip(da.dims, (x[i] for x, i in zip(coords, idx, strict=True)), strict=True))
            level = int(c["level"]) if "level" in c else None
            hours = float(c["lead_time"] / np.timedelta64(1, "h"))
            key = (str(var), level, str(c["region"]), hours, str(c["metric"]))
            out[key] = float(da.values[idx])
    return out


def test_csv_layout_and_values(scored64):
    _, _, out, _ = scored64
    with open(out / "model.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["variable", "level", "region", "lead_time_hours", "metric", "value"]
    with xr.open_dataset(out / "model.nc") as ds:
        nc = _netcdf_values(ds.load())
    seen = set()
    for var, level, region, hours, metric, value in rows[1:]:
        if var in UPPER:
            assert level != "", (var, level)
            lev = int(level)
        else:
            assert level == "", (var, level)
            lev = None
        key = (var, lev, region, float(hours), metric)
        assert key in nc, key
        got = float(value) if value not in ("", "nan", "NaN") else np.nan
        if np.isnan(nc[key]):
            assert np.isnan(got), key
        else:
            assert rel_err(got, nc[key]) <= 1e-9, (key, got, nc[key])
        seen.add(key)
    assert len(seen) == len(rows) - 1  # no duplicated rows
    finite = {k for k, v in nc.items() if np.isfinite(v)}
    assert finite <= seen  # every finite netCDF value has its row


def test_load_statistics_recovers_per_init_mse(scored64):
    case, _, out, _ = scored64
    stats = load_statistics(out, "model")
    da = stats["temperature"]
    assert set(da.dims) == {"statistic", "init_time", "lead_time", "region", "level"}
    np.testing.assert_array_equal(da.init_time.values, case.init_times.values)
    for i, li, region, lev_i in [(2, 3, "europe", 0), (0, 0, "global", 1),
                                 (5, 4, "tropics_land", 1), (4, 2, "wrapbox", 0)]:
        t, lead = case.init_times[i], case.lead_times[li]
        w2d = ref_region_weights(case, region, CUSTOM)
        f = case.forecast["temperature"][i, li, lev_i].astype(float)
        o = case.truth_at("temperature", t + lead)[lev_i].astype(float)
        expected = np.sum(w2d * (f - o) ** 2) / np.sum(w2d)
        sel = da.sel(init_time=t.to_datetime64(), lead_time=lead.to_timedelta64(),
                     region=region, level=case.levels[lev_i])
        got = float(sel.sel(statistic="sum_se")) / float(sel.sel(statistic="sum_weight"))
        assert rel_err(got, expected) <= 1e-10, (i, li, region, got, expected)
    surf = stats["2m_temperature"]
    assert "level" not in surf.dims


# --------------------------------------------------------------------------------------------
# Resume


def test_resume_computes_nothing_twice(scored64):
    case, first, out, cfg = scored64
    again = score(cfg, ["model"], out)
    assert again.computed_fields == 0
    assert again.reused_fields > 0
    for var in first.tables["model"].data_vars:
        xr.testing.assert_identical(again.tables["model"][var], first.tables["model"][var])


def test_resume_extends_init_range(scored64, tmp_path):
    case = scored64[0]
    ev = {"variables": ["temperature", "2m_temperature"], "regions": ["global", "europe"]}
    cfg = write_config(tmp_path / "cfg.yaml", case,
                       init_times={"stop": "2020-02-28"}, **ev)
    first = score(cfg, ["model"], tmp_path / "out")
    nlead, nlev = len(case.lead_times), len(case.levels)
    per_init = nlead * (nlev + 1)
    assert first.computed_fields == 4 * per_init
    cfg = write_config(tmp_path / "cfg.yaml", case, **ev)
    second = score(cfg, ["model"], tmp_path / "out")
    assert second.computed_fields == 2 * per_init
    np.testing.assert_array_equal(
        second.statistics["model"].init_time.values, case.init_times.values
    )
    check_table(case, second.tables["model"], ["temperature", "2m_temperature"],
                ["global", "europe"], rtol=1e-10)
    # And the written files now describe all six inits.
    ds = xr.open_dataset(tmp_path / "out" / "model.nc").load()
    check_table(case, ds, ["2m_temperature"], ["europe"], rtol=1e-10)
    third = score(cfg, ["model"], tmp_path / "out")
    assert third.computed_fields == 0


def test_all_values_finite_reference_sanity(scored64):
    """Guard the reference itself: weights of every region are non-empty on the case grid."""
    case = scored64[0]
    for region in ALL_REGIONS:
        assert ref_region_weights(case, region, CUSTOM).sum() > 0, region
    assert ref_area_weights(case.latitude).mean() == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# NaN end to end, task splitting


def _nan_case(case, tmp_path):
    """The case with one NaN in 2m_temperature (init 1, lead index 2) at lat −67.5°, lon 112.5°
    (inside global / southern-hemisphere / antarctic, outside europe / tropics)."""
    import dataclasses

    fc = {k: v.copy() for k, v in case.forecast.items()}
    i_lat = int(np.flatnonzero(case.latitude == -67.5)[0])
    i_lon = int(np.flatnonzero(case.longitude == 112.5)[0])
    fc["2m_temperature"][1, 2, i_lat, i_lon] = np.nan
    nan_case = dataclasses.replace(case, forecast=fc, paths=dict(case.paths))
    nan_case.paths.pop("forecast")
    from builders import write_forecast

    write_forecast(nan_case, tmp_path / "nan.zarr", variables=["2m_temperature"])
    return nan_case, (i_lat, i_lon)


NAN_REGIONS = ["global", "southern-hemisphere", "antarctic", "europe", "tropics"]


def test_nan_end_to_end_inside_and_outside_region(scored64, tmp_path):
    case = scored64[0]
    nan_case, _ = _nan_case(case, tmp_path)
    cfg = write_config(tmp_path / "cfg.yaml", nan_case, variables=["2m_temperature"],
                       regions=NAN_REGIONS)
    table = score(cfg, ["model"]).tables["model"]
    nan_lead = case.lead_times[2]
    for region in ("global", "southern-hemisphere", "antarctic"):
        da = table["2m_temperature"].sel(region=region, lead_time=nan_lead.to_timedelta64())
        assert np.isnan(da.sel(metric=list(ALL_METRICS)).values).all(), region
    # Outside those regions, and at other leads, the NaN changes nothing (reference without it).
    check_table(case, table, ["2m_temperature"], ["europe", "tropics"], rtol=1e-10)
    other = [lt for lt in case.lead_times if lt != nan_lead]
    check_table(case, table, ["2m_temperature"], NAN_REGIONS, rtol=1e-10, leads=other)


def test_nan_end_to_end_skipna(scored64, tmp_path):
    case = scored64[0]
    nan_case, (i_lat, i_lon) = _nan_case(case, tmp_path)
    cfg = write_config(tmp_path / "cfg.yaml", nan_case, variables=["2m_temperature"],
                       regions=NAN_REGIONS, skipna=True)
    table = score(cfg, ["model"]).tables["model"]
    li = 2
    lead = case.lead_times[li]
    for region in NAN_REGIONS:
        w_full = ref_region_weights(case, region)
        mse, bias, acc = [], [], []
        for i, t in enumerate(case.init_times):
            w = w_full.copy()
            if i == 1:
                w[i_lat, i_lon] = 0.0  # the NaN point leaves sums and weight
            f = np.nan_to_num(nan_case.forecast["2m_temperature"][i, li])
            o = case.truth_at("2m_temperature", t + lead)
            c = case.clim_at("2m_temperature", t + lead)
            mse.append(np.sum(w * (f - o) ** 2) / w.sum())
            bias.append(np.sum(w * (f - o)) / w.sum())
            fa, oa = f - c, o - c
            acc.append(np.sum(w * fa * oa) / np.sqrt(np.sum(w * fa**2) * np.sum(w * oa**2)))
        expected = {"rmse": math.sqrt(np.mean(mse)), "bias": np.mean(bias), "acc": np.mean(acc)}
        for m, e in expected.items():
            got = lead_value(table, "2m_temperature", m, region, lead)
            assert rel_err(got, e) <= 1e-10, (region, m, got, e)


def test_small_memory_budget_splits_tasks_same_numbers(scored64, tmp_path):
    """A tiny memory_per_task forces one-day blocks and one level per task: same numbers."""
    case, report, _, _ = scored64
    cfg = yaml.safe_load((scored64[3]).read_text())
    cfg["compute"] = {"memory_per_task": "1KiB"}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    table = score(tmp_path / "cfg.yaml", ["model"], tmp_path / "out").tables["model"]
    for var in report.tables["model"].data_vars:
        np.testing.assert_allclose(table[var], report.tables["model"][var].sel(
            {d: table[var][d].values for d in table[var].dims}), rtol=1e-12, atol=0)


def test_resume_into_a_partly_computed_block(scored64, tmp_path):
    """Inits 27T00..28T00 first, then all six: only 28T12, 29T00, 29T12 are computed, even when
    the 28th is one task block (one-day blocks from a tiny memory budget)."""
    case = scored64[0]
    ev = {"variables": ["temperature", "2m_temperature"], "regions": ["global", "wrapbox"],
          "custom_regions": CUSTOM}
    nlead, nlev = len(case.lead_times), len(case.levels)
    per_init = nlead * (nlev + 1)
    for stop, new in (("2020-02-28T00", 3), (None, 3)):
        init_times = {"stop": stop} if stop else {}
        cfg = {"truth": {"path": case.paths["truth"]},
               "climatology": {"path": case.paths["climatology"]},
               "models": {"model": {"path": case.paths["forecast"]}},
               "evaluation": {"init_times": init_times, **ev},
               "compute": {"memory_per_task": "1KiB"}}
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
        rep = score(tmp_path / "cfg.yaml", ["model"], tmp_path / "out")
        assert rep.computed_fields == new * per_init, stop
    np.testing.assert_array_equal(rep.statistics["model"].init_time.values,
                                  case.init_times.values)
    check_table(case, rep.tables["model"], ["temperature", "2m_temperature"],
                ["global", "wrapbox"], rtol=1e-10)


@pytest.mark.parametrize("start", ["2020-12-30", "2021-02-27"])
def test_climatology_lookup_by_raw_dayofyear(tmp_path, start):
    """ACC uses c(dayofyear(v), hour(v)) with the raw calendar day: across 31 Dec of a leap
    year (365, 366, 1) and across 28 Feb → 1 Mar of a non-leap year (59 → 60)."""
    case = write_all(
        make_case(dtype=np.float64, inits=start, n_inits=4, variables=("2m_temperature",),
                  seed=21), tmp_path,
    )
    valid = {t + lt for t in case.init_times for lt in case.lead_times}
    doys = {v.day_of_year for v in valid}
    assert ({366, 1} <= doys) if start.startswith("2020") else ({59, 60} <= doys)
    cfg = write_config(tmp_path / "cfg.yaml", case, regions=["global", "europe"])
    table = score(cfg, ["model"]).tables["model"]
    check_table(case, table, ["2m_temperature"], ["global", "europe"], rtol=1e-10,
                metrics=("acc", "acc_pooled", "rmse"))


def test_resume_widening_then_narrowing_leads_and_levels(scored64, tmp_path):
    """Statistics stored for a few leads/levels, then all, then a subset: always the reference,
    and the final subset is entirely reused."""
    case = scored64[0]
    base = {"variables": ["temperature"], "regions": ["global", "europe"]}
    steps = [
        ({"lead_times": ["6h", "24h"], "levels": [500]}, ["6h", "24h"]),
        ({}, None),
        ({"lead_times": ["24h"], "levels": [850]}, ["24h"]),
    ]
    computed = []
    for extra, leads in steps:
        cfg = write_config(tmp_path / "cfg.yaml", case, **base, **extra)
        rep = score(cfg, ["model"], tmp_path / "out")
        computed.append(rep.computed_fields)
        table = rep.tables["model"]
        want_levels = extra.get("levels", case.levels)
        np.testing.assert_array_equal(table.level.values, want_levels)
        for lev in want_levels:
            lev_i = case.levels.index(lev)
            for li, lead in enumerate(case.lead_times):
                if leads is not None and lead not in pd.to_timedelta(leads):
                    continue
                for region in base["regions"]:
                    ref = ref_metrics(case, "temperature", ref_region_weights(case, region),
                                      lev_i, li)
                    for m in ALL_METRICS:
                        got = lead_value(table, "temperature", m, region, lead, lev)
                        assert rel_err(got, ref[m]) <= 1e-10, (extra, lev, lead, region, m)
    assert computed[0] == len(case.init_times) * 2 * 1
    assert computed[2] == 0


def test_no_wind_vector_with_one_component(scored64):
    case = scored64[0]
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(Path(tmp) / "cfg.yaml", case, variables=[U], regions=["global"])
        table = score(cfg, ["model"]).tables["model"]
    assert set(table.data_vars) == {U}


def test_acc_pooled_skipna_normalises_by_the_anomaly_points(scored64, tmp_path):
    """With skipna, a point where the climatology is NaN (the truth and forecast finite) is in
    the error sums but not in the anomaly sums; one init's forecast NaN elsewhere makes the
    two point sets differ by init. acc_pooled's per-init means <f′o′>, <f′²>, <o′²> are then
    over the anomaly points (the weight of those, not of the error points), as NumPy here."""
    import dataclasses

    from builders import write_climatology

    case = scored64[0]
    nan_case, (i_lat, i_lon) = _nan_case(case, tmp_path)
    # the climatology NaN at another point of the southern hemisphere, at every time
    c_lat = int(np.flatnonzero(case.latitude == -45.0)[0])
    c_lon = int(np.flatnonzero(case.longitude == 45.0)[0])
    clim = {k: v.copy() for k, v in case.climatology.items()}
    clim["2m_temperature"][..., c_lat, c_lon] = np.nan
    nan_case = dataclasses.replace(nan_case, climatology=clim, paths=dict(nan_case.paths))
    write_climatology(nan_case, tmp_path / "clim_nan.zarr")
    cfg = write_config(tmp_path / "cfg.yaml", nan_case, variables=["2m_temperature"],
                       regions=["global", "southern-hemisphere", "europe"], skipna=True,
                       metrics=["acc", "acc_pooled", "rmse"])
    table = score(cfg, ["model"]).tables["model"]
    li = 2
    lead = case.lead_times[li]
    for region in ("global", "southern-hemisphere", "europe"):
        w_full = ref_region_weights(case, region)
        mse, fo, ff, oo, acc = [], [], [], [], []
        for i, t in enumerate(case.init_times):
            w = w_full.copy()
            if i == 1:
                w[i_lat, i_lon] = 0.0  # the forecast's NaN point leaves every sum
            f = np.nan_to_num(nan_case.forecast["2m_temperature"][i, li])
            o = case.truth_at("2m_temperature", t + lead)
            c = np.nan_to_num(nan_case.clim_at("2m_temperature", t + lead))
            mse.append(np.sum(w * (f - o) ** 2) / w.sum())
            wa = w.copy()
            wa[c_lat, c_lon] = 0.0  # the climatology's NaN point leaves the anomaly sums
            fa, oa = f - c, o - c
            fo.append(np.sum(wa * fa * oa) / wa.sum())
            ff.append(np.sum(wa * fa**2) / wa.sum())
            oo.append(np.sum(wa * oa**2) / wa.sum())
            acc.append(fo[-1] / np.sqrt(ff[-1] * oo[-1]))
        expected = {"rmse": math.sqrt(np.mean(mse)), "acc": np.mean(acc),
                    "acc_pooled": np.mean(fo) / np.sqrt(np.mean(ff) * np.mean(oo))}
        for m, e in expected.items():
            got = lead_value(table, "2m_temperature", m, region, lead)
            assert rel_err(got, e) <= 1e-10, (region, m, got, e)


def test_acc_pooled_takes_the_anomaly_weight_and_the_error_weight_where_none_stored():
    """Per init t: <x>_t = Σ_t / w_t with w_t = sum_weight_a where computed, sum_weight where
    sum_weight_a is absent or NaN while the anomaly sums are not (a store written before
    skipna runs computed it)."""
    from wxeval.metrics import statistics_for, table_from_statistics

    fo, ff, oo = np.array([3.0, 5.0]), np.array([4.0, 9.0]), np.array([6.0, 7.0])
    w, wa = np.array([10.0, 10.0]), np.array([8.0, 10.0])

    def pooled(weight):
        return np.mean(fo / weight) / np.sqrt(np.mean(ff / weight) * np.mean(oo / weight))

    stats = {"sum_weight": w, "sum_fa_oa": fo, "sum_fa2": ff, "sum_oa2": oo}
    got = table_from_statistics(stats, ["acc_pooled"])[0]
    assert rel_err(got, pooled(w)) <= 1e-14
    got = table_from_statistics({**stats, "sum_weight_a": wa}, ["acc_pooled"])[0]
    assert rel_err(got, pooled(wa)) <= 1e-14
    assert rel_err(pooled(wa), pooled(w)) > 1e-3  # the two weights give different values
    mixed = np.array([np.nan, 10.0])
    got = table_from_statistics({**stats, "sum_weight_a": mixed}, ["acc_pooled"])[0]
    assert rel_err(got, pooled(np.array([10.0, 10.0]))) <= 1e-14
    # a run computes sum_weight_a for acc_pooled with skipna only
    assert "sum_weight_a" in statistics_for(["acc_pooled"], skipna=True)
    assert "sum_weight_a" not in statistics_for(["acc_pooled"])
