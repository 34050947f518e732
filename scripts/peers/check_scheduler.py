"""Peer cross-checks for aistd-scheduler, run by scripts/test.sh.

- prometheus_client's OpenMetrics parser reads `metrics.prom` from `aistd sched simulate --report`
  and its values equal `usage.json`'s.
- pandas recounts GPU-hours and cost per tenant from the trace itself, on a cluster large enough
  that no job waits, and they equal aistd's bill to 1e-9.
- xml.etree parses the SVG plot.

Usage: check_scheduler.py AISTD_BINARY WORK_DIR
"""

import json
import pathlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pandas as pd
from prometheus_client.openmetrics.parser import text_string_to_metric_families

AISTD = sys.argv[1]
WORK = pathlib.Path(sys.argv[2])
shutil.rmtree(WORK, ignore_errors=True)
WORK.mkdir(parents=True)


def run(*args):
    out = subprocess.run([AISTD, *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"aistd {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


trace = WORK / "syn.csv"
run("sched", "generate", "--jobs", "400", "--interarrival", "20", "--seed", "11", "--out", str(trace))
prices = WORK / "prices.json"
prices.write_text(json.dumps({"gpu_hour": {"default": 2.0}, "cpu_hour": 0.05, "mem_gib_hour": 0.01}))
report = WORK / "report"
# 400 nodes × 8 GPUs: every job starts on arrival.
out = json.loads(
    run("sched", "simulate", "--trace", str(trace), "--trace-format", "generic", "--nodes", "400",
        "--report", str(report), "--prices", str(prices), "--json")
)
assert out["completed"] == 400 and out["avg_wait"] == 0.0, out
usage = json.loads((report / "usage.json").read_text())

# 1. OpenMetrics, parsed by the reference client.
families = {f.name: f for f in text_string_to_metric_families((report / "metrics.prom").read_text())}
util = {s.labels["resource"]: s.value for s in families["aistd_sched_utilization_ratio"].samples}
assert abs(util["gpu"] - usage["gpu_utilization"]) < 1e-12, (util, usage["gpu_utilization"])
cost = {s.labels["tenant"]: s.value for s in families["aistd_sched_tenant_cost"].samples}
for t in usage["tenants"]:
    assert abs(cost[t["tenant"]] - t["cost"]) < 1e-9, (t, cost)
print(f"prometheus_client parses metrics.prom: {len(families)} families, {len(cost)} tenants")

# 2. pandas recounts the bill from the trace.
df = pd.read_csv(trace)
df["gpu_h"] = df.tasks * df.gpu * df.duration / 3600
df["cpu_h"] = df.tasks * df.cpu * df.duration / 3600
df["gib_h"] = df.tasks * df.mem_mib / 1024 * df.duration / 3600
by = df.groupby("tenant")[["gpu_h", "cpu_h", "gib_h"]].sum()
ours = {t["tenant"]: t for t in usage["tenants"]}
assert set(ours) == set(by.index), (set(ours), set(by.index))
for tenant, row in by.iterrows():
    o = ours[tenant]
    want_cost = row.gpu_h * 2.0 + row.cpu_h * 0.05 + row.gib_h * 0.01
    for got, want in [(o["gpu_hours"], row.gpu_h), (o["cpu_hours"], row.cpu_h),
                      (o["mem_gib_hours"], row.gib_h), (o["cost"], want_cost)]:
        assert abs(got - want) <= 1e-9 * max(1.0, abs(want)), (tenant, got, want)
span = usage["end"] - usage["start"]
want_util = df.gpu_h.sum() * 3600 / (400 * 8 * span)
assert abs(usage["gpu_utilization"] - want_util) < 1e-9, (usage["gpu_utilization"], want_util)
print(f"pandas agrees on {len(by)} tenants' GPU-, core- and GiB-hours and cost, and utilization {want_util:.4f}")

# 3. The plot is well-formed SVG.
root = ET.parse(report / "utilization.svg").getroot()
assert root.tag.endswith("svg") and len(list(root)) > 10
print("utilization.svg parses")
