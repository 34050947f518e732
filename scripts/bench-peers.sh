#!/usr/bin/env bash
# Runs aistd next to its peers on the same input, in one run, and prints a table of ratios.
# Usage: [ONLY=training|serving] [TRAIN_ROWS=200000] scripts/bench-peers.sh [ROWS] [REPEATS]   (default 10,000,000 rows, best of 3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-10000000}
REPEATS=${2:-3}
VENV=target/peers-venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import polars, pyarrow, sklearn, torch' 2>/dev/null ||
  "$VENV/bin/pip" install --quiet --disable-pip-version-check polars pyarrow scikit-learn torch==2.13.0
# The tch backend links PyTorch's libtorch (see DEVELOPERS.md).
TORCH_LIB=$("$VENV/bin/python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/$VENV/bin:$PATH" LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cargo build --release --quiet --features tch --bin aistd
AISTD="${CARGO_TARGET_DIR:-target}/release/aistd"
WORK=target/bench-peers
mkdir -p "$WORK"
# ONLY=training or ONLY=serving runs just that table.
if [ -z "${ONLY:-}" ]; then
DATA="$WORK/loans-$ROWS.arrow"
CSV="$WORK/loans-$ROWS.csv"
[ -f "$DATA" ] || "$AISTD" data generate --rows "$ROWS" --seed 1 --out "$DATA"
[ -f "$CSV" ] || "$AISTD" data generate --rows "$ROWS" --seed 1 --out "$CSV"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; input: $ROWS rows ($(du -h "$DATA" | cut -f1)) Arrow IPC"
json=$("$VENV/bin/python" scripts/peers/bench_governance.py "$AISTD" "$DATA" "$CSV" "$WORK" "$REPEATS")
"$VENV/bin/python" - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
n = r["rows"]
rows = [
    ("clean+dedup+5 expectations", "polars", r["clean_and_check"]["aistd_s"], r["clean_and_check"]["polars_s"]),
    ("CSV -> Arrow IPC", "polars read_csv+write_ipc", r["csv_to_ipc"]["aistd_s"], r["csv_to_ipc"]["polars_s"]),
    ("profile (all columns)", "polars describe+n_unique+value_counts", r["profile"]["aistd_s"], r["profile"]["polars_describe_s"]),
]
print(f"polars {r['polars']} on {r['polars_threads']} threads; best of runs; rows out {r['rows_out']:,}")
print(f"| workload | peer | aistd s | peer s | aistd rows/s | peer rows/s | aistd speed / peer |")
print(f"|---|---|---:|---:|---:|---:|---:|")
for name, peer, a, p in rows:
    print(f"| {name} | {peer} | {a:.2f} | {p:.2f} | {n/a:,.0f} | {n/p:,.0f} | {p/a:.2f}x |")
PY

echo
echo "protection (256 MiB file in the page cache; 1M-event audit log):"
pj=$("$VENV/bin/python" scripts/peers/bench_protect.py "$AISTD" "$WORK/protect" "$REPEATS")
"$VENV/bin/python" - "$pj" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print("| workload | aistd | peer | aistd / peer |")
print("|---|---:|---:|---:|")
print(f"| encrypt file, 16 KiB chunks (incl. file I/O) vs `openssl speed -evp chacha20-poly1305` (no I/O) | {r['encrypt_mb_s']:.0f} MB/s | {r['openssl_mb_s']:.0f} MB/s | {r['encrypt_mb_s']/r['openssl_mb_s']:.2f} |")
print(f"| decrypt file | {r['decrypt_mb_s']:.0f} MB/s | - | - |")
print(f"| RFC 6962 tree head, 1M lines: `aistd audit root` vs hashlib | {r['root_s']:.2f} s | {r['py_root_s']:.2f} s | {r['py_root_s']/r['root_s']:.2f}x faster |")
print(f"| `aistd audit verify`, 1M events (parse, chain, tree, heads) | {r['verify_1m_s']:.2f} s | - | - |")
PY
fi

if [ -z "${ONLY:-}" ] || [ "$ONLY" = training ]; then
echo
TRAIN_ROWS=${TRAIN_ROWS:-200000}
echo "training: median epoch time, same network, batch, Adam 1e-3 and threads (digits 64->128->10 batch 64; wide $TRAIN_ROWS rows 100->256->256->1 batch 256):"
tj=$("$VENV/bin/python" scripts/peers/bench_training.py "$AISTD" "$TRAIN_ROWS" "$REPEATS")
"$VENV/bin/python" - "$tj" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"PyTorch {r['torch']} on CPU; median of {r['epochs']} epochs after one warm-up")
print("| workload | threads | aistd ndarray s | aistd tch s | PyTorch s | ndarray / PyTorch | tch / PyTorch |")
print("|---|---:|---:|---:|---:|---:|---:|")
for x in r["runs"]:
    p, a, t = x["pytorch_s"], x["ndarray_s"], x["tch_s"]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"
    ratio = lambda v: "-" if v is None else f"{v / p:.2f}x"
    print(f"| {x['workload']} | {x['threads']} | {fmt(a)} | {fmt(t)} | {p:.4f} | {ratio(a)} | {ratio(t)} |")
