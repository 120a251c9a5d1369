"""`make bench-reward`: the reference scoring loop vs this project's scorer vs the service over HTTP.

Side by side in one run, same flow backend, groups of 1 source + 1 target + 8 edits, cold cache:
  (a) reference loop: each edit alone, decoded from bytes, target flow recomputed for every edit;
  (b) MotionScorer in-process: decoded from the same bytes, target flow once, edit flows batched;
  (c) the reward API end to end over loopback HTTP with 4 concurrent clients (RewardClient).
Each mode runs in its own process so peak memory (max RSS) is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.report import machine_description, markdown_table, write_section
from benchmarks.workload import EncodedGroup, make_groups
from motionnft.progress import StepProgress
from motionnft.stack import REWARD_API, LocalStack

MODES = ("a", "b", "c")  # reference loop, MotionScorer, service over HTTP (module docstring)


@dataclass(frozen=True)
class Setup:
    backend: str
    device: str
    flow_threads: int
    batch_size: int
    allow_random_weights: bool

    def estimator(self):
        from motionnft.flow import build_flow_estimator

        if self.backend == "dis":
            return build_flow_estimator("dis", self.device, num_threads=self.flow_threads)
        return build_flow_estimator(self.backend, self.device, allow_random_weights=self.allow_random_weights)

    def service_env(self) -> dict[str, str]:
        return {
            "REWARD_API_FLOW_BACKEND": self.backend,
            "REWARD_API_DEVICE": self.device,
            "REWARD_API_FLOW_THREADS": str(self.flow_threads),
            "REWARD_API_FLOW_BATCH_SIZE": str(self.batch_size),
            "REWARD_API_RAFT_ALLOW_RANDOM_WEIGHTS": str(self.allow_random_weights).lower(),
            "REWARD_API_MAX_BATCH": str(max(64, 4 * self.batch_size)),
            "REWARD_API_LOG_LEVEL": "warning",
        }


@dataclass(frozen=True)
class Result:
    seconds: float  # wall time of the measured groups
    latencies: list[float]  # seconds per group
    peak_rss_mb: float
    edits: int
    peak_gpu_mb: float = 0.0  # torch allocator peak, in-process modes only

    @property
    def edits_per_s(self) -> float:
        return self.edits / self.seconds


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_gpu_mb(device: str) -> float:
    if not device.startswith("cuda"):
        return 0.0
    import torch

    return torch.cuda.max_memory_allocated() / 2**20


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def run_reference(setup: Setup, groups: list[EncodedGroup]) -> Result:
    """(a): what the reference implementation does, one edit at a time."""
    from motionnft.contracts.images import decode_image_bytes
    from motionnft.motion import motion_alignment
    from motionnft.scoring import resize_like_reference

    estimator = setup.estimator()
    latencies = []
    for index, group in enumerate(groups):
        started = time.perf_counter()
        for edit_bytes in group.edits:
            edit = decode_image_bytes(edit_bytes).pixels
            source = resize_like_reference(decode_image_bytes(group.source).pixels, edit.shape[:2])
            target = resize_like_reference(decode_image_bytes(group.target).pixels, edit.shape[:2])
            flow_edit = estimator.estimate(source[None], edit[None])
            flow_target = estimator.estimate(source[None], target[None])
            motion_alignment(flow_edit, flow_target).reward.tolist()
        _sync(setup.device)
        if index > 0:  # the first group warms up
            latencies.append(time.perf_counter() - started)
    return Result(sum(latencies), latencies, _peak_rss_mb(), 8 * len(latencies), _peak_gpu_mb(setup.device))


def run_scorer(setup: Setup, groups: list[EncodedGroup]) -> Result:
    """(b): MotionScorer from encoded bytes, one group per call, cold cache (every group distinct)."""
    from motionnft.contracts.images import decode_image_bytes
    from motionnft.scoring import MotionScorer, ScoringGroup

    scorer = MotionScorer(setup.estimator(), batch_size=setup.batch_size)
    latencies = []
    for index, group in enumerate(groups):
        started = time.perf_counter()
        decoded = ScoringGroup(
            decode_image_bytes(group.source),
            decode_image_bytes(group.target),
            [decode_image_bytes(e) for e in group.edits],
        )
        scorer.score_groups([decoded])
        _sync(setup.device)
        if index > 0:
            latencies.append(time.perf_counter() - started)
    return Result(sum(latencies), latencies, _peak_rss_mb(), 8 * len(latencies), _peak_gpu_mb(setup.device))


def run_service(setup: Setup, groups: list[EncodedGroup], clients: int = 4) -> Result:
    """(c): the reward API as its own process, `clients` concurrent RewardClient callers."""
    service = REWARD_API.with_env(setup.service_env())
    with LocalStack([service], ready_timeout_s=120, stop_timeout_s=60) as stack:
        result = asyncio.run(_drive(stack.url(service.name), groups, clients))
        peak = _vm_hwm_mb(stack.process(service.name).pid)
    return Result(result.seconds, result.latencies, peak, result.edits)


async def _drive(url: str, groups: list[EncodedGroup], clients: int) -> Result:
    from motionnft.contracts.client import RewardClient
    from motionnft.contracts.motion import MotionGroup, MotionScoreRequest

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    requests = [
        MotionScoreRequest(
            groups=[MotionGroup(source=b64(g.source), target=b64(g.target), edits=[b64(e) for e in g.edits])]
        )
        for g in groups
    ]
    async with RewardClient(url, timeout_s=300, deadline_s=600) as client:
        await client.wait_ready(timeout_s=120)
        await client.score(requests[0])  # warm-up group, not measured
        queue = list(requests[1:])
        latencies: list[float] = []

        async def worker() -> None:
            while queue:
                request = queue.pop()
                started = time.perf_counter()
                await client.score(request)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        seconds = time.perf_counter() - started
    return Result(seconds, latencies, 0.0, 8 * len(latencies))


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _isolated(function, *args) -> Result:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def measure(setup: Setup, size: int, count: int, progress: StepProgress) -> dict[str, Result]:
    """Modes (a), (b), (c) at one image size; `progress` advances once per mode."""
    groups = make_groups(count + 1, size, seed=size)
    runs = {
        "a": lambda: _isolated(run_reference, setup, groups),
        "b": lambda: _isolated(run_scorer, setup, groups),
        "c": lambda: run_service(setup, groups),
    }
    results = {}
    for mode in MODES:
        progress.stage(f"{size}x{size} ({mode}) flow batch {setup.batch_size}")
        results[mode] = runs[mode]()
        progress.advance({"edits_per_s": results[mode].edits_per_s})
    return results


def table(setup: Setup, results: dict[int, dict[str, Result]]) -> str:
    rows = []
    for size, by_mode in results.items():
        b = by_mode["b"].edits_per_s
        names = {"a": "(a) reference loop", "b": "(b) MotionScorer", "c": "(c) service, 4 clients"}
        for mode, result in by_mode.items():
            ratio = {
                "a": "",
                "b": f"b/a = {b / by_mode['a'].edits_per_s:.2f}",
                "c": f"c/b = {result.edits_per_s / b:.2f}",
            }
            p50, p99 = np.percentile(result.latencies, [50, 99]) * 1000
            memory = f"{result.peak_rss_mb:.0f}" + (f" (GPU {result.peak_gpu_mb:.0f})" if result.peak_gpu_mb else "")
            rows.append([f"{size}x{size}", names[mode], f"{result.edits_per_s:.1f}", ratio[mode],
                         f"{p50:.0f}", f"{p99:.0f}", memory])  # fmt: skip
    header = ["size", "mode", "edits/s", "ratio", "p50 ms/group", "p99 ms/group", "peak RSS MB"]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--backend", default="dis")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--groups", type=int, default=12, help="Measured groups per size and mode.")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16], help="Flow pairs per estimator call.")
    parser.add_argument("--flow-threads", type=int, default=int(os.environ.get("REWARD_API_FLOW_THREADS", 2)))
    parser.add_argument("--allow-random-weights", action="store_true", help="RAFT speed runs without weights.")
    parser.add_argument("--section", default="bench-reward")
    args = parser.parse_args()

    sections = []
    total = len(args.batch_sizes) * len(args.sizes) * len(MODES)
    with StepProgress("bench-reward", total=total) as progress:
        for batch_size in args.batch_sizes:
            setup = Setup(args.backend, args.device, args.flow_threads, batch_size, args.allow_random_weights)
            results = {size: measure(setup, size, args.groups, progress) for size in args.sizes}
            title = f"### {args.backend} on {args.device}, flow batch {batch_size}, {args.flow_threads} flow threads"
            sections.append(f"{title}\n\n{table(setup, results)}")
            print(sections[-1], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    weights = (
        " RAFT with random weights (speed only; no pretrained weights on that machine)."
        if args.allow_random_weights
        else ""
    )
    body = (
        f"## Motion reward scoring ({args.section})\n\n"
        f"Machine: {machine_description(args.device)}. "
        f"Commit {commit or 'uncommitted'}, {time.strftime('%Y-%m-%d')}.{weights}\n"
        f"Command: `{' '.join([Path(sys.executable).name, '-m', 'benchmarks.bench_reward', *sys.argv[1:]])}`.\n"
        f"{args.groups} measured groups per row (8 edits each, every group distinct: cold target-flow cache); "
        "(a) and (b) start from encoded image bytes; (c) includes base64, JSON and HTTP on loopback, "
        "with the clients in the same machine.\n\n" + "\n\n".join(sections)
    )  # fmt: skip
    write_section(args.out, args.section, body)


if __name__ == "__main__":
    main()
