"""OpenCV DIS: accuracy on known motion (sign and axes included), batching, threads, input forms."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import torch

from motionnft.flow import DISFlow, FlowEstimator
from tests.motionnft.flow.known_motion import (
    KnownMotion,
    as_batches,
    end_point_error,
    gaussian_bump,
    translation,
)

# Known motions at 256x256, built once: (kind, motion).
MOTIONS: dict[str, tuple[str, KnownMotion]] = {
    "integer-translation": ("translation", translation(-4, 1, photo="coffee")),
    "subpixel-translation": ("translation", translation(2.5, -1.25, photo="astronaut")),
    "bump-coffee": ("warp", gaussian_bump((4.0, -3.0), photo="coffee")),
    "bump-astronaut": ("warp", gaussian_bump((-3.0, 5.0), photo="astronaut")),
}

# Mean EPE (px) over the central region must stay below these. Measured at 256x256: translations
# ultrafast 0.25-0.29, fast 0.14-0.15, medium 0.06-0.09; bumps ultrafast 0.23-0.37, fast 0.17-0.26,
# medium 0.10-0.15. A wrong sign or swapped axes gives 1.7-8 px on the same motions.
EPE_LIMITS: dict[str, dict[str, float]] = {
    "ultrafast": {"translation": 0.5, "warp": 0.6},
    "fast": {"translation": 0.3, "warp": 0.45},
    "medium": {"translation": 0.2, "warp": 0.3},
}


@pytest.fixture(scope="module")
def medium() -> Iterator[DISFlow]:
    estimator = DISFlow("medium")
    yield estimator
    estimator.close()


@pytest.mark.parametrize("preset", list(EPE_LIMITS))
@pytest.mark.parametrize("motion_name", list(MOTIONS))
def test_dis_recovers_known_motion(preset: str, motion_name: str) -> None:
    kind, motion = MOTIONS[motion_name]
    flow = DISFlow(preset).estimate(motion.source[None], motion.target[None])  # type: ignore[arg-type]

    epe = end_point_error(flow, motion.flow, motion.valid)
    negated = end_point_error(-flow, motion.flow, motion.valid)
    swapped = end_point_error(flow.flip(1), motion.flow, motion.valid)

    assert epe < EPE_LIMITS[preset][kind], f"{preset} on {motion_name}: EPE {epe:.3f} px"
    # A sign or axis bug would make these the small ones.
    assert negated > max(1.0, 3 * epe), f"negated flow fits too well: {negated:.3f} vs {epe:.3f} px"
    assert swapped > max(1.0, 3 * epe), f"axis-swapped flow fits too well: {swapped:.3f} vs {epe:.3f} px"


def test_output_follows_the_protocol(medium: DISFlow) -> None:
    sources, targets, _ = as_batches([MOTIONS["bump-coffee"][1], MOTIONS["integer-translation"][1]])
    flow = medium.estimate(sources, targets)
    assert isinstance(medium, FlowEstimator)
    assert medium.name == "opencv-dis-medium"
    assert flow.shape == (2, 2, 256, 256)
    assert flow.dtype == torch.float32
    assert flow.device == torch.device("cpu")
    assert flow.is_contiguous()


def test_batch_equals_items_and_thread_pool_equals_sequential(medium: DISFlow) -> None:
    sources, targets, _ = as_batches([motion for _, motion in MOTIONS.values()])
    sequential = medium.estimate(sources, targets)
    items = torch.cat([medium.estimate(sources[i : i + 1], targets[i : i + 1]) for i in range(len(sources))])
    pooled_estimator = DISFlow("medium", num_threads=2)
    try:
        pooled = pooled_estimator.estimate(sources, targets)
    finally:
        pooled_estimator.close()
    assert torch.equal(sequential, items)
    assert torch.equal(sequential, pooled)


def test_float_chw_input_gives_the_same_flow_as_uint8(medium: DISFlow) -> None:
    motion = MOTIONS["subpixel-translation"][1]
    as_float = [torch.from_numpy(image[None]).permute(0, 3, 1, 2) / 255.0 for image in (motion.source, motion.target)]
    assert torch.equal(medium.estimate(motion.source[None], motion.target[None]), medium.estimate(*as_float))


def test_concurrent_callers_share_one_estimator_safely(medium: DISFlow) -> None:
    sources, targets, _ = as_batches([motion for _, motion in MOTIONS.values()])
    expected = medium.estimate(sources, targets)
    results: list[torch.Tensor] = []
    lock = threading.Lock()

    def call() -> None:
        flow = medium.estimate(sources, targets)
        with lock:
            results.append(flow)

    workers = [threading.Thread(target=call) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(results) == 4
    assert all(torch.equal(flow, expected) for flow in results)


def test_opencv_runs_single_threaded_inside_each_pair() -> None:
    DISFlow("ultrafast", num_threads=2).close()
    assert cv2.getNumThreads() == 1


def test_bad_arguments_and_tiny_images_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown DIS preset"):
        DISFlow("slow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_threads"):
        DISFlow(num_threads=0)
    tiny = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="H or W >= 12"):
        DISFlow("ultrafast").estimate(tiny, tiny)
    with pytest.raises(ValueError, match="same"):
        DISFlow("ultrafast").estimate(np.zeros((1, 16, 16, 3), np.uint8), np.zeros((2, 16, 16, 3), np.uint8))