PY
echo
echo "DP-SGD on digits (MLP 64->64->10, Adam 0.01, batch 64, 20 epochs, clip 1, delta 1e-5, 25% test split; noise calibrated to each epsilon by RDP):"
"$VENV/bin/python" -c 'import sys; from sklearn.datasets import load_digits; load_digits(as_frame=True).frame.rename(columns={"target": "digit"}).to_csv(sys.argv[1], index=False)' "$WORK/digits.csv"
"$AISTD" privacy tradeoff --data "$WORK/digits.csv" --target digit --classify --lr 0.01 --epochs 20 --seed 7 --out "$WORK/privacy-tradeoff"
echo
echo "int8 post-training quantization of the digits MLP 64->128->10 (aistd compress --quantize int8; per-channel weight scales, calibrated on the training rows; accuracy and prediction time per row on a stratified 25% test split, one row at a time and the whole split in one call):"
"$VENV/bin/python" - "$WORK" <<'PY'
import sys, pandas as pd
from sklearn.model_selection import train_test_split
d = pd.read_csv(f"{sys.argv[1]}/digits.csv")
tr, te = train_test_split(d, test_size=0.25, stratify=d["digit"], random_state=42)
tr.to_csv(f"{sys.argv[1]}/digits-train.csv", index=False)
te.to_csv(f"{sys.argv[1]}/digits-test.csv", index=False)
PY
"$AISTD" train --data "$WORK/digits-train.csv" --test-data "$WORK/digits-test.csv" --target digit --classify --hidden 128 --epochs 40 --lr 0.003 --seed 1 --out "$WORK/digits-f32" --json >/dev/null
qj=$("$AISTD" compress --model "$WORK/digits-f32" --quantize int8 --data "$WORK/digits-train.csv" --test-data "$WORK/digits-test.csv" --out "$WORK/digits-int8" --json)
"$VENV/bin/python" - "$qj" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
b, a = r["before"], r["after"]
print("| model | file bytes | accuracy | us/row, one row | us/row, batch |")
print("|---|---:|---:|---:|---:|")
for name, x in (("f32", b), ("int8", a)):
    print(f"| {name} | {x['bytes']} | {x['metrics']['accuracy']:.4f} | {x['predict_us_per_row']['one_row']:.3f} | {x['predict_us_per_row']['all_rows']:.3f} |")
one = b["predict_us_per_row"]["one_row"] / a["predict_us_per_row"]["one_row"]
batch = b["predict_us_per_row"]["all_rows"] / a["predict_us_per_row"]["all_rows"]
print(f"int8: {b['bytes'] / a['bytes']:.2f}x smaller file, {one:.2f}x faster one row, {batch:.2f}x faster batched, accuracy {100 * (a['metrics']['accuracy'] - b['metrics']['accuracy']):+.2f} points")
PY
fi

