"""Peer cross-checks for aistd-governance.

Drives the `aistd` CLI, then checks its outputs with pyarrow and pandas:
  * pyarrow reads data.arrow and quarantine.arrow with the schema and row counts that report.json states;
  * pandas, on the same CSV, finds the same exact duplicates and the same nulls per column as our report
    and profile.
Usage: check_governance.py PATH/TO/aistd WORKDIR
"""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

PASSED = 0
FAILED = 0


def check(name, ok, detail=""):
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print(f"  ok   {name}")
    else:
        FAILED += 1
        print(f"  FAIL {name} {detail}")


def run(*args):
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return out.stdout


ARROW_TYPES = {
    "Int64": pa.int64(),
    "Float64": pa.float64(),
    "Utf8": pa.string(),
    "Boolean": pa.bool_(),
    "Date32": pa.date32(),
    "UInt64": pa.uint64(),
}


def main():
    aistd, work = sys.argv[1], Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    csv = work / "loans.csv"
    truth = json.loads(run(aistd, "data", "generate", "--rows", "30000", "--seed", "7", "--out", str(csv), "--json"))
    out = work / "governed"
    report = json.loads(run(aistd, "data", "govern", str(csv), "--out", str(out), "--drop-null", "income",
                            "--near-dup-keys", "name,email", "--json"))

    print("pyarrow reads what aistd wrote:")
    data = ipc.open_file(out / "data.arrow").read_all()
    quarantine = ipc.open_file(out / "quarantine.arrow").read_all()
    check("data.arrow row count == report.rows_out", data.num_rows == report["rows_out"],
          f"{data.num_rows} vs {report['rows_out']}")
    check("quarantine.arrow row count == report.rows_quarantined",
          quarantine.num_rows == report["rows_quarantined"])
    want = pa.schema([(n, ARROW_TYPES[t]) for n, t in report["output_schema"]])
    check("data.arrow schema == report.output_schema", data.schema.remove_metadata().equals(want, check_metadata=False),
          f"{data.schema} vs {want}")
    check("quarantine has _row, _reason, _detail",
          quarantine.schema.names[-3:] == ["_row", "_reason", "_detail"])
    reasons = quarantine.column("_reason").to_pylist()
    by_reason = {r: reasons.count(r) for r in set(reasons)}
    check("quarantine reasons == report.quarantined_by_reason", by_reason == report["quarantined_by_reason"],
          f"{by_reason} vs {report['quarantined_by_reason']}")
    check("rows_in == rows_out + rows_quarantined",
          report["rows_in"] == report["rows_out"] + report["rows_quarantined"])
    rows = sorted(quarantine.column("_row").to_pylist())
    check("quarantined row numbers are distinct input rows", len(set(rows)) == len(rows) and rows[-1] < report["rows_in"])

    print("pandas on the same CSV agrees with our counts:")
    df = pd.read_csv(csv)
    dups = int(df.duplicated().sum())
    check("exact duplicates (pandas duplicated()) == report.duplicates_removed", dups == report["duplicates_removed"],
          f"pandas {dups} vs aistd {report['duplicates_removed']}")
    check("exact duplicates == generator ground truth", dups == truth["exact_duplicates"])
    profile = json.loads(run(aistd, "data", "profile", str(csv), "--json"))
    ours = {c["name"]: c["nulls"] + c["nans"] for c in profile["columns"]}
    theirs = {k: int(v) for k, v in df.isna().sum().items()}
    check("nulls per column (pandas isna(), NaN included) == profile nulls + NaNs", ours == theirs,
          f"\n    aistd  {ours}\n    pandas {theirs}")
    check("rows (pandas) == profile rows", len(df) == profile["rows"])
    for col in ["income", "credit_score", "loan_amount"]:
        c = next(c for c in profile["columns"] if c["name"] == col)
        s = df[col].dropna()
        check(f"mean/std of {col} match pandas to 1e-9 relative",
              abs(c["mean"] - s.mean()) <= 1e-9 * abs(s.mean()) and abs(c["std"] - s.std()) <= 1e-9 * abs(s.std()),
              f"{c['mean']}, {c['std']} vs {s.mean()}, {s.std()}")
        q = dict((round(k, 2), v) for k, v in c["quantiles"])
        check(f"median of {col} matches pandas (exact below 65,536 values)", abs(q[0.5] - s.quantile(0.5)) < 1e-9,
              f"{q[0.5]} vs {s.quantile(0.5)}")
        # aistd counts NaN as one distinct value; pandas' nunique drops it.
        check(f"distinct {col} matches pandas nunique", c["distinct"] == df[col].nunique() + (1 if c["nans"] else 0),
              f"{c['distinct']} vs {df[col].nunique()}")

    print(f"{PASSED} passed, {FAILED} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
