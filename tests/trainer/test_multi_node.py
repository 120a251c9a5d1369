"""The training job on a real multi-node Ray cluster, run the way the RayJob runs it.

As the RayJob's cluster: a head (`ray start --head`, 127.0.0.2, no CPUs for actors), a rollout node
(`ray start --address ...`, 127.0.0.3, declaring `rollout`) and a learner node (127.0.0.4,
declaring `learner`), three raylets on this machine; both services as their own `python -m`
processes with the environment their Deployments give them (the bearer token included); the
trainer as the RayJob's entrypoint (`python -m trainer --config <the job's train.yaml>`,
`ray.address: auto`, `RAY_ADDRESS` set as KubeRay sets it). Asserted: each actor ran on the node
whose resource it asked for, the nodes and every connection of the cluster's processes stayed on
loopback, and killing the rollout node mid-run stops the run within a bound with one clear line and
a checkpoint that a second run, on a restarted node, resumes from and finishes.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from motionnft.data.synth import generate, split, write_dataset
from motionnft.stack import MLLM_JUDGE, REWARD_API, LocalStack
from tests.trainer.deployment import job_config, service_env
from tests.trainer.ray_nodes import RayNodes, cluster_env
from trainer.checkpoints import latest_checkpoint, load_checkpoint
from workers.policies.factory import TINY_CHECKPOINT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not TINY_CHECKPOINT.exists(), reason="run `motionnft pretrain-tiny` first"),
]
REPO = Path(__file__).resolve().parents[2]
HEAD_IP, ROLLOUT_IP, LEARNER_IP = "127.0.0.2", "127.0.0.3", "127.0.0.4"
EPOCHS = 40  # about 1 s each here: long enough to kill a node mid-run after the metrics check
RUN_TIMEOUT_S = 420.0  # each trainer run; a hang fails the test instead of stalling CI
TOKEN = "multi-node-test-token"  # what the motionnft-tokens Secret holds on a cluster
TOKENS = {"MOTIONNFT_REWARD_TOKEN": TOKEN, "MOTIONNFT_JUDGE_TOKEN": TOKEN}  # the RayJob's env from the Secret
STOP_BOUND_S = 90.0  # from the rollout node's death to the trainer's exit


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayNodes]:
    nodes = RayNodes(head_ip=HEAD_IP, node_env=TOKENS)  # as the RayJob sets them on every pod
    try:
        # As the RayJob: the head runs the driver only (no CPUs for actors), each group its role.
        nodes.start_head(num_cpus=0, resources={})
        nodes.add_node(ROLLOUT_IP, num_cpus=1, resources={"rollout": 1})
        nodes.add_node(LEARNER_IP, num_cpus=1, resources={"learner": 1})
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    specs = [
        REWARD_API.with_env(service_env("reward-api", TOKEN)),
        MLLM_JUDGE.with_env(service_env("mllm-judge", TOKEN)),
    ]
    with LocalStack(specs, log_dir=tmp_path_factory.mktemp("services"), cwd=REPO, ready_timeout_s=120) as stack:
        yield stack


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """What the job's data volume holds: a small synthetic MotionEdit train and eval set."""
    train_pairs, eval_pairs = split(generate(24, 5, 64), 0.25, 5)
    out = tmp_path_factory.mktemp("data")
    return write_dataset(train_pairs, out, "train.jsonl"), write_dataset(eval_pairs[:4], out, "eval.jsonl")


def start_trainer(
    cluster: RayNodes, services: LocalStack, data: tuple[Path, Path], config: Path, run_dir: Path, log: Path
) -> subprocess.Popen:
    """The RayJob's entrypoint, with the cluster's DNS names and volumes swapped for this machine's."""
    overrides = {
        "policy.pretrained": "tiny",  # the models volume: the committed checkpoint
        "data.train_path": data[0], "data.eval_path": data[1], "run.out_dir": run_dir, "run.epochs": EPOCHS,
        "run.checkpoint_every": 1, "run.eval_every": 100,
        "data.prompts_per_epoch": 2, "data.samples_per_prompt": 4, "policy.sampling_steps": 3,
        "optim.timesteps_per_sample": 2, "reward.reward_url": services.url("reward_api"),
        "reward.judge_url": services.url("mllm_judge"), "ray.placement_timeout_s": 120, "ray.call_timeout_s": 300,
    }  # fmt: skip
    command = [sys.executable, "-m", "trainer", "--config", str(config)]
    command += [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    tokens = {"MOTIONNFT_REWARD_TOKEN": TOKEN, "MOTIONNFT_JUDGE_TOKEN": TOKEN}  # the RayJob's env from the Secret
    env = {
        **cluster_env(),
        **tokens,
        "RAY_ADDRESS": cluster.address,
        "MOTIONNFT_PROGRESS": "plain",
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)  # fmt: skip


def wait_exit(process: subprocess.Popen, timeout_s: float, log: Path) -> int:
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"trainer still running after {timeout_s:g} s; log tail:\n{tail(log)}")


