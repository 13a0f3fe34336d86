"""End-to-end demo: a tiny model trained over a few commits, versioned with mlvc.

Runs in a temporary directory and checks what it claims: after a clone and a
pull the bytes are v2's, and after checking out v1 they are exactly v1's again.
Usage: python examples/demo.py [--keep]
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent


def sh(*cmd: str, cwd: Path) -> str:
    print(f"  $ {' '.join(cmd)}")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", MLVC_NO_PROGRESS="1")
    for k, v in (("GIT_AUTHOR_NAME", "demo"), ("GIT_AUTHOR_EMAIL", "demo@example.invalid"),
                 ("GIT_COMMITTER_NAME", "demo"), ("GIT_COMMITTER_EMAIL", "demo@example.invalid")):
        env.setdefault(k, v)
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True)
    out = (proc.stdout + proc.stderr).strip()
    if out:
        print("    " + out.replace("\n", "\n    "))
    if proc.returncode != 0:
        raise SystemExit(f"demo failed: {' '.join(cmd)} exited with {proc.returncode}")
    return proc.stdout


def digest_tree(root: Path, paths: list[str]) -> dict[str, str]:
    out = {}
    for p in paths:
        base = root / p
        files = [base] if base.is_file() else sorted(x for x in base.rglob("*") if x.is_file())
        for f in files:
            out[f.relative_to(root).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def train(work: Path, version: int) -> None:
    import torch

    torch.manual_seed(version)
    data_dir = work / "data" / "processed"
    data_dir.mkdir(parents=True, exist_ok=True)
    # "Processed data": a few hundred small sample files; each version edits a few of them.
    for i in range(300):
        if version == 1 or i % 50 == 0:
            (data_dir / f"sample_{i:04d}.txt").write_text(f"v{version} sample {i} " + "x" * (i % 97) + "\n")
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    ckpt = work / "checkpoints" / "model.pt"
    if ckpt.exists():
        model.load_state_dict(torch.load(ckpt, weights_only=True))
        for p in model[0].parameters():  # fine-tune only the head: the first layer stays identical
            p.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(20):
        x = torch.randn(32, 64)
        loss = torch.nn.functional.cross_entropy(model(x), torch.randint(0, 10, (32,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    ckpt.parent.mkdir(exist_ok=True)
    torch.save(model.state_dict(), ckpt)


def main() -> None:
    keep = "--keep" in sys.argv
    top = Path(tempfile.mkdtemp(prefix="mlvc-demo-"))
    try:
        work, remote, clone = top / "project", top / "remote", top / "clone"
        origin = top / "origin.git"
        work.mkdir()
        print(f"demo in {top}")
        print("1. a git repository with mlvc, a shared-disk remote and the git hooks (README's path)")
        sh("git", "init", "-q", "-b", "main", cwd=work)
        sh("mlvc", "init", cwd=work)
        sh("mlvc", "remote", "add", "shared", str(remote), "--default", cwd=work)
        sh("mlvc", "install-hooks", "--quiet", cwd=work)

        print("2. v1: train, add weights and data, commit (with .mlvc/config: the remote travels with the repo)")
        train(work, 1)
        sh("mlvc", "add", "checkpoints", "data/processed", cwd=work)
        sh("git", "add", "-A", cwd=work)
        sh("git", "commit", "-q", "-m", "v1", cwd=work)
        v1 = digest_tree(work, ["checkpoints", "data/processed"])

        print("3. v2: fine-tune, edit a few data files, status shows what changed, add, commit")
        train(work, 2)
        sh("mlvc", "status", cwd=work)
        sh("mlvc", "add", "checkpoints", "data/processed", cwd=work)
        sh("git", "commit", "-q", "-am", "v2", cwd=work)
        v2 = digest_tree(work, ["checkpoints", "data/processed"])

        print("4. git push: the pre-push hook uploads the artifacts of v1 and v2")
        sh("git", "init", "-q", "--bare", "-b", "main", str(origin), cwd=top)
        sh("git", "remote", "add", "origin", str(origin), cwd=work)
        sh("git", "push", "-q", "-u", "origin", "main", cwd=work)

        print("5. elsewhere: clone, install the hooks, pull; the bytes are v2's")
        sh("git", "clone", "-q", str(origin), str(clone), cwd=top)
        sh("mlvc", "install-hooks", "--quiet", cwd=clone)
        sh("mlvc", "pull", cwd=clone)
        assert digest_tree(clone, ["checkpoints", "data/processed"]) == v2, "pull did not restore v2"

        print("6. back to v1: git checkout (the hook restores) + mlvc checkout: v1's exact bytes")
        sh("git", "checkout", "-q", "HEAD~1", cwd=clone)
        sh("mlvc", "checkout", cwd=clone)
        assert digest_tree(clone, ["checkpoints", "data/processed"]) == v1, "checkout did not restore v1"
        sh("mlvc", "status", cwd=clone)
        print("demo passed: v2 pulled byte-identical, v1 restored byte-identical")
    finally:
        if keep:
            print(f"kept {top}")
        else:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
