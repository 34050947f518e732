"""Serves scikit-learn models converted to ONNX with `aistd serve` and checks every answer against
onnxruntime and scikit-learn, run by scripts/test.sh.

Four models are trained here and converted by skl2onnx (zipmap off): on the digits data a
LogisticRegression (ONNX-ML LinearClassifier + Normalizer), an MLPClassifier (MatMul, Relu,
Softmax, ArgMax, ArrayFeatureExtractor) and a RandomForestClassifier (TreeEnsembleClassifier);
on the diabetes data a LinearRegression (LinearRegressor). Each is bundled with
`aistd bundle create --platform onnx` (the signature read from the file), all four are served by
one `aistd serve`, and tritonclient sends every row (binary tensors, in batches of 100, and one
row as JSON). Labels must equal onnxruntime's and scikit-learn's; probabilities and regression
values must agree with onnxruntime's to 1e-5.

Usage: check_onnx.py AISTD_BINARY WORK_DIR
"""

import os
import pathlib
import shutil
import subprocess
import sys
import warnings

import numpy as np
import onnxruntime as ort
import tritonclient.http as httpclient
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPClassifier

from peercheck import check, passed, serve, stop

warnings.filterwarnings("ignore", category=ConvergenceWarning)
AISTD = os.path.abspath(sys.argv[1])
WORK = pathlib.Path(sys.argv[2])
shutil.rmtree(WORK, ignore_errors=True)
WORK.mkdir(parents=True)

xd, yd = load_digits(return_X_y=True)
xd = (xd / 16.0).astype(np.float32)
xr, yr = load_diabetes(return_X_y=True)
xr = xr.astype(np.float32)
models = {
    "logreg": (LogisticRegression(max_iter=300).fit(xd, yd), xd),
    "mlp": (MLPClassifier(hidden_layer_sizes=(48,), max_iter=60, random_state=1).fit(xd, yd), xd),
    "forest": (RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0).fit(xd, yd), xd),
    "linear": (LinearRegression().fit(xr, yr), xr),
}
bundles = []
for name, (model, x) in models.items():
    src = WORK / name
    src.mkdir()
    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    onx = to_onnx(model, x[:1], options=options, target_opset={"": 17, "ai.onnx.ml": 3})
    (src / "model.onnx").write_bytes(onx.SerializeToString())
    out = WORK / f"{name}-bundle"
    subprocess.run([AISTD, "bundle", "create", "--from", str(src), "--out", str(out), "--name", name,
                    "--version", "1", "--platform", "onnx"], check=True, capture_output=True)
    bundles.append(out)

server, url = serve([AISTD, "serve", *bundles, "--port", "0"])
try:
    client = httpclient.InferenceServerClient(url=url)
    for name, (model, x) in models.items():
        sess = ort.InferenceSession(str(WORK / name / "model.onnx"), providers=["CPUExecutionProvider"])
        meta = client.get_model_metadata(name)
        check(meta["platform"] == "onnx" and [i["name"] for i in meta["inputs"]] == [sess.get_inputs()[0].name],
              f"{name}: metadata {meta['inputs']} read from the model file")
        names = [o.name for o in sess.get_outputs()]
        want = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
        got = {n: [] for n in names}
        for start in range(0, len(x), 100):
            rows = x[start:start + 100]
            inp = httpclient.InferInput(sess.get_inputs()[0].name, list(rows.shape), "FP32")
            inp.set_data_from_numpy(rows, binary_data=True)
            outs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in names]
            r = client.infer(name, [inp], outputs=outs)
            for n in names:
                got[n].append(r.as_numpy(n))
        got = {n: np.concatenate(v) for n, v in got.items()}
        if "label" in names:
            check(np.array_equal(got["label"], want["label"]),
                  f"{name}: {len(x)} labels served = onnxruntime's")
            check(np.array_equal(got["label"], model.predict(x)), f"{name}: labels = scikit-learn's predict")
            diff = float(np.abs(got["probabilities"] - want["probabilities"]).max())
            check(diff <= 1e-5, f"{name}: probabilities = onnxruntime's (max |diff| {diff:.1e})")
        else:
            diff = float(np.abs(got["variable"] - want["variable"]).max())
            rel = diff / float(np.abs(want["variable"]).max())
            check(rel <= 1e-5, f"{name}: {len(x)} predictions = onnxruntime's (max |diff| {diff:.1e}, relative {rel:.1e})")
        # One row as JSON, as curl would send it.
        inp = httpclient.InferInput(sess.get_inputs()[0].name, [1, x.shape[1]], "FP32")
        inp.set_data_from_numpy(x[:1], binary_data=False)
        r = client.infer(name, [inp], outputs=[httpclient.InferRequestedOutput(names[0], binary_data=False)])
        check(np.allclose(r.as_numpy(names[0]).reshape(-1), want[names[0]][:1].reshape(-1), rtol=1e-5, atol=1e-5),
              f"{name}: a JSON request gets the same first answer")
finally:
    code = stop(server)
check(code == 0, f"SIGINT stops the server cleanly (exit {code})")
print(f"\nall {passed()} onnx checks passed")
