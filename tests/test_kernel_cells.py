"""The compiled kernel's cells against plain NumPy, region sets chosen for its paths.

:func:`wxeval.kernels.field_statistics` sums cells (latitude segment × longitude segment) only
where a region that does not span every longitude needs them, and full-longitude totals per
latitude segment for the others, differently in each storage order. Each case here is checked
against the NumPy definition (:func:`wxeval.statistics.reference`) on dense weights written
out from hand-built masks (tests/builders.py), and the clean fields also against direct
NumPy sums: land longitude boxes (which need land cells), boxes wrapping longitude 0, sets
without any longitude box, one-row latitude segments, NaN/±inf fields (the careful path) in the
same call as clean ones, both storage orders, with and without a climatology.
"""

from __future__ import annotations

import numpy as np
import pytest
from builders import ref_area_weights, ref_box_mask
from test_kernel_layout import LAT, LON, _fields, _stored  # the same 5° grid and fields

from wxeval.regions import MAX_LAND_CLASSES, Region, RegionReducer, custom_region
from wxeval.statistics import compute, reference

# the 5° grid has rows at −5° and 10°
GROUPS = ("errors", "anomalies", "nan_counts")

#: (name, latitude band, longitude bands as the reference mask reads them, land)
FULL = ((0.0, 360.0),)
SETS = {
    # longitude boxes plain and land, two of them across longitude 0, one-row bands
    "boxes": (
        ("global", (-90, 90), FULL, False),
        ("box", (30, 60), ((45, 120),), False),
        ("land_box", (-40, -10), ((100, 170),), True),
        ("wrap", (-30, 40), ((340, 360), (0, 25)), False),
        ("wrap_land", (50, 80), ((350, 360), (0, 10)), True),
        ("row_band", (10, 10), FULL, False),
        ("row_box", (-5, -5), ((200, 260),), False),
        ("global_land", (-90, 90), FULL, True),
    ),
    # no longitude box at all: full-longitude totals only; the land regions' latitude
    # segments fall into a few classes (one of them two bands apart), summed over whole fields
    "bands": (
        ("global", (-90, 90), FULL, False),
        ("tropics", (-20, 20), FULL, False),
        ("north", (20, 90), FULL, False),
        ("global_land", (-90, 90), FULL, True),
        ("south_land", (-60, -30), FULL, True),
        ("extratropics_land", ((-90, -20), (20, 90)), FULL, True),
    ),
    # more land classes than summed over whole fields: the row loops take the land products
    "many_land_bands": (
        ("global_land", (-90, 90), FULL, True),
        ("a", (-90, -50), FULL, True),
        ("b", (-40, -10), FULL, True),
        ("c", (0, 30), FULL, True),
        ("d", (40, 80), FULL, True),
        ("tropics", (-20, 20), FULL, False),
    ),
    # land boxes only (no plain box needs a cell), and plain boxes without any land region
    "land_boxes": (
        ("tropics", (-20, 20), FULL, False),
        ("land_box", (20, 70), ((0, 60),), True),
        ("wrap_land", (-70, 0), ((300, 360), (0, 30)), True),
    ),
    # plain boxes needing cells next to land regions that span every longitude (fields stored
    # (lon, lat): the land products summed over whole fields by class, the plain ones in cells)
    "boxes_and_land_bands": (
        ("global", (-90, 90), FULL, False),
        ("box", (25, 60), ((240, 285),), False),
        ("wrap", (35, 75), ((347.5, 360), (0, 42.5)), False),
        ("global_land", (-90, 90), FULL, True),
        ("extratropics_land", ((-90, -20), (20, 90)), FULL, True),
    ),
    "plain_boxes": (
        ("box", (25, 60), ((240, 285),), False),
        ("wrap", (35, 75), ((347.5, 360), (0, 42.5)), False),
        ("row_band", (10, 10), FULL, False),
    ),
}


def _lat_bands(lat):
    return lat if isinstance(lat[0], tuple) else (lat,)


def _regions(spec):
    out = []
    for name, lat, lons, land in spec:
        if isinstance(lat[0], tuple):  # several latitude bands, every longitude
            out.append(Region(name, lat, FULL, land=land))
            continue
        lon = (lons[0][0], lons[-1][1]) if len(lons) == 2 else lons[0]  # wrapping: [lo, hi]
        out.append(custom_region(name, lat, lon, land=land))
    return out


