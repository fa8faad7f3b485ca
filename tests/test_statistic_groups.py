"""Statistic groups: each group's compiled path against its plain-NumPy reference, one test per
statistic, on random fields with NaN, ±inf and zero weights, with and without skipna, in both
storage orders (WB2's ``CRPSTest.test_vs_brute_force``; scores' ``crps_impl`` beside
``crps_numba``). The reference itself is checked against the hand-written sums of
``test_nonfinite.ref_stats``.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_nonfinite import INBOX, LAT, LON, SOUTH, _flat, _inputs, _stored, ref_stats

from wxeval.metrics import STATISTICS
from wxeval.regions import RegionReducer
from wxeval.statistics import GROUP_OF, GROUPS, compute, reference

#: The groups computed from f, o, c alone (``seeps`` has its own inputs: tests/test_seeps.py).
PLAIN = tuple(g for g in GROUPS if g != "seeps")
ALL = [s for g in PLAIN for s in GROUPS[g].statistics]


def _messy(seed: int) -> tuple:
    """Fields with NaN and ±inf inside and outside regions (and at sea for land regions)."""
    f, o, c, lsm, w, regions = _inputs(seed=seed, n=5)
    rng = np.random.default_rng(seed + 100)
    f[0][SOUTH] = np.nan  # inside "all" only (at sea: zero land weight)
    o[1][INBOX] = np.inf  # inside "box"/"all"
    c[2][5, 7] = np.nan  # climatology hole: anomaly groups only
    f[3][rng.integers(0, len(LAT)), rng.integers(0, len(LON))] = -np.inf
    o[3][2, 3] = np.nan
    f[4][8, 11] = np.inf
    o[4][8, 11] = np.inf  # inf − inf = NaN in f − o; f′, o′ both +inf
    return f, o, c, lsm, w, regions


@pytest.mark.parametrize("skipna", [False, True], ids=["", "skipna"])
@pytest.mark.parametrize("lon_first", [True, False], ids=["lon-lat", "lat-lon"])
@pytest.mark.parametrize("statistic", ALL)
def test_compiled_matches_reference(statistic, lon_first, skipna):
    group = GROUP_OF[statistic]
    k = GROUPS[group].statistics.index(statistic)
    for seed in (0, 1):
        f, o, c, lsm, w, regions = _messy(seed)
        expected = reference(group, _flat(f), _flat(o), _flat(c), w, skipna=skipna)[..., k]
        reducer = RegionReducer(regions, LAT, LON, lsm, lon_axis=-2 if lon_first else -1)
        args = [_stored(x, lon_first) for x in (f, o, c)]
        # The group alone, and with every other group from the same arrays (the fused
        # errors+anomalies pass included).
        alone = compute((group,), *args, reducer, skipna=skipna)[group][..., k]
        together = compute(PLAIN, *args, reducer, skipna=skipna)[group][..., k]
        for name, got in (("alone", alone), ("together", together)):
            np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-9,
                                       err_msg=f"{statistic} {name} seed {seed}")
        clean = np.isfinite(expected)
        assert clean.any()  # the inputs exercise both clean and non-finite regions
        assert (~clean).any() or skipna or statistic in ("nan_weight", "ensemble_size")


@pytest.mark.parametrize("skipna", [False, True], ids=["", "skipna"])
def test_reference_matches_hand_written_sums(skipna):
    """errors + anomalies references = the hand-written per-region sums of test_nonfinite."""
    f, o, c, _, w, _ = _messy(2)
    got = np.concatenate([reference(g, _flat(f), _flat(o), _flat(c), w, skipna=skipna)
                          for g in ("errors", "anomalies")], axis=-1)
    np.testing.assert_allclose(got, ref_stats(_flat(f), _flat(o), _flat(c), w, skipna),
                               rtol=1e-12, equal_nan=True)
    assert STATISTICS == GROUPS["errors"].statistics + GROUPS["anomalies"].statistics


def test_anomaly_sums_and_nan_weight_by_hand():
    """sum_fa, sum_oa, sum_weight_a and nan_weight of one field and the "all" region, by hand."""
    f, o, c, lsm, w, regions = _inputs(seed=4, n=1)
    f[0][SOUTH] = np.nan
    reducer = RegionReducer(regions, LAT, LON, lsm, lon_axis=-1)
    got = compute(("anomaly_sums", "nan_counts"), f, o, c, reducer, skipna=True)
    wa = w[0].reshape(len(LAT), len(LON))
    ok = np.ones_like(wa, bool)
    ok[SOUTH] = False
    np.testing.assert_allclose(got["anomaly_sums"][0, 0], [
        wa[ok].sum(), (wa * (f[0] - c[0]))[ok].sum(), (wa * (o[0] - c[0]))[ok].sum(),
    ], rtol=1e-12)
    np.testing.assert_allclose(got["nan_counts"][0, 0, 0], wa[SOUTH], rtol=1e-12)
    assert got["nan_counts"][0, 1, 0] == 0.0  # tropics: the NaN at 45° S is outside
    assert np.isnan(compute(("anomaly_sums",), f, o, c, reducer)["anomaly_sums"][0, 0]).all()


def test_climatology_groups_need_a_climatology():
    f, o, _, lsm, _, regions = _inputs(n=1)
    reducer = RegionReducer(regions, LAT, LON, lsm, lon_axis=-1)
    with pytest.raises(ValueError, match="need a climatology"):
        compute(("anomalies",), f, o, None, reducer)
