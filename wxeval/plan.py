"""Turn a validated config into checked, fully resolved per-model plans (metadata only).

Selection rules: an omitted selection means everything the forecast and the truth share; a
selection is intersected with what each model has (GraphCast has no 0 h lead), but a variable or
level named explicitly that a model lacks is an error. Every needed valid time must exist in the
truth and every needed (dayofyear, hour) in the climatology, else an error names them
(or, with ``missing_truth: pending``, inits needing valid times after the truth's last time are
left for a later run; a hole inside the truth stays an error, or with ``missing_truth: skip``
the inits needing it are skipped and listed: :func:`wxeval.align.truth_gaps`). Levels are
matched exactly by value (:mod:`wxeval.levels`); ``ModelPlan.level_matches`` records, per
variable, the stored level each scored level is taken from in every store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from wxeval import align, schema
from wxeval.config import Config, ConfigError, ModelConfig, StoreConfig
from wxeval.derived import DERIVABLE, with_stand_ins
from wxeval.levels import LevelMatch, LevelMatchError, level_pairs, match_levels
from wxeval.loaders import OpenedStores, StoreSpec
from wxeval.metric_defs import BY_NAME, ENSEMBLE_DEFAULTS
from wxeval.metrics import METRICS, needs
from wxeval.regions import Region, custom_region, resolve_regions
from wxeval.schema import (
    DAYOFYEAR,
    HOUR,
    INIT_TIME,
    LAND_SEA_MASK,
    LATITUDE,
    LEAD_TIME,
    LONGITUDE,
    VALID_TIME,
)

log = logging.getLogger("wxeval")

DEFAULT_BASELINE_LEADS = ("0h", "240h", "12h")
DEFAULT_BASELINE_HOURS = (0, 12)


class SelectionError(ValueError):
    """The selection is empty or names something a store lacks."""


@dataclass(frozen=True)
class Fields:
    """What :func:`select_fields` resolved for one model: variables, per variable the scored
    levels (hPa; None for surface variables) and how each was matched in each store."""

    variables: list[str]
    levels: dict[str, tuple[int, ...] | None]
    level_matches: dict[str, tuple[LevelMatch, ...] | None]
    level_pairs: dict[str, list[list[float | None]] | None]


@dataclass(frozen=True)
class ForecastSource:
    """Where a model's forecast fields come from (the config's ``kind:``): a Zarr store
    (:class:`ZarrSource`) or a built-in baseline (:class:`PersistenceSource`,
    :class:`ClimatologySource`). Small and picklable: tasks sent to workers carry it."""

    #: The config's ``kind:`` value.
    kind: ClassVar[str] = ""
    #: Whether the fields are read from a forecast store of their own (with init and lead axes).
    reads_store: ClassVar[bool] = False
    #: Whether f(t, l) reads the truth at the init time t (lead 0) too.
    reads_truth_at_init: ClassVar[bool] = False
    #: Whether f(t, l) is the climatology at the valid time t + l.
    reads_climatology: ClassVar[bool] = False
    #: The store whose variables and levels the fields come from: forecast, truth, climatology.
    fields_role: ClassVar[str] = "forecast"

    store: StoreSpec | None = None

    def label(self, model: str) -> str:
        """How messages name the source of model ``model``'s fields."""
        return self.store.name if self.store is not None else f"baseline {model}"

    def fields_from(self, forecast, truth, clim):
        """The opened dataset (of those given) whose variables and levels the fields come
        from: :attr:`fields_role`."""
        return {"forecast": forecast, "truth": truth, "climatology": clim}[self.fields_role]

    def identity(self) -> str:
        """The forecast part of a statistics entry key for a baseline (a store's is its
        fingerprint, :func:`wxeval.store.store_fingerprint`)."""
        return f"baseline:{self.kind}"


@dataclass(frozen=True)
class ZarrSource(ForecastSource):
    """Forecast fields f(t, l) read from a Zarr store (``kind: zarr``)."""

    kind: ClassVar[str] = "zarr"
    reads_store: ClassVar[bool] = True


