"""Scorecards: models against a baseline, with significance, as a table or an HTML report."""

from wxeval.scorecard.compare import compare, to_dataframe
from wxeval.scorecard.report import write_report
from wxeval.scorecard.significance import paired_test_array

__all__ = ["compare", "paired_test_array", "to_dataframe", "write_report"]
