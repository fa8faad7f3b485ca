"""Area weights and region masks against hand-written NumPy (shared/README.md §2–§3).

Expected values come from closed forms and hand-built boolean masks, never from wxeval. A
region's weights W_ij = w_i · m_ij (· land fraction) are the ones the kernel uses: rebuilt from
:class:`~wxeval.regions.RegionReducer`'s separable parts by :func:`kernel_weights`.
"""

from __future__ import annotations

import numpy as np
import pytest
from builders import (
    LAND_REGION_NAMES,
    REF_LAND_REGIONS,
    REF_REGIONS,
    STANDARD_REGION_NAMES,
    ref_area_weights,
    ref_region_mask,
)

from wxeval.regions import (
    LAND_REGIONS,
    STANDARD_REGIONS,
    Region,
    RegionReducer,
    area_weights,
    custom_region,
    resolve_regions,
)

STANDARD_NAMES = list(STANDARD_REGION_NAMES)
LAND_NAMES = list(LAND_REGION_NAMES)


def kernel_weights(region: Region, lat, lon, land_sea_mask=None) -> np.ndarray:
    """W (latitude, longitude) of one region as the kernel applies it: per row w_i · a_i, per
    longitude segment b_j, times the land fraction for land regions; its sum must equal the
    reducer's Σ W."""
    r = RegionReducer([region], lat, lon, land_sea_mask, lon_axis=-1)
    w = r.region_latw[0][:, None] * r.region_segs[0][r.seg_of_lon][None, :]
    if r.region_land[0]:
        w = w * r.lsm
    np.testing.assert_allclose(r.weight_sums()[0], w.sum(), rtol=1e-12)
    return w


def grid(step: float):
    """Equiangular grid with poles; coordinates exact multiples of ``step``."""
    nlat = int(round(180 / step)) + 1
    nlon = int(round(360 / step))
    return -90.0 + step * np.arange(nlat), step * np.arange(nlon)


# --------------------------------------------------------------------------------------------
# Area weights


def test_area_weights_readme_test_vector():
    lat = np.array([-75.0, -45.0, -15.0, 15.0, 45.0, 75.0])
    r3 = np.sqrt(3.0)
    expected = 3 * np.array([1 - r3 / 2, (r3 - 1) / 2, 0.5, 0.5, (r3 - 1) / 2, 1 - r3 / 2])
    got = area_weights(lat)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert got.mean() == pytest.approx(1.0, rel=1e-14)


@pytest.mark.parametrize("nlat", [32, 64, 7])
def test_area_weights_equal_cos_lat_without_poles(nlat):
    lat = -90 + 180 / nlat * (np.arange(nlat) + 0.5)
    cos = np.cos(np.deg2rad(lat))
    np.testing.assert_allclose(area_weights(lat), cos / cos.mean(), rtol=1e-12)


@pytest.mark.parametrize("step", [1.5, 22.5, 5.625 / 2])
def test_area_weights_with_poles_closed_form(step):
    lat, _ = grid(step)
    half = np.deg2rad(step) / 2
    # Interior rows: sin(φ+Δ/2) − sin(φ−Δ/2) = 2 cos φ sin(Δ/2); pole rows: 1 − cos(Δ/2).
    raw = 2 * np.cos(np.deg2rad(lat)) * np.sin(half)
    raw[0] = raw[-1] = 1 - np.cos(half)
    got = area_weights(lat)
    np.testing.assert_allclose(got, raw / raw.mean(), rtol=1e-10, atol=1e-14)
    assert got[0] > 0 and got[-1] > 0
    assert got[0] == pytest.approx(got[-1], rel=1e-12)
    assert got.mean() == pytest.approx(1.0, rel=1e-14)


def test_region_weights_use_full_grid_weights():
    """A region multiplies a mask into the full-grid weights; never a latitude slice."""
    lat, lon = grid(1.5)
    w = kernel_weights(STANDARD_REGIONS["tropics"], lat, lon)
    expected = ref_area_weights(lat)[:, None] * ref_region_mask(lat, lon, "tropics")
    np.testing.assert_allclose(w, expected, rtol=1e-12, atol=0)
    # Not the weights re-normalised over the tropical band alone.
    band = (lat >= -20) & (lat <= 20)
    sliced = ref_area_weights(lat[band])
    assert not np.allclose(w[band, 0], sliced)


# --------------------------------------------------------------------------------------------
# Standard regions


def test_reference_table_has_every_standard_region():
    assert sorted(REF_REGIONS) == sorted(STANDARD_NAMES)
    assert sorted(STANDARD_REGIONS) == sorted(STANDARD_NAMES)
    assert sorted(LAND_REGIONS) == sorted(LAND_NAMES)


@pytest.mark.parametrize("step", [1.5, 2.5])
@pytest.mark.parametrize("name", STANDARD_NAMES)
def test_standard_region_masks(name, step):
    """1.5° (240x121, the headline grid) and 2.5° (every bound is a grid point: inclusivity)."""
    lat, lon = grid(step)
    expected = ref_region_mask(lat, lon, name)
    assert expected.any()
    got = STANDARD_REGIONS[name].mask(lat, lon)
    assert got.shape == (lat.size, lon.size)
    np.testing.assert_array_equal(got, expected)
    w = kernel_weights(STANDARD_REGIONS[name], lat, lon)
    np.testing.assert_allclose(w, ref_area_weights(lat)[:, None] * expected, rtol=1e-12, atol=0)


