"""Shared helpers for the mlvc-vs-DVC benchmarks (bench_core, bench_remote, ...).

Everything is measured from the outside: each tool's CLI runs as a subprocess
in its own fresh git repository, and a figure is wall-clock seconds (best of N
where a run is cheap to repeat), bytes on disk, or peak RSS.  Nothing here
imports mlvc or DVC, so neither tool's import cost leaks into the other's.

Pieces:
    run / time_cmd / peak_rss          run and time CLI commands
    MlvcRepo / DvcRepo                 a fresh git repo initialised for one tool
    scratch()                          a temp folder under benchmarks/.work/runs
    place()                            copy a workload into a repo (then sync)
    Report / Row / targets             the final table, and its JSON
    moto_server()                      a moto S3 server on 127.0.0.1 (bench_remote)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = Path(os.environ.get("MLVC_BENCH_WORK", HERE / ".work"))
RUNS = WORK / "runs"

MiB = 1024 ** 2
GiB = 1024 ** 3


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- tools
def mlvc_bin() -> str:
    env = os.environ.get("MLVC_BIN")
    if env:
        return env
    local = ROOT / ".venv" / "bin" / "mlvc"
    if local.exists():
        return str(local)
    found = shutil.which("mlvc")
    if not found:
        raise SystemExit("mlvc not found: install it (pip install -e .) or set MLVC_BIN")
    return found


def dvc_bin() -> str | None:
    """The DVC of benchmarks/.venv-dvc (see setup_dvc.sh), or $DVC_BIN; None when absent."""
    env = os.environ.get("DVC_BIN")
    if env:
        return env
    local = HERE / ".venv-dvc" / "bin" / "dvc"
    return str(local) if local.exists() else None


def tool_env(extra: dict | None = None) -> dict:
    """The environment both tools run in: no analytics, no update checks, DVC state kept under .work."""
    env = dict(os.environ)
    env.update({
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(WORK / "dvc-site-cache"),
        "DVC_GLOBAL_CONFIG_DIR": str(WORK / "dvc-global-config"),
        "DVC_SYSTEM_CONFIG_DIR": str(WORK / "dvc-system-config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        "COLUMNS": "120",
    })
    env.pop("MLVC_DEBUG", None)
    # Byte-compiled modules, as a normal install has them.  Some sandboxes export
    # PYTHONDONTWRITEBYTECODE=1, which leaves an editable mlvc recompiling every module on
    # every command (~0.1 s) while DVC's pip-installed .pyc files are used.  A pycache
    # prefix under .work/ gives both tools cached bytecode without writing into the source tree.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache")
    env.update(extra or {})
    return env


def warm_up(with_dvc: bool = True) -> None:
    """Run each tool once through init/add/status/checkout so its bytecode cache is filled."""
    tools = [MlvcRepo] + ([DvcRepo] if with_dvc and dvc_bin() else [])
    for cls in tools:
        with scratch(f"warmup-{cls.tool}") as path:
            repo = cls(path).init()
            (path / "f.txt").write_text("warm-up\n")
            (path / "d").mkdir()
            (path / "d" / "g.txt").write_text("warm-up\n")
            repo.add("f.txt")
            repo.add("d")
            repo.status()
            (path / "f.txt").unlink()
            repo.checkout()
            repo.status()


def versions() -> dict:
    out = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        out["mlvc"] = run([mlvc_bin(), "--help"], ROOT, check=False).ok and _pkg_version(mlvc_bin(), "mlvc")
    except Exception:  # noqa: BLE001 - informational only
        out["mlvc"] = None
    d = dvc_bin()
    if d:
        r = run([d, "--version"], ROOT, check=False)
        out["dvc"] = r.stdout.strip() if r.ok else None
    return out


def _pkg_version(binary: str, name: str) -> str | None:
    py = Path(binary).with_name("python")
    if not py.exists():
        return None
    r = run([str(py), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"], ROOT, check=False)
    return r.stdout.strip() if r.ok else None


# --------------------------------------------------------------------------- running
class CommandFailed(RuntimeError):
    def __init__(self, r: "Run"):
        tail = (r.stderr or r.stdout).strip().splitlines()[-15:]
        super().__init__(f"`{' '.join(map(str, r.argv))}` exited {r.rc} in {r.cwd}:\n    " + "\n    ".join(tail))
        self.run = r


@dataclass
class Run:
    argv: list
    cwd: str
    rc: int
    wall: float
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def json(self):
        return json.loads(self.stdout)


def run(argv: Sequence, cwd, *, env: dict | None = None, check: bool = True, ok_codes: Iterable[int] = (0,),
        timeout: float | None = None, input: str | None = None) -> Run:
    """Run a command, wall-clock timed (perf_counter around the whole subprocess)."""
    argv = [str(a) for a in argv]
    t0 = time.perf_counter()
    p = subprocess.run(argv, cwd=str(cwd), env=env or tool_env(), capture_output=True, text=True,
                       timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r = Run(argv, str(cwd), p.returncode, wall, p.stdout, p.stderr)
    if check and p.returncode not in tuple(ok_codes):
        raise CommandFailed(r)
    return r


@dataclass
class Timing:
    samples: list[float] = field(default_factory=list)

    @property
    def best(self) -> float | None:
        return min(self.samples) if self.samples else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def as_dict(self) -> dict:
        return {"best": self.best, "median": self.median, "samples": self.samples}

    def __str__(self) -> str:
        if not self.samples:
            return "n/a"
        if len(self.samples) == 1:
            return f"{self.best:.3f}s"
        return f"best {self.best:.3f}s, median {self.median:.3f}s of {len(self.samples)}"


def time_cmd(argv: Sequence, cwd, *, repeat: int = 1, setup: Callable[[], None] | None = None,
             env: dict | None = None, ok_codes: Iterable[int] = (0,), warmup: int = 0,
             last: list | None = None) -> Timing:
    """Wall time of `argv`, `repeat` times (after `warmup` untimed runs); `setup()` runs untimed first."""
    t = Timing()
    for _ in range(warmup):
        if setup:
            setup()
        run(argv, cwd, env=env, ok_codes=ok_codes)
    for _ in range(repeat):
        if setup:
            setup()
        r = run(argv, cwd, env=env, ok_codes=ok_codes)
        t.samples.append(r.wall)
        if last is not None:
            last[:] = [r]
    return t


_RSS_WRAPPER = r"""
import resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.call(sys.argv[1:])
wall = time.perf_counter() - t0
print("RSS_KB=%d WALL=%.6f RC=%d" % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, wall, rc),
      file=sys.stderr)
