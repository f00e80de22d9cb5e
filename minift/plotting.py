"""matplotlib helpers for the demo and the lessons: curves, schedules, computation graphs.

Everything draws with the non-interactive Agg backend into a file (or returns the Figure in notebooks).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

if matplotlib.get_backend().lower() not in ("module://matplotlib_inline.backend_inline", "agg"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _finish(fig, path):
    """Lay the figure out; save it to ``path`` (creating its folder) and close it when a path is given."""
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_curves(curves: dict, path=None, title="", xlabel="step", ylabel="loss", logy=False, smooth=0):
    """One line per entry of ``curves`` ({label: values}); saved to ``path`` when given. Returns the Figure.

    ``smooth`` > 1 also draws a moving average over that many points (raw values faint behind it).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, ys in curves.items():
        ys = [float(y) for y in ys]
        if smooth and smooth > 1 and len(ys) >= smooth:
            line = ax.plot(ys, alpha=0.25)[0]
            avg = [sum(ys[max(0, i - smooth + 1): i + 1]) / (i + 1 - max(0, i - smooth + 1)) for i in range(len(ys))]
            ax.plot(avg, color=line.get_color(), label=label)
        else:
            ax.plot(ys, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 1 or any(curves):
        ax.legend()
    return _finish(fig, path)


def plot_graph(root, path=None, title="computation graph"):
    """Draw the autograd graph that produced ``root``: tensors as boxes, ops as labels, leaves at the left."""
    from .autograd.engine import topological_order
    from .autograd.tensor import Tensor

    order = topological_order(root)
    depth = {}
    for t in order:  # parents come first: depth = 1 + deepest parent
        ps = [p for p in (t._node.parents if t._node else ()) if isinstance(p, Tensor) and id(p) in depth]
        depth[id(t)] = 1 + max((depth[id(p)] for p in ps), default=-1)
    columns = {}
    for t in order:
        columns.setdefault(depth[id(t)], []).append(t)
    pos = {id(t): (d, i - (len(ts) - 1) / 2) for d, ts in columns.items() for i, t in enumerate(ts)}
    fig, ax = plt.subplots(figsize=(1.8 * (len(columns) + 1), 1.2 * (max(len(c) for c in columns.values()) + 1)))
    for t in order:
        x, y = pos[id(t)]
        label = (t._node.fn.__name__ if t._node else "leaf") + f"\n{tuple(t.shape)}"
        ax.text(x, y, label, ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round", fc="#dbe9f6" if t._node is None else "#fde5c7"))
        for p in (t._node.parents if t._node else ()):
            if isinstance(p, Tensor) and id(p) in pos:
                px, py = pos[id(p)]
                ax.annotate("", xy=(x - 0.3, y), xytext=(px + 0.3, py), arrowprops=dict(arrowstyle="->", color="gray"))
    ax.set_xlim(-0.7, len(columns) - 0.3)
    ys = [p[1] for p in pos.values()]
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.axis("off")
    ax.set_title(title)
    return _finish(fig, path)


def plot_accuracy_matrix(R, tasks, path=None, title="accuracy after each task"):
    """Heatmap of the continual-learning accuracy matrix: row i = after training task i, column j = task j."""
    import numpy as np

    R = np.asarray(R, dtype=float)
    fig, ax = plt.subplots(figsize=(1.3 * len(tasks) + 2.2, 1.1 * len(tasks) + 1.4))
    image = ax.imshow(R, vmin=min(0.5, R.min()), vmax=1.0, cmap="viridis")
    for i in range(R.shape[0]):
        for j in range(R.shape[1]):
            ax.text(j, i, f"{R[i, j]:.2f}", ha="center", va="center", color="white" if R[i, j] < 0.8 else "black")
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    ax.set_yticks(range(len(tasks)), [f"after {t}" for t in tasks])
    ax.set_xlabel("evaluated on")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _finish(fig, path)


def plot_forgetting(results: dict, tasks, path=None, title="accuracy on the first task as training goes on"):
    """One line per method ({method: R}): the accuracy on each task's column, task by task, for the first task."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for method, R in results.items():
        R = np.asarray(R, dtype=float)
        ax.plot(range(1, len(R) + 1), R[:, 0], "o-", label=method)
    ax.set_xticks(range(1, len(tasks) + 1), [f"after {t}" for t in tasks], rotation=20)
    ax.set_ylabel(f"accuracy on {tasks[0]}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(fig, path)
