"""What `motionnft bench generate --policy SPEC` renders with: SPEC read as a `RenderSource`.

The kinds, tried in this order (the first that fits is taken; none fitting is a `SpecError` naming
every kind tried):

1. a run directory of this project (`config.yaml` and `checkpoint-*.pt`: its latest checkpoint) or a
   checkpoint file: the policy of the config stored in the checkpoint, sampling with the EMA of the
   trained adapter (what the run's evaluations sample with), its sampler settings;
2. a config preset (`.yaml`/`.yml`, e.g. configs/demo_cpu.yaml): its policy's frozen base weights (no
   LoRA adapter), its sampler settings;
3. a local diffusers directory (`model_index.json`): the pipeline's own call with the reference
   settings (`workers.bench_pipelines`).

Run directories, checkpoints and presets are the trainer's formats, so they are read here; the
renderers (workers) get a plain `RenderSource` and never import the trainer. `--steps` and
`--guidance` override the kind's own settings; a family without guidance refuses one.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trainer.checkpoints import CHECKPOINT_GLOB, latest_checkpoint, load_checkpoint
from trainer.config import ConfigError, TrainConfig, from_yaml, load_config
from workers.bench_pipelines import diffusers_source
from workers.bench_tasks import Kind, RenderSource, SpecError, describe
from workers.policies.factory import PolicySpec

KINDS_TRIED = (
    "a run directory (config.yaml and checkpoint-*.pt) or a checkpoint-*.pt file",
    "a config preset (.yaml)",
    "a diffusers directory (model_index.json)",
)


def resolve_source(spec: str, *, size: int, steps: int | None = None, guidance: float | None = None) -> RenderSource:
    """The source SPEC names (module docstring), at `size` x `size` pixels.

    Raises:
        SpecError: SPEC is none of the kinds, or the one it is cannot be read or refuses the settings.
    """
    path = Path(spec)
    checkpoint = _checkpoint_of(path)
    if checkpoint is not None:
        return _from_checkpoint(spec, checkpoint, "run" if path.is_dir() else "checkpoint", size, steps, guidance)
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        try:
            config = load_config(path)
        except ConfigError as exc:
            raise SpecError(str(exc)) from exc
        return _from_policy(spec, "preset", path, config, size, steps, guidance, adapter=None)
    source = diffusers_source(path, spec, size=size, steps=steps, guidance=guidance)
    if source is not None:
        return source
    tried = "; ".join(KINDS_TRIED)
    if not path.exists():
        raise SpecError(f"{spec!r} does not exist (a SPEC is {tried})")
    raise SpecError(f"{spec!r} is none of: {tried}")


def _checkpoint_of(path: Path) -> Path | None:
    """The checkpoint a run directory's latest, or a checkpoint file itself, names; None if neither.

    Raises:
        SpecError: a run directory (it has config.yaml) without a checkpoint yet.
    """
    if path.is_file() and path.match(CHECKPOINT_GLOB):
        return path
    if path.is_dir() and (path / "config.yaml").is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            raise SpecError(f"{path} is a run directory with no {CHECKPOINT_GLOB} yet: nothing trained to render")
        return latest
    return None


def _from_checkpoint(
    spec: str, checkpoint: Path, kind: Kind, size: int, steps: int | None, guidance: float | None
) -> RenderSource:
    """The checkpoint's own config and the EMA of its trained adapter (`Learner.state_dict()["ema"]`)."""
    try:
        _, learner, config_yaml = load_checkpoint(checkpoint)
        config = from_yaml(config_yaml, source=f"{checkpoint} (its config)")
        ema = learner["ema"]["shadow"]
    except ConfigError as exc:
        raise SpecError(str(exc)) from exc
    except (OSError, EOFError, RuntimeError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as exc:
        # torch.load's errors (not a zip, not weights only, truncated) and a learner section without an EMA
        raise SpecError(f"cannot read the checkpoint {checkpoint}: {describe(exc)}") from exc
    return _from_policy(spec, kind, checkpoint, config, size, steps, guidance, adapter=dict(ema))


def _from_policy(
    spec: str,
    kind: Kind,
    path: Path,
    config: TrainConfig,
    size: int,
    steps: int | None,
    guidance: float | None,
    adapter: dict[str, Any] | None,
) -> RenderSource:
    """A policy source: the config's policy with `steps`/`guidance` when given, validated again."""
    policy = config.policy
    changes: dict[str, Any] = {}
    if steps is not None:
        changes["sampling_steps"] = steps
    if guidance is not None:
        changes["guidance"] = guidance
    try:
        policy = PolicySpec.model_validate({**policy.model_dump(), **changes, "pretrained": _pretrained(policy)})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'policy'}: {e['msg']}" for e in exc.errors())
        raise SpecError(f"{spec}: {problems}") from exc
    return RenderSource(
        spec=spec, kind=kind, family=policy.family, steps=policy.sampling_steps, guidance=policy.guidance,
        size=size, path=str(path.resolve()), policy=policy, adapter=adapter,
    )  # fmt: skip


def _pretrained(policy: PolicySpec) -> str:
    """The policy's weights as an absolute path (a Ray worker's working directory is not the driver's);
    `tiny` stays as it is (the factory resolves it against the installed repository)."""
    if policy.pretrained == "tiny":
        return "tiny"
    return str(Path(policy.pretrained).resolve())