@dataclass(frozen=True)
class PersistenceSource(ForecastSource):
    """f(t, l) = o(t): the truth at init time (``kind: persistence``)."""

    kind: ClassVar[str] = "persistence"
    reads_truth_at_init: ClassVar[bool] = True
    fields_role: ClassVar[str] = "truth"


@dataclass(frozen=True)
class ClimatologySource(ForecastSource):
    """f(t, l) = c(dayofyear(t+l), hour(t+l)) (``kind: climatology``)."""

    kind: ClassVar[str] = "climatology"
    reads_climatology: ClassVar[bool] = True
    fields_role: ClassVar[str] = "climatology"


SOURCES: dict[str, type[ForecastSource]] = {
    c.kind: c for c in (ZarrSource, PersistenceSource, ClimatologySource)
}


def make_source(kind: str, store: StoreSpec | None = None) -> ForecastSource:
    """The source of the config's ``kind:`` (``store`` for ``zarr`` only)."""
    return SOURCES[kind](store)


@dataclass(eq=False)
class ModelPlan:
    """What to score for one model (all selections already resolved and checked)."""

    name: str
    source: ForecastSource
    truth: StoreSpec
    climatology: StoreSpec | None
    init_times: np.ndarray  # datetime64[ns]
    lead_times: np.ndarray  # timedelta64[ns]
    variables: tuple[str, ...]
    levels: dict[str, tuple[int, ...] | None]  # None for surface variables
    #: Per variable, the stored level each scored level is taken from in the forecast, truth and
    #: climatology (:class:`wxeval.levels.LevelMatch`; None for surface variables).
    level_matches: dict[str, tuple[LevelMatch, ...] | None] = field(default_factory=dict)
    #: Per variable, ``[forecast, truth, climatology]`` stored level for *every* forecast level
    #: (selected or not; None where unmatched): :func:`wxeval.levels.level_pairs`, for keys.
    level_pairs: dict[str, list[list[float | None]] | None] = field(default_factory=dict)
    #: The inits the selection names, before those left pending or skipped for a truth gap
    #: were taken out (``init_times`` are the ones scored now).
    selected_init_times: np.ndarray | None = None
    #: Ensemble members M (0: a deterministic forecast, no member dimension).
    members: int = 0


@dataclass(eq=False)
class Plan:
    models: list[ModelPlan]
    regions: list[Region]
    metrics: tuple[str, ...]
    land_sea_mask: StoreSpec | None
    skipna: bool
    pending: dict[str, np.ndarray] = field(default_factory=dict)  # inits left for later
    #: inits left out because the truth has a hole they need (``missing_truth: skip``)
    skipped: dict[str, np.ndarray] = field(default_factory=dict)
    #: The stores the plan opened: everything after the plan reads them from here on the
    #: driver (tasks on dask workers reopen theirs from the specs).
    stores: OpenedStores = field(default_factory=OpenedStores)

    def model(self, name: str) -> ModelPlan | None:
        """The plan of model ``name`` (None when it is not planned)."""
        return next((m for m in self.models if m.name == name), None)


def store_spec(cfg: StoreConfig, role: str, name: str) -> StoreSpec:
    return StoreSpec.make(
        cfg.path, role, name, rename=cfg.rename, storage_options=cfg.storage_options
    )


