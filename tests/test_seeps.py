"""SEEPS: the ``seeps`` statistic group (reference and compiled path) against a SEEPS written
by hand here, point by point from the definition (shared README §10): categories, the 3 × 3
matrix from p1, the p1 mask, values exactly at a threshold, NaN skipped."""

from __future__ import annotations

import numpy as np
import pytest
from test_nonfinite import LAT, LON, _flat, _inputs, _stored

from wxeval.regions import RegionReducer
from wxeval.statistics import compute, reference

DRY = 0.25e-3


def _category(x: float, wet: float) -> int | None:
    if x < DRY:
        return 0
    if DRY < x < wet:
        return 1
    if x >= wet:
        return 2
    return None  # exactly at the dry threshold: no category


def _hand_score(fv: float, ov: float, wet: float, p1: float) -> float:
    """One point's SEEPS, written out from Rodwell et al. (2010) / WB2."""
    if np.isnan(fv) or np.isnan(ov):
        return np.nan
    table = {
        (0, 0): 0.0, (0, 1): 1 / (1 - p1), (0, 2): 4 / (1 - p1),
        (1, 0): 1 / p1, (1, 1): 0.0, (1, 2): 3 / (1 - p1),
        (2, 0): 1 / p1 + 3 / (2 + p1), (2, 1): 3 / (2 + p1), (2, 2): 0.0,
    }
    cf, co = _category(fv, wet), _category(ov, wet)
    if cf is None or co is None:
        return 0.0
    return 0.5 * table[(cf, co)]


def _hand_group(f, o, wet, p1, w):
    """(N, R, 2): Σ W, Σ W·score over points with 0.1 < p1 < 0.85 and a finite score."""
    n, s = f.shape
    out = np.zeros((n, w.shape[0], 2))
    for i in range(n):
        for j in range(s):
            if not (0.1 < p1[j] < 0.85):
                continue
            sc = _hand_score(f[i, j], o[i, j], wet[i, j], p1[j])
            if np.isnan(sc):
                continue
            out[i, :, 0] += w[:, j]
            out[i, :, 1] += w[:, j] * sc
    return out


def _precip_inputs(seed: int):
    """Precipitation-like fields with every category, thresholds hit exactly, NaN and p1 at
    and around the mask's edges."""
    _, _, _, lsm, w, regions = _inputs(seed=seed, n=3)
    rng = np.random.default_rng(seed)
    shape = (3, len(LAT), len(LON))
    wet = rng.uniform(1e-3, 5e-3, size=shape)
    f = rng.choice([0.0, 0.1e-3, 2e-3, 8e-3], size=shape) * rng.uniform(0.5, 1.5, size=shape)
    o = rng.choice([0.0, 0.1e-3, 2e-3, 8e-3], size=shape) * rng.uniform(0.5, 1.5, size=shape)
    f[0, 1, :5] = DRY  # exactly at the dry threshold: no category, scores 0
    o[1, 2, :5] = DRY
    f[0, 3, :6] = wet[0, 3, :6]  # exactly at the wet threshold: heavy
    o[2, 4, 3:9] = wet[2, 4, 3:9]
    f[1, 5, 7] = np.nan
    o[2, 6, 8] = np.nan
    p1 = rng.uniform(0.02, 0.95, size=shape[1:])
    p1[0, :4] = [0.1, 0.85, 0.1000001, 0.8499999]  # at the mask's edges
    p1[7, 3] = np.nan
    return f, o, wet, p1, lsm, w, regions


def test_hand_written_score_examples():
    p1 = 0.4
    assert _hand_score(0.0, 0.0, 2e-3, p1) == 0.0
    assert _hand_score(0.0, 5e-3, 2e-3, p1) == pytest.approx(0.5 * 4 / 0.6)
    assert _hand_score(2e-3, 0.0, 2e-3, p1) == pytest.approx(0.5 * (1 / 0.4 + 3 / 2.4))
    assert _hand_score(DRY, 5e-3, 2e-3, p1) == 0.0


@pytest.mark.parametrize("lon_first", [True, False], ids=["lon-lat", "lat-lon"])
@pytest.mark.parametrize("seed", [0, 1])
def test_seeps_group_equals_hand_written(seed, lon_first):
    f, o, wet, p1, lsm, w, regions = _precip_inputs(seed)
    expected = _hand_group(_flat(f), _flat(o), _flat(wet), p1.ravel(), w)
    ref = reference("seeps", _flat(f), _flat(o), None, w,
                    seeps=(_flat(wet), p1.ravel(), DRY))
    np.testing.assert_allclose(ref, expected, rtol=1e-12, atol=1e-15)
    reducer = RegionReducer(regions, LAT, LON, lsm, lon_axis=-2 if lon_first else -1)
    p1s = p1.T if lon_first else p1
    for dtype in (np.float64, np.float32):
        got = compute(("seeps",), _stored(f.astype(dtype), lon_first),
                      _stored(o.astype(dtype), lon_first), None, reducer,
                      seeps=(_stored(wet, lon_first), p1s, DRY))["seeps"]
        if dtype == np.float64:
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)
        else:  # float32 values move across thresholds only where a value was set exactly
            assert got.shape == expected.shape and np.isfinite(got).all()
            exp32 = _hand_group(_flat(f.astype(np.float32).astype(np.float64)),
                                _flat(o.astype(np.float32).astype(np.float64)), _flat(wet),
                                p1.ravel(), w)
            np.testing.assert_allclose(got, exp32, rtol=1e-6, atol=1e-12)
    # the mask dropped points, the scores are not all zero, NaN never reached a sum
    assert (expected[..., 0] < w.sum(axis=1)).all()
    assert (expected[..., 1] > 0).all()


def test_all_points_masked_gives_zero_weight():
    f, o, wet, p1, lsm, w, regions = _precip_inputs(0)
    p1[:] = 0.05
    reducer = RegionReducer(regions, LAT, LON, lsm, lon_axis=-1)
    got = compute(("seeps",), f, o, None, reducer, seeps=(wet, p1, DRY))["seeps"]
    assert (got == 0).all()  # per-init SEEPS = 0/0 = NaN: no point left


def test_seeps_needs_its_inputs():
    f, o, wet, p1, lsm, w, regions = _precip_inputs(0)
    reducer = RegionReducer(regions, LAT, LON, lsm, lon_axis=-1)
    with pytest.raises(ValueError, match="SEEPS"):
        compute(("seeps",), f, o, None, reducer)
