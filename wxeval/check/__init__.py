"""``wxeval check``: a pre-flight report of everything that would make scores wrong, NaN or fail.

:func:`run_checks` reads only metadata (coordinates, attributes, chunk listings of local stores)
and, unless ``sample=False``, a small sample: per model the first and last selected init at the
shortest and longest selected lead, the truth at those valid times and the climatology at their
(dayofyear, hour). It never raises on a data problem: every problem becomes a :class:`Finding`.

Severity:

* ``error`` — the scores would be wrong or NaN, or ``wxeval score`` would fail (exit 3);
* ``warning`` — worth a look, scores are computed as documented (e.g. models with different inits:
  each is scored on its own inits, a scorecard pairs only the common ones);
* ``info`` — context (e.g. the climatology period cannot be determined).

Finding codes: ``config``, ``open``, ``schema``, ``duplicate-inits``, ``unsorted-inits``,
``lead-units``, ``init-vs-valid``, ``grid``, ``latitude-order``, ``latitude-flipped``,
``truth-coverage``, ``common-inits``, ``units``, ``units-attr``, ``range``, ``nan``, ``inf``,
``missing-chunks``, ``missing-metadata``, ``read``, ``clim-coverage``, ``clim-overlap``,
``clim-period``, ``plan``; and, added by ``wxeval score`` from the fields it scored,
``nan-fields`` (the inits, variables and leads whose fields held NaN inside a region).

:func:`preflight` is the cheap part (metadata only) that ``wxeval score`` runs first: it raises
the first error with the exception types of :mod:`wxeval.plan` and logs warnings (logger
``wxeval``). :func:`run_check_command` prints one line per finding and a summary, optionally
writes ``check.json``, and returns the exit code (3 when any error, else 0).
"""

from wxeval.check.climatology import climatology_period
from wxeval.check.findings import SEVERITIES, CheckReport, Finding, write_report
from wxeval.check.local_files import CHUNK_LISTING_LIMIT
from wxeval.check.ranges import G0, plausibility
from wxeval.check.run import log, preflight, run_check_command, run_checks
from wxeval.check.units import units_verdict
from wxeval.check.values import NAN_WARN_FRACTION

__all__ = [
    "CHUNK_LISTING_LIMIT",
    "G0",
    "NAN_WARN_FRACTION",
    "SEVERITIES",
    "CheckReport",
    "Finding",
    "climatology_period",
    "log",
    "plausibility",
    "preflight",
    "run_check_command",
    "run_checks",
    "units_verdict",
    "write_report",
]
