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
import urllib.request

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.special import kolmogorov
from scipy.stats import ks_2samp, wasserstein_distance
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from peercheck import check, passed, serve, stop

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


def scipy_drift(ref, cur):
    """Per feature: bin edges and reference counts, and every statistic, from numpy and scipy."""
    out = {}
    for name in names:
        r = ref[name][~np.isnan(ref[name])]
        c = cur[name][~np.isnan(cur[name])]
        edges = np.unique(np.quantile(r, np.linspace(0, 1, BINS + 1)))
        inner = edges[1:-1]
        rb = np.bincount(np.searchsorted(inner, r, side="right"), minlength=len(edges) - 1)
        cb = np.bincount(np.searchsorted(inner, c, side="right"), minlength=len(edges) - 1)
        rp, cp = rb / rb.sum(), cb / cb.sum()
        rf, cf = np.where(rp == 0, 0.0001, rp), np.where(cp == 0, 0.0001, cp)
        centres = (edges[:-1] + edges[1:]) / 2
        ks = ks_2samp(np.repeat(centres, rb), np.repeat(centres, cb))
        en = len(r) * len(c) / (len(r) + len(c))
        out[name] = {
            "edges": edges, "counts": rb.tolist(), "current_count": len(c),
            "current_nans": int(np.isnan(cur[name]).sum()),
            "psi": float(np.sum((cf - rf) * np.log(cf / rf))), "ks_statistic": float(ks.statistic),
            "ks_p_value": float(kolmogorov(np.sqrt(en) * ks.statistic)), "jensen_shannon": float(jensenshannon(rp, cp)),
            "wasserstein": float(wasserstein_distance(centres, centres, rb, cb)),
        }
    return out


STATS = ["psi", "ks_statistic", "ks_p_value", "jensen_shannon", "wasserstein"]
expected = scipy_drift(ref, cur)
for name in names:
    e, p, f = expected[name], profile[name], report[name]
    check(np.allclose(p["edges"], e["edges"], rtol=0, atol=1e-12) and p["counts"] == e["counts"],
          f"{name}: {len(e['edges']) - 1} quantile bins and reference counts as numpy")
    check(f["current_count"] == e["current_count"] and f["current_nans"] == e["current_nans"],
          f"{name}: {e['current_count']} current values, {f['current_nans']} missing")
    check(all(close(f[k], e[k]) for k in STATS),
          f"{name}: PSI {e['psi']:.5f}, KS D {e['ks_statistic']:.5f} p {e['ks_p_value']:.3g}, JS {e['jensen_shannon']:.5f}, "
          f"W1 {e['wasserstein']:.5f} agree with scipy to 1e-6")
    check(f["psi_drift"] == (e["psi"] >= 0.1) and f["ks_drift"] == (e["ks_p_value"] < 0.05 / len(names)),
          f"{name}: drift flags (PSI {f['psi_drift']}, KS {f['ks_drift']})")

check(not report["stable"]["psi_drift"] and not report["stable"]["ks_drift"], "the unchanged feature shows no drift")
check(report["shifted"]["psi_drift"] and report["shifted"]["ks_drift"], "the shifted feature drifts on both tests")
check(report["scaled"]["ks_drift"], "the scaled feature drifts (KS)")

# The same current data served: `aistd serve --drift-reference` watches the input of an identity
# model and /metrics (read by prometheus_client) carries the numbers scipy gave above.
(WORK / "src").mkdir()
(WORK / "src" / "README").write_text("identity model for the served-drift check\n")
subprocess.run([AISTD, "bundle", "create", "--from", WORK / "src", "--out", WORK / "bundle", "--name", "echo",
                "--version", "1", "--platform", "identity", "--input", f"x:FP32:-1,{len(names)}",
                "--output", f"y:FP32:-1,{len(names)}"], check=True, capture_output=True)
# f32 as served: the reference CSV holds the f32 values too, so both sides bin the same numbers.
ref32 = {k: v.astype(np.float32).astype(float) for k, v in ref.items()}
cur32 = np.stack([cur[k] for k in names], axis=1).astype(np.float32)
write(WORK / "ref32.csv", ref32)
server, url = serve([AISTD, "serve", WORK / "bundle", "--port", "0", "--drift-reference", WORK / "ref32.csv",
                     "--drift-bins", str(BINS)])
try:
    client = httpclient.InferenceServerClient(url=url)
    for start in range(0, len(cur32), 500):
        rows = cur32[start:start + 500]
        inp = httpclient.InferInput("x", list(rows.shape), "FP32")
        inp.set_data_from_numpy(rows, binary_data=True)
        client.infer("echo", [inp])
    with urllib.request.urlopen(f"http://{url}/metrics") as r:
        text = r.read().decode()
finally:
    stop(server)
samples = {}
for fam in text_string_to_metric_families(text):
    for sm in fam.samples:
        if sm.name.startswith("aistd_drift_"):
            samples[(sm.name, sm.labels.get("feature"), sm.labels.get("test"))] = sm.value
want = scipy_drift(ref32, {k: cur32[:, i].astype(float) for i, k in enumerate(names)})
for name in names:
    e = want[name]
    got = {k: samples[(f"aistd_drift_{k}", name, None)] for k in STATS}
    check(all(close(got[k], e[k]) for k in STATS)
          and samples[("aistd_drift_observations", name, None)] == e["current_count"],
          f"{name}: served /metrics drift agrees with scipy to 1e-6 (PSI {got['psi']:.5f}, {e['current_count']} values)")
    check(samples[("aistd_drift_detected", name, "psi")] == float(e["psi"] >= 0.1)
          and samples[("aistd_drift_detected", name, "ks")] == float(e["ks_p_value"] < 0.05 / len(names)),
          f"{name}: aistd_drift_detected follows PSI >= 0.1 and Bonferroni KS")
print(f"\nall {passed()} drift checks passed")
