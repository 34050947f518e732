"""Peer cross-checks for protection, audit and lineage, run by scripts/test.sh.

- pycryptodome decrypts a file and encrypted/tokenized columns written by aistd, and encrypts a file
  that aistd decrypts, using only what docs/formats.md says.
- An RFC 6962 implementation written here with hashlib agrees with `aistd audit root` and
  `aistd audit prove` on random logs; `aistd audit verify` names a tampered line.
- jsonschema validates every lineage event against the official OpenLineage schemas vendored in
  governance/tests/data/openlineage.

Usage: check_protect.py AISTD_BINARY WORK_DIR
"""

import hashlib
import hmac
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys

import pyarrow.ipc as ipc
import pyarrow.csv as pacsv
from Crypto.Cipher import ChaCha20_Poly1305
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from peercheck import check, passed

AISTD = os.path.abspath(sys.argv[1])
WORK = pathlib.Path(sys.argv[2])
ROOT = pathlib.Path(__file__).resolve().parents[2]
MASTER = bytes(range(32))
ENV = dict(os.environ, AISTD_MASTER_KEY=MASTER.hex())


def run(*args, ok=True):
    p = subprocess.run([AISTD, *map(str, args)], env=ENV, capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise SystemExit(f"aistd {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p




# ---- docs/formats.md, implemented independently -------------------------------------------------

def keyring_keys(path):
    ring = json.loads(pathlib.Path(path).read_text())
    assert ring["format"] == "aistd-keyring" and ring["version"] == 1
    keys = {}
    for k in ring["keys"]:
        w = bytes.fromhex(k["wrapped"])
        nonce, ct, tag = w[:24], w[24:56], w[56:]
        c = ChaCha20_Poly1305.new(key=MASTER, nonce=nonce)
        c.update(b"aistd-keyring-v1\x00" + k["id"].encode())
        keys[k["id"]] = c.decrypt_and_verify(ct, tag)
    return keys, ring["primary"]


def decrypt_file(data, keys):
    assert data[:8] == b"AISTDENC" and data[8] == 1 and data[9] == 1
    chunk = int.from_bytes(data[10:14], "little")
    idlen = data[14]
    key_id = data[15:15 + idlen].decode()
    prefix = data[15 + idlen:31 + idlen]
    header = data[:31 + idlen]
    pos, i, out = len(header), 0, bytearray()
    while True:
        piece = data[pos:pos + chunk + 16]
        if len(piece) < 16:
            raise ValueError(f"truncated at byte {pos}")
        last = len(piece) < chunk + 16
        nonce = prefix + i.to_bytes(8, "big")[1:] + (b"\x01" if last else b"\x00")
        c = ChaCha20_Poly1305.new(key=keys[key_id], nonce=nonce)
        c.update(header)
        out += c.decrypt_and_verify(piece[:-16], piece[-16:])
        pos += len(piece)
        i += 1
        if last:
            if pos != len(data):
                raise ValueError("trailing bytes")
            return bytes(out)


def encrypt_file(plain, key_id, key, chunk):
    prefix = os.urandom(16)
    header = b"AISTDENC" + bytes([1, 1]) + chunk.to_bytes(4, "little") + bytes([len(key_id)]) + key_id.encode() + prefix
    out, i, pos = bytearray(header), 0, 0
    while True:
        piece = plain[pos:pos + chunk]
        last = len(piece) < chunk
        nonce = prefix + i.to_bytes(8, "big")[1:] + (b"\x01" if last else b"\x00")
        c = ChaCha20_Poly1305.new(key=key, nonce=nonce)
        c.update(header)
        ct, tag = c.encrypt_and_digest(piece)
        out += ct + tag
        pos += len(piece)
        i += 1
        if last:
            return bytes(out)


def decrypt_value(v, key, key_id, column):
    c = ChaCha20_Poly1305.new(key=key, nonce=v[:24])
    c.update(b"aistd-col-v1\x00" + key_id.encode() + b"\x00" + column.encode())
    return c.decrypt_and_verify(v[24:-16], v[-16:])


def token(key, context, value):
    mac = hmac.new(key, b"aistd-token-v1\x00" + context.encode() + b"\x00" + value.encode(), hashlib.sha256)
    return "tok_" + mac.digest()[:16].hex()


# RFC 6962 with hashlib.
def leaf(b):
    return hashlib.sha256(b"\x00" + b).digest()


def node(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


def mth(leaves):
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


def path(m, leaves):
    if len(leaves) <= 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m, leaves, whole):
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return subproof(m, leaves[:k], whole) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


# ---- the checks ---------------------------------------------------------------------------------

shutil.rmtree(WORK, ignore_errors=True)
WORK.mkdir(parents=True)
ring = WORK / "keys.json"
run("keys", "new", "--keyring", ring)
keys, primary = keyring_keys(ring)
check(len(keys) == 1 and primary in keys, "pycryptodome unwraps the keyring's data key with the master key")

plain = os.urandom(3 * 16384 + 1234)
(WORK / "plain.bin").write_bytes(plain)
run("crypt", "encrypt", "--keyring", ring, "--chunk-size", 16384, WORK / "plain.bin", WORK / "plain.bin.enc")
sealed = (WORK / "plain.bin.enc").read_bytes()
check(decrypt_file(sealed, keys) == plain, "pycryptodome decrypts a file aistd encrypted (16 KiB chunks)")
empty = WORK / "empty.bin"
empty.write_bytes(b"")
run("crypt", "encrypt", "--keyring", ring, empty, WORK / "empty.enc")
check(decrypt_file((WORK / "empty.enc").read_bytes(), keys) == b"", "an empty file round-trips")

mine = encrypt_file(plain[:50000], primary, keys[primary], 4096)
(WORK / "python.enc").write_bytes(mine)
run("crypt", "decrypt", "--keyring", ring, WORK / "python.enc", WORK / "python.out")
check((WORK / "python.out").read_bytes() == plain[:50000], "aistd decrypts a file pycryptodome encrypted from the spec")

for name, mutate in [
    ("flipped byte", lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:]),
    ("truncated at a chunk boundary", lambda b: b[: len(b) - (len(b) - 31 - len(primary)) % (16384 + 16)]),
    ("last chunk removed", lambda b: b[: 31 + len(primary) + 3 * (16384 + 16)]),
]:
    (WORK / "bad.enc").write_bytes(mutate(sealed))
    p = run("crypt", "decrypt", "--keyring", ring, WORK / "bad.enc", WORK / "bad.out", ok=False)
    check(p.returncode == 2 and "byte" in p.stderr and not (WORK / "bad.out").exists(),
          f"aistd rejects a {name} file with an offset and writes nothing")

run("keys", "rotate", "--keyring", ring)
run("crypt", "decrypt", "--keyring", ring, WORK / "plain.bin.enc", WORK / "after-rotation.bin")
check((WORK / "after-rotation.bin").read_bytes() == plain, "a file from before rotation still decrypts")
keys, primary2 = keyring_keys(ring)
check(primary2 != primary and len(keys) == 2, "rotation adds a new primary key")

# A governed run: encrypted and tokenized columns, audit log, lineage.
csv = WORK / "loans.csv"
run("data", "generate", "--rows", 3000, "--seed", 5, "--out", csv)
log = WORK / "audit.jsonl"
out = WORK / "governed"
run("data", "govern", csv, "--out", out, "--keyring", ring, "--audit", log, "--principal", "ci", "--no-dedup")
table = ipc.open_file(out / "data.arrow").read_all()
# No dedup and no drops: the output has the input's rows in the input's order.
original = pacsv.read_csv(csv).to_pandas()
check(table.num_rows == len(original), f"all {len(original)} rows kept")
field = table.schema.field("national_id")
md = {k.decode(): v.decode() for k, v in field.metadata.items()}
check(md["aistd.encryption"] == "xchacha20poly1305-v1" and md["aistd.encryption.type"] == "Utf8"
      and md["aistd.classification"] == "Restricted", "the encrypted column says how to open it")
kid = md["aistd.encryption.key_id"]
ssns = table.column("national_id").to_pylist()
decrypted = [None if v is None else decrypt_value(v, keys[kid], kid, "national_id").decode() for v in ssns]
want = [None if str(v) == "nan" else str(v) for v in original["national_id"]]
check(decrypted == want, f"pycryptodome decrypts all {len(want)} national_id values to the CSV's values")
emails = table.column("email").to_pylist()
tmd = {k.decode(): v.decode() for k, v in table.schema.field("email").metadata.items()}
_, tkid, ctx = tmd["aistd.token"].split(":")
# aistd reads empty fields as null.
expect = [None if str(v) in ("nan", "") else token(keys[tkid], ctx, str(v)) for v in original["email"]]
check(emails == expect, "HMAC-SHA256 tokens recomputed with hashlib match the email column")

v = run("audit", "verify", log)
check(v.stdout.startswith("ok:"), "aistd audit verify accepts the run's audit log")
lines = log.read_bytes().split(b"\n")[:-1]
root = run("audit", "root", log).stdout.strip()
check(root == mth(lines).hex(), "hashlib RFC 6962 head of the audit log equals aistd audit root")
tampered = WORK / "tampered.jsonl"
bad = list(lines)
bad[2] = bad[2].replace(b'"who":"ci"', b'"who":"xx"')
tampered.write_bytes(b"\n".join(bad) + b"\n")
shutil.copy(str(log) + ".heads", str(tampered) + ".heads")
p = run("audit", "verify", tampered, ok=False)
check(p.returncode == 1 and "line 3" in p.stdout, f"a changed audit line is named: {p.stdout.strip()[:90]}")

rng = random.Random(6962)
for trial in range(25):
    n = rng.choice([0, 1, 2, 3, 7, 8, 9, 31, 64, 100, rng.randrange(1, 300)])
    leaves = [bytes(rng.randrange(32, 127) for _ in range(rng.randrange(0, 40))) for _ in range(n)]
    f = WORK / f"random{trial}.log"
    f.write_bytes(b"".join(l + b"\n" for l in leaves))
    got = run("audit", "root", f).stdout.strip()
    assert got == mth(leaves).hex(), (trial, n, got)
    if n:
        i = rng.randrange(n)
        size = rng.randrange(i + 1, n + 1)
        proof = json.loads(run("audit", "prove", f, "--index", i, "--size", size).stdout)
        assert proof["root"] == mth(leaves[:size]).hex()
        assert proof["proof"] == [h.hex() for h in path(i, leaves[:size])], (trial, i, size)
        old = rng.randrange(0, n + 1)
        cons = json.loads(run("audit", "prove", f, "--from", old).stdout)
        want = subproof(old, leaves, True) if 0 < old < n else []
        assert cons["proof"] == [h.hex() for h in want], (trial, old, n)
check(True, "25 random logs: aistd root, inclusion and consistency proofs equal a hashlib RFC 6962")

# Lineage against the official OpenLineage JSON Schemas.
schemas = ROOT / "governance" / "tests" / "data" / "openlineage"
resources = []
for f in [schemas / "OpenLineage.json", schemas / "1-0-2" / "OpenLineage.json", *schemas.glob("*DatasetFacet.json")]:
    c = json.loads(f.read_text())
    resources.append((c["$id"], Resource.from_contents(c, default_specification=DRAFT202012)))
registry = Registry().with_resources(resources)


def errors(instance, url):
    v = Draft202012Validator({"$ref": url}, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [f"{list(e.absolute_path)}: {e.message}" for e in v.iter_errors(instance)]


events = [json.loads(l) for l in (out / "lineage.jsonl").read_text().splitlines()]
check([e["eventType"] for e in events] == ["START", "COMPLETE"], "the run emitted START and COMPLETE")
facets_seen = set()
for e in events:
    errs = errors(e, e["schemaURL"])
    for ds in e.get("inputs", []) + e.get("outputs", []):
        for bag in ("facets", "inputFacets", "outputFacets"):
            for name, facet in ds.get(bag, {}).items():
                facets_seen.add(name)
                errs += [f"{name}: {m}" for m in errors(facet, facet["_schemaURL"])]
    if errs:
        raise SystemExit(f"FAIL: lineage event {e['eventType']} is invalid:\n" + "\n".join(errs))
check(facets_seen == {"schema", "dataSource", "dataQualityMetrics", "dataQualityAssertions"},
      f"every lineage event and facet validates against the OpenLineage schemas ({sorted(facets_seen)})")
broken = dict(events[1], eventTime="yesterday")
check(errors(broken, broken["schemaURL"]), "the validator rejects a broken event (it is not a no-op)")

print(f"\nall {passed()} protection/audit/lineage peer checks passed")
