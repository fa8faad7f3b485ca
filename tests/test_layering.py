"""The package's import direction (README, Development): data flows config → plan → evaluate →
store/results → api, and the scorecard reads store/results only.

Imports are read from the source with ``ast`` (module-level and function-level alike), so a
late ``from wxeval.api import ...`` inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import wxeval

PACKAGE = Path(wxeval.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every ``wxeval`` module ``path`` imports, anywhere in the file."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("wxeval")}


def test_imported_modules_sees_late_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from wxeval.api import load_statistics\n")
    assert "wxeval.api" in imported_modules(src)


def test_scorecard_does_not_import_api():
    files = sorted((PACKAGE / "scorecard").glob("*.py"))
    assert files
    for f in files:
        bad = {m for m in imported_modules(f) if m == "wxeval.api" or m.startswith("wxeval.api.")}
        assert not bad, f"{f.name} imports {bad}"


def test_plan_does_not_import_evaluate():
    # The plan's output types (Plan, ModelPlan, ForecastSource) live in plan; evaluate reads them.
    assert not {m for m in imported_modules(PACKAGE / "plan.py") if m.startswith("wxeval.evaluate")}
    assert "wxeval.plan" in imported_modules(PACKAGE / "evaluate.py")


def test_load_statistics_still_importable_from_api():
    # README documents ``from wxeval.api import load_statistics``.
    from wxeval.api import load_statistics
    from wxeval.store import load_statistics as from_store

    assert load_statistics is from_store
