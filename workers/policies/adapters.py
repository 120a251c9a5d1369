"""Two named LoRA adapters on one denoiser (peft): `default` trains, `old` samples, none = the frozen base.

Any diffusers model with `add_adapter` (FLUX, Qwen-Image) works. peft's own switching also flips
`requires_grad` (the active adapter becomes trainable), so every switch here re-asserts the one rule
the trainer relies on: only `default`'s LoRA weights require grad, whichever adapter is active.
Adapter states are keyed without the adapter's name (`...to_q.lora_A.weight`), so one adapter's
state loads into another. LoRA weights are kept in float32 even on a bf16 base (peft casts the
activations around them), so AdamW updates and the old-adapter blend do not round to bf16.

`per_sample` routes each sample of one batch through its own adapter (peft's mixed-batch forward:
its LoRA layers take an `adapter_names` list, "__base__" for the bare base), so the learner gets
`old`'s and the base's velocities from one forward of a doubled batch instead of two.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from peft import LoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import Tensor, nn

from workers.policies.base import ADAPTERS, LORA_INIT, SAMPLING, TRAINABLE, LoraSettings

# peft's name for "no adapter" in a mixed batch (LoraLayer._mixed_batch_forward skips it).
BASE = "__base__"


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
        self._active: str | None = TRAINABLE
        self._route(TRAINABLE, enable=True)

    def _named_params(self, name: str) -> dict[str, nn.Parameter]:
        pattern = re.compile(rf"\.(lora_\w+)\.{re.escape(name)}(\.|$)")
        params = {pattern.sub(r".\1\2", key): p for key, p in self.model.named_parameters() if pattern.search(key)}
        if not params:
            raise ValueError(f"adapter {name!r} matched no parameters: check the LoRA targets")
        return params

    def _check(self, name: str) -> None:
        if name not in self._params:
            raise KeyError(f"unknown adapter {name!r}; this policy has {list(self._params)}")

    @property
    def active(self) -> str | None:
        """The adapter forwards go through now (None: the bare base)."""
        return self._active

    def activate(self, name: str | None) -> None:
        """Route forwards through adapter `name`, or through the base model alone when None.

        A no-op when `name` is routed already: peft's switching walks every LoRA layer and parameter
        (tens of ms on FLUX), and only this class moves the routing.
        """
        if name is not None:
            self._check(name)
        if name != self._active:
            self._route(name, enable=self._active is None)

    def _route(self, name: str | None, *, enable: bool) -> None:
        """Switch every LoRA layer to `name` (None: adapters off); `enable`: they are off now."""
        for layer in self._layers:
            if name is None:
                layer.enable_adapters(False)
            else:
                if enable:
                    layer.enable_adapters(True)
                layer.set_adapter(name)
        self._active = name
        self._hold_grad_rule()

    def _hold_grad_rule(self) -> None:
        for adapter, params in self._params.items():
            for param in params.values():
                param.requires_grad_(adapter == TRAINABLE)

    @contextmanager
    def per_sample(self, names: Sequence[str | None]) -> Iterator[None]:
        """Inside, a forward of a batch of len(names) samples routes sample i through adapter names[i]
        (None: the frozen base), in one pass: the base layers see the whole batch, each adapter only its rows.

        No-grad forwards only: with gradient checkpointing a backward would recompute the blocks after
        the routing is gone. The routing active before is restored on exit (and the requires_grad rule).
        """
        if torch.is_grad_enabled():
            raise RuntimeError("per_sample is for no-grad forwards (wrap the call in torch.no_grad())")
        if not names:
            raise ValueError("per_sample needs one adapter name per sample, got none")
        for name in names:
            if name is not None:
                self._check(name)
        routing = [BASE if name is None else name for name in names]

        def route(_module: nn.Module, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            return args, {**kwargs, "adapter_names": routing}

        previous = self._active
        handles = [layer.register_forward_pre_hook(route, with_kwargs=True) for layer in self._layers]
        if previous is None:  # a disabled layer would skip the adapters whatever the routing says
            for layer in self._layers:
                layer.enable_adapters(True)
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            if previous is None:
                self._route(None, enable=False)

    def sampling_and_base(self, doubled_forward: Callable[[], Tensor], batch: int) -> tuple[Tensor, Tensor]:
        """`old`'s and the frozen base's outputs for B = `batch` samples from one no-grad forward.

        `doubled_forward` runs the model on the B samples twice over (2B rows: the B, then the same B
        again) and returns (2B, ...); the first B rows go through `old`, the second B through the base.
        """
        with torch.no_grad(), self.per_sample([SAMPLING] * batch + [None] * batch):
            output = doubled_forward()
        if output.shape[0] != 2 * batch:
            raise ValueError(f"the doubled forward gave {output.shape[0]} rows, expected {2 * batch}")
        return output[:batch], output[batch:]

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
