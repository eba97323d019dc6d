"""Running the ``flask`` command as an operator would: a subprocess of the venv's own
``flask --app run`` in the project root, shared by the tests that need one (make run's
boot, the migrations check, the browser tests' server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLASK = Path(sys.executable).parent / "flask"


def run_flask(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    """Run one ``flask --app run`` command with ``env``; its output. Fails the test
    with that output if the command fails."""
    result = subprocess.run(
        [str(FLASK), "--app", "run", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"flask {' '.join(args)} failed:\n{output}"
    return output
