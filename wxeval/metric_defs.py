"""Every metric, declared once: what tables, plan, check, scorecard, report and docs read.

A :class:`Metric` names the statistics it needs (:mod:`wxeval.statistics`), its per-init
*terms* (functions of one init's statistics), and its value from the means of those terms over
the T inits (mean_t, unweighted). A metric with one term has a per-init score the scorecard can
test (its series), and its value is ``value({term: mean_t term_t})``.

Adding a metric is one entry in :data:`REGISTRY` (and a statistic group when it needs new sums):
see README, "Adding a metric".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from wxeval.statistics import RANK_STATISTICS

Stats = Mapping[str, np.ndarray]
Means = Mapping[str, np.ndarray]


def _same(term: str) -> Callable[[Means], np.ndarray]:
    return lambda m: m[term]


@dataclass(frozen=True)
class Metric:
    """One metric.

    * ``terms``: per-init quantities, name → function of one init's statistics (a term name
      means the same function in every metric that uses it).
    * ``value``: the metric from the means over inits of its terms.
    * ``better``: ``"lower"``, ``"higher"``, ``"zero"`` (smaller |value| is better) or
      ``"one"`` (closer to 1 is better: the spread–skill ratio).
    * ``compare``: how the scorecard's relative change to a baseline b is formed:
      ``"error"`` (m − b)/b, ``"skill"`` (m − b)/(1 − b), ``"abs"`` (|b| − |m|)/|b| as the
      improvement with no signed relative change, or ``None`` (not compared).
    * ``units``: ``"same"`` (the variable's units), ``"squared"`` or ``"none"``.
    * ``needs``: inputs beyond forecast and truth (``"climatology"``).
    """

    name: str
    label: str
    statistics: tuple[str, ...]
    terms: Mapping[str, Callable[[Stats], np.ndarray]]
    value: Callable[[Means], np.ndarray]
    better: str
    compare: str | None
    units: str
    doc: str
    aliases: tuple[str, ...] = ()
    needs: frozenset[str] = field(default_factory=frozenset)
    #: In the table when the config names no metrics.
    default: bool = True
    #: Position among the scorecard's default cards (None: only when asked for).
    card: int | None = None
    #: Added to the default metrics when a model of the run is an ensemble.
    ensemble_default: bool = False
    #: 0 by WB2's definitions for one member (the spread of one member): said in the log.
    one_member_zero: bool = False
    #: Statistics also needed with ``skipna``, where the points of the anomaly sums (f − o,
    #: f′ and o′ not NaN) may differ from those of the error sums (f − o not NaN) by init.
    skipna_statistics: tuple[str, ...] = ()

    @property
    def series(self) -> str | None:
        """The per-init score the scorecard tests (the single term), or None."""
        return next(iter(self.terms)) if len(self.terms) == 1 and self.compare else None

    @property
    def vector(self) -> bool:
        """Defined for a wind vector (the per-init vector MSE only: sum_weight, sum_se)."""
        return set(self.statistics) <= {"sum_weight", "sum_se"}

    def aggregate(self, mean: np.ndarray) -> np.ndarray:
        """Value from the mean of its per-init score (:attr:`series`)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.value({self.series: mean})

    def relative_change(self, m: np.ndarray, b: np.ndarray, tol: float) -> np.ndarray:
        """Relative change (fraction) to the baseline b: (m − b)/b for errors, (m − b)/(1 − b)
        for skill scores; NaN where undefined (|denominator| ≤ tol·|m| for errors, ≤ tol for
        skill) and for the other metrics."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.compare == "error":
                den = b
                ok = np.isfinite(m) & np.isfinite(b) & (np.abs(den) > tol * np.abs(m))
            elif self.compare == "skill":
                den = 1.0 - b
                ok = np.isfinite(m) & np.isfinite(b) & (np.abs(den) > tol)
            else:
                return np.full(np.broadcast(m, b).shape, np.nan)
            return np.where(ok, (m - b) / np.where(ok, den, 1.0), np.nan)

    def better_sign(self, m: np.ndarray, b: np.ndarray) -> np.ndarray:
        """> 0 where the model value m is better than the baseline's b, < 0 worse."""
        if self.better == "higher":
            return m - b
        if self.better == "zero":
            return np.abs(b) - np.abs(m)
        if self.better == "one":
            return np.abs(b - 1) - np.abs(m - 1)
        return b - m

    def units_of(self, units: str) -> str:
        if not units or self.units == "none":
            return ""
        return f"({units})**2" if self.units == "squared" else units


def _mse(s: Stats) -> np.ndarray:
    return s["sum_se"] / s["sum_weight"]


def _acc_centred(s: Stats) -> np.ndarray:
    """ACC_c,t = Σ W (f′−f̄′)(o′−ō′) / √(Σ W (f′−f̄′)² · Σ W (o′−ō′)²), f̄′ = Σ W f′ / Σ W:
    with W' = sum_weight_a, the numerator is sum_fa_oa − sum_fa·sum_oa/W' and the two sums of
    squares sum_fa2 − sum_fa²/W', sum_oa2 − sum_oa²/W'."""
    w = s["sum_weight_a"]
    fo = s["sum_fa_oa"] - s["sum_fa"] * s["sum_oa"] / w
    ff = s["sum_fa2"] - s["sum_fa"] ** 2 / w
    oo = s["sum_oa2"] - s["sum_oa"] ** 2 / w
    return fo / np.sqrt(ff * oo)


_ACC = ("sum_fa_oa", "sum_fa2", "sum_oa2")
_CLIM = frozenset({"climatology"})


def _anomaly_weight(s: Stats) -> np.ndarray:
    """Σ W over the points of one init's anomaly sums: ``sum_weight_a`` where computed (always
    with ``skipna``: :attr:`Metric.skipna_statistics`), else ``sum_weight``. Without
    ``skipna`` the two are equal wherever the anomaly sums are not NaN; a NaN
    ``sum_weight_a`` with sums that are not NaN is one a statistics store written before it
    was computed with ``skipna`` lacks (the error points' weight then, as such stores did)."""
    if "sum_weight_a" not in s:
        return s["sum_weight"]
    wa = np.asarray(s["sum_weight_a"], dtype=np.float64)
    return np.where(np.isnan(wa), s["sum_weight"], wa)


REGISTRY: tuple[Metric, ...] = (
    Metric(
        "rmse", "RMSE", ("sum_weight", "sum_se"), {"mse": _mse},
        lambda m: np.sqrt(m["mse"]), "lower", "error", "same",
        "rmse = sqrt(mean_t MSE_t) (root after the time mean; WB2: sqrt of mse)",
        aliases=("wind_vector_rmse", "rmse_after_time_avg"), card=1,
    ),
    Metric(
        "rmse_per_init", "RMSE (root per init)", ("sum_weight", "sum_se"),
        {"rmse": lambda s: np.sqrt(_mse(s))}, _same("rmse"), "lower", "error", "same",
        "rmse_per_init = mean_t sqrt(MSE_t) (WB2: rmse_sqrt_before_time_avg)",
        aliases=("rmse_sqrt_before_time_avg", "wind_vector_rmse_sqrt_before_time_avg"),
    ),
    Metric(
        "mse", "MSE", ("sum_weight", "sum_se"), {"mse": _mse}, _same("mse"), "lower", "error",
        "squared", "mse = mean_t MSE_t, MSE_t = <(f - o)^2>", aliases=("wind_vector_mse",),
    ),
    Metric(
        "mae", "MAE", ("sum_weight", "sum_ae"), {"mae": lambda s: s["sum_ae"] / s["sum_weight"]},
        _same("mae"), "lower", "error", "same", "mae = mean_t <|f - o|>", card=3,
    ),
    Metric(
        "bias", "Bias", ("sum_weight", "sum_err"),
        {"bias": lambda s: s["sum_err"] / s["sum_weight"]}, _same("bias"), "zero", "abs",
        "same", "bias = mean_t <f - o>", card=4,
    ),
    Metric(
        "acc", "ACC", _ACC,
        {"acc": lambda s: s["sum_fa_oa"] / np.sqrt(s["sum_fa2"] * s["sum_oa2"])},
        _same("acc"), "higher", "skill", "none",
        "acc = mean_t <f'o'>/sqrt(<f'^2><o'^2>) (WB2)", needs=_CLIM, card=2,
    ),
    Metric(
        "acc_pooled", "ACC (pooled)", ("sum_weight", *_ACC),
        {
            "fa_oa": lambda s: s["sum_fa_oa"] / _anomaly_weight(s),
            "fa2": lambda s: s["sum_fa2"] / _anomaly_weight(s),
            "oa2": lambda s: s["sum_oa2"] / _anomaly_weight(s),
        },
        lambda m: m["fa_oa"] / np.sqrt(m["fa2"] * m["oa2"]), "higher", None, "none",
        "acc_pooled = mean_t<f'o'>/sqrt(mean_t<f'^2> mean_t<o'^2>) (WeatherBench-X), <.> the "
        "region mean over the points of the anomaly sums",
        needs=_CLIM, skipna_statistics=("sum_weight_a",),
    ),
    Metric(
        "stde", "SDE", ("sum_weight", "sum_se", "sum_err"),
        {"mse": _mse, "bias": lambda s: s["sum_err"] / s["sum_weight"]},
        lambda m: np.sqrt(m["mse"] - m["bias"] ** 2), "lower", None, "same",
        "stde = sqrt(mean_t MSE_t - (mean_t bias_t)^2) (standard deviation of the error)",
        default=False,
    ),
    Metric(
        "acc_centred", "ACC (centred)", ("sum_weight_a", "sum_fa", "sum_oa", *_ACC),
        {"acc_centred": _acc_centred}, _same("acc_centred"), "higher", "skill", "none",
        "acc_centred = mean_t ACC_c,t with anomalies de-meaned over the region per init: "
        "sum W (f'-mean f')(o'-mean o') / sqrt(sum W (f'-mean f')^2 sum W (o'-mean o')^2)",
        aliases=("acc_centered",), needs=_CLIM, default=False,
    ),
    # precipitation (issue 14): SEEPS for total_precipitation_24hr / _6hr (wxeval.seeps)
    Metric(
        "seeps", "SEEPS", ("sum_weight_seeps", "sum_seeps"),
        {"seeps": lambda s: s["sum_seeps"] / s["sum_weight_seeps"]}, _same("seeps"),
        "lower", "error", "none",
        "seeps = mean_t SEEPS_t, SEEPS_t = <1/2 S[cat f, cat o]> over the points with "
        "0.1 < p1 < 0.85 (Rodwell et al. 2010, as WB2; precipitation accumulations only)",
        needs=_CLIM, default=False,
    ),
)

# ---------------------------------------------------------------------------------------------
# Ensemble forecasts (WeatherBench 2's names and definitions; statistics group ``ensemble``).
# A deterministic forecast is a one-member ensemble: its crps is its mae, its spread 0.


def _ens(name: str) -> Callable[[Stats], np.ndarray]:
    return lambda s: s[name] / s["sum_weight_e"]


def _crps(s: Stats) -> np.ndarray:
    return (s["sum_crps_skill"] - 0.5 * s["sum_crps_spread"]) / s["sum_weight_e"]


def _debiased(s: Stats) -> np.ndarray:
    return (s["sum_ens_mean_se"] - s["sum_ens_var"] / s["ensemble_size"]) / s["sum_weight_e"]


def _var_corrected(s: Stats) -> np.ndarray:
    m = s["ensemble_size"]
    return s["sum_ens_var"] / s["sum_weight_e"] * (m + 1) / m


_RANKS = RANK_STATISTICS


def _rank_outside(s: Stats) -> np.ndarray:
    """Σ W over ranks 0 and M, / Σ W (M = ensemble_size, per init)."""
    m = s["ensemble_size"]
    top = sum((m == k) * s[name] for k, name in enumerate(_RANKS) if k > 0)
    return (s["rank_00"] + top) / s["sum_weight_e"]


_ENS = ("sum_weight_e", "sum_crps_skill", "sum_crps_spread", "sum_ens_var", "sum_ens_mean_se",
        "ensemble_size")


def _ens_mean_metric(name: str, label: str, term: str, stat: str, compare: str | None,
                     units: str, formula: str, **kw) -> Metric:
    """An ensemble metric whose value is the time mean of one term ``Σ stat / Σ W``."""
    return Metric(name, label, _ENS, {term: _ens(stat)}, _same(term), "lower", compare, units,
                  formula, default=False, **kw)

ENSEMBLE_REGISTRY: tuple[Metric, ...] = (
    Metric(
        "crps", "CRPS", _ENS, {"crps": _crps}, _same("crps"), "lower", "error", "same",
        "crps = mean_t <(1/M) sum_i |x_i - o| - (1/(2M(M-1))) sum_ij |x_i - x_j|> (fair CRPS, "
        "WB2; = mae for a deterministic forecast)", default=False, ensemble_default=True,
    ),
    _ens_mean_metric("crps_skill", "CRPS skill term", "crps_skill", "sum_crps_skill", "error",
                     "same", "crps_skill = mean_t <(1/M) sum_i |x_i - o|>"),
    _ens_mean_metric("crps_spread", "CRPS spread term", "crps_spread", "sum_crps_spread", None,
                     "same",
                     "crps_spread = mean_t <sum_ij |x_i - x_j| / (M(M-1))> (0 when M = 1)",
                     one_member_zero=True),
    _ens_mean_metric("ensemble_mean_mse", "Ens. mean MSE", "ens_mse", "sum_ens_mean_se",
                     "error", "squared", "ensemble_mean_mse = mean_t <(mean_i x_i - o)^2>"),
    Metric(
        "ensemble_mean_rmse", "Ens. mean RMSE", _ENS, {"ens_mse": _ens("sum_ens_mean_se")},
        lambda m: np.sqrt(m["ens_mse"]), "lower", "error", "same",
        "ensemble_mean_rmse = sqrt(mean_t ensemble_mean_mse_t) (root after the time mean)",
        default=False, ensemble_default=True,
    ),
    Metric(
        "ensemble_mean_rmse_sqrt_before_time_avg", "Ens. mean RMSE (root per init)", _ENS,
        {"ens_rmse": lambda s: np.sqrt(_ens("sum_ens_mean_se")(s))}, _same("ens_rmse"),
        "lower", "error", "same",
        "ensemble_mean_rmse_sqrt_before_time_avg = mean_t sqrt(ensemble_mean_mse_t)",
        default=False,
    ),
    Metric(
        "debiased_ensemble_mean_mse", "Debiased ens. mean MSE", _ENS,
        {"debiased_ens_mse": _debiased}, _same("debiased_ens_mse"), "lower", "error",
        "squared", "debiased_ensemble_mean_mse = mean_t <(mean_i x_i - o)^2 - s^2/M>",
        default=False,
    ),
    Metric(
        "ensemble_variance", "Ens. variance", _ENS, {"ens_var": _ens("sum_ens_var")},
        _same("ens_var"), "lower", None, "squared",
        "ensemble_variance = mean_t <s^2>, s^2 = sum_i (x_i - mean x)^2/(M-1) (0 when M = 1)",
        default=False, ensemble_default=True, one_member_zero=True,
    ),
    Metric(
        "ensemble_stddev_sqrt_before_time_avg", "Ens. spread (root per init)", _ENS,
        {"ens_sd": lambda s: np.sqrt(_ens("sum_ens_var")(s))}, _same("ens_sd"), "lower", None,
        "same", "ensemble_stddev_sqrt_before_time_avg = mean_t sqrt(<s^2>)", default=False,
        one_member_zero=True,
    ),
    Metric(
        "spread_skill_ratio", "Spread/skill", _ENS,
        {"ens_var": _ens("sum_ens_var"), "ens_mse": _ens("sum_ens_mean_se")},
        lambda m: np.sqrt(m["ens_var"]) / np.sqrt(m["ens_mse"]), "one", None, "none",
        "spread_skill_ratio = sqrt(mean_t ensemble_variance_t) / sqrt(mean_t "
        "ensemble_mean_mse_t) (ideal 1; 0 when M = 1)", default=False,
        ensemble_default=True, one_member_zero=True,
    ),
    Metric(
        "spread_skill_ratio_corrected", "Spread/skill (corrected)", _ENS,
        {"ens_var_corrected": _var_corrected, "ens_mse": _ens("sum_ens_mean_se")},
        lambda m: np.sqrt(m["ens_var_corrected"]) / np.sqrt(m["ens_mse"]), "one", None, "none",
        "spread_skill_ratio_corrected = spread_skill_ratio * sqrt((M+1)/M) (Fortin et al. "
        "2014; ideal 1 for a reliable ensemble)", default=False, ensemble_default=True,
        one_member_zero=True,
    ),
    Metric(
        "rank_histogram", "Rank histogram (outside fraction)",
        ("sum_weight_e", "ensemble_size", *_RANKS),
        {"rank_outside": _rank_outside}, _same("rank_outside"), "lower", None, "none",
        "rank_histogram: area-weighted counts of the truth's rank among the M members (M + 1 "
        "bins per region and lead, in the statistics and the report; ties share equally); "
        "its table value is the fraction of the truth outside the members (rank 0 or M; "
        "2/(M+1) for a reliable ensemble)", default=False, ensemble_default=True,
    ),
)
#: Added to the default metrics when a model of the run is an ensemble (a member dimension).
ENSEMBLE_DEFAULTS = tuple(m.name for m in ENSEMBLE_REGISTRY if m.ensemble_default)
REGISTRY = REGISTRY + ENSEMBLE_REGISTRY

BY_NAME: dict[str, Metric] = {m.name: m for m in REGISTRY}
ALIASES: dict[str, str] = {a: m.name for m in REGISTRY for a in m.aliases}


def get(name: str) -> Metric:
    return BY_NAME[name]
