#!/usr/bin/env bash
# The test command: installs what the tests need (a Python venv with the peer tools under target/),
# then runs formatting, lints, every test, the docs, every example and the peer cross-checks.
# Idempotent; fails loudly on the first problem.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
started=$(date +%s)

VENV=target/peers-venv
PEERS=(pyarrow pandas scikit-learn pycryptodome jsonschema referencing rfc3339-validator rfc3986-validator dp-accounting fairlearn opendp prometheus-client tensorboard torch==2.13.0 safetensors "tritonclient[http]" scipy skl2onnx onnxruntime opacus)
step "peer tools: Python venv at $VENV (${PEERS[*]})"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import pyarrow, pandas, sklearn, Crypto, jsonschema, referencing, rfc3339_validator, rfc3986_validator, dp_accounting, fairlearn, opendp, prometheus_client, tensorboard, torch, safetensors, tritonclient.http, scipy, skl2onnx, onnxruntime, opacus' 2>/dev/null; then
  # No wheel cache: torch's wheels alone would leave ~4 GB under ~/.cache/pip.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir "${PEERS[@]}"
fi
"$VENV/bin/python" -c 'import pyarrow, pandas, Crypto, jsonschema, torch; print("pyarrow", pyarrow.__version__, "| pandas", pandas.__version__, "| pycryptodome", Crypto.__version__, "| jsonschema", jsonschema.__version__, "| torch", torch.__version__)'
# The `tch` feature (the libtorch training backend: clippy's --all-features and the tch steps) links the
# venv's PyTorch: its build finds libtorch through that Python, its tests load libtorch's
# shared libraries from there (DEVELOPERS.md).
TORCH_LIB=$("$VENV/bin/python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/$VENV/bin:$PATH" LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# One pass over a fresh tree gains nothing from incremental compilation, whose caches take ~1.6 GB
# here; set CARGO_INCREMENTAL=1 to keep them between runs.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

# A single-node Slurm cluster (Debian's slurm-wlm + munge, two fake GPUs) for the SlurmPool
# integration tests in scheduler/tests/slurm.rs; stopped when this script exits. AISTD_NO_SLURM=1
# skips it (those tests then say they were skipped).
if [ "${AISTD_NO_SLURM:-0}" != 1 ] && [ "$(id -u)" != 0 ] && ! command -v slurmctld >/dev/null; then
  echo "WARNING: not root and Slurm is not installed: the SlurmPool integration tests will be skipped" >&2
  AISTD_NO_SLURM=1
fi
if [ "${AISTD_NO_SLURM:-0}" != 1 ]; then
  step "Slurm: single-node cluster on loopback (scripts/slurm.sh)"
  slurm_started=$(date +%s)
  trap 'scripts/slurm.sh down' EXIT
  scripts/slurm.sh up
  export AISTD_SLURM_CONF="$PWD/target/slurm/etc/slurm.conf"
  echo "Slurm up in $(( $(date +%s) - slurm_started ))s"
fi

# Every feature but `blas` (next step) and the root's `tch`: the libtorch backend's tests
# (aistd-training/tch) build in the same pass as the rest, since enabling it later changes features
# of shared dependencies (half's `std`) and would rebuild arrow. Binaries that link it start about
# 0.2 s slower (libtorch loads), which the CLI tests pay.
FEATURES="aistd-deploy/conformance,aistd-deploy/http,aistd-governance/conformance,aistd-scheduler/conformance,aistd-training/conformance,aistd-training/tch"
# The optimizers' reference trajectories, written again by the PyTorch just installed
# (training/tests/optim_reference.rs checks the committed ones and these).
mkdir -p target/peer-checks
"$VENV/bin/python" scripts/peers/make_optim_vectors.py target/peer-checks/torch_optim.json
export AISTD_TORCH_OPTIM_VECTORS="$PWD/target/peer-checks/torch_optim.json"
step "cargo test (workspace, every feature but blas; the tch backend agrees with ndarray)"
cargo test --workspace --features "$FEATURES"

# The `blas` feature links the system's OpenBLAS (Debian's libopenblas-dev, installed here when
# running as root): the ndarray backend's tests run again with ndarray's products through CBLAS.
if ! dpkg -s libopenblas-dev >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  step "OpenBLAS: apt-get install libopenblas-dev"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev >/dev/null
fi
if [ -e /usr/lib/x86_64-linux-gnu/libopenblas.so ] || dpkg -s libopenblas-dev >/dev/null 2>&1; then
  step "cargo test: the ndarray backend on OpenBLAS (aistd-training/blas)"
  OPENBLAS_NUM_THREADS=1 cargo test --workspace --features "$FEATURES,aistd-training/blas" --test ndarray
else
  echo "WARNING: OpenBLAS (libopenblas-dev) is missing and this is not root: the blas feature's tests are skipped" >&2
fi

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

# Examples run in the same (dev) profile the tests built, so nothing is compiled twice; dependencies
# are optimised in that profile (see Cargo.toml).
step "examples"
for ex in examples/*.rs; do
  name=$(basename "$ex" .rs)
  echo "-- example $name"
  cargo run --quiet --features "$FEATURES" --example "$name" -- 100000 target/examples/"$name"
done
echo "-- example pipeline --private (DP-SGD training stage)"
cargo run --quiet --features "$FEATURES" --example pipeline -- --private 20000 target/examples/pipeline-private | tee target/examples/pipeline-private.txt
# It must show the ε spent beside the accuracy and the fairness of the model it trained.
grep -q "test accuracy" target/examples/pipeline-private.txt
grep -q "trained privately with DP-SGD: epsilon = " target/examples/pipeline-private.txt
grep -q "demographic parity difference by gender" target/examples/pipeline-private.txt

step "peer cross-checks (pyarrow, pandas, pycryptodome, hashlib RFC 6962, jsonschema + OpenLineage, dp-accounting, Opacus, fairlearn, OpenDP, prometheus_client, scikit-learn, TensorBoard, PyTorch, tarfile, tritonclient, scipy, onnxruntime)"
cargo build --quiet --features "$FEATURES" --bin aistd
"$VENV/bin/python" scripts/peers/check_governance.py target/debug/aistd target/peer-checks
"$VENV/bin/python" scripts/peers/check_protect.py target/debug/aistd target/peer-checks/protect
"$VENV/bin/python" scripts/peers/check_compliance.py target/debug/aistd target/peer-checks/compliance
"$VENV/bin/python" scripts/peers/check_private_training.py target/debug/aistd target/peer-checks/private-training
"$VENV/bin/python" scripts/peers/check_scheduler.py target/debug/aistd target/peer-checks/scheduler
"$VENV/bin/python" scripts/peers/check_deploy.py target/debug/aistd target/peer-checks/deploy
"$VENV/bin/python" scripts/peers/check_serving.py target/debug/aistd target/peer-checks/serving
"$VENV/bin/python" scripts/peers/check_onnx.py target/debug/aistd target/peer-checks/onnx
"$VENV/bin/python" scripts/peers/check_drift.py target/debug/aistd target/peer-checks/drift
# The training check also drives `aistd train --backend tch`: the CLI with the root's `tch` feature
# (only the root crate is compiled again).
cargo build --quiet --features "$FEATURES,tch" --bin aistd
"$VENV/bin/python" scripts/peers/check_training.py target/debug/aistd target/peer-checks/training
# #8's transfer check (tests/transfer.rs in aistd-training) under PyTorch: the same protocol must
# show fine-tuning ahead of training from scratch there too.
"$VENV/bin/python" scripts/peers/transfer_digits.py

step "all green in $(( $(date +%s) - started ))s"
