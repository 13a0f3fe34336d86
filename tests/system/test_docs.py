"""The documentation site: `mkdocs build --strict` passes offline, the command reference is generated
from the CLI and complete, every command's --help carries an example, and the site loads in Chromium."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


def _hook():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "docs" / "hooks" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _commands():
    hook = _hook()
    return hook, list(hook.walk_commands(hook.root_command(), ["mlvc"]))[1:]


def test_every_command_help_carries_an_example():
    hook, commands = _commands()
    assert len(commands) > 20
    missing = [" ".join(path) for path, cmd in commands if "Example" not in hook.help_text(cmd, path)]
    assert missing == [], "end each command's docstring with an `Examples:` block (see mlvc/cli/report.py)"


def test_reference_is_generated_from_the_cli_and_complete():
    hook, commands = _commands()
    page = hook.reference_markdown()
    for path, cmd in commands:
        anchor = "-".join(path)
        assert f"## {' '.join(path)} {{ #{anchor} }}" in page
        assert f"Usage: {' '.join(path)}" in page
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--"):
                    assert opt in page, (path, opt)
    assert "hook-run" not in page  # hidden: the git hooks' entry point


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_mkdocs_build_strict_offline(site):
    for page in ("index.html", "getting-started.html", "commands/reference.html", "commands/report.html", "api.html",
                 "concepts/storage-format.html", "recipes/from-dvc.html", "benchmarks.html", "reliability.html"):
        assert (site / page).is_file(), page
    reference = (site / "commands" / "reference.html").read_text()
    assert "Usage: mlvc report" in reference and "Usage: mlvc remote add" in reference
    api = (site / "api.html").read_text()
    for documented in ("mlvc.api.add", "mlvc.torch.save", "mlvc.lineage.manifest", "mlvc.errors.MlvcError"):
        assert documented in api, documented
    import html

    import mlvc.api
    import mlvc.torch

    text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", api)).split())
    for func in (mlvc.api.add, mlvc.torch.save):  # the docstrings themselves, rendered by mkdocstrings
        first_line = func.__doc__.strip().splitlines()[0].replace("`", "")
        assert " ".join(first_line.split()) in text, first_line
    assert "bench_core.py" in (site / "benchmarks.html").read_text()  # benchmarks/README.md is included
    loads = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""")
    offenders = [p.relative_to(site).as_posix() for p in site.rglob("*") if p.suffix in (".html", ".css", ".js")
                 and p.name != "sitemap.xml" and loads.search(re.sub(r'<a [^>]*href="https?://[^"]*"', "",
                                                                     p.read_text(errors="replace")))]
    assert offenders == []  # nothing is loaded from elsewhere when a page is viewed


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_site_loads_in_chromium(site, tmp_path):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "chromium is not installed: .ci/run installs it (apt-get install chromium)"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    shot = Path(os.environ.get("MLVC_TEST_ARTIFACTS", tmp_path)) / "docs-reference.png"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page()
                problems: list[str] = []
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                elsewhere: list[str] = []
                page.on("request", lambda r: None if r.url.startswith(base) else elsewhere.append(r.url))
                page.goto(base + "index.html")
                assert page.locator("h1").first.inner_text().rstrip("¶") == "mlvc"
                page.locator("article a[href='commands/reference.html']").first.click()
                page.wait_for_url(base + "commands/reference.html")
                assert page.locator("h1").first.inner_text().rstrip("¶") == "Command reference"
                assert "Usage: mlvc report" in page.locator("#mlvc-report ~ div pre").first.inner_text()
                page.goto(base + "commands/report.html")
                assert "self-contained HTML" in page.locator("article").inner_text()
                page.screenshot(path=str(shot))
                assert problems == [] and elsewhere == []
            finally:
                browser.close()
    finally:
        server.shutdown()
    assert shot.stat().st_size > 10_000


def test_the_documented_build_is_quiet(tmp_path):
    """`./scripts/docs` (what README and docs/index.md tell a newcomer to run): no theme banner,
    no deprecation tracebacks; only mkdocs' own lines."""
    env = {k: v for k, v in os.environ.items() if k != "NO_MKDOCS_2_WARNING"}
    proc = subprocess.run([str(ROOT / "scripts/docs"), "build", "-d", str(tmp_path / "site")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "Warning" not in out and "Traceback" not in out and "end of life" not in out, out
    assert [line for line in out.splitlines() if line.strip() and not line.startswith("INFO    -  ")] == [], out

