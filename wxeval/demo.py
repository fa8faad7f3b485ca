"""``wxeval demo``: a seeded synthetic archive in the real WeatherBench 2 layout, scored.

It writes ``<output>/archive`` (ERA5-like truth with a land-sea mask, a day-of-year × hour
climatology and three synthetic models with different error growth, one of them in GraphCast's
layout: ``lat``/``lon`` names, no 0 h lead, and a 5-member ensemble in IFS ENS's layout),
``<output>/config.yaml`` (an ordinary config that ``wxeval score`` takes), ``<output>/results``
(netCDF, CSV, per-init statistics) and
``<output>/report.html`` (the scorecard). Rerunning reuses the archive and every statistic.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from wxeval.metric_defs import ENSEMBLE_DEFAULTS
from wxeval.metrics import METRICS

DEMO_GRID = "64x32"
DEMO_VARIABLES = (
    "geopotential",
    "temperature",
    "u_component_of_wind",
    "v_component_of_wind",
    "2m_temperature",
    "mean_sea_level_pressure",
    "10m_u_component_of_wind",
    "10m_v_component_of_wind",
)
#: Derived inside the pass (wxeval.derived): 10 m wind speed from u10/v10, 24 h precipitation
#: from the cumulative total (models) or the 6 h windows (truth).
DEMO_DERIVED = ("10m_wind_speed", "total_precipitation_24hr")
DEMO_LEVELS = (500, 850)
DEMO_INITS = pd.date_range("2020-01-01", "2020-01-31T12", freq="12h")
DEMO_LEADS = pd.to_timedelta(np.arange(0, 241, 12), unit="h")
BASELINE = "hres_like"
MARKER = ".wxeval-demo-complete"


def write_demo_archive(folder: Path) -> dict[str, Path]:
    """Write (once) the synthetic archive; returns store paths by role/model name."""
    import numcodecs

    from wxeval import synthetic

    folder = Path(folder)
    names = ["truth", "climatology", *synthetic.DEMO_MODELS, *synthetic.DEMO_ENSEMBLES]
    files = {
        "truth": folder / "era5.zarr",
        "climatology": folder / "climatology.zarr",
        **{m: folder / f"{m}.zarr" for m in [*synthetic.DEMO_MODELS, *synthetic.DEMO_ENSEMBLES]},
    }
    if (folder / MARKER).exists() and all(files[n].exists() for n in names):
        return files
    layouts = {"graphcast_like": synthetic.GRAPHCAST_LAYOUT}
    # The truth starts 18 h before the first init: 24 h precipitation at the first valid times
    # sums the four 6 h windows ending there (persistence reads it at the inits).
    valid = np.unique((DEMO_INITS.values[:, None] + DEMO_LEADS.values[None, :]).ravel())
    truth_times = pd.date_range(valid[0] - np.timedelta64(18, "h"), valid[-1], freq="6h")
    paths = synthetic.write_archive(
        folder,
        grid=DEMO_GRID,
        init_times=DEMO_INITS,
        lead_times=DEMO_LEADS,
        variables=DEMO_VARIABLES,
        levels=DEMO_LEVELS,
        models=synthetic.DEMO_MODELS,
        seed=2020,
        climatology_days="needed",
        chunks={"prediction_timedelta": len(DEMO_LEADS)},  # one init × all leads per chunk
        layouts={k: v for k, v in layouts.items() if k in synthetic.DEMO_MODELS},
        truth_times=truth_times.values,
        ensembles=synthetic.DEMO_ENSEMBLES,
        # byte-shuffled Blosc (WB2's own stores' codec): the fields' noise compresses to 0.64
        # of its size where plain zstd manages 0.81 (~0.2 GB less on disk, same values)
        compressor=numcodecs.Blosc("lz4", 5, shuffle=numcodecs.Blosc.SHUFFLE),
    )
    add_precipitation({k: Path(v) for k, v in paths.items()})
    (folder / MARKER).write_text("complete\n")
    return {k: Path(v) for k, v in paths.items()}


def add_precipitation(paths: dict[str, Path]) -> None:
    """Precipitation (wxeval.synthetic_precip): ``total_precipitation_6hr`` in the truth, a
    cumulative ``total_precipitation`` in every model, per member for the ensemble
    (``graphcast_like`` also its 6 h amounts, as GraphCast stores them), the SEEPS fields in
    the climatology."""
    from wxeval import synthetic, synthetic_precip

    tp6 = synthetic_precip.add_truth(paths["truth"], grid=DEMO_GRID, seed=2020)
    for name, error in synthetic.DEMO_MODELS.items():
        synthetic_precip.add_forecast(paths[name], grid=DEMO_GRID, seed=2020, error=error,
                                      six_hour=name == "graphcast_like")
    for name, (error, members) in synthetic.DEMO_ENSEMBLES.items():
        synthetic_precip.add_forecast(paths[name], grid=DEMO_GRID, seed=2020, error=error,
                                      members=members)
    synthetic_precip.add_seeps_climatology(paths["climatology"], tp6)


def demo_config(paths: dict[str, Path]) -> dict:
    from wxeval import synthetic

    models = {name: {"path": str(Path(paths[name]).resolve())}
              for name in [*synthetic.DEMO_MODELS, *synthetic.DEMO_ENSEMBLES]}
    models["persistence"] = {"kind": "persistence", "label": "Persistence"}
    return {
        "truth": {"path": str(Path(paths["truth"]).resolve())},
        "climatology": {"path": str(Path(paths["climatology"]).resolve())},
        "models": models,
        "evaluation": {
            "init_times": {"start": "2020-01-01", "stop": "2020-01-31", "hours": [0, 12]},
            "lead_times": {"start": "0h", "stop": "240h", "step": "12h"},
            "regions": "all",
            # the stored variables, the derived ones (wind speed, 24 h precipitation) and the
            # default metrics plus SEEPS and the ensemble metrics (for deterministic models:
            # one-member ensembles, CRPS = MAE)
            "variables": [*DEMO_VARIABLES, *DEMO_DERIVED],
            "metrics": [*METRICS, "seeps", *ENSEMBLE_DEFAULTS],
            # where and when models differ (issue 15): error maps and zonal energy spectra
            "maps": True,
            "spectra": True,
        },
    }


def run_demo(output: Path, echo: Callable[[str], None] = print) -> dict:
    """Write the archive and config, score every model, write the scorecard report."""
    from wxeval.api import score

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    echo(f"writing the synthetic archive to {output / 'archive'} …")
    paths = write_demo_archive(output / "archive")
    cfg_path = output / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(demo_config(paths), sort_keys=False))
    from wxeval.config import load_config

    cfg = load_config(cfg_path)
    models = list(cfg.models)
    echo(f"scoring {', '.join(models)} …")
    # the scorecards read the statistics back from the store: none kept in memory meanwhile
    report = score(cfg, models, output / "results", keep_statistics=False)
    for name, files in report.outputs.items():
        echo(f"  {name}: {Path(files[0]).name}, {Path(files[1]).name}")
    # The scorecards read the results folder: drop the run's in-memory tables, maps and
    # spectra before them, keeping the one table the last line prints.
    z500 = report.tables[BASELINE]["geopotential"].sel(metric="rmse", region="global", level=500)
    del report
    summary = {"config": cfg_path, "results": output / "results", "report": None}
    try:
        from wxeval.scorecard import report as scorecard_report
    except ImportError:  # the scorecard arrives with its own module
        scorecard_report = None
    if scorecard_report is not None and hasattr(scorecard_report, "write_report"):
        html = output / "report.html"
        others = [m for m in models if m != BASELINE]
        scorecard_report.write_report(output / "results", others, BASELINE, html, config=cfg_path,
                                      by="init_hour")
        summary["report"] = html
        echo(f"scorecard: {html} (and one page per init hour: {html.stem}.0.html, …)")
        headline = output / "headline.html"
        scorecard_report.write_report(output / "results", others, BASELINE, headline,
                                      config=cfg_path, preset="headline")
        summary["headline"] = headline
        echo(f"headline scorecard (WeatherBench 2's headline scores): {headline}")
    t = z500
    echo(
        "z500 global RMSE of the baseline at day 1/3/5: "
        + ", ".join(f"{float(t.sel(lead_time=pd.Timedelta(days=d))):.0f}" for d in (1, 3, 5))
        + " m² s⁻²"
    )
    echo(f"done: results in {output / 'results'}")
    return summary
