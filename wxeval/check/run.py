"""Entry points: :func:`run_checks`, :func:`preflight` and :func:`run_check_command`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from wxeval import align, schema
from wxeval.check.checker import _Checker
from wxeval.check.findings import CheckReport, _dedupe, write_report
from wxeval.config import Config, ConfigError
from wxeval.loaders import LoadError

log = logging.getLogger("wxeval")


def run_checks(
    config: Config,
    model_names: Iterable[str],
    *,
    sample: bool = True,
    plan_checked: bool = False,
    chunk_inits: dict | None = None,
    plan=None,
) -> CheckReport:
    """Check ``model_names`` of ``config``; metadata only when ``sample`` is False.
    ``plan_checked``: the caller already built the plan (do not build it again).
    ``chunk_inits``: per model, the inits whose chunk files to list (default: all selected).
    ``plan``: the :class:`wxeval.plan.Plan` built from ``config`` for ``model_names``: its
    opened stores, selections, sources and variables are checked instead of derived again."""
    checker = _Checker(
        config, list(model_names), sample=sample, plan_checked=plan_checked,
        chunk_inits=chunk_inits, plan=plan,
    )
    checker.run()
    return CheckReport(_dedupe(checker.redact(f) for f in checker.findings))


def preflight(
    config: Config,
    model_names: Iterable[str],
    *,
    plan_checked: bool = False,
    chunk_inits: dict | None = None,
    plan=None,
) -> CheckReport:
    """The cheap (metadata-only) check ``wxeval score`` runs first.

    ``plan``: the :class:`wxeval.plan.Plan` the caller built from ``config`` for
    ``model_names`` (it is not built again; its stores and selections are checked).

    Raises the first error with :mod:`wxeval.plan`'s exception types (ConfigError,
    SelectionError, SchemaError, AlignmentError, LoadError) so that the CLI maps it to the same
    exit code; logs warnings on the ``wxeval`` logger; returns the report otherwise.
    ``chunk_inits`` (per model) limits the listing of chunk files to the inits still to
    compute: inits already in the statistics store were read whole when they were scored.
    """
    from wxeval.plan import make_plan

    names = list(model_names)
    if plan is None and not plan_checked:
        plan = make_plan(config, names)  # plan's own errors, in its own words, first
    # planned just above (or by the caller)
    report = run_checks(
        config, names, sample=False, plan_checked=True, chunk_inits=chunk_inits, plan=plan,
    )
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
    The plan ``wxeval score`` would make is checked (its stores, selections and variables);
    when it cannot be made, the checks derive them from the config and report every problem.
    """
    from wxeval.plan import make_plan

    names = list(names)
    try:
        plan = make_plan(cfg, names)
    except (ValueError, OSError):  # reported below, in the checks' own words
        plan = None
    report = run_checks(cfg, names, sample=True, plan_checked=plan is not None, plan=plan)
    for f in report.findings:
        echo(f.line())
    echo(report.summary())
    if output is not None:
        write_report(report, output)
    return 3 if report.errors else 0


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
