"""Drives `aistd serve` with NVIDIA's tritonclient (HTTP), run by scripts/test.sh.

An identity model (platform `identity`: each input comes back as the output at its position) with
one input per KServe v2 datatype is bundled with `aistd bundle create` and served with dynamic
batching. tritonclient then checks: liveness, readiness, server and model metadata; inference
with binary and with JSON inputs and outputs for every datatype (BF16 only in binary, as
tritonclient sends it), explicit and default outputs, gzip and deflate requests and responses, concurrent
asynchronous requests, and the error cases (unknown model and version, wrong datatype, shape and
element count) with the server still serving afterwards; finally SIGINT stops it cleanly.

Usage: check_serving.py AISTD_BINARY WORK_DIR
"""

import os
import pathlib
import urllib.request
import shutil
import subprocess
import sys

import ml_dtypes
import numpy as np
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException
from peercheck import check, passed, serve, stop

AISTD = os.path.abspath(sys.argv[1])
WORK = pathlib.Path(sys.argv[2])




# Triton datatype -> numpy values for a [2, 3] tensor (extremes included).
VALUES = {
    "BOOL": np.array([[True, False, True], [False, False, True]], dtype=np.bool_),
    "UINT8": np.array([[0, 1, 255], [7, 8, 9]], dtype=np.uint8),
    "UINT16": np.array([[0, 65535, 3], [4, 5, 6]], dtype=np.uint16),
    "UINT32": np.array([[0, 4294967295, 3], [4, 5, 6]], dtype=np.uint32),
    "UINT64": np.array([[0, 18446744073709551615, 3], [4, 5, 6]], dtype=np.uint64),
    "INT8": np.array([[-128, 127, 0], [1, -1, 2]], dtype=np.int8),
    "INT16": np.array([[-32768, 32767, 0], [1, -1, 2]], dtype=np.int16),
    "INT32": np.array([[-2147483648, 2147483647, 0], [1, -1, 2]], dtype=np.int32),
    "INT64": np.array([[-9223372036854775808, 9223372036854775807, 0], [1, -1, 2]], dtype=np.int64),
    "FP16": np.array([[0.5, -2.0, 65504.0], [1e-3, 3.140625, 0.0]], dtype=np.float16),
    "BF16": np.array([[1.0, -2.5, 0.15625], [256.0, -0.0078125, 3.0]], dtype=ml_dtypes.bfloat16),
    "FP32": np.array([[1.5, -2.25, 3.4028235e38], [1e-30, 0.1, -7.0]], dtype=np.float32),
    "FP64": np.array([[0.1, -2.5e300, 1e-300], [3.141592653589793, 0.0, -1.0]], dtype=np.float64),
    "BYTES": np.array([[b"", b"abc", b"\xc3\xa9t\xc3\xa9"], [b"x" * 300, b"0", b"tail"]], dtype=np.object_),
}
JSON_BYTES = np.array([["", "abc", "été"], ["x" * 300, "0", "tail"]], dtype=np.object_)

shutil.rmtree(WORK, ignore_errors=True)
(WORK / "src").mkdir(parents=True)
(WORK / "src" / "README").write_text("identity model for the tritonclient checks\n")
args = [AISTD, "bundle", "create", "--from", WORK / "src", "--out", WORK / "bundle", "--name", "echo",
        "--version", "3", "--platform", "identity"]
for dt in VALUES:
    args += ["--input", f"in_{dt}:{dt}:-1,3", "--output", f"out_{dt}:{dt}:-1,3"]
subprocess.run(list(map(str, args)), check=True, capture_output=True)

