"""Derived variables (wxeval.derived) against NumPy written here from the definitions (shared
README §10): wind speeds, 24 h precipitation from four 6 h windows, 6 h / 24 h from a
cumulative total along the lead (negative differences to 0), incomplete first leads."""

from __future__ import annotations

import numpy as np

from wxeval import derived

H = np.timedelta64(1, "h")


def _leads(*hours):
    return (np.array(hours) * H).astype("timedelta64[ns]")


def test_stored_variable_is_read_not_derived():
    assert derived.recipe_for("10m_wind_speed", {"10m_wind_speed", "10m_u_component_of_wind",
                                                  "10m_v_component_of_wind"}, has_lead=True) is None
    assert derived.recipe_for("10m_wind_speed", {"2m_temperature"}, has_lead=True) is None


def test_wind_speeds():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(2, 3, 4, 5))
    for name, ins in (("10m_wind_speed", ("10m_u_component_of_wind", "10m_v_component_of_wind")),
                      ("wind_speed", ("u_component_of_wind", "v_component_of_wind"))):
        r = derived.recipe_for(name, set(ins), has_lead=False)
        got = derived.derive(r, lambda var, off, ins=ins: {ins[0]: u, ins[1]: v}[var])
        expected = np.array([[[np.hypot(u[i, j, k], v[i, j, k]) for k in range(5)]
                              for j in range(4)] for i in range(3)])
        np.testing.assert_allclose(got, expected, rtol=1e-14)


def test_24h_from_four_6h_windows():
    leads = _leads(0, 6, 12, 18, 24, 30, 36)
    rng = np.random.default_rng(1)
    tp6 = rng.uniform(0, 1e-3, size=(len(leads), 2, 3))
    tp6[5, 1, 2] = np.nan
    r = derived.recipe_for("total_precipitation_24hr", {"total_precipitation_6hr"},
                           has_lead=True)
    assert not r.along_lead
    ok = derived.complete_leads(r, leads, leads)
    assert ok.tolist() == [False, False, False, True, True, True, True]
    # lead 18 h: windows ending at 18, 12, 6, 0 — all stored (the window ending at 0 too)
    for i in np.flatnonzero(ok):
        lead = leads[i]

        def read(var, off, lead=lead):
            return tp6[list(leads).index(lead - off)]

        expected = tp6[i] + tp6[i - 1] + tp6[i - 2] + tp6[i - 3]
        np.testing.assert_array_equal(derived.derive(r, read), expected)
    # a store without lead 0: lead 18 h lacks its first window
    ok = derived.complete_leads(r, leads[1:], leads[1:])
    assert ok.tolist() == [False, False, False, True, True, True]
    # a 12-hourly store cannot make 24 h sums of 6 h windows
    assert not derived.complete_leads(r, _leads(24, 36), _leads(0, 12, 24, 36)).any()


def test_accumulations_from_cumulative_total():
    leads = _leads(6, 12, 18, 24, 30)
    tp = np.array([1.0, 3.0, 2.5, 4.0, 4.0])[:, None] * 1e-3  # a decrease at 18 h
    r6 = derived.recipe_for("total_precipitation_6hr", {"total_precipitation"}, has_lead=True)
    r24 = derived.recipe_for("total_precipitation_24hr", {"total_precipitation"}, has_lead=True)
    assert derived.recipe_for("total_precipitation_6hr", {"total_precipitation"},
                              has_lead=False) is None  # the truth has no lead axis

    def read_at(lead):
        def read(var, off):
            back = lead - off
            return np.zeros(1) if back == np.timedelta64(0, "ns") else \
                tp[list(leads).index(back)]
        return read

    # 6 h: lead 6 h from tp(0) = 0 (no lead 0 stored: nothing accumulated at the init)
    assert derived.complete_leads(r6, leads, leads).all()
    got6 = [derived.derive(r6, read_at(lead))[0] for lead in leads]
    np.testing.assert_allclose(got6, [1e-3, 2e-3, 0.0, 1.5e-3, 0.0])  # −0.5 mm → 0
    ok24 = derived.complete_leads(r24, leads, leads)
    assert ok24.tolist() == [False, False, False, True, True]
    got24 = [derived.derive(r24, read_at(lead))[0] for lead in leads[ok24]]
    np.testing.assert_allclose(got24, [4e-3, 3e-3])
    # 24 h at 30 h needs tp(6 h) = 1 mm: 4 − 1 = 3 mm


def test_available_lists_derivable_variables():
    have = {"10m_u_component_of_wind", "10m_v_component_of_wind", "total_precipitation"}
    assert derived.available(have, has_lead=True) == have | {
        "10m_wind_speed", "total_precipitation_6hr", "total_precipitation_24hr"}
    assert derived.available(have, has_lead=False) == have | {"10m_wind_speed"}
