"""The trainer's one config mechanism: a YAML preset plus ``--set a.b=value`` overrides, frozen pydantic.

Defaults are docs/method.md's constants for everything the method fixes (rewards, advantages, the NFT
loss, LoRA, the optimiser, the schedules, the epoch size: FLUX.1 Kontext dev, 300 steps) and the
embedded demo's for where it runs (tiny policy on CPU in float32, services on localhost, local
Ray); the presets in configs/ set the rest (bf16 and a GPU for the real models). Every model is
frozen and forbids unknown fields; `to_yaml` writes the resolved config that `from_yaml` and
`load_config` read back equal.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from motionnft.data.records import read_file_bounded
from trainer.nft import NFTLossParams
from workers.policies.factory import PolicySpec
from workers.rollout import RewardEndpoints

MAX_CONFIG_BYTES = 2**20  # a preset is a few KB


class ConfigError(ValueError):
    """A config that cannot be read: unknown key, bad value or malformed override; names the key path."""


class _AliasRefused(yaml.YAMLError):
    """An anchor (``&name``) or alias (``*name``) met while composing; carries where it was."""

    def __init__(self, what: str, mark: yaml.Mark | None) -> None:
        where = "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"
        super().__init__(f"{what}{where}")


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors and aliases before anything is built from them.

    A few hundred bytes of nested aliases ("billion laughs") stand for 10^9 nodes; PyYAML shares the
    aliased objects, but copying the mapping (``_plain``) and validating it walk every one of them.
    Configs are short and written by hand, so they gain nothing from aliases: refuse them all.
    """

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _AliasRefused(f"alias *{event.anchor}", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise _AliasRefused(f"anchor &{event.anchor}", event.start_mark)
        return super().compose_node(parent, index)


def _load_yaml(text: str) -> Any:
    """``yaml.safe_load`` without anchors or aliases (raises ``_AliasRefused``, a ``yaml.YAMLError``)."""
    loader = _NoAliasLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_error(exc: yaml.YAMLError, source: str) -> ConfigError:
    if isinstance(exc, _AliasRefused):
        return ConfigError(f"{source}: YAML anchors and aliases are not allowed in configs (found an {exc})")
    return ConfigError(f"{source}: not valid YAML: {exc}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)


class RunConfig(_Frozen):
    """One training run. ``epochs`` = NFT steps (one epoch of rollouts and updates each)."""

    name: str = Field(default="motionnft", min_length=1)
    seed: int = 0
    out_dir: Path = Field(default=Path("runs/motionnft"), description="Checkpoints and logs; default runs/<name>.")
    epochs: int = Field(default=300, gt=0)
    eval_every: int = Field(default=25, gt=0, description="Epochs between evaluations.")
    checkpoint_every: int = Field(default=50, gt=0, description="Epochs between checkpoints.")
    # Off (the reference): each epoch samples with the weights of the update before it. On: the
    # rollout actors sample epoch e+1 while the learner updates on epoch e (at most one version
    # stale); a checkpoint epoch starts nothing ahead, so every checkpoint resumes exactly.
    pipeline: bool = Field(default=False, description="Sample the next epoch during this epoch's update.")

    @model_validator(mode="before")
    @classmethod
    def _default_out_dir(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("out_dir") is None:
            return {**data, "out_dir": f"runs/{data.get('name', 'motionnft')}"}
        return data


class DataConfig(_Frozen):
    """MotionEdit data; a None path means the synthetic MotionEdit-style generator."""

    train_path: Path | None = None
    eval_path: Path | None = None
    size: int = Field(default=512, gt=0, description="Square training resolution in pixels.")
    center_crop: bool = True
    prompts_per_epoch: int = Field(default=24, gt=0)
    samples_per_prompt: int = Field(default=8, ge=2, description="K, the group size.")


class RewardConfig(RewardEndpoints):
    """The rollout actors' endpoints (their own section's fields) plus how the trainer mixes rewards."""

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)

    weights: dict[str, float] = Field(default_factory=lambda: {"motion": 0.5, "judge": 0.5})
    max_drop_fraction: float = Field(
        default=0.25, ge=0, le=1, description="Training stops when more than this share of an epoch's groups drop."
    )
    # The motion component the advantages use: the six-level reward (docs/method.md 2, the reference) or
    # its continuous value, for small images where nearly every edit lands in the same level.
    motion_signal: Literal["six_level", "continuous"] = "six_level"

    @field_validator("weights")
    @classmethod
    def _check_weights(cls, weights: dict[str, float]) -> dict[str, float]:
        if not weights:
            raise ValueError("at least one reward weight is needed")
        if any(not math.isfinite(w) or w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"reward weights must be finite, >= 0 and not all 0, got {weights}")
        return weights


class OptimConfig(_Frozen):
    lr: float = Field(default=3e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(default=1e-4, ge=0)
    eps: float = Field(default=1e-8, gt=0)
    grad_clip: float = Field(default=1.0, gt=0, description="Max global grad norm.")
    grad_accum: int = Field(default=1, gt=0, description="(Group, timestep) micro-steps per optimizer step.")
    micro_batch: int | None = Field(default=None, gt=0, description="Samples per forward; None = the group (K).")
    ema: float = Field(default=0.9, ge=0, le=1)
    old_decay_rate: float = Field(default=0.001, ge=0)
    old_decay_cap: float = Field(default=0.5, ge=0, le=1)
    timesteps_per_sample: int = Field(default=5, gt=0, description="Of the sampling schedule's steps, shuffled.")


class NFTConfig(_Frozen):
    """The NFT loss (field names match trainer.nft.NFTLossParams), advantages and banning."""

    form: Literal["reference", "paper"] = "reference"
    beta: float = Field(default=1.0, gt=0)
    kl_weight: float = Field(default=1e-4, ge=0)
    loss_scale: float = Field(default=5.0, ge=0)
    adaptive_eps: float = Field(default=1e-5, gt=0)
    negative_branch: bool = Field(default=True, description="False: the ablation without the negative term.")
    adv_clip: float = Field(default=5.0, gt=0)
    ban_std: float = Field(default=0.05, ge=0)
    ban_mean: float = Field(default=0.9)

    def loss_params(self) -> NFTLossParams:
        """The loss's own constants, read from the fields of the same names."""
        return NFTLossParams(**{f.name: getattr(self, f.name) for f in dataclasses.fields(NFTLossParams)})


class RayConfig(_Frozen):
    """Where the run's actors go. On a cluster the worker groups declare custom resources (a RayJob's
    `rollout` and `learner` groups) and the actors ask for them, so this config alone decides which
    nodes run which role. Rollout actors take a GPU when `policy.device` is CUDA, each of the
    `num_learners` learners when `learner_device` is."""

    address: str | None = Field(default=None, description="None = a local ray.init(); 'auto' = this node's cluster.")
    num_rollout_actors: int = Field(default=1, gt=0)
    num_learners: int = Field(default=1, gt=0, description="Data-parallel learners (torch.distributed).")
    learner_device: str = "cpu"
    num_cpus: int | None = Field(default=None, gt=0, description="CPUs of a local Ray (ignored on a cluster).")
    rollout_resources: dict[str, float] = Field(default_factory=dict, description="Custom resources per rollout actor.")
    learner_resources: dict[str, float] = Field(default_factory=dict, description="Custom resources per learner.")
    # A real model loads for minutes; a missing resource never places at all. Both end in an error.
    placement_timeout_s: float = Field(default=900.0, gt=0, description="Actors placed and loaded within, s.")
    call_timeout_s: float = Field(default=3600.0, gt=0, description="Longest wait on any one actor call, s.")
    # A learner's wait for its peers in one collective (their share of a step plus the transfer).
    collective_timeout_s: float = Field(default=600.0, gt=0, description="Longest collective between learners, s.")

    @field_validator("rollout_resources", "learner_resources")
    @classmethod
    def _check_resources(cls, resources: dict[str, float]) -> dict[str, float]:
        # CPU and GPU come from num_cpus/num_gpus; Ray refuses them as custom resources.
        reserved = {"CPU", "GPU", "memory", "object_store_memory"} & set(resources)
        if reserved:
            raise ValueError(f"{sorted(reserved)} are not custom resources (set the device instead)")
        if any(not math.isfinite(v) or v <= 0 for v in resources.values()):
            raise ValueError(f"resource amounts must be finite and > 0, got {resources}")
        return resources


class TrainConfig(_Frozen):
    run: RunConfig = RunConfig()
    data: DataConfig = DataConfig()
    policy: PolicySpec = PolicySpec()  # validated by the policies' own model: one definition
    reward: RewardConfig = RewardConfig()
    optim: OptimConfig = OptimConfig()
    nft: NFTConfig = NFTConfig()
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _check_cross_fields(self) -> TrainConfig:
        if self.optim.timesteps_per_sample > self.policy.sampling_steps:
            raise ValueError(
                f"optim.timesteps_per_sample ({self.optim.timesteps_per_sample}) exceeds "
                f"policy.sampling_steps ({self.policy.sampling_steps})"
            )
        if self.optim.grad_accum % self.ray.num_learners:  # else some learners idle in every step
            raise ValueError(
                f"optim.grad_accum ({self.optim.grad_accum}) must be a multiple of ray.num_learners "
                f"({self.ray.num_learners}): each optimizer step's micro-steps are split over the learners"
            )
        return self


def load_config(path: Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read the YAML preset at ``path`` (None = defaults), then apply ``a.b=value`` overrides in order."""
    if path is None:
        return config_from_mapping({}, overrides)
    try:
        # Bounded and regular files only: a FIFO or /dev/zero given as --config must not hang the run.
        text = read_file_bounded(Path(path), MAX_CONFIG_BYTES).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config {path}: not UTF-8 text ({exc})") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    return from_yaml(text, overrides, source=str(path))


def from_yaml(text: str, overrides: Sequence[str] = (), *, source: str = "<yaml>") -> TrainConfig:
    """Parse a YAML document (as `to_yaml` writes it, or a preset), then apply overrides."""
    try:
        raw = _load_yaml(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(raw).__name__}")
    return config_from_mapping(raw, overrides, source=source)


def config_from_mapping(
    raw: Mapping[str, Any], overrides: Sequence[str] = (), *, source: str = "<config>"
) -> TrainConfig:
    """Validate a nested mapping after applying ``a.b=value`` overrides (values parsed as YAML)."""
    data = _plain(raw)
    for override in overrides:
        key, value = _parse_override(override)
        _set_path(data, TrainConfig, key.split("."), value)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from exc


def to_yaml(config: TrainConfig) -> str:
    """The resolved config as YAML (every field, defaults included), for logs and checkpoints."""
    # No anchors even when a value repeats: what this writes must load again under _NoAliasLoader.
    return yaml.dump(config.model_dump(mode="json"), Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True)


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _parse_override(override: str) -> tuple[str, Any]:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {override!r} is not of the form a.b=value")
    try:
        # The same loader as for files: one override value can hold an alias bomb just as well.
        value = _load_yaml(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, f"override {key}: value {text!r}") from exc
    return key, value


def _set_path(data: dict[str, Any], model: type[BaseModel], parts: list[str], value: Any, prefix: str = "") -> None:
    """Set data[parts...] = value, walking sub-models by their fields; a dict field takes any one entry."""
    head, rest = parts[0], parts[1:]
    path = f"{prefix}{head}"
    field = model.model_fields.get(head)
    if field is None:
        raise ConfigError(f"unknown config key {path!r}; known here: {sorted(model.model_fields)}")
    if not rest:
        data[head] = value
        return
    sub = field.annotation
    if isinstance(sub, type) and issubclass(sub, BaseModel):
        child = data.setdefault(head, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key {path!r} must be a mapping, got {child!r}")
        _set_path(child, sub, rest, value, f"{path}.")
    elif getattr(sub, "__origin__", None) is dict and len(rest) == 1:
        if not isinstance(data.get(head), dict):
            # Start from the default entries: reward.weights.motion=1.0 keeps the judge's weight.
            data[head] = dict(field.get_default(call_default_factory=True) or {})
        data[head][rest[0]] = value
    else:
        raise ConfigError(f"config key {path!r} has no sub-key {'.'.join(rest)!r}")


def _plain(value: Any) -> Any:
    """A deep copy of nested mappings as plain dicts (overrides edit it in place)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or "<root>"
        if error["type"] == "extra_forbidden":
            lines.append(f"unknown config key {path!r}")
        else:
            lines.append(f"{path}: {error['msg']} (got {error.get('input')!r})")
    return f"{source}: invalid config:\n  " + "\n  ".join(lines)
