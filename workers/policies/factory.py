"""One place builds a policy: the family picks the class, as the judge's scorer picks a backend.

`PolicySpec` is everything a process needs to build its policy (the rollout actors and the learner
each build their own from the same spec); it refuses, when a config is loaded, a family or a solver
that does not exist here, naming the allowed values. Each family owns its LoRA targets (a spec's
`lora.targets` of None means the family's own). Model code is imported only when a policy is built,
so reading a config does not import diffusers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from workers.policies.base import LoraSettings, Policy

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CHECKPOINT = REPO_ROOT / "checkpoints" / "tiny-kontext"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Family:
    """A policy family: its solvers and how to load it from a local diffusers directory."""

    solvers: tuple[str, ...]
    load: Callable[[Path, PolicySpec, int, str], Policy]  # (path, spec, size, device) -> policy


def _load_flux_kontext(path: Path, spec: PolicySpec, size: int, device: str) -> Policy:
    from workers.policies.flux_kontext import FluxKontextPolicy

    return FluxKontextPolicy.from_pretrained(path, device=device, dtype=DTYPES[spec.dtype], lora=spec.lora, size=size)


FAMILIES: dict[str, Family] = {"flux_kontext": Family(solvers=("heun",), load=_load_flux_kontext)}


class PolicySpec(BaseModel):
    """The editing model and its sampler; `pretrained` is a local diffusers directory, or "tiny"
    (the committed tiny checkpoint)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str = Field(default="flux_kontext", description=f"One of {sorted(FAMILIES)}.")
    pretrained: str = "tiny"
    lora: LoraSettings = LoraSettings()
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "cpu"
    sampling_steps: int = Field(default=6, gt=1)
    guidance: float | None = Field(default=2.5, ge=0, description="FLUX.1 Kontext guidance; None = no guidance.")
    solver: str = Field(default="heun", description="The sampler; each family lists the ones it has.")

    @field_validator("family")
    @classmethod
    def _known_family(cls, family: str) -> str:
        if family not in FAMILIES:
            raise ValueError(f"no policy family {family!r} here; one of {sorted(FAMILIES)}")
        return family

    @field_validator("solver")
    @classmethod
    def _known_solver(cls, solver: str, info: ValidationInfo) -> str:
        family = FAMILIES.get(info.data.get("family", ""))  # absent when the family itself was refused
        if family is not None and solver not in family.solvers:
            raise ValueError(f"no solver {solver!r} for {info.data['family']}; one of {list(family.solvers)}")
        return solver


def build_policy(spec: PolicySpec, *, size: int, device: str | None = None) -> Policy:
    """The policy `spec` names at `size` x `size` pixels, on `device` (default: the spec's)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # one bar per component per actor buries the run's log
    transformers_logging.disable_progress_bar()
    path = TINY_CHECKPOINT if spec.pretrained == "tiny" else Path(spec.pretrained)
    if not path.exists():
        hint = " (run `motionnft pretrain-tiny`)" if spec.pretrained == "tiny" else ""
        raise FileNotFoundError(f"no policy checkpoint at {path}{hint}")
    return FAMILIES[spec.family].load(path, spec, size, device or spec.device)
