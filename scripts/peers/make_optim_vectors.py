"""Writes training/tests/data/torch_optim.json: PyTorch's trajectories for the update rules, the
regularization, the gradient clipping and the learning-rate schedules that aistd-training's
optimizers claim to share with it (training/tests/optim_reference.rs checks them).

Problem: f(p) = 1/2 (p - c)^T A (p - c) over four float32 parameters, with a fixed symmetric
positive definite A, from p0; 12 steps of each optimizer, with one scheduler step after every
optimizer step (so "epoch" = step). Recorded: every step's parameters and learning rate. L1 is
added to the gradient by hand (PyTorch has no L1 option): its subgradient l1 * sign(p). The
cosine schedule anneals over all 12 steps (past T_max PyTorch's rate rises again; ours stays at
the minimum).

usage: python make_optim_vectors.py OUT.json   (PyTorch 2.13 on the CPU)
"""
import json
import sys

import torch

A = torch.tensor([[3.0, 0.5, 0.0, 0.2],
                  [0.5, 2.0, 0.3, 0.0],
                  [0.0, 0.3, 1.0, 0.1],
                  [0.2, 0.0, 0.1, 0.5]])
C = torch.tensor([1.0, -2.0, 0.5, 3.0])
P0 = [0.5, -1.0, 2.0, 0.1]
STEPS = 12

CASES = [
    # name, optimizer factory, extra: l1, clip, scheduler factory
    ("sgd", lambda p: torch.optim.SGD(p, lr=0.1), {}),
    ("sgd_weight_decay", lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.05), {}),
    ("momentum", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), {}),
    ("nesterov", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True), {}),
    ("adam", lambda p: torch.optim.Adam(p, lr=0.1), {}),
    ("adam_weight_decay", lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=0.1), {}),
    ("adamw", lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.1), {}),
    ("adagrad", lambda p: torch.optim.Adagrad(p, lr=0.3), {}),
    ("rmsprop", lambda p: torch.optim.RMSprop(p, lr=0.01), {}),
    ("sgd_l1", lambda p: torch.optim.SGD(p, lr=0.1), {"l1": 0.2}),
    ("sgd_clip", lambda p: torch.optim.SGD(p, lr=0.1), {"clip": 1.0}),
    ("sgd_step_lr", lambda p: torch.optim.SGD(p, lr=0.2),
     {"schedule": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.5)}),
    ("adam_cosine", lambda p: torch.optim.Adam(p, lr=0.1),
     {"schedule": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=12, eta_min=0.01)}),
    ("sgd_warmup", lambda p: torch.optim.SGD(p, lr=0.2),
     {"schedule": lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=1 / 5, end_factor=1.0, total_iters=4)}),
]


def run(factory, extra):
    p = torch.tensor(P0, requires_grad=True)
    opt = factory([p])
    sched = extra["schedule"](opt) if "schedule" in extra else None
    path, lrs = [], []
    for _ in range(STEPS):
        opt.zero_grad()
        d = p - C
        loss = 0.5 * d @ (A @ d)
        loss.backward()
        if "l1" in extra:
            with torch.no_grad():
                p.grad += extra["l1"] * torch.sign(p)
        if "clip" in extra:
            torch.nn.utils.clip_grad_norm_([p], extra["clip"])
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
        path.append([float(v) for v in p.detach()])
    return path, lrs


out = {
    "torch": torch.__version__,
    "a": A.tolist(),
    "c": C.tolist(),
    "p0": P0,
    "cases": {},
}
for name, factory, extra in CASES:
    path, lrs = run(factory, extra)
    out["cases"][name] = {"params": path, "lr": lrs}
with open(sys.argv[1], "w") as f:
    json.dump(out, f)
    f.write("\n")
print(f"wrote {len(CASES)} cases of {STEPS} steps with torch {torch.__version__}")
