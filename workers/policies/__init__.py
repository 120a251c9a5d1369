"""Policies: image-editing flow models with a trainable (`default`) and a sampling (`old`) LoRA adapter.

This package imports only the light, model-free layer (`base`); import the model families where they
are used (`workers.policies.flux_kontext.FluxKontextPolicy`, `workers.policies.tiny.build_tiny_kontext`),
so that importing the protocol does not import diffusers.
"""

from workers.policies.base import SAMPLING, TRAINABLE, Conditions, LoraSettings, Policy, sample_seed

__all__ = ["SAMPLING", "TRAINABLE", "Conditions", "LoraSettings", "Policy", "sample_seed"]
