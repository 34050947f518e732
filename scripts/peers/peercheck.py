"""Helpers shared by the peer cross-check scripts (scripts/peers/check_*.py)."""

import re
import signal
import subprocess

_passed = 0


def check(cond, what):
    """Counts a passed check, printing it; stops the script with FAILED when `cond` is false."""
    global _passed
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    _passed += 1
    print(f"ok  {what}")


def passed():
    """How many checks have passed."""
    return _passed


def serve(argv):
    """Starts `aistd serve …` (with `--port 0`); returns the process and its host:port."""
    server = subprocess.Popen(list(map(str, argv)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    if not line.startswith("serving "):
        server.kill()
        raise SystemExit(f"FAILED: aistd serve did not start: {line!r} {server.stderr.read()}")
    return server, re.search(r" at http://(\S+)", line).group(1)


def stop(server):
    """Interrupts a server as a user would; its exit code."""
    server.send_signal(signal.SIGINT)
    try:
        return server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        raise SystemExit("FAILED: aistd serve did not stop on SIGINT")