def make_plan(config: Config, model_names: list[str]) -> Plan:
    ev = config.evaluation
    if not model_names:
        raise ConfigError("no model to score: name one with --model")
    lsm = (
        store_spec(config.land_sea_mask, "static", f"land_sea_mask ({config.land_sea_mask.path})")
        if config.land_sea_mask
        else None
    )
    models: list[ModelPlan] = []
    pending: dict[str, np.ndarray] = {}
    skipped: dict[str, np.ndarray] = {}
    has_lsm = True
    stores = OpenedStores()
    for name in model_names:
        mcfg = config.model(name)
        plan, waiting, left_out = _model_plan(config, name, mcfg, stores)
        models.append(plan)
        if waiting.size:
            pending[name] = waiting
        if left_out.size:
            skipped[name] = left_out
        truth = stores(plan.truth)
        has_lsm = has_lsm and (lsm is not None or LAND_SEA_MASK in truth.variables)
    try:
        custom = [
            custom_region(n, box.lat, box.lon, box.land) for n, box in ev.custom_regions.items()
        ]
        regions = resolve_regions(ev.regions, custom, has_land_sea_mask=has_lsm)
    except ValueError as err:
        if "land_sea_mask" in str(err):  # the data lack what the region needs
            raise SelectionError(str(err)) from err
        raise ConfigError(str(err)) from err  # a misspelt name is a usage error
    metrics = tuple(ev.metrics) if ev.metrics else METRICS
    if not ev.metrics and any(m.members for m in models):
        metrics = (*metrics, *ENSEMBLE_DEFAULTS)
    if ev.metrics:  # asked for by name (the ensemble defaults are not worth a warning)
        _warn_no_spread(models, metrics)
    metrics = _rank_histogram_fits(models, metrics, asked=bool(ev.metrics))
    wanting = needs(metrics, "climatology")
    if wanting:
        lacking = [m.name for m in models if m.climatology is None]
        if lacking and ev.metrics:
            raise ConfigError(
                f"metric {wanting[0]} needs a climatology; none configured for "
                f"{', '.join(lacking)}"
            )
    if "seeps" in metrics:
        for m in models:
            clim = stores(m.climatology) if m.climatology is not None else None
            check_seeps_fields(clim, m.climatology.name if m.climatology else "", m.variables)
    return Plan(models, regions, metrics, lsm, ev.skipna, pending, skipped, stores)


def _model_plan(
    config: Config, name: str, mcfg: ModelConfig, stores: OpenedStores
) -> tuple[ModelPlan, np.ndarray, np.ndarray]:
    ev = config.evaluation
    truth_cfg = mcfg.truth or config.truth
    clim_cfg = mcfg.climatology or config.climatology
    truth_spec = store_spec(truth_cfg, "truth", f"truth ({truth_cfg.path})")
    clim_spec = (
        store_spec(clim_cfg, "climatology", f"climatology ({clim_cfg.path})") if clim_cfg else None
    )
    truth = stores(truth_spec)
    clim = stores(clim_spec) if clim_spec else None
    if clim is not None:
        schema.check_same_grid(truth, clim, truth_spec.name, clim_spec.name)

    if mcfg.kind == "zarr":
        if not mcfg.path:
            raise ConfigError(f"model {name!r}: missing required key 'path'")
        fspec = StoreSpec.make(
            mcfg.path,
            "forecast",
            f"{name} ({mcfg.path})",
            rename=mcfg.rename,
            storage_options=mcfg.storage_options,
        )
        fc = stores(fspec)
        schema.check_same_grid(fc, truth, fspec.name, truth_spec.name)
        source = make_source(mcfg.kind, fspec)
    else:
        fc = None
        source = make_source(mcfg.kind)
        if source.reads_climatology and clim is None:
            raise ConfigError(f"model {name!r}: the climatology baseline needs a climatology store")
    fields_from = source.fields_from(fc, truth, clim)

    fields = select_fields(
        ev,
        name,
        source,
        fields_from,
        truth,
        clim,
        {
            "source": _label(source, name),
            "truth": truth_spec.name,
            "climatology": clim_spec.name if clim_spec else "",
        },
    )

    available_leads = None
    if source.reads_store:
        available_leads = fc[LEAD_TIME].values
        leads = _select_leads(ev.lead_times, available_leads)
        inits = _select_inits(ev, fc[INIT_TIME].values, ev.init_times.hours, leads)
    else:
        hours = ev.init_times.hours or list(DEFAULT_BASELINE_HOURS)
        leads = _select_leads(ev.lead_times, None)
        inits = _select_inits(ev, truth[VALID_TIME].values, hours, leads,
                              baseline_hours=DEFAULT_BASELINE_HOURS)
    if inits.size == 0:
        raise SelectionError(f"model {name!r}: no init time in the selected range/hours")
    if leads.size == 0:
        raise SelectionError(no_leads_message(
            name, ev.lead_times, _label(source, name) if source.store else None, available_leads
        ))

    if source.reads_store:
        _check_derived_leads(fc, fspec.name, fields.variables, leads)
    selected = inits
    pending = skipped = np.array([], dtype="datetime64[ns]")
    # Persistence also reads the truth at each init (lead 0), as wxeval check counts it.
    gap_leads = (
        np.union1d(leads, np.array([0], "timedelta64[ns]")) if source.reads_truth_at_init
        else leads
    )
    missing = align.missing_valid_times(inits, gap_leads, truth[VALID_TIME].values)
    if source.reads_store or missing.size:
        gaps = align.truth_gaps(
            inits, gap_leads, truth[VALID_TIME].values, ev.missing_truth, truth_spec.name, name
        )
        inits, pending, skipped = gaps.kept, gaps.pending, gaps.skipped
        if skipped.size:
            log.warning(
                "%s: %d init(s) skipped (missing_truth: skip): %s lacks valid time(s) inside "
                "its range: %s; skipped inits: %s",
                name,
                skipped.size,
                truth_spec.name,
                align.describe_times(gaps.holes),
                align.describe_times(skipped),
            )
        if inits.size == 0:
            raise align.AlignmentError(
                f"{truth_spec.name}: no init of {name!r} has its truth yet "
                f"(all {pending.size + skipped.size} pending or skipped)"
            )
    if source.reads_truth_at_init:
        align.check_truth_covers(
            inits, np.array([0], "timedelta64[ns]"), truth[VALID_TIME].values, truth_spec.name
        )
    if clim is not None:
        valid = np.unique((inits[:, None] + leads[None, :]).ravel())
        align.climatology_positions(
            valid, clim[DAYOFYEAR].values, clim[HOUR].values, clim_spec.name
        )
    plan = ModelPlan(
        name=name,
        source=source,
        truth=truth_spec,
        climatology=clim_spec,
        init_times=inits,
        lead_times=leads,
        variables=tuple(fields.variables),
        levels=fields.levels,
        level_matches=fields.level_matches,
        level_pairs=fields.level_pairs,
        selected_init_times=selected,
        members=_members(fields_from) if source.reads_store else 0,
    )
    return plan, pending, skipped


