"""examples/demo.py runs end to end, and shows every command it runs the same way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_and_prints_every_command_through_its_helper():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "examples/demo.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo passed" in proc.stdout
    step3 = proc.stdout.split("\n3. ", 1)[1].split("\n4. ", 1)[0]
    # status's output is shown like every other command's: announced, then indented
    assert "  $ mlvc status\n    checkpoints: modified\n" in step3, step3
    assert all(line.startswith("  ") for line in step3.splitlines()[1:]), step3
