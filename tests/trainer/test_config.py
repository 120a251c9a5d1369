"""Tests of trainer.config: docs/method.md defaults, YAML + --set overrides, errors, frozen, round trip."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from trainer.config import (
    ConfigError,
    NFTConfig,
    RunConfig,
    TrainConfig,
    config_from_mapping,
    from_yaml,
    load_config,
    to_yaml,
)
from trainer.nft import NFTLossParams
from workers.policies.base import LORA_INIT
from workers.policies.flux_kontext import LORA_TARGETS


def test_defaults_are_the_method_constants() -> None:
    c = TrainConfig()
    # docs/method.md section 4: rewards, advantages, banning; section 1: K = 8, 24 prompts, 512x512.
    assert c.reward.weights == {"motion": 0.5, "judge": 0.5}
    assert (c.nft.adv_clip, c.nft.ban_std, c.nft.ban_mean) == (5.0, 0.05, 0.9)
    assert (c.data.samples_per_prompt, c.data.prompts_per_epoch, c.data.size, c.data.center_crop) == (8, 24, 512, True)
    # Section 5: the NFT loss and the update.
    assert (c.nft.form, c.nft.beta, c.nft.kl_weight, c.nft.loss_scale, c.nft.adaptive_eps) == (
        "reference",
        1.0,
        1e-4,
        5.0,
        1e-5,
    )
    assert (c.policy.lora.rank, c.policy.lora.alpha, c.policy.lora.init) == (32, 64.0, "gaussian")
    assert c.policy.lora.targets is None  # the family's own: FLUX.1 Kontext's eight projections
    assert LORA_TARGETS == ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
    assert (c.policy.sampling_steps, c.policy.guidance, c.policy.solver) == (6, 2.5, "heun")
    o = c.optim
    assert (o.lr, o.betas, o.weight_decay, o.eps, o.grad_clip) == (3e-4, (0.9, 0.999), 1e-4, 1e-8, 1.0)
    assert (o.ema, o.old_decay_rate, o.old_decay_cap, o.timesteps_per_sample) == (0.9, 0.001, 0.5, 5)
    assert c.run.epochs == 300  # FLUX.1 Kontext dev
    assert c.run.out_dir == Path("runs/motionnft")
    assert c.ray.address is None and c.ray.learner_device == "cpu"


def test_yaml_then_overrides(tmp_path: Path) -> None:
    preset = tmp_path / "preset.yaml"
    preset.write_text(
        "run:\n  name: demo\n  epochs: 10\n"
        "reward:\n  weights: {motion: 0.7, judge: 0.3}\n"
        "policy:\n  lora: {rank: 4}\n  dtype: bfloat16\n"
    )
    c = load_config(
        preset,
        [
            "run.epochs=3",
            "reward.weights.motion=1.0",  # one entry of a dict field; the other stays
            "policy.lora.targets=[to_q, to_k]",
            "optim.lr=1e-3",  # YAML 1.1 reads this as a string; pydantic makes it a float
            "optim.betas=[0.8, 0.9]",
            "ray.address=null",
            "run.name=2024",  # numbers are fine for string fields
        ],
    )
    assert (c.run.epochs, c.run.name) == (3, "2024")
    assert c.run.out_dir == Path("runs/2024")  # follows the name unless set
    assert c.reward.weights == {"motion": 1.0, "judge": 0.3}
    assert c.policy.lora.targets == ("to_q", "to_k") and c.policy.lora.rank == 4
    assert c.policy.dtype == "bfloat16"
    assert c.optim.lr == 1e-3 and c.optim.betas == (0.8, 0.9)


def test_dict_entry_override_keeps_default_entries() -> None:
    c = load_config(None, ["reward.weights.motion=1.0"])
    assert c.reward.weights == {"motion": 1.0, "judge": 0.5}
    assert load_config(None, ["reward.weights={motion: 1.0}"]).reward.weights == {"motion": 1.0}


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("policy.lora.rnk=3", "policy.lora.rnk"),
        ("polcy.dtype=float32", "polcy"),
        ("run.epochs.x=1", "run.epochs"),
    ],
)
def test_unknown_override_names_the_path(override: str, path: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"'{path}'")):
        load_config(None, [override])


def test_unknown_yaml_key_names_the_path(tmp_path: Path) -> None:
    preset = tmp_path / "bad.yaml"
    preset.write_text("policy:\n  lora:\n    rnk: 3\n")
    with pytest.raises(ConfigError, match=r"'policy\.lora\.rnk'"):
        load_config(preset, [])


@pytest.mark.parametrize(
    "override",
    ["run.epochs", "=3", "run..epochs=3", "run.epochs=[", "run.epochs=-1", "nft.form=other", "optim.ema=2"],
)
def test_bad_overrides_are_clear_errors(override: str) -> None:
    with pytest.raises(ConfigError):
        load_config(None, [override])


def test_bad_documents_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        from_yaml("- a\n- b\n")
    with pytest.raises(ConfigError, match="YAML"):
        from_yaml("run: [\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"reward\.weights"):
        config_from_mapping({"reward": {"weights": {"motion": -1.0}}})
    with pytest.raises(ConfigError, match="timesteps_per_sample"):
        config_from_mapping({"optim": {"timesteps_per_sample": 7}})


def alias_bomb() -> str:
    """ "Billion laughs": nine levels of nine aliases each, 9^9 = 387,420,489 strings in ~320 bytes."""
    names = "abcdefghi"
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['x'] * 9)}]"]
    lines += [f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]" for prev, name in itertools.pairwise(names)]
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(10)  # before the fix this expanded the aliases until memory ran out
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    assert bomb.stat().st_size < 400
    started = time.perf_counter()
    message = (
        rf"^{re.escape(str(bomb))}: YAML anchors and aliases are not allowed in configs \(found an anchor &a at line 1"
    )
    with pytest.raises(ConfigError, match=message):
        load_config(bomb)
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("run: &r {epochs: 2}\n", "anchor &r at line 1, column 6"),
        ("run: *r\n", "alias \\*r at line 1, column 6"),
        ("policy:\n  lora:\n    rank: &n 4\n    alpha: *n\n", "anchor &n at line 3"),
    ],
)
def test_any_anchor_or_alias_is_refused(text: str, found: str) -> None:
    with pytest.raises(
        ConfigError, match=f"^preset.yaml: YAML anchors and aliases are not allowed in configs .*{found}"
    ):
        from_yaml(text, source="preset.yaml")


def test_an_override_cannot_smuggle_an_alias_bomb_either() -> None:
    value = "[" + ", ".join(["&a [x, x, x, x, x, x, x, x, x]", *["*a"] * 8]) + "]"
    with pytest.raises(ConfigError, match=r"^override run\.name: .*YAML anchors and aliases are not allowed"):
        load_config(None, [f"run.name={value}"])


@pytest.mark.parametrize(
    "preset", sorted(Path(__file__).resolve().parents[2].glob("configs/*.yaml")), ids=lambda p: p.name
)
def test_the_committed_presets_load_without_anchors(preset: Path) -> None:
    load_config(preset)  # would raise ConfigError on any anchor or alias


def test_extra_fields_forbidden_and_frozen() -> None:
    with pytest.raises(ValidationError):
        TrainConfig(foo=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        RunConfig(bogus=1)  # type: ignore[call-arg]
    c = TrainConfig()
    with pytest.raises(ValidationError):
        c.run.epochs = 5
    with pytest.raises(ValidationError):
        c.run = RunConfig()


def test_to_yaml_round_trips(tmp_path: Path) -> None:
    for c in (
        TrainConfig(),
        load_config(None, ["run.name=x", "run.out_dir=/tmp/elsewhere", "data.train_path=data/train.jsonl"]),
        load_config(None, ["policy.guidance=null", "ray.num_cpus=2", "nft.form=paper"]),
    ):
        text = to_yaml(c)
        assert from_yaml(text) == c
        path = tmp_path / "config.yaml"
        path.write_text(text)
        assert load_config(path) == c
        assert to_yaml(load_config(path)) == text
    assert load_config(None, ["run.out_dir=/tmp/elsewhere"]).run.out_dir == Path("/tmp/elsewhere")
    assert from_yaml("") == TrainConfig()


@pytest.mark.parametrize(
    ("override", "field", "allowed"),
    [
        ("policy.family=sdxl", "policy.family", "one of ['flux_kontext', 'qwen_image_edit']"),
        ("policy.solver=euler", "policy.solver", "one of ['heun']"),
        ("policy.variant=edit-plus", "policy.variant", "its variants: none (leave it unset)"),
        ("policy.lora.alpha=64.5", "policy.lora.alpha", "valid integer"),
        ("policy.lora.init=true", "policy.lora.init", "'gaussian', 'zeros' or 'random'"),
    ],
)
def test_values_the_code_cannot_honour_are_refused_at_load(override: str, field: str, allowed: str) -> None:
    """Once accepted and ignored (family, solver) or failing later inside a Ray actor (alpha)."""
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    assert f"{field}:" in str(caught.value) and allowed in str(caught.value)


def test_the_qwen_presets_load_with_the_papers_settings() -> None:
    configs = Path(__file__).resolve().parents[2] / "configs"
    demo, paper = load_config(configs / "demo_cpu_qwen.yaml"), load_config(configs / "qwen_image_edit_motionedit.yaml")
    for config in (demo, paper):
        assert config.policy.family == "qwen_image_edit" and config.policy.guidance is None  # no CFG, no guidance
        assert config.policy.sampling_steps == 6
    assert (demo.policy.pretrained, demo.policy.variant, demo.data.size) == ("tiny", "edit", 64)
    kontext = load_config(configs / "kontext_motionedit.yaml")
    assert paper.run.epochs == 210 and kontext.run.epochs == 300  # docs/method.md 5: Qwen-Image-Edit-2509 / FLUX
    assert paper.policy.variant == "edit-plus" and paper.policy.gradient_checkpointing
    assert (paper.policy.lora, paper.optim, paper.data) == (kontext.policy.lora, kontext.optim, kontext.data)
    assert paper.policy.dtype == "bfloat16" and paper.policy.pretrained.endswith("Qwen-Image-Edit-2509")


def test_lora_init_names_map_to_peft_explicitly() -> None:
    assert load_config(None, ["policy.lora.init=zeros"]).policy.lora.init == "zeros"
    assert LORA_INIT == {"gaussian": "gaussian", "zeros": True, "random": False}


def test_the_nft_section_gives_the_loss_its_constants() -> None:
    assert NFTConfig().loss_params() == NFTLossParams()  # the defaults agree
    changed = load_config(None, ["nft.beta=0.5", "nft.form=paper"]).nft.loss_params()
    assert (changed.beta, changed.form) == (0.5, "paper")


@pytest.mark.parametrize(
    ("override", "complaint"),
    [("ray.rollout_resources={GPU: 1}", "not custom resources"), ("ray.learner_resources={learner: 0}", "> 0")],
)
def test_ray_resources_are_custom_and_positive(override: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        load_config(None, [override])


def test_ray_resources_place_the_roles() -> None:
    config = load_config(
        None, ["ray.address=auto", "ray.rollout_resources={rollout: 1}", "ray.learner_resources={learner: 1}"]
    )
    assert config.ray.rollout_resources == {"rollout": 1.0} and config.ray.learner_resources == {"learner": 1.0}