sys.exit(rc)
"""


def peak_rss(argv: Sequence, cwd, *, env: dict | None = None, check: bool = True) -> tuple[Run, int]:
    """(run, peak RSS in bytes) of a command: GNU time -v when present, else a getrusage wrapper."""
    gnu_time = "/usr/bin/time"
    if os.path.exists(gnu_time):
        r = run([gnu_time, "-v", *argv], cwd, env=env, check=False)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
        if m:
            if check and r.rc != 0:
                raise CommandFailed(r)
            return r, int(m.group(1)) * 1024
    r = run([sys.executable, "-c", _RSS_WRAPPER, *argv], cwd, env=env, check=check)
    m = re.search(r"RSS_KB=(\d+)", r.stderr)
    return r, int(m.group(1)) * 1024 if m else -1


# --------------------------------------------------------------------------- files
_counter = itertools.count()


@contextlib.contextmanager
def scratch(label: str, keep: bool | None = None):
    """A fresh folder under benchmarks/.work/runs/, removed afterwards (unless MLVC_BENCH_KEEP=1)."""
    RUNS.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{label}-{next(_counter)}-", dir=RUNS))
    try:
        yield path
    finally:
        if not (keep if keep is not None else os.environ.get("MLVC_BENCH_KEEP") == "1"):
            rmtree(path)


def rmtree(path: Path) -> None:
    """rm -rf that copes with DVC's read-only cache files."""
    def onerror(func, p, _exc):
        try:
            os.chmod(p, 0o700)
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
        except OSError:
            pass
    shutil.rmtree(path, onerror=onerror)


def place(src: Path, dst: Path, *, sync: bool = True) -> Path:
    """Copy a workload file or tree into a repo (real copies: DVC moves files into its cache)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        if dst.is_dir():
            rmtree(dst)
        else:
            dst.unlink()
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copyfile(src, dst)
    if sync:
        os.sync()  # so neither tool pays for the copy's write-back
    return dst


def tree_bytes(path: Path) -> int:
    """Apparent size of all regular files under `path` (0 when it does not exist)."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total


def count_files(path: Path) -> int:
    return sum(len(files) for _d, _s, files in os.walk(path))


def same_bytes(a: Path, b: Path) -> bool:
    return run(["cmp", "-s", a, b], ROOT, check=False).rc == 0


def fs_type(path: Path) -> str:
    r = run(["stat", "-f", "-c", "%T", path], ROOT, check=False)
    return r.stdout.strip() if r.ok else "?"


