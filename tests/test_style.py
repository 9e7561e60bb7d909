"""The code is clean by the project's ruff rules (pyproject.toml, [tool.ruff]): course_lib,
tests, slides, benchmarks and every notebook, masters and student versions.

ruff is installed by the README's set-up command (the test extra); this is how CI runs it.
"""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    run = subprocess.run([ruff, "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
