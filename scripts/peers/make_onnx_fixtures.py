"""Writes the ONNX test models of aistd-deploy and the outputs onnxruntime gives for them.

Usage: make_onnx_fixtures.py OUT_DIR   (needs scikit-learn, skl2onnx, onnxruntime)

Run by hand when the fixtures change; `cargo test` reads the files it wrote (deploy/tests/data):
- digits_logreg.onnx: scikit-learn's LogisticRegression on the digits data, converted by skl2onnx
  (ONNX-ML LinearClassifier + Normalizer; outputs `label` INT64 [N] and `probabilities` FP32 [N, 10]);
- digits_mlp.onnx: MLPClassifier(32 hidden) on the same data (MatMul, Add, Relu, Softmax, ArgMax,
  ArrayFeatureExtractor);
- onnx_expected.json: 20 rows of digits and, for each model, onnxruntime's outputs on them.
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort
import sklearn
import skl2onnx
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype(np.float32)
models = {
    "digits_logreg": LogisticRegression(max_iter=300).fit(x, y),
    "digits_mlp": MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0).fit(x, y),
}
rows = x[::90][:20]
expected = {
    "generator": f"scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, onnxruntime {ort.__version__}",
    "inputs": rows.tolist(),
    "models": {},
}
for name, model in models.items():
    onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    path = os.path.join(out, f"{name}.onnx")
    with open(path, "wb") as f:
        f.write(onx.SerializeToString())
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = sess.run(None, {sess.get_inputs()[0].name: rows})
    expected["models"][name] = {
        "input": sess.get_inputs()[0].name,
        "outputs": {n: v.tolist() for n, v in zip(names, got)},
        "sklearn_labels": model.predict(rows).tolist(),
    }
with open(os.path.join(out, "onnx_expected.json"), "w") as f:
    json.dump(expected, f)
print(json.dumps({n: m["input"] for n, m in expected["models"].items()}))
