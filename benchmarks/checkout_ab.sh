#!/usr/bin/env bash
# Checkout of a 1 GiB unique fp32 torch.save from the cache: the mlvc of BASE (a checkout of an
# older commit, e.g. `git worktree add --detach /tmp/base e439702`) and of this checkout alternate
# over one cache (made by BASE, which both read), three rounds, `cp` beside; whole commands,
# CLI start-up included.  Usage: benchmarks/checkout_ab.sh /tmp/base [WORK_DIR (default /dev/shm/bco)]
set -euo pipefail
BASE=$(cd "$1" && pwd); HERE=$(cd "$(dirname "$0")/.." && pwd); W=${2:-/dev/shm/bco}
export PATH="$HERE/.venv/bin:$PATH"
# compiled modules kept between runs, as an installed mlvc has them (some sandboxes export
# PYTHONDONTWRITEBYTECODE, which makes every command compile every module of mlvc again: ~0.1 s)
unset PYTHONDONTWRITEBYTECODE; export PYTHONPYCACHEPREFIX="${TMPDIR:-/tmp}/mlvc-ab-pycache"
rm -rf "$W"; mkdir -p "$W"; cd "$W"
git init -q -b main r && cd r
PYTHONPATH=$BASE mlvc init -q
python - <<'PY'
import torch
g = torch.Generator().manual_seed(1)
torch.save({f"layer{i}.weight": torch.randn(1024, 1024, generator=g) for i in range(256)}, "w1.pt")
PY
PYTHONPATH=$BASE mlvc add -q w1.pt
git add -A && git commit -qm w1
for round in 1 2 3; do
  for who in base here; do
    rm -f w1.pt; sync
    pp=$BASE; [ $who = here ] && pp=$HERE
    s=$(date +%s.%N); PYTHONPATH=$pp mlvc checkout -q; e=$(date +%s.%N)
    python -c "print('$who checkout', round($e - $s, 3), 's')"
  done
  s=$(date +%s.%N); cp w1.pt "$W/copy.pt"; e=$(date +%s.%N); rm "$W/copy.pt"
  python -c "print('cp', round($e - $s, 3), 's')"
done
rm -rf "$W"
