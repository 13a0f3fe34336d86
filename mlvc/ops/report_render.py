"""`mlvc report` rendered: one self-contained HTML page, or a Markdown summary.

The HTML page needs nothing at view time: CSS and JS are inline, the plots are
SVG drawn by the inline script from the JSON embedded in the page, and no URL
is ever loaded (no fonts, CDN scripts or images).  Tables are rendered here,
so the page still reads with JavaScript off; only the plots need it.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterator, Mapping

from ..units import human_size
from .report import DataVersion, ModelVersion, Report, ReportCommit, metric_span, param_effects
from .report_checkpoints import CheckpointChange, ModuleChange


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4g}"
    return str(v)


def _short_id(oid: str | None) -> str:
    if not oid:
        return "-"
    return oid.split(":", 1)[-1][:12]


def _size(n: int | None) -> str:
    return "-" if n is None else human_size(n)


def _delta(old: float | None, new: float) -> str:
    if old is None:
        return _fmt(new)
    d = new - old
    return f"{_fmt(old)} → {_fmt(new)} ({'+' if d >= 0 else ''}{_fmt(d)})"


def _module_cell(m: ModuleChange) -> str:
    if m.change != "modified":
        return m.change
    if m.rel_l2 is not None:
        return f"{_fmt(m.rel_l2)}{_blocks_note(m)}"
    return f"changed{_blocks_note(m)}"


def _blocks_note(m: ModuleChange) -> str:
    """"; blocks 2, 5" for a module whose repeated blocks 2 and 5 changed."""
    if not m.blocks:
        return ""
    return "; blocks " + ", ".join(b[len(m.module) + 1:] for b in m.blocks)


def _all_modules(checkpoints: list[CheckpointChange]) -> list[str]:
    seen: dict[str, None] = {}
    for ck in checkpoints:
        for m in ck.modules:
            seen.setdefault(m.module)
        for name in ck.unchanged:
            seen.setdefault(name)
    return list(seen)


def _lineage_rows(commits: list[ReportCommit]
                  ) -> Iterator[tuple[ReportCommit, list[DataVersion], list[ModelVersion]]]:
    """(commit, data, models) per commit, oldest first: everything at the first commit, then what changed."""
    for i, c in enumerate(commits):
        if i == 0:
            yield c, c.data, c.models
            continue
        changed = {a.path for a in c.artifacts}
        yield c, [d for d in c.data if d.path in changed], [m for m in c.models if m.path in changed]


def _source_text(source: Mapping[str, object] | None) -> str:
    """' from URL PATH at COMMIT (REV)' for an imported artifact, '' for one of this project."""
    if not isinstance(source, Mapping) or not source.get("url"):
        return ""
    rev = f" ({source['rev']})" if source.get("rev") else ""
    return f" from {source['url']} {source.get('path', '')} at {str(source.get('commit', ''))[:12]}{rev}"


def _checkpoint_label(ck: CheckpointChange) -> str:
    return f"{ck.artifact}/{ck.file}" if ck.file else ck.artifact


# ------------------------------------------------------------------ markdown


def render_markdown(report: Report) -> str:
    """The weekly-review summary: metrics, parameter changes and their effect, structure, data, commits."""
    commits = report.commits
    lines = [f"# Model evolution: {report.title}", ""]
    if not commits:
        lines.append("No commit changed an artifact in this range.")
        return "\n".join(lines) + "\n"
    authors = sorted({c.author for c in commits})
    lines += [f"{len(commits)} commit{'s' if len(commits) != 1 else ''} that changed artifacts, "
              f"`{commits[0].short}` ({commits[0].date[:10]}) to `{commits[-1].short}` ({commits[-1].date[:10]}), "
              f"by {', '.join(authors)}.", ""]
    lines += [f"> {n}" for n in report.notes]
    if report.notes:
        lines.append("")

    if report.metric_names:
        lines += ["## Metrics", "", "| metric | first | last | change | points |", "|---|---|---|---|---|"]
        for name in report.metric_names:
            span = metric_span(report, name)
            if span is None:
                continue
            first, last = span
            lines.append(f"| `{name}` | {_fmt(first)} | {_fmt(last)} | {'+' if last - first >= 0 else ''}"
                         f"{_fmt(last - first)} | {len(report.series(name))} |")
        lines.append("")

    effects = param_effects(report)
    lines += ["## Hyper-parameters: who changed what, and what it did", ""]
    if effects:
        lines += ["| commit | author | parameters | metrics in that commit |", "|---|---|---|---|"]
        for c, moved in effects:
            params = "; ".join(f"`{p.key}` ({p.source}) {_fmt(p.old)} → {_fmt(p.new)}" for p in c.params)
            shown = "; ".join(f"`{m.name}` {_delta(m.old, m.new)}" for m in moved) or "-"
            lines.append(f"| `{c.short}` {_md(c.message)} | {_md(c.author)} | {_md(params)} | {shown} |")
    else:
        lines.append("No parameter changed.")
    lines.append("")

    with_modules = [c for c in commits if c.checkpoints]
    lines += ["## Structure: modules that changed", ""]
    if with_modules:
        lines += ["| commit | checkpoint | changed modules (largest relative L2 change) | unchanged |",
                  "|---|---|---|---|"]
        for c in with_modules:
            for ck in c.checkpoints:
                changed = ", ".join(f"{m.module} ({_module_cell(m)})" for m in ck.modules) or "-"
                extra = f" shapes: {'; '.join(ck.shape_changes)}" if ck.shape_changes else ""
                lines.append(f"| `{c.short}` | `{_checkpoint_label(ck)}` | {changed}{extra} | "
                             f"{', '.join(ck.unchanged) or '-'} |")
    else:
        lines.append("No checkpoint changed its modules.")
    lines.append("")

    lines += ["## Data and models", "", "Every version at the first commit, then the versions each commit made.", "",
              "| commit | data (id, config hash, seed) | model (id) |", "|---|---|---|"]
    for c, data_versions, model_versions in _lineage_rows(commits):
        data = "; ".join(f"`{d.path}` {_short_id(d.id)} {_short_id(d.config_hash)} seed {_fmt(d.seed)}"
                         f"{_source_text(d.source)}" for d in data_versions) or "unchanged"
        models = "; ".join(f"`{m.path}` {_short_id(m.id)}{_source_text(m.source)}"
                           for m in model_versions) or "unchanged"
        lines.append(f"| `{c.short}` | {data} | {models} |")
    lines.append("")

    env = [(c, e) for c in commits for e in c.environment]
    if env:
        lines += ["## Environment", "", "| commit | checkpoint | key | change |", "|---|---|---|---|"]
        for c, e in env:
            lines.append(f"| `{c.short}` | `{e.artifact}` | {e.key} | {_fmt(e.old)} → {_fmt(e.new)} |")
        lines.append("")

    lines += ["## Commits", "", "| commit | date | author | message | artifacts |", "|---|---|---|---|---|"]
    for c in reversed(commits):
        arts = "; ".join(f"`{a.path}` {a.change} {_short_id(a.id)} {_size(a.size)}" for a in c.artifacts)
        lines.append(f"| `{c.short}` | {c.date[:16].replace('T', ' ')} | {_md(c.author)} | {_md(c.message)} | "
                     f"{arts} |")
    return "\n".join(lines).rstrip() + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ------------------------------------------------------------------ html

_CSS = """
:root{--fg:#1d232a;--muted:#5b6570;--line:#d9dee3;--accent:#2463eb;--bg:#fff;--soft:#f4f6f8}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);
background:var(--bg);margin:0}header{padding:18px 28px;border-bottom:1px solid var(--line);background:var(--soft)}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 10px}nav a{margin-right:14px;color:var(--accent);
text-decoration:none}main{padding:4px 28px 40px;max-width:1200px}.muted{color:var(--muted)}
table{border-collapse:collapse;width:100%;margin:6px 0 12px}th,td{border-bottom:1px solid var(--line);
padding:4px 8px;text-align:left;vertical-align:top}th{background:var(--soft);font-weight:600}
code,.sha{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}.plots{display:flex;flex-wrap:wrap;gap:16px}
.plot{border:1px solid var(--line);border-radius:6px;padding:8px}.plot h3{font-size:13px;margin:0 0 4px}
.plot svg .point{fill:var(--accent);stroke:#fff;stroke-width:1.5;cursor:pointer}.plot svg .point:hover{r:6}
.plot svg .line{fill:none;stroke:var(--accent);stroke-width:2}.plot svg .axis{stroke:#aab2bb}
.plot svg text{font-size:10px;fill:var(--muted)}#tooltip{position:fixed;pointer-events:none;background:#1d232a;
color:#fff;padding:6px 8px;border-radius:4px;font-size:12px;white-space:pre;display:none;z-index:9}
td.mod{text-align:center;font:12px ui-monospace,monospace}td.same{color:#b0b7be}.note{background:#fff7e0;
border:1px solid #f0d890;padding:6px 10px;border-radius:4px}
"""

_JS = r"""
(function(){
  var data = JSON.parse(document.getElementById('mlvc-report-data').textContent);
  var tip = document.getElementById('tooltip');
  var NS = 'http://www.w3.org/2000/svg';
  function el(name, attrs, parent){var e=document.createElementNS(NS,name);
    for(var k in attrs){e.setAttribute(k, attrs[k]);} if(parent){parent.appendChild(e);} return e;}
  function fmt(v){return Math.abs(v)>=1e4||(Math.abs(v)<1e-3&&v!==0)?v.toExponential(3):(+v.toPrecision(4)).toString();}
  function show(ev, text){tip.textContent=text; tip.style.display='block';
    tip.style.left=(ev.clientX+12)+'px'; tip.style.top=(ev.clientY+12)+'px';}
  function hide(){tip.style.display='none';}
  var n = data.commits.length, W=520, H=200, L=52, R=14, T=10, B=34;
  document.querySelectorAll('.plot[data-metric]').forEach(function(box){
    var name = box.getAttribute('data-metric'), pts = data.series[name] || [];
    var svg = el('svg', {width:W, height:H, viewBox:'0 0 '+W+' '+H, role:'img', 'aria-label':name}, box);
    if(!pts.length){return;}
    var ys = pts.map(function(p){return p[1];}), lo=Math.min.apply(null,ys), hi=Math.max.apply(null,ys);
    if(lo===hi){lo-=Math.abs(lo)*0.05||1; hi+=Math.abs(hi)*0.05||1;}
    function x(i){return n>1 ? L+(W-L-R)*i/(n-1) : (L+W-R)/2;}
    function y(v){return T+(H-T-B)*(1-(v-lo)/(hi-lo));}
    el('line', {x1:L, y1:H-B, x2:W-R, y2:H-B, 'class':'axis'}, svg);
    el('line', {x1:L, y1:T, x2:L, y2:H-B, 'class':'axis'}, svg);
    [lo, (lo+hi)/2, hi].forEach(function(v){var t=el('text',{x:L-6, y:y(v)+3, 'text-anchor':'end'},svg);
      t.textContent=fmt(v);});
    var step = Math.max(1, Math.ceil(n/8)), ticks = [];
    for(var i=0;i<n;i+=step){if(n-1-i >= step/2 || i===n-1){ticks.push(i);}}
    if(ticks[ticks.length-1]!==n-1){ticks.push(n-1);}  // the newest commit is always labelled
    ticks.forEach(function(i){  // the last label ends at the plot's edge, not past it
      var t=el('text',{x:x(i), y:H-B+14, 'text-anchor': n>1 && i===n-1 ? 'end' : 'middle'},svg);
      t.textContent=data.commits[i].short.slice(0,7);});
    el('polyline', {points:pts.map(function(p){return x(p[0])+','+y(p[1]);}).join(' '), 'class':'line'}, svg);
    pts.forEach(function(p){
      var c = data.commits[p[0]];
      var dot = el('circle', {cx:x(p[0]), cy:y(p[1]), r:4, 'class':'point', 'data-commit':c.short,
                              'data-value':p[1]}, svg);
      var text = name+'\n'+c.short+'  '+c.date.slice(0,10)+'\n'+c.message+'\nvalue: '+fmt(p[1]);
      dot.addEventListener('mouseenter', function(ev){show(ev, text);});
      dot.addEventListener('mousemove', function(ev){show(ev, text);});
      dot.addEventListener('mouseleave', hide);
    });
  });
  document.body.setAttribute('data-rendered', String(document.querySelectorAll('.plot svg').length));
})();
"""


def _e(text: object) -> str:
    return html.escape("-" if text is None else str(text), quote=True)


def _page_data(report: Report) -> str:
    data = {"commits": [{"short": c.short, "date": c.date, "message": c.message, "author": c.author}
                        for c in report.commits],
            "series": {name: report.series(name) for name in report.metric_names}}
    # A `<` could end the script element early (or open an HTML comment): JSON allows \u003c instead.
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def _l2_style(m: ModuleChange) -> str:
    if m.change != "modified":
        return "background:#e8eefc"
    if m.rel_l2 is None or math.isinf(m.rel_l2):
        return "background:#fbe3d0"
    # log scale: 1e-4 pale -> 1 strong
    level = min(1.0, max(0.0, (math.log10(max(m.rel_l2, 1e-6)) + 4) / 4))
    return f"background:rgba(220,90,30,{0.12 + 0.7 * level:.2f})"


def _timeline(commits: list[ReportCommit]) -> list[str]:
    out = ['<table id="timeline"><thead><tr><th>commit</th><th>date</th><th>author</th><th>message</th>'
           '<th>artifacts (id, size)</th></tr></thead><tbody>']
    for c in reversed(commits):
        arts = "<br>".join(
            f"<code>{_e(a.path)}</code> {_e(a.change)} <span class=sha>{_e(_short_id(a.id))}</span> {_e(_size(a.size))}"
            + (f' <span class="muted">{_e(a.error)}</span>' if a.error else "") for a in c.artifacts)
        out.append(f'<tr class="commit" data-commit="{_e(c.commit)}"><td class=sha title="{_e(c.commit)}">'
                   f"{_e(c.short)}</td><td>{_e(c.date[:16].replace('T', ' '))}</td><td>{_e(c.author)}</td>"
                   f"<td>{_e(c.message)}</td><td>{arts}</td></tr>")
    out.append("</tbody></table>")
    return out


def _modules_table(commits: list[ReportCommit]) -> list[str]:
    rows = [(c, ck) for c in commits for ck in c.checkpoints]
    if not rows:
        return ['<p class="muted">No checkpoint changed its modules in this range.</p>']
    modules = _all_modules([ck for _, ck in rows])
    out = ['<p class="muted">Each cell: the largest relative L2 change (‖new − old‖ / ‖old‖) among the module\'s '
           'tensors; "changed" when only the module ids could be compared.</p>',
           '<table id="modules"><thead><tr><th>commit</th><th>checkpoint</th>'
           + "".join(f"<th>{_e(m)}</th>" for m in modules) + "</tr></thead><tbody>"]
    for c, ck in rows:
        by_name = {m.module: m for m in ck.modules}
        cells = []
        for name in modules:
            m = by_name.get(name)
            if m is None:
                cells.append('<td class="mod same" title="unchanged">·</td>')
                continue
            tensors = f", {m.tensors_changed} tensors" if m.tensors_changed is not None else ""
            cells.append(f'<td class="mod changed" data-module="{_e(name)}" style="{_l2_style(m)}" '
                         f'title="{_e(name)}: {_e(m.change)}{_e(tensors)}">{_e(_module_cell(m))}</td>')
        note = f'<br><span class="muted">{_e(ck.note)}</span>' if ck.note else ""
        shapes = f'<br><span class="muted">{_e("; ".join(ck.shape_changes))}</span>' if ck.shape_changes else ""
        out.append(f'<tr><td class=sha>{_e(c.short)}</td><td><code>{_e(_checkpoint_label(ck))}</code>{note}'
                   f"{shapes}</td>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return out


def _lineage_table(commits: list[ReportCommit]) -> list[str]:
    out = ['<p class="muted">Every version at the first commit of the report, then the versions each commit '
           "made.</p>",
           '<table id="lineage"><thead><tr><th>commit</th><th>data (id, config hash, seed)</th>'
           "<th>model (id, module ids)</th><th>trained on (from the checkpoint)</th></tr></thead><tbody>"]
    for c, data_versions, model_versions in reversed(list(_lineage_rows(commits))):
        data = "<br>".join(f"<code>{_e(d.path)}</code> <span class=sha>{_e(_short_id(d.id))}</span>"
                           f" config {_e(_short_id(d.config_hash))} seed {_e(_fmt(d.seed))}"
                           + (f'<br><span class="muted source">{_e(_source_text(d.source).strip())}</span>'
                              if d.source else "") for d in data_versions)
        models, trained = [], []
        for m in model_versions:
            mods = ", ".join(f"{_e(k)} <span class=sha>{_e(_short_id(v))}</span>" for k, v in m.modules.items()
                             if isinstance(v, str))
            models.append(f"<code>{_e(m.path)}</code> <span class=sha>{_e(_short_id(m.id))}</span>"
                          + (f'<br><span class="muted source">{_e(_source_text(m.source).strip())}</span>'
                             if m.source else "")
                          + (f'<br><span class="muted">{mods}</span>' if mods else ""))
            for path, d in (m.data or {}).items():
                seed = f" seed {_e(d.get('seed'))}" if isinstance(d, dict) and "seed" in d else ""
                ident = d.get("id") if isinstance(d, dict) else d
                origin = _source_text(d.get("source")) if isinstance(d, dict) else ""
                shown = _short_id(ident if isinstance(ident, str) else None)
                trained.append(f"<code>{_e(path)}</code> <span class=sha>{_e(shown)}</span>{seed}"
                               + (f' <span class="muted source">{_e(origin.strip())}</span>' if origin else ""))
            if m.code_commit:
                code = _e(m.code_commit[:12])
                trained.append(f'<span class="muted">saved from code at</span> <span class=sha>{code}</span>')
        out.append(f"<tr><td class=sha>{_e(c.short)}</td><td>{data or 'unchanged'}</td>"
                   f"<td>{'<br>'.join(models) or 'unchanged'}</td><td>{'<br>'.join(trained) or '-'}</td></tr>")
    out.append("</tbody></table>")
    return out


def _params_table(report: Report) -> list[str]:
    effects = param_effects(report)
    if not effects:
        return ['<p class="muted">No parameter changed in this range.</p>']
    out = ['<table id="params"><thead><tr><th>commit</th><th>author</th><th>parameters</th>'
           "<th>metrics in that commit</th></tr></thead><tbody>"]
    for c, moved in effects:
        params = "<br>".join(f"<code>{_e(p.key)}</code> <span class=muted>{_e(p.source)}</span> "
                             f"{_e(_fmt(p.old))} → {_e(_fmt(p.new))}" for p in c.params)
        shown = "<br>".join(f"<code>{_e(m.name)}</code> {_e(_delta(m.old, m.new))}" for m in moved) or "-"
        out.append(f"<tr><td><span class=sha>{_e(c.short)}</span> {_e(c.message)}</td><td>{_e(c.author)}</td>"
                   f"<td>{params}</td><td>{shown}</td></tr>")
    out.append("</tbody></table>")
    return out


def _environment_table(commits: list[ReportCommit]) -> list[str]:
    rows = [(c, e) for c in commits for e in c.environment]
    if not rows:
        return ['<p class="muted">No environment recorded (checkpoints saved without mlvc.torch.save, or not '
                "in the cache).</p>"]
    out = ['<table id="environment"><thead><tr><th>commit</th><th>checkpoint</th><th>key</th><th>change</th>'
           "</tr></thead><tbody>"]
    for c, e in rows:
        out.append(f"<tr><td class=sha>{_e(c.short)}</td><td><code>{_e(e.artifact)}</code></td><td>{_e(e.key)}</td>"
                   f"<td>{_e(_fmt(e.old))} → {_e(_fmt(e.new))}</td></tr>")
    out.append("</tbody></table>")
    return out


def _summary(report: Report) -> list[str]:
    if not report.commits:
        return ['<p class="muted">No commit changed an artifact in this range.</p>']
    rows = []
    for name in report.metric_names:
        span = metric_span(report, name)
        if span is None:
            continue
        first, last = span
        rows.append(f"<tr><td><code>{_e(name)}</code></td><td>{_e(_fmt(first))}</td><td>{_e(_fmt(last))}</td>"
                    f"<td>{_e(('+' if last - first >= 0 else '') + _fmt(last - first))}</td></tr>")
    changed = sorted({p.key for c in report.commits[1:] for p in c.params})
    moved = sorted({m.module for c in report.commits for ck in c.checkpoints for m in ck.modules})
    out = ['<h2 id="summary">Summary</h2>',
           f"<p>Parameters changed: {', '.join(f'<code>{_e(k)}</code>' for k in changed) or 'none'}. "
           f"Modules that moved: {', '.join(f'<code>{_e(m)}</code>' for m in moved) or 'none'}.</p>"]
    if rows:
        out.append('<table id="summary-metrics"><thead><tr><th>metric</th><th>first</th><th>last</th>'
                   "<th>change</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    return out


def render_html(report: Report) -> str:
    """The whole report as one HTML document (UTF-8 text)."""
    commits = report.commits
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             # No URL may load: the policy makes the page provably offline in any browser.
             "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
             "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
             f"<title>mlvc report: {_e(report.title)}</title><style>{_CSS}</style></head><body>",
             f"<header><h1>How the model got here: {_e(report.title)}</h1>",
             f'<div class="muted">{len(commits)} commit{"s" if len(commits) != 1 else ""} that changed artifacts'
             f" · generated {_e(report.generated_at)} by mlvc report</div>",
             '<nav><a href="#summary">Summary</a><a href="#metrics">Metrics</a><a href="#params-h">Parameters</a>'
             '<a href="#modules-h">Modules</a>'
             '<a href="#lineage-h">Lineage</a><a href="#environment-h">Environment</a>'
             '<a href="#timeline-h">Timeline</a></nav></header><main>']
    parts += [f'<p class="note">{_e(n)}</p>' for n in report.notes]
    parts += _summary(report)
    parts.append('<h2 id="metrics">Metrics over commits</h2>')
    if report.metric_names:
        parts.append('<div class="plots">')
        for name in report.metric_names:
            also = report.metric_aliases.get(name)
            note = (f' <span class="muted">(also {_e(", ".join(a.rpartition(": ")[0] for a in also))})</span>'
                    if also else "")
            parts.append(f'<div class="plot" data-metric="{_e(name)}"><h3>{_e(name)}{note}</h3></div>')
        parts.append("</div>")
    else:
        parts.append('<p class="muted">No metrics recorded (metrics files, numeric pointer meta, or '
                     "<code>mlvc.torch.save(..., metrics=)</code>).</p>")
    parts.append('<h2 id="params-h">Parameter changes</h2>')
    parts += _params_table(report)
    parts.append('<h2 id="modules-h">Module-change map</h2>')
    parts += _modules_table(commits)
    parts.append('<h2 id="lineage-h">Lineage: data → model → commit</h2>')
    parts += _lineage_table(commits)
    parts.append('<h2 id="environment-h">Environment changes</h2>')
    parts += _environment_table(commits)
    parts.append('<h2 id="timeline-h">Commit timeline</h2>')
    parts += _timeline(commits)
    parts.append('</main><div id="tooltip"></div>')
    parts.append(f'<script type="application/json" id="mlvc-report-data">{_page_data(report)}</script>')
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts) + "\n"
