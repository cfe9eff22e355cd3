"""Launching a 2-process gloo ``torchrun`` on the CPU from a test."""

from __future__ import annotations

import os
import subprocess
import sys

_RENDEZVOUS_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def run_two_processes(arguments: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node=2 ARGUMENTS`` with one thread per process.

    ``arguments`` is what follows the torchrun options: a script path and its arguments, or
    ``-m module ...``. Inherited rendezvous variables are removed so that a test run under an
    outer torchrun still starts its own group. Fails the test (with the tail of both streams)
    unless both processes exit 0.
    """
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    for name in _RENDEZVOUS_VARIABLES:
        environment.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        *arguments,
    ]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    return completed
