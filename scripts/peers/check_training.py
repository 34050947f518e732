"""Peer cross-checks for aistd-training, run by scripts/test.sh.

- digits (25% stratified test split made by scikit-learn): `aistd train` with an MLP of 128
  ReLUs reaches >= 97% test accuracy and is no more than 1 point below scikit-learn's
  MLPClassifier of the same size, batch, learning rate and epochs on the same split (features
  standardized for both).
- breast_cancer: `aistd train --model logreg` is no more than 2 points below scikit-learn's
  LogisticRegression on the same split.
- The libtorch backend (`--backend tch`) reaches the same digits accuracy as the ndarray backend
  (they agree to float rounding), and PyTorch itself, loading our model.safetensors into an
  `nn.Sequential` and applying the preprocessing from manifest.json, predicts the same classes
  and log-loss as `aistd evaluate`. DP-SGD from the CLI gives the same epsilon and accuracy on
  both backends.
- TensorBoard's own event reader loads `aistd train --logdir` files and finds every epoch's
  scalars, equal to `metrics.jsonl`, and every step's loss; `curves.svg` parses.

Usage: check_training.py AISTD_BINARY WORK_DIR
"""

import json
import pathlib
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

AISTD = sys.argv[1]
WORK = pathlib.Path(sys.argv[2])
shutil.rmtree(WORK, ignore_errors=True)
WORK.mkdir(parents=True)
warnings.filterwarnings("ignore", category=ConvergenceWarning)


def write(name, x, y, columns, target):
    df = pd.DataFrame(x, columns=columns)
    df[target] = y
    path = WORK / name
    df.to_csv(path, index=False)
    return path


def aistd_train(train, test, target, *extra):
    out = subprocess.run(
        [AISTD, "train", "--data", str(train), "--test-data", str(test), "--target", target,
         "--seed", "0", "--out", str(WORK / f"model-{target}"), "--json", *extra],
        capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"aistd train failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout)


# 1. digits, MLP 64 -> 128 -> 10.
d = load_digits()
xtr, xte, ytr, yte = train_test_split(d.data, d.target, test_size=0.25, stratify=d.target, random_state=0)
cols = [f"pixel_{i}" for i in range(64)]
ours = aistd_train(write("digits-train.csv", xtr, ytr, cols, "digit"),
                   write("digits-test.csv", xte, yte, cols, "digit"), "digit",
                   "--hidden", "128", "--epochs", "40", "--batch-size", "64", "--lr", "0.001")
ours_acc = ours["test"]["accuracy"]
sk = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(128,), batch_size=64,
                                                   learning_rate_init=1e-3, max_iter=40, random_state=0))
sk.fit(xtr, ytr)
sk_acc = float((sk.predict(xte) == yte).mean())
print(f"digits MLP 128: aistd {ours_acc:.4f} ({ours['seconds']:.2f} s), scikit-learn {sk_acc:.4f}")
assert ours_acc >= 0.97, ours_acc
assert ours_acc >= sk_acc - 0.01, (ours_acc, sk_acc)

# 1b. The libtorch backend on the same split, and PyTorch running our saved model.
digits_train, digits_test = WORK / "digits-train.csv", WORK / "digits-test.csv"
nd_model = WORK / "model-digit"
shutil.copytree(nd_model, WORK / "model-digit-ndarray")
tch = aistd_train(digits_train, digits_test, "digit", "--hidden", "128", "--epochs", "40",
                  "--batch-size", "64", "--lr", "0.001", "--backend", "tch")
print(f"digits MLP 128 with --backend tch: {tch['test']['accuracy']:.4f} ({tch['seconds']:.2f} s)")
assert tch["backend"] == "tch", tch["backend"]
assert abs(tch["test"]["accuracy"] - ours_acc) <= 0.005, (tch["test"]["accuracy"], ours_acc)

import torch
from safetensors.torch import load_file

model_dir = WORK / "model-digit-ndarray"
manifest = json.loads((model_dir / "manifest.json").read_text())
weights = load_file(str(model_dir / "model.safetensors"))
arch = manifest["architecture"]
widths = [arch["inputs"], *arch["hidden"], arch["outputs"]]
act = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}[arch["activation"]]
layers = []
for i in range(len(widths) - 1):
    lin = torch.nn.Linear(widths[i], widths[i + 1])
    lin.weight.data = weights[f"layers.{i}.weight"]
    lin.bias.data = weights[f"layers.{i}.bias"]
    layers += [lin] + ([act()] if i + 2 < len(widths) else [])
net = torch.nn.Sequential(*layers)
test_df = pd.read_csv(digits_test)
cols_plan = manifest["preprocessor"]["columns"]
assert all(c["kind"] == "numeric" for c in cols_plan)
x = torch.tensor(np.stack([(test_df[c["name"]].to_numpy() - c["mean"]) / c["scale"] for c in cols_plan], 1),
                 dtype=torch.float32)
names = manifest["preprocessor"]["target_plan"]["names"]
truth = torch.tensor([names.index(str(v)) for v in test_df["digit"]])
with torch.no_grad():
    logits = net(x)