def _check_derived_leads(fc, store: str, variables, leads: np.ndarray) -> None:
    """A derived accumulation needs leads whose windows the store holds: an error when none of
    the selected leads has them all (e.g. a 12-hourly store asked for 24 h sums of 6 h
    windows)."""
    from wxeval.derived import complete_leads, recipe_in

    for v in variables:
        r = recipe_in(fc, v)
        if r is None or r.offsets_h == (0,):
            continue
        if not complete_leads(r, leads, fc[LEAD_TIME].values).any():
            raise SelectionError(
                f"{store}: {v!r} is derived from {', '.join(r.inputs)} at leads l - "
                f"{', '.join(str(h) for h in r.offsets_h)} h, but no selected lead has all of "
                f"them (stored leads: {describe_leads(fc[LEAD_TIME].values)})"
            )


def check_seeps_fields(clim, store: str, variables) -> None:
    """The climatology fields SEEPS reads for each scored accumulation: a SchemaError naming
    the missing ones."""
    from wxeval.derived import SEEPS_DRY_THRESHOLD

    lacking = [
        f"{v}{suffix}" for v in variables if v in SEEPS_DRY_THRESHOLD
        for suffix in ("_seeps_threshold", "_seeps_dry_fraction")
        if clim is None or f"{v}{suffix}" not in clim.data_vars
    ]
    if lacking:
        raise schema.SchemaError(
            f"{store or 'climatology'}: metric 'seeps' needs {', '.join(lacking)}, not in the "
            "store (WeatherBench 2's climatology carries them)"
        )


def _warn_no_spread(models: list[ModelPlan], metrics: tuple[str, ...]) -> None:
    """One member (or a deterministic forecast) asked for a spread metric: WB2 defines the
    spread of one member as 0 (crps = mae, ratio 0, the corrected ratio 0); scored so, and
    said (once for all deterministic models, once per one-member ensemble)."""
    asked = [m for m in metrics if m in BY_NAME and BY_NAME[m].one_member_zero]
    if not asked:
        return
    zero = f"{', '.join(asked)} are 0 by definition (the spread of one member; WB2)"
    for m in models:
        if m.members == 1:
            log.warning("%s: one ensemble member: crps is its mae; its %s", m.name, zero)
    deterministic = [m.name for m in models if m.members == 0]
    if deterministic:
        log.warning("%s: deterministic forecast%s (one member): crps is the mae; %s",
                    ", ".join(deterministic), "s" if len(deterministic) > 1 else "", zero)


