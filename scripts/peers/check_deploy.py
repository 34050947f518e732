"""Peer cross-checks for model bundles, run by scripts/test.sh.

- hashlib recomputes every file digest and the manifest digest of a bundle aistd created.
- pycryptodome's RFC 8032 Ed25519 verifies aistd's signature over the manifest digest, and signs a
  bundle that `aistd bundle verify` then accepts with that key (and refuses once edited).
- Python's tarfile reads aistd's archive (regular files, no owners or times, the same bytes), and
  an archive written by tarfile from a bundle directory verifies in aistd; one with a `../` member
  is refused without writing outside.

The formats are in docs/formats.md ("Model bundles"). Usage: check_deploy.py AISTD_BINARY WORK_DIR
"""

import hashlib
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa
from peercheck import check, passed

AISTD = os.path.abspath(sys.argv[1])
WORK = pathlib.Path(sys.argv[2])


def run(*args, ok=True):
    p = subprocess.run([AISTD, *map(str, args)], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise SystemExit(f"aistd {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p




shutil.rmtree(WORK, ignore_errors=True)
WORK.mkdir(parents=True)
src = WORK / "model"
(src / "nested").mkdir(parents=True)
(src / "model.onnx").write_bytes(os.urandom(200_000))
(src / "nested" / "vocab.txt").write_text("alpha\nbeta\n")
key = WORK / "signing.key"
public = run("bundle", "keygen", "--out", key).stdout.strip()
bundle = WORK / "bundle"
run("bundle", "create", "--from", src, "--out", bundle, "--name", "peer-model", "--version", "1",
    "--platform", "onnx", "--input", "x:FP32:-1,4", "--output", "y:INT64:-1", "--sign", key)

manifest_bytes = (bundle / "bundle.json").read_bytes()
manifest = json.loads(manifest_bytes)
sig = json.loads((bundle / "bundle.sig").read_text())
for rel, entry in manifest["files"].items():
    data = (bundle / rel).read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"] or len(data) != entry["size"]:
        raise SystemExit(f"FAIL: {rel} does not match its manifest entry")
check(sorted(manifest["files"]) == ["model.onnx", "nested/vocab.txt"]
      and all((bundle / r).read_bytes() == (src / r).read_bytes() for r in manifest["files"]),
      "hashlib: every file's SHA-256 and size equal the manifest's, contents equal the source's")
digest = hashlib.sha256(manifest_bytes).digest()
check(sig["manifest_sha256"] == digest.hex() and sig["public_key"] == public,
      "the signature file names the manifest's SHA-256 and the key's public half")
verifier = eddsa.new(eddsa.import_public_key(bytes.fromhex(public)), "rfc8032")
verifier.verify(digest, bytes.fromhex(sig["signature"]))
check(True, "pycryptodome Ed25519 (RFC 8032) verifies aistd's signature over the manifest digest")
try:
    verifier.verify(hashlib.sha256(manifest_bytes + b" ").digest(), bytes.fromhex(sig["signature"]))
    check(False, "pycryptodome rejects the signature for another digest")
except ValueError:
    check(True, "pycryptodome rejects the signature for another digest (the check is not a no-op)")

# pycryptodome signs; aistd verifies with that key only.
theirs = ECC.generate(curve="Ed25519")
their_public = theirs.public_key().export_key(format="raw").hex()
signed = WORK / "signed-by-pycryptodome"
shutil.copytree(bundle, signed)
(signed / "bundle.sig").write_text(json.dumps({
    "algorithm": "ed25519",
    "public_key": their_public,
    "manifest_sha256": digest.hex(),
    "signature": eddsa.new(theirs, "rfc8032").sign(digest).hex(),
}))
p = run("bundle", "verify", signed, "--trusted-key", their_public, "--json")
check(json.loads(p.stdout)["signer"] == their_public,
      "aistd verifies a signature made by pycryptodome with the trusted key")
p = run("bundle", "verify", signed, "--trusted-key", public, ok=False)
check(p.returncode == 1 and "not trusted" in p.stderr, "aistd refuses it when that key is not trusted")
(signed / "bundle.json").write_bytes(manifest_bytes.replace(b'"version": "1"', b'"version": "2"'))
p = run("bundle", "verify", signed, ok=False)
check(p.returncode == 1 and "manifest changed" in p.stderr,
      "aistd refuses the pycryptodome-signed bundle once its manifest is edited")

# Archives: ours read by tarfile, tarfile's read by ours.
archive = WORK / "bundle.tar"
run("bundle", "pack", bundle, "--out", archive)
with tarfile.open(archive) as t:
    members = t.getmembers()
    names = [m.name for m in members]
    same = all(t.extractfile(m).read() == (bundle / m.name).read_bytes() for m in members)
check(names == ["bundle.json", "bundle.sig", "model.onnx", "nested/vocab.txt"]
      and all(m.isreg() and m.mtime == 0 and m.uid == 0 for m in members) and same,
      "tarfile reads aistd's archive: manifest, signature, files in order, no owners or times, same bytes")
theirs_tar = WORK / "tarfile.tar"
with tarfile.open(theirs_tar, "w") as t:
    for rel in ["bundle.json", "bundle.sig", "model.onnx", "nested/vocab.txt"]:
        t.add(bundle / rel, arcname=rel)
p = run("bundle", "verify", theirs_tar, "--trusted-key", public, "--json")
check(json.loads(p.stdout)["manifest_sha256"] == digest.hex(),
      "aistd verifies an archive tarfile wrote from the bundle directory")
evil = WORK / "evil.tar"
with tarfile.open(evil, "w") as t:
    t.add(bundle / "bundle.json", arcname="bundle.json")
    info = tarfile.TarInfo("../escaped.txt")
    info.size = 3
    t.addfile(info, io.BytesIO(b"bad"))
p = run("bundle", "unpack", evil, "--out", WORK / "evil-out", ok=False)
check(p.returncode == 1 and "../escaped.txt" in p.stderr and not (WORK.parent / "escaped.txt").exists()
      and not (WORK / "evil-out").exists(),
      "aistd refuses an archive with a ../ member and writes nothing")

print(f"\nall {passed()} bundle peer checks passed")
