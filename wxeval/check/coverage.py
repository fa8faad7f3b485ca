"""Coverage of the selection: truth valid times per lead, and init times common to the models."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wxeval import align
from wxeval.check.stores import _Store
from wxeval.schema import VALID_TIME


class _CoverageChecks:
    def check_truth_coverage(self, name, inits, leads, truth: _Store, source) -> None:
        """Valid times the truth lacks, per lead; error or warning as ``missing_truth`` makes
        the plan decide (the same :func:`wxeval.align.truth_gaps`). ``source``: the model's
        :class:`~wxeval.plan.ForecastSource` (persistence reads the truth at lead 0 too)."""
        have = truth.ds[VALID_TIME].values
        if source.reads_truth_at_init:
            leads = np.union1d(leads, np.array([0], "timedelta64[ns]"))
        parts = []
        for lead in leads:
            valid = inits + lead
            missing = valid[~np.isin(valid, have)]
            if missing.size:
                parts.append(
                    f"lead {align.format_hours(lead)}: {missing.size} of {valid.size} "
                    f"({align.describe_times(missing, limit=3)})"
                )
        if not parts:
            return
        shown = "; ".join(parts[:4]) + (f"; … ({len(parts)} leads)" if len(parts) > 4 else "")
        mode = self.config.evaluation.missing_truth
        try:
            gaps = align.truth_gaps(inits, leads, have, mode, truth.name, name)
        except align.AlignmentError as err:
            self.add("error", "truth-coverage", truth.name, "", f"{err} (per lead: {shown})")
            return
        message = f"{truth.name}: truth lacks valid times needed by {name!r}: {shown}"
        if gaps.pending.size:
            message += (
                f"; {gaps.pending.size} init(s) stay pending (truth after its last time "
                "not there yet)"
            )
        if gaps.skipped.size:
            message += (
                f"; {gaps.skipped.size} init(s) skipped (missing_truth: skip), needing "
                f"{align.describe_times(gaps.holes, limit=3)} inside the truth: "
                f"{align.describe_times(gaps.skipped, limit=3)}"
            )
        if gaps.kept.size == 0:
            self.add("error", "truth-coverage", truth.name, "",
                     message + f"; no init of {name!r} has its truth yet")
            return
        self.add("warning", "truth-coverage", truth.name, "", message)

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
