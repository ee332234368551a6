"""The report's pictures, drawn with matplotlib's object API (`Figure` on the Agg canvas, never pyplot,
as matplotlib advises for programs that are not interactive), each saved as a PNG.

Every function takes plain data (what report.py read from metrics.jsonl, probes.jsonl and the check
results) and a path, and returns the path, or None when there is nothing to draw. matplotlib is the
optional extra `nanostack[plots]`; `available()` says whether it is installed.
"""
import math

LAYER_LIMIT = 12          # lines (or panels) per figure: the rest would be unreadable
PNG_META = {"Software": None}  # no tool name or address inside the PNGs


def available() -> bool:
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def new_figure(width=8.0, height=4.0, rows=1, cols=1):
    from matplotlib.figure import Figure  # noqa: PLC0415  (matplotlib is optional)

    fig = Figure(figsize=(width, height), dpi=90, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def save(fig, path):
    fig.savefig(path, format="png", metadata=PNG_META)
    return path


def ema(values, beta=0.9):
    out, average = [], None
    for v in values:
        average = v if average is None else beta * average + (1 - beta) * v
        out.append(average)
    return out


def loss_plot(metrics: list, baselines: dict, path):
    train = [(r["step"], r["loss"]) for r in metrics if r.get("kind") == "train" and finite(r.get("loss"))]
    evals = [(r["step"], r["val_loss"]) for r in metrics if r.get("kind") == "eval" and finite(r.get("val_loss"))]
    if not train and not evals:
        return None
    fig, ax = new_figure()
    ax = ax[0][0]
    if train:
        steps, losses = zip(*train)
        ax.plot(steps, losses, color="#9ab", lw=0.8, label="train")
        ax.plot(steps, ema(losses), color="#258", lw=1.5, label="train (EMA 0.9)")
    if evals:
        steps, losses = zip(*evals)
        ax.plot(steps, losses, "o-", color="#c50", lw=1.5, ms=3, label="val")
    for key, label, color in (("ln_v", "ln V (uniform)", "#888"), ("unigram_ce", "unigram", "#a6a"),
                              ("bigram_ce", "bigram", "#6a6")):
        if baselines.get(key):
            ax.axhline(baselines[key], ls="--", lw=1, color=color, label=f"{label} {baselines[key]:.3f}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.legend(fontsize=8)
    ax.set_title("loss")
    return save(fig, path)


def lr_plot(metrics: list, path):
    points = [(r["step"], r["lr"]) for r in metrics if r.get("kind") == "train" and finite(r.get("lr"))]
    if not points:
        return None
    fig, ax = new_figure(height=3)
    ax = ax[0][0]
    ax.plot(*zip(*points), color="#258")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title("learning rate")
    return save(fig, path)


def pick_layers(layers: list) -> list:
    """The layers worth a line: the nonlinearities if there are any (as the notebook plots its tanh layers),
    else every layer; at most LAYER_LIMIT, spread over the depth."""
    nonlinear = [layer for layer in layers if layer["kind"] in ("tanh", "sigmoid", "relu", "relu2", "gelu", "silu")]
    chosen = nonlinear or layers
    if len(chosen) > LAYER_LIMIT:
        step = len(chosen) / LAYER_LIMIT
        chosen = [chosen[int(i * step)] for i in range(LAYER_LIMIT)]
    return chosen


def centers(stats: dict, bins: int):
    top = stats.get("absmax") or 1.0
    return [top * (2 * (i + 0.5) / bins - 1) for i in range(bins)]


def histograms_plot(first: dict, last: dict, what: str, path):
    """One panel per probe (init, last), one line per layer: the distribution of activations or gradients."""
    panels = [(f"step {r['step']}", r) for r in (first, last) if r is not None]
    if not panels:
        return None
    fig, axes = new_figure(width=11, height=4, cols=len(panels))
    drawn = False
    for ax, (title, record) in zip(axes[0], panels):
        for layer in pick_layers(record["layers"]):
            stats = layer.get(what)
            if not stats or not stats.get("hist"):
                continue
            label = f"{layer['name']} ({layer['kind']}) std {stats['std']:.3g}"
            if stats.get("saturated") is not None:
                label += f", saturated {stats['saturated']:.1%}"
            ax.plot(centers(stats, len(stats["hist"])), stats["hist"], lw=1, label=label)
            drawn = True
        ax.set_title(f"{'activation' if what == 'act' else 'gradient'} distribution, {title}")
        ax.legend(fontsize=6)
    return save(fig, path) if drawn else None


def weight_grad_plot(first: dict, last: dict, path):
    panels = [(f"step {r['step']}", r) for r in (first, last) if r is not None]
    if not panels:
        return None
    fig, axes = new_figure(width=11, height=4, cols=len(panels))
    drawn = False
    for ax, (title, record) in zip(axes[0], panels):
        weights = [w for w in record["weights"] if w.get("grad_hist")]
        if len(weights) > LAYER_LIMIT:
            step = len(weights) / LAYER_LIMIT
            weights = [weights[int(i * step)] for i in range(LAYER_LIMIT)]
        for w in weights:
            ratio = w["grad_std"] / w["std"] if w.get("std") else float("nan")
            stats = {"absmax": w.get("grad_absmax")}
            ax.plot(centers(stats, len(w["grad_hist"])), w["grad_hist"], lw=1,
                    label=f"{w['name']} {tuple(w['shape'])} grad:data {ratio:.2e}")
            drawn = True
        ax.set_title(f"weight gradient distribution, {title}")
        ax.legend(fontsize=6)
    return save(fig, path) if drawn else None


def rebinned(records: list, name: str, what: str, bins: int = 64):
    """(steps, top, grid): one row per probe of a layer's histogram on a common range [-top, top]."""
    rows, steps = [], []
    found = [(r["step"], next((layer[what] for layer in r["layers"] if layer["name"] == name and layer.get(what)), None))
             for r in records]
    found = [(s, h) for s, h in found if h and h.get("hist")]
    if not found:
        return None
    top = max(h.get("absmax") or 0.0 for _, h in found) or 1.0
    for s, h in found:
        row = [0.0] * bins
        for c, count in zip(centers(h, len(h["hist"])), h["hist"]):
            row[min(bins - 1, max(0, int((c / top + 1) / 2 * bins)))] += count
        rows.append(row)
        steps.append(s)
    return steps, top, rows


def hist_time_plot(records: list, what: str, path):
    """A step x value heatmap of log counts per layer (TensorBoard's histogram dashboard, fastai's
    'colorful dimension')."""
    if len(records) < 2:
        return None
    layers = pick_layers(records[-1]["layers"])
    panels = [(layer["name"], rebinned(records, layer["name"], what)) for layer in layers]
    panels = [(n, p) for n, p in panels if p]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = new_figure(width=4 * cols, height=2.6 * rows, rows=rows, cols=cols)
    for i, (name, (steps, top, grid)) in enumerate(panels):
        ax = axes[i // cols][i % cols]
        image = [[math.log1p(c) for c in row] for row in grid]
        ax.imshow(list(map(list, zip(*image))), aspect="auto", origin="lower", cmap="viridis",
                  extent=(steps[0], steps[-1], -top, top))
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.tick_params(labelsize=6)
    for j in range(len(panels), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(f"{'activations' if what == 'act' else 'gradients'} over training (log count)", fontsize=9)
    return save(fig, path)


def update_ratio_plot(per_weight: dict, band, path):
    """log10 std(update)/std(weight) per weight over the steps, the -3 reference and the check's band."""
    lines = {name: [(s, u) for s, u in points if u is not None] for name, points in per_weight.items()}
    lines = {k: v for k, v in lines.items() if v}
    if not lines:
        return None
    fig, ax = new_figure()
    ax = ax[0][0]
    for name, points in list(lines.items())[:2 * LAYER_LIMIT]:
        ax.plot(*zip(*points), lw=1, label=name)
    if band:
        ax.axhspan(band[0], band[1], color="#8c8", alpha=0.15, label=f"check band {band[0]:g} .. {band[1]:g}")
    ax.axhline(-3, color="k", ls="--", lw=1, label="-3 (about 1e-3 per step)")
    ax.set_xlabel("step")
    ax.set_ylabel("log10 update / data")
    ax.set_title("update-to-data ratio")
    ax.legend(fontsize=6, ncol=2)
    return save(fig, path)


def lr_find_plot(data: dict, path):
    if not data or not data.get("lrs"):
        return None
    fig, ax = new_figure(height=3.5)
    ax = ax[0][0]
    ax.plot(data["lrs"], data["losses"], color="#258")
    ax.set_xscale("log")
    if data.get("lr_at_min"):
        ax.axvline(data["lr_at_min"], color="#c50", ls=":", label=f"minimum {data['lr_at_min']:.3g}")
    if data.get("suggestion"):
        ax.axvline(data["suggestion"], color="#080", ls="--", label=f"suggestion {data['suggestion']:.3g}")
    if data.get("lr"):
        ax.axvline(data["lr"], color="k", lw=1, label=f"the run's lr {data['lr']:.3g}")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed loss")
    ax.set_title("learning-rate range test")
    ax.legend(fontsize=7)
    return save(fig, path)


def attention_plot(maps: list, tokens: list, path):
    """Every head's attention map on the fixed window (rows: layers, columns: heads)."""
    if not maps:
        return None
    layers = sorted({m["layer"] for m in maps})
    heads = max(m["head"] for m in maps) + 1
    fig, axes = new_figure(width=2.3 * heads, height=2.3 * len(layers), rows=len(layers), cols=heads)
    for m in maps:
        ax = axes[layers.index(m["layer"])][m["head"]]
        size = len(m["map"])
        grid = [row + [0.0] * (size - len(row)) for row in m["map"]]
        ax.imshow(grid, cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"layer {m['layer']} head {m['head']}", fontsize=7)
        labels = [t.replace("\n", "⏎") for t in tokens[:size]]
        if size <= 40:
            ax.set_xticks(range(size), labels, fontsize=4, rotation=90)
            ax.set_yticks(range(size), labels, fontsize=4)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("attention of every head on the fixed window (row: query, column: key)", fontsize=9)
    return save(fig, path)


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
