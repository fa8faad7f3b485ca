"""±inf and NaN outside a region never matter; inside, sums are what NumPy gives
(shared/README.md §2: WB2 zeroes the values outside a region before the weighted sum).

Every expectation is a hand-written NumPy sum over the points where the region's weight is > 0.
"""

from __future__ import annotations

import numpy as np
import pytest
from builders import ref_area_weights, ref_box_mask

from wxeval.metrics import STATISTICS, accumulate_statistics
from wxeval.regions import RegionReducer, custom_region

IDX = {name: k for k, name in enumerate(STATISTICS)}
LAT = np.linspace(-90.0, 90.0, 13)  # 15° steps: row 3 is −45°, row 9 is 45°
LON = np.arange(24) * 15.0
#: (name, latitude band, longitude band, land)
REGIONS = (
    ("all", (-90, 90), (0, 360), False),
    ("tropics", (-20, 20), (0, 360), False),
    ("north", (20, 90), (0, 360), False),
    ("box", (30, 60), (45, 120), False),
    ("land", (-90, 90), (0, 360), True),
    ("land_box", (30, 60), (45, 120), True),
)
#: Points (lat row, lon column): at −45° (outside tropics/north/box) and one in "box".
SOUTH = (3, 2)
SOUTH2 = (2, 20)
INBOX = (9, 5)


def _inputs(seed=0, n=4):
    rng = np.random.default_rng(seed)
    nlat, nlon = len(LAT), len(LON)
    lsm = np.clip(rng.uniform(-0.5, 1.5, size=(nlat, nlon)), 0, 1)
    lsm[SOUTH] = 0.0  # sea: zero weight for the land regions, inside "all"
    lsm[INBOX] = 0.0
    c = 280 + 5 * rng.normal(size=(n, nlat, nlon))
    o = c + 3 * rng.normal(size=(n, nlat, nlon))
    f = o + 0.5 + 2 * rng.normal(size=(n, nlat, nlon))
    area = ref_area_weights(LAT)[:, None]
    w = np.array([
        (area * ref_box_mask(LAT, LON, lat, [lon]) * (lsm if land else 1.0)).ravel()
        for _, lat, lon, land in REGIONS
    ])
    regions = [custom_region(name, lat, lon, land=land) for name, lat, lon, land in REGIONS]
    return f, o, c, lsm, w, regions


def ref_stats(f, o, c, w, skipna=False):
    """(N, R, 7) sums over the points with weight > 0 only (values elsewhere never read).

    A "NaN point" (f − o NaN; for the ACC sums also f′ or o′ NaN) makes the sums it enters
    NaN (f − o NaN: ``sum_weight`` too), or with ``skipna`` leaves them and (f − o NaN) the
    weight; ±inf is summed as NumPy sums it."""
    n, r = f.shape[0], w.shape[0]
    out = np.empty((n, r, len(STATISTICS)))
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(n):
            for k in range(r):
                m = w[k] > 0
                ww, d = w[k, m], f[i, m] - o[i, m]
                fa = (f[i, m] - c[i, m]) if c is not None else np.zeros_like(d)
                oa = (o[i, m] - c[i, m]) if c is not None else np.zeros_like(d)
                ok = ~np.isnan(d)
                ok_a = ok & ~np.isnan(fa) & ~np.isnan(oa)
                if skipna:
                    sw = ww[ok].sum()
                else:
                    sw = ww.sum()
                err = [np.sum(ww[ok] * d[ok] ** 2), np.sum(ww[ok] * d[ok]),
                       np.sum(ww[ok] * np.abs(d[ok]))]
                acc = [np.sum(ww[ok_a] * (fa * oa)[ok_a]), np.sum(ww[ok_a] * fa[ok_a] ** 2),
                       np.sum(ww[ok_a] * oa[ok_a] ** 2)]
                if not skipna and not ok.all():
                    sw, err = np.nan, [np.nan] * 3  # the weight too, as wxeval documents
                if not skipna and not ok_a.all():
                    acc = [np.nan] * 3
                if c is None:
                    acc = [np.nan] * 3
                out[i, k] = [sw, *err, *acc]
    return out


def _stored(x, lon_first):
    return np.ascontiguousarray(x.transpose(0, 2, 1) if lon_first else x)


def _flat(x):
    return None if x is None else x.reshape(x.shape[0], -1)


