"""Test support: the real ``batos`` binary on a private image and ports.

``$BATOS_BIN`` names the binary (scripts/python-tests.sh sets it); without
it, the release build in ``$CARGO_TARGET_DIR`` (default
``~/.cache/batos/target``) is used. Every kernel here is bounded: one that
never prints its ready line, or never exits when stopped, fails the test
with its log's tail.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

READY_TIMEOUT = 30.0
EXIT_TIMEOUT = 30.0
REPO = Path(__file__).resolve().parents[3]


def batos_bin() -> str:
    path = os.environ.get("BATOS_BIN")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/batos/target"))
        path = os.path.join(target, "release", "batos")
    if not os.path.isfile(path):
        pytest.fail(f"the batos binary is not at {path}: build it (cargo build --release) or set BATOS_BIN")
    return path


class KernelProcess:
    """A running kernel: its endpoints (from its ready line), its image
    directory and its log."""

    def __init__(self, data: Path, args: List[str], env: Optional[Dict[str, str]] = None) -> None:
        self.data = data
        self.log_path = data.parent / f"kernel-{time.monotonic_ns()}.log"
        command = [
            batos_bin(),
            "run",
            "--data", str(data),
            "--endpoint", "tcp://127.0.0.1:*",
            "--events", "tcp://127.0.0.1:*",
            "--metrics", "127.0.0.1:0",
            *args,
        ]
        environment = dict(os.environ, BATOS_HEARTBEAT_INTERVAL_MS="0", **(env or {}))
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=environment
            )
        line = self._ready_line()
        words = dict(word.split("=", 1) for word in line.split()[2:])
        self.endpoint = words["endpoint"]
        self.events = words["events"]
        self.metrics = words["metrics"]

    def _ready_line(self) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        pending = b""
        while b"\n" not in pending:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, left))
            chunk = os.read(self.process.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                self.process.kill()
                pytest.fail(f"the kernel printed no ready line; its log ends:\n{self.log_tail()}")
            pending += chunk
        line = pending.split(b"\n", 1)[0].decode()
        assert line.startswith("batos ready "), line
        return line

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> int:
        """SIGTERM, and the exit status (a graceful stop is 0)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"the kernel did not stop; its log ends:\n{self.log_tail()}")


@pytest.fixture
def start_kernel() -> Iterator:
    """Starts kernels (``start_kernel(*args, data=None, env=None)``) that
    are stopped, and must stop cleanly, when the test ends."""
    started: List[KernelProcess] = []
    with tempfile.TemporaryDirectory(prefix="batos-py-") as root:

        def start(*args: str, data: Optional[Path] = None, env: Optional[Dict[str, str]] = None) -> KernelProcess:
            kernel = KernelProcess(data or Path(root) / f"image{len(started)}", list(args), env)
            started.append(kernel)
            return kernel

        yield start
        for kernel in started:
            assert kernel.stop() == 0, kernel.log_tail()


@pytest.fixture(scope="module")
def kernel_process() -> Iterator[KernelProcess]:
    """One kernel (empty image) shared by a module's tests."""
    with tempfile.TemporaryDirectory(prefix="batos-py-") as root:
        kernel = KernelProcess(Path(root) / "image", ["--no-first-conversation"])
        yield kernel
        assert kernel.stop() == 0, kernel.log_tail()


@pytest.fixture
def kernel(kernel_process: KernelProcess) -> Iterator:
    """A sync client of the module's kernel."""
    import batos

    with batos.connect(kernel_process.endpoint, events=kernel_process.events) as client:
        yield client
