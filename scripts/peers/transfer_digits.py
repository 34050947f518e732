"""#8's transfer check run by PyTorch: the protocol of
training/tests/transfer.rs::pre_training_on_digits_0_to_4_beats_training_from_scratch_on_10_percent_of_5_to_9.

A 64 -> 128 -> 5 ReLU network pre-trained on every digits image of 0-4 (pixels / 16, with its
one-pixel shifts down, up, right and left; Adam 1e-3, 30 epochs, batches of 32), then, for 20
draws of 10% of the 5-9 images: trained from scratch on that 10% (with shifts, and without) and
fine-tuned from the pre-trained layer with a new head (with shifts), Adam 0.006, 30 epochs;
accuracy on the other 90%. Prints one JSON line; exits 1 if fine-tuning does not beat training
from scratch on average (the direction our test asserts).

usage: python transfer_digits.py [DRAWS]
"""
import json
import sys

import numpy as np
import torch
import torch.nn as nn
from sklearn.datasets import load_digits

torch.set_num_threads(2)
SHIFTS = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]


def shifted(x):
    """The images once per shift (dy down, dx right), uncovered pixels 0."""
    im = x.reshape(-1, 8, 8)
    out = []
    for dy, dx in SHIFTS:
        s = np.zeros_like(im)
        s[:, max(dy, 0):8 + min(dy, 0), max(dx, 0):8 + min(dx, 0)] = \
            im[:, max(-dy, 0):8 + min(-dy, 0), max(-dx, 0):8 + min(-dx, 0)]
        out.append(s)
    return np.concatenate(out).reshape(-1, 64)


def network(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU()), nn.Linear(128, 5)


def fit(body, head, x, y, lr, seed, epochs=30, batch=32):
    model = nn.Sequential(body, head)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.tensor(x), torch.tensor(y, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(torch.tensor(x)).argmax(1).numpy() == y).mean())


def main():
    draws = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    src = y < 5
    xs, ys, xt, yt = x[src], y[src], x[~src], y[~src] - 5
    body, head = network(1)
    fit(body, head, shifted(xs), np.tile(ys, len(SHIFTS)), 1e-3, 1)
    pre = {k: v.clone() for k, v in body.state_dict().items()}
    scratch, plain, tuned = [], [], []
    for d in range(draws):
        order = np.random.RandomState(1000 + d).permutation(len(xt))
        n = int(round(len(xt) * 0.1))
        few, rest = order[:n], order[n:]
        xf, yf = shifted(xt[few]), np.tile(yt[few], len(SHIFTS))
        scratch.append(accuracy(fit(*network(d), xf, yf, 0.006, d), xt[rest], yt[rest]))
        plain.append(accuracy(fit(*network(d), xt[few], yt[few], 0.006, d), xt[rest], yt[rest]))
        b, h = network(d)
        b.load_state_dict(pre)
        tuned.append(accuracy(fit(b, h, xf, yf, 0.006, d), xt[rest], yt[rest]))
    scratch, plain, tuned = map(np.array, (scratch, plain, tuned))
    report = {
        "draws": draws,
        "train_rows": n,
        "test_rows": len(xt) - n,
        "scratch": round(float(scratch.mean()), 4),
        "scratch_no_shifts": round(float(plain.mean()), 4),
        "fine_tuned": round(float(tuned.mean()), 4),
        "wins": int((tuned > scratch).sum()),
    }
    print(json.dumps(report))
    sys.exit(0 if tuned.mean() > max(scratch.mean(), plain.mean()) else 1)


if __name__ == "__main__":
    main()
