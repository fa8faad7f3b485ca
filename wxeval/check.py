"""``wxeval check``: a pre-flight report of everything that would make scores wrong, NaN or fail.

:func:`run_checks` reads only metadata (coordinates, attributes, chunk listings of local stores)
and, unless ``sample=False``, a small sample: per model the first and last selected init at the
shortest and longest selected lead, the truth at those valid times and the climatology at their
(dayofyear, hour). It never raises on a data problem: every problem becomes a :class:`Finding`.

Severity:

* ``error`` — the scores would be wrong or NaN, or ``wxeval score`` would fail (exit 3);
* ``warning`` — worth a look, scores are computed as documented (e.g. models with different inits:
  each is scored on its own inits, a scorecard pairs only the common ones);
* ``info`` — context (e.g. the climatology period cannot be determined).

Finding codes: ``config``, ``open``, ``schema``, ``duplicate-inits``, ``unsorted-inits``,
``lead-units``, ``init-vs-valid``, ``grid``, ``latitude-order``, ``latitude-flipped``,
``truth-coverage``, ``common-inits``, ``units``, ``units-attr``, ``range``, ``nan``,
``missing-chunks``, ``missing-metadata``, ``read``, ``clim-coverage``, ``clim-overlap``,
``clim-period``, ``plan``.

:func:`preflight` is the cheap part (metadata only) that ``wxeval score`` runs first: it raises
the first error with the exception types of :mod:`wxeval.plan` and logs warnings (logger
``wxeval``). :func:`run_check_command` prints one line per finding and a summary, optionally
writes ``check.json``, and returns the exit code (3 when any error, else 0).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from wxeval import align, schema
from wxeval.config import Config, ConfigError
from wxeval.loaders import LoadError, StoreSpec, _is_secret, open_raw, open_store
from wxeval.schema import (
    DAYOFYEAR,
    EXPECTED_UNITS,
    HOUR,
    INIT_TIME,
    LAND_SEA_MASK,
    LATITUDE,
    LEAD_TIME,
    LEVEL,
    LONGITUDE,
    VALID_TIME,
)

log = logging.getLogger("wxeval")

SEVERITIES = ("error", "warning", "info")
NAN_WARN_FRACTION = 0.1  # with skipna: a warning above this NaN fraction of the sample
CHUNK_LISTING_LIMIT = 200_000  # do not compare more expected chunk keys than this per variable
G0 = 9.80665


@dataclass(frozen=True)
class Finding:
    """One problem (or remark) found by :func:`run_checks`."""

    severity: str  # "error" | "warning" | "info"
    code: str  # short id, e.g. "units", "grid", "truth-coverage"
    store: str  # the store concerned ("" when not one store)
    variable: str  # the variable concerned ("" when not one variable)
    message: str  # one line, names the store and what is wrong

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def line(self) -> str:
        return f"{self.severity}: [{self.code}] {self.message}"


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> list[dict[str, str]]:
        return [f.to_dict() for f in self.findings]

    def summary(self) -> str:
        n_err, n_warn = len(self.errors), len(self.warnings)
        n_info = len(self.findings) - n_err - n_warn
        counts = f"{n_err} error(s), {n_warn} warning(s), {n_info} info"
        if n_err:
            return f"check: {counts}: scores would be wrong, NaN or fail"
        if n_warn:
            return f"check: {counts}: no error"
        return f"check: clean ({counts})"


# -- public entry points ---------------------------------------------------------------------


def run_checks(config: Config, model_names: Iterable[str], *, sample: bool = True) -> CheckReport:
    """Check ``model_names`` of ``config``; metadata only when ``sample`` is False."""
    checker = _Checker(config, list(model_names), sample=sample)
    checker.run()
    return CheckReport(_dedupe(checker.redact(f) for f in checker.findings))


def preflight(
    config: Config, model_names: Iterable[str], *, plan_checked: bool = False
) -> CheckReport:
    """The cheap (metadata-only) check ``wxeval score`` runs first.

    Raises the first error with :mod:`wxeval.plan`'s exception types (ConfigError,
    SelectionError, SchemaError, AlignmentError, LoadError) so that the CLI maps it to the same
    exit code; logs warnings on the ``wxeval`` logger; returns the report otherwise.
    """
    from wxeval.plan import make_plan

    names = list(model_names)
    if not plan_checked:
        make_plan(config, names)  # plan's own errors, in its own words, first
    report = run_checks(config, names, sample=False)
    for f in report.findings:
        if f.severity == "warning":
            log.warning("check: %s", f.message)
    if report.errors:
        first = report.errors[0]
        raise _exception_for(first.code)(first.message)
    return report


def run_check_command(
    cfg: Config,
    names: Iterable[str],
    output: Path | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Print one line per finding and a summary; write ``output/check.json``; return 3 on error.

    ``output`` is a folder (``check.json`` is written in it) or a path ending in ``.json``.
    """
    report = run_checks(cfg, names, sample=True)
    for f in report.findings:
        echo(f.line())
    echo(report.summary())
    if output is not None:
        write_report(report, output)
    return 3 if report.errors else 0


