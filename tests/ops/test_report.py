"""`mlvc report` on a real history of a multimodal model: collection, Markdown, HTML in Chromium, errors."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from helpers import GIT_ENV, commit, git, mlvc_cli, write
from torch import nn

import mlvc
import mlvc.torch as mt
from mlvc.errors import EXIT_BAD_PATH, EXIT_DISK, EXIT_NOT_A_REPO, EXIT_USAGE, RevisionError
from mlvc.ops.report import collect
from mlvc.ops.report_render import render_html, render_markdown
from mlvc.repo import Repo

CHROMIUM = "/usr/bin/chromium"


class TextBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.proj = nn.Linear(8, 8)

    def forward(self, tokens):
        return self.proj(self.embed(tokens).mean(dim=1))


class MultiModal(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.image_branch = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.text_branch = TextBranch()
        self.fusion = nn.Linear(12, 3)

    def forward(self, images, tokens):
        return self.fusion(torch.cat([self.image_branch(images), self.text_branch(tokens)], dim=1))


def make_data(root: Path, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    images, tokens = torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 50, (n, 5), generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    root.mkdir(parents=True, exist_ok=True)
    torch.save({"images": images, "tokens": tokens, "labels": labels}, root / "batch.pt")
    return images, tokens, labels


def train(model, batch, trainable: list[str], lr: float) -> float:
    images, tokens, labels = batch
    for name, module in model.named_children():
        module.requires_grad_(name in trainable)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(3):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(images, tokens), labels)
        loss.backward()
        opt.step()
    return float(loss.detach())


# (message, lr, data seed, modules trained, val_acc)
PLAN = [
    ("baseline", 0.1, 1, ["image_branch", "text_branch", "fusion"], 0.52),
    ("lower lr, fusion only", 0.05, 1, ["fusion"], 0.61),
    ("new data (seed 2), text branch", 0.05, 2, ["text_branch"], 0.64),
    ("lr 0.02, image branch", 0.02, 2, ["image_branch"], 0.70),
]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Four commits of a multimodal model: lr, data seed and the trained modules change."""
    root = tmp_path_factory.mktemp("report") / "repo"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore", mt.ProvenanceWarning)  # params.yaml is committed with the checkpoint
        for k, v in GIT_ENV.items():
            mp.setenv(k, v)
        mp.chdir(root)
        git(root, "init", "-q", "-b", "main")
        Repo.init(root)
        torch.manual_seed(0)
        model = MultiModal()
        shas = []
        for message, lr, seed, trainable, acc in PLAN:
            write(root / "params.yaml", f"train:\n  lr: {lr}\n  epochs: 3\n")
            write(root / "data_config.yaml", f"n: 16\nseed: {seed}\n")
            batch = make_data(root / "data" / "processed", 16, seed)
            mlvc.add("data/processed", role="data", config="data_config.yaml", seed=seed)
            loss = train(model, batch, trainable, lr)
            write(root / "metrics.json", json.dumps({"train_loss": loss}))
            if len(shas) == len(PLAN) - 1:  # the last checkpoint is trained after a CUDA upgrade
                mp.setattr(mt, "_environment", functools.partial(
                    lambda real: {**real(), "torch": "9.9.0+cu124", "cuda": "12.4"}, mt._environment))
            mt.save(model, "checkpoints/model.pt", epoch=len(shas), params={"lr": lr, "trained": trainable},
                    metrics={"val_acc": acc, "loss": loss}, data=["data/processed"])
            mlvc.add("checkpoints/model.pt", role="model")
            shas.append(commit(root, message, f"v{len(shas) + 1}"))
    return {"root": root, "shas": shas}


@pytest.fixture
def in_history(history, monkeypatch):
    monkeypatch.chdir(history["root"])
    return history