def wait_for_metric(cluster: RayNodes, name: str, timeout_s: float = 60.0) -> str:
    """The head's /metrics text once it holds `name` (Ray exports every few seconds)."""
    deadline, text = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"http://{cluster.head_ip}:{cluster.metrics_port}/metrics", timeout=5).text
        except httpx.TransportError:
            text = ""
        if name in text:
            return text
        time.sleep(1)
    pytest.fail(f"{name} not exported by the head within {timeout_s:g} s")


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def epochs_done(run_dir: Path) -> int:
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
        return 0
    return max((json.loads(line)["epoch"] for line in metrics.read_text().splitlines() if line.strip()), default=0)


def loopback_only(cluster: RayNodes) -> list[str]:
    """Connections of the cluster's processes whose either end is off loopback (should be none)."""
    bad = []
    for proc in cluster.processes():
        try:
            connections = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for conn in connections:
            ends = [conn.laddr, conn.raddr] if conn.raddr else []  # listening sockets bind wildcards
            bad += [f"{proc.pid}: {end.ip}:{end.port}" for end in ends if not _is_loopback(end.ip)]
    return bad


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None  # ::ffff:127.0.0.2
    return (mapped or address).is_loopback


def test_the_job_places_roles_by_resource_stops_cleanly_on_a_lost_node_and_resumes(
    cluster: RayNodes, services: LocalStack, data: tuple[Path, Path], tmp_path: Path
) -> None:
    started = time.monotonic()
    assert {n["ip"] for n in cluster.nodes()} == {HEAD_IP, ROLLOUT_IP, LEARNER_IP}
    config = job_config(tmp_path / "train.yaml")
    run_dir, first_log = tmp_path / "run", tmp_path / "trainer-1.log"

    # Run 1: kill the rollout node once the first epoch is done.
    trainer = start_trainer(cluster, services, data, config, run_dir, first_log)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while epochs_done(run_dir) < 1:
        assert trainer.poll() is None, f"trainer exited early:\n{tail(first_log)}"
        assert time.monotonic() < deadline, f"no epoch within {RUN_TIMEOUT_S:g} s:\n{tail(first_log)}"
        time.sleep(0.5)
    off_loopback = loopback_only(cluster)
    assert not off_loopback, off_loopback[:5]
    placement = {(p["role"], p["index"]): p for p in json.loads((run_dir / "placement.json").read_text())}
    assert placement[("learner", 0)]["node_ip"] == LEARNER_IP and placement[("learner", 0)]["resources"]["learner"] == 1
    assert placement[("rollout", 0)]["node_ip"] == ROLLOUT_IP and placement[("rollout", 0)]["resources"]["rollout"] == 1
    nodes = {n["id"]: n for n in cluster.nodes()}
    assert "rollout" in nodes[placement[("rollout", 0)]["node_id"]]["resources"]
    assert "learner" in nodes[placement[("learner", 0)]["node_id"]]["resources"]

    # The counters the PrometheusRule's dropped-groups alert reads, as the head's metrics agent exports them.
    exported = wait_for_metric(cluster, "ray_motionnft_groups_total")
    assert "ray_motionnft_groups_total" in exported

    assert trainer.poll() is None, f"the run ended before the rollout node could be stopped:\n{tail(first_log)}"
    assert cluster.stop_node(ROLLOUT_IP) > 0
    killed = time.monotonic()
    code = wait_exit(trainer, STOP_BOUND_S, first_log)
    stop_s = time.monotonic() - killed
    errors = [line for line in first_log.read_text().splitlines() if line.startswith("error: ")]
    assert code == 1, tail(first_log)
    assert len(errors) == 1 and "rollout" in errors[0] and "resume from checkpoint-" in errors[0], tail(first_log)
    stopped_after = epochs_done(run_dir)
    saved = latest_checkpoint(run_dir)
    assert saved is not None and load_checkpoint(saved)[0].epoch == stopped_after < EPOCHS

    # Run 2: a restarted rollout node; the same entrypoint resumes and finishes.
    cluster.add_node(ROLLOUT_IP, num_cpus=1, resources={"rollout": 1})
    second_log = tmp_path / "trainer-2.log"
    trainer = start_trainer(cluster, services, data, config, run_dir, second_log)
    assert wait_exit(trainer, RUN_TIMEOUT_S, second_log) == 0, tail(second_log)
    assert f"at epoch {stopped_after}" in second_log.read_text(), tail(second_log)
    final = latest_checkpoint(run_dir)
    assert final is not None and load_checkpoint(final)[0].epoch == EPOCHS
    assert epochs_done(run_dir) == EPOCHS
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert all(r["dropped"] == 0 for r in records if "dropped" in r)  # the tokens were accepted
    print(f"\nmulti-node run: stopped {stop_s:.1f} s after the node died, after epoch {stopped_after}; "
          f"whole test {time.monotonic() - started:.0f} s\n{errors[0]}")  # fmt: skip
