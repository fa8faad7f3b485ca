"""The scorecard report in a real headless Chromium (Debian's ``chromium``).

Driven with the ``playwright`` Python package against the system browser
(``executable_path=/usr/bin/chromium``; no browser is downloaded). Checks: the page loads
without console errors, makes no request but the file itself, draws the expected number of
grid cells, renders a non-blank screenshot, and shows hostile names as text (no dialog, no
injected element). One test saves a screenshot of a demo report under its tmp_path and prints
the path.

Without chromium or playwright the tests fail on CI (``CI`` set) and are skipped locally.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from builders import case_subset, make_case, write_climatology, write_forecast, write_truth

from wxeval.api import score
from wxeval.scorecard.report import write_report

CHROMIUM = os.environ.get("WXEVAL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    # any DNS lookup fails at once: a stray request could never reach the network
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
EVIL_LABEL = "<script>alert(1)</script>"
EVIL_REGION = "<img src=x onerror=alert(2)>"
EVIL_FINDING = "<iframe src=https://example.com></iframe> lead 0 missing"
LEADS_H = (0, 24, 48, 72)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required on CI)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A persistent headless Chromium context (fresh profile), shared by the module."""
    if not Path(CHROMIUM).exists():
        _unavailable(f"chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1500, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


class Visit:
    """A page with everything it said and asked for recorded."""

    def __init__(self, context, path: Path):
        self.page = context.new_page()
        self.console: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

        def on_dialog(d):
            self.dialogs.append(d.message)
            d.dismiss()

        self.page.on("dialog", on_dialog)
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-ready='1']", timeout=30_000)

    def check_clean(self):
        problems = [c for c in self.console if c[0] in ("error", "warning")]
        assert not problems, problems
        assert not self.errors, self.errors
        assert not self.dialogs, self.dialogs
        assert self.requests == [self.url], self.requests

    def count(self, selector: str) -> int:
        return self.page.evaluate("s => document.querySelectorAll(s).length", selector)


def distinct_colours(png: bytes) -> int:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3)
    return len(np.unique(rgb[::7], axis=0))


# ---------------------------------------------------------------------------------------------
# A small results folder: baseline + two models, a hostile label, region and finding
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-results")
    case = make_case(n_inits=10, leads_h=LEADS_H, seed=8, dtype=np.float64)
    write_truth(case, root / "truth.zarr")
    write_climatology(case, root / "clim.zarr")
    rng = np.random.default_rng(1)
    models = {}
    for name, scale, drop in (("base", 1.0, []), ("model_a", 0.8, []), ("model_b", 1.1, [0])):
        fc = {}
        for var, f in case.forecast.items():
            o = np.stack([np.stack([case.truth_at(var, t + lead) for lead in case.lead_times])
                          for t in case.init_times])
            noise = 0.02 * np.std(f - o) * rng.normal(size=f.shape)
            fc[var] = o + scale * (f - o) + noise
        c = dataclasses.replace(case, forecast=fc, paths={})
        c = case_subset(c, [i for i in range(len(case.init_times)) if i not in drop])
        models[name] = {"path": write_forecast(c, root / f"{name}.zarr")}
    models["model_a"]["label"] = EVIL_LABEL
    cfg = {
        "truth": {"path": case.paths["truth"]},
        "climatology": {"path": case.paths["climatology"]},
        "models": models,
        "evaluation": {
            "regions": ["global", "tropics", EVIL_REGION],
            "custom_regions": {EVIL_REGION: {"lat": [-60.0, 60.0], "lon": [0.0, 180.0]}},
        },
    }
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    score(root / "config.yaml", list(models), root / "results")
    (root / "results" / "check.json").write_text(
        json.dumps([{"severity": "warning", "message": EVIL_FINDING}])
    )
    return {"root": root, "results": root / "results", "config": root / "config.yaml",
            "case": case}


def test_report_in_chromium(browser, results, tmp_path):
    html = write_report(results["results"], ["model_a", "model_b"], "base",
                        tmp_path / "report.html", config=results["config"])
    v = Visit(browser, html)
    v.check_clean()
    case = results["case"]
    # rows: each upper-air variable × level, each surface variable, the 10 m wind vector (rmse)
    upper = [k for k, a in case.forecast.items() if a.ndim == 5]
    surface = [k for k, a in case.forecast.items() if a.ndim == 4]
    rmse_rows = len(upper) * len(case.levels) + len(surface) + 1
    acc_rows = rmse_rows - 1
    assert v.count(".card") == 2 * 4
    assert v.count('[data-card="0-rmse"] td.cell') == rmse_rows * len(LEADS_H)
    assert v.count('[data-card="1-acc"] td.cell') == acc_rows * len(LEADS_H)
    assert v.count('[data-card="0-rmse"] th.row') == rmse_rows
    assert v.count("svg.plot") > 0 and v.count("svg.plot polyline") > 0
    # the hostile label: text, visible, never markup
    assert v.page.evaluate("document.scripts.length") == 2
    assert v.count("img, iframe") == 0
    body = v.page.evaluate("document.body.innerText")
    assert EVIL_LABEL in body and EVIL_FINDING in body
    assert v.page.get_by_text(EVIL_LABEL, exact=True).first.is_visible()
    # hover numbers
    title = v.page.evaluate(
        "document.querySelector('[data-card=\"0-rmse\"] tbody tr td:nth-child(3)').title"
    )
    assert "baseline" in title and "p = " in title and "n = " in title
    # switch to the hostile region: re-rendered, still text, still no dialog or request
    v.page.select_option("#region", EVIL_REGION)
    assert v.page.evaluate("document.body.dataset.region") == EVIL_REGION
    assert v.page.evaluate("document.querySelector('.region-name').textContent") == EVIL_REGION
    assert v.count('[data-card="0-rmse"] td.cell') == rmse_rows * len(LEADS_H)
    assert v.count("img, iframe") == 0
    v.check_clean()
    png = v.page.screenshot(full_page=True)
    (tmp_path / "report.png").write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert distinct_colours(png) > 30
    v.page.close()


def test_region_selector_default_and_legend(browser, results, tmp_path):
    html = write_report(results["results"], ["model_b"], "base", tmp_path / "one.html",
                        metrics=["rmse", "acc"], method="naive")
    v = Visit(browser, html)
    v.check_clean()
    assert v.page.eval_on_selector("#region", "e => e.value") == "global"
    assert v.count("#region option") == 3
    assert v.count("#scale .swatch") == 13  # 6 worse bins, neutral, 6 better bins
    assert v.count(".card") == 2
    assert v.count(".finding") == 1
    assert "lacks 1 init of the baseline" in v.page.evaluate("document.body.innerText")
    v.page.close()


@pytest.mark.slow
def test_demo_report_screenshot(browser, tmp_path):
    """The report that `wxeval demo` writes, screenshot saved under this test's folder."""
    from wxeval import demo

    summary = demo.run_demo(tmp_path / "demo", echo=lambda _: None)
    html = summary["report"]
    others = ["graphcast_like", "pangu_like", "persistence"]
    v = Visit(browser, html)
    v.check_clean()
    rows = 5 * 2 + 5  # z, t, wind vector, u, v at 500 and 850; msl, t2m, wv10, u10, v10
    assert v.count('[data-card="0-rmse"] td.cell') == rows * len(demo.DEMO_LEADS)
    assert v.count(".card") == len(others) * 4
    shot = tmp_path / "demo-report.png"
    v.page.screenshot(path=str(shot), full_page=True)
    v.page.close()
    assert distinct_colours(shot.read_bytes()) > 30
    print(f"demo report screenshot: {shot}")
