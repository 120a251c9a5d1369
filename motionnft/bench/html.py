"""The offline HTML page of a MotionEdit-Bench result: `OUT/index.html` plus the PNGs in `OUT/assets/`.

The page shows the paper's Table 1 (Overall, Fidelity, Preservation, Coherence on 0-5, MAS on 0-100,
Win Rate in percent, each with its bootstrap 95% interval), the per-category table, and per model every
item worst first: instruction, input, target, the edit, optionally its flow pictures, its scores or why
there are none. No network, fonts or JavaScript; images by relative path, so the folder can move.

Images are uint8 RGB (H, W, 3); thumbnails are at most THUMB_SIDE pixels on the long side, written once
(input and target per item, edit and flows per item and model) and loaded lazily, their size in the tag
so the browser lays out 4,000 items without loading them. Instructions, ids, model names and errors are
untrusted: all of it goes through `html.escape`, and asset names are built from positions, never names.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from motionnft.bench.flow_pictures import THUMB_SIDE, FlowPictures
from motionnft.contracts.bench import METRICS, BenchResults, ItemScores
from motionnft.data.records import EditSample, RecordError, read_image
from motionnft.progress import StepProgress
from motionnft.resizing import shrink_to_fit

log = logging.getLogger(__name__)
_LABELS = {"overall": "Overall", "fidelity": "Fidelity", "preservation": "Preservation",
           "coherence": "Coherence", "mas": "MAS (0-100)", "win_rate": "Win Rate (%)"}  # fmt: skip
_STATUS_ORDER = {"failed": 0, "missing": 1, "scored": 2}  # a failed output is the worst, then none at all
_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td{white-space:nowrap}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right}
thead th,th[scope=row]{text-align:left}small,figcaption{color:#666}figcaption{font-size:12px}
.item{border-top:1px solid #ddd;padding:.5em 0}.row{display:flex;flex-wrap:wrap;gap:.5em;align-items:flex-end}
figure{margin:0}.bad{color:#b00020}.none{width:128px;min-height:64px;display:flex;align-items:center;
justify-content:center;text-align:center;overflow-wrap:anywhere;font-size:12px;background:#f4f4f4}"""


class Picture(NamedTuple):
    """A written asset: `src` relative to the page, and its size in pixels."""

    src: str
    width: int
    height: int


@dataclass(frozen=True)
class EditAssets:
    """What the page shows of one model's output on one item: pictures, or why there are none."""

    edit: Picture | None = None
    flow: Picture | None = None
    note: str | None = None  # "no output", an unreadable file, a flow picture that failed


class Triplet(NamedTuple):
    """What the page shows of one bench item: its text and its two pictures."""

    prompt: str
    category: str | None
    input: Picture
    target: Picture


def write_index_html(
    out: Path,
    results: BenchResults,
    samples: Mapping[str, EditSample],
    model_dirs: Mapping[str, Path],
    flows: FlowPictures | None = None,
    *,
    progress: bool = False,
) -> Path:
    """Write `out/index.html` and `out/assets/`; returns the page's path.

    Args:
        out: the page's folder (created; assets in it are overwritten).
        results: what `motionnft bench score` wrote.
        samples: bench item id -> its loaded triplet, read once per item (it may decode lazily); an item
            missing here, or whose images raise RecordError, is shown by id alone.
        model_dirs: model name -> folder of its outputs, `<item id>.png` (none for a model not here).
        flows: draws the flow pictures; None leaves them out (much faster: no flow is estimated).
        progress: show a progress bar (one step per item) on stderr.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # a bench of no items still gets its page
    models = list(dict.fromkeys([*results.models, *(s.model for s in results.items)]))
    scores = {(s.model, s.item): s for s in results.items}
    item_ids = list(dict.fromkeys(s.item for s in results.items))
    # Everything the sections need, gathered in one pass, so `samples` is read once per item.
    triplets: dict[str, Triplet] = {}
    edits: dict[tuple[str, str], EditAssets] = {}
    with StepProgress("html", total=len(item_ids), enabled=progress) as bar:
        for i, item in enumerate(item_ids):
            try:
                sample = samples.get(item)
            except RecordError as exc:  # an unreadable bench image: the item is still listed, by id
                log.warning("bench item %r: %s", item, exc)
                sample = None
            if sample is not None:
                triplets[item] = Triplet(
                    sample.prompt,
                    sample.category,
                    _save(out, f"items/{i:05d}_input.png", shrink_to_fit(sample.input_image, THUMB_SIDE)),
                    _save(out, f"items/{i:05d}_target.png", shrink_to_fit(sample.target_image, THUMB_SIDE)),
                )
            outputs = {model: _read_output(model_dirs, model, item, scores.get((model, item))) for model in models}
            edits.update(((model, item), e) for model, e in _write_edits(out, i, sample, outputs, flows).items())
            bar.advance()
    sections = [_model_section(j, model, results, triplets, edits) for j, model in enumerate(models)]
    page = out / "index.html"
    page.write_text(_page(results, models, sections, flows), encoding="utf-8")
    return page


def _write_edits(
    out: Path, i: int, sample: EditSample | None, outputs: Mapping[str, np.ndarray | str], flows: FlowPictures | None
) -> dict[str, EditAssets]:
    """Item `i`'s edit thumbnails and flow pictures, per model; `outputs` holds, in model order, each
    model's edit (uint8 (H, W, 3)) or why it has none."""
    folders = {model: f"m{j:02d}" for j, model in enumerate(outputs)}
    edits = {model: pixels for model, pixels in outputs.items() if not isinstance(pixels, str)}
    assets = {model: EditAssets(note=note) for model, note in outputs.items() if isinstance(note, str)}
    for model, pixels in edits.items():
        picture = _save(out, f"{folders[model]}/{i:05d}_edit.png", shrink_to_fit(pixels, THUMB_SIDE))
        assets[model] = EditAssets(edit=picture)
    if flows is None or sample is None or not edits:
        return assets
    try:
        pictures = flows.draw(sample, edits)
    except Exception as exc:  # a picture is an illustration: one odd image must not cost the whole page
        log.warning("flow pictures of item %r failed: %s", sample.id, exc)
        return {model: EditAssets(a.edit, note=a.note or f"flow picture failed: {exc}") for model, a in assets.items()}
    for model, drawn in pictures.items():
        flow = _save(out, f"{folders[model]}/{i:05d}_flow.png", np.asarray(drawn))
        assets[model] = EditAssets(assets[model].edit, flow)
    return assets