def test_hand_masks_spot_checks():
    """A few facts of the hand-built masks themselves on the 1.5° grid (guards the reference)."""
    lat, lon = grid(1.5)
    assert (lat.size, lon.size) == (121, 240)
    eu = ref_region_mask(lat, lon, "europe")
    assert eu[lat == 75.0, lon == 0.0] == 1 and eu[lat == 45.0, lon == 358.5] == 1
    assert eu[lat == 45.0, lon == 43.5] == 0 and eu[lat == 45.0, lon == 346.5] == 0
    et = ref_region_mask(lat, lon, "extra-tropics")
    assert et[lat == 21.0].all() and not et[lat == 19.5].any() and et[lat == -21.0].all()
    assert ref_region_mask(lat, lon, "arctic")[lat == 60.0].all()  # inclusive bound
    lat25, lon25 = grid(2.5)
    eu25 = ref_region_mask(lat25, lon25, "europe")
    assert eu25[lat25 == 35.0, lon25 == 347.5] == 1 and eu25[lat25 == 75.0, lon25 == 42.5] == 1
    assert ref_region_mask(lat25, lon25, "tropics")[lat25 == 20.0].all()
    assert ref_region_mask(lat25, lon25, "extra-tropics")[lat25 == -20.0].all()


def test_longitudes_given_as_minus180_180_fall_in_the_same_boxes():
    lat, lon = grid(2.5)
    lon180 = np.where(lon >= 180, lon - 360, lon)
    for name in ("europe", "north-america", "north-atlantic"):
        np.testing.assert_array_equal(
            STANDARD_REGIONS[name].mask(lat, lon180), ref_region_mask(lat, lon, name)
        )


@pytest.mark.parametrize("name", LAND_NAMES)
def test_land_regions_multiply_by_land_fraction(name):
    lat, lon = grid(1.5)
    rng = np.random.default_rng(3)
    lsm = np.clip(rng.uniform(-0.5, 1.5, size=(lat.size, lon.size)), 0, 1)
    assert 0 < np.mean((lsm > 0) & (lsm < 1))  # fractional values present
    base = REF_LAND_REGIONS[name]
    expected = ref_area_weights(lat)[:, None] * ref_region_mask(lat, lon, base) * lsm
    got = kernel_weights(LAND_REGIONS[name], lat, lon, lsm)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_land_region_without_mask_is_an_error():
    lat, lon = grid(2.5)
    with pytest.raises(ValueError, match="land_sea_mask"):
        RegionReducer([LAND_REGIONS["global_land"]], lat, lon, None)


# --------------------------------------------------------------------------------------------
# Resolution of names, custom boxes


def test_resolve_all_with_and_without_land_sea_mask():
    custom = [custom_region("alps", [44, 48.5], [5, 16.5]), custom_region("x", [0, 10], [0, 10])]
    with_lsm = [r.name for r in resolve_regions("all", custom, has_land_sea_mask=True)]
    assert len(with_lsm) == 13 + 3 + 2
    assert set(with_lsm) == set(STANDARD_NAMES) | set(LAND_NAMES) | {"alps", "x"}
    without = [r.name for r in resolve_regions("all", custom, has_land_sea_mask=False)]
    assert len(without) == 13 + 2
    assert set(without) == set(STANDARD_NAMES) | {"alps", "x"}
    assert len(resolve_regions("all", (), has_land_sea_mask=False)) == 13


def test_resolve_named_list_keeps_order():
    got = resolve_regions(["europe", "global", "tropics_land"], (), has_land_sea_mask=True)
    assert [r.name for r in got] == ["europe", "global", "tropics_land"]


def test_unknown_region_suggests_a_name():
    with pytest.raises(ValueError) as err:
        resolve_regions(["europa"], (), has_land_sea_mask=True)
    msg = str(err.value)
    assert "europa" in msg and "europe" in msg.replace("europa", "")
    with pytest.raises(ValueError, match="tropics"):
        resolve_regions(["tropic"], (), has_land_sea_mask=False)


def test_custom_box_wrapping_longitude():
    lat, lon = grid(2.5)
    box = custom_region("wrap", [30, 60], [350, 20])
    expected = ((lat >= 30) & (lat <= 60))[:, None] & ((lon >= 350) | (lon <= 20))[None, :]
    np.testing.assert_array_equal(box.mask(lat, lon), expected.astype(float))
    assert box.mask(lat, lon)[lat == 30, lon == 350] == 1  # inclusive on both ends
    assert box.mask(lat, lon)[lat == 60, lon == 20] == 1
    assert box.mask(lat, lon)[lat == 45, lon == 22.5] == 0
    w = kernel_weights(box, lat, lon)
    np.testing.assert_allclose(w, ref_area_weights(lat)[:, None] * expected, rtol=1e-12, atol=0)


def test_custom_box_wrapping_longitude_given_negative():
    lat, lon = grid(2.5)
    box = custom_region("wrap", [30, 60], [-10, 20])
    expected = ((lat >= 30) & (lat <= 60))[:, None] & ((lon >= 350) | (lon <= 20))[None, :]
    np.testing.assert_array_equal(box.mask(lat, lon), expected.astype(float))


def test_custom_box_not_wrapping():
    lat, lon = grid(2.5)
    box = custom_region("alps", [44, 48.5], [5, 16.5])
    expected = ((lat >= 44) & (lat <= 48.5))[:, None] & ((lon >= 5) & (lon <= 16.5))[None, :]
    np.testing.assert_array_equal(box.mask(lat, lon), expected.astype(float))