def _rank_histogram_fits(models: list[ModelPlan], metrics: tuple[str, ...], *,
                         asked: bool) -> tuple[str, ...]:
    """The rank histogram keeps M + 1 ≤ RANK_BINS slots: an ensemble with more members is an
    error when the histogram was asked for by name, and drops it (said) when it came with the
    ensemble defaults — never a silently NaN histogram."""
    from wxeval.statistics import RANK_BINS

    big = [f"{m.name} (M = {m.members})" for m in models if m.members + 1 > RANK_BINS]
    if "rank_histogram" not in metrics or not big:
        return metrics
    why = (f"rank_histogram keeps at most {RANK_BINS - 1} members; "
           f"{', '.join(big)} {'has' if len(big) == 1 else 'have'} more")
    if asked:
        raise SelectionError(why)
    log.warning("%s: left out of this run's metrics", why)
    return tuple(m for m in metrics if m != "rank_histogram")


def _members(fc) -> int:
    """M of an ensemble store (its member dimension), 0 for a deterministic one."""
    return int(fc.sizes.get(schema.MEMBER, 0))  # derived variables: their inputs' members


def gridded_variables(ds) -> set[str]:
    """Data variables on the latitude × longitude grid with a time axis (not static fields)."""
    return {
        str(v)
        for v, da in ds.data_vars.items()
        if LATITUDE in da.dims
        and LONGITUDE in da.dims
        and v != LAND_SEA_MASK
        and (INIT_TIME in da.dims or VALID_TIME in da.dims or DAYOFYEAR in da.dims)
    }


def _select_variables(requested, fields_from, truth, clim, name, source) -> list[str]:
    have = gridded_variables(fields_from)
    truth_vars = gridded_variables(truth)
    if requested:
        for v in requested:
            if v not in have:
                raise SelectionError(
                    f"{_label(source, name)}: variable {v!r} not in store{_has(have, typed=v)}"
                )
            if v not in truth_vars:
                raise SelectionError(
                    f"truth of {name}: variable {v!r} not in store{_has(truth_vars, typed=v)}"
                )
            if (clim is not None and v not in clim.data_vars and not source.reads_truth_at_init
                    and v not in DERIVABLE):  # a derived variable: ACC only when clim has it
                raise SelectionError(
                    f"climatology: variable {v!r} not in store{_has(clim.data_vars, typed=v)}"
                )
        return list(requested)
    common = sorted(have & truth_vars)
    if not common:
        raise SelectionError(f"{_label(source, name)}: shares no variable with the truth")
    return common


def _has(names, unit: str = "", typed: str | None = None) -> str:
    """`` (it has: a, b)`` for an error about a name a store lacks; with the name ``typed``,
    ``; did you mean 'a'?`` first when one is close."""
    import difflib

    hint = difflib.get_close_matches(typed, [str(x) for x in names], n=1) if typed else []
    listed = ", ".join(f"{x}{unit}" for x in sorted(names))
    return (f"; did you mean {hint[0]!r}?" if hint else "") + f" (it has: {listed or 'none'})"


def _label(source: ForecastSource, name: str) -> str:
    return source.label(name)