def _read_output(model_dirs: Mapping[str, Path], model: str, item: str, score: ItemScores | None) -> np.ndarray | str:
    """`model`'s edit of `item` as uint8 (H, W, 3), or why there is none, in words for the page."""
    folder = model_dirs.get(model)
    # An id like "../x" must not read outside the folder.
    path = None if folder is None or Path(item).name != item or item.startswith(".") else Path(folder) / f"{item}.png"
    if score is None or score.status == "missing" or path is None or not path.exists():
        return "no output"
    try:
        return read_image(path, what="unreadable output")
    except RecordError as exc:
        return str(exc)


def _save(out: Path, name: str, pixels: np.ndarray) -> Picture:
    """Write uint8 (H, W, 3) `pixels` as `out/assets/<name>` (PNG); `name` is built from positions only."""
    (out / "assets" / name).parent.mkdir(parents=True, exist_ok=True)
    # Level 3: a quarter of level 6's time (8 vs 32 ms a 256 px photo) for 5 % more bytes.
    Image.fromarray(np.ascontiguousarray(pixels)).save(out / "assets" / name, format="PNG", compress_level=3)
    return Picture(f"assets/{name}", int(pixels.shape[1]), int(pixels.shape[0]))


def _page(results: BenchResults, models: list[str], sections: list[str], flows: FlowPictures | None) -> str:
    """The whole document around the two tables and the per-model sections."""
    e, v = html.escape, results.versions
    title = e(f"MotionEdit-Bench: {results.bench}")
    drawn = (
        f"Flow pictures (edit flow | target flow | difference, one colour scale) were drawn for this page by "
        f"{e(flows.backend)} at up to {flows.max_side} px; the scores' flows came from {e(v.flow_backend)}."
        if flows is not None
        else "Flow pictures were not drawn for this page."
    )
    toc = " · ".join(f'<a href="#model-{j}">{e(model)}</a>' for j, model in enumerate(models))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><link rel="icon" href="data:,">
