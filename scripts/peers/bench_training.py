"""Epoch times of aistd's training backends next to PyTorch on the same workloads, in one run.

Usage: bench_training.py AISTD ROWS EPOCHS
Prints JSON: for each workload and thread count, the median epoch seconds of `aistd train-bench`
with the ndarray backend (and the tch backend when AISTD was built with it) and of the same
network, batch size, optimizer and thread count in PyTorch (shuffled mini-batches, Adam 1e-3).
"""
import json
import subprocess
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

aistd, rows, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def ours(workload, backend, threads):
    out = subprocess.run(
        [aistd, "train-bench", "--workload", workload, "--backend", backend,
         "--threads", str(threads), "--epochs", str(epochs), "--rows", str(rows)],
        capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
    return json.loads(out.stdout)["median_epoch_seconds"], None


def pytorch(workload, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if workload == "digits":
        x, y = load_digits(return_X_y=True)
        x = torch.tensor((x - x.mean(0)) / (x.std(0) + 1e-8), dtype=torch.float32)
        y = torch.tensor(y, dtype=torch.int64)
        net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        loss_fn, batch = torch.nn.CrossEntropyLoss(), 64
    else:
        rng = np.random.default_rng(7)
        x = torch.tensor(rng.uniform(-1, 1, (rows, 100)), dtype=torch.float32)
        y = x[:, :10].sum(1, keepdim=True)
        net = torch.nn.Sequential(torch.nn.Linear(100, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                  torch.nn.ReLU(), torch.nn.Linear(256, 1))
        loss_fn, batch = torch.nn.MSELoss(), 256
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    n = x.shape[0]
    times = []
    for epoch in range(epochs + 1):
        t = time.perf_counter()
        order = torch.randperm(n)
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
        if epoch > 0:
            times.append(time.perf_counter() - t)
    times.sort()
    return times[(len(times) - 1) // 2]


result = {"torch": torch.__version__, "rows": rows, "epochs": epochs, "runs": []}
for workload, threads in [("digits", 1), ("wide", 1), ("wide", 2)]:
    run = {"workload": workload, "threads": threads, "pytorch_s": pytorch(workload, threads)}
    for backend in ["ndarray", "tch"]:
        s, err = ours(workload, backend, threads)
        run[f"{backend}_s"] = s
        if err:
            run[f"{backend}_error"] = err
    result["runs"].append(run)
print(json.dumps(result))