server, url = serve([AISTD, "serve", WORK / "bundle", "--port", "0", "--max-batch", "8", "--batch-delay-us", "20000"])
try:
    client = httpclient.InferenceServerClient(url=url, concurrency=8)

    check(client.is_server_live(), "server live")
    check(client.is_server_ready(), "server ready")
    meta = client.get_server_metadata()
    check(meta["name"] == "aistd" and "binary_tensor_data" in meta["extensions"], f"server metadata {meta}")
    check(client.is_model_ready("echo") and client.is_model_ready("echo", "3"), "model ready (latest and version 3)")
    mm = client.get_model_metadata("echo")
    check(mm["versions"] == ["3"] and mm["platform"] == "identity"
          and [i["datatype"] for i in mm["inputs"]] == list(VALUES)
          and all(i["shape"] == [-1, 3] for i in mm["inputs"]), "model metadata: 14 datatypes, shapes [-1, 3]")

    def request(binary_in, binary_out, names=None, bytes_values=None):
        inputs = []
        for dt, v in VALUES.items():
            if dt == "BYTES" and bytes_values is not None:
                v = bytes_values
            i = httpclient.InferInput(f"in_{dt}", list(v.shape), dt)
            i.set_data_from_numpy(v, binary_data=binary_in or dt == "BF16")
            inputs.append(i)
        outputs = None
        if names is not None:
            outputs = [httpclient.InferRequestedOutput(f"out_{dt}", binary_data=binary_out or dt == "BF16")
                       for dt in names]
        return inputs, outputs

    def same(dt, got, want):
        if dt == "BYTES":
            return got.shape == want.shape and all(
                (g if isinstance(g, bytes) else str(g).encode()) == (w if isinstance(w, bytes) else w.encode())
                for g, w in zip(got.flatten(), want.flatten()))
        if dt == "BF16":
            return got.dtype == want.dtype and np.array_equal(got.astype(np.float32), want.astype(np.float32))
        return got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True)

    # Binary in, binary out (tritonclient's defaults), every output by default.
    inputs, _ = request(True, True)
    r = client.infer("echo", inputs, request_id="b1")
    check(r.get_response()["id"] == "b1" and r.get_response()["model_version"] == "3", "id and version echoed")
    check(all(same(dt, r.as_numpy(f"out_{dt}"), v) for dt, v in VALUES.items()),
          "binary inputs and default (binary) outputs: all 14 datatypes round-trip exactly")
    check(all("parameters" in o and "binary_data_size" in o["parameters"] for o in r.get_response()["outputs"]),
          "default outputs came back in binary (binary_data_output)")

    # JSON in, JSON out (BF16 stays binary: tritonclient cannot send it as JSON).
    inputs, outputs = request(False, False, names=list(VALUES), bytes_values=JSON_BYTES)
    r = client.infer("echo", inputs, outputs=outputs)
    json_out = [o["name"] for o in r.get_response()["outputs"] if "data" in o]
    check(len(json_out) == 13, f"13 outputs in JSON (all but BF16): {json_out}")
    ok = all(same(dt, r.as_numpy(f"out_{dt}"), JSON_BYTES if dt == "BYTES" else v) for dt, v in VALUES.items())
    check(ok, "JSON inputs and JSON outputs: all datatypes round-trip (FP16 and FP64 exactly)")

    # Explicit outputs: a subset, mixed binary and JSON.
    inputs, _ = request(True, True)
    outputs = [httpclient.InferRequestedOutput("out_INT8", binary_data=False),
               httpclient.InferRequestedOutput("out_FP64", binary_data=True)]
    r = client.infer("echo", inputs, outputs=outputs)
    names = [o["name"] for o in r.get_response()["outputs"]]
    check(names == ["out_INT8", "out_FP64"] and same("INT8", r.as_numpy("out_INT8"), VALUES["INT8"])
          and same("FP64", r.as_numpy("out_FP64"), VALUES["FP64"]), "explicit outputs: only those, in their modes")

    # Compressed requests.
    for algo in ("gzip", "deflate"):
        inputs, _ = request(True, True)
        r = client.infer("echo", inputs, request_compression_algorithm=algo)
        check(same("FP32", r.as_numpy("out_FP32"), VALUES["FP32"]), f"{algo}-compressed request")
    # Compressed responses (tritonclient sends Accept-Encoding and inflates the answer).
    for algo in ("gzip", "deflate"):
        inputs, _ = request(True, True)
        r = client.infer("echo", inputs, response_compression_algorithm=algo)
        check(all(same(dt, r.as_numpy(f"out_{dt}"), VALUES[dt]) for dt in VALUES), f"{algo}-compressed response, every datatype")

    # Concurrent asynchronous requests of one row each (through the dynamic batcher).
    pending = []
    for k in range(64):
        row = {dt: v[k % 2:k % 2 + 1] for dt, v in VALUES.items()}
        ins = []
        for dt, v in row.items():
            i = httpclient.InferInput(f"in_{dt}", list(v.shape), dt)
            i.set_data_from_numpy(v)
            ins.append(i)
        pending.append((k % 2, client.async_infer("echo", ins, request_id=str(k))))
    results = [(row, p.get_result()) for row, p in pending]
    good = all(r.get_response()["id"] == str(k) and
               same("INT64", r.as_numpy("out_INT64"), VALUES["INT64"][row:row + 1]) and
               same("BYTES", r.as_numpy("out_BYTES"), VALUES["BYTES"][row:row + 1])
               for k, (row, r) in enumerate(results))
    check(good, "64 concurrent async requests each get their own row back")

    def refused(what, words, fn):
        try:
            fn()
        except InferenceServerException as e:
            check(all(w in str(e) for w in words), f"{what}: refused ({str(e)[:90]})")
            return
        raise SystemExit(f"FAILED: {what} was accepted")

    inputs, _ = request(True, True)
    refused("unknown model", ["unknown model nope"], lambda: client.infer("nope", inputs))
    refused("unknown version", ["no version 9"], lambda: client.infer("echo", inputs, model_version="9"))
    refused("unknown model metadata", ["unknown model"], lambda: client.get_model_metadata("nope"))
    bad = httpclient.InferInput("in_FP32", [2, 3], "FP64")
    bad.set_data_from_numpy(VALUES["FP64"])
    refused("wrong datatype", ["in_FP32", "FP64"], lambda: client.infer("echo", inputs[:11] + [bad] + inputs[12:]))
    bad = httpclient.InferInput("in_FP32", [3, 2], "FP32")
    bad.set_data_from_numpy(VALUES["FP32"].reshape(3, 2))
    refused("wrong shape", ["in_FP32", "shape"], lambda: client.infer("echo", inputs[:11] + [bad] + inputs[12:]))
    bad = httpclient.InferInput("in_FP32", [2, 3], "FP32")
    bad.set_data_from_numpy(VALUES["FP32"])
    bad._parameters["binary_data_size"] = 20  # lie about the size
    refused("binary size that does not add up", ["binary"], lambda: client.infer("echo", inputs[:11] + [bad] + inputs[12:]))
    check(not client.is_model_ready("nope"), "an unknown model is not ready")
    inputs, _ = request(True, True)
    r = client.infer("echo", inputs)
    check(same("UINT64", r.as_numpy("out_UINT64"), VALUES["UINT64"]), "still serving after the errors")

    # /metrics, parsed by the Prometheus Python client: 1 + 1 + 1 + 2 + 2 + 64 + 1 = 72 answered
    # requests of 2 rows (64 of them 1 row), 2 refused by the model's signature (the others never
    # reached a model).
    answered, rows = 72, 8 * 2 + 64
    text = urllib.request.urlopen(f"http://{url}/metrics").read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for smp in family.samples:
            # The parser names every counter sample NAME_total; compare without the suffix.
            key = (smp.name.removesuffix("_total"), tuple(sorted((k, v) for k, v in smp.labels.items() if k not in ("model", "version"))))
            samples[key] = smp.value
    get = lambda name, **labels: samples.get((name.removesuffix("_total"), tuple(sorted(labels.items()))))
    check(get("nv_inference_request_success") == answered and get("aistd_inference_request_success_total") == answered,
          f"metrics: {answered} successful requests (Triton's and our name)")
    check(get("nv_inference_request_failure") == 2 and get("aistd_inference_request_failure_total", reason="invalid") == 2,
          "metrics: 2 failures, reason invalid")
    check(get("nv_inference_count") == rows, f"metrics: {rows} inferences (rows)")
    check(get("aistd_inference_request_duration_seconds_count") == answered + 2
          and get("aistd_inference_request_duration_seconds_bucket", le="+Inf") == answered + 2,
          "metrics: the latency histogram counts every request")
    execs = get("nv_inference_exec_count")
    check(get("aistd_inference_batch_size_sum") == rows and execs == get("aistd_inference_batch_size_count")
          and execs < answered, f"metrics: {answered} requests ran in {execs:.0f} batches of {rows} rows in all")
    check(get("aistd_inference_in_flight_requests") == 0 and get("aistd_recommended_replicas") == 1,
          "metrics: nothing in flight, one replica recommended")
    client.close()
