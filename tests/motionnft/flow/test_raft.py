"""torchvision RAFT: weight loading (never downloading), padding, batching and input forms.

Without pretrained weights the flow's accuracy cannot be tested here; these tests use random weights
saved to a checkpoint, so every estimator they build is the same network.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.optical_flow import raft_small

from motionnft.flow import DISFlow, FlowEstimator, RAFTFlow
from motionnft.flow.raft import crop_to_size, pad_for_raft, pretrained_cache_path
from tests.motionnft.flow.known_motion import photograph

SMALL_PRETRAINED_FILE = "raft_small_C_T_V2-01064c6d.pth"


@pytest.fixture(autouse=True)
def empty_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """torchvision's cache is an empty folder, whatever this machine has downloaded."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


@pytest.fixture(scope="module")
def small_state() -> dict[str, torch.Tensor]:
    """A randomly initialised (seeded) raft_small state dict."""
    torch.manual_seed(1234)
    return raft_small().state_dict()


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory, small_state: dict[str, torch.Tensor]) -> Path:
    path = tmp_path_factory.mktemp("raft") / "raft_small_random.pth"
    torch.save(small_state, path)
    return path


@pytest.fixture(scope="module")
def small_estimator(small_checkpoint: Path) -> RAFTFlow:
    return RAFTFlow("raft_small", checkpoint=small_checkpoint, num_flow_updates=2)


