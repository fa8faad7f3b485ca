"""Map sums added in place into one array per layout by tasks on several threads
(:class:`wxeval.maps.Accumulators`), against NumPy time sums."""

from __future__ import annotations

import threading

import numpy as np

from wxeval.maps import Accumulators


def _numpy_sums(f: np.ndarray, o: np.ndarray) -> np.ndarray:
    """(lead, 4, …) sums over inits (axis 0 of f, o: (init, lead, …)), NumPy only."""
    d = f.astype(np.float64) - o.astype(np.float64)
    n = np.isfinite(d).sum(axis=0)
    d0 = np.where(np.isnan(d), 0.0, d)
    return np.stack([n, d0.sum(axis=0), (d0 * d0).sum(axis=0), np.abs(d0).sum(axis=0)], axis=1)


def test_two_threads_add_one_layout_in_place():
    rng = np.random.default_rng(3)
    ninit, nlead, shape = 23, 5, (2, 7, 9)
    f = rng.standard_normal((ninit, nlead, *shape)).astype(np.float32)
    o = rng.standard_normal((ninit, nlead, *shape)).astype(np.float32)
    f[4, 2, 1, 3, 3] = np.nan
    key = ("maps", "m", "v", (0, 1), (500, 850))
    accs = Accumulators()
    blocks = [np.arange(0, 9), np.arange(9, 14), np.arange(14, 23)]
    start = threading.Barrier(len(blocks))

    def task(rows: np.ndarray, order) -> None:
        acc = accs.open(key, (nlead, 4, *shape))
        start.wait()
        for li in order:
            acc.add(li, f[rows, li], o[rows, li], True)
        accs.close(acc, rows)

    threads = [threading.Thread(target=task, args=(rows, order)) for rows, order in
               zip(blocks, [range(nlead), reversed(range(nlead)), range(nlead)], strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sums, inits = accs.take(key)
    assert sorted(inits.tolist()) == list(range(ninit))
    np.testing.assert_allclose(sums, _numpy_sums(f, o), rtol=1e-12, atol=1e-12)
    assert accs.take(key) is None  # taken: the next task of the layout starts new sums


def test_sums_are_not_taken_while_a_task_adds_and_never_after_it_failed():
    rng = np.random.default_rng(4)
    f = rng.standard_normal((6, 3, 4, 5)).astype(np.float32)
    o = rng.standard_normal((6, 3, 4, 5)).astype(np.float32)
    key = ("maps", "m", "v", (0, 1, 2), None)
    accs = Accumulators()
    done = accs.open(key, (3, 4, 4, 5))
    for li in range(3):
        done.add(li, f[:3, li], o[:3, li], False)
    accs.close(done, np.arange(3))
    running = accs.open(key, (3, 4, 4, 5))  # a task still adding (or one that failed)
    running.add(0, f[3:, 0], o[3:, 0], False)
    assert accs.take(key) is None  # a checkpoint now would store half a task: nothing taken
    # the task finishes: every init's sums, counted once
    for li in (1, 2):
        running.add(li, f[3:, li], o[3:, li], False)
    accs.close(running, np.arange(3, 6))
    sums, inits = accs.take(key)
    assert sorted(inits.tolist()) == list(range(6))
    np.testing.assert_allclose(sums, _numpy_sums(f, o), rtol=1e-12)
    # a task that fails part way never closes: its layout's sums are never taken
    broken = accs.open(key, (3, 4, 4, 5))
    broken.add(0, f[:2, 0], o[:2, 0], False)
    assert accs.take(key) is None
    assert accs.take(key) is None


def test_kernel_reads_the_truth_window_in_place_by_row():
    from wxeval.maps import accumulate

    rng = np.random.default_rng(5)
    window = rng.standard_normal((8, 2, 5, 6)).astype(np.float32)  # (valid, level, lat, lon)
    window[3, 1, 2, 2] = np.nan
    f = rng.standard_normal((9, 3, 2, 5, 6)).astype(np.float32)[:, 1]  # a lead: gaps
    rows = np.array([0, 3, 3, 7, 1, 2, 5, 6, 4])  # valid slot of each init (repeats too)
    for skipna in (False, True):
        got = accumulate(f, window, skipna=skipna, o_rows=rows)
        d = f.astype(np.float64) - window[rows].astype(np.float64)
        if skipna:
            n = np.isfinite(d).sum(axis=0)
            d = np.where(np.isnan(d), 0.0, d)
        else:
            n = np.full(d.shape[1:], d.shape[0])
        want = np.stack([n, d.sum(axis=0), (d * d).sum(axis=0), np.abs(d).sum(axis=0)])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)
        assert not skipna or np.isfinite(got).all()


def test_writer_stores_shared_sums_once_even_after_an_early_checkpoint(tmp_path):
    """Results whose map sums are in the shared accumulators (None): a checkpoint while a
    task of the layout still adds writes nothing; the layout's part then holds every init
    once, and equals NumPy's sums."""
    from types import SimpleNamespace

    from wxeval import sum_parts
    from wxeval.store import StatisticsStore

    rng = np.random.default_rng(6)
    leads = np.array([0, 12], "timedelta64[h]").astype("timedelta64[ns]")
    inits = np.datetime64("2020-01-01T00", "ns") + np.arange(6) * np.timedelta64(12, "h")
    f = rng.standard_normal((6, 2, 1, 3, 4)).astype(np.float32)
    o = rng.standard_normal((6, 2, 1, 3, 4)).astype(np.float32)
    accs = Accumulators()
    store = StatisticsStore(str(tmp_path / "stats"))
    writer = sum_parts.Writer(store, {("m", "v"): "k"}, {}, None, accs)
    key = writer._key(("maps", "m", "v"), leads, None)
    grid = (("latitude", "longitude"), {"latitude": np.arange(3.0), "longitude": np.arange(4.0)})

    def run(rows):
        acc = accs.open(key, (2, 4, 1, 3, 4))
        for li in range(2):
            acc.add(li, f[rows, li], o[rows, li], False)
        return acc

    def result(rows, block):
        return SimpleNamespace(variable="v", block=block, map_grid=grid, spectra={},
                               maps={"m": (leads, None, None, inits[rows])})

    first, second = np.arange(3), np.arange(3, 6)
    accs.close(run(first), inits[first])
    running = run(second)  # still adding when the first result comes
    writer.CHECKPOINT_SECONDS = 0.0  # every result is a checkpoint
    writer.add(result(first, 0))
    writer._pool.submit(lambda: None).result()
    assert sum_parts.list_parts(store, "maps", "m", "v", "k") == []
    accs.close(running, inits[second])
    writer.add(result(second, 3))
    writer.close()
    parts = sum_parts.list_parts(store, "maps", "m", "v", "k")
    assert len(parts) == 1
    assert sorted(parts[0].inits) == sorted(inits.astype(np.int64).tolist())
    values = sum_parts.full_maps(parts[0], sum_parts.read_values(store, parts[0]))
    np.testing.assert_allclose(values, _numpy_sums(f, o), rtol=1e-12)
