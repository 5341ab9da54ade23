"""CIFAR-10 from its python batches (`cifar-10-batches-py/data_batch_1..5`, `test_batch`): 60,000 32x32
colour images, 10 classes.

The batches are pickles. They are read with an unpickler that only rebuilds plain containers and numpy
arrays (the globals numpy needs to reconstruct an ndarray); any other global in the file, i.e. any code
the pickle would run, is refused. Both official parts are pooled by default, as for MNIST.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mia_bench.data.datasets import DATASETS, ArrayDataset, DataInfo, DatasetConfig, reject_options
from mia_bench.data.download import RemoteFile, ensure_files, extract_tar
from mia_bench.errors import DataError

ARCHIVE = RemoteFile("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                     "c58f30108f718f92721af3b95e74349a")
FOLDER = "cifar-10-batches-py"
_PARTS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
# what rebuilding a numpy array needs (numpy 1.x and 2.x module paths), and py2 byte strings
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: images (n, 3, 32, 32) uint8, labels (n,) int64."""
    try:
        blob = _ArrayUnpickler(io.BytesIO(Path(path).read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"refusing to read {path}: not a plain CIFAR-10 batch ({e})") from None
    if not isinstance(blob, dict):
        raise DataError(f"{path}: expected a dict batch, got {type(blob).__name__}")
    blob = {k.decode() if isinstance(k, bytes) else k: v for k, v in blob.items()}
    if "data" not in blob or "labels" not in blob:
        raise DataError(f"{path}: batch has no 'data'/'labels' entries (keys: {sorted(blob)})")
    data = np.asarray(blob["data"], dtype=np.uint8)
    labels = np.asarray(blob["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise DataError(f"{path}: data {data.shape} / labels {labels.shape} are not CIFAR-10 shaped")
    return data.reshape(-1, 3, 32, 32), labels


@DATASETS.register("cifar10")
def load_cifar10(cfg: DatasetConfig) -> ArrayDataset:
    """CIFAR-10, 32x32 colour (python batches; 60,000 records, 10 classes)."""
    reject_options(cfg, {"parts"})
    parts = list(cfg.options.get("parts", ["train", "test"]))
    if not parts or set(parts) - set(_PARTS):
        raise DataError(f"dataset 'cifar10': options.parts must be a non-empty subset of {sorted(_PARTS)}")
    home = Path(cfg.root) / "cifar10"
    folder = home / FOLDER
    names = [n for p in parts for n in _PARTS[p]]
    if any(not (folder / n).is_file() for n in names):
        how = (f"Unpack cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) into {home}, "
               f"so that {folder}/data_batch_1 exists.")
        archive = ensure_files(home, [ARCHIVE], download=cfg.download, dataset="cifar10", how=how)[0]
        extract_tar(archive, home)
        if any(not (folder / n).is_file() for n in names):
            raise DataError(f"{archive} did not contain {FOLDER}/{names[0]}. {how}")
    batches = [read_batch(folder / n) for n in names]
    x = torch.from_numpy(np.concatenate([b[0] for b in batches])).float().div_(127.5).sub_(1.0)
    y = torch.from_numpy(np.concatenate([b[1] for b in batches]))
    return ArrayDataset(x=x, y=y, info=DataInfo(name="cifar10", shape=(3, 32, 32), n_classes=10))
