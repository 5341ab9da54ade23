"""torch-fidelity integration (the `mia_bench[inception]` extra; CUDA machines, where torchvision imports).

- `inception_fid`: FID on Inception-v3 pool3 features (2048-d), computed by torchmetrics'
  FrechetInceptionDistance with torch-fidelity's port of the TF-FID Inception weights
  (`weights-inception-2015-12-05-6726825d.pth`). Images in [-1, 1] are mapped to uint8 RGB (grey images
  tiled to 3 channels) and resized to 299 px by torch-fidelity's TF1-compatible bilinear resize.
- `register_extractor`: registers the evaluator classifier as torch-fidelity feature extractor
  `mia-classifier`, so GPU users get torch-fidelity's other metrics (KID, precision/recall, ISC) on the
  same features as `fid_classifier`:

      name = register_extractor()
      torch_fidelity.calculate_metrics(input1=fidelity_dataset(real), input2=fidelity_dataset(fake),
          feature_extractor=name, feature_extractor_weights_path=<evaluator file>, fid=True, kid=True,
          feature_layer_fid="features", feature_layer_kid="features", kid_subset_size=..., cuda=True)

Nothing here imports torch-fidelity at module import time: this machine class (CPU) never has it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mia_bench.errors import MiaBenchError
from mia_bench.metrics.base import register_metric

EXTRACTOR_NAME = "mia-classifier"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
HOW_WEIGHTS = (f"Download {INCEPTION_URL} on a machine with internet access and either set "
               f"utility.inception_weights=/path/to/{INCEPTION_FILE} or copy it to {{cache}} (torch-fidelity's cache); "
               "or set utility.fid_inception=off.")


def fidelity_missing() -> str | None:
    """Why Inception FID cannot run here (None when it can)."""
    if importlib.util.find_spec("torch_fidelity") is None:
        return "torch-fidelity is not installed (install the mia_bench[inception] extra on a CUDA machine)"
    if not torch.cuda.is_available():
        return "no CUDA device (the inception extra is for CUDA machines)"
    return None


def inception_weights(configured: str = "") -> str:
    """Path of the Inception weights: the configured file, else torch-fidelity's cache (downloaded there if
    possible). Raises MiaBenchError saying how to provide them."""
    cache = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if configured:
        if not Path(configured).is_file():
            raise MiaBenchError(f"utility.inception_weights={configured} does not exist. " + HOW_WEIGHTS.format(cache=cache))
        return configured
    if not cache.is_file():
        try:
            torch.hub.load_state_dict_from_url(INCEPTION_URL, progress=False, check_hash=False)
        except Exception as e:  # URLError, HTTPError, SSL errors, timeouts: all mean "no download here"
            raise MiaBenchError(f"Inception-v3 weights are not in {cache} and cannot be downloaded ({e}). "
                                + HOW_WEIGHTS.format(cache=cache)) from None
    return str(cache)


def to_uint8_rgb(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1], C in {1, 3} -> (N, 3, H, W) uint8 (grey tiled to RGB)."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, 1|3, H, W) images, got {tuple(x.shape)}")
    u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return u8.expand(-1, 3, -1, -1).contiguous() if u8.shape[1] == 1 else u8


class _Images(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def fidelity_dataset(x: torch.Tensor) -> Dataset:
    """A torch-fidelity input: a Dataset of (3, H, W) uint8 images made from (N, C, H, W) in [-1, 1]."""
    return _Images(to_uint8_rgb(x))


@register_metric("fid_inception", higher_is_better=False, kind="utility",
                 description="FID on Inception-v3 pool3 (torch-fidelity weights, torchmetrics)")
def inception_fid(real: torch.Tensor, fake: torch.Tensor, *, weights: str = "", device: str = "cuda",
                  batch_size: int = 100) -> float:
    """FID between real and fake image sets (N, C, H, W) in [-1, 1] on Inception-v3 2048-d features."""
    missing = fidelity_missing()
    if missing:
        raise MiaBenchError(f"Inception FID unavailable: {missing}")
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=2048, normalize=False, feature_extractor_weights_path=inception_weights(weights))
    metric = metric.to(device)
    for images, is_real in ((real, True), (fake, False)):
        for i in range(0, images.shape[0], batch_size):
            metric.update(to_uint8_rgb(images[i:i + batch_size]).to(device), real=is_real)
    return float(metric.compute())


def register_extractor() -> str:
    """Register the evaluator classifier as torch-fidelity feature extractor `mia-classifier` (idempotent)."""
    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if EXTRACTOR_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(EXTRACTOR_NAME, _extractor_class(torch_fidelity.FeatureExtractorBase))
    return EXTRACTOR_NAME


def _extractor_class(base: type) -> type:
    from mia_bench.metrics.evaluator import load_feature_network

    class MiaClassifierExtractor(base):  # type: ignore[misc, valid-type]
        """uint8 (B, 3, H, W) -> ("features" (B, F), "logits" (B, classes)) of an evaluator file."""

        def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                     **kwargs: Any) -> None:
            super().__init__(name, features_list)
            if not feature_extractor_weights_path:
                raise ValueError("pass feature_extractor_weights_path=<evaluator .pt file> (Evaluator.path)")
            self.net = load_feature_network(Path(feature_extractor_weights_path))
            if len(self.net.shape) != 3:
                raise ValueError("the mia-classifier extractor needs an image evaluator")
            self.requires_grad_(False)
            self.eval()

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            channels, h, w = self.net.shape
            x = x.to(torch.float32) / 127.5 - 1.0
            if channels == 1:
                x = x.mean(dim=1, keepdim=True)  # our grey images were tiled to RGB
            if tuple(x.shape[2:]) != (h, w):
                x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
            feats = self.net(x)
            out = {"features": feats, "logits": self.net.head(feats)}
            return tuple(out[f] for f in self.features_list)

        @staticmethod
        def get_provided_features_list() -> tuple[str, ...]:
            return ("features", "logits")

        @staticmethod
        def get_default_feature_for_isc() -> str:
            return "logits"

        @staticmethod
        def get_default_feature_for_fid() -> str:
            return "features"

        @staticmethod
        def get_default_feature_for_kid() -> str:
            return "features"

        @staticmethod
        def get_default_feature_layer_for_metric(metric: str) -> str:
            return "logits" if metric == "isc" else "features"

        @staticmethod
        def can_be_compiled() -> bool:
            return False

        @staticmethod
        def get_dummy_input_for_compile() -> torch.Tensor:
            return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    return MiaClassifierExtractor
