"""Polars side of the governance benchmark, timed in the same run as aistd.

Workload, on the same Arrow IPC file: drop rows whose income is null or NaN or whose email is null,
remove exact duplicates (first kept), evaluate five expectations on the result, write the clean
table to Arrow IPC. Also: profile throughput (`aistd data profile` vs polars describe + n_unique + value_counts).
Also: CSV -> Arrow IPC conversion (`aistd data convert` vs polars read_csv + write_ipc) on the same rows as CSV.
Usage: bench_governance.py AISTD FILE.arrow FILE.csv WORKDIR REPEATS
Prints one JSON object.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

# The e-mail pattern aistd's `match_format: email` uses (governance/src/format.rs).
EMAIL = (r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
         r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def polars_clean_and_check(path, out):
    df = pl.read_ipc(path)
    df = df.filter(pl.col("income").is_not_null() & ~pl.col("income").is_nan() & pl.col("email").is_not_null())
    df = df.unique(maintain_order=True)
    e = df.select(
        pl.col("name").is_null().sum().alias("not_null_name"),
        (~pl.col("credit_score").is_between(300, 850)).sum().alias("between_score"),
        (~pl.col("gender").is_in(["female", "male", "nonbinary"])).sum().alias("in_set_gender"),
        (~pl.col("email").str.contains(EMAIL)).sum().alias("email_format"),
        pl.col("income").mean().alias("mean_income"),
    ).row(0, named=True)
    df.write_ipc(out)
    return df.height, e


def best_of(repeats, fn):
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main():
    aistd, path, csv, work, repeats = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])
    work.mkdir(parents=True, exist_ok=True)
    rows = pl.scan_ipc(path).select(pl.len()).collect().item()
    yaml = Path(__file__).with_name("five_expectations.yaml")

    def ours():
        out = subprocess.run([aistd, "data", "govern", path, "--out", str(work / "aistd"), "--drop-null", "income",
                              "--drop-null", "email", "--expectations", str(yaml), "--no-profile",
                              "--no-fingerprint", "--json"], check=True, capture_output=True, text=True).stdout
        return json.loads(out)

    t_ours, report = best_of(repeats, ours)
    t_theirs, (their_rows, their_e) = best_of(repeats, lambda: polars_clean_and_check(path, work / "polars.arrow"))
    if report["rows_out"] != their_rows:
        sys.exit(f"row counts differ: aistd {report['rows_out']} vs polars {their_rows}")
    ours_e = [r["unexpected_count"] for r in report["expectations"][:4]]
    theirs_e = [their_e[k] for k in ("not_null_name", "between_score", "in_set_gender", "email_format")]
    if ours_e != theirs_e:
        sys.exit(f"expectation counts differ: aistd {ours_e} vs polars {theirs_e}")

    def our_profile():
        subprocess.run([aistd, "data", "profile", path, "--json"], check=True, capture_output=True)

    t_prof, _ = best_of(repeats, our_profile)
    def their_profile():
        # What `aistd data profile` reports, in polars: nulls, mean/std/min/max and the same seven
        # quantiles (describe), exact distinct counts, and the ten most frequent values per column.
        df = pl.read_ipc(path)
        df.describe(percentiles=(0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99))
        df.select(pl.all().n_unique())
        for c in df.columns:
            df[c].value_counts(sort=True).head(10)

    t_desc, _ = best_of(repeats, their_profile)
    def our_convert():
        out = subprocess.run([aistd, "data", "convert", csv, "--out", str(work / "aistd-csv.arrow"), "--json"],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)["rows"]

    def their_convert():
        df = pl.read_csv(csv)
        df.write_ipc(work / "polars-csv.arrow")
        return df.height

    t_conv, our_rows = best_of(repeats, our_convert)
    t_pl_conv, pl_rows = best_of(repeats, their_convert)
    if our_rows != pl_rows:
        sys.exit(f"CSV row counts differ: aistd {our_rows} vs polars {pl_rows}")

    print(json.dumps({
        "csv_to_ipc": {"aistd_s": t_conv, "polars_s": t_pl_conv},
        "rows": rows,
        "rows_out": their_rows,
        "clean_and_check": {"aistd_s": t_ours, "polars_s": t_theirs},
        "profile": {"aistd_s": t_prof, "polars_describe_s": t_desc},
        "polars": pl.__version__,
        "polars_threads": pl.thread_pool_size(),
    }))


if __name__ == "__main__":
    main()