def test_collect_reads_every_section_from_history(in_history):
    repo = Repo.find(in_history["root"])
    try:
        rep = collect(repo)
    finally:
        repo.close()
    assert [c.commit for c in rep.commits] == in_history["shas"]  # oldest first, one per commit
    assert [c.message for c in rep.commits] == [p[0] for p in PLAN]
    acc = rep.series("checkpoints/model.pt: val_acc")
    assert [v for _, v in acc] == [p[4] for p in PLAN]
    assert "metrics.json: train_loss" in rep.metric_names
    # lr changes, from params.yaml and from the checkpoint's birth certificate
    lr = [(c.message, p.source, p.old, p.new) for c in rep.commits for p in c.params if p.key.endswith("lr")]
    assert ("lower lr, fusion only", "params.yaml", 0.1, 0.05) in lr
    assert ("lr 0.02, image branch", "checkpoints/model.pt", 0.05, 0.02) in lr
    # module-change map: only the trained modules moved, with a real relative L2 change
    changed = [{m.module: m for ck in c.checkpoints for m in ck.modules} for c in rep.commits]
    assert changed[0] == {}
    for (_, _, _, trainable, _), mods in zip(PLAN[1:], changed[1:], strict=True):
        assert sorted(mods) == sorted(trainable)
        for m in mods.values():
            assert m.change == "modified" and m.tensors_changed >= 1 and 0 < m.rel_l2 < 10
    # lineage: data id with config hash and seed; model with its module ids and the data it was trained on
    last = rep.commits[-1]
    (data,) = last.data
    assert data.path == "data/processed" and data.seed == 2 and data.config_hash.startswith("xxh128:")
    (model,) = last.models
    assert set(model.modules) == {"image_branch", "text_branch", "fusion"}
    assert model.data["data/processed"]["id"] == data.id and model.data["data/processed"]["seed"] == 2
    assert rep.commits[1].data[0].id == rep.commits[0].data[0].id != data.id
    # environment: recorded at the first checkpoint, then only where it moved
    assert {e.key for e in rep.commits[0].environment} >= {"python", "torch", "packages"}
    assert all(not c.environment for c in rep.commits[1:-1])
    moved = {e.key: (e.old, e.new) for e in rep.commits[-1].environment}
    assert moved == {"torch": (torch.__version__, "9.9.0+cu124"), "cuda": (torch.version.cuda, "12.4")}


def test_range_since_paths_and_no_contents(in_history):
    shas = in_history["shas"]
    repo = Repo.find(in_history["root"])
    try:
        assert [c.commit for c in collect(repo, rev="v2..v4").commits] == shas[2:]
        assert [c.commit for c in collect(repo, rev="v3").commits] == shas[:3]
        assert [c.commit for c in collect(repo, max_count=1).commits] == shas[-1:]
        assert collect(repo, since="2000-01-01").commits and not collect(repo, since="2999-01-01").commits
        # a range that starts later still knows the state before it (lineage, L2 changes)
        first = collect(repo, rev="v3..v4").commits[0]
        assert [m.module for ck in first.checkpoints for m in ck.modules] == ["image_branch"]
        only_model = collect(repo, ["checkpoints/model.pt"])
        assert all(a.path == "checkpoints/model.pt" for c in only_model.commits for a in c.artifacts)
        cheap = collect(repo, contents=False)
        mods = [sorted(m.module for ck in c.checkpoints for m in ck.modules) for c in cheap.commits]
        assert mods == [[], ["fusion"], ["text_branch"], ["image_branch"]]  # from the pointers' module ids
        assert all(m.rel_l2 is None for c in cheap.commits for ck in c.checkpoints for m in ck.modules)
        with pytest.raises(RevisionError):
            collect(repo, rev="nosuch..HEAD")
    finally:
        repo.close()


