"""Make ``tests/data/legacy_v1``: results and statistics written by wxeval before statistic
groups (main 5f4c383), to test that today's code reads that store and gets the same table.

Run with the *old* code on the path, e.g. from a checkout of 5f4c383::

    PYTHONPATH=/path/to/old python tests/data/make_legacy_fixture.py /tmp/legacy

then copy ``/tmp/legacy/results`` to ``tests/data/legacy_v1`` (the archive is not kept: the
tests regenerate it with :func:`legacy_archive`, deterministically).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

MODEL = "fixture_model"
VARIABLES = ("2m_temperature", "geopotential")
LEVELS = (500,)
INITS = pd.date_range("2020-01-01", periods=3, freq="12h")
LEADS = pd.to_timedelta([0, 24], unit="h")
REGIONS = ["global", "tropics", "europe", "global_land"]


def legacy_archive(folder: Path) -> dict[str, Path]:
    """The synthetic archive of the fixture (seed 7), written into ``folder``."""
    from wxeval import synthetic

    paths = synthetic.write_archive(
        folder, grid="64x32", init_times=INITS, lead_times=LEADS, variables=VARIABLES,
        levels=LEVELS, models={MODEL: synthetic.DEMO_MODELS["hres_like"]}, seed=7,
    )
    return {k: Path(v) for k, v in paths.items()}


def legacy_config(paths: dict[str, Path]) -> dict:
    return {
        "truth": {"path": str(paths["truth"])},
        "climatology": {"path": str(paths["climatology"])},
        "models": {MODEL: {"path": str(paths[MODEL])}},
        "evaluation": {
            "init_times": {"start": str(INITS[0]), "stop": str(INITS[-1]), "hours": [0, 12]},
            "lead_times": {"start": "0h", "stop": "24h", "step": "24h"},
            "regions": REGIONS,
            "variables": list(VARIABLES),
            "levels": list(LEVELS),
        },
    }


def main(out: Path) -> None:
    from wxeval.api import score
    from wxeval.config import Config

    paths = legacy_archive(out / "archive")
    cfg = Config.model_validate(legacy_config(paths))
    score(cfg, [MODEL], out / "results")
    print("wrote", out / "results", np.__version__)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