def _all_paths(f, o, c, lsm, w, regions, skipna):
    """The statistics from every path: dense weights, and the compiled kernel in both storage
    orders (float64 and float32 fields)."""
    out = {"dense": accumulate_statistics(_flat(f), _flat(o), _flat(c), w, skipna=skipna)}
    for lon_first in (True, False):
        reducer = RegionReducer(regions, LAT, LON, lsm, lon_axis=-2 if lon_first else -1)
        for dtype in (np.float64, np.float32):
            args = [None if x is None else _stored(x.astype(dtype), lon_first) for x in (f, o, c)]
            name = f"{'lon-lat' if lon_first else 'lat-lon'}-{np.dtype(dtype).name}"
            out[name] = accumulate_statistics(*args, reducer, skipna=skipna)
    return out


def _check(f, o, c, lsm, w, regions, skipna=False):
    """Every path against :func:`ref_stats`; returns the float64 reference."""
    for name, got in _all_paths(f, o, c, lsm, w, regions, skipna).items():
        dtype = np.float32 if name.endswith("float32") else np.float64
        cast = [None if x is None else x.astype(dtype).astype(np.float64) for x in (f, o, c)]
        expected = ref_stats(*(_flat(x) for x in cast), w, skipna)
        np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-9, err_msg=name)
    return ref_stats(*(_flat(x) for x in (f, o, c)), w, skipna)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan], ids=["+inf", "-inf", "nan"])
@pytest.mark.parametrize("where", ["forecast", "truth", "climatology"])
@pytest.mark.parametrize("skipna", [False, True], ids=["", "skipna"])
def test_nonfinite_outside_region_never_matters(value, where, skipna):
    """The issue's case: truth inf at one point at 45° S. "tropics", "north", "box" and both
    land regions (the point is at sea) equal the sums without it, in every path."""
    f, o, c, lsm, w, regions = _inputs()
    arr = {"forecast": f, "truth": o, "climatology": c}[where]
    arr[1][SOUTH] = value
    expected = _check(f, o, c, lsm, w, regions, skipna)
    # Independently: the regions without weight at the point equal NumPy on a clean field.
    clean = _inputs()[:3]
    outside = [k for k in range(len(REGIONS)) if w[k, SOUTH[0] * len(LON) + SOUTH[1]] == 0]
    assert [REGIONS[k][0] for k in outside] == ["tropics", "north", "box", "land", "land_box"]
    ref_clean = ref_stats(*(_flat(x) for x in clean), w)
    np.testing.assert_allclose(expected[1][outside], ref_clean[1][outside], rtol=1e-12)
    assert np.isfinite(expected[1][outside]).all()
    # "all" holds the point: its value is not the clean one (inf, −inf or NaN as NumPy sums).
    if not (skipna and np.isnan(value)):
        assert not np.isfinite(expected[1, 0, 1:]).all()


@pytest.mark.parametrize("lon_first", [True, False], ids=["lon-lat", "lat-lon"])
def test_issue_case_truth_inf_at_45s(lon_first):
    """Hand-computed: tropics and north RMSE-sums equal the clean NumPy sums; "all" is inf."""
    f, o, c, lsm, w, regions = _inputs(seed=3)
    o[0][SOUTH] = np.inf
    reducer = RegionReducer(regions, LAT, LON, lsm, lon_axis=-2 if lon_first else -1)
    got = accumulate_statistics(*(_stored(x, lon_first) for x in (f, o, c)), reducer)
    for k in (1, 2):  # tropics, north
        m = w[k].reshape(len(LAT), len(LON))
        inside = m > 0  # the inf point is not: never multiplied by its zero weight
        se = np.sum(m[inside] * (f[0] - o[0])[inside] ** 2)
        assert np.isfinite(se)
        assert got[0, k, IDX["sum_se"]] == pytest.approx(se, rel=1e-12)
        assert got[0, k, IDX["sum_weight"]] == pytest.approx(m.sum(), rel=1e-12)
    assert got[0, 0, IDX["sum_se"]] == np.inf  # inside "all": inf, as NumPy
    assert got[0, 0, IDX["sum_err"]] == -np.inf  # f − o = −inf
    assert got[0, 0, IDX["sum_oa2"]] == np.inf