# --------------------------------------------------------------------------- repos
class ToolRepo:
    tool = "?"

    def __init__(self, path: Path, env: dict | None = None):
        self.path = Path(path)
        self.env = env or tool_env()

    def sh(self, *argv, check: bool = True, ok_codes=(0,), timeout=None) -> Run:
        return run(argv, self.path, env=self.env, check=check, ok_codes=ok_codes, timeout=timeout)

    def git_init(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.sh("git", "init", "-q")
        self.sh("git", "commit", "-q", "--allow-empty", "-m", "init")

    def git_commit(self, msg: str = "bench") -> None:
        self.sh("git", "add", "-A")
        self.sh("git", "commit", "-q", "-m", msg, ok_codes=(0, 1))

    def cache_bytes(self) -> int:
        return tree_bytes(self.cache_dir)

    @property
    def cache_dir(self) -> Path:
        raise NotImplementedError


class MlvcRepo(ToolRepo):
    tool = "mlvc"

    def __init__(self, path: Path, env: dict | None = None):
        super().__init__(path, env)
        self.bin = mlvc_bin()

    def cmd(self, *args) -> list[str]:
        return [self.bin, *map(str, args)]

    def init(self, *, fsync: bool | None = None, config: dict | None = None) -> "MlvcRepo":
        self.git_init()
        self.sh(*self.cmd("init", "--quiet"))
        core = dict(config or {})
        if fsync is not None:
            core["fsync"] = fsync
        if core:
            self.set_core(core)
        return self

    def set_core(self, values: dict) -> None:
        """Merge keys into `core:` of .mlvc/config (YAML written by hand: no yaml import needed here)."""
        cfg = self.path / ".mlvc" / "config"
        text = cfg.read_text() if cfg.exists() else ""
        lines = [f"  {k}: {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}" for k, v in values.items()]
        if re.search(r"^core:\s*$", text, re.M):
            text = re.sub(r"^core:\s*$", "core:\n" + "\n".join(lines), text, count=1, flags=re.M)
        else:
            text = text.rstrip("\n") + ("\n" if text else "") + "core:\n" + "\n".join(lines) + "\n"
        cfg.write_text(text)

    @property
    def cache_dir(self) -> Path:
        return self.path / ".mlvc" / "cache"

    def add(self, *paths) -> Run:
        return self.sh(*self.cmd("add", "--json", *paths))

    def status(self, check: bool = True) -> Run:
        return self.sh(*self.cmd("status"), check=check)

    def checkout(self, *paths) -> Run:
        return self.sh(*self.cmd("checkout", "--quiet", *paths))


class DvcRepo(ToolRepo):
    tool = "dvc"

    def __init__(self, path: Path, env: dict | None = None):
        super().__init__(path, env)
        b = dvc_bin()
        if b is None:
            raise RuntimeError("DVC is not installed: run benchmarks/setup_dvc.sh")
        self.bin = b

    def cmd(self, *args) -> list[str]:
        return [self.bin, *map(str, args)]

    def init(self, *, cache_type: str | None = None) -> "DvcRepo":
        self.git_init()
        self.sh(*self.cmd("init", "-q"))
        # No network from the tool during timing (no analytics ping, no update check).
        self.sh(*self.cmd("config", "core.analytics", "false"))
        self.sh(*self.cmd("config", "core.check_update", "false"))
        if cache_type:
            self.sh(*self.cmd("config", "cache.type", cache_type))
        self.git_commit("dvc init")
        return self

    @property
    def cache_dir(self) -> Path:
        return self.path / ".dvc" / "cache"

    def add(self, *paths) -> Run:
        return self.sh(*self.cmd("add", "-q", *paths))

    def status(self, check: bool = True) -> Run:
        return self.sh(*self.cmd("status"), check=check)

    def checkout(self, *paths) -> Run:
        return self.sh(*self.cmd("checkout", "-q", *paths))


# --------------------------------------------------------------------------- report
@dataclass
class Target:
    """A pass/fail rule on a row: `text` for the table, `check(row) -> bool | None`."""
    text: str
    check: Callable[["Row"], bool | None]


def ratio_at_most(limit: float, text: str | None = None) -> Target:
    """mlvc/DVC <= limit (e.g. 1/3: mlvc at least 3x faster)."""
    def check(row: "Row"):
        r = row.ratio
        return None if r is None else r <= limit
    if text is None:
        text = f"ratio <= {limit:.2f}" + (f" ({1 / limit:.3g}x faster)" if limit < 1 else "")
    return Target(text, check)


def mlvc_at_most(limit: float, text: str) -> Target:
    def check(row: "Row"):
        return None if row.mlvc is None else row.mlvc <= limit
    return Target(text, check)


def mlvc_below_and_faster(limit: float, text: str) -> Target:
    def check(row: "Row"):
        if row.mlvc is None:
            return None
        ok = row.mlvc < limit
        return ok and (row.dvc is None or row.mlvc < row.dvc)
    return Target(text, check)


INFO = Target("-", lambda row: None)


@dataclass
class Row:
    workload: str
    metric: str
    mlvc: float | None
    dvc: float | None
    unit: str  # s | B | % | x
    target: Target = field(default_factory=lambda: INFO)
    note: str = ""
    detail: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.mlvc is None or self.dvc is None or self.dvc == 0:
            return None
        return self.mlvc / self.dvc

    @property
    def passed(self) -> bool | None:
        try:
            return self.target.check(self)
        except Exception:  # noqa: BLE001
            return None

    def as_dict(self) -> dict:
        return {"workload": self.workload, "metric": self.metric, "unit": self.unit, "mlvc": self.mlvc,
                "dvc": self.dvc, "ratio": self.ratio, "target": self.target.text, "passed": self.passed,
                "note": self.note, "detail": self.detail}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.2f} s"
    if unit == "B":
        if abs(value) >= GiB:
            return f"{value / GiB:.2f} GiB"
        if abs(value) >= MiB:
            return f"{value / MiB:.1f} MiB"
        return f"{value / 1024:.1f} KiB"
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "us":
        return f"{value:.1f} us"
    return f"{value:g} {unit}"


