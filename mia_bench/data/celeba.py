"""CelebA aligned faces at 64x64 with identities as groups (member and non-member sets never share a person).

Files in `<dataset.root>/celeba/`: `img_align_celeba/` (the 202,599 aligned 178x218 JPEGs, or the zip it
comes in), `identity_CelebA.txt` ("000001.jpg 2880" per line) and, for labels, `list_attr_celeba.txt`.
Each image is centre-cropped to `options.crop` pixels and resized (antialiased bilinear) to
`options.size`; the label is the binary attribute `options.label` (default `Male`, the mixup paper's
gender task; "" for no labels). The first load writes the preprocessed uint8 array next to the files
(`celeba_<size>_<crop>_<n>_<label>.npz`) and later loads read that.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from mia_bench.data.datasets import DATASETS, ArrayDataset, DataInfo, DatasetConfig, reject_options
from mia_bench.data.download import RemoteFile, ensure_files
from mia_bench.errors import DataError
from mia_bench.io import atomic_save_npz, load_npz

_GDRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="
IMAGES = RemoteFile("img_align_celeba.zip", _GDRIVE + "0B7EVK8r0v71pZjFTYXZWM3FlRnM", "00d2c5bc6d35e252742224ab0c1e8fcb")
IDENTITY = RemoteFile("identity_CelebA.txt", _GDRIVE + "1_ee_0u7vcNLOfNLegJRHmolfH5ICW-XS", "32bd1bd63d3c78cd57e08160ec5ed1e2")
ATTRIBUTES = RemoteFile("list_attr_celeba.txt", _GDRIVE + "0B7EVK8r0v71pblRyaVFSWGxPY0U", "75e246fa4810816ffd6ee81facbd244c")
HOW = ("Download img_align_celeba.zip, identity_CelebA.txt and list_attr_celeba.txt from "
       "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive: Img/ and Anno/) into {folder} "
       "and unzip the images there (img_align_celeba/000001.jpg ...).")


def read_identities(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path}:{i}: expected '<image> <identity>', got {line!r}")
        out[parts[0]] = int(parts[1])
    return out


def read_attribute(path: Path, name: str) -> dict[str, int]:
    """Binary attribute `name` per image, 0/1 (the file stores -1/1)."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
    header = lines[1].split() if len(lines) > 1 else []
    if name not in header:
        raise DataError(f"{path} has no attribute '{name}'; choose one of {header}")
    col = header.index(name) + 1
    return {parts[0]: int(parts[col] == "1") for parts in (ln.split() for ln in lines[2:])}


def _image(path: Path, crop: int, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as f:
        im = f.convert("RGB")
    w, h = im.size
    c = min(crop, w, h)
    left, top = (w - c) // 2, (h - c) // 2
    im = im.crop((left, top, left + c, top + c)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def _images_folder(folder: Path, download: bool) -> Path:
    images = folder / "img_align_celeba"
    if images.is_dir():
        return images
    archive = ensure_files(folder, [IMAGES], download=download, dataset="celeba", how=HOW.format(folder=folder))[0]
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(folder)  # zipfile drops absolute paths and '..' components
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"cannot unpack {archive}: {e}. Delete it and download it again.") from None
    if not images.is_dir():
        raise DataError(f"{archive} did not contain img_align_celeba/. " + HOW.format(folder=folder))
    return images


def _preprocess(folder: Path, cfg: DatasetConfig, size: int, crop: int, limit: int, label: str) -> dict[str, np.ndarray]:
    how = HOW.format(folder=folder)
    ident_path = ensure_files(folder, [IDENTITY], download=cfg.download, dataset="celeba", how=how)[0]
    ids = read_identities(ident_path)
    names = sorted(ids)[:limit] if limit else sorted(ids)
    labels = np.zeros(len(names), np.int64)
    if label:
        attr = read_attribute(ensure_files(folder, [ATTRIBUTES], download=cfg.download, dataset="celeba", how=how)[0],
                              label)
        labels = np.array([attr[n] for n in names], np.int64)
    images = _images_folder(folder, cfg.download)
    missing = [n for n in names if not (images / n).is_file()]
    if missing:
        raise DataError(f"{len(missing)} images listed in {ident_path} are missing from {images}, e.g. {missing[:3]}")
    x = np.stack([_image(images / n, crop, size) for n in names])
    return {"x": x, "y": labels, "groups": np.array([ids[n] for n in names], np.int64)}


@DATASETS.register("celeba")
def load_celeba(cfg: DatasetConfig) -> ArrayDataset:
    """CelebA aligned faces, 64x64 colour, identity groups (splits never share a person); label: an attribute."""
    reject_options(cfg, {"size", "crop", "max_records", "label"})
    size, crop = int(cfg.options.get("size", 64)), int(cfg.options.get("crop", 108))
    limit, label = int(cfg.options.get("max_records", 0)), str(cfg.options.get("label", "Male"))
    folder = Path(cfg.root) / "celeba"
    cache = folder / f"celeba_{size}_{crop}_{limit or 'all'}_{label or 'nolabel'}.npz"
    blob = load_npz(cache) if cache.is_file() else None
    if blob is None:
        blob = _preprocess(folder, cfg, size, crop, limit, label)
        atomic_save_npz(cache, **blob)
    x = torch.from_numpy(blob["x"]).float().div_(127.5).sub_(1.0)  # one float copy (GBs for all of CelebA)
    info = DataInfo(name="celeba", shape=(3, size, size), n_classes=2 if label else 1)
    return ArrayDataset(x=x, y=torch.from_numpy(blob["y"]), info=info, groups=blob["groups"])
