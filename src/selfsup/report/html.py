"""The evaluation report: one self-contained HTML page (tables + inline PNG plots) from tidy rows.

    write_html(rows, "out/report.html", embeddings={"runs/a @ final": (coords, labels, class_names)})

Sections, each only when its protocol ran: a summary table per protocol (mean +- std over seeds,
the number of seeds), accuracy against the label fraction (linear probe and fine-tuning),
few-shot accuracy against shots with 95% intervals, robustness curves (accuracy against
corruption severity), label-free metrics against kNN accuracy over checkpoints (with Spearman's
rank correlation), and 2-D maps of test embeddings. The page has no external resources, so it
opens anywhere; an inline script marks ``data-rendered`` on the body with the number of plots that
decoded, which the test reads through headless Chromium.
"""
from __future__ import annotations

import base64
import html
import io
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..evaluation.study import summarize

LABEL_FREE = {("rankme", "rank"): "RankMe (effective rank)", ("alpha_req", "alpha"): "alpha-ReQ (spectral decay)",
              ("separability", "score"): "class separability (no labels)",
              ("alignment_uniformity", "alignment"): "alignment", ("alignment_uniformity", "uniformity"): "uniformity"}


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(width=6.0, height=3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _label(run: str, checkpoint: str) -> str:
    return f"{run} @ {checkpoint}"


def _fmt(mean: float, std: float, n: int) -> str:
    if not math.isfinite(mean):
        return "-"
    digits = 4 if abs(mean) < 10 else 1
    return f"{mean:.{digits}f} &plusmn; {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def _tables(summary) -> list[str]:
    out = []
    for protocol in sorted({k[2] for k in summary}):
        keys = [k for k in summary if k[2] == protocol]
        metrics = sorted({k[3] for k in keys} - {"seconds"}, key=_natural) + ["seconds"]
        encoders = sorted({(k[0], k[1]) for k in keys}, key=lambda e: (e[0], _natural(e[1])))
        head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
        body = []
        for run, ckpt in encoders:
            cells = []
            for m in metrics:
                s = summary.get((run, ckpt, protocol, m))
                cells.append(f"<td>{_fmt(s['mean'], s['std'], s['n']) if s else '-'}</td>")
            n = max((summary[(run, ckpt, protocol, m)]["n"] for m in metrics if (run, ckpt, protocol, m) in summary), default=0)
            body.append(f"<tr><th>{html.escape(_label(run, ckpt))}</th><td>{n}</td>{''.join(cells)}</tr>")
        out.append(f"<h3>{html.escape(protocol)}</h3><table><tr><th>encoder</th><th>seeds</th>{head}</tr>{''.join(body)}</table>")
    return out


def _natural(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text))]


def _final_encoders(summary) -> list[tuple[str, str]]:
    """The encoder each run is shown by in the per-encoder plots: its final one, else its last checkpoint."""
    runs: dict[str, list[str]] = {}
    for run, ckpt, _, _ in summary:
        runs.setdefault(run, []).append(ckpt)
    return [(run, "final" if "final" in ckpts else max(ckpts, key=_natural)) for run, ckpts in sorted(runs.items())]


