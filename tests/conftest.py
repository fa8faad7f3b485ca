"""Shared fixtures: a local Google Cloud Storage emulator for ``gs://`` tests (README §7).

Three environment variables are set when this file is imported, i.e. before any test module (and
so before gcsfs, which fsspec imports lazily) is loaded:

* ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` — gcsfs reads it once, at import; otherwise it asks
  a gRPC API for each bucket's type, which against the emulator fails only after ~60 s.
* ``STORAGE_EMULATOR_HOST=http://127.0.0.1:<port>`` — gcsfs and google-cloud-storage send every
  ``gs://`` request there instead of to Google, so no test can reach the internet through
  ``gs://``. The port is reserved now; the emulator itself starts only when a test asks for
  ``gcs_emulator`` (most tests never do).
* ``NO_GCE_CHECK=true`` — google-auth reads it once, at import; without it a ``gs://`` access
  without ``token`` (gcsfs then tries the default credentials) would probe the GCE metadata
  server over the network.

Fixtures are written to the emulator with google-cloud-storage, never through gcsfs: gcsfs's
small-object upload can lose the last byte of an object that ends in ``\\r`` (README §7).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


for _early in ("gcsfs", "google.auth.compute_engine._metadata"):
    if _early in sys.modules:  # pragma: no cover - the settings below would come too late
        warnings.warn(
            f"{_early} was imported before tests/conftest.py set its environment", stacklevel=1
        )
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
os.environ["NO_GCE_CHECK"] = "true"
_PORT = _free_port()
os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{_PORT}"


def _emulator_command(port: int) -> list[str]:
    args = ["start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "--quiet"]
    script = Path(sys.executable).with_name("gcp-storage-emulator")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "gcp_storage_emulator", *args]


def _wait_until_up(proc: subprocess.Popen, url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gcp-storage-emulator exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/storage/v1/b?project=test", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gcp-storage-emulator did not answer at {url} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def clear_gcs_caches() -> None:
    """Forget cached gcsfs instances (and their listings) and stores opened by wxeval."""
    gcsfs = sys.modules.get("gcsfs")
    if gcsfs is not None:
        gcsfs.GCSFileSystem.clear_instance_cache()
    loaders = sys.modules.get("wxeval.loaders")
    if loaders is not None:
        loaders.clear_cache()


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """A running in-memory GCS emulator; yields its URL (also in ``STORAGE_EMULATOR_HOST``)."""
    if os.environ.get("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT") != "false":
        pytest.fail("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT was changed after conftest set it")
    port = _PORT
    log = tempfile.TemporaryFile()
    proc = None
    for attempt in range(3):
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            _emulator_command(port), stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        try:
            _wait_until_up(proc, url)
            break
        except RuntimeError as err:
            _stop(proc)
            if attempt == 2:
                log.seek(0)
                tail = log.read()[-2000:].decode(errors="replace")
                log.close()
                raise RuntimeError(f"{err}\n{tail}") from None
            port = _free_port()  # the reserved port was taken meanwhile: try another
    os.environ["STORAGE_EMULATOR_HOST"] = url
    clear_gcs_caches()
    try:
        yield url
    finally:
        _stop(proc)
        log.close()
        clear_gcs_caches()


@pytest.fixture
def gcs(gcs_emulator: str) -> Iterator[str]:
    """The emulator, with gcsfs/wxeval caches cleared before and after the test."""
    clear_gcs_caches()
    yield gcs_emulator
    clear_gcs_caches()


def upload_dir(local_dir: str | os.PathLike, bucket: str, prefix: str) -> str:
    """Upload a local folder (e.g. a Zarr store) file by file to ``gs://bucket/prefix``.

    Uses google-cloud-storage (which honours ``STORAGE_EMULATOR_HOST``), not gcsfs; creates the
    bucket if needed. Returns the ``gs://`` URL of the uploaded folder.
    """
    from google.api_core.exceptions import Conflict
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    if not os.environ.get("STORAGE_EMULATOR_HOST"):
        raise RuntimeError("refusing to upload: STORAGE_EMULATOR_HOST is not set")
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    bkt = client.bucket(bucket)
    if not bkt.exists():
        try:
            bkt = client.create_bucket(bucket)
        except Conflict:  # created concurrently
            bkt = client.bucket(bucket)
    root = Path(local_dir)
    prefix = prefix.strip("/")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"nothing to upload in {root}")
    for path in files:
        name = "/".join(filter(None, [prefix, path.relative_to(root).as_posix()]))
        bkt.blob(name).upload_from_filename(str(path))
    return f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"


@pytest.fixture(name="upload_dir", scope="session")
def upload_dir_fixture(gcs_emulator: str) -> Callable[[str | os.PathLike, str, str], str]:
    """``upload_dir(local_dir, bucket, prefix) -> "gs://bucket/prefix"`` (emulator running)."""
    return upload_dir