torch_acc = float((logits.argmax(1) == truth).double().mean())
torch_loss = float(torch.nn.functional.cross_entropy(logits, truth))
ev = subprocess.run([AISTD, "evaluate", "--model", str(model_dir), "--data", str(digits_test),
                     "--target", "digit", "--json"], capture_output=True, text=True, check=True)
ev = json.loads(ev.stdout)
print(f"PyTorch {torch.__version__} runs our model.safetensors: accuracy {torch_acc:.4f} "
      f"(aistd evaluate {ev['accuracy']:.4f}), log-loss {torch_loss:.6f} ({ev['log_loss']:.6f})")
assert abs(torch_acc - ev["accuracy"]) < 1e-9, (torch_acc, ev["accuracy"])
assert abs(torch_loss - ev["log_loss"]) <= 1e-4 * max(1.0, ev["log_loss"]), (torch_loss, ev["log_loss"])

# DP-SGD from the CLI on both backends: the same Poisson batches, clipping and noise, so the same
# epsilon and (to float rounding) the same test accuracy.
dp_args = ("--hidden", "64", "--epochs", "5", "--batch-size", "64", "--lr", "0.01",
           "--dp-noise-multiplier", "1.1", "--dp-clip", "1.0")
dp_nd = aistd_train(digits_train, digits_test, "digit", *dp_args)
dp_tch = aistd_train(digits_train, digits_test, "digit", *dp_args, "--backend", "tch")
print(f"DP-SGD (sigma 1.1, C 1, 5 epochs): ndarray eps {dp_nd['privacy']['epsilon']:.4f} accuracy "
      f"{dp_nd['test']['accuracy']:.4f}; tch eps {dp_tch['privacy']['epsilon']:.4f} accuracy "
      f"{dp_tch['test']['accuracy']:.4f}")
assert dp_tch["backend"] == "tch" and dp_tch["privacy"] == dp_nd["privacy"], (dp_tch["privacy"], dp_nd["privacy"])
assert abs(dp_tch["test"]["accuracy"] - dp_nd["test"]["accuracy"]) <= 0.005, (dp_tch["test"], dp_nd["test"])

# 2. breast_cancer, logistic regression.
b = load_breast_cancer()
names = [n.replace(" ", "_") for n in b.feature_names]
xtr, xte, ytr, yte = train_test_split(b.data, b.target_names[b.target], test_size=0.25,
                                      stratify=b.target, random_state=0)
ours = aistd_train(write("bc-train.csv", xtr, ytr, names, "diagnosis"),
                   write("bc-test.csv", xte, yte, names, "diagnosis"), "diagnosis",
                   "--model", "logreg", "--epochs", "100", "--batch-size", "32", "--lr", "0.01",
                   "--validation-fraction", "0.1", "--logdir", str(WORK / "logs"))
ours_acc = ours["test"]["accuracy"]
sk = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
sk.fit(xtr, ytr)
sk_acc = float((sk.predict(xte) == yte).mean())
print(f"breast_cancer logistic regression: aistd {ours_acc:.4f}, scikit-learn {sk_acc:.4f}")
assert ours_acc >= sk_acc - 0.02, (ours_acc, sk_acc)
assert 0.9 < ours["test"]["roc_auc"] <= 1.0, ours["test"]

# 3. TensorBoard reads our event files.
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ea = EventAccumulator(str(WORK / "logs"))
ea.Reload()
tags = set(ea.Tags()["scalars"])
assert {"train/loss", "validation/loss", "validation/metric", "lr", "samples_per_second"} <= tags, tags
lines = [json.loads(l) for l in (WORK / "logs" / "metrics.jsonl").read_text().splitlines()]
for tag, key in [("train/loss", "train_loss"), ("validation/loss", "valid_loss"), ("validation/metric", "valid_metric")]:
    got = [(s.step, s.value) for s in ea.Scalars(tag)]
    want = [(l["epoch"], l[key]) for l in lines]
    assert len(got) == len(want) == 100, (tag, len(got), len(want))
    for (gs, gv), (ws, wv) in zip(got, want):
        assert gs == ws and abs(gv - wv) <= 1e-6 * max(1.0, abs(wv)), (tag, gs, gv, wv)
print(f"tensorboard reads {len(tags)} scalar tags × {len(lines)} epochs, equal to metrics.jsonl")

steps = EventAccumulator(str(WORK / "logs" / "steps"))
steps.Reload()
losses = steps.Scalars("train/step_loss")
# One loss per optimizer step, numbered 1, 2, … over the whole run.
assert len(losses) >= 100 and losses[-1].step == len(losses), (len(losses), losses[-1].step)
step_lines = [json.loads(l) for l in (WORK / "logs" / "steps.jsonl").read_text().splitlines()]
assert [(l["step"], l["loss"]) for l in step_lines][:5] and len(step_lines) == len(losses), len(step_lines)
for s, l in zip(losses, step_lines):
    assert s.step == l["step"] and abs(s.value - l["loss"]) <= 1e-6 * max(1.0, abs(l["loss"])), (s, l)
import xml.etree.ElementTree as ET
root = ET.parse(WORK / "logs" / "curves.svg").getroot()
assert root.tag.endswith("svg") and len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 3
print(f"tensorboard reads {len(losses)} per-step losses, equal to steps.jsonl; curves.svg has its three curves")
