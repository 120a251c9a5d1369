"""PolicySpec and build_policy: the family picks the class, its variants, its guidance rule and its tiny checkpoint."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cli.main import TINY_RECIPES
from workers.policies.factory import FAMILIES, TINY_CHECKPOINT, TINY_QWEN_CHECKPOINT, PolicySpec, build_policy
from workers.policies.flux_kontext import FluxKontextPolicy
from workers.policies.qwen_image_edit import VARIANTS, QwenImageEditPolicy


def test_each_family_keeps_its_guidance_rule() -> None:
    assert PolicySpec().guidance == 2.5  # FLUX.1 Kontext's
    qwen = PolicySpec(family="qwen_image_edit")
    assert qwen.guidance is None and qwen.variant is None  # unset: no guidance, the family's first variant
    assert PolicySpec.model_validate(qwen.model_dump()) == qwen  # what a checkpoint's config reads back
    with pytest.raises(ValidationError, match="qwen_image_edit takes no guidance"):
        PolicySpec(family="qwen_image_edit", guidance=2.5)


def test_variants_belong_to_their_family() -> None:
    assert FAMILIES["qwen_image_edit"].variants == tuple(VARIANTS)  # the spec offers what the policy loads
    assert PolicySpec(family="qwen_image_edit", variant="edit-plus").variant == "edit-plus"
    with pytest.raises(ValidationError, match=r"no variant 'edit-2511' for qwen_image_edit; its variants: \['edit'"):
        PolicySpec(family="qwen_image_edit", variant="edit-2511")
    with pytest.raises(ValidationError, match="no variant 'edit' for flux_kontext"):
        PolicySpec(variant="edit")


def test_tiny_resolves_per_family_to_the_committed_checkpoints() -> None:
    assert (FAMILIES["flux_kontext"].tiny, FAMILIES["qwen_image_edit"].tiny) == (TINY_CHECKPOINT, TINY_QWEN_CHECKPOINT)
    for name, family in FAMILIES.items():  # `motionnft pretrain-tiny --family NAME` writes where `tiny` reads
        assert family.tiny.relative_to(TINY_CHECKPOINT.parents[1]).as_posix() == TINY_RECIPES[name]["out"]
    assert isinstance(build_policy(PolicySpec(), size=64), FluxKontextPolicy)
    qwen = build_policy(PolicySpec(family="qwen_image_edit"), size=64)
    assert isinstance(qwen, QwenImageEditPolicy) and not qwen.plus


def test_a_missing_tiny_checkpoint_says_how_to_make_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from dataclasses import replace

    monkeypatch.setitem(FAMILIES, "qwen_image_edit", replace(FAMILIES["qwen_image_edit"], tiny=tmp_path / "none"))
    with pytest.raises(FileNotFoundError, match="pretrain-tiny --family qwen_image_edit"):
        build_policy(PolicySpec(family="qwen_image_edit"), size=64)
