"""`make bench-judge`: judged edits per second through the judge service against a loopback upstream.

The upstream is the fake OpenAI-compatible server (benchmarks/fake_upstream.py) in its own
process: every answer takes a fixed 50 ms and at most 16 requests run at once (like a vLLM server's
max-num-seqs), so no judge can exceed 16 / 0.05 s = 320 judged edits per second. The judge service
(openai backend, its own process) is driven by 1, 8 and 32 concurrent JudgeClient callers, each
request one group of 8 distinct edits under the `edit` rubric (the answer cache is off, so every
edit reaches the upstream). Side by side in the same run, the same service with
MLLM_JUDGE_OPENAI_MAX_CONCURRENCY at its default 24 (a few requests queued upstream, so a freed
slot never waits for the next request to arrive), at exactly 16, and at 1 (one pair at a time per
replica, as the reference does).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.fake_upstream import UPSTREAM
from benchmarks.report import machine_description, markdown_table, write_section
from motionnft.contracts.client import JudgeClient
from motionnft.contracts.images import encode_image
from motionnft.contracts.judge import JudgeGroup, JudgeScoreRequest
from motionnft.progress import StepProgress
from motionnft.stack import MLLM_JUDGE, LocalStack

EDITS_PER_REQUEST = 8
LATENCY_S = 0.05
UPSTREAM_SLOTS = 16


def make_requests(count: int, size: int = 64, seed: int = 0) -> list[JudgeScoreRequest]:
    """`count` requests of one group each: a source and 8 distinct edits (random textures)."""
    rng = np.random.default_rng(seed)

    def image() -> str:
        return encode_image(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))

    return [
        JudgeScoreRequest(
            groups=[
                JudgeGroup(
                    instruction=f"Make subject {i} raise its left arm",
                    source=image(),
                    edits=[image() for _ in range(EDITS_PER_REQUEST)],
                )
            ]
        )
        for i in range(count)
    ]


async def drive(url: str, requests: list[JudgeScoreRequest], clients: int) -> tuple[float, list[float]]:
    """Send `requests` with `clients` concurrent callers; (seconds, per-request latencies)."""
    async with JudgeClient(url, timeout_s=120, deadline_s=300) as client:
        await client.wait_ready(timeout_s=60)
        await client.score(requests[0])  # warm-up: connections, first upstream call
        queue = list(requests[1:])
        latencies: list[float] = []

        async def caller() -> None:
            while queue:
                request = queue.pop()
                started = time.perf_counter()
                response = await client.score(request)
                if any(not s.ok for g in response.groups for e in g.scores for s in e.values()):
                    raise RuntimeError("an edit came back without a score")
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(clients)))
        return time.perf_counter() - started, latencies


def measure(
    upstream_url: str, concurrency: int, levels: list[int], progress: StepProgress
) -> dict[int, tuple[float, list[float]]]:
    """Start one judge service with this upstream concurrency and drive it at each client level.

    `progress` advances once per level, with that level's judged edits per second.
    """
    judge = MLLM_JUDGE.with_env({
        "MLLM_JUDGE_BACKEND": "openai", "MLLM_JUDGE_LOG_LEVEL": "warning",
        "MLLM_JUDGE_OPENAI_BASE_URL": upstream_url, "MLLM_JUDGE_OPENAI_MODEL": "fake/judge-vl",
        "MLLM_JUDGE_OPENAI_MAX_CONCURRENCY": str(concurrency), "MLLM_JUDGE_CACHE_MB": "0",
    })  # fmt: skip
    results = {}
    with LocalStack([judge], stop_timeout_s=60) as stack:
        for clients in levels:
            progress.stage(f"{concurrency} in flight, {clients} clients")
            count = 1 + max(8, 4 * clients) if concurrency > 1 else 1 + max(2, clients)
            results[clients] = asyncio.run(drive(stack.url(judge.name), make_requests(count, seed=clients), clients))
            seconds, latencies = results[clients]
            progress.advance({"edits_per_s": EDITS_PER_REQUEST * len(latencies) / seconds})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    limit = UPSTREAM_SLOTS / LATENCY_S
    upstream = replace(UPSTREAM, args=("--latency-s", str(LATENCY_S), "--max-concurrency", str(UPSTREAM_SLOTS)))
    rows = []
    modes = (
        ("this service, 24 in flight (default)", 24),
        ("this service, 16 in flight", UPSTREAM_SLOTS),
        ("one pair at a time (reference)", 1),
    )
    progress = StepProgress("bench-judge", total=len(modes) * len(args.clients))
    with LocalStack([upstream]) as stack, progress:
        url = stack.url(upstream.name) + "/v1"
        for label, concurrency in modes:
            for clients, (seconds, latencies) in measure(url, concurrency, args.clients, progress).items():
                rate = EDITS_PER_REQUEST * len(latencies) / seconds
                p50, p99 = np.percentile(latencies, [50, 99]) * 1000
                rows.append([label, str(clients), f"{rate:.0f}", f"{rate / limit:.0%}", f"{p50:.0f}", f"{p99:.0f}"])
                print(rows[-1], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    header = ["judge", "clients", "judged edits/s", "of upstream limit", "p50 ms/request", "p99 ms/request"]
    body = (
        "## MLLM judge throughput (bench-judge)\n\n"
        f"Machine: {machine_description('cpu')}. Commit {commit or 'uncommitted'}, {time.strftime('%Y-%m-%d')}.\n"
        "Command: `make bench-judge`. Upstream: the fake OpenAI-compatible server in its own process, "
        f"{LATENCY_S * 1000:.0f} ms per answer, {UPSTREAM_SLOTS} at once: limit {limit:.0f} judged edits/s. "
        f"Each request: one group of {EDITS_PER_REQUEST} distinct 64x64 edits, rubric `edit`, answer cache off; "
        "service, upstream and clients share the machine.\n\n" + markdown_table(header, rows)
    )
    write_section(args.out, "bench-judge", body)


if __name__ == "__main__":
    main()
