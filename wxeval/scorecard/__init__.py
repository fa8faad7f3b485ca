"""Scorecards: models against a baseline, with significance, as a table or an HTML report."""

from wxeval.scorecard.compare import compare, to_dataframe
from wxeval.scorecard.report import write_report

__all__ = ["compare", "to_dataframe", "write_report"]
