"""Fixtures are data the suite reads from a clean clone: none of them may be git-ignored (a golden
store's .mlvc/.gitignore ignores its own cache, so `git add` of a new fixture silently leaves its
packs behind, and the test passes only in the checkout that made it)."""

import subprocess
from pathlib import Path

FIXTURES = Path(__file__).parents[1] / "fixtures"
CORPUS = Path(__file__).parents[1] / "corpus"


def test_no_fixture_file_is_left_out_by_gitignore():
    ignored = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", str(FIXTURES), str(CORPUS)],
        cwd=FIXTURES, capture_output=True, text=True, check=True).stdout.split()
    ignored = [p for p in ignored if "__pycache__" not in p]
    assert not ignored, f"git-ignored fixture files (git add -f them): {ignored}"