class Report:
    def __init__(self, title: str):
        self.title = title
        self.rows: list[Row] = []
        self.meta: dict = {}

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        ratio = f"{row.ratio:.3f}" if row.ratio is not None else "n/a"
        verdict = {True: "PASS", False: "FAIL", None: ""}[row.passed]
        log(f"RESULT {row.workload} | {row.metric}: mlvc {fmt(row.mlvc, row.unit)}, DVC {fmt(row.dvc, row.unit)}, "
            f"mlvc/DVC {ratio} {('[' + verdict + ' ' + row.target.text + ']') if verdict else ''}"
            f"{('  (' + row.note + ')') if row.note else ''}")
        return row

    def na(self, workload: str, metric: str, unit: str, target: Target = INFO, why: str = "") -> Row:
        return self.add(Row(workload, metric, None, None, unit, target, note=f"n/a: {why}" if why else "n/a"))

    def table(self) -> str:
        head = ["workload", "metric", "mlvc", "DVC", "mlvc/DVC", "target", "result"]
        body = []
        for r in self.rows:
            body.append([r.workload, r.metric, fmt(r.mlvc, r.unit), fmt(r.dvc, r.unit),
                         f"{r.ratio:.3f}" if r.ratio is not None else "n/a", r.target.text,
                         {True: "PASS", False: "FAIL", None: "-"}[r.passed]])
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
        line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
        sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        out = [self.title, line(head), sep, *(line(b) for b in body)]
        notes = [f"  [{i + 1}] {r.workload} / {r.metric}: {r.note}" for i, r in enumerate(self.rows) if r.note]
        if notes:
            out += ["", "notes:", *notes]
        return "\n".join(out)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"title": self.title, "meta": self.meta, "rows": [r.as_dict() for r in self.rows]}
        path.write_text(json.dumps(doc, indent=1, default=str))


# --------------------------------------------------------------------------- S3 (moto)
class RequestCounter:
    """Counts HTTP requests the moto server answers, by method (GET/PUT/POST/HEAD/DELETE)."""

    def __init__(self):
        import collections
        import threading

        self._lock = threading.Lock()
        self.by_method = collections.Counter()

    def hit(self, method: str) -> None:
        with self._lock:
            self.by_method[method] += 1

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self.by_method)

    @staticmethod
    def delta(before: dict, after: dict) -> dict:
        keys = set(before) | set(after)
        out = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
        out = {k: v for k, v in out.items() if v}
        out["total"] = sum(out.values())
        return out


@contextlib.contextmanager
def moto_server(port: int = 0):
    """moto's ThreadedMotoServer on 127.0.0.1 for the block; yields (endpoint URL, RequestCounter).

    Requests are counted by patching the request handler's log hook (called once per
    answered request).  The benchmark process only waits on CLI subprocesses while the
    server thread works, so the server has this process's GIL to itself.
    """
    from moto.moto_server import werkzeug_app
    from moto.server import ThreadedMotoServer

    counter = RequestCounter()
    handler = werkzeug_app.MotoRequestHandler
    orig = handler.log_request

    def log_request(self, code="-", size="-"):
        counter.hit(getattr(self, "command", "?"))

    handler.log_request = log_request
    if port == 0:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    for k, v in S3_ENV.items():
        os.environ.setdefault(k, v)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", counter
    finally:
        server.stop()
        handler.log_request = orig


S3_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def human(n: float) -> str:
    return fmt(n, "B")


def as_dict(obj) -> dict:
    return asdict(obj)