def _fraction_plot(summary) -> str | None:
    fig, ax = _figure()
    drawn = False
    for run, ckpt in _final_encoders(summary):
        for protocol, prefix, style in (("fractions", "linear@", "-o"), ("finetune", "finetune@", "--s")):
            points = sorted((float(m[len(prefix):-1]), s["mean"], s["std"]) for (r, c, p, m), s in summary.items()
                            if r == run and c == ckpt and p == protocol and m.startswith(prefix) and m.endswith("%"))
            if points:
                x, y, e = zip(*points)
                ax.errorbar(x, y, yerr=e, fmt=style, capsize=3, label=f"{_label(run, ckpt)} ({protocol})")
                drawn = True
    if not drawn:
        return None
    ax.set_xscale("log")
    ax.set_xlabel("labelled fraction of the train split (%)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def _fewshot_plot(summary) -> str | None:
    fig, ax = _figure()
    drawn = False
    for run, ckpt in _final_encoders(summary):
        points = []
        for (r, c, p, m), s in summary.items():
            if r == run and c == ckpt and p == "fewshot" and re.fullmatch(r"\d+shot", m):
                ci = summary.get((r, c, p, f"{m}_ci95"), {"mean": 0.0})["mean"]
                points.append((int(m[:-4]), s["mean"], ci))
        if points:
            x, y, e = zip(*sorted(points))
            ax.errorbar(x, y, yerr=e, fmt="-o", capsize=3, label=_label(run, ckpt))
            drawn = True
    if not drawn:
        return None
    ax.set_xlabel("labelled examples per class")
    ax.set_ylabel("accuracy (95% interval over episodes)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def _robustness_plots(summary) -> list[str]:
    figures = []
    for run, ckpt in _final_encoders(summary):
        kinds: dict[str, list[tuple[int, float]]] = {}
        clean = summary.get((run, ckpt, "robustness", "clean"))
        for (r, c, p, m), s in summary.items():
            match = re.fullmatch(r"(\w+)@(\d)", m) if (r, c, p) == (run, ckpt, "robustness") else None
            if match:
                kinds.setdefault(match.group(1), []).append((int(match.group(2)), s["mean"]))
        if not kinds:
            continue
        fig, ax = _figure()
        for kind, points in sorted(kinds.items()):
            points = sorted(points)
            if clean:
                points = [(0, clean["mean"])] + points
            ax.plot(*zip(*points), "-o", label=kind)
        ax.set_xlabel("corruption severity (0 = clean)")
        ax.set_ylabel("frozen-probe accuracy")
        ax.set_title(_label(run, ckpt), fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        figures.append(_png(fig))
    return figures


def _labelfree_plots(summary) -> list[tuple[str, str]]:
    """(caption, figure) per label-free metric that ran on 2+ checkpoints alongside kNN."""
    from scipy.stats import spearmanr

    out = []
    runs = sorted({k[0] for k in summary})
    for (protocol, metric), title in LABEL_FREE.items():
        fig, ax = _figure(5.0, 3.6)
        captions = []
        for run in runs:
            pairs = []
            for (r, c, p, m), s in summary.items():
                if (r, p, m) == (run, protocol, metric) and (r, c, "knn", "accuracy") in summary:
                    pairs.append((s["mean"], summary[(r, c, "knn", "accuracy")]["mean"], c))
            if len(pairs) < 2:
                continue
            x, y, names = zip(*pairs)
            rho = spearmanr(x, y).statistic if len(set(x)) > 1 and len(set(y)) > 1 else float("nan")
            ax.scatter(x, y, label=f"{run} (Spearman {rho:.2f}, {len(pairs)} checkpoints)")
            captions.append(f"{html.escape(run)}: Spearman rho = {rho:.3f} over {len(pairs)} checkpoints")
        if not captions:
            import matplotlib.pyplot as plt

            plt.close(fig)
            continue
        ax.set_xlabel(title)
        ax.set_ylabel("kNN accuracy")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        out.append((f"{html.escape(title)} against kNN accuracy: " + "; ".join(captions), _png(fig)))
    return out


def _embedding_plot(name: str, coords: np.ndarray, labels, class_names) -> str:
    fig, ax = _figure(5.0, 4.4)
    labels = np.zeros(len(coords), dtype=int) if labels is None else np.asarray(labels)
    for c in np.unique(labels):
        pick = labels == c
        label = class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
        ax.scatter(coords[pick, 0], coords[pick, 1], s=3, label=label)
    ax.set_title(name, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, markerscale=3, loc="best")
    return _png(fig)


def _skipped_table(skipped) -> str:
    """One row per (encoder, protocol) that did not run, with the reason (seeds folded together)."""
    grouped: dict[tuple, list] = {}
    for run, checkpoint, protocol, seed, why in skipped:
        grouped.setdefault((run, checkpoint, protocol, why), []).append(seed)
    body = []
    for (run, checkpoint, protocol, why), seeds in grouped.items():
        shown = [str(s) for s in seeds if s != ""]
        body.append(f"<tr><th>{html.escape(_label(run, checkpoint))}</th><td>{html.escape(protocol)}</td>"
                    f"<td>{html.escape(', '.join(shown) or '-')}</td><td class=why>{html.escape(why)}</td></tr>")
    return ("<h2>Skipped protocols</h2><table class=skipped><tr><th>encoder</th><th>protocol</th><th>seeds</th>"
            f"<th>why</th></tr>{''.join(body)}</table>")


def write_html(rows: list[dict], path: str | os.PathLike, title: str = "selfsup evaluation",
               embeddings: dict | None = None, notes: list[str] = (), skipped=()) -> Path:
    """Write the report page for tidy `rows` (evaluation/study.py) to `path`, atomically. `skipped`:
    (run, checkpoint, protocol, seed, reason) of the protocol runs that did not fit or stopped."""
    from ..files import atomic_write

    summary = summarize(rows)
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p class=meta>{len(rows)} results, {len({(r['run'], r['checkpoint']) for r in rows})} encoder(s), "
             f"protocols {html.escape(', '.join(sorted({r['protocol'] for r in rows})))}; written "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. Values are mean &plusmn; std over seeds "
             f"where a protocol depends on the seed.</p>"]
    parts += [f"<p class=note>{html.escape(n)}</p>" for n in notes]
    figures = []
    for caption, figure in (("Accuracy against the labelled fraction", _fraction_plot(summary)),
                            ("Few-shot accuracy", _fewshot_plot(summary))):
        if figure:
            figures.append((caption, figure))
    figures += [("Robustness to corruptions", f) for f in _robustness_plots(summary)]
    figures += _labelfree_plots(summary)
    for name, (coords, labels, class_names) in (embeddings or {}).items():
        figures.append((f"Test embeddings, 2-D map: {html.escape(name)}", _embedding_plot(name, coords, labels, class_names)))
    if figures:
        parts.append("<h2>Plots</h2><div class=grid>")
        parts += [f"<figure><img alt='{c}' src='{f}'><figcaption>{c}</figcaption></figure>" for c, f in figures]
        parts.append("</div>")
    parts.append("<h2>Results by protocol</h2>")
    parts += _tables(summary)
    if skipped:
        parts.append(_skipped_table(skipped))
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:0.5em 0 1.5em}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}th:first-child{text-align:left}"
             ".grid{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0;max-width:640px}img{max-width:100%}"
             "figcaption{font-size:12px;color:#444}.meta,.note{color:#555;font-size:13px}td.why{text-align:left}")
    script = ("window.addEventListener('load',function(){var im=document.images,ok=0;for(var i=0;i<im.length;i++)"
              "{if(im[i].complete&&im[i].naturalWidth>0)ok++;}document.body.setAttribute('data-rendered',ok+'/'+im.length);"
              "document.body.setAttribute('data-tables',document.getElementsByTagName('table').length);});")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
            f"<script>{script}</script></head><body>{''.join(parts)}</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
