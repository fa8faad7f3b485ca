"""Findings of ``wxeval check``: :class:`Finding`, :class:`CheckReport` and ``check.json``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

SEVERITIES = ("error", "warning", "info")


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


def write_report(report: CheckReport, output: str | Path) -> Path:
    """Write ``check.json`` (a list of finding dicts) atomically into folder ``output``
    (or to ``output`` itself when it ends in ``.json``); returns the path."""
    from wxeval.results import write_json

    output = Path(output)
    path = output if output.suffix == ".json" else output / "check.json"
    write_json(report.to_json(), path)
    return path



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
