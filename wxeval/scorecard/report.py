"""The scorecard report: one self-contained HTML file from a results folder.

``write_report`` reads only the saved results (see :mod:`wxeval.scorecard.compare`), compares
the models with the baseline and renders ``wxeval/templates/scorecard.html.j2``:

* one scorecard per model × metric and region (a region selector, default ``global``): rows
  variable/level, columns lead time in days, colour = change against the baseline in % on a
  diverging scale (bins ±1, 2, 5, 10, 20, 50 %; blue better, red worse for every metric — for
  bias the colour is the change of |bias|, the hover shows the values), triangles for
  significance at 95 % (small) and 99 % (large) after the multiple-testing treatment, every
  number on hover;
* line plots (inline SVG, drawn by the page's own script) of each metric against lead time for
  the baseline and every model, for a few headline variables, with 95 % intervals of the mean
  over inits (AR(2)-inflated standard errors);
* a provenance block (inputs, init range and count, config, versions, date, test and
  multiple-testing treatment, the caveat on the Geer test) and the findings of
  ``<results_dir>/check.json`` when present.

The page makes no network request: CSS, script and data are inline, and a Content Security
Policy forbids any fetch and any script but the page's own (pinned by its SHA-256). Every
user-supplied name is escaped: by Jinja's autoescape in HTML, by ``tojson`` (which escapes
``<``, ``>``, ``&`` and ``'``) in the embedded JSON, and the script only ever inserts text with
``textContent`` and attributes with DOM properties.
"""

from __future__ import annotations

import base64
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
from wxeval.results import atomic_write, units_of
from wxeval.scorecard.compare import (
    CAVEAT,
    DEFAULT_METRICS,
    Inputs,
    _check_options,
    compare,
    curves,
    load_inputs,
)

__all__ = ["BINS", "HEADLINE_ROWS", "build_context", "render_report", "write_report"]

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
METRIC_LABELS = {
    "rmse": "RMSE",
    "rmse_per_init": "RMSE (root per init)",
    "mse": "MSE",
    "mae": "MAE",
    "bias": "Bias",
    "acc": "ACC",
}
TEMPLATE = "scorecard.html.j2"
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
) -> Path:
    """Compare ``models`` with ``baseline`` from ``results_dir``; write one HTML file.

    ``config`` (a path or a :class:`wxeval.config.Config`) adds model labels
    (``models.<name>.label``) and provenance. ``metrics`` defaults to rmse, acc, mae, bias.
    ``method`` is the significance test (``"ar2bc"``, ``"ar2"``: Geer 2016, ``"naive"``),
    ``correction`` the multiple-testing treatment per card (``"bh"``, ``"sidak"``,
    ``"none"``). Returns the path written (atomically: a reader sees the old or the new file).
    """
    html = render_report(
        results_dir,
        models,
        baseline,
        config=config,
        metrics=metrics,
        method=method,
        correction=correction,
        alpha=alpha,
    )
    out = Path(output_html)
    atomic_write(out, lambda tmp: Path(tmp).write_text(html, encoding="utf-8"))
    return out


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
) -> str:
    """The report's HTML text (see :func:`write_report`)."""
    ctx = build_context(
        results_dir,
        models,
        baseline,
        config=config,
        metrics=metrics,
        method=method,
        correction=correction,
        alpha=alpha,
    )
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
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "allow_nan": False}
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
) -> dict:
    """Everything the template shows: ``data`` (embedded as JSON) and the provenance texts."""
    cfg, cfg_path = _config(config)
    metrics = tuple(metrics) if metrics else DEFAULT_METRICS
    _check_options(metrics, method, correction, alpha)  # before reading any statistics
    inputs = load_inputs(results_dir, models, baseline)
    ds = compare(
        results_dir,
        list(models),
        baseline,
        metrics=metrics,
        method=method,
        correction=correction,
        alpha=alpha,
        inputs=inputs,
    )
    cv = curves(inputs, metrics=list(ds["metric"].values), method=method)
    labels = {name: _label(cfg, inputs.manifests[name], name) for name in [baseline, *models]}
    data = _data(ds, cv, labels, baseline)
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
            }
            for m in models
        ],
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
    """A JSON-safe rounded number (None for NaN/inf)."""
    x = float(x)
    if not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def _lead_days(lead_times: np.ndarray) -> list[float]:
    return [float(x / np.timedelta64(1, "h")) / 24.0 for x in lead_times]


