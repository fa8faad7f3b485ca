"""Derived variables: fields computed inside the pass from what a store holds.

A :class:`Recipe` names its inputs, the time offsets at which each input is read (back from the
forecast's lead l, or from the truth's valid time v) and a NumPy function of those arrays. A
variable the store holds itself is read, never derived (:func:`recipe_for` returns ``None``).
Truth and forecast each derive what they lack. Definitions (WeatherBench 2, see README,
"Derived variables"):

* ``10m_wind_speed`` = √(u10² + v10²), ``wind_speed`` = √(u² + v²) per level (m s⁻¹);
* ``total_precipitation_24hr`` from ``total_precipitation_6hr``: the sum of the four 6-hour
  windows ending at l, l − 6 h, l − 12 h, l − 18 h (forecast) or v, v − 6 h, v − 12 h, v − 18 h
  (truth); undefined when any window is missing (a forecast lead < 24 h);
* ``total_precipitation_6hr`` / ``_24hr`` from a cumulative ``total_precipitation`` along the
  lead (forecasts only): acc_N(l) = max(tp(l) − tp(l − N h), 0) — negative differences are set
  to 0 as WeatherBench 2 does; undefined at leads < N h; tp at lead 0 is 0 when the store has
  no lead 0 (nothing has accumulated at the init).

Precipitation is in metres of water throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

HOUR = np.timedelta64(1, "h")


@dataclass(frozen=True)
class Recipe:
    """How ``name`` is derived: ``function(*arrays)`` of one array per (input, offset) pair,
    in the order of :attr:`reads` (each input at each of its offsets)."""

    name: str
    inputs: tuple[str, ...]
    #: Offsets (hours, ≥ 0) back from the lead / valid time at which every input is read.
    offsets_h: tuple[int, ...]
    function: Callable[..., np.ndarray]
    doc: str
    #: Only from stores with a lead axis (a cumulative field along the lead).
    along_lead: bool = False

    @property
    def offsets(self) -> tuple[np.timedelta64, ...]:
        return tuple(np.timedelta64(h, "h").astype("timedelta64[ns]") for h in self.offsets_h)

    @property
    def reads(self) -> tuple[tuple[str, np.timedelta64], ...]:
        """(input, offset) pairs in the order ``function`` takes them."""
        return tuple((v, off) for v in self.inputs for off in self.offsets)

    @property
    def key(self) -> str:
        """The recipe's identity in the statistics entry key (:func:`wxeval.store.entry_key`)."""
        return f"{self.name} = {self.doc} [inputs {','.join(self.inputs)}; offsets " + \
            f"{','.join(str(h) for h in self.offsets_h)} h]"

    def apply(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        return self.function(*arrays)


def _speed(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """√(u² + v²)."""
    return np.sqrt(u * u + v * v)


def _sum4(a, b, c, d) -> np.ndarray:
    """Sum of four 6-hour accumulations."""
    return a + b + c + d


def _difference(now: np.ndarray, before: np.ndarray) -> np.ndarray:
    """max(tp(l) − tp(l − N), 0): negative differences set to 0 (WeatherBench 2)."""
    d = now - before
    return np.where(d < 0, np.zeros((), d.dtype), d)


RECIPES: tuple[Recipe, ...] = (
    Recipe("10m_wind_speed", ("10m_u_component_of_wind", "10m_v_component_of_wind"), (0,),
           _speed, "sqrt(u10^2 + v10^2)"),
    Recipe("wind_speed", ("u_component_of_wind", "v_component_of_wind"), (0,),
           _speed, "sqrt(u^2 + v^2) per level"),
    # A forecast holding the cumulative total derives from it (any lead step that reaches
    # l - N h works; WB2 derives so), before the sum of 6 h windows (needs 6-hourly leads).
    Recipe("total_precipitation_6hr", ("total_precipitation",), (0, 6),
           _difference, "max(tp(l) - tp(l-6h), 0)", along_lead=True),
    Recipe("total_precipitation_24hr", ("total_precipitation",), (0, 24),
           _difference, "max(tp(l) - tp(l-24h), 0)", along_lead=True),
    Recipe("total_precipitation_24hr", ("total_precipitation_6hr",), (0, 6, 12, 18),
           _sum4, "sum of the 6h windows ending at t, t-6h, t-12h, t-18h"),
)
#: Every variable some recipe derives.
DERIVABLE: frozenset[str] = frozenset(r.name for r in RECIPES)
#: Precipitation accumulations (metres of water; the report shows mm).
PRECIPITATION = frozenset(
    {"total_precipitation", "total_precipitation_6hr", "total_precipitation_24hr"}
)
#: SEEPS dry thresholds (metres) per accumulation (WeatherBench 2).
SEEPS_DRY_THRESHOLD = {"total_precipitation_24hr": 0.25e-3, "total_precipitation_6hr": 0.1e-3}


def recipe_for(variable: str, stored: Collection[str], *, has_lead: bool) -> Recipe | None:
    """The recipe deriving ``variable`` from the ``stored`` variables, or ``None`` when the
    store holds it itself (or no recipe applies: the caller reports it as missing).
    ``has_lead``: the store has a lead axis (cumulative recipes need one)."""
    if variable in stored:
        return None
    for r in RECIPES:
        if r.name == variable and (has_lead or not r.along_lead) and set(r.inputs) <= set(stored):
            return r
    return None


def available(stored: Collection[str], *, has_lead: bool) -> set[str]:
    """The stored variables and those derivable from them."""
    out = set(stored)
    for r in RECIPES:
        if (has_lead or not r.along_lead) and set(r.inputs) <= set(stored):
            out.add(r.name)
    return out


def lead_zero_is_zero(recipe: Recipe) -> bool:
    """A cumulative input is 0 at lead 0 (read as zeros when the store has no lead 0)."""
    return recipe.along_lead


def complete_leads(recipe: Recipe, leads: np.ndarray, stored_leads: np.ndarray) -> np.ndarray:
    """Mask of ``leads`` whose every window is available: each l − offset ≥ 0 and stored (or
    l − offset = 0 for a cumulative input, which is 0 at the init)."""
    leads = np.asarray(leads).astype("timedelta64[ns]")
    stored = np.asarray(stored_leads).astype("timedelta64[ns]")
    zero = np.timedelta64(0, "ns")
    ok = np.ones(len(leads), dtype=bool)
    for off in recipe.offsets:
        back = leads - off
        here = np.isin(back, stored) & (back >= zero)
        if recipe.along_lead:
            here |= back == zero
        ok &= here
    return ok


def derive(recipe: Recipe, read: Callable[[str, np.timedelta64], np.ndarray]) -> np.ndarray:
    """The derived field from ``read(input, offset)`` (each (input, offset) read once)."""
    return recipe.apply([read(v, off) for v, off in recipe.reads])


def has_lead_axis(ds) -> bool:
    """The store is a forecast (a lead axis): cumulative recipes apply."""
    from wxeval.schema import LEAD_TIME

    return LEAD_TIME in ds.dims


def recipe_in(ds, variable: str) -> Recipe | None:
    """The recipe deriving ``variable`` from the data variables of ``ds`` (None: stored or
    not derivable)."""
    return recipe_for(variable, {str(v) for v in ds.data_vars}, has_lead=has_lead_axis(ds))


def with_stand_ins(ds, variables: Collection[str] | None = None):
    """``ds`` with each derivable variable it lacks (of ``variables``, default all) added as a
    lazy stand-in: its recipe's first input under the derived name (same dims, levels, grid),
    so dims and level checks see the derived field's layout. Nothing is read."""
    if ds is None:
        return None
    extra = {}
    names = DERIVABLE if variables is None else set(variables) & DERIVABLE
    for name in sorted(names):
        r = recipe_in(ds, name)
        if r is not None:
            extra[name] = ds[r.inputs[0]].rename(name)
    return ds.assign(extra) if extra else ds


def recipe_key(ds, variable: str, fingerprint: Callable[[str], str]) -> str | None:
    """The recipe of ``variable`` in ``ds`` with its inputs' fingerprints (for the statistics
    entry key), or None when the variable is stored."""
    r = recipe_in(ds, variable)
    if r is None:
        return None
    return r.key + " " + " ".join(f"{v}:{fingerprint(v)}" for v in r.inputs)


def with_inputs(variables: Sequence[str], datasets) -> list[str]:
    """``variables`` followed by the inputs of those some dataset derives (for ``check``)."""
    out = list(variables)
    for ds in datasets:
        for v in variables:
            r = recipe_in(ds, v) if v not in ds.data_vars else None
            out += [x for x in (r.inputs if r else ()) if x not in out]
    return out
