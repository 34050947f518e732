"""Peer cross-checks for aistd-compliance, run by scripts/test.sh.

- dp-accounting's RdpAccountant and `aistd privacy epsilon --orders 2..64` agree to a relative
  1e-9 on 200 random (q, sigma, steps, delta) (integer orders only: on fractional orders
  dp-accounting sums absolute values of the series, a looser bound; see compliance/src/privacy.rs).
- fairlearn's MetricFrame and `aistd fairness` agree to 1e-9 on random data with weights, three
  groups and an intersection with a second feature.
- fairlearn's ThresholdOptimizer and `aistd mitigate thresholds` agree row by row; reweighing
  matches the Kamiran-Calders formula computed with pandas.
- The exact samplers (`aistd privacy sample`) against OpenDP's samplers (two-sample tests) and
  against scipy's distributions (goodness of fit), each at p > 1e-6; the same tests against a
  10% wrong scale must fail, so they have power.

Usage: check_compliance.py AISTD_BINARY WORK_DIR
"""

import json
import pathlib
import random
import shutil
import subprocess
import sys
from peercheck import check, passed

import dp_accounting
import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score

AISTD = sys.argv[1]
WORK = pathlib.Path(sys.argv[2])
shutil.rmtree(WORK, ignore_errors=True)
WORK.mkdir(parents=True)




def aistd(*args):
    p = subprocess.run([AISTD, *map(str, args)], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"aistd {' '.join(map(str, args))} failed:\n{p.stderr}")
    return json.loads(p.stdout)


# --- differential privacy --------------------------------------------------------------------
rng = random.Random(42)
orders = list(range(2, 65))
worst = 0.0
for trial in range(200):
    q = 10 ** rng.uniform(-4, -0.3)
    sigma = rng.uniform(0.5, 8.0)
    steps = rng.randrange(1, 20000)
    delta = 10 ** rng.uniform(-9, -3)
    acc = dp_accounting.rdp.RdpAccountant(orders)
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    theirs = acc.get_epsilon(delta)
    ours = aistd("privacy", "epsilon", "--sampling-rate", repr(q), "--noise-multiplier", repr(sigma),
                 "--steps", steps, "--delta", repr(delta), "--orders", "2..64", "--json")["epsilon"]
    rel = abs(ours - theirs) / max(abs(theirs), 1e-300)
    worst = max(worst, rel)
    if rel >= 1e-9:
        raise SystemExit(f"FAIL: q={q} sigma={sigma} steps={steps} delta={delta}: aistd {ours} vs dp-accounting {theirs}")
check(True, f"200 random DP-SGD settings: aistd privacy epsilon = dp-accounting RdpAccountant (worst relative error {worst:.1e})")

# Opacus' headline number on Opacus' default orders.
eps = aistd("privacy", "epsilon", "--sampling-rate", 0.04, "--noise-multiplier", 1.5, "--steps", 2250,
            "--delta", 1e-5, "--json")["epsilon"]
check(abs(eps - 7.32911117143) < 1e-9, f"Opacus vector: epsilon {eps:.11f}")
nm = aistd("privacy", "noise-multiplier", "--sampling-rate", 0.04, "--steps", 2250, "--epsilon", 7.33,
           "--delta", 1e-5, "--json")
check(abs(nm["noise_multiplier"] - 1.5) < 0.01 and nm["epsilon"] <= 7.33, f"noise calibration: {nm}")

# --- fairness --------------------------------------------------------------------------------
nrng = np.random.default_rng(7)
n = 5000
df = pd.DataFrame({
    "group": nrng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2]),
    "region": nrng.choice(["north", "south"], size=n),
    "y_true": nrng.integers(0, 2, size=n),
    "y_pred": nrng.integers(0, 2, size=n),
    "w": nrng.uniform(0.1, 3.0, size=n),
})
csv = WORK / "preds.csv"
df.to_csv(csv, index=False)
metrics = {"count": count, "selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
           "false_positive_rate": false_positive_rate, "accuracy_score": accuracy_score}

