"""The progress display (wxeval/progress.py): on a terminal, what is opened, tasks done/total with
a rate and an ETA, retries of an unreachable store as they happen; nothing of it when stderr is
not a terminal.

The CLI runs in a real process under a pseudo-terminal (``os.openpty``) *without* a window size,
as under many CI runners and ``script``: tqdm hides its bar there unless given a size.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from builders import FAST_GCS_RETRY, closed_port, make_case, write_all

from wxeval import progress

FAST = {"regions": ["global"], "metrics": ["rmse", "bias"]}


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("wxeval")
    return [str(script)] if script.exists() else [sys.executable, "-m", "wxeval.cli"]


def run_in_pty(args: list[str], env: dict | None = None, timeout: float = 120) -> tuple[int, str]:
    """Run ``args`` with stdin/stdout/stderr on a new pty; return (exit code, all output)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            env=env or dict(os.environ))
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the pty
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"{args} did not finish in {timeout} s")
    finally:
        os.close(master)
    return proc.wait(timeout=10), b"".join(chunks).decode("utf-8", "replace")


def run_piped(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120,
                          env=env or dict(os.environ))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A tiny archive (5 x 8 grid, 4 inits, 5 leads) and a config with two forecast models."""
    root = tmp_path_factory.mktemp("progress")
    case = make_case(nlat=5, nlon=8, n_inits=4, leads_h=(0, 6, 12, 24, 48))
    write_all(case, root)
    cfg = {
        "truth": {"path": case.paths["truth"]},
        "climatology": {"path": case.paths["climatology"]},
        "models": {"model": {"path": case.paths["forecast"]},
                   "twin": {"path": case.paths["forecast"]}},
        "evaluation": FAST,
    }
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return case, path


TASKS_DONE = re.compile(r"scoring: 100%\|.*\| (\d+)/\1 tasks, [\d.]+ tasks/s \[\d\d:\d\d<")


def test_score_on_a_terminal_shows_openings_and_tasks(small, tmp_path):
    case, cfg = small
    code, out = run_in_pty([*_cli(), "score", "-c", str(cfg), "-o", str(tmp_path / "o"),
                            "-m", "model,twin"])
    assert code == 0, out
    for role in ("truth", "climatology", "forecast"):
        assert f"opening {'model' if role == 'forecast' else role} ({case.paths[role]})" in out
    assert "scoring:   0%|" in out and " 0/" in out, out  # drawn before the first task ends
    done = TASKS_DONE.search(out)
    assert done, out
    # At least one task per variable (a task covers both models).
    assert int(done.group(1)) >= len(case.forecast), out
    assert "model: wrote" in out  # the results' lines follow the bar


def test_score_not_on_a_terminal_prints_no_progress(small, tmp_path):
    _, cfg = small
    proc = run_piped([*_cli(), "score", "-c", str(cfg), "-o", str(tmp_path / "o"),
                      "-m", "model,twin"])
    assert proc.returncode == 0, proc.stderr
    for text in ("opening", "scoring", "tasks", "%|", "\r", "\x1b["):
        assert text not in proc.stderr, (text, proc.stderr)
        assert text not in proc.stdout, (text, proc.stdout)
    assert "model: wrote" in proc.stdout


def test_verbose_logs_openings_and_plan_without_a_terminal(small, tmp_path):
    case, cfg = small
    proc = run_piped([*_cli(), "-v", "score", "-c", str(cfg), "-o", str(tmp_path / "o"),
                      "-m", "model"])
    assert proc.returncode == 0, proc.stderr
    assert f"INFO opening truth ({case.paths['truth']})" in proc.stderr, proc.stderr
    assert "INFO model: 4 init(s) from 2020-02-27T00:00 to 2020-02-28T12:00, 5 lead(s)" in \
        proc.stderr, proc.stderr
    assert re.search(r"INFO \d+ task\(s\) to compute; 0 field\(s\) reused", proc.stderr)
    assert "%|" not in proc.stderr and "\r" not in proc.stderr


def test_check_and_scorecard_on_a_terminal(small, tmp_path):
    _, cfg = small
    code, out = run_in_pty([*_cli(), "check", "-c", str(cfg), "--all"])
    assert code == 0, out
    assert re.search(r"checking: 100%\|.*\| 2/2 \[", out), out
    assert run_piped([*_cli(), "score", "-c", str(cfg), "-o", str(tmp_path / "r"),
                      "--all"]).returncode == 0
    code, out = run_in_pty([*_cli(), "scorecard", "-r", str(tmp_path / "r"), "-m", "twin",
                            "-b", "model", "-o", str(tmp_path / "card.html")])
    assert code == 0, out
    assert re.search(r"reading results: 100%\|.*\| 2/2 \[", out), out
    proc = run_piped([*_cli(), "check", "-c", str(cfg), "--all"])
    assert proc.returncode == 0 and "checking" not in proc.stderr + proc.stdout


# -- retries of an unreachable store, as they happen ------------------------------------------


def test_unreachable_bucket_shows_each_retry(small, tmp_path):
    pytest.importorskip("gcsfs")
    _, cfg_path = small
    cfg = yaml.safe_load(cfg_path.read_text())
    url = "gs://wxeval-test-bucket/truth.zarr"
    cfg["truth"]["path"] = url
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    launcher = tmp_path / "launch.py"
    launcher.write_text(FAST_GCS_RETRY)
    env = dict(os.environ, STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{closed_port()}",
               GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")
    args = [sys.executable, str(launcher), "score", "-c", str(path), "-o", str(tmp_path / "o"),
            "-m", "model"]
    code, out = run_in_pty(args, env=env)
    assert code == 4, out
    assert f"opening truth ({url})" in out, out
    lines = [ln.strip() for ln in out.splitlines() if "attempt" in ln]
    # zarr probes several metadata objects of the store at once: one line per attempt.
    expected = [f"{url}: attempt {n}/6 failed (connection refused), retrying in ~{2 ** (n - 1)} s"
                for n in range(1, 6)]
    expected.append(f"{url}: attempt 6/6 failed (connection refused), giving up")
    assert lines == expected, out
    assert out.strip().splitlines()[-1].startswith("wxeval: error: truth"), out
    # Not on a terminal, the same run prints the error line only: see
    # test_cli_errors.py::test_unreachable_gcs_store_real_process.


# -- the pieces ---------------------------------------------------------------------------------


@contextlib.contextmanager
def forced(flag: bool | None):
    progress.enable(flag)
    try:
        yield
    finally:
        progress.enable(None)


def test_task_bar_weights_the_eta_by_cost_and_counts_tasks():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), forced(True):
        bar = progress.TaskBar([6.0, 2.0, 2.0])
        first = str(bar._bar)
        bar.update(6.0)
        after_one = str(bar._bar)
        bar.update(2.0)
        bar.update(2.0)
        bar.close()
    assert "0/3 tasks" in first and "  0%|" in first
    # One task of three done, but 6/10 of the work: 60 %.
    assert " 60%|" in after_one and "1/3 tasks" in after_one, after_one
    assert "100%|" in err.getvalue() and "3/3 tasks" in err.getvalue()


def test_nothing_is_drawn_when_not_a_terminal():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # a StringIO is not a terminal
        assert not progress.active()
        assert list(progress.iterate([1, 2], "reading", "model")) == [1, 2]
        progress.note("opening x")
        progress.report("gs://b/x.zarr: attempt 1/6 failed")  # INFO, not enabled
    assert err.getvalue() == ""


def test_report_is_logged_when_verbose_and_never_twice(caplog):
    import logging

    err = io.StringIO()
    caplog.set_level(logging.INFO, logger="wxeval")
    with contextlib.redirect_stderr(err), forced(True):
        progress.report("gs://b/x.zarr/.zgroup: attempt 2/6 failed (DNS)", display="shown")
    assert [r.getMessage() for r in caplog.records] == [
        "gs://b/x.zarr/.zgroup: attempt 2/6 failed (DNS)"
    ]
    assert "shown" not in err.getvalue()


def test_request_urls_become_store_names_without_queries():
    from wxeval.loaders import object_url, store_of

    api = "https://storage.googleapis.com/storage/v1/b/wb2/o/era5%2F1440x721.zarr%2F.zmetadata"
    assert object_url(api + "?alt=media&userProject=p") == "gs://wb2/era5/1440x721.zarr/.zmetadata"
    assert store_of(object_url(api)) == "gs://wb2/era5/1440x721.zarr"
    listing = "http://127.0.0.1:9/storage/v1/b/wb2/o?prefix=era5%2Fx.zarr%2F&key=SECRET"
    assert object_url(listing) == "gs://wb2/era5/x.zarr/"
    assert "SECRET" not in object_url("https://u:SECRET@host/path/y.zarr/.zattrs?sig=SECRET")


def test_opening_line_shows_no_credentials(tmp_path):
    from wxeval.loaders import LoadError, open_raw

    url = f"http://user:pa55w0rd-secret@127.0.0.1:{closed_port()}/x.zarr"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), forced(True), pytest.raises(LoadError):
        open_raw(url, name=f"truth ({url})")
    shown = err.getvalue()
    assert "opening truth (http://127.0.0.1:" in shown, shown
    assert "pa55w0rd" not in shown and "user:" not in shown, shown