def _dense_weights(spec, lsm):
    """(R, lat·lon): area weight × hand-built box mask (× land fraction)."""
    w = ref_area_weights(LAT)[:, None]
    out = []
    for _, lat, lons, land in spec:
        mask = np.zeros((len(LAT), len(LON)))
        for band in _lat_bands(lat):
            mask = np.maximum(mask, ref_box_mask(LAT, LON, band, lons))
        out.append((w * mask * (lsm if land else 1.0)).ravel())
    return np.array(out)




def _direct_sums(f, o, c, w):
    """Σ W·(d², d, |d|, f′o′, f′², o′²) per field and region, written out (clean fields)."""
    f, o, c = (x.reshape(x.shape[0], -1).astype(np.float64) for x in (f, o, c))
    d, fa, oa = f - o, f - c, o - c
    products = np.stack([d * d, d, np.abs(d), fa * oa, fa * fa, oa * oa], axis=-1)
    return np.einsum("rs,nsk->nrk", w, products)


@pytest.mark.parametrize("lon_first", [True, False], ids=["lon-lat", "lat-lon"])
@pytest.mark.parametrize("name", list(SETS))
def test_clean_fields_match_direct_sums(name, lon_first):
    """Fields without NaN (the fast path): every region's six sums and its weight."""
    spec = SETS[name]
    f, o, c, lsm = _fields(4, seed=11)
    reducer = RegionReducer(_regions(spec), LAT, LON, lsm, lon_axis=-2 if lon_first else -1)
    w = _dense_weights(spec, lsm)
    got = compute(("errors", "anomalies"), *(_stored(x, lon_first) for x in (f, o, c)),
                  reducer)
    expected = _direct_sums(f, o, c, w)
    np.testing.assert_allclose(got["errors"][..., 1:], expected[..., :3], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got["anomalies"], expected[..., 3:], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got["errors"][..., 0], np.broadcast_to(w.sum(axis=1), (4, len(w))),
                               rtol=1e-12)


def test_the_sets_hold_what_they_are_for():
    """The grid has one-row latitude segments, and the sets the paths they are named for."""
    lsm = np.full((len(LAT), len(LON)), 0.5)
    reducer = RegionReducer(_regions(SETS["boxes"]), LAT, LON, lsm)
    assert np.diff(reducer.lat_seg_start).min() == 1
    for name, spec in SETS.items():
        r = RegionReducer(_regions(spec), LAT, LON, lsm)
        boxes = ~r.region_segs.all(axis=1)
        assert boxes.any() == (name not in ("bands", "many_land_bands"))
        assert (boxes & (r.region_land == 1)).any() == (name in ("boxes", "land_boxes"))
    # land classes summed over whole fields ("bands"), or too many for that
    for name, many in (("bands", False), ("many_land_bands", True),
                       ("boxes_and_land_bands", False)):
        r = RegionReducer(_regions(SETS[name]), LAT, LON, lsm)
        first, weights = r.land_classes()
        assert (len(first) == 0) == many and len(weights) == len(first)
        assert len(first) == 0 or 2 <= len(first) <= MAX_LAND_CLASSES


