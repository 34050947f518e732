"""Peer cross-checks for DP-SGD (`aistd train --dp-*`), run by scripts/test.sh.

- ε: for the sampling rate, noise multiplier and steps `aistd train` reports, Opacus' own
  RDPAccountant gives the same ε (relative 1e-9), and dp-accounting's RdpAccountant on the same
  orders gives no smaller an ε and within 1% of it (dp-accounting bounds the fractional orders
  more loosely; see aistd-compliance's privacy module).
- Accuracy: on digits (25% stratified test split made by scikit-learn, features standardized),
  an MLP 64 -> 64 -> 10 trained with DP-SGD (sigma 1.1, clip 1, Poisson batches of expected size
  64, Adam lr 0.01, 15 epochs) by `aistd train` and by Opacus on PyTorch: over the same seeds,
  our mean test accuracy is no more than 2 points below Opacus'.
- Calibration: `--dp-target-epsilon 2` spends at most 2 (and more than 1.99) by Opacus'
  accountant too.

Usage: check_private_training.py AISTD_BINARY WORK_DIR
"""

import json
import pathlib
import shutil
import subprocess
import sys
import warnings

import dp_accounting
import numpy as np
import pandas as pd
import torch
from opacus import PrivacyEngine
from opacus.accountants import RDPAccountant
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

AISTD = sys.argv[1]
WORK = pathlib.Path(sys.argv[2])
shutil.rmtree(WORK, ignore_errors=True)
WORK.mkdir(parents=True)
warnings.filterwarnings("ignore")
torch.set_num_threads(1)

SIGMA, CLIP, LR, EPOCHS, BATCH, DELTA = 1.1, 1.0, 0.01, 15, 64, 1e-5
SEEDS = [0, 1, 2, 3, 4]


def write(name, x, y):
    df = pd.DataFrame(x, columns=[f"pixel_{i}" for i in range(x.shape[1])])
    df["digit"] = y
    path = WORK / name
    df.to_csv(path, index=False)
    return path


def aistd_train(*extra):
    out = subprocess.run(
        [AISTD, "train", "--data", str(TRAIN), "--test-data", str(TEST), "--target", "digit",
         "--classify", "--hidden", "64", "--optimizer", "adam", "--lr", str(LR), "--batch-size",
         str(BATCH), "--epochs", str(EPOCHS), "--out", str(WORK / "model"), "--json", *map(str, extra)],
        capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"aistd train failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout)


def opacus_epsilon(q, sigma, steps, delta):
    acc = RDPAccountant()
    acc.history = [(sigma, q, steps)]
    return acc.get_epsilon(delta)


def opacus_train(xtr, ytr, xte, yte, seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    data = torch.utils.data.TensorDataset(torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr))
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH)
    engine = PrivacyEngine(accountant="rdp")
    model, opt, loader = engine.make_private(module=model, optimizer=opt, data_loader=loader,
                                             noise_multiplier=SIGMA, max_grad_norm=CLIP,
                                             poisson_sampling=True)
    for _ in range(EPOCHS):
        for xb, yb in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    with torch.no_grad():
        pred = model(torch.tensor(xte, dtype=torch.float32)).argmax(1).numpy()
    return float((pred == yte).mean()), engine.get_epsilon(DELTA)


d = load_digits()
xtr, xte, ytr, yte = train_test_split(d.data, d.target, test_size=0.25, stratify=d.target, random_state=0)
TRAIN, TEST = write("digits-train.csv", xtr, ytr), write("digits-test.csv", xte, yte)

# 1. ε of what `aistd train` ran, by Opacus' and dp-accounting's accountants.
ours = [aistd_train("--seed", s, "--dp-noise-multiplier", SIGMA, "--dp-clip", CLIP) for s in map(str, SEEDS)]
p = ours[0]["privacy"]
q, sigma, steps, eps = p["sampling_rate"], p["noise_multiplier"], p["steps"], p["epsilon"]
assert p["delta"] == DELTA and sigma == SIGMA and p["clip_norm"] == CLIP, p
theirs = opacus_epsilon(q, sigma, steps, DELTA)
assert abs(eps - theirs) <= 1e-9 * theirs, (eps, theirs)
orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
acct = dp_accounting.rdp.RdpAccountant(orders)
acct.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
dpa = acct.get_epsilon(DELTA)
assert eps <= dpa * (1 + 1e-9) and dpa - eps <= 0.01 * dpa, (eps, dpa)
print(f"DP-SGD epsilon for q = {q:.5f}, sigma = {sigma}, {steps} steps, delta = {DELTA}: aistd {eps:.6f}, "
      f"Opacus RDPAccountant {theirs:.6f}, dp-accounting {dpa:.6f}")

# 2. Accuracy against Opacus on the same split, settings and seeds.
scaler = StandardScaler().fit(xtr)
xs_tr, xs_te = scaler.transform(xtr), scaler.transform(xte)
ours_acc = [o["test"]["accuracy"] for o in ours]
runs = [opacus_train(xs_tr, ytr, xs_te, yte, s) for s in SEEDS]
opacus_acc = [a for a, _ in runs]
print(f"digits DP-SGD (sigma {SIGMA}, clip {CLIP}, {EPOCHS} epochs): aistd accuracy mean {np.mean(ours_acc):.4f} "
      f"{[round(a, 4) for a in ours_acc]}, epsilon {eps:.3f}; Opacus mean {np.mean(opacus_acc):.4f} "
      f"{[round(a, 4) for a in opacus_acc]}, epsilon {runs[0][1]:.3f}")
assert np.mean(ours_acc) >= np.mean(opacus_acc) - 0.02, (ours_acc, opacus_acc)

# 3. Calibration to a target ε holds by Opacus' accountant too.
cal = aistd_train("--seed", "0", "--dp-target-epsilon", "2")["privacy"]
by_opacus = opacus_epsilon(cal["sampling_rate"], cal["noise_multiplier"], cal["steps"], DELTA)
assert 1.99 < by_opacus <= 2.0, cal
print(f"--dp-target-epsilon 2: sigma {cal['noise_multiplier']:.4f}, Opacus' accountant says epsilon {by_opacus:.6f}")