def select_fields(
    ev, name: str, source: ForecastSource, fields_from, truth, clim, names: dict[str, str]
) -> Fields:
    """Variables and matched levels of one model, and the dims of every field it will read
    checked: the one validation ``wxeval score`` (the plan) and ``wxeval check`` share.

    ``fields_from`` is the forecast store (or the baseline's source); ``names`` maps
    ``"source"``, ``"truth"`` and ``"climatology"`` to store names for messages. Raises
    :class:`SelectionError` or :class:`~wxeval.schema.SchemaError`."""
    # Derived variables named in the config (wxeval.derived) that a store lacks get lazy
    # stand-ins (their first input) for the checks below.
    wanted = ev.variables or ()
    fields_from, truth = with_stand_ins(fields_from, wanted), with_stand_ins(truth, wanted)
    variables = _select_variables(ev.variables, fields_from, truth, clim, name, source)
    for v in variables:
        if source.reads_store:
            schema.check_field_dims(fields_from[v], "forecast", names["source"])
        schema.check_field_dims(truth[v], "truth", names["truth"])
        if clim is not None and v in clim.data_vars:
            schema.check_field_dims(clim[v], "climatology", names["climatology"])
    matches: dict[str, tuple[LevelMatch, ...] | None] = {}
    for v in variables:
        c = (names["climatology"], clim[v]) if clim is not None and v in clim.data_vars else None
        try:
            matches[v] = match_levels(
                v,
                ev.levels,
                (names["source"], fields_from[v]),
                (names["truth"], truth[v]),
                c,
                source_is_forecast=source.reads_store,
            )
        except LevelMatchError as err:
            raise SelectionError(str(err)) from err
    levels = {
        v: (None if m is None else tuple(x.level for x in m)) for v, m in matches.items()
    }
    pairs = {
        v: (
            None
            if m is None
            else level_pairs(
                fields_from[v], truth[v], clim[v] if clim is not None and v in clim else None
            )
        )
        for v, m in matches.items()
    }
    return Fields(variables, levels, matches, pairs)


def _select_leads(spec, available: np.ndarray | None) -> np.ndarray:
    if spec is None:
        if available is not None:
            return np.asarray(available).astype("timedelta64[ns]")
        spec_leads = align.lead_range(*DEFAULT_BASELINE_LEADS)
    elif isinstance(spec, list):
        spec_leads = np.array([align.parse_duration(x) for x in spec], dtype="timedelta64[ns]")
    else:
        spec_leads = align.lead_range(spec.start, spec.stop, spec.step)
    spec_leads = np.unique(spec_leads)
    if available is None:
        return spec_leads
    return spec_leads[np.isin(spec_leads, np.asarray(available).astype("timedelta64[ns]"))]


def describe_leads(leads: np.ndarray | None) -> str:
    """Lead times in hours, short: ``0h, 6h, 12h`` or ``0h–240h every 12h (21 leads)``."""
    if leads is None or len(leads) == 0:
        return "none"
    hours = np.unique(np.asarray(leads).astype("timedelta64[ns]")) / np.timedelta64(1, "h")
    text = [f"{h:g}h" for h in hours]
    if len(hours) <= 6:
        return ", ".join(text)
    steps = np.unique(np.diff(hours))
    if len(steps) == 1:
        return f"{text[0]}–{text[-1]} every {steps[0]:g}h ({len(hours)} leads)"
    return f"{', '.join(text[:3])}, …, {', '.join(text[-2:])} ({len(hours)} leads)"


def no_leads_message(name: str, spec, store: str | None, available) -> str:
    """Why no lead time is left for model ``name``: what was asked, what its forecast store
    (named ``store``; None for a baseline) has."""
    if spec is None:
        asked = "all leads"
    elif isinstance(spec, list):
        asked = ", ".join(spec)
    else:
        asked = f"{spec.start}:{spec.stop}:{spec.step}"
    if store is None:
        return f"model {name!r}: no lead time in the selection {asked} (an empty range?)"
    return (
        f"model {name!r}: no lead time left after selection: asked {asked}; "
        f"{store} has {describe_leads(available)}"
    )


def _select_inits(ev, available: np.ndarray, hours, leads: np.ndarray,
                  baseline_hours=None) -> np.ndarray:
    """The inits to score: by init time (the range and hours select inits), or with
    ``alignment: by_valid`` every init with at least one lead whose valid time falls in the
    range (``hours`` then are valid hours): :mod:`wxeval.by_valid`. A baseline made from the
    truth (``baseline_hours``) is initialised at those hours in both modes."""
    if getattr(ev, "alignment", "by_init") == "by_valid":
        from wxeval.by_valid import inits_verifying

        if baseline_hours is not None:
            available = align.select_init_times(available, None, None, list(baseline_hours))
        return inits_verifying(available, leads, ev.init_times.start, ev.init_times.stop,
                               ev.init_times.hours)
    return align.select_init_times(available, ev.init_times.start, ev.init_times.stop, hours)