for sensitive in (["group"], ["group", "region"]):
    args = []
    for s in sensitive:
        args += ["--sensitive", s]
    ours = aistd("fairness", "--input", csv, "--y-true", "y_true", "--y-pred", "y_pred", "--weight", "w", *args, "--json")
    sf = df[sensitive] if len(sensitive) > 1 else df[sensitive[0]]
    weighted = {k: ({"sample_weight": df["w"]} if k != "count" else {}) for k in metrics}
    mf = MetricFrame(metrics=metrics, y_true=df["y_true"], y_pred=df["y_pred"], sensitive_features=sf,
                     sample_params=weighted)
    worst = 0.0
    for row in ours["by_group"]:
        key = tuple(row["group"]) if len(sensitive) > 1 else row["group"][0]
        theirs = mf.by_group.loc[key]
        for name in metrics:
            if name == "count":
                assert row["metrics"]["count"] == theirs["count"], (key, row, theirs)
                continue
            worst = max(worst, abs(row["metrics"][name] - theirs[name]))
    for name in metrics:
        if name != "count":
            worst = max(worst, abs(ours["overall"][name] - mf.overall[name]))
    check(worst < 1e-9, f"per-group metrics by {' x '.join(sensitive)} ({len(ours['by_group'])} groups) = fairlearn MetricFrame (max |diff| {worst:.1e})")
    kw = {"y_true": df["y_true"], "y_pred": df["y_pred"], "sensitive_features": sf, "sample_weight": df["w"]}
    for method, ours_m in (("between_groups", ours), ("to_overall", ours["to_overall"])):
        pairs = [
            ("demographic_parity_difference", demographic_parity_difference(**kw, method=method)),
            ("demographic_parity_ratio", demographic_parity_ratio(**kw, method=method)),
            ("equalized_odds_difference", equalized_odds_difference(**kw, method=method)),
            ("equalized_odds_ratio", equalized_odds_ratio(**kw, method=method)),
        ]
        diffs = {name: abs(ours_m[name] - theirs) for name, theirs in pairs}
        check(max(diffs.values()) < 1e-9, f"{method} disparities by {' x '.join(sensitive)} = fairlearn ({max(diffs.values()):.1e})")

# --- mitigation -------------------------------------------------------------------------------
# Threshold optimization: fairlearn's ThresholdOptimizer (accuracy objective, grid 1000, no
# flipping) on a prefit scorer; per-row probabilities of a positive prediction must agree.
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin


class Passthrough(BaseEstimator, ClassifierMixin):
    """A prefit 'model' whose prediction is the score column itself."""

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X):
        return np.asarray(X)[:, 0]


m = 3000
grp = nrng.choice(["a", "b", "c"], size=m, p=[0.5, 0.3, 0.2])
base = np.select([grp == "a", grp == "b"], [0.6, 0.4], 0.3)
y = (nrng.uniform(size=m) < base).astype(int)
score = y * 0.8 + nrng.uniform(size=m) + np.select([grp == "a", grp == "b"], [0.3, 0.0], -0.2)
sd = pd.DataFrame({"y": y, "score": score, "group": grp})
scsv = WORK / "scores.csv"
sd.to_csv(scsv, index=False, float_format="%.17g")
for constraint in ("demographic_parity", "equalized_odds"):
    ours = aistd("mitigate", "thresholds", "--input", scsv, "--y-true", "y", "--score", "score",
                 "--sensitive", "group", "--constraint", constraint, "--json")
    to = ThresholdOptimizer(estimator=Passthrough().fit(None, None), constraints=constraint,
                            objective="accuracy_score", prefit=True, predict_method="predict", flip=False)
    X = sd[["score"]].to_numpy()
    to.fit(X, sd["y"], sensitive_features=sd["group"])
    theirs = to._pmf_predict(X, sensitive_features=sd["group"])[:, 1]
    diff = np.max(np.abs(np.asarray(ours["probabilities"]) - theirs))
    check(diff < 1e-9, f"ThresholdOptimizer({constraint}) per-row P(positive) = fairlearn (max |diff| {diff:.1e}, x = {ours['x_best']})")

