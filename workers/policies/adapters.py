"""Two named LoRA adapters on one denoiser (peft): `default` trains, `old` samples, none = the frozen base.

Any diffusers model with `add_adapter` (FLUX, Qwen-Image) works. peft's own switching also flips
`requires_grad` (the active adapter becomes trainable), so every switch here re-asserts the one rule
the trainer relies on: only `default`'s LoRA weights require grad, whichever adapter is active.
Adapter states are keyed without the adapter's name (`...to_q.lora_A.weight`), so one adapter's
state loads into another. LoRA weights are kept in float32 even on a bf16 base (peft casts the
activations around them), so AdamW updates and the old-adapter blend do not round to bf16.
"""

from __future__ import annotations

import re
import warnings

import torch
from peft import LoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import Tensor, nn

from workers.policies.base import ADAPTERS, LORA_INIT, TRAINABLE, LoraSettings


class LoraAdapters:
    """Adds `names` (default: `default`, `old`) to `model`, freezes everything else; `old` = copy of `default`."""

    def __init__(
        self,
        model: nn.Module,
        settings: LoraSettings,
        names: tuple[str, ...] = ADAPTERS,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if TRAINABLE not in names:
            raise ValueError(f"the adapters must include {TRAINABLE!r}")
        if settings.targets is None:
            raise ValueError("LoraSettings.targets must name the modules; the policy family fills in its own")
        targets = settings.targets
        self.model = model
        model.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(settings.seed)
            for name in names:
                config = LoraConfig(
                    r=settings.rank,
                    lora_alpha=settings.alpha,
                    target_modules=list(targets),
                    init_lora_weights=LORA_INIT[settings.init],
                )
                with warnings.catch_warnings():  # a second named adapter is the point here
                    warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
                    model.add_adapter(config, adapter_name=name)  # type: ignore[operator]
        self._layers = [module for module in model.modules() if isinstance(module, BaseTunerLayer)]
        self._params = {name: self._named_params(name) for name in names}
        for params in self._params.values():
            for param in params.values():
                param.data = param.data.to(dtype)
        for name in names:
            if name != TRAINABLE:
                self.copy(TRAINABLE, name)
        self.activate(TRAINABLE)

    def _named_params(self, name: str) -> dict[str, nn.Parameter]:
        pattern = re.compile(rf"\.(lora_\w+)\.{re.escape(name)}(\.|$)")
        params = {pattern.sub(r".\1\2", key): p for key, p in self.model.named_parameters() if pattern.search(key)}
        if not params:
            raise ValueError(f"adapter {name!r} matched no parameters: check the LoRA targets")
        return params

    def _check(self, name: str) -> None:
        if name not in self._params:
            raise KeyError(f"unknown adapter {name!r}; this policy has {list(self._params)}")

    def activate(self, name: str | None) -> None:
        """Route forwards through adapter `name`, or through the base model alone when None."""
        if name is not None:
            self._check(name)
        for layer in self._layers:
            if name is None:
                layer.enable_adapters(False)
            else:
                layer.set_adapter(name)
                layer.enable_adapters(True)
        for adapter, params in self._params.items():
            for param in params.values():
                param.requires_grad_(adapter == TRAINABLE)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self._params[TRAINABLE].values())

    def parameters(self, name: str) -> dict[str, nn.Parameter]:
        """Adapter `name`'s live weights (on the model's device), keyed as in `state`."""
        self._check(name)
        return dict(self._params[name])

    def state(self, name: str) -> dict[str, Tensor]:
        """CPU copies of adapter `name`'s weights."""
        self._check(name)
        return {key: p.detach().to("cpu", copy=True) for key, p in self._params[name].items()}

    @torch.no_grad()
    def load_state(self, name: str, state: dict[str, Tensor]) -> None:
        self._check(name)
        params = self._params[name]
        if set(state) != set(params):
            missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
            raise KeyError(f"adapter state does not match {name!r}: missing {missing[:3]}, unexpected {unexpected[:3]}")
        for key, param in params.items():
            param.copy_(state[key].to(device=param.device, dtype=param.dtype))

    @torch.no_grad()
    def copy(self, src: str, dst: str) -> None:
        self._check(src)
        self._check(dst)
        for key, param in self._params[dst].items():
            param.copy_(self._params[src][key])

    @torch.no_grad()
    def blend(self, dst: str, src: str, decay: float) -> None:
        """dst <- decay * dst + (1 - decay) * src, in place on the device (decay 0 copies)."""
        self._check(src)
        self._check(dst)
        for key, param in self._params[dst].items():
            param.mul_(decay).add_(self._params[src][key].to(param.dtype), alpha=1.0 - decay)