def image_pairs(batch: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(B, H, W, 3)`` sources and targets: crops of one photograph, each target shifted."""
    photo = photograph("astronaut", 256)
    sources = np.stack([photo[8 * i : 8 * i + height, 5 * i : 5 * i + width] for i in range(batch)])
    targets = np.stack([photo[8 * i + 2 : 8 * i + 2 + height, 5 * i + 3 : 5 * i + 3 + width] for i in range(batch)])
    return sources, targets


def assert_same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[name].cpu(), state[name]) for name in state)


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_checkpoint_loads_bit_exactly(
    tmp_path: Path, small_state: dict[str, torch.Tensor], wrapper: str | None
) -> None:
    path = tmp_path / "checkpoint.pth"
    torch.save(small_state if wrapper is None else {wrapper: small_state, "step": 7}, path)
    estimator = RAFTFlow("raft_small", checkpoint=path)
    assert_same_weights(estimator.model, small_state)
    assert estimator.weights_source == str(path)
    assert estimator.name == "torchvision-raft_small"
    assert not estimator.model.training


def test_checkpoint_of_the_other_variant_is_refused_by_name(small_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match=rf"{small_checkpoint.name}.*does not fit torchvision raft_large"):
        RAFTFlow("raft_large", checkpoint=small_checkpoint)


def test_missing_checkpoint_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "raft.pth"
    with pytest.raises(FileNotFoundError, match=rf"{missing.name} does not exist"):
        RAFTFlow("raft_small", checkpoint=missing)


def test_file_without_a_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not_weights.pth"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        RAFTFlow("raft_small", checkpoint=path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="could not be read"):
        RAFTFlow("raft_small", checkpoint=path)


def test_no_weights_anywhere_says_where_to_put_them(empty_hub: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        RAFTFlow("raft_small")
    message = str(caught.value)
    assert str(empty_hub / "checkpoints" / SMALL_PRETRAINED_FILE) in message
    assert "checkpoint=" in message and "allow_random_weights=True" in message
    assert not (empty_hub / "checkpoints").exists()  # nothing was downloaded


def test_random_weights_only_when_allowed_and_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="motionnft.flow.raft"):
        estimator = RAFTFlow("raft_small", allow_random_weights=True)
    assert estimator.weights_source == "random"
    assert "RANDOM weights" in caplog.text


def test_cached_pretrained_file_is_used_when_present(empty_hub: Path, small_state: dict[str, torch.Tensor]) -> None:
    cached = pretrained_cache_path("raft_small")
    assert cached == empty_hub / "checkpoints" / SMALL_PRETRAINED_FILE
    cached.parent.mkdir(parents=True)
    torch.save(small_state, cached)
    estimator = RAFTFlow("raft_small")
    assert estimator.weights_source == str(cached)
    assert_same_weights(estimator.model, small_state)


@pytest.mark.parametrize(("height", "width", "padded"), [(61, 77, (128, 128)), (130, 201, (136, 208))])
def test_padding_round_trip_is_exact(height: int, width: int, padded: tuple[int, int]) -> None:
    images = torch.randn(2, 3, height, width)
    padded_images, size = pad_for_raft(images)
    assert padded_images.shape[-2:] == padded
    assert size == (height, width)
    assert torch.equal(crop_to_size(padded_images, size), images)
    # Bottom/right replicate padding: the last row and column are repeated.
    assert torch.equal(padded_images[..., -1, :width], images[..., -1, :])
    assert torch.equal(padded_images[..., :height, -1], images[..., :, -1])


def test_sizes_raft_accepts_are_not_padded() -> None:
    images = torch.randn(1, 3, 128, 136)
    assert pad_for_raft(images)[0] is images


def test_odd_sized_images_give_flow_of_their_own_size(small_estimator: RAFTFlow) -> None:
    sources, targets = image_pairs(batch=2, height=61, width=77)
    flow = small_estimator.estimate(sources, targets)
    assert isinstance(small_estimator, FlowEstimator)
    assert flow.shape == (2, 2, 61, 77)
    assert flow.dtype == torch.float32
    assert flow.is_contiguous()
    assert torch.isfinite(flow).all()
    assert not flow.is_inference()
    flow -= flow.mean()  # an ordinary tensor: callers may work on it in place


def test_batch_equals_items(small_estimator: RAFTFlow) -> None:
    sources, targets = image_pairs(batch=3, height=64, width=64)
    batched = small_estimator.estimate(sources, targets)
    items = torch.cat([small_estimator.estimate(sources[i : i + 1], targets[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, items, atol=1e-4, rtol=1e-4)


def test_uint8_and_float_inputs_agree(small_estimator: RAFTFlow) -> None:
    sources, targets = image_pairs(batch=2, height=64, width=64)
    as_float = [torch.from_numpy(images).permute(0, 3, 1, 2) / 255.0 for images in (sources, targets)]
    before = as_float[0].clone()
    from_uint8 = small_estimator.estimate(sources, targets)
    from_float = small_estimator.estimate(*as_float)
    assert torch.allclose(from_uint8, from_float, atol=1e-5)
    assert torch.equal(as_float[0], before)  # the caller's tensor is left alone


def test_bad_arguments_are_refused(small_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="unknown RAFT variant"):
        RAFTFlow("raft_huge", checkpoint=small_checkpoint)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_flow_updates"):
        RAFTFlow("raft_small", checkpoint=small_checkpoint, num_flow_updates=0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        RAFTFlow("raft_small", checkpoint=small_checkpoint, dtype=torch.int32)


def test_bfloat16_runs_under_autocast_close_to_float32(small_checkpoint: Path, small_estimator: RAFTFlow) -> None:
    sources, targets = image_pairs(batch=1, height=64, width=64)
    reduced = RAFTFlow("raft_small", checkpoint=small_checkpoint, num_flow_updates=2, dtype=torch.bfloat16)
    flow = reduced.estimate(sources, targets)
    assert flow.dtype == torch.float32
    assert next(reduced.model.parameters()).dtype == torch.float32
    reference = small_estimator.estimate(sources, targets)
    # bfloat16 keeps 8 bits of mantissa: about 1 % of the flow's scale.
    assert (flow - reference).abs().max() <= 0.05 * reference.abs().max() + 0.05


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_raft_on_cuda_matches_cpu(small_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # TF32 convolutions (cuDNN's default) moved this random-weight flow by up to 0.05 px out of 20
    # on an H200; without TF32 CPU and GPU agreed to 5e-5 px, so any larger gap is a real bug.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    sources, targets = image_pairs(batch=4, height=96, width=120)
    on_cpu = RAFTFlow("raft_small", checkpoint=small_checkpoint).estimate(sources, targets)
    on_gpu = RAFTFlow("raft_small", device="cuda", checkpoint=small_checkpoint)
    flow = on_gpu.estimate(sources, targets)
    assert flow.device.type == "cuda"
    assert flow.shape == (4, 2, 96, 120)
    items = torch.cat([on_gpu.estimate(sources[i : i + 1], targets[i : i + 1]) for i in range(4)])
    assert torch.allclose(flow.cpu(), on_cpu, atol=1e-3, rtol=1e-4)
    assert torch.allclose(flow, items, atol=1e-3, rtol=1e-4)
    assert DISFlow(device="cuda").estimate(sources, targets).device.type == "cuda"
