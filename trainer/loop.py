"""The single controller: one MotionNFT run, read top to bottom as named, timed stages.

sample (Ray rollout actors; rewards over HTTP) -> advantages -> update (learner actor) -> sync (the
learner's new sampling weights to every actor, by object reference) -> evaluate -> checkpoint.
Metrics go to `<run_dir>/metrics.jsonl`, one line per epoch; checkpoints resume the run exactly.

With `run.pipeline` the actors sample epoch e+1 while the learner updates on epoch e, one version
stale (trainer.pipeline). Every record names the versions its batch was sampled with and the
staleness: 0 without pipelining, <= 1 with it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from motionnft.contracts.client import JudgeClient, RewardClient
from motionnft.progress import Metric, StepProgress
from trainer.actors import ActorLost, RunActors, start_actors
from trainer.advantages import BanList, combine_rewards, group_advantages, reward_agreement, saturated
from trainer.checkpoints import TrainerState, latest_checkpoint, load_checkpoint, save_checkpoint
from trainer.config import TrainConfig, to_yaml
from trainer.data import load_tasks
from trainer.evaluation import evaluate
from trainer.metrics import MetricsLog, StageTimer
from trainer.pipeline import AHEAD_SAMPLING, Sampling, learner_section, samples_ahead, versions
from workers.tasks import EditTask, RolloutBatch, RolloutGroup

log = logging.getLogger(__name__)


class TooManyDrops(RuntimeError):
    """More groups lost their rewards than the config allows: the services are not healthy."""


class RunStopped(RuntimeError):
    """An actor was lost (its node died, it crashed or it hung); says which checkpoint the run resumes from."""


@dataclass
class _Run:
    """What every epoch of one run works with; `state` and `bans` advance epoch by epoch."""

    config: TrainConfig
    run_dir: Path
    actors: RunActors
    train_tasks: list[EditTask]
    eval_tasks: list[EditTask]
    order: list[int]  # the run's fixed prompt order (indices into train_tasks)
    state: TrainerState
    bans: BanList
    progress: StepProgress


def train(config: TrainConfig, *, resume: bool = True) -> Path:
    """Run (or resume) the configured number of epochs; returns the run directory."""
    run_dir = Path(config.run.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(config))
    train_tasks, eval_tasks = load_tasks(config)
    asyncio.run(wait_for_services(config))
    actors = start_actors(config)
    (run_dir / "placement.json").write_text(json.dumps([p.to_json() for p in actors.placements], indent=1))
    try:
        return _run(config, run_dir, actors, train_tasks, eval_tasks, resume)
    finally:
        actors.close()


def _run(
    config: TrainConfig,
    run_dir: Path,
    actors: RunActors,
    train_tasks: list[EditTask],
    eval_tasks: list[EditTask],
    resume: bool,
) -> Path:
    restored = _restore(run_dir, actors) if resume else None
    state, in_flight = restored or (TrainerState(), None)
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    metrics.keep_until(state.epoch if restored else -1)  # a fresh run starts a fresh file
    order = torch.randperm(len(train_tasks), generator=torch.Generator().manual_seed(config.run.seed)).tolist()
    # A bar on a terminal; in logs one line per epoch (the whole record is in metrics.jsonl).
    with StepProgress("epoch", total=config.run.epochs, completed=state.epoch, logger=log) as progress:
        run = _Run(config, run_dir, actors, train_tasks, eval_tasks, order, state, BanList(state.banned), progress)
        last_finished = copy.deepcopy(state)  # what a checkpoint of the last finished epoch holds
        # The next epoch's rollout when it was sent ahead: by the last update, or again on resuming
        # with the weights the checkpoint kept of it.
        ahead = None if in_flight is None else _send_rollout(run, state.epoch, ahead=True, weights=in_flight)
        try:
            if state.epoch == 0:
                progress.stage("evaluate")
                before = evaluate(actors, eval_tasks, actors.ema_weights(), run_dir / "eval-00000.npz")
                metrics.write({"epoch": 0, "eval": before})
            for epoch in range(state.epoch, config.run.epochs):
                record, ahead = _epoch(run, epoch, ahead)
                metrics.write(record)
                log.debug("epoch %d: %s", epoch + 1, {k: v for k, v in record.items() if not isinstance(v, dict)})
                progress.advance(_headline(record))
                last_finished = copy.deepcopy(state)
        except ActorLost as exc:
            # `ahead` is what the failed epoch was handed: still in flight as far as a checkpoint goes.
            raise RunStopped(_stopped_at(exc, run_dir, last_finished, actors, config, ahead)) from exc
    return run_dir


def _epoch(run: _Run, epoch: int, sampling: Sampling | None) -> tuple[dict[str, Any], Sampling | None]:
    """One epoch's stages on `sampling` (its rollout, if already sent); advances the run's state and
    bans. Returns the epoch's metrics record and the next epoch's rollout if this one sent it."""
    config, actors, state, bans = run.config, run.actors, run.state, run.bans
    timer = StageTimer()
    stage = partial(_stage, timer, run.progress)
    try:
        with stage("sample"):
            sampling = sampling or _send_rollout(run, epoch, ahead=False)
            batches = actors.collect(sampling.rollout)
    except ActorLost as exc:
        exc.learner_intact = True  # nothing has reached the learner yet this epoch
        raise
    state.cursor = sampling.cursor
    groups = [g for b in batches for g in b.groups]
    dropped = [d for b in batches for d in b.dropped]
    actors.count_groups(len(groups), len(dropped))
    _check_drops(len(dropped), len(sampling.tasks), config.reward.max_drop_fraction)
    record: dict[str, Any] = {"epoch": epoch + 1, **versions(batches, actors.version, sampling.ahead)}
    if groups:  # every group dropped: nothing to learn from, and no reward is invented
        with stage("advantages"):
            weights, valid, reward_metrics = _advantages(groups, bans, config)
    ahead = None
    if samples_ahead(config.run, epoch):
        with stage("sample"):  # returns at once: the actors sample while the learner updates
            ahead = _send_rollout(run, epoch + 1, ahead=True)
    if groups:
        # A batch sampled ahead is one `old` version behind, and its loss compares against the `old`
        # that drew it: NFT splits that policy's own samples into implicit positive and negative
        # policies mirrored about its velocity (per sample the optimum is v_old + (2w - 1)(v - v_old)
        # / beta). The newer `old` already holds part of the last update, which would count twice.
        with stage("update"), actors.old_that_sampled(sampling.rollout) as old_version:
            record |= reward_metrics | actors.train_epoch(groups, weights, valid, epoch)
        record["old_version"] = old_version
        with stage("sync"):
            actors.sync(hand_over=not config.run.pipeline)  # pipelined: sent with the next rollout
    if (epoch + 1) % config.run.eval_every == 0 or epoch + 1 == config.run.epochs:
        with stage("evaluate"):  # the EMA after this update; queued on the actors behind `ahead`
            saved = run.run_dir / f"eval-{epoch + 1:05d}.npz"
            record["eval"] = evaluate(actors, run.eval_tasks, actors.ema_weights(), saved)
    state.epoch, state.banned = epoch + 1, bans.to_list()
    state.dropped_total += len(dropped)
    if config.run.checkpoint_every and (epoch + 1) % config.run.checkpoint_every == 0:
        with stage("checkpoint"):
            save_checkpoint(run.run_dir, state, learner_section(actors, ahead), to_yaml(config))
    return record | {"dropped": len(dropped), "dropped_total": state.dropped_total, "banned": len(state.banned),
                     "stage_s": timer.seconds, **_rollout_times(batches)}, ahead  # fmt: skip


def _send_rollout(
    run: _Run, epoch: int, *, ahead: bool, weights: tuple[int, dict[str, torch.Tensor]] | None = None
) -> Sampling:
    """Send epoch `epoch`'s rollout (the next prompts from the run's cursor), sampled with the
    learner's newest weights or with `weights` (version, adapter state); returns at once."""
    count = run.config.data.prompts_per_epoch
    tasks, cursor = _next_tasks(run.train_tasks, run.order, run.state.cursor, run.bans, count)
    if weights is None:
        return Sampling(tasks, cursor, run.actors.start_rollout(tasks, epoch), ahead)
    rollout = run.actors.start_rollout(tasks, epoch, weights=run.actors.put(weights), version=weights[0])
    return Sampling(tasks, cursor, rollout, ahead)