@pytest.mark.parametrize("skipna", [False, True], ids=["", "skipna"])
def test_mixed_nonfinite_outside_and_inside(skipna):
    """+inf, −inf and NaN at several points of several fields, some inside "box" (where a
    land weight is 0 at one of them): every region and path as NumPy over weight > 0."""
    f, o, c, lsm, w, regions = _inputs(seed=5)
    o[0][SOUTH] = np.inf
    f[0][SOUTH2] = -np.inf
    c[0][2, 7] = np.nan
    o[2][INBOX] = np.inf  # inside box, sea (land_box weight 0)
    f[3][INBOX] = np.nan  # NaN inside box
    f[3][SOUTH] = np.inf
    expected = _check(f, o, c, lsm, w, regions, skipna)
    assert expected[2, 3, IDX["sum_se"]] == np.inf  # box holds the inf
    assert np.isfinite(expected[2, 5]).all()  # land_box: weight 0 there
    assert np.isnan(expected[3, 3, IDX["sum_se"]]) != skipna


def test_plus_and_minus_inf_inside_give_nan_like_numpy():
    f, o, c, lsm, w, regions = _inputs(seed=6)
    f[1][INBOX] = np.inf
    f[1][INBOX[0], INBOX[1] + 1] = -np.inf  # both in "box"
    expected = _check(f, o, c, lsm, w, regions)
    assert np.isnan(expected[1, 3, IDX["sum_err"]])  # +inf + −inf
    assert expected[1, 3, IDX["sum_se"]] == np.inf
    assert np.isfinite(expected[1, 1]).all()  # tropics: outside


@pytest.mark.parametrize("where", ["forecast", "truth"])
def test_nonfinite_without_climatology(where):
    f, o, c, lsm, w, regions = _inputs(seed=7)
    {"forecast": f, "truth": o}[where][2][SOUTH] = -np.inf
    {"forecast": f, "truth": o}[where][2][INBOX] = np.inf
    expected = _check(f, o, None, lsm, w, regions)
    assert np.isfinite(expected[2, 1, :4]).all()  # tropics: both points outside
    assert expected[2, 3, IDX["sum_se"]] == np.inf


def test_overflowing_products_outside_region_never_matter():
    """A finite value whose square overflows (1e200² = inf) outside a region: as an inf."""
    f, o, c, lsm, w, regions = _inputs(seed=8)
    f[0][SOUTH] = 1e200
    expected = _check(f.astype(np.float64), o, c, lsm, w, regions)
    assert np.isfinite(expected[0, 1]).all()


# --------------------------------------------------------------------------------------------
# End to end through score(): the issue's report (truth = inf at one point in the south)


@pytest.mark.parametrize("value", [np.inf, -np.inf], ids=["+inf", "-inf"])
def test_score_truth_inf_in_south_leaves_other_regions_exact(tmp_path, value):
    import dataclasses

    from builders import (
        make_case,
        ref_metrics,
        ref_region_weights,
        write_all,
        write_config,
        write_truth,
    )

    from wxeval.api import score

    case = make_case(dtype=np.float64, variables=("2m_temperature",), n_inits=3)
    i_lat = int(np.flatnonzero(case.latitude == -45.0)[0])
    case.land_sea_mask[i_lat, 3] = 0.0  # sea: outside global_land too
    write_all(case, tmp_path)
    bad_truth = {k: v.copy() for k, v in case.truth.items()}
    li, init = 2, 1
    t_index = case.truth_times.get_loc(case.init_times[init] + case.lead_times[li])
    bad_truth["2m_temperature"][t_index, i_lat, 3] = value
    bad = dataclasses.replace(case, truth=bad_truth, paths=dict(case.paths))
    write_truth(bad, tmp_path / "truth_inf.zarr")
    regions = ["tropics", "northern-hemisphere", "global", "global_land"]
    cfg = write_config(tmp_path / "cfg.yaml", bad, regions=regions)
    table = score(cfg, ["model"]).tables["model"]["2m_temperature"]
    lead = case.lead_times[li].to_timedelta64()
    for region in ("tropics", "northern-hemisphere", "global_land"):
        ref = ref_metrics(case, "2m_temperature", ref_region_weights(case, region), None, li)
        for metric in ("rmse", "rmse_per_init", "mae", "bias", "acc", "acc_pooled"):
            got = float(table.sel(region=region, lead_time=lead, metric=metric))
            assert got == pytest.approx(ref[metric], rel=1e-10), (region, metric)
    assert float(table.sel(region="global", lead_time=lead, metric="rmse")) == np.inf
    assert float(table.sel(region="global", lead_time=lead, metric="bias")) == -value


