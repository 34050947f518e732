"""Recomputes `aistd drift` with numpy and scipy, run by scripts/test.sh.

For a reference and a shifted current dataset (one feature unchanged, one shifted, one scaled,
one integer-valued with repeated quantiles, one with missing values), every value `aistd drift
--json` reports is recomputed from the raw CSVs: the bin edges (numpy.quantile), the bin counts,
PSI (Evidently's formula), the Kolmogorov-Smirnov statistic (scipy.stats.ks_2samp on the binned
samples) and asymptotic p-value (scipy.special.kolmogorov), the Jensen-Shannon distance
(scipy.spatial.distance.jensenshannon) and the Wasserstein distance
(scipy.stats.wasserstein_distance with bin weights); all agree to 1e-6, and the drift flags
follow Evidently's PSI >= 0.1 and a Bonferroni-corrected p < 0.05.

Usage: check_drift.py AISTD_BINARY WORK_DIR
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.special import kolmogorov
from scipy.stats import ks_2samp, wasserstein_distance
from peercheck import check, passed

AISTD = os.path.abspath(sys.argv[1])
WORK = pathlib.Path(sys.argv[2])




shutil.rmtree(WORK, ignore_errors=True)
WORK.mkdir(parents=True)
rng = np.random.default_rng(7)
n, m = 5000, 3000
ref = {
    "stable": rng.normal(0, 1, n),
    "shifted": rng.normal(0, 1, n),
    "scaled": rng.exponential(1.0, n),
    "counts": rng.poisson(2.0, n).astype(float),
    "gappy": rng.uniform(0, 10, n),
}
cur = {
    "stable": rng.normal(0, 1, m),
    "shifted": rng.normal(0.5, 1, m),
    "scaled": rng.exponential(1.6, m),
    "counts": rng.poisson(2.3, m).astype(float),
    "gappy": rng.uniform(0, 10, m),
}
cur["gappy"][::10] = np.nan
names = list(ref)


def write(path, cols):
    rows = zip(*(cols[k] for k in names))
    with open(path, "w") as f:
        f.write(",".join(names) + "\n")
        for r in rows:
            f.write(",".join("" if np.isnan(v) else repr(float(v)) for v in r) + "\n")


write(WORK / "ref.csv", ref)
write(WORK / "cur.csv", cur)
BINS = 10
out = json.loads(subprocess.run([AISTD, "drift", "--reference", WORK / "ref.csv", "--current", WORK / "cur.csv",
                                 "--bins", str(BINS), "--json"], check=True, capture_output=True, text=True).stdout)
profile = {f["name"]: f for f in out["profile"]["features"]}
report = {f["name"]: f for f in out["report"]}


def close(a, b, tol=1e-6):
    return abs(a - b) <= tol


for name in names:
    r = ref[name][~np.isnan(ref[name])]
    c = cur[name][~np.isnan(cur[name])]
    edges = np.unique(np.quantile(r, np.linspace(0, 1, BINS + 1)))
    inner = edges[1:-1]
    rb = np.bincount(np.searchsorted(inner, r, side="right"), minlength=len(edges) - 1)
    cb = np.bincount(np.searchsorted(inner, c, side="right"), minlength=len(edges) - 1)
    p = profile[name]
    check(np.allclose(p["edges"], edges, rtol=0, atol=1e-12) and p["counts"] == rb.tolist(),
          f"{name}: {len(edges) - 1} quantile bins and reference counts as numpy")
    f = report[name]
    check(f["current_count"] == len(c) and f["current_nans"] == int(np.isnan(cur[name]).sum()),
          f"{name}: {len(c)} current values, {f['current_nans']} missing")
    rp, cp = rb / rb.sum(), cb / cb.sum()
    rf, cf = np.where(rp == 0, 0.0001, rp), np.where(cp == 0, 0.0001, cp)
    psi = float(np.sum((cf - rf) * np.log(cf / rf)))
    centres = (edges[:-1] + edges[1:]) / 2
    ks = ks_2samp(np.repeat(centres, rb), np.repeat(centres, cb))
    en = len(r) * len(c) / (len(r) + len(c))
    pval = float(kolmogorov(np.sqrt(en) * ks.statistic))
    js = float(jensenshannon(rp, cp))
    w = float(wasserstein_distance(centres, centres, rb, cb))
    ok = (close(f["psi"], psi) and close(f["ks_statistic"], ks.statistic) and close(f["ks_p_value"], pval)
          and close(f["jensen_shannon"], js) and close(f["wasserstein"], w))
    check(ok, f"{name}: PSI {psi:.5f}, KS D {ks.statistic:.5f} p {pval:.3g}, JS {js:.5f}, W1 {w:.5f} agree with scipy to 1e-6")
    check(f["psi_drift"] == (psi >= 0.1) and f["ks_drift"] == (pval < 0.05 / len(names)),
          f"{name}: drift flags (PSI {f['psi_drift']}, KS {f['ks_drift']})")

check(not report["stable"]["psi_drift"] and not report["stable"]["ks_drift"], "the unchanged feature shows no drift")
check(report["shifted"]["psi_drift"] and report["shifted"]["ks_drift"], "the shifted feature drifts on both tests")
check(report["scaled"]["ks_drift"], "the scaled feature drifts (KS)")
print(f"\nall {passed()} drift checks passed")