<style>{_CSS}</style></head><body>
<h1>{title}</h1>
<p>{results.items_total} items. Scores from the reward API (flow backend {e(v.flow_backend)}, reward
{e(v.reward_version)}) and the judge ({e(v.judge_backend)}, {e(v.judge_model)}); Win Rate from {e(v.win_rate)}.
{drawn}</p>
<h2>Summary</h2>
{_summary_table(results)}
<h2>Per category</h2>
{_category_table(results)}
<p>Items, worst first: {toc}</p>
{"".join(sections)}
</body></html>
"""


def _summary_table(results: BenchResults) -> str:
    """Table 1: one row per model, every metric with its 95% interval, then n / missing / failed."""
    head = "".join(f"<th>{_LABELS[m]}</th>" for m in METRICS)
    rows = []
    for j, (name, s) in enumerate(results.models.items()):
        cells = "".join(f"<td>{_number(getattr(s, m), s.ci95.get(m))}</td>" for m in METRICS)
        link = f'<a href="#model-{j}">{html.escape(name)}</a>'
        rows.append(f'<tr><th scope="row">{link}</th>{cells}<td>{s.n}</td><td>{s.missing}</td><td>{s.failed}</td></tr>')
    return (
        f'<table id="summary"><caption>Overall, Fidelity, Preservation, Coherence on 0-5; [95% interval]'
        f"</caption><thead><tr><th>Model</th>{head}<th>n</th><th>missing</th><th>failed</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _category_table(results: BenchResults) -> str:
    """Category rows x model columns: n (items scored), Overall and MAS of each model."""
    models = list(results.models.items())
    categories = sorted({c for _, s in models for c in s.per_category})
    top = "".join(f'<th colspan="3" scope="colgroup">{html.escape(name)}</th>' for name, _ in models)
    rows = []
    for category in categories:
        cells = []
        for _, s in models:
            c = s.per_category.get(category)
            cells.append(f"<td>{c.n}</td><td>{_number(c.overall)}</td><td>{_number(c.mas)}</td>" if c else
                         "<td>0</td><td>–</td><td>–</td>")  # fmt: skip
        rows.append(f'<tr><th scope="row">{html.escape(category)}</th>{"".join(cells)}</tr>')
    if not rows:
        rows.append(f'<tr><td colspan="{1 + 3 * len(models)}">no category was scored</td></tr>')
    sub = "<th>n</th><th>Overall</th><th>MAS</th>" * len(models)
    return (
        f'<table id="categories"><thead><tr><th rowspan="2">Category</th>{top}</tr><tr>{sub}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _worst_first(s: ItemScores) -> tuple[int, float, float, str]:
    """Sort key: unscored first (failed, then missing), then by Overall, then MAS, lowest first."""
    low = float("-inf")  # a scored item without a number sorts with the worst: it is suspicious
    return _STATUS_ORDER[s.status], low if s.overall is None else s.overall, low if s.mas is None else s.mas, s.item


def _model_section(
    j: int,
    model: str,
    results: BenchResults,
    triplets: Mapping[str, Triplet],
    edits: Mapping[tuple[str, str], EditAssets],
) -> str:
    """One model's items, worst first (`_worst_first`), each an `_item_block`."""
    ordered = sorted((s for s in results.items if s.model == model), key=_worst_first)
    blocks = [
        _item_block(rank, s, triplets.get(s.item), edits[(model, s.item)]) for rank, s in enumerate(ordered, start=1)
    ]
    return f'<section id="model-{j}"><h2>{html.escape(model)}: items, worst first</h2>{"".join(blocks)}</section>'


def _item_block(rank: int, s: ItemScores, triplet: Triplet | None, edit: EditAssets) -> str:
    """One item of one model: instruction, category, its verdict and the pictures side by side."""
    e = html.escape
    category = s.category or (triplet.category if triplet is not None else None)
    prompt = e(triplet.prompt) if triplet is not None else "<i>(not in the bench given to this page)</i>"
    if s.status == "scored":
        parts = [f"{_LABELS[m]} {_number(getattr(s, m))}" for m in METRICS]
        verdict = f"<p>{' · '.join(parts)} · motion reward {_number(s.motion_reward)}</p>"
    elif s.status == "failed":
        verdict = f'<p class="bad">failed: {e(s.error or "no reason given")}</p>'
    else:
        verdict = '<p class="bad">no output</p>'
    figures = [_figure("input", triplet.input), _figure("target", triplet.target)] if triplet is not None else []
    figures.append(_figure("edit", edit.edit, edit.note or "no output"))
    if edit.flow is not None:
        figures.append(_figure("edit flow | target flow | difference", edit.flow))
    elif edit.edit is not None and edit.note:  # the edit is there but its flow picture failed
        figures.append(_figure("flows", None, edit.note))
    return (
        f'<article class="item"><h3>{rank}. {e(s.item)} <small>{e(category or "no category")}</small></h3>'
        f'<p class="prompt">{prompt}</p>{verdict}<div class="row">{"".join(figures)}</div></article>'
    )


def _figure(caption: str, picture: Picture | None, note: str = "") -> str:
    """A captioned lazy thumbnail, or a grey box saying `note` where there is no picture."""
    if picture is None:
        return f'<figure><div class="none">{html.escape(note)}</div><figcaption>{caption}</figcaption></figure>'
    src = html.escape(picture.src)
    img = f'<img src="{src}" alt="{caption}" width="{picture.width}" height="{picture.height}" loading="lazy">'
    return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"


def _number(value: float | None, ci: tuple[float, float] | None = None) -> str:
    """`value` with two decimals (as report.md) and its interval `[low, high]` if given; a dash for None."""
    if value is None:
        return "–"
    return f"{value:.2f}" + ("" if ci is None else f" <small>[{ci[0]:.2f}, {ci[1]:.2f}]</small>")
