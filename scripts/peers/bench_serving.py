"""aistd serving a scikit-learn model next to MLServer serving the same model, in one run.

Usage: bench_serving.py AISTD WORK SECONDS   (run with a Python that has mlserver, mlserver-sklearn
and skl2onnx: scripts/bench-peers.sh makes that venv)

An MLPClassifier (64 hidden units) is trained on the digits data. MLServer serves it with its
scikit-learn runtime (joblib file), with its default settings (one inference worker process)
and with `parallel_workers` 0 (inference in the server process); aistd serves
skl2onnx's conversion of it with the `onnx` runtime (`aistd bundle create --platform onnx`,
`aistd serve`, default settings). Both get the same KServe v2 JSON requests: first all 1,797 rows
in one request each, whose labels must be identical and probabilities equal to 1e-5; then
one-row requests asking for the label only, from `aistd serve-bench load` (closed-loop clients on
keep-alive connections) at 1 and 8 clients, SECONDS each. Prints JSON.
"""
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings

import joblib
import numpy as np
import mlserver
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from peercheck import interrupt, serve, stop

warnings.filterwarnings("ignore", category=ConvergenceWarning)
AISTD = os.path.abspath(sys.argv[1])
WORK = pathlib.Path(sys.argv[2]).resolve()
SECONDS = float(sys.argv[3])
shutil.rmtree(WORK, ignore_errors=True)
(WORK / "mlserver" / "digits").mkdir(parents=True)
(WORK / "onnx").mkdir()

x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype(np.float32)
model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=200, random_state=0).fit(x, y)
joblib.dump(model, WORK / "mlserver" / "digits" / "model.joblib")
(WORK / "mlserver" / "digits" / "model-settings.json").write_text(json.dumps(
    {"name": "digits", "implementation": "mlserver_sklearn.SKLearnModel",
     "parameters": {"uri": "./model.joblib", "version": "1"}}))
onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
(WORK / "onnx" / "model.onnx").write_bytes(onx.SerializeToString())
subprocess.run([AISTD, "bundle", "create", "--from", WORK / "onnx", "--out", WORK / "bundle", "--name", "digits",
                "--version", "1", "--platform", "onnx"], check=True, capture_output=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def outputs(response):
    return {o["name"]: np.array(o["data"]) for o in response["outputs"]}


def load(url, body_file, clients):
    out = subprocess.run([AISTD, "serve-bench", "load", "--url", url, "--model", "digits", "--body", body_file,
                          "--clients", str(clients), "--seconds", str(SECONDS)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


one_row = {"name": "X", "datatype": "FP32", "shape": [1, 64], "data": x[0].tolist()}
(WORK / "mlserver-body.json").write_text(json.dumps({"inputs": [one_row], "outputs": [{"name": "predict"}]}))
(WORK / "aistd-body.json").write_text(json.dumps({"inputs": [one_row], "outputs": [{"name": "label"}]}))
all_rows = {"name": "X", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}



def mlserver_run(workers):
    """Starts MLServer with `parallel_workers` = workers (None: its default); its full-data
    outputs and the load runs."""
    root = WORK / f"mlserver-{workers}"
    shutil.copytree(WORK / "mlserver", root)
    ports = [free_port() for _ in range(3)]
    settings = {"http_port": ports[0], "grpc_port": ports[1], "metrics_port": ports[2], "debug": False}
    if workers is not None:
        settings["parallel_workers"] = workers
    (root / "settings.json").write_text(json.dumps(settings))
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "mlserver"), "start", str(root)],
                            stdout=subprocess.DEVNULL, stderr=open(root / "mlserver.log", "w"))
    url = f"http://127.0.0.1:{ports[0]}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v2/models/digits/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit(f"MLServer did not become ready: {(root / 'mlserver.log').read_text()[-2000:]}")
            time.sleep(0.5)
        full = outputs(post(f"{url}/v2/models/digits/infer",
                            {"inputs": [all_rows], "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}))
        loads = {c: load(url, WORK / "mlserver-body.json", c) for c in CLIENTS}
    finally:
        interrupt(proc)
    return full, loads


CLIENTS = (1, 8)
aistd, addr = serve([AISTD, "serve", WORK / "bundle", "--port", "0"])
try:
    aistd_url = f"http://{addr}"
    ours = outputs(post(f"{aistd_url}/v2/models/digits/infer", {"inputs": [all_rows]}))
    ours_loads = {c: load(aistd_url, WORK / "aistd-body.json", c) for c in CLIENTS}
finally:
    stop(aistd)
configs = {"default": None, "parallel_workers=0": 0}
mls = {name: mlserver_run(w) for name, w in configs.items()}
theirs = mls["default"][0]
same_labels = int((theirs["predict"].reshape(-1) == ours["label"].reshape(-1)).sum())
prob_diff = float(np.abs(theirs["predict_proba"].reshape(-1) - ours["probabilities"].reshape(-1)).max())
runs = [{"clients": c, "aistd": ours_loads[c], "mlserver": {name: m[1][c] for name, m in mls.items()}} for c in CLIENTS]
print(json.dumps({
    "mlserver": mlserver.__version__,
    "rows": len(x),
    "same_labels": same_labels,
    "max_probability_diff": prob_diff,
    "seconds": SECONDS,
    "runs": runs,
}))
