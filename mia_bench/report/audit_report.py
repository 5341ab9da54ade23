"""report.md and a self-contained report.html (figures as base64 PNG, opens offline) of an external audit:
the verdict first (worst-case TPR at 1% and 0.1% FPR per access level, intervals, chance), the log-log
ROC of every attack, member / non-member score histograms of the strongest attack, and the 16 most
exposed training records beside their nearest released sample."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from mia_bench.io import atomic_write_text


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc_png(raw: dict[str, np.ndarray], is_member: np.ndarray) -> bytes:
    from sklearn.metrics import roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.2))
    floor = 1.0 / max(int((~is_member).sum()), 1)
    for key, s in raw.items():
        fpr, tpr, _ = roc_curve(is_member, s)
        ax.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), label=key.split("/", 1)[1], lw=1.2)
    ax.plot([floor, 1], [floor, 1], "k--", lw=0.8, label="chance")
    ax.set(xscale="log", yscale="log", xlabel="false positive rate", ylabel="true positive rate",
           title="ROC of every attack (log-log)")
    ax.legend(fontsize=7)
    return _png(fig)


def hist_png(scores: np.ndarray, is_member: np.ndarray, attack: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.histogram_bin_edges(scores, bins=40)
    ax.hist(scores[~is_member], bins=bins, alpha=0.6, label="non-members (hold-out)", density=True)
    ax.hist(scores[is_member], bins=bins, alpha=0.6, label="members (train)", density=True)
    ax.set(xlabel=f"{attack} score (higher = member)", ylabel="density", title=f"scores of {attack}")
    ax.legend(fontsize=7)
    return _png(fig)


def exposed(data: Any, samples: np.ndarray | None, scores: np.ndarray, n: int = 16) -> list[tuple[int, float, np.ndarray, np.ndarray | None]]:
    """The n training records with the highest scores: (row, score, record, nearest released sample)."""
    m = len(data.train)
    rows = np.argsort(-scores[:m], kind="stable")[:n]
    out = []
    for i in rows:
        near = None
        if samples is not None and len(samples):
            d = ((samples.reshape(len(samples), -1) - data.train[i].reshape(1, -1)) ** 2).sum(1)
            near = samples[int(np.argmin(d))]
        out.append((int(i), float(scores[i]), data.train[i], near))
    return out


def exposed_png(rows: list) -> bytes:
    plt = _plt()
    fig, axes = plt.subplots(4, 8, figsize=(8, 4.6), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for k, (i, s, rec, near) in enumerate(rows[:16]):
        a, b = axes[k // 4, 2 * (k % 4)], axes[k // 4, 2 * (k % 4) + 1]
        for ax, img in ((a, rec), (b, near)):
            if img is None:
                continue
            arr = (np.clip(img, -1, 1) + 1) / 2
            arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))
            ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        a.set_title(f"train #{i}\nscore {s:.3g}", fontsize=6, loc="left")
        b.set_title("nearest\nsample", fontsize=6, loc="left", color="0.4")
    fig.suptitle("the 16 most exposed training records (left) beside their nearest released sample", fontsize=8)
    return _png(fig)


def table_row(data: Any, rec: np.ndarray, width: int = 12) -> str:
    """A table record in the --train file's units (decoded), `column=value` when the file has a header."""
    dec = data.encoding.decode(np.asarray(rec).reshape(1, -1))
    if isinstance(dec, dict):
        cells = [f"{k}={_cell(v[0])}" for k, v in dec.items()]
    else:
        cells = [_cell(v) for v in dec.ravel()]
    return ", ".join(cells[:width]) + (", ..." if len(cells) > width else "")


def _cell(v: Any) -> str:
    return f"{float(v):.4g}" if isinstance(v, (float, np.floating)) else str(v)


def _fmt(m: dict) -> str:
    ci = m.get("ci")
    return f"{m['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def verdict_lines(record: Any) -> list[str]:
    lines = []
    for level, pick in record.worst_case.items():
        m = pick["metrics"]
        lines.append(f"{level}: {pick['attack']}: TPR@1%FPR {_fmt(m['tpr@1%fpr'])} (chance 0.010), "
                     f"TPR@0.1%FPR {_fmt(m['tpr@0.1%fpr'])} (chance 0.001), AUC {_fmt(m['auc'])} (chance 0.5)")
    return lines


