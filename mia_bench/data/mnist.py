"""MNIST and Fashion-MNIST from their IDX files (train 60,000 + test 10,000 records, 28x28 grey, 10 classes).

Files live in `<dataset.root>/<name>/` as published (`train-images-idx3-ubyte.gz`, ...; unpacked copies
without `.gz` are read too). Both official parts are pooled by default (`options.parts: [train, test]`):
the membership split, not the publisher's train/test cut, decides who is a member (as privGAN does).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from mia_bench.data.datasets import DATASETS, ArrayDataset, DataInfo, DatasetConfig, reject_options
from mia_bench.data.download import RemoteFile, ensure_files
from mia_bench.errors import DataError

_IDX_DTYPES: dict[int, np.dtype] = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
                                   0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_PARTS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_MD5 = {"train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
             "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
             "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
             "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c"}
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MD5 = {"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
               "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
               "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
               "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a numpy array: magic 0 0 <dtype> <ndim>, big-endian int32 dims, data."""
    raw = Path(path).read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path} is not a valid gzip file ({e}); delete it and download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} holds {data.size} values, its header promises {dims}: the file is truncated")
    return data.reshape(dims)


def _locate(folder: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_dataset(cfg: DatasetConfig, *, name: str, url: str, md5: dict[str, str], home: str) -> ArrayDataset:
    reject_options(cfg, {"parts"})
    parts = list(cfg.options.get("parts", ["train", "test"]))
    if not parts or set(parts) - set(_PARTS):
        raise DataError(f"dataset '{name}': options.parts must be a non-empty subset of {sorted(_PARTS)}, got {parts}")
    folder = Path(cfg.root) / name
    stems = [s for p in parts for s in _PARTS[p]]
    if any(_locate(folder, s) is None for s in stems):
        how = f"Put the IDX files ({', '.join(s + '.gz' for s in stems)}) from {home} into {folder}."
        ensure_files(folder, [RemoteFile(f"{s}.gz", f"{url}{s}.gz", md5[s]) for s in stems
                              if _locate(folder, s) is None], download=cfg.download, dataset=name, how=how)
    xs, ys = [], []
    for p in parts:
        images, labels = (read_idx(_locate(folder, s)) for s in _PARTS[p])  # type: ignore[arg-type]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise DataError(f"{folder}: {p} images {images.shape} and labels {labels.shape} do not match")
        xs.append(images)
        ys.append(labels)
    x = torch.from_numpy(np.concatenate(xs).astype(np.uint8)).unsqueeze(1).float().div_(127.5).sub_(1.0)
    y = torch.from_numpy(np.concatenate(ys).astype(np.int64))
    h, w = x.shape[2:]
    return ArrayDataset(x=x, y=y, info=DataInfo(name=name, shape=(1, h, w), n_classes=10))


@DATASETS.register("mnist")
def load_mnist(cfg: DatasetConfig) -> ArrayDataset:
    """MNIST handwritten digits, 28x28 (IDX files; 70,000 records, 10 classes)."""
    return load_idx_dataset(cfg, name="mnist", url=MNIST_URL, md5=MNIST_MD5, home="http://yann.lecun.com/exdb/mnist/")


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(cfg: DatasetConfig) -> ArrayDataset:
    """Fashion-MNIST clothing images, 28x28 (IDX files; 70,000 records, 10 classes)."""
    return load_idx_dataset(cfg, name="fashion_mnist", url=FASHION_URL, md5=FASHION_MD5,
                            home="https://github.com/zalandoresearch/fashion-mnist")
