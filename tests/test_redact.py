"""The one redaction rule (``wxeval.redact``) and every caller going through it.

The rule is checked on hand-written mappings. That each caller (store options and open errors in
``loaders``, result provenance in ``results``, ``check`` findings, the scorecard's configuration
panel) uses it is shown by behaviour: a word added to ``redact.SECRET_WORDS`` for one test
(``"pin"``, in no built-in word) makes every caller redact a value under a ``pin`` key, which a
private copy of the rule would not do.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from builders import make_case, write_all, write_config

from wxeval import redact
from wxeval.config import load_config

PIN = "PIN-8421-do-not-show"


def test_redact_replaces_values_under_secret_keys_at_any_depth():
    options = {
        "token": "abcd1234",
        "Client_Secret": "s3cr3t-value",
        "project": "wb2",
        "client_kwargs": {"headers": {"Authorization": "Bearer zzz-123"}, "timeout": 5},
        "list": [{"api_key": "k-1234"}, "plain"],
    }
    assert redact.redact(options) == {
        "token": "<redacted>",
        "Client_Secret": "<redacted>",
        "project": "wb2",
        "client_kwargs": {"headers": {"Authorization": "<redacted>"}, "timeout": 5},
        "list": [{"api_key": "<redacted>"}, "plain"],
    }
    assert options["token"] == "abcd1234"  # a copy: the input is left alone


def test_secret_values_and_scrub():
    options = {"token": "anon", "password": "abc", "nested": {"auth": {"user": "alice-1",
                                                                      "pw": "alice-1-pw"}},
               "path": "gs://bucket/x.zarr"}
    # "anon" (gcsfs' anonymous token) and values under 4 characters are not credentials;
    # everything under a secret key is, longest first.
    assert redact.secret_values(options) == ["alice-1-pw", "alice-1"]
    text = "cannot open gs://alice-1-pw@bucket/x.zarr as alice-1 (anon, abc)"
    assert redact.scrub(text, options) == (
        "cannot open gs://<redacted>@bucket/x.zarr as <redacted> (anon, abc)")
    assert redact.scrub("no options", None) == "no options"


@pytest.fixture
def pin_is_secret(monkeypatch):
    """``pin`` becomes a secret word for one test: only ``wxeval.redact`` knows it."""
    monkeypatch.setattr(redact, "SECRET_WORDS", (*redact.SECRET_WORDS, "pin"))
    assert not any(w in "pin" for w in ("token", "secret", "key", "password", "credential",
                                        "auth"))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("redact")
    case = make_case(nlat=5, nlon=8, n_inits=2, leads_h=(0, 6), variables=("2m_temperature",),
                     levels=())
    write_all(case, root)
    return root, case


def _config(root: Path, case, tmp_path: Path, model_path: str | None = None):
    models = {"model": {"path": model_path or case.paths["forecast"],
                        "storage_options": {"pin": PIN}}}
    return load_config(write_config(tmp_path / "cfg.yaml", case, models=models))


def test_loaders_go_through_redact(pin_is_secret, tmp_path):
    from wxeval.loaders import LoadError, StoreSpec, open_raw

    spec = StoreSpec.make("gs://b/x.zarr", "forecast", "model", storage_options={"pin": PIN})
    assert spec.redacted_options() == {"pin": "<redacted>"}
    missing = str(tmp_path / f"missing-{PIN}.zarr")
    with pytest.raises(LoadError) as info:
        open_raw(missing, storage_options={"pin": PIN}, name=f"model ({missing})")
    assert PIN not in str(info.value) and "missing-<redacted>.zarr" in str(info.value)


def test_result_provenance_goes_through_redact(pin_is_secret, small, tmp_path):
    from wxeval.plan import make_plan
    from wxeval.results import provenance

    root, case = small
    cfg = _config(root, case, tmp_path)
    plan = make_plan(cfg, ["model"])
    prov = provenance(plan.models[0], plan, cfg)
    text = json.dumps(prov, default=str)
    assert PIN not in text
    assert prov["inputs"]["forecast"]["storage_options"] == {"pin": "<redacted>"}
    assert prov["config"]["models"]["model"]["storage_options"] == {"pin": "<redacted>"}


def test_check_findings_go_through_redact(pin_is_secret, small, tmp_path):
    from wxeval.check import run_checks

    root, case = small
    cfg = _config(root, case, tmp_path, model_path=str(tmp_path / f"nope-{PIN}.zarr"))
    report = run_checks(cfg, ["model"], sample=False)
    text = json.dumps([f.to_dict() for f in report.findings])
    assert report.findings and PIN not in text
    assert "nope-<redacted>.zarr" in text


def test_scorecard_config_panel_goes_through_redact(pin_is_secret, small, tmp_path):
    from wxeval.scorecard.report import _provenance

    root, case = small
    cfg = _config(root, case, tmp_path)
    inputs = SimpleNamespace(baseline="model", models=[], results_dir=tmp_path,
                             manifests={"model": {}})
    attrs = {"test_description": "", "multiple_testing_description": "", "alpha": 0.05,
             "tested_scores": "", "value_definition": ""}
    ds = SimpleNamespace(attrs=attrs)
    cv = SimpleNamespace(attrs={"band": "", "n_inits": 0, "init_first": "", "init_last": ""})
    prov = _provenance(inputs, ds, cv, cfg, None, {"model": "model"}, "now")
    assert PIN not in prov["config_text"]
    config = json.loads(prov["config_text"])
    assert config["models"]["model"]["storage_options"] == {"pin": "<redacted>"}
