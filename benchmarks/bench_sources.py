"""Other repositories as sources (issue 20): `mlvc ls/get URL` beside `dvc ls/get URL`, same data, same run.

    .venv/bin/python benchmarks/bench_sources.py --scale 0.05     # smoke: 51 MiB checkpoint, 5,000 files
    .venv/bin/python benchmarks/bench_sources.py                  # 1 GiB checkpoint, 100,000 files

A registry repository per tool with `commits` commits (100; only the last one holds the data:
the others change a README, so history is long but the data is one version), holding one
checkpoint of random bytes (`model.bin`, 1 GiB at scale 1) and a dataset of small files
(`data/images`, 100,000 at scale 1), pushed to its own bucket on a moto S3 server on
127.0.0.1 that counts every request.  Each command then runs cold (a fresh user cache
for mlvc, a fresh site cache for DVC; DVC clones the registry for every command anyway)
from an empty directory, with the registry given as a plain path:

    ls root           mlvc ls REG                       dvc ls REG
    ls dataset        mlvc ls REG data/images           dvc ls REG data/images
    get checkpoint    mlvc get REG model.bin -o out     dvc get REG model.bin -o out
    get one file      mlvc get REG data/images/f00042.bin -o out    (dvc likewise)

Figures: wall time (best of --repeat runs, the tools alternating), S3 requests answered, and for mlvc the bytes it
downloaded (`--json`).  Results: the table on stdout, benchmarks/.work/results-sources*.json.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as H  # noqa: E402


def make_data(base: Path, ckpt_bytes: int, files: int) -> Path:
    """The registry's data, written once and copied into each tool's registry."""
    data = base / "data-src"
    rng = random.Random(20)
    (data / "data" / "images").mkdir(parents=True)
    with open(data / "model.bin", "wb") as f:
        left = ckpt_bytes
        while left:
            n = min(left, 16 << 20)
            f.write(rng.randbytes(n))
            left -= n
    for i in range(files):
        (data / "data" / "images" / f"f{i:05d}.bin").write_bytes(rng.randbytes(rng.randint(512, 4096)))
    return data


def make_registry(tool: str, base: Path, data: Path, commits: int, endpoint: str | None) -> Path:
    env = H.tool_env(H.S3_ENV)
    repo = (H.MlvcRepo if tool == "mlvc" else H.DvcRepo)(base / f"registry-{tool}", env)
    repo.init()
    for i in range(commits - 1):
        (repo.path / "README.md").write_text(f"registry, revision {i}\n")
        repo.git_commit(f"revision {i}")
    import shutil

    shutil.copy(data / "model.bin", repo.path / "model.bin")
    shutil.copytree(data / "data", repo.path / "data")
    if endpoint is not None:
        import boto3

        bucket = f"bench-sources-{tool}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/store"
    else:
        url = str(base / f"remote-{tool}")
    if tool == "mlvc":
        repo.sh(*repo.cmd("remote", "add", "origin", url, "--default",
                          *(["--endpoint-url", endpoint] if endpoint else [])))
    else:
        repo.sh(*repo.cmd("remote", "add", "-d", "origin", url))
        if endpoint:
            repo.sh(*repo.cmd("remote", "modify", "origin", "endpointurl", endpoint))
    repo.sh(*repo.cmd("add", "-q", "model.bin", "data/images"))
    repo.sh(*repo.cmd("push", "-q"), timeout=3600)
    repo.git_commit("data")
    return repo.path


def measure_once(tool: str, argv_of, registry: Path, base: Path, counter, got: dict) -> None:
    """One cold run, added to `got` (walls; requests and (mlvc) bytes of the last run)."""
    cold = base / f"cold-{tool}-{os.urandom(3).hex()}"
    (cold / "cwd").mkdir(parents=True)
    env = H.tool_env({**H.S3_ENV, "MLVC_CACHE_HOME": str(cold / "mlvc-cache"),
                      "DVC_SITE_CACHE_DIR": str(cold / "dvc-site-cache")})
    before = counter.snapshot() if counter else {}
    r = H.run(argv_of(registry), cold / "cwd", env=env, timeout=3600)
    got["requests"] = H.RequestCounter.delta(before, counter.snapshot())["total"] if counter else None
    got.setdefault("samples", []).append(r.wall)
    got["best"] = min(got["samples"])
    if tool == "mlvc" and "--json" in r.argv:
        doc = r.json()
        got["downloaded"] = doc.get("bytes_downloaded") if isinstance(doc, dict) else None
    H.rmtree(cold)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=float(os.environ.get("MLVC_BENCH_SCALE", 1.0)))
    ap.add_argument("--commits", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-dvc", action="store_true")
    ap.add_argument("--remote", choices=("dir", "s3"), default="s3",
                    help="where the registries push: moto S3 (requests counted; DVC needs dvc-s3) or a directory")
    args = ap.parse_args()
    ckpt = int((1 << 30) * args.scale)
    files = max(10, int(100_000 * args.scale))
    tools = ["mlvc"] + ([] if args.no_dvc or not H.dvc_bin() else ["dvc"])
    mlvc, dvc = H.mlvc_bin(), H.dvc_bin()
    one = f"data/images/f{min(42, files - 1):05d}.bin"
    cases = [
        ("ls root", lambda reg: [mlvc, "ls", reg], lambda reg: [dvc, "ls", reg]),
        (f"ls data/images ({files:,} files)", lambda reg: [mlvc, "ls", reg, "data/images"],
         lambda reg: [dvc, "ls", reg, "data/images"]),
        (f"get model.bin ({H.human(ckpt)})", lambda reg: [mlvc, "get", reg, "model.bin", "-o", "out", "--json"],
         lambda reg: [dvc, "get", reg, "model.bin", "-o", "out"]),
        ("get one file of the dataset", lambda reg: [mlvc, "get", reg, one, "-o", "out", "--json"],
         lambda reg: [dvc, "get", reg, one, "-o", "out"]),
    ]
    report = H.Report(f"Sources (issue 20): registry with {args.commits} commits, {H.human(ckpt)} checkpoint, "
                      f"{files:,}-file dataset on {'moto S3' if args.remote == 's3' else 'a directory remote'} "
                      f"(scale {args.scale})")
    report.meta = {"scale": args.scale, "commits": args.commits, "versions": H.versions()}
    import contextlib

    server = H.moto_server() if args.remote == "s3" else contextlib.nullcontext((None, None))
    with H.scratch("sources") as base, server as (endpoint, counter):
        H.log(f"writing the data ({H.human(ckpt)}, {files:,} files)")
        data = make_data(base, ckpt, files)
        registries = {}
        for tool in tools:
            H.log(f"building the {tool} registry and pushing it")
            registries[tool] = make_registry(tool, base, data, args.commits, endpoint)
        for name, mlvc_argv, dvc_argv in cases:
            got: dict[str, dict] = {}
            for i in range(args.repeat):  # the tools alternate, so a load change hits both alike
                for tool, argv_of in (("mlvc", mlvc_argv), ("dvc", dvc_argv)):
                    if tool not in registries or "error" in got.get(tool, {}):
                        continue
                    H.log(f"{name}: {tool} (run {i + 1} of {args.repeat})")
                    try:
                        measure_once(tool, lambda reg, f=argv_of: f(str(reg)), registries[tool], base, counter,
                                     got.setdefault(tool, {}))
                    except H.CommandFailed as exc:
                        got[tool] = {"error": str(exc)[:300]}
            m, d = got.get("mlvc", {}), got.get("dvc", {})
            report.add(H.Row(name, "wall", m.get("best"), d.get("best"), "s", H.ratio_at_most(1.0, "mlvc faster"),
                             note=f"samples mlvc {m.get('samples')}, dvc {d.get('samples')}"
                                  + (f"; errors {m.get('error') or ''} {d.get('error') or ''}"
                                     if m.get("error") or d.get("error") else ""), detail=got))
            if args.remote == "s3":
                report.add(H.Row(name, "S3 requests", m.get("requests"), d.get("requests"), "req"))
            if m.get("downloaded") is not None:
                report.add(H.Row(name, "bytes downloaded (mlvc --json)", m["downloaded"], None, "B"))
    print(report.table())
    suffix = ("" if args.scale == 1.0 else f"-scale{args.scale:g}") + ("" if args.remote == "s3" else "-dir")
    report.write_json(H.WORK / f"results-sources{suffix}.json")


if __name__ == "__main__":
    main()