# Reweighing: every row's weight against W(s, y) = n_y n_s / (n n_sy) computed with pandas.
ours = aistd("mitigate", "reweigh", "--input", scsv, "--y-true", "y", "--sensitive", "group", "--json")
n_y = sd.groupby("y")["y"].transform("size")
n_s = sd.groupby("group")["y"].transform("size")
n_sy = sd.groupby(["group", "y"])["y"].transform("size")
want = (n_y * n_s / (len(sd) * n_sy)).to_numpy()
diff = np.max(np.abs(np.asarray(ours["weights"]) - want))
check(diff < 1e-12, f"reweighing weights = Kamiran-Calders formula in pandas (max |diff| {diff:.1e})")

# --- exact samplers vs OpenDP and scipy --------------------------------------------------------
import opendp.prelude as odp
from scipy import stats

odp.enable_features("contrib")
N = 40000


def ours(mechanism, scale, seed):
    p = subprocess.run([AISTD, "privacy", "sample", "--mechanism", mechanism, "--scale", repr(scale),
                        "--count", str(N), "--seed", seed * 32], capture_output=True, text=True, check=True)
    return np.array([float(x) for x in p.stdout.split()])


def theirs(int_domain, scale, gaussian):
    T = int if int_domain else float
    dom = odp.vector_domain(odp.atom_domain(T=T, nan=None if int_domain else False))
    metric = (odp.l2_distance if gaussian else odp.l1_distance)(T=T)
    m = (odp.m.make_gaussian if gaussian else odp.m.make_laplace)(dom, metric, scale=scale)
    return np.array(m([T(0)] * N), dtype=float)


def pmf_bins(x, lo, hi):
    return np.array([np.sum(np.clip(x, lo, hi) == k) for k in range(lo, hi + 1)])


for name, scale, gaussian in (("discrete-gaussian", 3.0, True), ("discrete-laplace", 2.5, False)):
    a, b = ours(name, scale, "a1"), theirs(True, scale, gaussian)
    lo, hi = (-12, 12) if gaussian else (-15, 15)
    table = np.vstack([pmf_bins(a, lo, hi), pmf_bins(b, lo, hi)])
    p_two = stats.chi2_contingency(table)[1]
    ks = np.arange(-4000, 4001)
    w = np.exp(-ks.astype(float) ** 2 / (2 * scale**2)) if gaussian else np.exp(-np.abs(ks) / scale)
    w /= w.sum()

    def expected(w):
        e = np.array([w[(ks >= k) if k == hi else (ks <= k) if k == lo else (ks == k)].sum() for k in range(lo, hi + 1)])
        return e * N

    p_fit = stats.chisquare(table[0], expected(w))[1]
    w_bad = np.exp(-ks.astype(float) ** 2 / (2 * (1.1 * scale) ** 2)) if gaussian else np.exp(-np.abs(ks) / (1.1 * scale))
    p_bad = stats.chisquare(table[0], expected(w_bad / w_bad.sum()))[1]
    check(p_two > 1e-6 and p_fit > 1e-6 and p_bad < 1e-6,
          f"{name}({scale}): same law as OpenDP (chi2 p = {p_two:.3g}), fits the exact pmf (p = {p_fit:.3g}), a 10% wrong scale is rejected (p = {p_bad:.1e})")

for name, scale, gaussian in (("gaussian", 2.0, True), ("laplace", 1.5, False)):
    a, b = ours(name, scale, "b2"), theirs(False, scale, gaussian)
    dist = stats.norm(scale=scale) if gaussian else stats.laplace(scale=scale)
    bad = stats.norm(scale=1.1 * scale) if gaussian else stats.laplace(scale=1.1 * scale)
    p_two = stats.ks_2samp(a, b).pvalue
    p_fit = stats.kstest(a, dist.cdf).pvalue
    p_bad = stats.kstest(a, bad.cdf).pvalue
    check(p_two > 1e-6 and p_fit > 1e-6 and p_bad < 1e-6,
          f"{name}({scale}): same law as OpenDP (KS p = {p_two:.3g}), fits scipy's CDF (p = {p_fit:.3g}), a 10% wrong scale is rejected (p = {p_bad:.1e})")

print(f"\nall {passed()} compliance peer checks passed")