def _stopped_at(
    exc: ActorLost,
    run_dir: Path,
    state: TrainerState,
    actors: RunActors,
    config: TrainConfig,
    in_flight: Sampling | None = None,
) -> str:
    """The message to stop with, after checkpointing the last finished epoch `state` where that is sound
    (with the sampling weights of the next epoch's rollout, `in_flight`, if it was sent ahead).

    Sound only while the learner still holds exactly that epoch's weights (`learner_intact`): a
    rollout actor lost while sampling, or a learner rank lost in the update whose surviving peer
    rolled the update back; otherwise the latest checkpoint on disk is where the run resumes.
    """
    latest = latest_checkpoint(run_dir)
    unsaved = state.epoch > 0 and (latest is None or _epoch_of(latest) < state.epoch)
    if exc.learner_intact and unsaved:
        try:
            latest = save_checkpoint(run_dir, state, learner_section(actors, in_flight), to_yaml(config))
        except ActorLost as lost:
            log.error("could not checkpoint epoch %d: %s", state.epoch, lost)
    resume = f"run again to resume from {latest.name}" if latest else "no checkpoint yet: a new run starts over"
    return f"{exc}; stopped after epoch {state.epoch} ({resume})"


def _epoch_of(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[-1])


async def wait_for_services(config: TrainConfig) -> None:
    """Both reward services must answer /readyz before the first epoch."""
    async with RewardClient(config.reward.reward_url) as reward, JudgeClient(config.reward.judge_url) as judge:
        await asyncio.gather(reward.wait_ready(timeout_s=120), judge.wait_ready(timeout_s=120))


