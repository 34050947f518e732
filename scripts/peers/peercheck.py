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


def interrupt(proc):
    """Interrupts a process as a user would (SIGINT); its exit code, or None when it had to be
    killed after 30 s."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None


def stop(server):
    """Interrupts `aistd serve`; its exit code (FAILED if it does not stop)."""
    code = interrupt(server)
    if code is None:
        raise SystemExit("FAILED: aistd serve did not stop on SIGINT")
    return code
