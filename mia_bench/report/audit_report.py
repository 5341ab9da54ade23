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


DAGGER_NOTE = "† underpowered: fewer than 10/x non-member scores at FPR x"
GENERATORS = ("mia-bench audit-release", "mia-bench report")  # the marker of a report this code wrote


def underpowered(metrics: dict) -> set[str]:
    """The metric keys measured on fewer than 10/x non-members (a list in pooled / audit records, a per-metric
    flag in protocol v1 records), the runner's rule."""
    flagged = metrics.get("underpowered")
    if isinstance(flagged, list):
        return set(flagged)
    return {k for k, m in metrics.items() if isinstance(m, dict) and m.get("detail", {}).get("underpowered")}


def _fmt(m: dict | None, flag: bool = False) -> str:
    if not m:
        return "-"
    ci = m.get("ci")
    return f"{m['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "") + ("†" if flag else "")


def _metric(metrics: dict, key: str) -> str:
    return _fmt(metrics.get(key), key in underpowered(metrics))


def verdict_lines(record: Any) -> list[str]:
    lines = []
    for level, pick in record.worst_case.items():
        m = pick["metrics"]
        lines.append(f"{level}: {pick['attack']}: TPR@1%FPR {_metric(m, 'tpr@1%fpr')} (chance 0.010), "
                     f"TPR@0.1%FPR {_metric(m, 'tpr@0.1%fpr')} (chance 0.001), AUC {_metric(m, 'auc')} (chance 0.5)")
    return lines


def meaning(record: Any) -> str:
    worst = max((p["metrics"]["tpr@1%fpr"]["value"] for p in record.worst_case.values()), default=0.0)
    if worst >= 0.1:
        return (f"An attacker who accepts 1 false alarm in 100 identifies {worst:.0%} of the training records: "
                "this release leaks who was in the training data.")
    return (f"At 1 false alarm in 100, the strongest attack identifies {worst:.1%} of the training records "
            "(chance is 1%): no strong leak was found by these attacks.")


def write(folder: Path, *, record: Any, raw: dict[str, np.ndarray], data: Any, samples: np.ndarray | None) -> tuple[Path, Path]:
    """The external audit's report (generator: mia-bench audit-release)."""
    is_member = np.r_[np.ones(len(data.train), bool), np.zeros(len(data.holdout), bool)]
    strongest = record.worst_case[list(record.worst_case)[-1]]["attack"]
    rows = exposed(data, samples, raw[f"score/{strongest}"])
    d = record.diagnostics
    info = [f"Intervals: {d['intervals']}.", f"Encoding: {d['encoding']}.", f"Reference data: {d['reference']}."]
    info += [f"Note: {n}" for n in d["notes"]]
    gates = [f"{g['gate']}: {g['attack']} ({g['access']}) {g['observed']:.3f}" for g in d["gates"]]
    table = None if data.kind == "image" else [(i, s, table_row(data, rec), None if near is None else
                                                table_row(data, near)) for i, s, rec, near in rows]
    return render(folder, record=record, raw=raw, is_member=is_member, info=info, gates=gates,
                  skipped=d["skipped_attacks"], image_rows=rows if data.kind == "image" else None, table_rows=table,
                  generator=GENERATORS[0])


def render(folder: Path, *, record: Any, raw: dict[str, np.ndarray], is_member: np.ndarray, info: list[str],
           gates: list[str], skipped: dict[str, str], image_rows: list | None, table_rows: list | None,
           generator: str, title: str | None = None) -> tuple[Path, Path]:
    """report.md and report.html in `folder`: verdict, notes, attacks (with † for underpowered metrics), ROC,
    score histograms of the strongest attack, most exposed records. raw: {score/<attack>: flat scores}
    aligned with is_member."""
    strongest = record.worst_case[list(record.worst_case)[-1]]["attack"]
    figs = {"roc": roc_png(raw, is_member), "hist": hist_png(raw[f"score/{strongest}"], is_member, strongest)}
    if image_rows:
        figs["exposed"] = exposed_png(image_rows)
    head = [f"# Membership-inference {'audit' if title is None else 'report'}: {title or record.defense}", "",
            "## Verdict", "", meaning(record), ""]
    head += [f"- {line}" for line in verdict_lines(record)] + [""] + info
    if gates:
        head += ["", "## Privacy gate: FAILED"] + [f"- {g}" for g in gates]
    cols = ("auc", "tpr@1%fpr", "tpr@0.1%fpr")
    table = ["", "## Attacks", "", "| attack | access | AUC | TPR@1%FPR | TPR@0.1%FPR |", "|---|---|---|---|---|"]
    table += [f"| {n} | {a['access']} | " + " | ".join(_metric(a["metrics"], c) for c in cols) + " |"
              for n, a in record.attacks.items()]
    flagged = any(c in underpowered(a["metrics"]) for a in record.attacks.values() for c in cols)
    table += ["", DAGGER_NOTE] if flagged else []
    table += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items())] if skipped else []
    tab_rows = []
    if table_rows:
        tab_rows = ["", "## Most exposed training records (record, then its nearest released sample)", ""]
        tab_rows += [f"- train #{i} score {s:.3g}: {rec}" + ("" if near is None else f" | nearest: {near}")
                     for i, s, rec, near in table_rows]
    md_text = "\n".join([f"<!-- written by {generator} -->", *head, *table, *tab_rows, "", "Figures: report.html."])
    atomic_write_text(folder / "report.md", md_text + "\n")
    body = "".join(f"<p>{html.escape(line)}</p>" if not line.startswith("#") else
                   f"<h{line.count('#')}>{html.escape(line.lstrip('# '))}</h{line.count('#')}>"
                   for line in (head + table + tab_rows) if line and not line.startswith("|"))
    rows_html = "".join(f"<tr><td>{html.escape(n)}</td><td>{a['access']}</td>"
                        + "".join(f"<td>{_metric(a['metrics'], c)}</td>" for c in cols) + "</tr>"
                        for n, a in record.attacks.items())
    imgs = "".join(f'<img alt="{k}" src="data:image/png;base64,{base64.b64encode(v).decode()}">' for k, v in figs.items())
    page = (f"<!doctype html><html><head><meta charset='utf-8'><meta name='generator' content='{generator}'>"
            "<title>membership-inference report</title><style>body{font-family:sans-serif;"
            "max-width:1100px;margin:2em auto}td,th{border:1px solid #bbb;padding:3px 8px}table{border-collapse:collapse}"
            "img{max-width:100%;display:block;margin:1em 0}</style></head><body>" + body
            + "<table><tr><th>attack</th><th>access</th><th>AUC</th><th>TPR@1%FPR</th><th>TPR@0.1%FPR</th></tr>"
            + rows_html + "</table>" + imgs + "</body></html>")
    atomic_write_text(folder / "report.html", page)
    return folder / "report.md", folder / "report.html"
