"""Units attributes: known right and wrong units per quantity, and the ``units``/``units-attr``
findings."""

from __future__ import annotations

import re

from wxeval.check.stores import _Store
from wxeval.schema import EXPECTED_UNITS


class _UnitChecks:
    def check_units_attrs(self, st: _Store, variables: list[str]) -> None:
        for var in variables:
            key = (st.name, "units", (var,))
            if var not in st.ds.data_vars or var not in EXPECTED_UNITS or key in self._sampled:
                continue
            self._sampled.add(key)
            units = st.ds[var].attrs.get("units")
            expected = EXPECTED_UNITS[var]
            if units is None:
                continue
            verdict = units_verdict(var, str(units))
            if verdict == "ok":
                continue
            if verdict == "wrong":
                self.add(
                    "error",
                    "units",
                    st.name,
                    var,
                    f"{st.name}: {var} has units {units!r}, expected {expected!r}"
                    f"{_UNIT_HINT.get(_family(var), '')}",
                )
            else:
                self.add(
                    "warning",
                    "units-attr",
                    st.name,
                    var,
                    f"{st.name}: {var} has units attribute {units!r}, expected {expected!r}",
                )


def _norm_units(u: str) -> str:
    u = u.strip().lower().replace("**", "").replace("^", "").replace(" ", "").replace("·", "")
    u = u.replace("⁻", "-").replace("¹", "1").replace("²", "2").replace("°", "deg")
    u = re.sub(r"/([a-z]+)(\d*)", lambda m: f"{m.group(1)}-{m.group(2) or '1'}", u)
    return u


_FAMILY = {
    "geopotential": "geopotential",
    "temperature": "temperature",
    "2m_temperature": "temperature",
    "u_component_of_wind": "wind",
    "v_component_of_wind": "wind",
    "10m_u_component_of_wind": "wind",
    "10m_v_component_of_wind": "wind",
    "specific_humidity": "humidity",
    "mean_sea_level_pressure": "pressure",
    "total_precipitation_6hr": "precipitation",
    "total_precipitation": "precipitation",
    "total_precipitation_24hr": "precipitation",
    "10m_wind_speed": "wind",
    "wind_speed": "wind",
}

_OK_UNITS = {
    "geopotential": {"m2s-2", "m2/s2"},
    "temperature": {"k", "kelvin", "degk"},
    "wind": {"ms-1", "m/s", "meterspersecond", "metrespersecond"},
    "humidity": {"kgkg-1", "1", "kg/kg", "(0-1)"},
    "pressure": {"pa", "pascal", "pascals"},
    "precipitation": {"m"},
}

_WRONG_UNITS = {
    "geopotential": {"m", "gpm", "dam", "gpdam", "metres", "meters", "km", "ft"},
    "temperature": {"c", "degc", "degreec", "degreesc", "deg_c", "celsius", "degrees_celsius",
                    "f", "degf", "fahrenheit"},
    "wind": {"kt", "kts", "knot", "knots", "kn", "kmh-1", "km/h", "mph", "kph"},
    "humidity": {"gkg-1", "g/kg"},
    "pressure": {"hpa", "mb", "mbar", "millibar", "millibars", "kpa", "bar", "atm"},
    "precipitation": {"mm", "cm", "kgm-2"},
}

_UNIT_HINT = {
    "geopotential": " (geopotential height in metres instead of geopotential? multiply by g)",
    "temperature": " (°C instead of K?)",
    "pressure": " (hPa instead of Pa? multiply by 100)",
    "wind": " (not m s**-1)",
    "humidity": " (g/kg instead of kg/kg?)",
    "precipitation": " (mm instead of m?)",
}


def _family(var: str) -> str:
    return _FAMILY.get(var, "")


def units_verdict(var: str, units: str) -> str:
    """``"ok"``, ``"wrong"`` (a known other unit of the same quantity) or ``"unknown"``."""
    fam = _family(var)
    if not fam:
        return "ok"
    u = _norm_units(units)
    if u in {_norm_units(x) for x in _OK_UNITS[fam]} or u == _norm_units(EXPECTED_UNITS[var]):
        return "ok"
    if u in {_norm_units(x) for x in _WRONG_UNITS[fam]}:
        return "wrong"
    return "unknown"
