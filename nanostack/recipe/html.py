"""doctor.html: the report as one self-contained page. No script, no external address: the style is
inline and every picture is a base64 data URI, so the file can be mailed, archived or opened offline.
Everything shown comes from the report dict (report.py), escaped."""
import base64
import html
import math

STATUS_COLOURS = {"PASS": "#2a7", "WARN": "#d90", "FAIL": "#c33", "SKIP": "#999"}
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 6px;vertical-align:top;
text-align:left}th{background:#f4f4f4}.status{font-weight:bold;color:#fff;text-align:center}
.tok{font:12px/1.9 ui-monospace,monospace;white-space:pre;padding:1px 0;border-radius:2px}
.row{margin:.2em 0}.small{color:#666;font-size:12px}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.grid td{font:12px ui-monospace,monospace;white-space:pre;text-align:center;min-width:1em;padding:1px 2px}
"""


def render_html(report: dict, images: dict) -> str:
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>nanostack doctor: "
             f"{esc(report.get('run', ''))}</title><style>{STYLE}</style></head><body>",
             f"<h1>nanostack doctor</h1><p>{esc(report.get('run', ''))}</p>"]
    parts.append(checks_section(report.get("checks") or []))
    parts.append(baselines_section(report))
    parts.append(plots_section(images, report.get("plots_note", "")))
    parts.append(first_batch_section(report.get("first_batch")))
    parts.append(examples_section(report.get("examples")))
    parts.append(predictions_section(report.get("predictions")))
    parts.append(environment_section(report.get("environment") or {}, report.get("probes") or {}))
    parts.append("</body></html>\n")
    return "".join(parts)


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def visible(token: str) -> str:
    """A token's text with its whitespace made visible."""
    return esc(token.replace("\n", "⏎").replace("\t", "⇥")) or "&nbsp;"


def shade(nll, top: float) -> str:
    """A background for a token: white at loss 0, red at `top` nats and above."""
    if nll is None or not isinstance(nll, (int, float)) or not math.isfinite(nll):
        return "background:#ddd"
    a = max(0.0, min(1.0, nll / top))
    return f"background:rgba(220,40,40,{a:.2f})"


def checks_section(checks: list) -> str:
    if not checks:
        return "<h2>Checks</h2><p>No checks have run on this folder yet: <code>nanostack doctor RUN_DIR</code>.</p>"
    rows = []
    for c in checks:
        colour = STATUS_COLOURS.get(c["status"], "#999")
        hint = c["hint"] if c["status"] in ("WARN", "FAIL") else ""
        rows.append(f"<tr><td class=status style='background:{colour}'>{esc(c['status'])}</td>"
                    f"<td><b>{esc(c['id'])}</b></td><td>{esc(c.get('detail') or c.get('value'))}</td>"
                    f"<td>{esc(c.get('threshold', ''))}</td><td>{esc(hint)}</td>"
                    f"<td class=small>{esc(c.get('source', ''))}</td><td class=small>{c.get('seconds', 0):.2f}s</td></tr>")
    return ("<h2>Checks</h2><table><tr><th>status</th><th>check</th><th>measured</th><th>want</th><th>what to do</th>"
            "<th>source</th><th>time</th></tr>" + "".join(rows) + "</table>")


def baselines_section(report: dict) -> str:
    b = report.get("baselines")
    if not b:
        return ""
    return (f"<p class=small>Baselines (held-out, nats per token): ln V = {b['ln_v']:.3f} (uniform), unigram "
            f"{b['unigram_ce']:.3f}, bigram {b['bigram_ce']:.3f}.</p>")


def plots_section(images: dict, note: str) -> str:
    out = ["<h2>Plots</h2>"]
    if not images:
        out.append(f"<p>{esc(note or 'No plots: nothing to draw yet.')}</p>")
    for name, path in images.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        out.append(f"<div><img alt='{esc(name)}' src='data:image/png;base64,{data}'></div>")
    return "".join(out)


def token_row(texts, nlls=None, top=5.0) -> str:
    cells = []
    for i, t in enumerate(texts):
        style = shade(nlls[i], top) if nlls is not None and i < len(nlls) else ""
        title = f" title='loss {nlls[i]:.2f}'" if nlls is not None and i < len(nlls) and nlls[i] is not None else ""
        cells.append(f"<span class=tok style='{style}'{title}>{visible(t)}</span>")
    return "<div class=row>" + "".join(cells) + "</div>"


def first_batch_section(rows) -> str:
    if not rows:
        return ""
    out = ["<h2>The first batch, just before the net</h2><p class=small>Each column is one position: the input "
           "token x above the target y the model must predict there (y should be the next x).</p>"]
    for r in rows:
        n = min(len(r["x"]), 64)
        xs = "".join(f"<td>{visible(t)}</td>" for t in r["x"][:n])
        ys = "".join(f"<td>{visible(t)}</td>" for t in r["y"][:n])
        out.append(f"<table class=grid><tr><th>x</th>{xs}</tr><tr><th>y</th>{ys}</tr></table>")
    return "".join(out)


def examples_section(examples) -> str:
    if not examples:
        return ("<h2>Held-out examples by loss</h2><p>Scored by <code>nanostack doctor RUN_DIR</code> with the run's "
                "best checkpoint (not yet run on this folder).</p>")
    out = [f"<h2>Held-out examples by loss</h2><p class=small>{examples['scored']} {esc(examples['split'])} examples "
           f"scored with the best checkpoint (mean {examples['mean']:.3f} nats per token); each target token is shaded "
           f"by its loss (white 0, red 5 nats or more).</p>"]
    for title, key in (("Highest loss", "hardest"), ("Lowest loss", "easiest")):
        out.append(f"<h3>{title}</h3><table><tr><th>loss</th><th>example (targets)</th><th>id / place</th></tr>")
        for e in examples[key]:
            texts = [t for t, _ in e["tokens"]]
            nlls = [n for _, n in e["tokens"]]
            out.append(f"<tr><td>{e['loss']:.3f}</td><td>{token_row(texts, nlls)}</td><td class=small>{e['id']}<br>"
                       f"{esc(e['source'])} @ {e['offset']}</td></tr>")
        out.append("</table>")
    return "".join(out)


def predictions_section(predictions) -> str:
    if not predictions or not predictions.get("evals"):
        return ""
    out = ["<h2>Predictions on a fixed window as training went on</h2><p class=small>The model's most likely next "
           "token at each position of the first held-out window, at each evaluation, shaded by the loss of the true "
           "target there.</p>", "<table><tr><th>input</th><td>" + token_row(predictions["x"]) + "</td></tr>",
           "<tr><th>target</th><td>" + token_row(predictions["y"]) + "</td></tr>"]
    for e in predictions["evals"]:
        out.append(f"<tr><th>step {e['step']}</th><td>{token_row(e['pred'], e['nll'])}</td></tr>")
    out.append("</table>")
    return "".join(out)


def environment_section(env: dict, probes: dict) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in env.items())
    if probes:
        steps = probes.get("steps") or []
        rows += f"<tr><th>probes</th><td>{probes.get('count', 0)} probed steps {esc(steps[:8])}" \
                f"{' ...' if len(steps) > 8 else ''}</td></tr>"
    return f"<h2>Environment</h2><table>{rows}</table>"