def _data(ds: xr.Dataset, cv: xr.Dataset, labels: dict, baseline: str) -> dict:
    """The page's JSON: layout, one cell table per card and region, the curves."""
    rows = [
        {
            "label": str(r),
            "variable": str(v),
            "level": None if np.isnan(lev) else int(lev),
            "units": pretty_units(units_of(str(v))),
        }
        for r, v, lev in zip(
            ds["row"].values, ds["variable"].values, ds["level"].values, strict=True
        )
    ]
    regions = [str(r) for r in ds["region"].values]
    cards = []
    for mi in range(ds.sizes["model"]):
        for ki, metric in enumerate(ds["metric"].values):
            sub = ds.isel(model=mi, metric=ki)
            has = (np.isfinite(sub["value"]) | np.isfinite(sub["baseline_value"])).values
            keep = np.flatnonzero(has.any(axis=(1, 2)))
            if keep.size == 0:
                continue
            cells = {}
            fields = [
                sub[k].values
                for k in (
                    "value",
                    "baseline_value",
                    "improvement",
                    "relative_change",
                    "p_value",
                    "n",
                    "significance",
                    "effective_n",
                    "inflation",
                    "better",
                    "n_missing",
                )
            ]
            for gi, region in enumerate(regions):
                table = []
                for r in keep:
                    row = []
                    for li in range(ds.sizes["lead_time"]):
                        v, b, imp, rel, p, n, s, neff, k, bet, miss = (
                            f[r, gi, li] for f in fields
                        )
                        row.append(
                            [
                                _num(v, 5),
                                _num(b, 5),
                                _num(imp, 3),
                                _num(rel, 3),
                                _num(p, 2),
                                int(n),
                                int(s),
                                _num(neff, 3),
                                _num(k, 3),
                                int(bet),
                                int(miss),
                            ]
                        )
                    table.append(row)
                cells[region] = table
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
        "models": [{"name": str(m), "label": labels[str(m)]} for m in ds["model"].values],
        "metrics": [
            {"name": str(m), "label": METRIC_LABELS.get(str(m), str(m))}
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
        "curves": _curves_data(cv, labels),
    }


def _curves_data(cv: xr.Dataset, labels: dict) -> dict:
    row_names = [str(r) for r in cv["row"].values]
    headline = [r for r in HEADLINE_ROWS if r in row_names]
    for r in row_names:
        if len(headline) >= MAX_HEADLINE:
            break
        if r not in headline:
            headline.append(r)
    headline = headline[:MAX_HEADLINE]
    plots = {}
    for region in cv["region"].values:
        per_region = []
        for row in headline:
            for metric in cv["metric"].values:
                sub = cv.sel(region=region, row=row, metric=metric)
                if not np.isfinite(sub["value"]).any():
                    continue
                lines = [
                    [
                        [_num(v, 5), _num(lo, 5), _num(hi, 5)]
                        for v, lo, hi in zip(
                            sub["value"].values[si],
                            sub["lower"].values[si],
                            sub["upper"].values[si],
                            strict=True,
                        )
                    ]
                    for si in range(cv.sizes["series"])
                ]
                per_region.append(
                    {"row": row, "metric": str(metric), "units": _units(row, cv), "lines": lines}
                )
        plots[str(region)] = per_region
    return {
        "series": [{"name": str(s), "label": labels[str(s)]} for s in cv["series"].values],
        "lead_days": _lead_days(cv["lead_time"].values),
        "plots": plots,
        "n_inits": int(cv.attrs["n_inits"]),
        "init_first": cv.attrs["init_first"],
        "init_last": cv.attrs["init_last"],
    }


def _units(row: str, cv: xr.Dataset) -> str:
    return pretty_units(units_of(str(cv["variable"].sel(row=row).item())))


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
    from wxeval.api import redacted_config

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