def test_markdown_answers_who_changed_lr_and_what_it_did(in_history):
    r = mlvc_cli(in_history["root"], "report", "--format", "md")
    assert r.code == 0, r.err
    md = r.out
    assert md.startswith("# Model evolution")
    short = in_history["shas"][1][:10]
    row = next(line for line in md.splitlines() if "`train.lr` (params.yaml) 0.1 → 0.05" in line)
    assert "mlvc-test" in row and "lower lr" in row and "`lr` (checkpoints/model.pt) 0.1 → 0.05" in row
    assert "`checkpoints/model.pt: val_acc` 0.52 → 0.61 (+0.09)" in row
    assert re.search(r"\| `checkpoints/model.pt: val_acc` \| 0.52 \| 0.7 \| \+0.18 \| 4 \|", md)
    structure = md.split("## Structure")[1].split("##")[0]
    row = rf"\| `{short[:7]}` \| `checkpoints/model.pt` \| fusion \(0\.\d+\) \| image_branch, text_branch \|"
    assert re.search(row, structure)
    assert "seed 2" in md.split("## Data and models")[1]
    assert re.search(r"\| `[0-9a-f]+` \| `checkpoints/model.pt` \| torch \| .+ → 9.9.0\+cu124 \|", md)
    r = mlvc_cli(in_history["root"], "report", "--format", "md", "--rev", "v4..v4")
    assert r.code == 0 and "No commit changed an artifact" in r.out
    out = in_history["root"].parent / "week.md"
    r = mlvc_cli(in_history["root"], "report", "--format", "md", "--rev", "v1..v3", "-o", str(out))
    assert r.code == 0 and r.out.startswith(f"wrote {out}: 2 commits")
    assert out.read_text().count("| `") and in_history["shas"][0][:7] not in out.read_text()
    r = mlvc_cli(in_history["root"], "report", "-o", "-", "-n", "1")
    assert r.code == 0 and r.out.startswith("<!DOCTYPE html>") and in_history["shas"][-1] in r.out


def test_html_is_self_contained_and_small(in_history, tmp_path):
    root = in_history["root"]
    before = (git(root, "rev-parse", "HEAD"), git(root, "status", "--porcelain", "--ignored"))
    out = tmp_path / "r.html"
    r = mlvc_cli(root, "report", "-o", str(out))
    assert r.code == 0, r.err
    assert (git(root, "rev-parse", "HEAD"), git(root, "status", "--porcelain", "--ignored")) == before  # no checkout
    assert f"wrote {out}" in r.out
    page = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing loads from anywhere
    assert "<script src" not in page and "@import" not in page and "url(" not in page
    assert len(page.encode()) < 100_000
    for c in in_history["shas"]:
        assert c in page


def _page_of(history, tmp_path) -> Path:
    repo = Repo.find(history["root"])
    try:
        page = render_html(collect(repo))
    finally:
        repo.close()
    out = tmp_path / "report.html"
    out.write_text(page)
    return out


