"""Coverage of the selection: truth valid times per lead, and init times common to the models."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wxeval import align
from wxeval.check.stores import _Store
from wxeval.schema import VALID_TIME


class _CoverageChecks:
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
