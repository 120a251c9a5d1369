"""`OUT/report.md`: the paper's Table 1 layout (one row per model) and the per-category table."""

from __future__ import annotations

from motionnft.bench.aggregate import NO_CATEGORY
from motionnft.contracts.bench import BenchResults, ModelSummary

COLUMNS = (("overall", "Overall", 2), ("fidelity", "Fidelity", 2), ("preservation", "Preservation", 2),
           ("coherence", "Coherence", 2), ("mas", "MAS", 2), ("win_rate", "Win Rate (%)", 2))  # fmt: skip


def cell(summary: ModelSummary, metric: str, digits: int, with_ci: bool = True) -> str:
    """'4.25 [4.10, 4.40]', or '–' where no item was scored."""
    value = getattr(summary, metric)
    if value is None:
        return "–"
    text = f"{value:.{digits}f}"
    if with_ci and metric in summary.ci95:
        low, high = summary.ci95[metric]
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_report(results: BenchResults) -> str:
    """The whole report as Markdown text."""
    v = results.versions
    judge = f"{v.judge_backend} ({v.judge_model})" + ("" if v.judge_is_language_model else ", not a language model")
    lines = [
        "# MotionEdit-Bench results",
        "",
        f"Bench: `{results.bench}`, {results.items_total} items. Flows: {v.flow_backend} ({v.reward_version}). "
        f"Judge: {judge}; rubrics {', '.join(sorted(v.rubrics.values()))}. Win Rate from {v.win_rate}.",
        "Generative metrics 0-5, MAS 0-100, Win Rate in percent; brackets: bootstrap 95% interval of the mean. "
        "Missing and failed items are left out of every mean.",
        "",
        "| Model | " + " | ".join(title for _, title, _ in COLUMNS) + " | n | missing | failed |",
        "|---|" + "---:|" * (len(COLUMNS) + 3),
    ]
    for name, summary in results.models.items():
        cells = [cell(summary, metric, digits) for metric, _, digits in COLUMNS]
        cells += [str(summary.n), str(summary.missing), str(summary.failed)]
        lines.append(f"| {_escape(name)} | " + " | ".join(cells) + " |")
    lines += ["", "## Per category (Overall / MAS, n)", ""]
    models = list(results.models)
    lines += ["| Category | " + " | ".join(_escape(m) for m in models) + " |", "|---|" + "---:|" * len(models)]
    categories = list(dict.fromkeys(c for s in results.models.values() for c in s.per_category))
    for category in sorted(categories, key=lambda c: (c == NO_CATEGORY, c)):
        row = []
        for model in models:
            part = results.models[model].per_category.get(category)
            if part is None:
                row.append("–")
                continue
            overall = "–" if part.overall is None else f"{part.overall:.2f}"
            mas = "–" if part.mas is None else f"{part.mas:.1f}"
            row.append(f"{overall} / {mas} ({part.n})")
        lines.append(f"| {_escape(category)} | " + " | ".join(row) + " |")
    if results.pairs:
        lines += ["", "## Paired differences (A - B, 95% interval)", "",
                  "| A - B | Overall | MAS | Win Rate |", "|---|---:|---:|---:|"]  # fmt: skip
        for pair, intervals in results.pairs.items():
            row = [f"[{intervals[m][0]:+.2f}, {intervals[m][1]:+.2f}]" if m in intervals else "–"
                   for m in ("overall", "mas", "win_rate")]  # fmt: skip
            lines.append(f"| {_escape(pair.replace('|', ' - '))} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
