"""The examples in this package's README, run against the real kernel."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def run_example(code: str, kernel_process, timeout: float = 60) -> str:
    env = dict(os.environ, BATOS_ENDPOINT=kernel_process.endpoint, BATOS_EVENTS=kernel_process.events)
    # From a file, as a program is run (inspect.getsource needs one).
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
    try:
        done = subprocess.run(
            [sys.executable, f.name], env=env, capture_output=True, text=True, timeout=timeout
        )
    finally:
        os.unlink(f.name)
    assert done.returncode == 0, f"the example failed:\n{code}\n{done.stderr}"
    return done.stdout


def test_the_readme_example_runs(kernel_process) -> None:
    first = python_blocks(README.read_text())[0]
    assert len(first.strip().splitlines()) <= 15, "the README's first example stays short"
    no_method, last = run_example(first, kernel_process).splitlines()
    assert no_method.startswith("no method: ") and "fly" in no_method
    assert last == "99 True"


def test_the_asyncio_example_runs(kernel_process) -> None:
    block = next(b for b in python_blocks(README.read_text()) if "batos.aio" in b)
    assert run_example(block, kernel_process).splitlines() == ["999 999"]


def test_the_repository_readme_python_example_runs(kernel_process) -> None:
    readme = README.parents[2] / "README.md"
    lines = readme.read_text().splitlines()
    start = lines.index("    import batos")
    block = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        block.append(line[4:])
    assert run_example("\n".join(block), kernel_process).splitlines() == ["ada 36"]


def test_the_methods_example_runs(kernel_process) -> None:
    block = next(b for b in python_blocks(README.read_text()) if "@kernel.method" in b)
    assert run_example(block, kernel_process).splitlines() == ["15"]