def write_report(report: CheckReport, output: str | Path) -> Path:
    """Write ``check.json`` (a list of finding dicts) atomically into folder ``output``
    (or to ``output`` itself when it ends in ``.json``); returns the path."""
    from wxeval.results import write_json

    output = Path(output)
    path = output if output.suffix == ".json" else output / "check.json"
    write_json(report.to_json(), path)
    return path


# -- exceptions for preflight ----------------------------------------------------------------


def _exception_for(code: str) -> type[Exception]:
    from wxeval.plan import SelectionError

    if code == "config":
        return ConfigError
    if code == "open":
        return LoadError
    if code in ("truth-coverage", "clim-coverage"):
        return align.AlignmentError
    if code == "plan":
        return SelectionError
    return schema.SchemaError


# -- the checker -----------------------------------------------------------------------------


@dataclass
class _Store:
    spec: StoreSpec
    raw: xr.Dataset | None = None
    ds: xr.Dataset | None = None  # normalised

    @property
    def name(self) -> str:
        return self.spec.name


class _Checker:
    def __init__(self, config: Config, names: list[str], *, sample: bool) -> None:
        self.config = config
        self.names = names
        self.sample = sample
        self.findings: list[Finding] = []
        self._stores: dict[tuple, _Store] = {}
        self._grid_pairs: set[tuple[str, str]] = set()
        self._sampled: set[tuple[str, str, tuple]] = set()
        self._secrets = _secret_values(config)

    # -- bookkeeping

    def add(self, severity: str, code: str, store: str, variable: str, message: str) -> None:
        text = " ".join(str(message).split())
        self.findings.append(Finding(severity, code, store, variable, text))

    def redact(self, f: Finding) -> Finding:
        msg, store = f.message, f.store
        for s in self._secrets:
            msg, store = msg.replace(s, "<redacted>"), store.replace(s, "<redacted>")
        return Finding(f.severity, f.code, store, f.variable, msg)

    # -- opening

    def open(self, spec: StoreSpec) -> _Store:
        key = (spec.path, spec.role, spec.rename, spec.storage_options)
        if key in self._stores:
            return self._stores[key]
        st = _Store(spec)
        self._stores[key] = st
        try:
            st.raw = open_raw(spec.path, storage_options=spec.options, name=spec.name)
        except LoadError as err:
            self.add("error", "open", spec.name, "", str(err))
            return st
        except Exception as err:  # noqa: BLE001 - reported, never raised
            self.add("error", "open", spec.name, "", f"{spec.name}: cannot open: {_short(err)}")
            return st
        if spec.role == "forecast":
            self._raw_forecast_checks(st)
        try:
            st.ds = open_store(spec)
        except schema.SchemaError as err:
            code = "duplicate-inits" if "duplicated init" in str(err) else "schema"
            if code == "duplicate-inits" and any(
                f.code == code and f.store == spec.name for f in self.findings
            ):
                return st
            self.add("error", code, spec.name, "", str(err))
        except Exception as err:  # noqa: BLE001
            self.add("error", "open", spec.name, "", f"{spec.name}: {_short(err)}")
        return st

    def _raw_forecast_checks(self, st: _Store) -> None:
        raw, name = st.raw, st.name
        renamed = {v: k for k, v in st.spec.rename}
        tname = renamed.get(INIT_TIME, "time" if "time" in raw.dims else INIT_TIME)
        if tname in raw.coords:
            idx = pd.Index(raw[tname].values)
            dup = idx[idx.duplicated()]
            if len(dup):
                self.add(
                    "error",
                    "duplicate-inits",
                    name,
                    "",
                    f"{name}: {len(dup)} duplicated init time(s) in the forecast store: "
                    f"{align.describe_times(np.unique(dup.values))}",
                )
            elif not idx.is_monotonic_increasing:
                self.add(
                    "warning",
                    "unsorted-inits",
                    name,
                    "",
                    f"{name}: init times are not sorted in the store (wxeval sorts them; "
                    "reads may be slower)",
                )
            attrs = " ".join(str(raw[tname].attrs.get(k, "")) for k in ("long_name",
                                                                        "standard_name"))
            if "valid" in attrs.lower():
                self.add(
                    "warning",
                    "init-vs-valid",
                    name,
                    "",
                    f"{name}: its {tname!r} axis is described as {attrs.strip()!r}: wxeval "
                    "reads it as the init time",
                )
        lname = renamed.get(LEAD_TIME) or next(
            (k for k, v in schema.COMMON_RENAMES.items() if v == LEAD_TIME and k in raw.coords),
            LEAD_TIME,
        )
        if lname not in raw.coords:
            return
        lead = raw[lname]
        if not np.issubdtype(lead.dtype, np.timedelta64):
            units = lead.attrs.get("units") or lead.encoding.get("units")
            self.add(
                "error",
                "lead-units",
                name,
                "",
                f"{name}: lead time {lname!r} has dtype {lead.dtype}"
                + (f" and units {units!r}" if units else " and no units")
                + ": expected timedelta64 (set units like 'hours' on the store)",
            )
            return
        hours = lead.values / np.timedelta64(1, "h")
        if np.any(hours < 0):
            self.add("error", "lead-units", name, "", f"{name}: negative lead times")
        elif hours.size and hours.max() > 0 and hours.max() < 1:
            self.add(
                "warning",
                "lead-units",
                name,
                "",
                f"{name}: longest lead time is {hours.max() * 3600:g} s: were hours stored "
                "with units 'seconds'?",
            )
        elif hours.size and hours.max() > 24 * 90:
            self.add(
                "warning",
                "lead-units",
                name,
                "",
                f"{name}: longest lead time is {hours.max() / 24:g} days: were hours stored "
                "with units of minutes or days?",
            )

    # -- the run

    def run(self) -> None:
        from wxeval.plan import _select_leads, store_spec

        cfg, ev = self.config, self.config.evaluation
        if not self.names:
            self.add("error", "config", "", "", "no model to check: name one with --model")
            return
        inits_by_model: dict[str, np.ndarray] = {}
        for name in self.names:
            try:
                mcfg = cfg.model(name)
            except ConfigError as err:
                self.add("error", "config", "", "", str(err))
                continue
            truth_cfg = mcfg.truth or cfg.truth
            clim_cfg = mcfg.climatology or cfg.climatology
            truth = self.open(store_spec(truth_cfg, "truth", f"truth of {name} ({truth_cfg.path})"))
            clim = (
                self.open(store_spec(clim_cfg, "climatology", f"climatology ({clim_cfg.path})"))
                if clim_cfg
                else None
            )
            fc = None
            if mcfg.kind == "zarr":
                if not mcfg.path:
                    self.add("error", "config", "", "", f"model {name!r}: missing 'path'")
                    continue
                fc = self.open(
                    StoreSpec.make(
                        mcfg.path,
                        "forecast",
                        f"{name} ({mcfg.path})",
                        rename=mcfg.rename,
                        storage_options=mcfg.storage_options,
                    )
                )
                if fc.ds is None:
                    continue
            if truth.ds is None or (clim is not None and clim.ds is None):
                continue
            if clim is not None:
                self.check_grid(truth, clim)
            if fc is not None:
                self.check_grid(fc, truth)

            # Selection (as plan.py makes it).
            try:
                if fc is not None:
                    inits = align.select_init_times(
                        fc.ds[INIT_TIME].values,
                        ev.init_times.start,
                        ev.init_times.stop,
                        ev.init_times.hours,
                    )
                    leads = _select_leads(ev.lead_times, fc.ds[LEAD_TIME].values)
                else:
                    from wxeval.plan import DEFAULT_BASELINE_HOURS

                    inits = align.select_init_times(
                        truth.ds[VALID_TIME].values,
                        ev.init_times.start,
                        ev.init_times.stop,
                        ev.init_times.hours or list(DEFAULT_BASELINE_HOURS),
                    )
                    leads = _select_leads(ev.lead_times, None)
            except (ValueError, KeyError) as err:
                self.add("error", "config", "", "", f"model {name!r}: {_short(err)}")
                continue
            if inits.size == 0 or leads.size == 0:
                what = "init time" if inits.size == 0 else "lead time"
                self.add("error", "plan", "", "", f"model {name!r}: no {what} in the selection")
                continue
            if fc is not None:
                inits_by_model[name] = inits
            variables = self.variables(name, fc, truth, clim, mcfg.kind)
            self.check_truth_coverage(name, inits, leads, truth, mcfg.kind)
            if clim is not None:
                self.check_clim(inits, leads, clim)
            for st in filter(None, (fc, truth, clim)):
                self.check_orphans(st)
                self.check_units_attrs(st, variables)
                self.check_chunks(st, variables, inits, leads)
            if self.sample:
                self.sample_values(name, fc, truth, clim, variables, inits, leads)
        self.check_common_inits(inits_by_model)
        if not self.errors_so_far():
            self.check_plan()

    def errors_so_far(self) -> bool:
        return any(f.severity == "error" for f in self.findings)

    def check_plan(self) -> None:
        """Safety net: whatever ``make_plan`` would still refuse is an error too."""
        from wxeval.plan import make_plan

        try:
            make_plan(self.config, self.names)
        except (ValueError, OSError) as err:
            code = "config" if isinstance(err, ConfigError) else "plan"
            if isinstance(err, LoadError):
                code = "open"
            self.add("error", code, "", "", _short(err))

    # -- variables

    def variables(self, name, fc, truth, clim, kind) -> list[str]:
        requested = self.config.evaluation.variables
        if requested:
            return list(requested)
        source = fc.ds if fc is not None else (clim.ds if kind == "climatology" else truth.ds)
        have = _gridded(source) & _gridded(truth.ds)
        return sorted(have)

    # -- grids

    def check_grid(self, a: _Store, b: _Store) -> None:
        pair = (a.name, b.name)
        if pair in self._grid_pairs:
            return
        self._grid_pairs.add(pair)
        try:
            schema.check_same_grid(a.ds, b.ds, a.name, b.name)
        except schema.SchemaError as err:
            self.add("error", "grid", a.name, "", str(err))
        for st in (a, b):
            lat_name = _raw_name(st, LATITUDE)
            if lat_name in st.raw.coords:
                lat = np.asarray(st.raw[lat_name].values, dtype=float)
                key = (st.name, "latitude-order", ())
                if lat.size > 1 and lat[0] > lat[-1] and key not in self._sampled:
                    self._sampled.add(key)
                    self.add(
                        "info",
                        "latitude-order",
                        st.name,
                        "",
                        f"{st.name}: latitude stored descending (90 → -90); read ascending",
                    )

    # -- coverage

    def check_truth_coverage(self, name, inits, leads, truth: _Store, kind: str) -> None:
        have = truth.ds[VALID_TIME].values
        pending = self.config.evaluation.missing_truth == "pending"
        if kind == "persistence":
            leads = np.union1d(leads, np.array([0], "timedelta64[ns]"))
        parts, total = [], 0
        for lead in leads:
            valid = inits + lead
            missing = valid[~np.isin(valid, have)]
            if missing.size:
                total += missing.size
                parts.append(
                    f"lead {align.format_hours(lead)}: {missing.size} of {valid.size} "
                    f"({align.describe_times(missing, limit=3)})"
                )
        if parts:
            shown = "; ".join(parts[:4]) + (f"; … ({len(parts)} leads)" if len(parts) > 4 else "")
            self.add(
                "warning" if pending else "error",
                "truth-coverage",
                truth.name,
                "",
                f"{truth.name}: truth lacks valid times needed by {name!r}: {shown}"
                + ("; those inits stay pending" if pending else ""),
            )

    def check_clim(self, inits, leads, clim: _Store) -> None:
        valid = np.unique((inits[:, None] + leads[None, :]).ravel())
        try:
            align.climatology_positions(
                valid, clim.ds[DAYOFYEAR].values, clim.ds[HOUR].values, clim.name
            )
        except align.AlignmentError as err:
            self.add("error", "clim-coverage", clim.name, "", str(err))
        key = (clim.name, "period", ())
        if key in self._sampled:
            return
        self._sampled.add(key)
        period, source = climatology_period(clim.raw, clim.spec.path)
        scored = pd.DatetimeIndex(valid)
        first, last = int(scored.year.min()), int(scored.year.max())
        span = f"{first}" if first == last else f"{first}-{last}"
        if period is None:
            self.add(
                "info",
                "clim-period",
                clim.name,
                "",
                f"{clim.name}: climatology period unknown (no attribute states its years)",
            )
        elif period[0] <= last and first <= period[1]:
            self.add(
                "warning",
                "clim-overlap",
                clim.name,
                "",
                f"{clim.name}: climatology period {period[0]}-{period[1]} ({source}) overlaps "
                f"the scored valid times {span}: anomaly scores (ACC) are optimistic",
            )

    def check_common_inits(self, inits_by_model: dict[str, np.ndarray]) -> None:
        if len(inits_by_model) < 2:
            return
        sets = {m: pd.DatetimeIndex(v) for m, v in inits_by_model.items()}
        common = None
        for idx in sets.values():
            common = idx if common is None else common.intersection(idx)
        if all(len(idx) == len(common) for idx in sets.values()):
            return
        counts = ", ".join(f"{m} {len(idx)}" for m, idx in sets.items())
        lacking = []
        union = None
        for idx in sets.values():
            union = idx if union is None else union.union(idx)
        for m, idx in sets.items():
            miss = union.difference(idx)
            if len(miss):
                lacking.append(
                    f"{m} lacks {len(miss)} ({align.describe_times(miss.values, limit=3)})"
                )
        self.add(
            "warning",
            "common-inits",
            "",
            "",
            f"models have different init times: {counts}; {len(common)} in common; "
            + "; ".join(lacking)
            + ": compare models on their common inits (the scorecard pairs them)",
        )

    # -- units

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

    # -- arrays whose metadata is gone (local stores)

    def check_orphans(self, st: _Store) -> None:
        root = _local_root(st.spec.path)
        key = (st.name, "orphans", ())
        if root is None or st.raw is None or key in self._sampled:
            return
        self._sampled.add(key)
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if sub.name in st.raw.variables:
                continue
            if any((sub / m).exists() for m in (".zarray", ".zgroup", "zarr.json")):
                continue
            if any(f.is_file() for f in sub.iterdir()):
                self.add(
                    "error",
                    "missing-metadata",
                    st.name,
                    sub.name,
                    f"{st.name}: folder {sub.name!r} holds chunk files but no array metadata "
                    "(.zarray): the store is truncated and the variable is invisible",
                )

    # -- chunk files (local stores)

    def check_chunks(self, st: _Store, variables, inits, leads) -> None:
        root = _local_root(st.spec.path)
        if root is None:
            return
        for var in variables:
            key = (st.name, "chunks", (var,))
            if key in self._sampled or st.raw is None or _raw_var(st, var) not in st.raw:
                continue
            self._sampled.add(key)
            raw_var = _raw_var(st, var)
            da = st.raw[raw_var]
            chunks = da.encoding.get("chunks") or da.encoding.get("preferred_chunks")
            if isinstance(chunks, dict):
                chunks = tuple(chunks.get(d, n) for d, n in zip(da.dims, da.shape, strict=True))
            if not chunks or len(chunks) != da.ndim:
                continue
            needed = []
            for dim, size, c in zip(da.dims, da.shape, chunks, strict=True):
                pos = self._needed_positions(st, dim, inits, leads)
                if pos is None:
                    pos = np.arange(size)
                needed.append(np.unique(np.asarray(pos) // c))
            count = math.prod(len(n) for n in needed)
            if count == 0 or count > CHUNK_LISTING_LIMIT:
                continue
            present = _chunk_keys(root / raw_var)
            if present is None:
                continue
            sep = "/" if any("/" in k for k in present) else "."
            prefix = "c/" if any(k.startswith("c/") for k in present) or (
                root / raw_var / "zarr.json"
            ).exists() else ""
            missing = [
                idx
                for idx in itertools.product(*needed)
                if prefix + sep.join(str(int(i)) for i in idx) not in present
            ]
            if missing:
                shown = ", ".join(prefix + sep.join(map(str, m)) for m in missing[:3])
                self.add(
                    "error",
                    "missing-chunks",
                    st.name,
                    var,
                    f"{st.name}: {var}: {len(missing)} of {count} chunk file(s) needed are "
                    f"missing ({shown}{', …' if len(missing) > 3 else ''}); Zarr would read "
                    "them as fill values (NaN): the store is truncated or still being written",
                )

    def _needed_positions(self, st: _Store, dim: str, inits, leads):
        raw = st.raw
        if dim not in raw.coords:
            return None
        role = st.spec.role
        values = raw[dim].values
        canon = _canonical(st, dim)
        if role == "forecast" and canon == INIT_TIME:
            return np.flatnonzero(np.isin(values, inits))
        if role == "forecast" and canon == LEAD_TIME:
            try:
                return np.flatnonzero(np.isin(values.astype("timedelta64[ns]"), leads))
            except (TypeError, ValueError):
                return None
        if role == "truth" and canon == VALID_TIME:
            valid = np.unique((inits[:, None] + leads[None, :]).ravel())
            return np.flatnonzero(np.isin(values, valid))
        return None

    # -- sample

    def sample_values(self, name, fc, truth, clim, variables, inits, leads) -> None:
        sample_inits = np.unique(inits[[0, -1]])
        sample_leads = np.unique(leads[[0, -1]])
        valid = np.unique((sample_inits[:, None] + sample_leads[None, :]).ravel())
        valid_have = valid[np.isin(valid, truth.ds[VALID_TIME].values)]
        levels = self.config.evaluation.levels
        for var in variables:
            fvals = None
            if fc is not None and var in fc.ds.data_vars:
                sel = {INIT_TIME: sample_inits, LEAD_TIME: sample_leads}
                fvals = self.read(fc, var, sel, levels, ("forecast", tuple(sample_inits)))
            ovals = None
            if var in truth.ds.data_vars and valid_have.size:
                ovals = self.read(
                    truth, var, {VALID_TIME: valid_have}, levels, ("truth", tuple(valid_have))
                )
            if clim is not None and var in clim.ds.data_vars:
                doy, hour = align.climatology_labels(valid)
                ok = np.isin(doy, clim.ds[DAYOFYEAR].values) & np.isin(
                    hour, clim.ds[HOUR].values
                )
                if ok.any():
                    pairs = sorted(set(zip(doy[ok].tolist(), hour[ok].tolist(), strict=True)))
                    sel = {
                        DAYOFYEAR: xr.DataArray([p[0] for p in pairs], dims="pair"),
                        HOUR: xr.DataArray([p[1] for p in pairs], dims="pair"),
                    }
                    self.read(clim, var, sel, levels, ("clim", tuple(pairs)))
            if fvals is not None and ovals is not None:
                self.compare_sample(name, fc, truth, var, fvals, sample_inits, sample_leads,
                                    valid_have)

    def read(self, st: _Store, var: str, sel: dict, levels, tag) -> xr.DataArray | None:
        key = (st.name, var, tag)
        if key in self._sampled:
            return self._cache.get(key) if hasattr(self, "_cache") else None
        self._sampled.add(key)
        if not hasattr(self, "_cache"):
            self._cache = {}
        da = st.ds[var]
        try:
            indexers = {
                k: (v if isinstance(v, xr.DataArray) else list(np.atleast_1d(v)))
                for k, v in sel.items()
            }
            sub = da.sel(indexers)
            if levels and LEVEL in sub.dims:
                sub = sub.sel({LEVEL: [lv for lv in levels if lv in sub[LEVEL].values]})
            values = sub.load()
        except Exception as err:  # noqa: BLE001 - a read failure is a finding
            self.add(
                "error",
                "read",
                st.name,
                var,
                f"{st.name}: cannot read a sample of {var!r}: {_short(err)} "
                "(a corrupted or truncated chunk?)",
            )
            self._cache[key] = None
            return None
        self._cache[key] = values
        self.check_values(st, var, values)
        return values

    def check_values(self, st: _Store, var: str, values: xr.DataArray) -> None:
        arr = np.asarray(values.values, dtype=np.float64)
        if arr.size == 0:
            return
        nan = ~np.isfinite(arr)
        frac = float(nan.mean())
        skipna = self.config.evaluation.skipna
        if frac == 1.0:
            self.add(
                "error",
                "nan",
                st.name,
                var,
                f"{st.name}: {var}: every sampled value is NaN ({arr.size} values)",
            )
            return
        if frac > 0:
            where = _nan_where(values, nan)
            if not skipna:
                self.add(
                    "error",
                    "nan",
                    st.name,
                    var,
                    f"{st.name}: {var}: {frac:.1%} of sampled values are NaN ({where}): "
                    "regions containing them will score NaN (skipna is off)",
                )
            else:
                self.add(
                    "warning" if frac > NAN_WARN_FRACTION else "info",
                    "nan",
                    st.name,
                    var,
                    f"{st.name}: {var}: {frac:.1%} of sampled values are NaN ({where}); "
                    "skipped (skipna is on)",
                )
        problem = plausibility(var, values.where(np.isfinite(values)))
        if problem:
            severity, text = problem
            self.add(severity, "range", st.name, var, f"{st.name}: {var}: {text}")

    def compare_sample(self, name, fc, truth, var, fvals, s_inits, s_leads, valid_have) -> None:
        """Latitude flipped in the data, or ``time`` holding valid times, seen in the sample."""
        lead = s_leads[0]
        init = s_inits[0]
        if init + lead not in valid_have:
            return
        f = fvals.sel({INIT_TIME: init, LEAD_TIME: lead})
        obs = self._cache.get((truth.name, var, ("truth", tuple(valid_have))))
        if obs is None:
            return
        o = obs.sel({VALID_TIME: init + lead})
        if f.shape != o.shape:
            return
        f, o = f.transpose(*o.dims), o
        direct = _rms(f.values - o.values)
        flipped = _rms(f.values - o.isel({LATITUDE: slice(None, None, -1)}).values)
        spread = _rms(o.values - np.nanmean(o.values))
        if np.isfinite(direct) and np.isfinite(flipped) and flipped < 0.5 * direct and (
            direct > 0.2 * spread
        ):
            self.add(
                "error",
                "latitude-flipped",
                fc.name,
                var,
                f"{fc.name}: {var} matches the truth upside down (RMS difference {flipped:.3g} "
                f"flipped vs {direct:.3g} as stored): latitude coordinate does not match the "
                "data order",
            )
        if lead > np.timedelta64(0, "ns") and init in truth.ds[VALID_TIME].values:
            o0 = truth.ds[var].sel({VALID_TIME: init})
            levels = [int(x) for x in f[LEVEL].values] if LEVEL in f.dims else None
            if levels is not None and LEVEL in o0.dims:
                o0 = o0.sel({LEVEL: levels})
            try:
                o0 = o0.load().transpose(*f.dims)
            except Exception:  # noqa: BLE001
                return
            at_init = _rms(f.values - o0.values)
            if np.isfinite(at_init) and at_init < 0.5 * direct and direct > 0.2 * spread:
                self.add(
                    "error",
                    "init-vs-valid",
                    fc.name,
                    var,
                    f"{fc.name}: {var} at lead {align.format_hours(lead)} matches the truth at "
                    "its 'time' rather than at time + lead: the store's time axis looks like "
                    "valid times, not init times",
                )


# -- helpers ---------------------------------------------------------------------------------


def _dedupe(findings: Iterable[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        key = (f.severity, f.code, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(out, key=lambda f: order.get(f.severity, 3))


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _secret_values(config: Config) -> list[str]:
    out: list[str] = []

    def walk(obj: Any, secret: bool = False) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, secret or _is_secret(str(k)))
        elif isinstance(obj, list):
            for v in obj:
                walk(v, secret)
        elif secret and isinstance(obj, str) and len(obj) >= 4 and obj not in ("anon",):
            out.append(obj)

    data = config.model_dump(mode="json")
    for store in _store_dicts(data):
        walk(store.get("storage_options") or {})
    walk(data.get("output", {}).get("storage_options") or {})
    return sorted(set(out), key=len, reverse=True)


def _store_dicts(data: dict) -> list[dict]:
    stores = [data.get(k) for k in ("truth", "climatology", "land_sea_mask")]
    for m in (data.get("models") or {}).values():
        stores += [m, m.get("truth"), m.get("climatology")]
    return [s for s in stores if isinstance(s, dict)]


def _gridded(ds: xr.Dataset) -> set[str]:
    return {
        str(v)
        for v, da in ds.data_vars.items()
        if LATITUDE in da.dims
        and LONGITUDE in da.dims
        and v != LAND_SEA_MASK
        and (INIT_TIME in da.dims or VALID_TIME in da.dims or DAYOFYEAR in da.dims)
    }


def _raw_name(st: _Store, canonical: str) -> str:
    """The store's own name for a canonical dim (inverse of the config rename and common names)."""
    for own, canon in st.spec.rename:
        if canon == canonical:
            return own
    if canonical in st.raw.variables:
        return canonical
    for own, canon in schema.COMMON_RENAMES.items():
        if canon == canonical and own in st.raw.variables:
            return own
    if canonical in (INIT_TIME, VALID_TIME) and "time" in st.raw.variables:
        return "time"
    return canonical


def _canonical(st: _Store, own: str) -> str:
    mapping = dict(st.spec.rename)
    if own in mapping:
        return mapping[own]
    if own in schema.COMMON_RENAMES:
        return schema.COMMON_RENAMES[own]
    if own == "time":
        return schema.ROLE_TIME_NAME.get(st.spec.role) or own
    return own


def _raw_var(st: _Store, var: str) -> str:
    for own, canon in st.spec.rename:
        if canon == var:
            return own
    return var


def _local_root(path: str) -> Path | None:
    if path.startswith("file://"):
        path = path[len("file://"):]
    elif "://" in path:
        return None
    p = Path(path)
    return p if p.is_dir() else None


def _chunk_keys(folder: Path) -> set[str] | None:
    if not folder.is_dir():
        return None
    keys = set()
    for dirpath, _dirs, files in os.walk(folder):
        rel = Path(dirpath).relative_to(folder).as_posix()
        for f in files:
            if f.startswith(".") or f == "zarr.json":
                continue
            keys.add(f if rel == "." else f"{rel}/{f}")
    return keys


def _nan_where(values: xr.DataArray, nan: np.ndarray) -> str:
    """``"init 2020-01-01T00:00, lead 24h"`` for the sampled fields that hold NaN."""
    lead_dims = [d for d in values.dims if d not in (LATITUDE, LONGITUDE, LEVEL)]
    if not lead_dims:
        return "static field"
    axes = tuple(i for i, d in enumerate(values.dims) if d not in lead_dims)
    bad = nan.any(axis=axes) if axes else nan
    parts = []
    for idx in zip(*np.nonzero(bad), strict=True):
        desc = []
        for d, i in zip(lead_dims, idx, strict=True):
            v = values[d].values[i] if d in values.coords else i
            if isinstance(v, np.datetime64):
                desc.append(f"{'init' if d == INIT_TIME else 'time'} {str(v)[:16]}")
            elif isinstance(v, np.timedelta64):
                desc.append(f"lead {align.format_hours(v)}")
            else:
                desc.append(f"{d} {v}")
        parts.append(", ".join(desc))
    return "; ".join(parts[:3]) + (" …" if len(parts) > 3 else "")


def _rms(x: np.ndarray) -> float:
    with np.errstate(invalid="ignore"):
        return float(np.sqrt(np.nanmean(np.square(np.asarray(x, dtype=np.float64)))))


# -- units and plausible values --------------------------------------------------------------


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


def _isa_height(p_hpa: float) -> float:
    """ICAO standard-atmosphere height (m) at pressure p (hPa)."""
    if p_hpa >= 226.32:
        return 288.15 / 0.0065 * (1.0 - (p_hpa / 1013.25) ** 0.190263)
    return 11000.0 + 287.053 * 216.65 / G0 * math.log(226.32 / max(p_hpa, 1e-3))


def plausibility(var: str, values: xr.DataArray) -> tuple[str, str] | None:
    """``(severity, text)`` when the finite sample values are implausible for ``var`` in ERA5
    units, else None."""
    fam = _family(var)
    arr = np.asarray(values.values, dtype=np.float64)
    if not fam or not np.isfinite(arr).any():
        return None
    with np.errstate(invalid="ignore"):
        mean, amax = float(np.nanmean(arr)), float(np.nanmax(np.abs(arr)))
    if fam == "geopotential":
        if LEVEL in values.dims:
            for lv in values[LEVEL].values:
                lev = np.asarray(values.sel({LEVEL: lv}).values, dtype=np.float64)
                m = float(np.nanmean(lev))
                h = _isa_height(float(lv))
                if not math.isfinite(m) or m <= 0 or h <= 50:
                    continue
                if abs(math.log(m / h)) < abs(math.log(m / (G0 * h))):
                    return "error", (
                        f"mean {m:.4g} at {int(lv)} hPa looks like geopotential height in m "
                        f"(expected about {G0 * h:.4g} m**2 s**-2): multiply by g = {G0}"
                    )
                if not 0.2 < m / (G0 * h) < 5:
                    return "warning", (
                        f"mean {m:.4g} at {int(lv)} hPa is far from the expected "
                        f"{G0 * h:.4g} m**2 s**-2"
                    )
        elif not -1e4 < mean < 1.2e6:
            return "error", f"mean {mean:.4g} outside any plausible m**2 s**-2 range"
        return None
    if fam == "temperature":
        if 150 <= mean <= 350 and amax < 400:
            return None
        if -100 <= mean <= 60:
            return "error", f"mean {mean:.4g} looks like °C, expected K (about 200..320)"
        return "error", f"mean {mean:.4g} is not a plausible temperature in K"
    if fam == "pressure":
        if 8e4 <= mean <= 1.1e5:
            return None
        if 800 <= mean <= 1100:
            return "error", f"mean {mean:.4g} looks like hPa, expected Pa (about 101325)"
        return "error", f"mean {mean:.4g} is not a plausible sea-level pressure in Pa"
    if fam == "wind":
        if amax > 250:
            return "error", f"largest magnitude {amax:.4g} is implausible for m s**-1"
        if amax > 120:
            return "warning", f"largest magnitude {amax:.4g} m s**-1 is unusually large"
        return None
    if fam == "humidity":
        if amax > 1:
            return "error", f"largest value {amax:.4g} looks like g/kg, expected kg/kg"
        return None
    if fam == "precipitation":
        if amax > 1:
            return "error", f"largest value {amax:.4g} looks like mm, expected m"
    return None


def climatology_period(raw: xr.Dataset | None, path: str = "") -> tuple[tuple[int, int] | None,
                                                                          str]:
    """``((first_year, last_year), source)`` of a climatology, from its attributes (keys like
    ``climatology_period``, ``period``, ``years``, ``start_year``/``end_year``), a ``time``
    coordinate, or a WB2-style store name (``1990-2019_6h_…``); ``(None, "unknown")`` otherwise."""
    if raw is not None:
        attrs = {str(k).lower(): v for k, v in raw.attrs.items()}
        for key in ("climatology_period", "climatology_years", "period", "years", "time_range",
                    "climatology_time_range"):
            if key in attrs:
                found = _years(str(attrs[key]))
                if found:
                    return found, f"attribute {key!r}"
        start = attrs.get("start_year") or attrs.get("climatology_start_year")
        stop = attrs.get("end_year") or attrs.get("climatology_end_year")
        if start is not None and stop is not None:
            try:
                return (int(start), int(stop)), "attributes start_year/end_year"
            except (TypeError, ValueError):
                pass
        for name in ("time", "climatology_bounds", "time_bounds"):
            if name in raw.variables and np.issubdtype(raw[name].dtype, np.datetime64):
                years = pd.DatetimeIndex(np.ravel(raw[name].values)).year
                return (int(years.min()), int(years.max())), f"coordinate {name!r}"
    base = Path(str(path).rstrip("/")).name
    m = re.match(r"^((?:19|20)\d\d)-((?:19|20)\d\d)(?:[_\-.]|$)", base)
    if m and int(m.group(1)) <= int(m.group(2)):
        return (int(m.group(1)), int(m.group(2))), "store name"
    return None, "unknown"


def _years(text: str) -> tuple[int, int] | None:
    m = re.search(r"((?:18|19|20|21)\d\d)\D{1,5}?((?:18|19|20|21)\d\d)", text)
    if m and int(m.group(1)) <= int(m.group(2)):
        return int(m.group(1)), int(m.group(2))
    m = re.fullmatch(r"\s*((?:18|19|20|21)\d\d)\s*", text)
    if m:
        return int(m.group(1)), int(m.group(1))
    return None