def test_report_renders_in_chromium(in_history, tmp_path):
    """The page loads without console errors, each metric plot has one point per commit, hover shows values."""
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "chromium is not installed: .ci/run installs it (apt-get install chromium)"
    page_file = _page_of(in_history, tmp_path)
    shot = Path(os.environ.get("MLVC_TEST_ARTIFACTS", tmp_path)) / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            requests: list[str] = []
            page.on("request", lambda req: requests.append(req.url))
            page.goto(page_file.as_uri())
            page.wait_for_selector("body[data-rendered]")
            assert problems == []
            assert requests == [page_file.as_uri()]  # nothing but the page itself
            plots = page.locator(".plot[data-metric]")
            names = [plots.nth(i).get_attribute("data-metric") for i in range(plots.count())]
            assert "checkpoints/model.pt: val_acc" in names and "metrics.json: train_loss" in names
            for i in range(plots.count()):
                assert plots.nth(i).locator("svg circle.point").count() == len(PLAN)
                assert plots.nth(i).locator("svg polyline").count() == 1
            acc = page.locator('.plot[data-metric="checkpoints/model.pt: val_acc"] circle.point')
            values = [float(acc.nth(i).get_attribute("data-value")) for i in range(acc.count())]
            assert values == [p[4] for p in PLAN]
            acc.nth(1).hover()
            tip = page.locator("#tooltip")
            assert tip.is_visible()
            assert "value: 0.61" in tip.inner_text() and "lower lr" in tip.inner_text()
            timeline = page.locator("#timeline tr.commit")
            assert timeline.count() == len(PLAN)
            assert [timeline.nth(i).get_attribute("data-commit") for i in range(len(PLAN))] == \
                list(reversed(in_history["shas"]))
            assert page.locator("#modules td.changed").count() == 1 + 1 + 1  # one trained module per commit
            assert "0.1 → 0.05" in page.locator("#params").inner_text()
            assert "seed 2" in page.locator("#lineage").inner_text()
            summary = page.locator("#summary-metrics").inner_text()
            assert "checkpoints/model.pt: val_acc\t0.52\t0.7\t+0.18" in summary
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_bad_input_gives_clear_errors(in_history, tmp_path):
    root = in_history["root"]
    r = mlvc_cli(root, "report", "--rev", "nosuchrev", "-o", str(tmp_path / "x.html"))
    assert r.code == EXIT_USAGE and "nosuchrev" in r.err and "Traceback" not in r.err
    r = mlvc_cli(root, "report", "--format", "pdf")
    assert r.code == EXIT_USAGE and "--format must be html or md" in r.err
    r = mlvc_cli(root, "report", "-o", str(tmp_path / "no" / "such" / "dir" / "r.html"))
    assert r.code == EXIT_BAD_PATH and "does not exist" in r.err
    r = mlvc_cli(root, "report", "no/such/artifact")
    assert r.code == EXIT_BAD_PATH and "no/such/artifact" in r.err
    r = mlvc_cli(root, "report", "--since", "the other day")
    assert r.code == EXIT_USAGE and "cannot understand the date" in r.err
    r = mlvc_cli(root, "report", "-n", "many")
    assert r.code == EXIT_USAGE
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: make the target unwritable another way
            target = str(Path("/proc/version"))
        else:
            target = str(locked / "r.html")
        r = mlvc_cli(root, "report", "-o", target)
        assert r.code == EXIT_DISK and "cannot write the report" in r.err and "Traceback" not in r.err
    finally:
        locked.chmod(0o700)
    outside = tmp_path / "plain"
    outside.mkdir()
    r = mlvc_cli(outside, "report")
    assert r.code == EXIT_NOT_A_REPO and "Traceback" not in r.err
    assert not list(Path(root).glob(".report.html.*"))
    shutil.rmtree(outside)


def test_render_escapes_and_handles_an_empty_report(in_history):
    from mlvc.ops.report import Report, ReportCommit

    rep = Report("t", "HEAD", None, "now", [ReportCommit("a" * 40, "aaaaaaa", "2024-01-01T00:00:00+00:00",
                                                         "<b>x</b>", "</script><script>alert(1)</script>")])
    page = render_html(rep)
    assert "<script>alert(1)" not in page and "&lt;/script&gt;" in page
    assert "No commit changed" in render_markdown(Report("t", "HEAD", None, "now"))


def test_a_clone_without_the_objects_reports_from_pointers(in_history, tmp_path):
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(in_history["root"]), str(clone))
    Repo.find(clone).close()
    repo = Repo.find(clone)
    try:
        rep = collect(repo)
    finally:
        repo.close()
    assert len(rep.commits) == len(PLAN)
    assert rep.notes and "checkpoints/model.pt" in rep.notes[0] and "mlvc pull" in rep.notes[0]
    mods = [[m.module for ck in c.checkpoints for m in ck.modules] for c in rep.commits]
    assert mods == [[], ["fusion"], ["text_branch"], ["image_branch"]]  # from the module ids in the pointers
    assert all("not in the cache" in ck.note for c in rep.commits for ck in c.checkpoints)
    assert "metrics.json: train_loss" in rep.metric_names  # metrics files are in git
    assert "checkpoints/model.pt: val_acc" not in rep.metric_names  # the birth certificates are not
    r = mlvc_cli(clone, "report", "-o", str(tmp_path / "r.html"))
    assert r.code == 0, r.err
    assert "mlvc pull" in (tmp_path / "r.html").read_text()


