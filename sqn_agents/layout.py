"""What an observation looks like: a vector, or an image with channels first or last, and whether it is a frame stack.

One function, ``observation_layout``, decides it from the space's shape and dtype; the
network choice (``networks.build_q_network``) and the replay choice
(``learner.make_replay``) both read its answer, so they cannot disagree about what an image
stack is. It is a guess from the shape alone: a ``network_factory`` overrides the network
side, ``SQNConfig.replay`` the replay side.

>>> import numpy as np
>>> observation_layout((4, 84, 84), np.uint8)
ObservationLayout(image='channels_first', frame_stack=True)
>>> observation_layout((10, 10, 4), np.uint8)
ObservationLayout(image='channels_last', frame_stack=False)
>>> observation_layout((4,), np.float32)
ObservationLayout(image=None, frame_stack=False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ImageLayout = Literal["channels_first", "channels_last"]


@dataclass(frozen=True)
class ObservationLayout:
    """The layout of one observation (no batch axis)."""

    image: ImageLayout | None
    """``None`` for anything that is not a 3-D image (vectors, 4-D arrays): the network flattens it."""
    frame_stack: bool
    """Channels-first uint8 frames stacked along axis 0, such as Atari's ``(4, 84, 84)``: consecutive
    observations overlap, so ``FrameStackReplayBuffer`` can store each frame once."""


def observation_layout(shape: tuple[int, ...], dtype: np.dtype | type) -> ObservationLayout:
    """Decide the layout of observations of ``shape`` and ``dtype``.

    Image or not: a 3-D shape is an image. Images are square, so the two equal axes are height
    and width: ``(4, 84, 84)`` is channels-first and MinAtar's ``(10, 10, C)`` boards are
    channels-last, including Seaquest's ``(10, 10, 10)``, where every axis is equal and the
    MinAtar/Gymnasium convention (channels last) decides. Non-square images: the channel axis
    is the smaller end.

    Frame stack: uint8, channels-first, 2 to 16 frames, and fewer frames than either image
    side. Correctness never depends on this answer (the frame buffer compares pixels); only
    memory does.
    """
    shape = tuple(int(s) for s in shape)
    image: ImageLayout | None
    if len(shape) != 3:
        image = None
    elif shape[0] == shape[1]:
        image = "channels_last"
    elif shape[1] == shape[2]:
        image = "channels_first"
    else:
        image = "channels_last" if shape[-1] < shape[0] else "channels_first"
    frame_stack = (
        image == "channels_first"
        and np.dtype(dtype) == np.uint8
        and 2 <= shape[0] <= 16
        and shape[0] < min(shape[1], shape[2])
    )
    return ObservationLayout(image=image, frame_stack=frame_stack)


__all__ = ["ImageLayout", "ObservationLayout", "observation_layout"]