def _restore(run_dir: Path, actors: RunActors) -> tuple[TrainerState, Any] | None:
    """The latest checkpoint's trainer state, its learner state loaded, and the sampling weights of
    the rollout that was in flight (None if none was)."""
    path = latest_checkpoint(run_dir)
    if path is None:
        return None
    state, learner, _ = load_checkpoint(path)
    in_flight = learner.pop(AHEAD_SAMPLING, None)
    actors.load_learner_state(learner)
    log.info("resumed %s at epoch %d", path, state.epoch)
    return state, in_flight


def _next_tasks(
    tasks: list[EditTask], order: list[int], cursor: int, bans: BanList, count: int
) -> tuple[list[EditTask], int]:
    """The next `count` prompts in the run's fixed order from `cursor`, skipping banned ones, and the
    cursor after them."""
    chosen: list[EditTask] = []
    seen = 0
    while len(chosen) < count and seen < len(order):
        task = tasks[order[cursor % len(order)]]
        cursor += 1
        seen += 1
        if task.prompt_id not in bans:
            chosen.append(task)
    return chosen, cursor


def _check_drops(dropped: int, total: int, max_fraction: float) -> None:
    if total and dropped / total > max_fraction:
        raise TooManyDrops(f"{dropped} of {total} groups lost their rewards (limit {max_fraction:.0%})")


def _advantages(
    groups: list[RolloutGroup], bans: BanList, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Combined rewards -> per-group normalised advantages -> optimality weights; bans saturated prompts."""
    continuous = config.reward.motion_signal == "continuous"
    components = {
        "motion": torch.tensor([g.rewards.motion_continuous if continuous else g.rewards.motion for g in groups]),
        "judge": torch.tensor([g.rewards.judge for g in groups]),
    }
    rewards = combine_rewards(components, dict(config.reward.weights))
    advantages = group_advantages(rewards, clip=config.nft.adv_clip)
    newly = bans.update([g.task.prompt_id for g in groups], saturated(rewards, config.nft.ban_std, config.nft.ban_mean))
    valid = torch.tensor([g.task.prompt_id not in bans for g in groups], dtype=torch.bool)
    metrics = {
        "reward": float(rewards.mean()),
        "reward_motion": float(torch.tensor([g.rewards.motion for g in groups]).mean()),
        "reward_judge": float(components["judge"].mean()),
        "reward_motion_continuous": float(torch.tensor([g.rewards.motion_continuous for g in groups]).mean()),
        "newly_banned": float(len(newly)),
        **reward_agreement(rewards, torch.tensor([g.rewards.mas for g in groups])),
    }
    return advantages.weight, valid, metrics


@contextmanager
def _stage(timer: StageTimer, progress: StepProgress, name: str) -> Iterator[None]:
    """A timed stage that is also shown as the progress bar's current stage."""
    progress.stage(name)
    with timer.stage(name):
        yield


def _headline(record: dict[str, Any]) -> dict[str, Metric]:
    """The few numbers worth one progress line: mean rewards, the loss, drops, and eval MAS when evaluated."""
    names = {"reward": "reward", "reward_motion": "motion", "reward_judge": "judge", "loss": "loss"}
    shown: dict[str, Metric] = {short: record[key] for key, short in names.items() if key in record}
    if "eval" in record:
        shown["eval_mas"] = record["eval"]["mas"]
    shown["dropped"] = record["dropped"]
    shown["epoch_s"] = sum(record["stage_s"].values())
    return shown


def _rollout_times(batches: list[RolloutBatch]) -> dict[str, float]:
    """How long the actors generated vs waited for rewards (the waiting should be a small share)."""
    sample = sum(b.sample_s for b in batches)
    wait = sum(b.reward_wait_s for b in batches)
    total = sum(b.total_s for b in batches)
    return {
        "rollout_sample_s": sample,
        "rollout_reward_wait_s": wait,
        "rollout_wait_share": wait / total if total else 0.0,
        "rollout_encode_s": sum(b.encode_s for b in batches),
        "conditions_reused": sum(b.conditions_reused for b in batches),
    }