def test_empty_history(repo_dir, tmp_path):
    r = mlvc_cli(repo_dir, "report", "--format", "md")
    assert r.code == 0 and "No commit changed an artifact" in r.out
    r = mlvc_cli(repo_dir, "report", "-o", str(tmp_path / "empty.html"))
    assert r.code == 0 and "0 commits" in (tmp_path / "empty.html").read_text()


def test_a_natural_flow_reads_metrics_inside_artifacts_plots_each_once_and_follows_the_umask(repo_dir, tmp_path):
    """checkpoints/ holds the model and the metrics.json the training script wrote beside it; an
    eval script commits eval/metrics.json to git; val_acc is in both the checkpoint and metrics.json."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    accs, bleus = [0.5, 0.6, 0.75], [10.0, 12.5, 13.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mt.ProvenanceWarning)
        for i, (acc, bleu) in enumerate(zip(accs, bleus, strict=True)):
            with torch.no_grad():
                model.weight.add_(0.1)
            mt.save(model, "checkpoints/model.pt", metrics={"val_acc": acc})
            write(repo_dir / "checkpoints" / "metrics.json", json.dumps({"val_acc": acc, "eval": {"loss": 1 - acc}}))
            write(repo_dir / "eval" / "metrics.json", json.dumps({"bleu": bleu}))
            mlvc.add("checkpoints")
            commit(repo_dir, f"epoch {i}")
    repo = Repo.find(repo_dir)
    try:
        rep = collect(repo)
    finally:
        repo.close()
    assert rep.metric_names == ["checkpoints/metrics.json: eval.loss", "checkpoints: val_acc",
                                "eval/metrics.json: bleu"]
    assert rep.metric_aliases == {"checkpoints: val_acc": ["checkpoints/metrics.json: val_acc"]}
    assert [v for _, v in rep.series("checkpoints: val_acc")] == accs
    assert [v for _, v in rep.series("eval/metrics.json: bleu")] == bleus
    assert [v for _, v in rep.series("checkpoints/metrics.json: eval.loss")] == pytest.approx([1 - a for a in accs])

    old = os.umask(0o022)
    try:
        r = mlvc_cli(repo_dir, "report", "-o", "report.html")
    finally:
        os.umask(old)
    assert r.code == 0, r
    assert (repo_dir / "report.html").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((repo_dir / "report.html").as_uri())
            page.wait_for_selector("body[data-rendered]")
            assert page.locator(".plot[data-metric]").count() == 3  # val_acc once, not twice
            overflow = page.evaluate("""() => [...document.querySelectorAll('.plot svg')].flatMap(svg => {
                const w = svg.width.baseVal.value;
                return [...svg.querySelectorAll('text')].map(t => t.getBBox())
                    .filter(b => b.x < 0 || b.x + b.width > w).map(b => [b.x, b.width, w]);
            })""")
            assert overflow == []  # the last commit's label is not clipped
            labels = page.eval_on_selector_all('.plot[data-metric="checkpoints: val_acc"] svg text',
                                               "els => els.map(e => e.textContent)")
            assert git(repo_dir, "rev-parse", "--short=7", "HEAD").strip() in labels
        finally:
            browser.close()


def test_a_duplicate_metric_keeps_the_points_only_the_other_source_recorded():
    from mlvc.ops.report import MetricChange, ReportCommit, merge_duplicate_metrics

    commits = [ReportCommit(f"{i}" * 40, f"{i}" * 7, "2026-01-01", "a", f"c{i}") for i in range(3)]
    recorded = [{"ck.pt: acc": 0.5, "metrics.json: acc": 0.5}, {"metrics.json: acc": 0.6},
                {"ck.pt: acc": 0.7, "metrics.json: acc": 0.7, "metrics.json: loss": 1.0}]
    for c, values in zip(commits, recorded, strict=True):
        c.metrics = dict(values)
        c.metric_changes = [MetricChange(k, None, v) for k, v in values.items()]
    assert merge_duplicate_metrics(commits) == {"ck.pt: acc": ["metrics.json: acc"]}
    assert [c.metrics for c in commits] == [{"ck.pt: acc": 0.5}, {"ck.pt: acc": 0.6},
                                            {"ck.pt: acc": 0.7, "metrics.json: loss": 1.0}]
    assert [[m.name for m in c.metric_changes] for c in commits] == [["ck.pt: acc"], ["ck.pt: acc"],
                                                                     ["ck.pt: acc", "metrics.json: loss"]]
    other = [ReportCommit("9" * 40, "9" * 7, "2026-01-01", "a", "c")]
    other[0].metrics = {"ck.pt: acc": 0.5, "metrics.json: acc": 0.4}  # disagree: both shown
    assert merge_duplicate_metrics(other) == {} and len(other[0].metrics) == 2


def test_an_imported_dataset_names_its_source_in_the_lineage(repo_dir, tmp_path):
    """Which dataset version trained this model, across repositories: the report names the
    registry's URL, path and commit of an imported data artifact, and the checkpoint's too."""
    from registry import make_registry

    registry = make_registry(tmp_path / "registry", str(tmp_path / "store"))
    assert mlvc_cli(repo_dir, "import", str(registry.path), "datasets/images", "--rev", "v1", "-q").code == 0
    commit(repo_dir, "import images v1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mt.ProvenanceWarning)
        mt.save({"w": torch.ones(2)}, repo_dir / "model.pt", data="images")
    mlvc.add(str(repo_dir / "model.pt"), role="model", repo=repo_dir)
    commit(repo_dir, "train on images v1")
    assert mlvc_cli(repo_dir, "update", "images", "--rev", "v2", "-q").code == 0
    commit(repo_dir, "images v2")

    repo = Repo.find(repo_dir)
    try:
        rep = collect(repo)
    finally:
        repo.close()
    first, trained, moved = rep.commits
    source = {"url": "../registry", "path": "datasets/images", "rev": "v1", "commit": registry.v1}
    assert [(d.path, d.source) for d in first.data] == [("images", source)]
    assert first.artifacts[0].source == source
    assert trained.models[0].data["images"]["source"] == source
    assert [d.source["commit"] for d in moved.data] == [registry.v2]
    assert rep.as_dict()["commits"][2]["data"][0]["source"]["rev"] == "v2"

    md = render_markdown(rep)
    assert f"from ../registry datasets/images at {registry.v1[:12]} (v1)" in md
    assert f"from ../registry datasets/images at {registry.v2[:12]} (v2)" in md
    html = render_html(rep)
    assert html.count(f"from ../registry datasets/images at {registry.v1[:12]} (v1)") == 2  # data, trained on


def _safetensors_with_record(path: Path, record: dict[str, object], value: float) -> None:
    """A one-tensor safetensors file whose header carries `record` as its `mlvc` birth certificate."""
    import struct

    raw = struct.pack("<4f", value, 1.0, 2.0, 3.0)
    header = {"__metadata__": {"mlvc": json.dumps(record)},
              "head.w": {"dtype": "F32", "shape": [4], "data_offsets": [0, len(raw)]}}
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw)


def test_a_birth_certificate_of_the_wrong_shape_is_ignored(repo_dir: Path) -> None:
    # an `mlvc` record written by another tool: metrics, params and data not mappings, commit not
    # text, then a data set's id not text
    odd: dict[str, object] = {"metrics": [0.5], "params": "lr=1", "data": ["x"], "commit": 7, "saved_at": "2024"}
    for i, data in enumerate((["x"], {"d.bin": 7})):
        _safetensors_with_record(repo_dir / "model.safetensors", {**odd, "metrics": [i], "data": data}, float(i))
        mlvc.add("model.safetensors", role="model")
        commit(repo_dir, f"v{i}")
    repo = Repo.find(repo_dir)
    try:
        rep = collect(repo, contents=True)
    finally:
        repo.close()
    [model] = rep.commits[-1].models
    assert model.data == {"d.bin": 7} and model.code_commit is None
    assert "model.safetensors" in render_markdown(rep) and "model.safetensors" in render_html(rep)
