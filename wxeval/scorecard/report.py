"""The scorecard report: one self-contained HTML file from a results folder.

``write_report`` reads only the saved results (see :mod:`wxeval.scorecard.compare`), compares
the models with the baseline and renders ``wxeval/templates/scorecard.html.j2``:

* one scorecard per model × metric and region (a region selector, default ``global``), laid
  out in a grid as wide as the page: rows variable/level ("geopotential 500 hPa"), columns
  lead time in days, colour = change against the baseline in % on a diverging scale (bins
  ±1, 2, 5, 10, 20, 50 %; blue better, red worse for every metric — for bias the change of
  |bias| in % of the baseline's RMSE, :func:`bias_change`), triangles for significance at
  95 % (small) and 99 % (large) after the multiple-testing treatment, every number on hover,
  blank "no data" cells explained in the legend;
* line plots (inline SVG, drawn by the page's own script) of each metric against lead time for
  the baseline and every model, for a few headline variables (one row of plots per variable),
  with 95 % intervals of the mean over inits (AR(2)-inflated standard errors); the y-axis
  spans the curves shown and a click on a legend entry hides or shows a series;
* a provenance block (inputs, init range and count, config, versions, date, test and
  multiple-testing treatment, the caveat on the Geer test) and the findings of
  ``<results_dir>/check.json`` when present.

The data travel as compact JSON (:func:`_data`): one list per field and card, numbers at the
precision the page shows, nothing the page does not show; the size grows with models ×
metrics × regions × rows × leads (about 20 bytes per card cell), not with the number of inits.

The page makes no network request: CSS, script and data are inline, and a Content Security
Policy forbids any fetch and any script but the page's own (pinned by its SHA-256). Every
user-supplied name is escaped: by Jinja's autoescape in HTML, by ``tojson`` (which escapes
``<``, ``>``, ``&`` and ``'``) in the embedded JSON, and the script only ever inserts text with
``textContent`` and attributes with DOM properties.
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import wxeval
from wxeval.metric_defs import BY_NAME, REGISTRY
from wxeval.results import atomic_write, units_of
from wxeval.schema import LEAD_TIME
from wxeval.scorecard.compare import (
    CAVEAT,
    DEFAULT_METRICS,
    Inputs,
    _check_options,
    compare,
    curves,
    load_inputs,
)
from wxeval.scorecard.presets import display_units, first_rows

__all__ = [
    "BINS",
    "HEADLINE_ROWS",
    "bias_change",
    "build_context",
    "render_report",
    "row_display_label",
    "write_report",
]

#: Colour bins of the change in % (both signs).
BINS = (1, 2, 5, 10, 20, 50)
#: Rows shown in the line plots, the first ``MAX_HEADLINE`` available.
HEADLINE_ROWS = (
    "geopotential 500",
    "temperature 850",
    "2m_temperature",
    "mean_sea_level_pressure",
    "10m_wind_vector",
    "wind_vector 850",
)
MAX_HEADLINE = 4
METRIC_LABELS = {m.name: m.label for m in REGISTRY}
TEMPLATE = "scorecard.html.j2"
#: p-values below this are shown as "p < 0.001" (and stored as 0).
P_FLOOR = 1e-3
CORRECTION_SHORT = {
    "bh": "Benjamini\u2013Hochberg per card",
    "sidak": "\u0160id\u00e1k per card",
    "none": "no multiple-testing correction",
}
_HASH_SLOT = "sha256-WXEVAL-SCRIPT-HASH"


def write_report(
    results_dir: str | Path,
    models: Sequence[str],
    baseline: str,
    output_html: str | Path,
    config: Any = None,
    metrics: Sequence[str] | None = None,
    method: str = "ar2bc",
    *,
    correction: str = "bh",
    alpha: Sequence[float] = (0.05, 0.01),
    preset: str | None = None,
    by: str | None = None,
) -> Path:
    """Compare ``models`` with ``baseline`` from ``results_dir``; write one HTML file.

    ``config`` (a path or a :class:`wxeval.config.Config`) adds model labels
    (``models.<name>.label``) and provenance. ``metrics`` defaults to rmse, acc, mae, bias.
    ``method`` is the significance test (``"ar2bc"``, ``"ar2"``: Geer 2016, ``"naive"``),
    ``correction`` the multiple-testing treatment per card (``"bh"``, ``"sidak"``,
    ``"none"``). Returns the path written (atomically: a reader sees the old or the new file).

    ``by`` (``season``, ``month``, ``init_hour``, :mod:`wxeval.splits`): also one report per
    label of the split, compared on the inits of that label only, written beside ``output_html``
    as ``<stem>.<label>.html``; every page carries a selector linking all of them.
    """
    out = Path(output_html)
    if by is not None:
        return _write_split_reports(
            results_dir, models, baseline, out, by, config=config, metrics=metrics,
            method=method, correction=correction, alpha=alpha, preset=preset)
    html = render_report(
        results_dir,
        models,
        baseline,
        config=config,
        metrics=metrics,
        method=method,
        correction=correction,
        alpha=alpha,
        preset=preset,
    )
    atomic_write(out, lambda tmp: Path(tmp).write_text(html, encoding="utf-8"))
    return out


def _write_split_reports(results_dir, models, baseline, out: Path, by: str, **options) -> Path:
    """The full report at ``out`` and one per label of split ``by`` beside it, linked."""
    from wxeval import splits

    splits.check_split(by)
    inputs = load_inputs(results_dir, models, baseline)
    inits = np.concatenate([ds["init_time"].values for s in inputs.scores.values()
                            for ds in s.values()])
    present = splits.present(splits.labels(np.unique(inits), by), by)
    names = {label: f"{out.stem}.{label}{out.suffix}" for label in present}
    pages = [(None, out.name), *((label, names[label]) for label in present)]
    shared: dict = {}
    for label, name in pages:
        nav = {
            "by": by,
            "pages": [{"label": "all" if lab is None else str(lab), "href": href,
                       "current": lab == label} for lab, href in pages],
            "n_inits": None,
        }
        if label is not None:
            nav["n_inits"] = int(np.sum(splits.labels(
                _baseline_inits(inputs), by) == label))
        html = render_report(results_dir, models, baseline, split=(by, label), split_nav=nav,
                             inputs=inputs, shared=shared, **options)
        path = out.parent / name
        atomic_write(path, lambda tmp, h=html: Path(tmp).write_text(h, encoding="utf-8"))
    return out


def _baseline_inits(inputs: Inputs) -> np.ndarray:
    per_var = inputs.scores[inputs.baseline].values()
    return np.unique(np.concatenate([ds["init_time"].values for ds in per_var]))


def restrict_inputs(inputs: Inputs, by: str, label) -> Inputs:
    """``inputs`` with only the inits of ``label`` of split ``by`` (a new object)."""
    from wxeval import splits

    scores = {}
    for name, per_var in inputs.scores.items():
        scores[name] = {}
        for var, ds in per_var.items():
            keep = splits.labels(ds["init_time"].values, by) == label
            scores[name][var] = ds.isel(init_time=keep)
    return Inputs(inputs.results_dir, inputs.baseline, inputs.models, scores, inputs.manifests)


def render_report(
    results_dir: str | Path,
    models: Sequence[str],
    baseline: str,
    *,
    config: Any = None,
    metrics: Sequence[str] | None = None,
    method: str = "ar2bc",
    correction: str = "bh",
    alpha: Sequence[float] = (0.05, 0.01),
    preset: str | None = None,
    split: tuple[str, Any] | None = None,
    split_nav: dict | None = None,
    inputs: Inputs | None = None,
    shared: dict | None = None,
) -> str:
    """The report's HTML text (see :func:`write_report`); ``split`` (split, label or None)
    restricts the comparison to the inits of a label, ``split_nav`` is the selector shown;
    ``shared``: see :func:`build_context`."""
    ctx = build_context(
        results_dir,
        models,
        baseline,
        config=config,
        metrics=metrics,
        method=method,
        correction=correction,
        alpha=alpha,
        preset=preset,
        split=split,
        inputs=inputs,
        shared=shared,
    )
    if split_nav is not None and split is not None and split[1] is not None:
        ctx["title"] += f" ({split[0].replace('_', ' ')} {split[1]})"
    ctx["split_nav"] = split_nav
    template = _environment().get_template(TEMPLATE)
    html = template.render(**ctx, wx_script_hash=_HASH_SLOT)
    # Pin the page's own script in the Content Security Policy: hash exactly the text between
    # the last <script> and its </script> (user text cannot contain either: it is escaped).
    start = html.rindex("<script>") + len("<script>")
    script = html[start : html.index("</script>", start)]
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return html.replace(_HASH_SLOT, f"sha256-{digest}", 1)


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("wxeval", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # NaN is not JSON: fail loudly rather than emit a page whose data cannot be parsed.
    # No spaces after separators: the data are most of the file.
    env.policies["json.dumps_kwargs"] = {
        "sort_keys": False,
        "allow_nan": False,
        "separators": (",", ":"),
    }
    return env


# ---------------------------------------------------------------------------------------------
# The template context
# ---------------------------------------------------------------------------------------------


def build_context(
    results_dir: str | Path,
    models: Sequence[str],
    baseline: str,
    *,
    config: Any = None,
    metrics: Sequence[str] | None = None,
    method: str = "ar2bc",
    correction: str = "bh",
    alpha: Sequence[float] = (0.05, 0.01),
    preset: str | None = None,
    split: tuple[str, Any] | None = None,
    inputs: Inputs | None = None,
    shared: dict | None = None,
) -> dict:
    """Everything the template shows: ``data`` (embedded as JSON) and the provenance texts.
    ``shared``: a dict kept across the pages of one report (the page of every init and one
    per split label), holding what they show alike (the ensemble plots, read from every init's
    statistics) so that it is read once."""
    cfg, cfg_path = _config(config)
    asked = bool(metrics) or preset is not None
    if preset is not None:
        from wxeval.scorecard.presets import PRESETS, metrics_of

        if preset not in PRESETS:
            raise ValueError(f"preset {preset!r}: choose one of {', '.join(PRESETS)}")
        metrics = metrics_of(preset)
    metrics = tuple(metrics) if metrics else DEFAULT_METRICS
    shown, _ = _check_options(metrics, method, correction, alpha)  # before reading statistics
    if inputs is None:
        inputs = load_inputs(results_dir, models, baseline)
    if split is not None and split[1] is not None:
        inputs = restrict_inputs(inputs, *split)
    if not asked and "crps" not in shown and any(
        "crps" in ds for s in inputs.scores.values() for ds in s.values()
    ):  # an ensemble among the models: a CRPS card (a deterministic model's CRPS is its MAE)
        shown = [*shown, "crps"]
    # The bias cards are coloured by the change of |bias| relative to the baseline's RMSE
    # (see bias_change): compare rmse too when it is not shown. The multiple-testing
    # treatment is per card (model × metric), so an extra metric changes no other card.
    abs_shown = any(BY_NAME[m].compare == "abs" for m in shown)  # bias-like: |m| vs |b|
    extra = ["rmse"] if abs_shown and "rmse" not in shown else []
    ds = compare(
        results_dir,
        list(models),
        baseline,
        metrics=[*shown, *extra],
        method=method,
        correction=correction,
        alpha=alpha,
        inputs=inputs,
    )
    baseline_rmse = (
        ds["baseline_value"].sel(metric="rmse", drop=True) if abs_shown else None
    )
    ds = ds.sel(metric=shown)
    cv = curves(inputs, metrics=list(ds["metric"].values), method=method)
    ds, cv, baseline_rmse = _preset_and_units(ds, cv, baseline_rmse, preset)
    labels = {name: _label(cfg, inputs.manifests[name], name) for name in [baseline, *models]}
    data = _data(ds, cv, labels, baseline, baseline_rmse)
    from wxeval.scorecard.ensemble import ensemble_data

    key = ("ensemble", str(results_dir), baseline, tuple(models), tuple(labels.items()),
           tuple(data["regions"]))
    if shared is None or key not in shared:
        ens = ensemble_data(results_dir, [baseline, *models], labels, data["regions"])
        if shared is not None:
            shared[key] = ens
    data["ensemble"] = copy.deepcopy(shared[key]) if shared is not None else ens
    members = (data["ensemble"] or {}).get("members", {})
    data["where"] = _where_when(results_dir, inputs, baseline, models, labels, data,
                                whole=split is None or split[1] is None)
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return {
        "title": f"Scorecard: {', '.join(labels[m] for m in models)} vs {labels[baseline]}",
        "data": data,
        "baseline_label": labels[baseline],
        "models": [
            {
                "name": m,
                "label": labels[m],
                "note": str(ds["pairing_note"].sel(model=m).item()),
                "common": int(ds["n_common_inits"].sel(model=m)),
                "members": members.get(m, 0),
            }
            for m in models
        ],
        "baseline_members": members.get(baseline, 0),
        "findings": _findings(Path(results_dir)),
        "provenance": _provenance(inputs, ds, cv, cfg, cfg_path, labels, created),
        "created": created,
        "version": wxeval.__version__,
        "bins": BINS,
        "alpha_pct": [f"{(1 - a) * 100:g}" for a in ds["alpha"].values],
        "test_description": ds.attrs["test_description"],
        "correction_description": ds.attrs["multiple_testing_description"],
        "correction_short": CORRECTION_SHORT[ds.attrs["multiple_testing"]],
        "caveat": CAVEAT,
        "size_note": ds.attrs["size_note"],
        "band": cv.attrs["band"],
    }


def _where_when(results_dir, inputs, baseline, models, labels, data, whole=True) -> dict:
    """Maps, per-init series and spectra for the page (:mod:`wxeval.scorecard.where_when`).
    A page of one split label (``whole`` False) shows the series of its inits only: the maps
    and spectra files hold every init, so they are left to the page of all inits."""
    from wxeval.scorecard.where_when import where_when

    return where_when(results_dir, inputs, baseline, list(models), labels,
                      data["default_region"], files=whole)


def _preset_and_units(ds, cv, baseline_rmse, preset):
    """The preset's cards only (wxeval.scorecard.presets), values in the units shown
    (precipitation in mm; the tables keep metres)."""
    from wxeval.scorecard.presets import apply_preset, to_display_units

    cells = ("value", "baseline_value")
    ds = to_display_units(apply_preset(ds, preset, cells), cells)
    cv = to_display_units(apply_preset(cv, preset, ("value", "lower", "upper")),
                          ("value", "lower", "upper"))
    if baseline_rmse is not None:
        rmse = to_display_units(
            baseline_rmse.expand_dims(metric=["rmse"]).to_dataset(name="v"), ("v",)
        )["v"].isel(metric=0, drop=True)
        baseline_rmse = rmse
    return ds, cv, baseline_rmse


def _config(config):
    if config is None:
        return None, None
    from wxeval.config import Config, load_config

    if isinstance(config, Config):
        return config, None
    return load_config(config), Path(config)


def _label(cfg, manifest: dict, name: str) -> str:
    if cfg is not None and name in cfg.models and cfg.models[name].label:
        return str(cfg.models[name].label)
    conf = manifest.get("config")
    if isinstance(conf, dict):
        model_conf = (conf.get("models") or {}).get(name) or {}
        if isinstance(model_conf, dict) and model_conf.get("label"):
            return str(model_conf["label"])
    return name


def _num(x, digits: int = 4):
    """A JSON-safe number rounded to ``digits`` significant digits (None for NaN/inf).

    Integral results are returned as ``int`` so that JSON spells ``1200`` rather than
    ``1200.0``.
    """
    x = float(x)
    if not math.isfinite(x):
        return None
    r = float(f"{x:.{digits}g}")
    return int(r) if r.is_integer() and abs(r) < 1e15 else r


def _fixed(x, decimals: int = 1):
    """A JSON-safe number rounded to ``decimals`` decimals (None for NaN/inf)."""
    x = float(x)
    if not math.isfinite(x):
        return None
    r = round(x, decimals) + 0.0  # + 0.0: no "-0.0"
    return int(r) if r.is_integer() else r


def _p_shown(p) -> float | int | None:
    """A p-value at the precision the page shows: 2 significant digits, 0 below 1e-3 (shown
    as "p < 0.001"); None where the cell is not testable."""
    p = float(p)
    if not math.isfinite(p):
        return None
    return 0 if p < P_FLOOR else _num(p, 2)


def _neff_shown(x) -> float | int | None:
    """The effective sample size as the page shows it: a whole number from 10 up, else 2
    significant digits (it is an estimate: "65" says what "65.09" does).

    Not floored at n: where the estimated inflation k is below 1 (negatively autocorrelated
    differences) n/k² exceeds n, and the p-value was computed with that k. A floor on the page
    alone would show a sample size the test did not use; flooring k itself is a choice of the
    test (wxeval.scorecard.significance). The page says why the value exceeds n instead.
    """
    x = float(x)
    if not math.isfinite(x):
        return None
    return int(round(x)) if x >= 10 else _num(x, 2)


def _share(values: list, baselines: list[list], candidates: list[int]) -> int:
    """Index of a stored baseline array equal to ``values`` wherever ``values`` has a number
    (filling its gaps from ``values``), or of ``values`` appended to ``baselines``.

    Cards of one metric and region read the baseline only where their model has a value,
    and model and baseline values come from the same pairs of inits, so an array that agrees
    there serves both; filling gaps never changes a value an earlier card reads.
    """
    for i in candidates:
        stored = baselines[i]
        if all(v is None or s is None or v == s for v, s in zip(values, stored, strict=True)):
            baselines[i] = [s if s is not None else v for v, s in zip(values, stored, strict=True)]
            return i
    baselines.append(values)
    candidates.append(len(baselines) - 1)
    return len(baselines) - 1


def _lead_days(lead_times: np.ndarray) -> list[float]:
    return [_num(float(x / np.timedelta64(1, "h")) / 24.0, 6) for x in lead_times]


def row_display_label(variable: str, level) -> str:
    """The label a reader sees: ``"geopotential 500 hPa"``, ``"2m_temperature"``.

    Pressure levels are in hPa (the schema's ``level`` coordinate, WB2's convention).
    """
    if level is None or (isinstance(level, float) and np.isnan(level)):
        return str(variable)
    return f"{variable} {int(level)} hPa"


def bias_change(model_bias, baseline_bias, baseline_rmse) -> np.ndarray:
    """The bias cards' colour: (|b| − |m|) / RMSE_b × 100, positive = smaller |bias|.

    The change of |bias| in units of the baseline's RMSE over the same inits, in %: how much
    of the typical error the bias change is worth. The ratio to the baseline's own |bias|
    (``improvement`` of :func:`wxeval.scorecard.compare.compare`) explodes wherever the
    baseline is nearly unbiased, which is most cells of a small region. NaN where the
    baseline RMSE is zero or any input is missing.
    """
    m = np.abs(np.asarray(model_bias, dtype=np.float64))
    b = np.abs(np.asarray(baseline_bias, dtype=np.float64))
    r = np.asarray(baseline_rmse, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = np.isfinite(m) & np.isfinite(b) & np.isfinite(r) & (r > 0)
        return np.where(ok, (b - m) / np.where(ok, r, 1.0) * 100.0, np.nan)


def _flat(values: np.ndarray, fmt) -> list:
    return [fmt(x) for x in np.asarray(values).ravel()]


_CELL_FIELDS = (
    "value", "baseline_value", "improvement", "p_value", "significance", "n_missing", "effective_n"
)


def _data(ds: xr.Dataset, cv: xr.Dataset, labels: dict, baseline: str,
          baseline_rmse: xr.DataArray | None = None) -> dict:
    """The page's JSON, compact: only what the page shows, at the precision it shows.

    ``cards[i].cells[region]`` is ``[v, b, c, p, s, miss, e]``, each a flat list over
    (card row, lead), row-major:

    * ``v`` model value, 4 significant digits (the hover shows 4);
    * ``b`` an index into ``baselines``, the baseline values (4 digits), shared between
      cards of one metric and region that agree wherever both have a value (the page reads
      the baseline only where the model has a value: both come from the same pairs);
    * ``c`` the colour value in %, one decimal (what the hover shows): ``improvement`` for
      rmse, mae, acc …; :func:`bias_change` for bias;
    * ``p`` the p-value, 2 digits, 0 below 1e-3 (see :func:`_p_shown`), null = not testable;
    * ``s`` a string, one digit per cell: the number of ``alpha`` levels passed;
    * ``miss`` 0, or a list: common inits without a finite pair (n = the model's ``common``
      − miss);
    * ``e`` the effective sample size n/k² the test used, as shown (:func:`_neff_shown`).

    Dropped from the page because derivable or not shown: relative_change (± c), better
    (sign of v against b), n (from common and miss), inflation k (the hover gives n and
    effective n).
    """
    rows = [
        {
            "label": row_display_label(str(v), lev),
            "variable": str(v),
            "level": None if np.isnan(lev) else int(lev),
            "units": pretty_units(display_units(str(v), units_of(str(v)))),
        }
        for v, lev in zip(ds["variable"].values, ds["level"].values, strict=True)
    ]
    regions = [str(r) for r in ds["region"].values]
    cards = []
    baselines: list[list] = []
    candidates: dict[tuple, list[int]] = {}
    for mi in range(ds.sizes["model"]):
        for ki, metric in enumerate(ds["metric"].values):
            sub = ds[list(_CELL_FIELDS)].isel(model=mi, metric=ki)
            has = (np.isfinite(sub["value"]) | np.isfinite(sub["baseline_value"])).values
            keep = np.flatnonzero(has.any(axis=(1, 2)))
            if keep.size == 0:
                continue
            sub = sub.isel(row=keep).transpose("region", "row", LEAD_TIME)
            if BY_NAME[str(metric)].compare == "abs" and baseline_rmse is not None:
                rmse = baseline_rmse.isel(model=mi, row=keep).transpose("region", "row", LEAD_TIME)
                colour = bias_change(sub["value"].values, sub["baseline_value"].values,
                                     rmse.values)
            else:
                colour = sub["improvement"].values
            data_cell = has[keep].transpose(1, 0, 2)  # (region, row, lead)
            miss = np.where(data_cell, sub["n_missing"].values, 0)
            cells = {}
            for gi, region in enumerate(regions):
                base_vals = _flat(sub["baseline_value"].values[gi], _num)
                key = (str(metric), region, tuple(keep.tolist()))
                index = _share(base_vals, baselines, candidates.setdefault(key, []))
                cells[region] = [
                    _flat(sub["value"].values[gi], _num),
                    index,
                    _flat(colour[gi], _fixed),
                    _flat(sub["p_value"].values[gi], _p_shown),
                    "".join(str(int(x)) for x in sub["significance"].values[gi].ravel()),
                    [int(x) for x in miss[gi].ravel()] if miss[gi].any() else 0,
                    _flat(sub["effective_n"].values[gi], _neff_shown),
                ]
            cards.append(
                {
                    "model": int(mi),
                    "metric": str(metric),
                    "rows": [int(r) for r in keep],
                    "cells": cells,
                }
            )
    return {
        "baseline": {"name": baseline, "label": labels[baseline]},
        "models": [
            {"name": str(m), "label": labels[str(m)], "common": int(c)}
            for m, c in zip(ds["model"].values, ds["n_common_inits"].values, strict=True)
        ],
        "metrics": [
            {
                "name": str(m), "label": METRIC_LABELS.get(str(m), str(m)),
                "units": BY_NAME[str(m)].units, "better": BY_NAME[str(m)].better,
                "compare": BY_NAME[str(m)].compare,
            }
            for m in ds["metric"].values
        ],
        "regions": regions,
        "default_region": "global" if "global" in regions else regions[0],
        "rows": rows,
        "lead_days": _lead_days(ds["lead_time"].values),
        "bins": list(BINS),
        "alpha_pct": [f"{(1 - a) * 100:g}" for a in ds["alpha"].values],
        "correction": CORRECTION_SHORT[str(ds.attrs["multiple_testing"])],
        "cards": cards,
        "baselines": baselines,
        "curves": _curves_data(cv, labels, [r["label"] for r in rows]),
    }


def _headline(row_names: list[str]) -> list[str]:
    """The rows drawn as line plots: :data:`HEADLINE_ROWS` present, then the first others."""
    return first_rows(HEADLINE_ROWS, row_names, MAX_HEADLINE)


def _curves_data(cv: xr.Dataset, labels: dict, row_labels: list[str]) -> dict:
    """Line plots: ``plots[region]`` is a list of ``[row, metric, lines]`` (indices into the
    page's ``rows`` and ``metrics``), one per headline row × metric with a finite value,
    grouped by row; ``lines[series]`` is ``[value, lower, upper]``, each a list over leads
    at 3 significant digits (a plot is ~200 px high; the hover shows 3)."""
    row_names = [str(r) for r in cv["row"].values]
    display = {
        str(r): row_display_label(str(v), lev)
        for r, v, lev in zip(cv["row"].values, cv["variable"].values, cv["level"].values,
                             strict=True)
    }
    metric_names = [str(m) for m in cv["metric"].values]
    plots = {}
    for region in cv["region"].values:
        per_region = []
        for row in _headline(row_names):
            for ki, metric in enumerate(metric_names):
                sub = cv.sel(region=region, row=row, metric=metric)
                if not np.isfinite(sub["value"]).any():
                    continue
                lines = [
                    [
                        _flat(sub["value"].values[si], lambda x: _num(x, 3)),
                        _flat(sub["lower"].values[si], lambda x: _num(x, 3)),
                        _flat(sub["upper"].values[si], lambda x: _num(x, 3)),
                    ]
                    for si in range(cv.sizes["series"])
                ]
                per_region.append([row_labels.index(display[row]), ki, lines])
        plots[str(region)] = per_region
    return {
        "series": [{"name": str(s), "label": labels[str(s)]} for s in cv["series"].values],
        "lead_days": _lead_days(cv["lead_time"].values),
        "plots": plots,
        "n_inits": int(cv.attrs["n_inits"]),
        "init_first": cv.attrs["init_first"],
        "init_last": cv.attrs["init_last"],
    }


_SUPERSCRIPT = str.maketrans(
    "-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
)


def pretty_units(units: str) -> str:
    """``"m**2 s**-2"`` → ``"m² s⁻²"`` (CF-style exponents as superscripts)."""
    import re

    return re.sub(r"\*\*(-?\d+)", lambda m: m.group(1).translate(_SUPERSCRIPT), units)


# ---------------------------------------------------------------------------------------------
# Findings and provenance
# ---------------------------------------------------------------------------------------------


def _findings(results_dir: Path) -> list[dict] | None:
    """``<results_dir>/check.json`` findings (None when there is no such file)."""
    path = results_dir / "check.json"
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return [{"severity": "error", "message": f"check.json could not be read: {err}"}]
    if isinstance(raw, dict):
        raw = raw.get("findings", [])
    out = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            sev = str(item.get("severity", "info"))
            out.append({"severity": sev, "level": _severity(sev), "message": str(item.get(
                "message", ""))})
        else:
            out.append({"severity": "info", "level": "info", "message": str(item)})
    return out


def _severity(text: str) -> str:
    t = text.lower()
    if t.startswith(("err", "crit", "fatal", "fail")):
        return "error"
    if t.startswith("warn"):
        return "warning"
    return "info"


def _provenance(inputs: Inputs, ds, cv, cfg, cfg_path, labels, created) -> dict:
    from wxeval.redact import redacted_config

    models = []
    for name in [inputs.baseline, *inputs.models]:
        man = inputs.manifests[name]
        ins = man.get("inputs") or {}
        fc = ins.get("forecast") or {}
        models.append(
            {
                "name": name,
                "label": labels[name],
                "role": "baseline" if name == inputs.baseline else "model",
                "forecast": fc.get("path") or (f"built-in {fc['baseline']}" if "baseline" in fc
                                               else ""),
                "truth": (ins.get("truth") or {}).get("path", ""),
                "climatology": (ins.get("climatology") or {}).get("path", ""),
                "init_first": man.get("init_time_first", ""),
                "init_last": man.get("init_time_last", ""),
                "init_count": man.get("init_time_count", ""),
                "pending": len(man.get("pending_init_times") or []),
                "created": man.get("created", ""),
                "version": man.get("wxeval_version", ""),
            }
        )
    if cfg is not None:
        config_text = json.dumps(redacted_config(cfg), indent=2, default=str)
        config_source = str(cfg_path) if cfg_path else "given as an object"
    else:
        conf = inputs.manifests[inputs.baseline].get("config")
        config_text = json.dumps(conf, indent=2, default=str) if conf else ""
        config_source = f"recorded in {inputs.baseline}.json (no --config given)"
    versions = inputs.manifests[inputs.baseline].get("versions") or {}
    return {
        "results_dir": str(Path(inputs.results_dir).resolve()),
        "models": models,
        "config_source": config_source,
        "config_text": config_text,
        "created": created,
        "version": wxeval.__version__,
        "versions": ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        "test": ds.attrs["test_description"],
        "correction": ds.attrs["multiple_testing_description"],
        "alpha": ds.attrs["alpha"],
        "tested_scores": ds.attrs["tested_scores"],
        "value_definition": ds.attrs["value_definition"],
        "band": cv.attrs["band"],
        "curve_inits": f"{cv.attrs['n_inits']} inits common to all models "
        f"({cv.attrs['init_first']} to {cv.attrs['init_last']})",
        "caveat": CAVEAT,
    }
