"""The live benchmark's memory figures: private and shared resident memory of a receiver's
process tree, sampled (benchmarks/peers.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from benchmarks.peers import Process
from collector.journal import on_tmpfs

# A child that holds 64 MiB of private memory and 32 MiB of a shared mapping of a tmpfs
# file, then waits to be stopped; its own child holds 16 MiB more of private memory.
CHILD = """
import mmap, os, subprocess, sys, time
private = bytearray(64 << 20)
for i in range(0, len(private), 4096):
    private[i] = 1
path = f"/dev/shm/egress-test-memory-{os.getpid()}"
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
os.ftruncate(fd, 32 << 20)
shared = mmap.mmap(fd, 32 << 20)
os.unlink(path)
for i in range(0, len(shared), 4096):
    shared[i] = 1
grandchild = subprocess.Popen([sys.executable, "-c",
    "b = bytearray(16 << 20)\\nfor i in range(0, len(b), 4096): b[i] = 1\\n"
    "import time\\ntime.sleep(60)"])
print("ready", flush=True)
time.sleep(60)
"""


def test_private_and_shared_memory_of_a_process_tree(tmp_path):
    if sys.platform != "linux" or not on_tmpfs(Path("/dev/shm")):
        pytest.skip("reads /proc, and needs /dev/shm on tmpfs")
    log = tmp_path / "child.log"
    child = Process([sys.executable, "-c", CHILD], log, None)
    deadline = time.monotonic() + 30
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # a few samples with the grandchild's memory touched
    usage = child.stop()
    assert 32 <= usage.peak_shared_mb < 40
    assert 64 + 16 <= usage.peak_private_mb < 64 + 16 + 120  # plus two interpreters
    assert usage.peak_rss_mb >= 64 + 32  # wait4 counts the shared mapping too
