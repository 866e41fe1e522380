"""The model card the risk team reads: markdown for the Dagster UI and a PR-curve image.

Written next to the model (HOME/models/<family>/<version>/card.md and pr_curve.png) and put in
the training asset's metadata. The image is drawn with Pillow (already installed for the PDF
statements), small and dependency-free.
"""

from __future__ import annotations

import io

METRICS = ("pr_auc", "recall_at_1pct_fpr", "precision_at_100", "money_saved_minor")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return ", ".join(f"{code} {amount}" for code, amount in value.items()) or "-"
    return str(value)


def markdown(card: dict, champion: str | None = None, decision: str | None = None) -> str:
    window = card["window"]
    columns = [("challenger " + card["version"], card["metrics"])]
    columns += [(f"baseline {name}", m) for name, m in card.get("baseline_metrics", {}).items()]
    columns += [(f"champion {v} (same holdout)", m) for v, m in card.get("compared", {}).items()]
    lines = [f"# Fraud model {card['version']} ({card['model']}, {card['feature_set']})", ""]
    if decision:
        lines += [f"**Promotion:** {decision}", ""]
    lines += [f"Champion now: {champion or 'none'}", "",
              "| window | value |", "|---|---|",
              *[f"| {k} | {v} |" for k, v in window.items()],
              *[f"| {k} | {v} |" for k, v in card.get("fit", {}).items()], "",
              "| metric (holdout) | " + " | ".join(name for name, _ in columns) + " |",
              "|---|" + "---|" * len(columns),
              *[f"| {metric} | " + " | ".join(_fmt(m.get(metric, "-")) for _, m in columns) + " |"
                for metric in METRICS], "",
              f"Features ({len(card['features'])}): " + ", ".join(card["features"]), "",
              "Libraries: " + ", ".join(f"{k} {v}" for k, v in card.get("libraries", {}).items()),
              f"Artifact sha256: `{card.get('artifact_sha256', '')}`"]
    return "\n".join(lines) + "\n"


def plot_order(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(recall, precision) points along recall and, at one recall, from the highest precision
    down: the curve's own steps (ascending precision there drew a spike back up at recall 1)."""
    return sorted(points, key=lambda rp: (rp[0], -rp[1]))


def pr_curve_png(points: list[tuple[float, float]], title: str, size: int = 360) -> bytes:
    """A precision (y) against recall (x) line chart as PNG bytes."""
    from PIL import Image, ImageDraw

    margin = 40
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    inner = size - 2 * margin
    draw.rectangle([margin, margin, size - margin, size - margin], outline="black")
    for tick in (0.25, 0.5, 0.75):
        x = margin + tick * inner
        y = size - margin - tick * inner
        draw.line([x, margin, x, size - margin], fill=(225, 225, 225))
        draw.line([margin, y, size - margin, y], fill=(225, 225, 225))
    xy = [(margin + r * inner, size - margin - p * inner) for r, p in plot_order(points)]
    if len(xy) > 1:
        draw.line(xy, fill=(200, 30, 30), width=2)
    draw.text((margin, 12), title, fill="black")
    draw.text((size // 2 - 15, size - margin + 12), "recall", fill="black")
    draw.text((4, margin - 14), "precision", fill="black")
    draw.text((margin - 8, size - margin + 2), "0", fill="black")
    draw.text((size - margin - 4, size - margin + 2), "1", fill="black")
    draw.text((margin - 12, margin - 4), "1", fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
