"""Size and power of the scorecard's paired tests on simulated serially correlated differences.

Zero-mean Gaussian AR(1) and AR(2) series of length n stand for the per-init score differences
d_t of one scorecard cell; a test's *size* is the fraction of replicates it rejects at a
nominal 5 % (the false-positive rate, ideally 5 %), its *power* the fraction it rejects after
a shift of ``--shift`` standard deviations of the series is added (the same replicates), and
its *size-adjusted power* the same at its own empirical 5 % critical value (the 5 % quantile
of its p-values on the zero-mean replicates), which compares tests at equal true size.

Processes (unit marginal variance): AR(1) with phi = rho1; AR(2) with phi2 = 0.15 and
phi1 = rho1 (1 - phi2), except that rho1 = 0.7 uses the issue's (phi1, phi2) = (0.6, 0.15),
rho1 = 0.706. Sample sizes n = 30, 60, 120, 365, 730 (a month of 00/12 UTC inits is ~60).

Methods: the package's tests (``paired_test_array``: ``ar2bc`` the default, ``ar2`` Geer
2016, ``naive``) and, written out here only for the comparison,

* ``ar2_neff``: Geer's AR(2) factor with Student t on n_eff - 1 = n/k^2 - 1 dof;
* ``ar2bc_neff``: the bias-corrected AR(2) fit of ``ar2bc`` with n_eff - 1 dof (no
  Satterthwaite term for the uncertainty of the fitted factor);
* ``ewc``: equal-weighted cosine HAC standard error with nu = floor(0.4 n^(2/3)) cosine
  terms and Student t on nu dof (fixed-b theory; Lazarus, Lewis, Stock & Watson 2018);
* ``nw_fixb``: Newey-West (Bartlett) HAC with truncation S = 1.3 sqrt(n) and fixed-b
  critical values, taken here from the exact null distribution of the same statistic for
  independent Gaussian series of the same n (simulated, 20 000 draws);
* ``mbb``: moving-block bootstrap of the mean (199 resamples), block length from the
  AR(1) plug-in rule of Andrews (1991) for the Bartlett kernel,
  l = ceil(1.1447 (4 r^2 n / ((1 - r)^2 (1 + r)^2))^(1/3)) with r the lag-1 sample
  autocorrelation; p = share of |mean* - mean| >= |mean|.

All replicates of one (process, n) are one array; the run is seeded (``--seed``).

    python scripts/significance_simulation.py --replicates 20000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import signal, stats

from wxeval.scorecard.significance import ar2bc_terms, paired_test_array

NS = (30, 60, 120, 365, 730)
RHO1 = (0.0, 0.4, 0.7, 0.85)
PHI2 = 0.15
ALPHA = 0.05
BURN = 500
PACKAGE = ("ar2bc", "ar2", "naive")
EXTRA = ("ar2_neff", "ar2bc_neff", "ewc", "nw_fixb", "mbb")


def processes() -> list[tuple[int, float, float, float]]:
    """(AR order, phi1, phi2, rho1) of every simulated process."""
    out = [(1, r, 0.0, r) for r in RHO1]
    for r in RHO1:
        phi1 = 0.6 if r == 0.7 else r * (1 - PHI2)
        out.append((2, phi1, PHI2, phi1 / (1 - PHI2)))
    return out


def simulate(rng: np.random.Generator, phi1: float, phi2: float, n: int, reps: int) -> np.ndarray:
    """``reps`` zero-mean AR(2) series of length n scaled to unit marginal variance."""
    eps = rng.standard_normal((reps, n + BURN))
    x = signal.lfilter([1.0], [1.0, -phi1, -phi2], eps, axis=1)[:, BURN:]
    gamma0 = (1 - phi2) / ((1 + phi2) * ((1 - phi2) ** 2 - phi1**2))
    return x / np.sqrt(gamma0)


def _acf12(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    dev = x - x.mean(axis=1, keepdims=True)
    ss = np.einsum("ij,ij->i", dev, dev)
    r1 = np.einsum("ij,ij->i", dev[:, :-1], dev[:, 1:]) / ss
    r2 = np.einsum("ij,ij->i", dev[:, :-2], dev[:, 2:]) / ss
    return dev, ss, r1, r2


def _t_p(t: np.ndarray, dof: np.ndarray | float) -> np.ndarray:
    return 2.0 * stats.t.sf(np.abs(t), dof)


def p_ar2_neff(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    dev, ss, r1, r2 = _acf12(x)
    p1 = r1 * (1 - r2) / (1 - r1 * r1)
    p2 = (r2 - r1 * r1) / (1 - r1 * r1)
    k2 = (1 - r1 * p1 - r2 * p2) / (1 - p1 - p2) ** 2
    t = x.mean(axis=1) / np.sqrt(ss / (n - 1) / n * k2)
    return _t_p(t, np.maximum(n / k2 - 1, 1.0))


def p_ar2bc_neff(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    dev, ss, r1, r2 = _acf12(x)
    _, _, kn2, _ = ar2bc_terms(r1, r2, n)
    t = x.mean(axis=1) / np.sqrt(ss / (n - kn2) * kn2 / n)
    return _t_p(t, np.maximum(n / kn2 - 1, 1.0))


def _ewc_t(dev: np.ndarray, mean: np.ndarray, nu: int) -> np.ndarray:
    n = dev.shape[1]
    j = np.arange(1, nu + 1)[:, None]
    basis = np.sqrt(2.0 / n) * np.cos(np.pi * j * (np.arange(n)[None, :] + 0.5) / n)
    lam = dev @ basis.T
    return np.sqrt(n) * mean / np.sqrt((lam * lam).mean(axis=1))


def p_ewc(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    nu = max(int(0.4 * n ** (2 / 3)), 1)
    dev = x - x.mean(axis=1, keepdims=True)
    return _t_p(_ewc_t(dev, x.mean(axis=1), nu), nu)


def _nw_t(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    s = 1.3 * np.sqrt(n)
    dev = x - x.mean(axis=1, keepdims=True)
    omega = np.einsum("ij,ij->i", dev, dev) / n
    for lag in range(1, int(np.ceil(s))):
        omega = omega + 2 * (1 - lag / s) * np.einsum("ij,ij->i", dev[:, :-lag], dev[:, lag:]) / n
    return np.sqrt(n) * x.mean(axis=1) / np.sqrt(np.maximum(omega, 1e-300))


_NW_NULL: dict[int, np.ndarray] = {}


def p_nw_fixb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = x.shape[1]
    if n not in _NW_NULL:
        _NW_NULL[n] = np.sort(np.abs(_nw_t(rng.standard_normal((20_000, n)))))
    ref = _NW_NULL[n]
    above = ref.size - np.searchsorted(ref, np.abs(_nw_t(x)), side="left")
    return (above + 1) / (ref.size + 1)


def p_mbb(x: np.ndarray, rng: np.random.Generator, n_boot: int = 199) -> np.ndarray:
    reps, n = x.shape
    _, _, r1, _ = _acf12(x)
    r1 = np.clip(r1, -0.99, 0.99)
    a1 = 4 * r1 * r1 / ((1 - r1) ** 2 * (1 + r1) ** 2)
    block = np.clip(np.ceil(1.1447 * (a1 * n) ** (1 / 3)), 1, n // 2).astype(np.int64)
    csum = np.concatenate([np.zeros((reps, 1)), np.cumsum(x, axis=1)], axis=1)
    mean = x.mean(axis=1)
    p = np.empty(reps)
    chunk = max(1, 2_000_000 // (n_boot * int(np.ceil(n / block.min()))))
    for lo in range(0, reps, chunk):
        sl = slice(lo, lo + chunk)
        lb = block[sl]
        nb = np.ceil(n / lb).astype(np.int64)
        kmax = int(nb.max())
        starts = np.floor(
            rng.random((lb.size, n_boot, kmax)) * (n - lb + 1)[:, None, None]
        ).astype(np.int64)
        c = csum[sl]
        rows = np.arange(lb.size)[:, None, None]
        sums = c[rows, starts + lb[:, None, None]] - c[rows, starts]
        use = np.arange(kmax)[None, None, :] < nb[:, None, None]
        boot = (sums * use).sum(axis=2) / (nb * lb)[:, None]
        dev = np.abs(boot - mean[sl, None])
        p[sl] = ((dev >= np.abs(mean[sl, None])).sum(axis=1) + 1) / (n_boot + 1)
    return p


def p_values(x: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Two-sided p-value of every method for every replicate (row of x); NaN = not testable."""
    out = {m: paired_test_array(x, axis=1, method=m).p_value for m in PACKAGE}
    out["ar2_neff"] = p_ar2_neff(x)
    out["ar2bc_neff"] = p_ar2bc_neff(x)
    out["ewc"] = p_ewc(x)
    out["nw_fixb"] = p_nw_fixb(x, rng)
    out["mbb"] = p_mbb(x, rng)
    return out