@pytest.mark.parametrize("skipna", [False, True], ids=["", "skipna"])
@pytest.mark.parametrize("lon_first", [True, False], ids=["lon-lat", "lat-lon"])
@pytest.mark.parametrize("name", list(SETS))
def test_nonfinite_fields_match_reference(name, lon_first, skipna):
    """Clean fields and fields with NaN or ±inf (inside and outside boxes, at sea and on land)
    in the same call, against the NumPy definition."""
    spec = SETS[name]
    f, o, c, lsm = _fields(7, seed=5)
    lsm[4, 70] = 0.0
    f[1, 10, 20] = np.nan  # −40°, 100°: in land_box (land there), outside most boxes
    o[2, 28, 2] = np.inf  # 50°, 10°: in wrap_land and global
    f[3, 4, 70] = -np.inf  # −70°, 350°: at sea (zero land weight)
    c[4, 20, 69] = np.nan  # climatology hole in the wrap box: anomaly sums only
    f[5, 20, 5] = np.nan  # 10°, 25°: in the one-row band
    o[6, 30, 30] = np.inf
    f[6, 30, 30] = np.inf  # inf − inf = NaN in f − o
    w = _dense_weights(spec, lsm)
    reducer = RegionReducer(_regions(spec), LAT, LON, lsm, lon_axis=-2 if lon_first else -1)
    got = compute(GROUPS, *(_stored(x, lon_first) for x in (f, o, c)), reducer, skipna=skipna)
    flat = [x.reshape(x.shape[0], -1) for x in (f, o, c)]
    for g in GROUPS:
        expected = reference(g, *flat, w, skipna=skipna)
        np.testing.assert_allclose(got[g], expected, rtol=1e-12, atol=1e-9, err_msg=g)
    assert np.isfinite(got["errors"][0]).all()


@pytest.mark.parametrize("lon_first", [True, False], ids=["lon-lat", "lat-lon"])
@pytest.mark.parametrize("name", list(SETS))
def test_without_climatology(name, lon_first):
    """The errors group alone (three products), clean and NaN fields."""
    spec = SETS[name]
    f, o, _, lsm = _fields(3, seed=8)
    o[1, 12, 40] = np.nan
    w = _dense_weights(spec, lsm)
    reducer = RegionReducer(_regions(spec), LAT, LON, lsm, lon_axis=-2 if lon_first else -1)
    got = compute(("errors", "nan_counts"), *(_stored(x, lon_first) for x in (f, o)), None,
                  reducer)
    flat = [x.reshape(x.shape[0], -1) for x in (f, o)]
    for g in ("errors", "nan_counts"):
        np.testing.assert_allclose(got[g], reference(g, *flat, None, w), rtol=1e-12, atol=1e-9,
                                   err_msg=g)


def test_land_classes_of_the_standard_land_regions(monkeypatch):
    """WB2's three land regions on a 5° grid (rows at ±20°), fields stored (lon, lat): three
    classes, |lat| < 20°, |lat| > 20° and the two rows at ±20° (held by both tropics and
    extra-tropics), weighted w_i λ_ij on their rows only, in the storage order. None for
    fields stored (lat, lon), for a land longitude box, or weights over the byte limit."""
    from wxeval import regions as regions_module
    from wxeval.regions import LAND_REGIONS, STANDARD_REGIONS

    rng = np.random.default_rng(2)
    lsm = np.clip(rng.uniform(-0.5, 1.5, size=(len(LAT), len(LON))), 0, 1)
    regions = [*STANDARD_REGIONS.values(), *LAND_REGIONS.values()]
    reducer = RegionReducer(regions, LAT, LON, lsm, lon_axis=-2)
    first, weights = reducer.land_classes()
    assert len(first) == 3
    dense = ref_area_weights(LAT)[:, None] * lsm  # (lat, lon)
    got = np.swapaxes(weights, -1, -2)  # (class, lat, lon)
    np.testing.assert_allclose(got.sum(axis=0), dense, rtol=1e-15)
    rows = [set(np.flatnonzero((g != 0).any(axis=1))) for g in got]
    tropics = set(np.flatnonzero(np.abs(LAT) < 20)) & set(np.flatnonzero(dense.any(axis=1)))
    edges = set(np.flatnonzero(np.abs(LAT) == 20)) & set(np.flatnonzero(dense.any(axis=1)))
    assert tropics in rows and edges in rows
    for g, r in zip(got, rows, strict=True):
        np.testing.assert_array_equal(g[sorted(r)], dense[sorted(r)])
    # a land longitude box: no classes (its sums need cells)
    box = RegionReducer([*regions, custom_region("box", (0, 30), (10, 40), land=True)], LAT,
                        LON, lsm)
    assert len(box.land_classes()[0]) == 0
    assert len(RegionReducer(regions, LAT, LON, lsm, lon_axis=-1).land_classes()[0]) == 0
    monkeypatch.setattr(regions_module, "MAX_LAND_CLASS_BYTES", weights.nbytes - 1)
    assert len(RegionReducer(regions, LAT, LON, lsm).land_classes()[0]) == 0
