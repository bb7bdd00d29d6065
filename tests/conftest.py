"""Shared fixtures: one tiny synthetic TAU22-layout dataset per session, and a shared waveform cache."""

import os
from pathlib import Path

# One thread per process: the suite runs on shared 2-core machines where oversubscribed OpenMP threads
# slow small convolutions by an order of magnitude. Set before torch is imported; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from edgeasc.models.layers import randomize_batchnorm  # noqa: E402,F401  (tests import it from here)

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def load_benchmarks_module(name: str):
    """`benchmarks/<name>.py` (`name` may hold a folder) as a module (the benchmarks are scripts, not a package); tests import it from here."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name.replace('/', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from edgeasc.synth.generate import generate_dataset

    root = tmp_path_factory.mktemp("synth") / "tiny"
    generate_dataset(root, scale="tiny", seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture()
def fast_overrides(cache_dir):
    """A tiny model and a couple of short epochs: seconds on a laptop CPU."""
    return (
        "model.name=test_cpmobile",
        "optim.epochs=2",
        "optim.batch_size=32",
        "optim.warmup_steps=2",
        "optim.lr=0.003",
        f"data.cache_dir={str(cache_dir)!r}",
    )


