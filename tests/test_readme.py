"""The README's first lines are the set-up commands CI runs: keep them and .ci/run in step."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)\n```", text, re.S)
    assert block is not None and text.index(block.group(0)) < 40, "set-up block must open README"
    return block.group(1).splitlines()


def test_readme_opens_with_install_demo_and_test_commands():
    lines = _setup_lines()
    assert len(lines) == 2
    assert lines[0].startswith("pip install") and "wxeval demo" in lines[0]
    assert lines[1].startswith("pip install") and "pytest" in lines[1]


def test_ci_runs_the_readme_commands():
    """.ci/run runs exactly the README's two set-up lines, in order, as commands."""
    script = (ROOT / ".ci" / "run").read_text()
    commands = [ln.strip() for ln in script.splitlines() if ln.strip().startswith("pip install")]
    assert commands == _setup_lines()


def test_environment_yml_lists_every_runtime_dependency():
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"dependencies = \[(.*?)\]", pyproject, re.S).group(1)
    names = re.findall(r'"([A-Za-z0-9_.-]+)', deps)
    env = (ROOT / "environment.yml").read_text().lower()
    missing = [n for n in names if n.lower() not in env]
    assert not missing, f"environment.yml lacks {missing}"


def test_shipped_wb2_config_is_valid_and_complete():
    from wxeval.config import load_config

    cfg = load_config(ROOT / "configs" / "wb2-240x121.yaml")
    expected = {"hres", "ens_mean", "era5_forecasts", "graphcast", "graphcast_hres_init", "pangu",
                "pangu_hres_init", "fuxi", "neuralgcm", "keisler", "persistence", "climatology"}
    assert expected <= set(cfg.models)
    for name, model in cfg.models.items():
        if model.kind == "zarr":
            assert model.path.startswith("gs://weatherbench2/datasets/"), name
            assert "240x121" in model.path, name
    assert cfg.models["hres"].truth.path.split("/")[-2] == "hres_t0"
    assert cfg.evaluation.init_times.hours == [0, 12]
