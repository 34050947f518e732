"""Protection benchmarks next to peers, in one run (called by scripts/bench-peers.sh).

- Whole-file encryption: `aistd crypt encrypt` (16 KiB chunks, release build) on a file in the page
  cache vs `openssl speed -evp chacha20-poly1305` (the physical reference: OpenSSL's assembly
  ChaCha20-Poly1305 on 16 KiB blocks, no I/O).
- RFC 6962 tree head of a 1M-line log: `aistd audit root` vs a hashlib implementation (Python).
- `aistd audit verify` of a 1M-event log (every line parsed and chained, tree recomputed).

Usage: bench_protect.py AISTD WORK_DIR REPEATS  -> prints one JSON object.
"""

import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys
import time

AISTD, WORK, REPEATS = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])
WORK.mkdir(parents=True, exist_ok=True)
ENV = dict(os.environ, AISTD_MASTER_KEY="42" * 32)


def best(f):
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def aistd(*args):
    subprocess.run([AISTD, *map(str, args)], env=ENV, check=True, stdout=subprocess.DEVNULL)


ring = WORK / "keys.json"
if not ring.exists():
    aistd("keys", "new", "--keyring", ring)
big = WORK / "plain-256m.bin"
if not big.exists():
    big.write_bytes(os.urandom(256 << 20))
big.read_bytes()  # into the page cache
enc_s = best(lambda: aistd("crypt", "encrypt", "--keyring", ring, "--chunk-size", 16384, big, WORK / "big.enc"))
dec_s = best(lambda: aistd("crypt", "decrypt", "--keyring", ring, WORK / "big.enc", WORK / "big.out"))
out = subprocess.run(["openssl", "speed", "-seconds", "3", "-bytes", "16384", "-evp", "chacha20-poly1305"],
                     capture_output=True, text=True, check=True).stdout
# The last line: "ChaCha20-Poly1305   <bytes/s in thousands>k"
m = re.search(r"(?im)^chacha20-poly1305\s+([\d.]+)k\s*$", out)
openssl_mb_s = float(m.group(1)) * 1000 / 1e6 if m else float("nan")

# A 1M-event audit log in aistd's format (docs/formats.md), chained as aistd chains lines, so that
# `aistd audit verify` accepts it. (Appending through the CLI would cost a process per event; the
# append rate is measured by `cargo bench --bench protect`.)
log = WORK / "audit-1m.jsonl"
if not log.exists():
    prev = "0" * 64
    lines = []
    for i in range(1_000_000):
        line = (f'{{"seq":{i},"prev":"{prev}","time":"2026-11-27T21:00:00.000000Z","who":"user{i % 100}",'
                f'"action":"read","data":"loans/email","purpose":"training","decision":"allow",'
                f'"reason":"analyst may read Confidential for training"}}').encode()
        lines.append(line)
        prev = hashlib.sha256(b"\x00" + line).hexdigest()
    log.write_bytes(b"\n".join(lines) + b"\n")
    pathlib.Path(str(log) + ".heads").unlink(missing_ok=True)


def py_root():
    stack = []  # (size, hash) of perfect subtrees, left to right
    with open(log, "rb") as f:
        for line in f:
            h = hashlib.sha256(b"\x00" + line[:-1]).digest()
            size = 1
            while stack and stack[-1][0] == size:
                _, l = stack.pop()
                h = hashlib.sha256(b"\x01" + l + h).digest()
                size *= 2
            stack.append((size, h))
    h = stack[-1][1]
    for _, l in reversed(stack[:-1]):
        h = hashlib.sha256(b"\x01" + l + h).digest()
    return h.hex()


ours = subprocess.run([AISTD, "audit", "root", log], capture_output=True, text=True, check=True).stdout.strip()
assert ours == py_root(), "aistd and hashlib disagree on the tree head"
root_s = best(lambda: aistd("audit", "root", log))
py_root_s = best(py_root)
verify_s = best(lambda: aistd("audit", "verify", log))
print(json.dumps({
    "encrypt_mb_s": (256 << 20) / enc_s / 1e6, "decrypt_mb_s": (256 << 20) / dec_s / 1e6,
    "openssl_mb_s": openssl_mb_s, "root_s": root_s, "py_root_s": py_root_s, "verify_1m_s": verify_s,
}))
