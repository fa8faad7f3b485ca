"""Progress on a terminal: what is being opened, tasks done/total with a rate and an ETA, and
retries of an unreachable store as they happen.

Everything here is shown only when stderr is a terminal (:func:`active`): a cron log or a pipe
gets none of it. :func:`enable` forces the display on or off (``score(progress=…)`` of the
Python API forces the task bar only).
Lines go through ``tqdm.write`` while a bar is open, so the bar is redrawn below them instead of
being garbled; the CLI's log handler (:class:`LogHandler`, ``-v``) does the same.

Callers never pass credentials: store names are shown as :func:`wxeval.loaders.safe_url` and
scrubbed of storage-option secrets before they get here.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

_forced: dict[str, bool | None] = {"on": None}
_open_bars: list[Any] = []
_lock = threading.Lock()


def enable(flag: bool | None) -> None:
    """Force the display on (``True``) or off (``False``); ``None``: on when stderr is a tty."""
    _forced["on"] = flag


def active() -> bool:
    """True when progress is shown: forced by :func:`enable`, else when stderr is a terminal."""
    if _forced["on"] is not None:
        return bool(_forced["on"])
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def write(line: str) -> None:
    """Write ``line`` on stderr, above any open bar (which is redrawn below it)."""
    with _lock:
        bars = bool(_open_bars)
    if bars:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    else:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def note(line: str) -> None:
    """A line of progress (``opening gs://…``): shown on a terminal only."""
    if active():
        write(line)


def report(
    line: str, level: int = logging.INFO, logger: str = "wxeval", *, display: str | None = ""
) -> None:
    """An event that is also worth a log record (a retry): logged when the logger is enabled for
    ``level`` (``-v``), otherwise shown on a terminal as ``display`` (default: ``line``; None:
    not shown); never both, never in a quiet cron log."""
    log = logging.getLogger(logger)
    if log.isEnabledFor(level):
        log.log(level, line)
    elif display is not None:
        note(display or line)


def _terminal_size() -> tuple[int, int]:
    """(columns, lines) of the terminal on stderr; 80 × 24 where it reports none (a pty
    without a size reports 0 × 0, and tqdm then hides its bar)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
        columns, lines = size.columns, size.lines
    except (AttributeError, OSError, ValueError):
        columns, lines = 0, 0
    return (columns if columns > 0 else _env_int("COLUMNS", 80),
            lines if lines > 0 else _env_int("LINES", 24))


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def _tqdm(counts: Callable[[], str] | None = None, **kwargs):
    """A tqdm bar on stderr; ``counts()`` fills ``{tasks}`` in its ``bar_format``."""
    from tqdm import tqdm

    cls = tqdm
    if counts is not None:

        class _Counting(tqdm):
            @property
            def format_dict(self):
                return {**super().format_dict, "tasks": counts()}

        cls = _Counting
    columns, lines = _terminal_size()
    bar = cls(file=sys.stderr, ncols=columns, nrows=lines, mininterval=0.5, **kwargs)
    with _lock:
        _open_bars.append(bar)
    return bar


def _closed(bar) -> None:
    bar.close()
    with _lock:
        if bar in _open_bars:
            _open_bars.remove(bar)


def iterate(items: Iterable, desc: str, unit: str, *, enabled: bool | None = None) -> Iterator:
    """Yield ``items`` under a bar ``desc: 2/5 unit [elapsed<remaining, rate]`` when shown."""
    items = list(items)
    if not (active() if enabled is None else enabled) or not items:
        yield from items
        return
    bar = _tqdm(total=len(items), desc=desc, unit=f" {unit}")
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        _closed(bar)


class TaskBar:
    """Tasks done/total with their rate; the percentage and the ETA are weighted by each task's
    cost (tasks run longest first, so a count alone would promise far too late an end).

    ``scoring:  40%|████      | 7/40 tasks, 1.3 tasks/s [00:05<00:08]``
    """

    FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {tasks} [{elapsed}<{remaining}]"

    def __init__(self, costs: Sequence[float], desc: str = "scoring") -> None:
        self.total = len(costs)
        self.done = 0
        # Without a positive cost every task weighs one.
        self._uniform = not sum(max(float(c), 0.0) for c in costs) > 0
        weight = self.total if self._uniform else sum(max(float(c), 0.0) for c in costs)
        self._start = time.monotonic()
        self._bar = _tqdm(self._counts, total=float(weight), desc=desc, bar_format=self.FORMAT)

    def _counts(self) -> str:
        text = f"{self.done}/{self.total} tasks"
        elapsed = time.monotonic() - self._start
        if self.done and elapsed > 0:
            text += f", {self.done / elapsed:.3g} tasks/s"
        return text

    def update(self, cost: float) -> None:
        """One task of ``cost`` finished."""
        self.done += 1
        self._bar.update(1.0 if self._uniform else max(float(cost), 0.0))

    def close(self) -> None:
        _closed(self._bar)


class LogHandler(logging.Handler):
    """Log records on (the current) stderr, above an open progress bar rather than through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            write(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)
