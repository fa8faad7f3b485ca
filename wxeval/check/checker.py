"""The checker: opens each store once, selects inits and leads as ``plan.py`` does, and runs
the checks of the sibling modules, collecting every problem as a :class:`Finding`."""

from __future__ import annotations

import numpy as np

from wxeval import align, progress, schema
from wxeval.check.axes import _ForecastAxisChecks
from wxeval.check.climatology import _ClimatologyChecks
from wxeval.check.coverage import _CoverageChecks
from wxeval.check.findings import Finding, _short
from wxeval.check.grid import _GridChecks
from wxeval.check.local_files import _LocalFileChecks
from wxeval.check.sample import _SampleChecks
from wxeval.check.stores import _Store
from wxeval.check.units import _UnitChecks
from wxeval.check.values import _ValueChecks
from wxeval.config import Config, ConfigError
from wxeval.loaders import LoadError, StoreSpec, open_raw_store, open_store
from wxeval.plan import gridded_variables
from wxeval.redact import scrub
from wxeval.schema import (
    INIT_TIME,
    LEAD_TIME,
    VALID_TIME,
)


class _Checker(
    _ForecastAxisChecks,
    _GridChecks,
    _CoverageChecks,
    _ClimatologyChecks,
    _UnitChecks,
    _LocalFileChecks,
    _SampleChecks,
    _ValueChecks,
):
    def __init__(
        self,
        config: Config,
        names: list[str],
        *,
        sample: bool,
        plan_checked: bool = False,
        chunk_inits: dict[str, np.ndarray] | None = None,
        plan=None,
    ) -> None:
        self.config = config
        #: ``score``'s plan (:class:`wxeval.plan.Plan`), when there is one: its selections,
        #: sources and variables are checked rather than derived again from the config.
        self.plan = plan
        #: Opens a normalised store from its spec: the plan's opened stores when given.
        self.open_dataset = plan.stores if plan is not None else open_store
        self.names = names
        self.sample = sample
        self.plan_checked = plan_checked
        self.chunk_inits = chunk_inits
        self.findings: list[Finding] = []
        self._stores: dict[tuple, _Store] = {}
        self._grid_pairs: set[tuple[str, str]] = set()
        self._sampled: set[tuple[str, str, tuple]] = set()
        self._config_data = config.model_dump(mode="json")  # its credentials: redact.scrub

    # -- bookkeeping

    def add(self, severity: str, code: str, store: str, variable: str, message: str) -> None:
        text = " ".join(str(message).split())
        self.findings.append(Finding(severity, code, store, variable, text))

    def redact(self, f: Finding) -> Finding:
        return Finding(f.severity, f.code, scrub(f.store, self._config_data), f.variable,
                       scrub(f.message, self._config_data))

    # -- opening

    def open(self, spec: StoreSpec) -> _Store:
        key = (spec.path, spec.role, spec.rename, spec.storage_options)
        if key in self._stores:
            return self._stores[key]
        st = _Store(spec)
        self._stores[key] = st
        try:
            st.raw = open_raw_store(spec)
        except LoadError as err:
            self.add("error", "open", spec.name, "", str(err))
            return st
        except Exception as err:  # noqa: BLE001 - reported, never raised
            self.add("error", "open", spec.name, "", f"{spec.name}: cannot open: {_short(err)}")
            return st
        if spec.role == "forecast":
            self._raw_forecast_checks(st)
        try:
            st.ds = self.open_dataset(spec)
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


    # -- the run

    def run(self) -> None:
        from wxeval.plan import _select_leads, make_source, store_spec

        cfg, ev = self.config, self.config.evaluation
        if not self.names:
            self.add("error", "config", "", "", "no model to check: name one with --model")
            return
        inits_by_model: dict[str, np.ndarray] = {}
        # A bar on a terminal for `wxeval check` (the quick metadata pass of `score`: none).
        shown = None if self.sample else False
        for name in progress.iterate(self.names, "checking", "model", enabled=shown):
            try:
                mcfg = cfg.model(name)
            except ConfigError as err:
                self.add("error", "config", "", "", str(err))
                continue
            truth_cfg = mcfg.truth or cfg.truth
            clim_cfg = mcfg.climatology or cfg.climatology
            # The same store spec as the plan's, so the opened store is shared (not reopened).
            truth = self.open(store_spec(truth_cfg, "truth", f"truth ({truth_cfg.path})"))
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

            # Selection: the plan's, else as plan.py makes it.
            planned = self.plan.model(name) if self.plan is not None else None
            try:
                if planned is not None:
                    inits, leads = planned.selected_init_times, planned.lead_times
                elif fc is not None:
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
                if inits.size == 0:
                    text = f"model {name!r}: no init time in the selection"
                else:
                    from wxeval.plan import no_leads_message

                    text = no_leads_message(
                        name, ev.lead_times, fc.name if fc is not None else None,
                        fc.ds[LEAD_TIME].values if fc is not None else None,
                    )
                self.add("error", "plan", "", "", text)
                continue
            if fc is not None:
                inits_by_model[name] = inits
            if planned is not None:
                source, variables = planned.source, list(planned.variables)
            else:
                source = make_source(mcfg.kind, fc.spec if fc is not None else None)
                variables = self.fields(name, source, fc, truth, clim)
            # a derived variable's inputs are checked where they are read (units, values)
            from wxeval.derived import with_inputs

            variables = with_inputs(variables, [s.ds for s in (fc, truth) if s is not None])
            self.check_truth_coverage(name, inits, leads, truth, source)
            if clim is not None:
                self.check_clim(inits, leads, clim)
            for st in filter(None, (fc, truth, clim)):
                self.check_orphans(st)
                self.check_units_attrs(st, variables)
                self.check_chunks(st, variables, self._chunk_inits(name, inits), leads)
            if self.sample:
                self.sample_values(name, fc, truth, clim, variables, inits, leads)
        self.check_common_inits(inits_by_model)
        if not self.errors_so_far() and not self.plan_checked:
            self.check_plan()

    def _chunk_inits(self, name: str, inits: np.ndarray) -> np.ndarray:
        """Inits whose chunk files are listed: those still to compute when the caller knows
        them (``wxeval score`` with a statistics store), else the whole selection."""
        if self.chunk_inits is None or name not in self.chunk_inits:
            return inits
        return inits[np.isin(inits, self.chunk_inits[name])]

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

    def fields(self, name, source, fc, truth, clim) -> list[str]:
        """The variables to check, resolved by the plan's own :func:`~wxeval.plan.select_fields`
        (variables, unexpected dims, level matching): whatever it refuses is an error here, in
        the same words ``wxeval score`` uses. After such an error the variables present in both
        stores are checked still, so that other problems are reported too."""
        from wxeval.plan import SelectionError, select_fields

        source_ds = source.fields_from(
            fc.ds if fc is not None else None, truth.ds, clim.ds if clim is not None else None
        )
        names = {
            "source": source.label(name),
            "truth": truth.name,
            "climatology": clim.name if clim is not None else "",
        }
        try:
            return select_fields(
                self.config.evaluation,
                name,
                source,
                source_ds,
                truth.ds,
                clim.ds if clim is not None else None,
                names,
            ).variables
        except (SelectionError, schema.SchemaError) as err:
            code = "plan" if isinstance(err, SelectionError) else "schema"
            store = next((n for n in names.values() if n and str(err).startswith(n)), "")
            self.add("error", code, store, "", str(err))
        return self.variables(source_ds, truth)

    def variables(self, source_ds, truth) -> list[str]:
        requested = self.config.evaluation.variables
        if requested:
            return list(requested)
        have = gridded_variables(source_ds) & gridded_variables(truth.ds)
        return sorted(have)