finally:
    code = stop(server)
check(code == 0, f"SIGINT stops the server cleanly (exit {code})")

# Bearer tokens: a second server that requires one (read from a file, not the command line).
(WORK / "tokens").write_text("first-token\nsecond-token\n")
server, url = serve([AISTD, "serve", WORK / "bundle", "--port", "0", "--token-file", WORK / "tokens"])
try:
    client = httpclient.InferenceServerClient(url=url)
    inputs, _ = request(True, True)
    try:
        client.infer("echo", inputs)
        raise SystemExit("FAILED: a request without a token was answered")
    except InferenceServerException as e:
        check("401" in str(e.status()) or "no bearer token" in str(e), f"no token: refused ({str(e)[:70]})")
    r = client.infer("echo", inputs, headers={"Authorization": "Bearer second-token"})
    check(same("INT16", r.as_numpy("out_INT16"), VALUES["INT16"]), "a token from the file: answered")
    client.close()
finally:
    stop(server)

# A canary: versions 3 and 4 of the model, 25% of unversioned requests to 4.
args4 = [str(a) for a in args]
args4[args4.index("--version") + 1] = "4"
args4[args4.index("--out") + 1] = str(WORK / "bundle4")
subprocess.run(args4, check=True, capture_output=True)
server, url = serve([AISTD, "serve", WORK / "bundle", WORK / "bundle4", "--port", "0", "--canary", "4=25"])
try:
    client = httpclient.InferenceServerClient(url=url)
    check(client.get_model_metadata("echo")["versions"] == ["3", "4"], "both versions listed")
    inputs, _ = request(True, True)
    versions = [client.infer("echo", inputs).get_response()["model_version"] for _ in range(100)]
    check(versions.count("4") == 25 and versions.count("3") == 75, f"--canary 4=25: {versions.count('4')} of 100 to version 4")
    check(client.infer("echo", inputs, model_version="3").get_response()["model_version"] == "3",
          "a versioned request bypasses the split")
    client.close()
finally:
    stop(server)

print(f"\nall {passed()} tritonclient checks passed")
