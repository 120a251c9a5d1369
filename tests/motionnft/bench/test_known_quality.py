"""`bench score` end to end against the real services (started on loopback), on a synthetic bench whose
"models" have a quality known by construction: the target itself, half the motion, no motion, the
opposite motion, and the target of another item."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from motionnft.bench.known import KNOWN_MODELS, known_edits, write_known_models
from motionnft.bench.run import ScoreJob, ScoreRun, run_score
from motionnft.contracts.bench import BenchResults
from motionnft.data.synth import SynthPair, generate
from motionnft.data.synth_io import write_dataset
from motionnft.flow import build_flow_estimator
from motionnft.motion import motion_alignment_score

N, SIZE = 18, 64
ORDER = list(KNOWN_MODELS)


def known(pairs: list[SynthPair], name: str) -> list[np.ndarray]:
    return known_edits(pairs, name, 0, SIZE)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SynthPair], dict[str, Path]]:
    root = tmp_path_factory.mktemp("bench")
    pairs = generate(N, 0, SIZE)
    manifest = write_dataset(pairs, root / "bench", "bench.jsonl", progress=False)
    return manifest, pairs, write_known_models(pairs, root / "models", 0, SIZE)


@pytest.fixture(scope="module")
def scored(bench: tuple[Path, list[SynthPair], dict[str, Path]], tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[ScoreRun, ScoreRun, Path]:  # fmt: skip
    """Four models first, then all five into the same folder: the second run scores only `shuffled`."""
    manifest, _, models = bench
    out = tmp_path_factory.mktemp("scored")
    first = run_score(ScoreJob(manifest, {m: models[m] for m in ORDER[:4]}, out, draw_flows=False))
    second = run_score(ScoreJob(manifest, models, out, draw_flows=False))
    return first, second, out


def test_the_known_quality_models_rank_in_their_order_by_win_rate_overall_and_mas(
    scored: tuple[ScoreRun, ScoreRun, Path],
) -> None:
    results = scored[1].results
    summary = results.models
    assert list(summary) == ORDER and all(s.n == N and s.missing == s.failed == 0 for s in summary.values())
    win_rates = [summary[m].win_rate for m in ORDER]
    overall = [summary[m].overall for m in ORDER]
    assert win_rates == sorted(win_rates, reverse=True) and len(set(win_rates)) == len(ORDER), win_rates
    assert overall == sorted(overall, reverse=True) and len(set(overall)) == len(ORDER), overall
    mas = {m: summary[m].mas for m in ORDER}
    # MAS gates an edit that barely moves to exactly 0, the floor of the scale: no motion ranks last
    # there by definition, level with a perfectly reversed motion; the moving models order above it.
    assert mas["target"] == pytest.approx(100.0) and mas["none"] == 0.0
    assert mas["target"] > mas["half"] > max(mas["opposite"], mas["shuffled"]) > mas["none"], mas
    assert summary["target"].ci95["mas"][0] == pytest.approx(100.0)
    low, high = results.pairs["half|none"]["overall"]
    assert 0 < low <= summary["half"].overall - summary["none"].overall <= high


def test_each_number_matches_a_hand_computation(
    scored: tuple[ScoreRun, ScoreRun, Path], bench: tuple[Path, list[SynthPair], dict[str, Path]]
) -> None:
    results, (_, pairs, _) = scored[1].results, bench
    items = {(s.item, s.model): s for s in results.items}
    estimator = build_flow_estimator("dis", "cpu")
    for pair in pairs[:3]:
        edits = {name: known(pairs, name)[pairs.index(pair)] for name in ORDER}
        # The similarity judge rates 5 * SSIM(edit, target) on luminance under every rubric.
        for name, edit in edits.items():
            luma = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float64) / 255 for x in (edit, pair.target_image)]
            expected = 5 * min(max(structural_similarity(*luma, data_range=1.0), 0.0), 1.0)
            assert items[(pair.id, name)].overall == pytest.approx(expected, abs=1e-6)
        # MAS from flows estimated here with the service's default backend (DIS medium, same frames).
        flow_target = estimator.estimate(pair.input_image[None], pair.target_image[None])
        flow_half = estimator.estimate(pair.input_image[None], edits["half"][None])
        assert items[(pair.id, "half")].mas == pytest.approx(float(motion_alignment_score(flow_half, flow_target)[0]),
                                                             abs=1e-3)  # fmt: skip
        # Win Rate per item: the share of the other four beaten on Overall, ties 1/2.
        for name in ORDER:
            mine = items[(pair.id, name)].overall
            others = [items[(pair.id, o)].overall for o in ORDER if o != name]
            wins = sum(1.0 if mine > x else 0.5 if mine == x else 0.0 for x in others)
            assert items[(pair.id, name)].win_rate == pytest.approx(100 * wins / 4)
    for name in ORDER:  # every item has the same four comparisons: the pooled rate is the items' mean
        rates = [s.win_rate for s in results.items if s.model == name]
        assert results.models[name].win_rate == pytest.approx(float(np.mean(rates)))
        mas = [s.mas for s in results.items if s.model == name]
        assert results.models[name].mas == pytest.approx(float(np.mean(mas)))


def test_adding_a_model_scores_only_its_items_and_keeps_the_others_numbers(
    scored: tuple[ScoreRun, ScoreRun, Path],
) -> None:
    first, second, out = scored
    lines = (out / "cache" / "scores.jsonl").read_text().splitlines()
    assert len(lines) == 5 * N  # 4 N from the first run, N for `shuffled` only from the second
    for name in ORDER[:4]:
        a, b = first.results.models[name], second.results.models[name]
        assert (a.mas, a.overall, a.fidelity) == (b.mas, b.overall, b.fidelity)
    saved = BenchResults.model_validate_json((out / "results.json").read_text())
    assert saved == second.results and "| shuffled |" in (out / "report.md").read_text()


def test_missing_and_unreadable_outputs_are_counted_never_scored_zero(
    bench: tuple[Path, list[SynthPair], dict[str, Path]], tmp_path: Path
) -> None:
    manifest, pairs, models = bench
    partial = tmp_path / "partial"
    partial.mkdir()
    for pair in pairs[2:]:
        (partial / f"{pair.id}.png").write_bytes((models["target"] / f"{pair.id}.png").read_bytes())
    (partial / f"{pairs[1].id}.png").write_bytes(b"not an image")
    job = ScoreJob(manifest, {"partial": partial, "none": models["none"]}, tmp_path / "out", draw_flows=False)
    run = run_score(job)
    summary = run.results.models["partial"]
    assert (summary.n, summary.missing, summary.failed) == (N - 2, 1, 1)
    assert summary.mas == pytest.approx(100.0) and summary.overall == pytest.approx(5.0)
    failed = [s for s in run.results.items if s.model == "partial" and s.status == "failed"]
    assert len(failed) == 1 and "not an image" not in (failed[0].error or "") and failed[0].mas is None
    assert failed[0].error and pairs[1].id in failed[0].error
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["models"]["partial"]["missing"] == 1 and torch.isfinite(torch.tensor(data["models"]["partial"]["mas"]))
