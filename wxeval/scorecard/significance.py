"""Paired significance tests for forecast score differences (scorecards).

The question a scorecard asks at every cell (variable, level, lead time, region) is whether
model A's score differs from model B's by more than sampling noise.  Both models are scored
on the same initialisation times, so the test is *paired*: with per-init scores
``a_t`` and ``b_t`` on a uniform init step (e.g. every 12 h) we test the mean of

    d_t = a_t - b_t,        t = 1 .. n

against zero.  Successive ``d_t`` are serially correlated (weather regimes persist for days,
and forecasts from neighbouring inits share errors), so the naive standard error
``sqrt(var(d) / n)`` is too small and a naive t-test rejects far too often.

**Geer (2016)** (``method="ar2"``) — the test used on ECMWF scorecards — inflates the standard
error by a factor ``k`` derived from an AR(2) model of ``d``:

    se = sqrt(var(d) / n) * k,          var with ddof = 1
    t  = mean(d) / se,                  two-sided p from Student t with n - 1 dof

    k  = sqrt((1 - rho1 * phi1 - rho2 * phi2) / (1 - phi1 - phi2) ** 2)
    phi1 = rho1 * (1 - rho2) / (1 - rho1 ** 2)
    phi2 = (rho2 - rho1 ** 2) / (1 - rho1 ** 2)

where ``rho1, rho2`` are the lag-1 and lag-2 sample autocorrelations of ``d`` and
``phi1, phi2`` the Yule-Walker AR(2) coefficients.  ``k ** 2`` is the ratio of the variance
of the mean of a stationary AR(2) process to that of ``n`` independent values with the same
variance (Wilks 2011, section 5.2.4 and 9.3); for AR(1) (``phi2 = 0``) it reduces to the
familiar ``(1 + rho1) / (1 - rho1)``.  The "effective sample size" is ``n / k ** 2``.
``k`` can be below 1 when ``d`` is negatively autocorrelated; it is not clamped.

Its size is far from nominal for short series, for three reasons: the sample
autocorrelations are biased low (roughly by ``-(1 + 4 rho1) / n``), so ``k`` is
under-estimated; ``var(d)`` is biased low too (``E[var(d)] = gamma0 (n - k_n**2)/(n - 1)``);
and ``k`` is estimated from the same ``n`` values but the t distribution uses ``n - 1``
degrees of freedom as if it were known.  Zero-mean AR(2) differences with
``phi1 = 0.6, phi2 = 0.15`` (``rho1 = 0.71``) are rejected at a nominal 5 % about 14 % of the
time for ``n = 60`` (a month of 00/12 UTC inits), 10 % for 120, 6.5 % for 365.

**The default test** (``method="ar2bc"``) removes the three causes, each to first order:

1. the Yule-Walker AR(2) coefficients are bias-corrected (:func:`ar2bc_terms`);
2. the variance of the mean is that of the fitted AR(2) process at this ``n``,
   ``se**2 = gamma0_hat * k_n**2 / n`` with ``k_n**2 = 1 + 2 sum_{h<n} (1 - h/n) rho_h`` and
   ``gamma0_hat = sum((d - mean(d))**2) / (n - k_n**2)`` (unbiased for that process);
3. the t distribution has Satterthwaite degrees of freedom that count the uncertainty of
   both estimated factors, ``1/nu = 1/(n_eff - 1) + Var(log k**2)/2`` with
   ``n_eff = n / k_n**2`` and the delta-method variance of the fitted ``log k**2``.

In simulation (``scripts/significance_simulation.py``, 20 000 replicates, README) its size at
a nominal 5 % is 4.4-6.9 % for n = 60 (5.1 % for the AR(2) process above, 5.9 % for AR(1)
with rho1 = 0.85) and 4.6-5.2 % for n >= 120, over AR(1) and AR(2) differences with lag-1
correlation 0 to 0.85; it is optimistic for n = 30 with strong correlation (up to 9 %) and
slightly conservative (~4.5 %) for uncorrelated differences.  Its power is lower than
Geer's, but at equal true size (size-adjusted) within 4 percentage points of it at n = 60
and 3 from n = 120: the raw power Geer's test shows for short series is largely its excess
of false positives.  Also
compared there, and not chosen: Student t on ``n_eff - 1`` dof with Geer's factor
(10-16 % at n = 60, rho1 0.7-0.85) or with the bias-corrected one (7-10 %),
equal-weighted-cosine and Newey-West HAC standard errors with fixed-b critical values
(8-25 %) and a moving-block bootstrap (17-33 %).  The table-lookup test of Zwiers &
von Storch (1995) is not reimplemented (its critical values are a published table calibrated
on AR(1) series).  ``method="naive"`` is the plain paired t-test.

Caveats (say so in any report that uses these tests):

* All tests model the serial correlation of ``d`` as (at most) AR(2); differences with
  longer memory (trends, regime changes longer than the series) are under-corrected.
* When the AR(2) fit is undefined or not stationary the inflation is NaN and the cell is
  reported as **not testable** (``testable=False``, p-value NaN) rather than guessed.  With the
  standard (1/n) autocorrelation estimator used here the Yule-Walker AR(2) fit of a
  non-constant series is always stationary (the sample autocovariance matrix is positive
  definite; Brockwell & Davis 1991, sections 7.2 and 8.1), so in practice "not testable"
  arises from constant differences (var(d) = 0 to round-off, e.g. identical models), too few
  values (n < 4) or autocorrelations supplied from elsewhere.  A strongly trending (non-stationary)
  ``d`` is still "testable" but gets a very large ``k`` and a small effective sample size.
  ``"ar2bc"`` falls back to the uncorrected coefficients where the bias correction would leave
  the stationarity triangle, and reports "not testable" where its ``n_eff <= 1``.
* Missing inits: the series are expected on the uniform init grid; pairs where either score
  is NaN (or infinite) are dropped and the remaining values are treated as consecutive.  This
  small-gap treatment is the usual practice; it slightly distorts the lag-1/lag-2
  autocorrelations across a gap and should not be used with large or frequent gaps.

Multiple testing: a scorecard performs thousands of tests, so at the 5 % level hundreds of
cells would be flagged by chance alone.  Two corrections are provided:

* :func:`benjamini_hochberg` — controls the false discovery rate (the expected fraction of
  flagged cells that are false positives) at ``alpha`` (Benjamini & Hochberg 1995).  This is
  the recommended default: apply it across **all testable cells of one card** (all variables,
  levels, lead times and regions), separately for each marker level (e.g. ``alpha = 0.05``
  and ``alpha = 0.01`` for the 95 % / 99 % markers).  Positively dependent tests, as on a
  scorecard (neighbouring lead times, levels), are covered (Benjamini & Yekutieli 2001).
* :func:`sidak_alpha` — the per-test level that keeps the family-wise error rate (probability
  of *any* false positive) at ``alpha`` for ``m`` independent tests (Šidák 1967).  Much more
  conservative; useful for a handful of headline numbers.

The caller decides which correction to apply and must state it in the report.

References
----------
Geer, A. J. (2016). Significance of changes in medium-range forecast scores.
    Tellus A, 68, 30229. https://doi.org/10.3402/tellusa.v68.30229
Wilks, D. S. (2011). Statistical Methods in the Atmospheric Sciences, 3rd ed. Academic Press.
Brockwell, P. J. & Davis, R. A. (1991). Time Series: Theory and Methods, 2nd ed. Springer.
Box, G. E. P. & Jenkins, G. M. (1976). Time Series Analysis: Forecasting and Control.
    Holden-Day (asymptotic covariance of AR estimates).
Shaman, P. & Stine, R. A. (1988). The bias of autoregressive coefficient estimators.
    J. Am. Stat. Assoc., 83, 842-848.
Satterthwaite, F. E. (1946). An approximate distribution of estimates of variance
    components. Biometrics Bulletin, 2, 110-114.
Zwiers, F. W. & von Storch, H. (1995). Taking serial correlation into account in tests of the
    mean. J. Climate, 8, 336-351 (why estimated equivalent sample sizes make tests liberal).
Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate. J. R. Stat. Soc. B,
    57, 289-300.
Benjamini, Y. & Yekutieli, D. (2001). The control of the false discovery rate in multiple
    testing under dependency. Ann. Stat., 29, 1165-1188.
Šidák, Z. (1967). Rectangular confidence regions for the means of multivariate normal
    distributions. J. Am. Stat. Assoc., 62, 626-633.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = [
    "DEFAULT_METHOD",
    "MEASURED_SIZE",
    "METHODS",
    "Method",
    "TestArrays",
    "TestResult",
    "CONSTANT_RTOL",
    "MIN_N",
    "ar2_inflation",
    "ar2_inflation_from_rho",
    "ar2bc_terms",
    "autocorrelation",
    "benjamini_hochberg",
    "paired_test",
    "paired_test_array",
    "sidak_alpha",
    "size_note",
]

Method = Literal["ar2bc", "ar2", "naive"]

#: The default test: bias-corrected AR(2) with Satterthwaite degrees of freedom.
DEFAULT_METHOD: Method = "ar2bc"

#: Every test, for option checks and help texts.
METHODS: tuple[Method, ...] = ("ar2bc", "ar2", "naive")

#: Minimum number of paired values for a cell to be testable.
MIN_N = 4

#: Differences whose spread is at most this fraction of their largest magnitude are treated as
#: constant (var(d) == 0): identical models, or a constant offset blurred only by round-off in
#: a - b.  Genuine score differences vary far more than 1e-10 relative.
CONSTANT_RTOL = 1e-10

# Cells processed per block in the vectorised core (bounds temporary memory to a few
# arrays of _BLOCK_ELEMENTS float64 values).
_BLOCK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class TestResult:
    """Result of :func:`paired_test` for one series of paired differences ``d = a - b``.

    Attributes
    ----------
    mean_diff : mean of ``d`` over the ``n`` retained pairs (NaN if ``n == 0``).
    std_err : ``sqrt(var(d, ddof=1) / n) * inflation`` (NaN if undefined).
    t_stat : ``mean_diff / std_err`` (NaN when not testable).
    p_value : two-sided p-value, Student t with ``dof`` degrees of freedom (NaN when not
        testable).
    n : number of pairs used.
    n_dropped : number of pairs dropped because ``a`` or ``b`` was NaN (or infinite).
    inflation : standard-error inflation factor ``k`` on ``sqrt(var(d, ddof=1) / n)`` (1 for
        the naive test, NaN if the AR(2) fit is undefined or non-stationary).
    effective_n : effective sample size: ``n / inflation ** 2`` for ``"ar2"`` and
        ``"naive"``; ``n / k_n ** 2`` (the variance-of-the-mean factor) for ``"ar2bc"``.
    dof : degrees of freedom of the t distribution behind ``p_value`` (``n - 1`` for
        ``"ar2"`` and ``"naive"``, the Satterthwaite value for ``"ar2bc"``).
    testable : False when ``inflation`` is NaN, ``n < 4`` or ``var(d) == 0`` (all differences
        equal to round-off, see ``CONSTANT_RTOL``).
    """

    __test__ = False  # not a pytest test class despite the name

    mean_diff: float
    std_err: float
    t_stat: float
    p_value: float
    n: int
    n_dropped: int
    inflation: float
    effective_n: float
    dof: float
    testable: bool


class TestArrays(NamedTuple):
    """Result of :func:`paired_test_array`: one array per field, shaped like the input minus
    the reduced axis.  A cell is testable exactly where ``p_value`` is finite."""

    __test__ = False  # not a pytest test class despite the name

    mean_diff: np.ndarray
    std_err: np.ndarray
    t_stat: np.ndarray
    p_value: np.ndarray
    n: np.ndarray
    inflation: np.ndarray
    effective_n: np.ndarray
    dof: np.ndarray


# --------------------------------------------------------------------------------------------
# Autocorrelation and AR(2) inflation
# --------------------------------------------------------------------------------------------


def autocorrelation(d: npt.ArrayLike, lag: int) -> float:
    """Sample lag-``k`` autocorrelation of a 1-D, NaN-free series (standard estimator).

    .. math::

        r_k = \\frac{c_k}{c_0}, \\qquad
        c_k = \\frac{1}{n} \\sum_{t=1}^{n-k} (d_t - \\bar d)(d_{t+k} - \\bar d)

    Both covariances use the overall mean and the divisor ``n`` (not ``n - k``), which makes
    the autocorrelation sequence positive definite (Brockwell & Davis 1991, section 7.2).

    Returns NaN for a constant series (``c_0 = 0``, to round-off: see ``CONSTANT_RTOL``) or
    when ``lag >= n``.

    Raises
    ------
    ValueError
        If ``d`` is not 1-D, contains non-finite values, or ``lag`` is negative.
    """
    x = _as_finite_1d(d)
    if lag < 0:
        raise ValueError(f"lag must be >= 0, got {lag}")
    n = x.size
    if lag >= n or _is_constant(x):
        return float("nan")
    dev = x - x.mean()
    c0 = np.dot(dev, dev)
    ck = np.dot(dev[: n - lag], dev[lag:])
    return float(ck / c0)


def ar2_inflation_from_rho(rho1: npt.ArrayLike, rho2: npt.ArrayLike) -> np.ndarray | float:
    """Geer (2016) AR(2) standard-error inflation factor from lag-1/lag-2 autocorrelations.

    .. math::

        \\phi_1 = \\frac{\\rho_1 (1 - \\rho_2)}{1 - \\rho_1^2}, \\quad
        \\phi_2 = \\frac{\\rho_2 - \\rho_1^2}{1 - \\rho_1^2}, \\quad
        k = \\sqrt{\\frac{1 - \\rho_1 \\phi_1 - \\rho_2 \\phi_2}{(1 - \\phi_1 - \\phi_2)^2}}

    (Yule-Walker AR(2) coefficients; ``k**2`` is the variance-of-the-mean inflation of the
    fitted AR(2) process.)  Returns NaN ("not testable") where the fit is undefined or not
    stationary: ``rho1**2 == 1``, ``1 - phi1 - phi2 == 0``, any of ``phi1 + phi2 < 1``,
    ``phi2 - phi1 < 1``, ``|phi2| < 1`` violated, ``k**2 <= 0`` or non-finite inputs.

    Works elementwise on arrays (broadcasting); returns a float for scalar inputs.
    """
    r1 = np.asarray(rho1, dtype=np.float64)
    r2 = np.asarray(rho2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        den = 1.0 - r1 * r1
        phi1 = r1 * (1.0 - r2) / den
        phi2 = (r2 - r1 * r1) / den
        one_minus_sum = 1.0 - phi1 - phi2
        k2 = (1.0 - r1 * phi1 - r2 * phi2) / (one_minus_sum * one_minus_sum)
        ok = (
            np.isfinite(r1)
            & np.isfinite(r2)
            & (den != 0.0)
            & (one_minus_sum != 0.0)
            & (phi1 + phi2 < 1.0)
            & (phi2 - phi1 < 1.0)
            & (np.abs(phi2) < 1.0)
            & np.isfinite(k2)
            & (k2 > 0.0)
        )
        k = np.where(ok, np.sqrt(np.where(ok, k2, 1.0)), np.nan)
    if k.ndim == 0:
        return float(k)
    return k


def ar2_inflation(d: npt.ArrayLike) -> float:
    """Geer (2016) AR(2) inflation factor ``k`` of a 1-D, NaN-free series of differences.

    ``k = ar2_inflation_from_rho(r_1, r_2)`` with ``r_k`` from :func:`autocorrelation`; see
    :func:`ar2_inflation_from_rho` for the formula.  NaN means "not testable": the series is
    constant, shorter than 3 values, or the AR(2) fit is undefined or non-stationary.
    """
    x = _as_finite_1d(d)
    if x.size < 3 or _is_constant(x):
        return float("nan")
    return float(ar2_inflation_from_rho(autocorrelation(x, 1), autocorrelation(x, 2)))


# --------------------------------------------------------------------------------------------
# Paired t-tests
# --------------------------------------------------------------------------------------------


def paired_test(
    a: npt.ArrayLike, b: npt.ArrayLike, *, method: Method = DEFAULT_METHOD
) -> TestResult:
    """Paired t-test of ``mean(a - b) == 0`` for two per-init score series.

    ``a`` and ``b`` are 1-D, the same length, already paired and on a uniform init step.
    Pairs where either value is NaN (or infinite) are dropped (counted in ``n_dropped``) and
    the rest treated as consecutive (see the module docstring).  With ``d = a - b``:

    .. math::

        \\mathrm{se} = \\sqrt{\\mathrm{var}(d)/n}\\; k, \\qquad
        t = \\bar d / \\mathrm{se}, \\qquad
        p = 2\\, P(T_{\\nu} > |t|)

    ``var`` with ddof 1.  ``method``:

    * ``"ar2bc"`` (default): bias-corrected AR(2) fit, finite-n variance of the mean and
      Satterthwaite degrees of freedom ``nu`` (see :func:`ar2bc_terms` and the module
      docstring); size close to nominal from about 60 values.
    * ``"ar2"``: Geer (2016), ``k`` the AR(2) inflation of :func:`ar2_inflation`,
      ``nu = n - 1`` (the ECMWF scorecard test; optimistic for short series).
    * ``"naive"``: ``k = 1``, ``nu = n - 1`` (an ordinary paired t-test, identical to
      ``scipy.stats.ttest_rel``; too many false positives for autocorrelated scores).

    The result is not testable (``testable=False``, ``t_stat`` and ``p_value`` NaN) when
    ``n < 4``, ``var(d) == 0`` (all differences equal to within ``CONSTANT_RTOL`` relative,
    so that a constant offset blurred by round-off in ``a - b`` is not "significant") or the
    inflation is NaN.
    """
    _check_method(method)
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.ndim != 1 or xb.ndim != 1 or xa.shape != xb.shape:
        raise ValueError(
            f"a and b must be 1-D with the same length, got shapes {xa.shape} and {xb.shape}"
        )
    keep = np.isfinite(xa) & np.isfinite(xb)
    d = (xa - xb)[keep]
    res = _test_full(d[np.newaxis, :], method)
    n = int(d.size)
    inflation = float(res.inflation[0])
    p = float(res.p_value[0])
    return TestResult(
        mean_diff=float(res.mean_diff[0]),
        std_err=float(res.std_err[0]),
        t_stat=float(res.t_stat[0]),
        p_value=p,
        n=n,
        n_dropped=int(xa.size - n),
        inflation=inflation,
        effective_n=float(res.effective_n[0]),
        dof=float(res.dof[0]),
        testable=bool(np.isfinite(p)),
    )


def paired_test_array(
    d: npt.ArrayLike, axis: int = -1, method: Method = DEFAULT_METHOD
) -> TestArrays:
    """Vectorised :func:`paired_test` for an N-D array of paired differences ``d = a - b``.

    Each cell (every index of the other axes) is tested independently along ``axis``, which
    must be the init-time axis on the **uniform init grid**.  NaN (or infinite) values are
    dropped per cell and the remaining values treated as consecutive — the usual small-gap
    treatment, which slightly distorts the autocorrelation across gaps (see the module
    docstring).  Results equal :func:`paired_test` applied cell by cell.

    Cells without missing values are processed fully vectorised; cells with missing values
    are grouped by their missing-value pattern (typically a few shared missing inits) and each
    group is vectorised, so the Python loop runs over distinct patterns only.

    Returns
    -------
    TestArrays
        ``(mean_diff, std_err, t_stat, p_value, n, inflation, effective_n, dof)``, each
        shaped like ``d`` without ``axis``; ``n`` is an integer array.  A cell is testable
        exactly where ``p_value`` is finite; ``t_stat`` and ``p_value`` are NaN elsewhere.
        See :class:`TestResult` for the fields.
    """
    _check_method(method)
    x = np.asarray(d, dtype=np.float64)
    if x.ndim == 0:
        raise ValueError("d must have at least one dimension")
    x = np.moveaxis(x, axis, -1)
    out_shape = x.shape[:-1]
    n_time = x.shape[-1]
    flat = x.reshape(-1, n_time)
    n_cells = flat.shape[0]

    mean_diff = np.full(n_cells, np.nan)
    std_err = np.full(n_cells, np.nan)
    t_stat = np.full(n_cells, np.nan)
    p_value = np.full(n_cells, np.nan)
    inflation = np.full(n_cells, np.nan)
    effective_n = np.full(n_cells, np.nan)
    dof = np.full(n_cells, np.nan)
    n = np.zeros(n_cells, dtype=np.int64)

    def store(idx: np.ndarray, block: np.ndarray) -> None:
        r = _test_full(block, method)
        mean_diff[idx] = r.mean_diff
        std_err[idx] = r.std_err
        t_stat[idx] = r.t_stat
        p_value[idx] = r.p_value
        inflation[idx] = r.inflation
        effective_n[idx] = r.effective_n
        dof[idx] = r.dof
        n[idx] = block.shape[1]

    finite = np.isfinite(flat)
    complete = finite.all(axis=1)
    full_idx = np.flatnonzero(complete)
    step = max(1, _BLOCK_ELEMENTS // max(n_time, 1))
    for start in range(0, full_idx.size, step):
        idx = full_idx[start : start + step]
        store(idx, flat[idx])

    gap_idx = np.flatnonzero(~complete)
    if gap_idx.size:
        # Group cells by missing-value pattern: pack each row's mask into bytes and sort the
        # byte strings (much faster than np.unique(..., axis=0) on a boolean matrix).
        packed = np.ascontiguousarray(np.packbits(finite[gap_idx], axis=1))
        keys = packed.view(np.dtype((np.void, packed.shape[1]))).reshape(-1)
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        order = np.argsort(inverse.reshape(-1), kind="stable")
        bounds = np.cumsum(np.bincount(inverse.reshape(-1), minlength=first.size))[:-1]
        for p, members in enumerate(np.split(gap_idx[order], bounds)):
            keep = np.flatnonzero(finite[gap_idx[first[p]]])
            store(members, flat[np.ix_(members, keep)])

    return TestArrays(
        mean_diff=mean_diff.reshape(out_shape),
        std_err=std_err.reshape(out_shape),
        t_stat=t_stat.reshape(out_shape),
        p_value=p_value.reshape(out_shape),
        n=n.reshape(out_shape),
        inflation=inflation.reshape(out_shape),
        effective_n=effective_n.reshape(out_shape),
        dof=dof.reshape(out_shape),
    )


def _test_full(x: np.ndarray, method: Method) -> TestArrays:
    """Core test on a 2-D block ``(cells, n)`` of finite values (all cells share ``n``)."""
    n_cells, n = x.shape
    nan = np.full(n_cells, np.nan)
    if n == 0:
        return TestArrays(
            nan, nan.copy(), nan.copy(), nan.copy(), np.zeros(n_cells, dtype=np.int64),
            nan.copy(), nan.copy(), nan.copy(),
        )

    mean = x.mean(axis=1)
    dev = x - mean[:, np.newaxis]
    ss = np.einsum("ij,ij->i", dev, dev)
    # var(d) == 0 iff all values are equal; test that directly, to round-off (CONSTANT_RTOL), so
    # that rounding in a - b or in the mean cannot make a constant offset "significant".
    xmax = x.max(axis=1)
    xmin = x.min(axis=1)
    constant = xmax - xmin <= CONSTANT_RTOL * np.maximum(np.abs(xmax), np.abs(xmin))

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        var = ss / (n - 1) if n > 1 else nan.copy()
        dof = np.full(n_cells, float(n - 1))
        if method == "naive":
            k = np.ones(n_cells)
            neff = np.full(n_cells, float(n))
        elif n < 3:
            k, neff = nan.copy(), nan.copy()
        else:
            c1 = np.einsum("ij,ij->i", dev[:, :-1], dev[:, 1:])
            c2 = np.einsum("ij,ij->i", dev[:, :-2], dev[:, 2:])
            rho1 = np.where(constant, np.nan, c1 / np.where(constant, 1.0, ss))
            rho2 = np.where(constant, np.nan, c2 / np.where(constant, 1.0, ss))
            if method == "ar2":
                k = np.asarray(ar2_inflation_from_rho(rho1, rho2), dtype=np.float64)
                neff = n / (k * k)
            else:  # "ar2bc"
                _, _, kn2, var_log_k2 = ar2bc_terms(rho1, rho2, n)
                neff = n / kn2
                # se^2 = gamma0_hat * kn2 / n with gamma0_hat = ss / (n - kn2), i.e.
                # k^2 = kn2 * (n - 1) / (n - kn2) on var(d, ddof=1) / n.
                ok = np.isfinite(kn2) & (neff > 1.0)
                k = np.where(ok, np.sqrt(kn2 * (n - 1) / np.where(ok, n - kn2, 1.0)), np.nan)
                dof = 1.0 / (1.0 / (neff - 1.0) + 0.5 * var_log_k2)
                dof = np.where(ok, dof, np.nan)
            k = np.where(constant, np.nan, k)
            neff = np.where(np.isfinite(k), neff, np.nan)
        se = np.sqrt(var / n) * k
        testable = (
            (n >= MIN_N) & ~constant & np.isfinite(k) & (se > 0) & np.isfinite(dof) & (dof > 0)
        )
        t = np.where(testable, mean / np.where(testable, se, 1.0), np.nan)
    p = np.full(n_cells, np.nan)
    if testable.any():
        p[testable] = 2.0 * stats.t.sf(np.abs(t[testable]), dof[testable])
    return TestArrays(
        mean, se, t, p, np.full(n_cells, n), k, neff, np.where(testable, dof, np.nan)
    )


def ar2bc_terms(
    rho1: npt.ArrayLike, rho2: npt.ArrayLike, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pieces of the default ``"ar2bc"`` test from lag-1/lag-2 sample autocorrelations.

    1. Yule-Walker AR(2) coefficients ``phi1, phi2`` (as in :func:`ar2_inflation_from_rho`),
       bias-corrected to first order in ``1/n``:

       .. math::

           \\tilde\\phi_1 = \\phi_1 + (1 + 2\\phi_1 + \\phi_2)/n, \\qquad
           \\tilde\\phi_2 = \\phi_2 + (2 + 5\\phi_2)/n

       (the least-squares bias of an AR(2) fit with estimated mean, ``-(1 + phi1 + phi2)/n``
       and ``-(2 + 4 phi2)/n`` (Shaman & Stine 1988), plus the extra ``-phi/n`` of the
       Yule-Walker estimator, as for AR(1) where the two biases are ``-(1 + 3 phi)/n`` and
       ``-(1 + 4 phi)/n``).  Where the corrected pair is not stationary the uncorrected
       (always stationary) pair is used.
    2. The finite-``n`` variance-of-the-mean factor of that AR(2) process,

       .. math:: k_n^2 = 1 + 2 \\sum_{h=1}^{n-1} (1 - h/n)\\, \\rho_h,
          \\qquad \\rho_1 = \\frac{\\tilde\\phi_1}{1 - \\tilde\\phi_2},\\;
          \\rho_h = \\tilde\\phi_1 \\rho_{h-1} + \\tilde\\phi_2 \\rho_{h-2},

       so that ``Var(mean(d)) = gamma0 * k_n**2 / n`` exactly for that process.
    3. The delta-method variance of ``log k**2`` with
       ``k**2 = (1 + phi2)(1 + phi1 - phi2) / ((1 - phi2)(1 - phi1 - phi2))`` (the
       ``n -> inf`` factor) and the asymptotic covariance of the AR(2) estimates,
       ``(1/n) [[1 - phi2**2, -phi1 (1 + phi2)], [-phi1 (1 + phi2), 1 - phi2**2]]``
       (Box & Jenkins).

    Returns ``(phi1, phi2, kn2, var_log_k2)`` (the coefficients used), elementwise; NaN where
    the autocorrelations give no AR(2) fit (``|rho1| == 1``, non-finite input).
    """
    r1 = np.asarray(rho1, dtype=np.float64)
    r2 = np.asarray(rho2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        den = 1.0 - r1 * r1
        p1 = r1 * (1.0 - r2) / den
        p2 = (r2 - r1 * r1) / den
        c1 = p1 + (1.0 + 2.0 * p1 + p2) / n
        c2 = p2 + (2.0 + 5.0 * p2) / n
        use_c = _ar2_stationary(c1, c2)
        p1 = np.where(use_c, c1, p1)
        p2 = np.where(use_c, c2, p2)
        fit = _ar2_stationary(p1, p2) & np.isfinite(p1) & np.isfinite(p2)
        p1 = np.where(fit, p1, np.nan)
        p2 = np.where(fit, p2, np.nan)
        # k_n^2 by the autocorrelation recursion (n - 1 vectorised steps)
        q1, q2 = np.where(fit, p1, 0.0), np.where(fit, p2, 0.0)
        r_prev2 = np.ones_like(q1)
        r_prev = q1 / (1.0 - q2)
        total = (1.0 - 1.0 / n) * r_prev if n > 1 else np.zeros_like(q1)
        for h in range(2, n):
            r_h = q1 * r_prev + q2 * r_prev2
            total = total + (1.0 - h / n) * r_h
            r_prev2, r_prev = r_prev, r_h
        kn2 = np.where(fit, 1.0 + 2.0 * total, np.nan)
        a = 1.0 + p1 - p2
        b = 1.0 - p1 - p2
        g1 = 1.0 / a + 1.0 / b
        g2 = 1.0 / (1.0 + p2) - 1.0 / a + 1.0 / (1.0 - p2) + 1.0 / b
        s11 = 1.0 - p2 * p2
        s12 = -p1 * (1.0 + p2)
        var_log_k2 = (g1 * g1 * s11 + 2.0 * g1 * g2 * s12 + g2 * g2 * s11) / n
    return p1, p2, kn2, var_log_k2


def _ar2_stationary(phi1: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    """AR(2) stationarity triangle: phi1 + phi2 < 1, phi2 - phi1 < 1, |phi2| < 1."""
    with np.errstate(invalid="ignore"):
        return (phi1 + phi2 < 1.0) & (phi2 - phi1 < 1.0) & (np.abs(phi2) < 1.0)


# --------------------------------------------------------------------------------------------
# Multiple testing
# --------------------------------------------------------------------------------------------


def sidak_alpha(alpha: float, m: int) -> float:
    """Šidák per-test significance level for ``m`` tests at family-wise level ``alpha``.

    .. math:: \\alpha_1 = 1 - (1 - \\alpha)^{1/m}

    Rejecting each test at ``alpha_1`` keeps the probability of at least one false positive
    at ``alpha`` when the ``m`` tests are independent (conservative under positive
    dependence).  Computed as ``-expm1(log1p(-alpha) / m)`` for accuracy at large ``m``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    return float(-np.expm1(np.log1p(-alpha) / m))


def benjamini_hochberg(p_values: npt.ArrayLike, alpha: float = 0.05) -> np.ndarray:
    """Benjamini-Hochberg (1995) step-up procedure; returns a boolean "reject" mask.

    With the ``m`` finite p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, find the
    largest ``j`` with

    .. math:: p_{(j)} \\le \\frac{j}{m}\\,\\alpha

    and reject the hypotheses with the ``j`` smallest p-values.  This controls the false
    discovery rate at ``alpha`` for independent or positively dependent tests.  NaN p-values
    (non-testable cells) are excluded from ``m`` and never rejected.  The output has the
    shape of ``p_values``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p = np.asarray(p_values, dtype=np.float64)
    reject = np.zeros(p.shape, dtype=bool)
    flat_p = p.reshape(-1)
    valid = np.flatnonzero(~np.isnan(flat_p))
    m = valid.size
    if m == 0:
        return reject
    order = valid[np.argsort(flat_p[valid], kind="stable")]
    thresholds = alpha * np.arange(1, m + 1) / m
    below = np.flatnonzero(flat_p[order] <= thresholds)
    if below.size:
        flat_reject = reject.reshape(-1)
        flat_reject[order[: below[-1] + 1]] = True
    return reject


# --------------------------------------------------------------------------------------------
# Measured size (false-positive rate), for the report's method note
# --------------------------------------------------------------------------------------------

#: False-positive rate in % at a nominal 5 % measured by ``scripts/significance_simulation.py
#: --replicates 20000`` (seed 2016; binomial standard error ~0.15 %) on zero-mean Gaussian
#: series: per method and n, ``(at_07, low, high)`` with ``at_07`` the rate for AR(2)
#: (phi1, phi2) = (0.6, 0.15) (lag-1 correlation 0.71) and ``low..high`` the range over the
#: eight AR(1)/AR(2) processes with lag-1 correlation 0, 0.4, 0.7 and 0.85.
MEASURED_SIZE: dict[str, dict[int, tuple[float, float, float]]] = {
    "ar2bc": {
        30: (7.1, 4.5, 9.2),
        60: (5.1, 4.4, 6.9),
        120: (4.6, 4.6, 5.2),
        365: (4.8, 4.6, 5.0),
        730: (5.0, 4.7, 5.0),
    },
    "ar2": {
        30: (22.1, 9.1, 33.1),
        60: (14.2, 7.0, 21.9),
        120: (9.6, 6.0, 14.2),
        365: (6.5, 5.3, 8.0),
        730: (6.0, 5.1, 6.8),
    },
    "naive": {
        30: (50.1, 5.0, 66.3),
        60: (49.7, 4.8, 65.4),
        120: (48.8, 5.0, 64.8),
        365: (48.6, 5.2, 63.6),
        730: (48.9, 4.9, 63.6),
    },
}


def size_note(method: str, n: npt.ArrayLike) -> str:
    """One line on the measured size of ``method`` for series of about ``n`` values.

    ``n`` is the number of values per tested cell (any shape; the median is used, e.g. the
    ``n`` of every testable cell of a card).  The measurement at the simulated length nearest
    to it (on a log scale) is quoted from :data:`MEASURED_SIZE`.
    """
    _check_method(method)
    sizes = np.asarray(n, dtype=np.float64).ravel()
    sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
    if sizes.size == 0:
        return "size at 5 %: no testable cell"
    typical = float(np.median(sizes))
    table = MEASURED_SIZE[method]
    near = min(table, key=lambda m: abs(np.log(m / typical)))
    at_07, low, high = table[near]
    return (
        f"size at 5 %: measured {at_07:.1f} % at n = {near} with lag-1 correlation 0.7 and "
        f"{low:.1f}\u2013{high:.1f} % with lag-1 correlation 0\u20130.85 (AR(1) and AR(2) "
        "differences, scripts/significance_simulation.py); median n of the tested cells: "
        f"{typical:g}"
    )


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _as_finite_1d(d: npt.ArrayLike) -> np.ndarray:
    x = np.asarray(d, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D series, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("series must be free of NaN/inf (drop missing values first)")
    return x


def _is_constant(x: np.ndarray) -> bool:
    """True for an empty series or one whose values are equal to round-off (CONSTANT_RTOL)."""
    if x.size == 0:
        return True
    xmax, xmin = x.max(), x.min()
    return bool(xmax - xmin <= CONSTANT_RTOL * max(abs(xmax), abs(xmin)))


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
