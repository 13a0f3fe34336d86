#!/usr/bin/env bash
# Create benchmarks/.venv-dvc with DVC (and dvc-s3) from PyPI, kept apart from
# mlvc's own environment so DVC's dependencies never leak into it.
#
#   bash benchmarks/setup_dvc.sh            # create (or reuse) the venv
#   PYTHON=python3.11 bash benchmarks/setup_dvc.sh
#   FORCE=1 bash benchmarks/setup_dvc.sh    # recreate from scratch
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-dvc"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

if [[ "${FORCE:-0}" == "1" ]]; then
    rm -rf "$VENV"
fi
if [[ -x "$VENV/bin/dvc" ]] && "$VENV/bin/dvc" version >/dev/null 2>&1; then
    echo "dvc already installed in $VENV: $("$VENV/bin/dvc" --version)"
    exit 0
fi

"$PY" -m venv "$VENV"
# (drop pip's warnings about configured-but-absent local index folders)
quiet_pip() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is neither a file nor a directory" >&2); }
quiet_pip install --quiet --upgrade pip
quiet_pip install --quiet dvc dvc-s3
echo "installed: dvc $("$VENV/bin/dvc" --version) in $VENV"