def meaning(record: Any) -> str:
    worst = max((p["metrics"]["tpr@1%fpr"]["value"] for p in record.worst_case.values()), default=0.0)
    if worst >= 0.1:
        return (f"An attacker who accepts 1 false alarm in 100 identifies {worst:.0%} of the training records: "
                "this release leaks who was in the training data.")
    return (f"At 1 false alarm in 100, the strongest attack identifies {worst:.1%} of the training records "
            "(chance is 1%): no strong leak was found by these attacks.")


def write(folder: Path, *, record: Any, raw: dict[str, np.ndarray], data: Any, samples: np.ndarray | None) -> tuple[Path, Path]:
    is_member = np.r_[np.ones(len(data.train), bool), np.zeros(len(data.holdout), bool)]
    widest = list(record.worst_case)[-1]
    strongest = record.worst_case[widest]["attack"]
    rows = exposed(data, samples, raw[f"score/{strongest}"])
    figs = {"roc": roc_png(raw, is_member), "hist": hist_png(raw[f"score/{strongest}"], is_member, strongest)}
    if data.kind == "image":
        figs["exposed"] = exposed_png(rows)
    d = record.diagnostics
    head = [f"# Membership-inference audit: {record.defense}", "", "## Verdict", "", meaning(record), ""]
    head += [f"- {line}" for line in verdict_lines(record)]
    head += ["", f"Intervals: {d['intervals']}.", f"Encoding: {d['encoding']}.", f"Reference data: {d['reference']}."]
    head += [f"Note: {n}" for n in d["notes"]]
    if d["gates"]:
        head += ["", "## Privacy gate: FAILED"] + [f"- {g['gate']}: {g['attack']} ({g['access']}) {g['observed']:.3f}"
                                                  for g in d["gates"]]
    table = ["", "## Attacks", "", "| attack | access | AUC | TPR@1%FPR | TPR@0.1%FPR |", "|---|---|---|---|---|"]
    table += [f"| {n} | {a['access']} | {_fmt(a['metrics']['auc'])} | {_fmt(a['metrics']['tpr@1%fpr'])} | "
              f"{_fmt(a['metrics']['tpr@0.1%fpr'])} |" for n, a in record.attacks.items()]
    table += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in d["skipped_attacks"].items())]
    tab_rows = []
    if data.kind != "image":
        tab_rows = ["", "## Most exposed training records (record, then its nearest released sample)", ""]
        for i, s, rec, near in rows:
            tab_rows.append(f"- train #{i} score {s:.3g}: {table_row(data, rec)}"
                            + ("" if near is None else f" | nearest: {table_row(data, near)}"))
    md_text = "\n".join(head + table + tab_rows + ["", "Figures: report.html."]) + "\n"
    atomic_write_text(folder / "report.md", md_text)
    body = "".join(f"<p>{html.escape(line)}</p>" if not line.startswith("#") else
                   f"<h{line.count('#')}>{html.escape(line.lstrip('# '))}</h{line.count('#')}>"
                   for line in (head + table + tab_rows) if line and not line.startswith("|"))
    rows_html = "".join(f"<tr><td>{html.escape(n)}</td><td>{a['access']}</td><td>{_fmt(a['metrics']['auc'])}</td>"
                        f"<td>{_fmt(a['metrics']['tpr@1%fpr'])}</td><td>{_fmt(a['metrics']['tpr@0.1%fpr'])}</td></tr>"
                        for n, a in record.attacks.items())
    imgs = "".join(f'<img alt="{k}" src="data:image/png;base64,{base64.b64encode(v).decode()}">' for k, v in figs.items())
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>audit</title><style>body{font-family:sans-serif;"
            "max-width:1100px;margin:2em auto}td,th{border:1px solid #bbb;padding:3px 8px}table{border-collapse:collapse}"
            "img{max-width:100%;display:block;margin:1em 0}</style></head><body>" + body
            + "<table><tr><th>attack</th><th>access</th><th>AUC</th><th>TPR@1%FPR</th><th>TPR@0.1%FPR</th></tr>"
            + rows_html + "</table>" + imgs + "</body></html>")
    atomic_write_text(folder / "report.html", page)
    return folder / "report.md", folder / "report.html"