# --------------------------------------------------------------------------------------------
# wxeval check names inf as inf, with counts (not "NaN")


def _check_world(tmp_path, forecast_values=(), truth_values=(), **evaluation):
    """Stores (5 × 8 grid, 2 inits, leads 0 h and 12 h: the sample is both inits × both leads
    = 4 fields × 40 points = 160 values per surface variable) with values set in 2m
    temperature: ``(init, lead, lat, lon, value)`` in the forecast, ``(time, lat, lon, value)``
    in the truth."""
    from builders import make_case, write_all, write_config

    case = make_case(nlat=5, nlon=8, n_inits=2, leads_h=(0, 12), variables=("2m_temperature",))
    for i, j, a, b, v in forecast_values:
        case.forecast["2m_temperature"][i, j, a, b] = v
    for t, a, b, v in truth_values:
        case.truth["2m_temperature"][t, a, b] = v
    write_all(case, tmp_path)
    return write_config(tmp_path / "cfg.yaml", case, **evaluation), case


def _findings(cfg, code):
    from wxeval.check import run_checks
    from wxeval.config import load_config

    return [f for f in run_checks(load_config(cfg), ["model"]).findings if f.code == code]


def test_check_names_inf_with_counts(tmp_path):
    from typer.testing import CliRunner

    from wxeval.cli import app

    cfg, case = _check_world(tmp_path, forecast_values=[
        (0, 0, 1, 2, np.inf), (0, 0, 1, 3, np.inf), (1, 1, 4, 0, -np.inf)])
    inf = _findings(cfg, "inf")
    assert len(inf) == 1 and inf[0].severity == "error" and inf[0].variable == "2m_temperature"
    assert "2 +inf, 1 −inf of 160 sampled values (1.9%) are infinite" in inf[0].message
    assert "lead 0h" in inf[0].message and "lead 12h" in inf[0].message
    assert case.paths["forecast"] in inf[0].store
    assert not _findings(cfg, "nan")  # inf is not called NaN
    res = CliRunner().invoke(app, ["check", "--config", str(cfg), "--all"])
    assert res.exit_code == 3, res.stdout
    assert any(ln.startswith("error: [inf]") and "infinite" in ln and "NaN" not in ln.split(":")[3]
               for ln in res.stdout.splitlines()), res.stdout


def test_check_inf_and_nan_in_truth_named_apart_with_skipna(tmp_path):
    """Variant: the truth holds both; skipna skips the NaN (info) but not the inf (error)."""
    cfg, _ = _check_world(tmp_path, truth_values=[(0, 0, 0, -np.inf), (0, 0, 1, np.nan),
                                                  (0, 0, 2, np.nan)], skipna=True)
    inf, nan = _findings(cfg, "inf"), _findings(cfg, "nan")
    assert len(inf) == 1 and inf[0].severity == "error" and "1 −inf of" in inf[0].message
    assert "skipna skips NaN only" in inf[0].message
    # The truth sample: valid times init 0 + 0 h, init 0 + 12 h = init 1 + 0 h, init 1 + 12 h:
    # 3 fields × 40 points.
    assert len(nan) == 1 and nan[0].severity == "info"
    text = nan[0].message.split("2m_temperature: ", 1)[1]
    assert text.startswith("1.7% of sampled values are NaN (2 of 120;") and "inf" not in text


def test_check_every_value_infinite(tmp_path):
    """Variant: a sampled variable with nothing but ±inf and NaN."""
    values = [(i, j, a, b, np.inf if (a + b) % 3 else np.nan if a else -np.inf)
              for i in range(2) for j in range(2) for a in range(5) for b in range(8)]
    cfg, _ = _check_world(tmp_path, forecast_values=values)
    n_nan = sum(1 for v in values if np.isnan(v[-1]))
    n_pos = sum(1 for v in values if v[-1] == np.inf)
    n_neg = len(values) - n_nan - n_pos
    inf = _findings(cfg, "inf")
    assert len(inf) == 1 and inf[0].message.endswith(
        f"every sampled value is NaN or ±inf ({n_nan} NaN, {n_pos} +inf, {n_neg} −inf) "
        "(160 values)")