if [ -z "${ONLY:-}" ] || [ "$ONLY" = serving ]; then
echo
echo "serving overhead on a no-op (identity) model, one-row FP32 requests, one client (Triton's in-process C API: ~20 us; its HTTP: 180-210 us):"
oj=$("$AISTD" serve-bench overhead --requests 20000)
"$VENV/bin/python" - "$oj" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
d, e, h = r["predictor_direct"], r["endpoint_in_process"], r["http_keep_alive_json"]
print("| path | p50 us | p99 us | above the model, p50 us |")
print("|---|---:|---:|---:|")
print(f"| predictor called directly | {d['p50_us']:.2f} | {d['p99_us']:.2f} | - |")
print(f"| in-process Endpoint (validation, output checks) | {e['p50_us']:.2f} | {e['p99_us']:.2f} | {e['p50_us'] - d['p50_us']:.2f} |")
print(f"| KServe v2 HTTP, JSON, keep-alive | {h['p50_us']:.1f} | {h['p99_us']:.1f} | {h['p50_us'] - d['p50_us']:.1f} |")
f = r["tcp_fixed_response_floor"]
print(f"| floor: a bare TCP thread answering a fixed response | {f['p50_us']:.1f} | {f['p99_us']:.1f} | - |")
print(f"| server time above the floor and the model | {h['p50_us'] - f['p50_us'] - d['p50_us']:.1f} | {h['p99_us'] - f['p99_us']:.1f} | - |")
PY
echo
echo "dynamic batching: one model instance costing 2 ms + 0.1 ms per row, one-row requests from closed-loop clients, max batch 32, max delay 500 us:"
echo "| clients | no batching req/s | p95 ms | batching req/s | p95 ms | throughput ratio | mean batch | batcher hold p99 us (<= delay + 100) |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for clients in 4 32; do
  bj=$("$AISTD" serve-bench batching --clients "$clients" --seconds 3)
  "$VENV/bin/python" - "$bj" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
n, b = r["no_batching"], r["batching"]
print(f"| {r['clients']} | {n['requests_per_s']:.0f} | {n['p95_us']/1000:.1f} | {b['requests_per_s']:.0f} | {b['p95_us']/1000:.1f} | {r['throughput_ratio']:.2f}x | {r['mean_batch_rows']:.1f} | {r['batcher_hold_p99_us']:.0f} |")
PY
done
echo
# MLServer lives in a venv of its own: it pins versions the peer tools do not share (uvloop before
# 0.22: 0.22 breaks its inference workers).
MLS_VENV=target/mlserver-venv
[ -x "$MLS_VENV/bin/python" ] || python3 -m venv "$MLS_VENV"
"$MLS_VENV/bin/python" -c 'import mlserver, mlserver_sklearn, skl2onnx' 2>/dev/null ||
  "$MLS_VENV/bin/pip" install --quiet --disable-pip-version-check mlserver mlserver-sklearn "uvloop<0.22" skl2onnx
SERVE_SECONDS=${SERVE_SECONDS:-5}
echo "aistd vs MLServer: the same scikit-learn MLP (digits, 64 hidden), one-row KServe v2 JSON requests for the label, closed-loop clients on keep-alive connections, ${SERVE_SECONDS} s each (aistd: skl2onnx's ONNX of it on the onnx runtime):"
sj=$("$MLS_VENV/bin/python" scripts/peers/bench_serving.py "$AISTD" "$WORK/serving" "$SERVE_SECONDS")
"$VENV/bin/python" - "$sj" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"MLServer {r['mlserver']} (scikit-learn runtime); identical labels on {r['same_labels']} of {r['rows']} rows, probabilities within {r['max_probability_diff']:.1e}")
print("| clients | server | req/s | p50 ms | p99 ms | aistd throughput / this |")
print("|---:|---|---:|---:|---:|---:|")
for x in r["runs"]:
    a = x["aistd"]
    print(f"| {x['clients']} | aistd (onnx runtime) | {a['requests_per_s']:.0f} | {a['p50_us']/1000:.3f} | {a['p99_us']/1000:.3f} | - |")
    for name, m in x["mlserver"].items():
        print(f"| {x['clients']} | MLServer, {name} | {m['requests_per_s']:.0f} | {m['p50_us']/1000:.3f} | {m['p99_us']/1000:.3f} | {a['requests_per_s']/m['requests_per_s']:.1f}x |")
PY
fi
