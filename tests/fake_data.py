"""Small files in each real dataset's on-disk format, written by tests (nothing is downloaded)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

ADULT_ROW = "{age}, {wc}, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, {sex}, 0, 0, 40, United-States, {inc}"


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> Path:
    """IDX: 0 0 <0x08 = uint8> <ndim>, big-endian uint32 dims, raw bytes."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    path = Path(f"{path}.gz") if gz else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_mnist_like(folder: Path, *, n_train: int = 120, n_test: int = 40, seed: int = 0, gz: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(folder / f"{stem}-images-idx3-ubyte", images, gz=gz)
        write_idx(folder / f"{stem}-labels-idx1-ubyte", labels, gz=gz)
        out[stem] = (images, labels)
    return out


def write_cifar_batches(folder: Path, *, per_batch: int = 20, seed: int = 0) -> dict:
    """cifar-10-batches-py: pickled dicts with byte keys (as the Python 2 originals load), protocol 2."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        blob = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(blob, protocol=2))
        out[name] = (data, labels)
    return out


def write_celeba(folder: Path, *, n: int = 60, per_identity: int = 3, side: tuple[int, int] = (36, 44)) -> dict:
    """img_align_celeba/*.jpg (solid colours), identity_CelebA.txt and list_attr_celeba.txt."""
    from PIL import Image

    images = folder / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    identities = {name: 100 + i // per_identity for i, name in enumerate(names)}
    male = {name: i % 2 for i, name in enumerate(names)}
    for i, name in enumerate(names):
        colour = (i * 4 % 256, 255 - i * 4 % 256, 128)
        Image.new("RGB", side, colour).save(images / name, quality=95)
    (folder / "identity_CelebA.txt").write_text("".join(f"{k} {v}\n" for k, v in identities.items()))
    header = "5_o_Clock_Shadow Male Smiling"
    rows = "".join(f"{k} -1 {1 if male[k] else -1}  1\n" for k in names)
    (folder / "list_attr_celeba.txt").write_text(f"{n}\n{header}\n{rows}")
    return {"identities": identities, "male": male}


def write_binary_npz(path: Path, *, n: int = 300, d: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.random((n, d)) < np.linspace(0.05, 0.6, d)).astype(np.int8)
    x[:, 1] = x[:, 0]  # a predictable code, so DWpre has signal
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x)
    return x


def write_adult(folder: Path, *, n_train: int = 150, n_test: int = 60, seed: int = 0) -> int:
    """adult.data (no header) and adult.test (a '|1x3 Cross validator' line, labels ending in '.')."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def rows(n: int, dot: str) -> str:
        return "".join(ADULT_ROW.format(age=int(rng.integers(17, 90)), wc=rng.choice(["Private", "State-gov", "?"]),
                                        sex=rng.choice(["Male", "Female"]),
                                        inc=rng.choice(["<=50K", ">50K"]) + dot) + "\n" for _ in range(n))

    (folder / "adult.data").write_text(rows(n_train, ""))
    (folder / "adult.test").write_text("|1x3 Cross validator\n" + rows(n_test, ".") + "\n")
    return n_train + n_test