def rates(p0: np.ndarray, p1: np.ndarray) -> tuple[float, float, float]:
    """(size, power, size-adjusted power) from null (p0) and shifted (p1) p-values.

    A non-testable replicate (NaN) counts as no rejection.  The size-adjusted power rejects
    at the ALPHA-quantile of the method's own null p-values (its empirical 5 % critical value),
    so methods are compared at the same true false-positive rate; NaN ("n/a") where ties in
    discrete p-values (the bootstrap's) leave no such threshold.
    """
    q0 = np.where(np.isfinite(p0), p0, 1.0)
    q1 = np.where(np.isfinite(p1), p1, 1.0)
    crit = np.quantile(q0, ALPHA)
    adjusted = float(np.mean(q1 < crit))
    if np.mean(q0 == crit) > 0.001:  # discrete p-values (bootstrap): no exact 5 % threshold
        adjusted = float("nan")
    return float(np.mean(q0 < ALPHA)), float(np.mean(q1 < ALPHA)), adjusted


def _pct(rate: float) -> str:
    return "n/a" if np.isnan(rate) else f"{100 * rate:.1f}"


def table(title: str, res: dict, which: int, methods: list[str], ns: list[int]) -> list[str]:
    """Markdown table: rows (n, method), columns rho1, cells "AR(1) / AR(2)" in %."""
    lines = [f"{title}", "", "| n | test | " + " | ".join(f"ρ₁ = {r:g}" for r in RHO1) + " |",
             "| --- | --- | " + " | ".join("---" for _ in RHO1) + " |"]
    for n in ns:
        for m in methods:
            cells = [" / ".join(_pct(res[n, order, r][m][which]) for order in (1, 2))
                     for r in RHO1]
            lines.append(f"| {n} | {m} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicates", type=int, default=5000, help="series per (process, n)")
    ap.add_argument("--seed", type=int, default=2016)
    ap.add_argument("--shift", type=float, default=0.4,
                    help="mean shift for the power rows, in standard deviations of the series")
    ap.add_argument("--n", default=",".join(map(str, NS)), help="sample sizes, comma-separated")
    ap.add_argument("--methods", default=",".join(PACKAGE + EXTRA),
                    help="rows to print (all are computed)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    methods = args.methods.split(",")
    ns = [int(v) for v in args.n.split(",")]
    se = np.sqrt(ALPHA * (1 - ALPHA) / args.replicates)
    t0 = time.perf_counter()
    res: dict[tuple[int, int, float], dict[str, tuple[float, float, float]]] = {}
    for n in ns:
        for order, phi1, phi2, rho1 in processes():
            x = simulate(rng, phi1, phi2, n, args.replicates)
            p0 = p_values(x, rng)
            p1 = p_values(x + args.shift, rng)
            key = min(RHO1, key=lambda r: abs(r - rho1))
            res[n, order, key] = {m: rates(p0[m], p1[m]) for m in p0}
    print(f"{args.replicates} replicates per process and n, seed {args.seed}, nominal "
          f"{ALPHA:.0%}; binomial standard error of a rate near 5 %: {100 * se:.2f} %; "
          "each cell AR(1) / AR(2) (AR(2): phi2 = 0.15; the rho1 = 0.7 column is "
          "phi1 = 0.6, rho1 = 0.706).\n")
    out = table("Size (false positives, %) at a nominal 5 %:", res, 0, methods, ns)
    out += [""] + table(f"Power (%) at a shift of {args.shift:g} sd:", res, 1, methods, ns)
    out += [""] + table(f"Size-adjusted power (%) at a shift of {args.shift:g} sd (each test "
                        "at its own empirical 5 % critical value):", res, 2, methods, ns)
    print("\n".join(out))
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
