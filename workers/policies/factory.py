"""One place builds a policy: the family picks the class, as the judge's scorer picks a backend.

`PolicySpec` is everything a process needs to build its policy (the rollout actors and the learner
each build their own from the same spec); it refuses, when a config is loaded, a family or a solver
that does not exist here, naming the allowed values. Each family owns its LoRA targets (a spec's
`lora.targets` of None means the family's own), its pipeline variants (`variant`), whether it takes a
guidance value, and its committed tiny checkpoint (`pretrained: tiny`). Model code is imported only
when a policy is built, so reading a config does not import diffusers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from workers.policies.base import LoraSettings, Policy

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CHECKPOINT = REPO_ROOT / "checkpoints" / "tiny-kontext"
TINY_QWEN_CHECKPOINT = REPO_ROOT / "checkpoints" / "tiny-qwen-image-edit"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Family:
    """A policy family: its solvers, how to load it from a local diffusers directory, its tiny checkpoint."""

    solvers: tuple[str, ...]
    load: Callable[[Path, PolicySpec, int, str], Policy]  # (path, spec, size, device) -> policy
    tiny: Path  # what `pretrained: tiny` means (written by `motionnft pretrain-tiny --family ...`)
    variants: tuple[str, ...] = ()  # pipeline variants, the default first; () = one pipeline
    guided: bool = True  # takes a guidance value (FLUX's guidance embedding); False: `guidance` must be None


def _load_flux_kontext(path: Path, spec: PolicySpec, size: int, device: str) -> Policy:
    from workers.policies.flux_kontext import FluxKontextPolicy

    return FluxKontextPolicy.from_pretrained(
        path,
        device=device,
        dtype=DTYPES[spec.dtype],
        lora=spec.lora,
        size=size,
        gradient_checkpointing=spec.gradient_checkpointing,
        offload_encoders=spec.offload_encoders,
    )


def _load_qwen_image_edit(path: Path, spec: PolicySpec, size: int, device: str) -> Policy:
    from workers.policies.qwen_image_edit import QwenImageEditPolicy

    return QwenImageEditPolicy.from_pretrained(
        path,
        variant=spec.variant or FAMILIES[spec.family].variants[0],
        device=device,
        dtype=DTYPES[spec.dtype],
        lora=spec.lora,
        size=size,
        gradient_checkpointing=spec.gradient_checkpointing,
        offload_encoders=spec.offload_encoders,
    )


FAMILIES: dict[str, Family] = {
    "flux_kontext": Family(solvers=("heun",), load=_load_flux_kontext, tiny=TINY_CHECKPOINT),
    # "edit" is Qwen-Image-Edit's QwenImageEditPipeline, "edit-plus" the -2509/-2511 QwenImageEditPlusPipeline.
    "qwen_image_edit": Family(
        solvers=("heun",),
        load=_load_qwen_image_edit,
        tiny=TINY_QWEN_CHECKPOINT,
        variants=("edit", "edit-plus"),
        guided=False,
    ),
}


class PolicySpec(BaseModel):
    """The editing model and its sampler; `pretrained` is a local diffusers directory, or "tiny"
    (the family's committed tiny checkpoint)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str = Field(default="flux_kontext", description=f"One of {sorted(FAMILIES)}.")
    pretrained: str = "tiny"
    lora: LoraSettings = LoraSettings()
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "cpu"
    sampling_steps: int = Field(default=6, gt=1)
    guidance: float | None = Field(
        default=2.5,
        ge=0,
        description="FLUX.1 Kontext guidance; None = no guidance (the default for unguided families).",
    )
    solver: str = Field(default="heun", description="The sampler; each family lists the ones it has.")
    variant: str | None = Field(
        default=None, description="The family's pipeline (qwen_image_edit: edit, edit-plus); None = its first."
    )
    # What is constant per dataset item (prompt embeddings, condition latents) is encoded once per
    # rollout actor and kept on its CPU, least recently used out first; 0 encodes every time.
    condition_cache_mb: float = Field(default=512.0, ge=0, description="Each rollout actor's condition cache, MB.")
    # Memory (docs/method.md section 5: bf16 + gradient checkpointing on a GPU; the CPU demo needs neither).
    gradient_checkpointing: bool = Field(
        default=False, description="Recompute the transformer's blocks in the backward instead of storing them."
    )
    offload_encoders: bool = Field(
        default=True,
        description="On a GPU, keep the VAE and text encoders on the CPU, on the device only while encoding or "
        "decoding (the learner never does either); False keeps them resident (no transfers; more GPU memory).",
    )

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

    @field_validator("variant")
    @classmethod
    def _known_variant(cls, variant: str | None, info: ValidationInfo) -> str | None:
        family = FAMILIES.get(info.data.get("family", ""))
        if family is not None and variant is not None and variant not in family.variants:
            allowed = list(family.variants) or "none (leave it unset)"
            raise ValueError(f"no variant {variant!r} for {info.data['family']}; its variants: {allowed}")
        return variant

    @model_validator(mode="before")
    @classmethod
    def _unguided_default(cls, data: Any) -> Any:
        """An unguided family's spec without a `guidance` gets None, not FLUX's 2.5."""
        if isinstance(data, dict) and "guidance" not in data:
            family = FAMILIES.get(str(data.get("family", "flux_kontext")))
            if family is not None and not family.guided:
                return {**data, "guidance": None}
        return data

    @model_validator(mode="after")
    def _guidance_fits_family(self) -> PolicySpec:
        if self.guidance is not None and not FAMILIES[self.family].guided:
            raise ValueError(f"{self.family} takes no guidance (no CFG, no guidance embedding): set guidance to null")
        return self


def build_policy(spec: PolicySpec, *, size: int, device: str | None = None) -> Policy:
    """The policy `spec` names at `size` x `size` pixels, on `device` (default: the spec's)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # one bar per component per actor buries the run's log
    transformers_logging.disable_progress_bar()
    family = FAMILIES[spec.family]
    path = family.tiny if spec.pretrained == "tiny" else Path(spec.pretrained)
    if not path.exists():
        hint = f" (run `motionnft pretrain-tiny --family {spec.family}`)" if spec.pretrained == "tiny" else ""
        raise FileNotFoundError(f"no policy checkpoint at {path}{hint}")
    return family.load(path, spec, size, device or spec.device)
