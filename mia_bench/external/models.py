"""The user's models, loaded without running pickled code: a TorchScript file (torch.jit.load) or a
`module:callable` that mia_bench imports and calls. What each must offer:

  generator      an object with `sample(n) -> (n, *record shape)` (tensor or array, or for text tables a
                 DataFrame / dict of columns), and for the latent-search attacks `generate(z) -> records` with
                 `z_dim`; a TorchScript module is `forward(z)` with an int attribute `z_dim` (or `latent_dim`).
  discriminator  a callable `d(x) -> (n,)` or `(n, 1)` scores, higher = real (a TorchScript module's forward).
  recipe         a callable `recipe(records, seed=k) -> generator` that trains a fresh model of the user's
                 recipe on `records` (the --train file's form: an array in its units, or a dict of columns).
Outputs are taken in the --train file's value range and encoded as the real records are (encoding.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mia_bench.attacks.base import GeneratorQuery
from mia_bench.errors import MiaBenchError
from mia_bench.external.arguments import spec_parts
from mia_bench.external.encoding import Affine, TextTable


def load_spec(spec: str, what: str) -> Any:
    """A TorchScript module for a path that exists, else the object `module:callable()` returns (for
    --recipe, the callable itself)."""
    if Path(spec).is_file():
        try:
            return torch.jit.load(spec, map_location="cpu")
        except Exception as e:  # noqa: BLE001 - any failure to load is the user's file to fix
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MiaBenchError(f"{what} {spec} is not a loadable TorchScript file ({first}); save the model with "
                                "torch.jit.script(model).save(path) (pickled models are never loaded)") from None
    module_name, attr = spec_parts(spec, what)  # type: ignore[misc] - not a file, so module:callable
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise MiaBenchError(f"{what} '{spec}': cannot import module '{module_name}' ({e}); put it on PYTHONPATH "
                            "or run from its folder") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise MiaBenchError(f"{what} '{spec}': module '{module_name}' has no callable '{attr}'; define it, "
                            f"e.g. def {attr}(): return model")
    if what == "--recipe":
        return fn
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - the user's code failed: say where
        raise MiaBenchError(f"{what} '{spec}' raised {type(e).__name__}: {e}; fix that function") from None


@dataclass
class UserGenerator:
    """sample(n) -> (n, *shape) float32 in mia_bench's space; query: the latent interface, or None."""

    sample: Callable[[int], np.ndarray]
    query: GeneratorQuery | None
    source: str


def _z_dim(obj: Any) -> int | None:
    for name in ("z_dim", "latent_dim"):
        v = getattr(obj, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def to_records(out: Any, *, shape: tuple[int, ...], encoding: Affine | TextTable, n: int, what: str) -> np.ndarray:
    """A model's output -> (n, *shape) float32 encoded as the real records; MiaBenchError on the wrong form."""
    if isinstance(encoding, TextTable):
        if hasattr(out, "columns"):  # a DataFrame
            out = {c: out[c].to_numpy() for c in out.columns}
        if not isinstance(out, dict):
            raise MiaBenchError(f"{what} returned {type(out).__name__}; for a text table return a DataFrame or "
                                "a dict of columns")
        header = tuple(c.name for c in encoding.columns)
        missing = [c for c in header if c not in out]
        if missing:
            raise MiaBenchError(f"{what} returned no column(s) {missing}; return every column of --train")
        cells = np.stack([np.asarray([str(v) for v in np.asarray(out[c]).tolist()]) for c in header], axis=1)
        return encoding.encode(header, cells, what)
    arr = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    if arr.shape[:1] != (n,) or int(np.prod(arr.shape[1:])) != int(np.prod(shape)):
        raise MiaBenchError(f"{what} returned shape {arr.shape} for {n} records; it must return (n, "
                            f"{', '.join(map(str, shape))}) records like --train's")
    if not np.isfinite(arr).all():
        raise MiaBenchError(f"{what} returned NaN or inf; check the model's weights")
    return encoding.encode(arr.astype(np.float64).reshape(n, *shape))


def as_generator(obj: Any, *, shape: tuple[int, ...], encoding: Affine | TextTable, what: str, seed: int) -> UserGenerator:
    """Wrap what load_spec (or a recipe) returned; check it on a small batch."""
    z_dim = _z_dim(obj)
    is_script = isinstance(obj, torch.jit.ScriptModule)
    gen_fn = obj.generate if hasattr(obj, "generate") else (obj if is_script else None)
    if hasattr(obj, "sample") and not is_script:
        def raw_sample(n: int) -> Any:
            return obj.sample(n)
    elif gen_fn is not None and z_dim is not None:
        def raw_sample(n: int) -> Any:
            with torch.no_grad():
                return gen_fn(torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed)))
    else:
        raise MiaBenchError(f"{what}: the model has no sample(n) and no generate(z) with an int z_dim; give it "
                            "sample(n) -> records, or (TorchScript) forward(z) and an attribute z_dim")

    def sample(n: int) -> np.ndarray:
        try:
            out = raw_sample(n)
        except MiaBenchError:
            raise
        except Exception as e:  # noqa: BLE001
            raise MiaBenchError(f"{what}: sample({n}) raised {type(e).__name__}: {e}; fix the model") from None
        return to_records(out, shape=shape, encoding=encoding, n=n, what=f"{what} sample({n})")

    sample(2)  # fail now, before any attack runs
    query = None
    if gen_fn is not None and z_dim is not None and isinstance(encoding, Affine):
        query = _query(gen_fn, z_dim, shape, encoding, what)
    return UserGenerator(sample=sample, query=query, source=what)


def _query(gen_fn: Callable, z_dim: int, shape: tuple[int, ...], encoding: Affine, what: str) -> GeneratorQuery:
    def query(z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = gen_fn(z.float())
        if not isinstance(out, torch.Tensor) or out.shape[0] != z.shape[0]:
            raise MiaBenchError(f"{what}: generate(z) must return a tensor of {z.shape[0]} records")
        return encoding.encode_torch(out.reshape(z.shape[0], *shape))

    try:
        query(torch.zeros(2, z_dim))
    except MiaBenchError:
        raise
    except Exception as e:  # noqa: BLE001
        raise MiaBenchError(f"{what}: generate(z) on z of shape (2, {z_dim}) raised {type(e).__name__}: {e}; "
                            "check z_dim") from None
    return GeneratorQuery(z_dim=z_dim, n_classes=0, query=query, differentiable=True,
                          draw_latent=lambda n, g: torch.randn(n, z_dim, generator=g))


def as_discriminator(obj: Any, *, shape: tuple[int, ...], encoding: Affine | TextTable,
                     what: str) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """d(x in mia_bench's space (B, *shape)) -> (B,) scores; checked on two records."""
    if not callable(obj) or isinstance(encoding, TextTable):
        raise MiaBenchError(f"{what}: give a callable d(x) -> (n,) scores on numeric records (text tables: "
                            "use --synthetic or --recipe)")

    def disc(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = obj(encoding.decode_torch(x.double()).float())
        if isinstance(out, np.ndarray):  # a recipe model's numpy scores (no gradients needed of them)
            out = torch.from_numpy(out)
        if not isinstance(out, torch.Tensor) or out.reshape(-1).shape[0] != x.shape[0]:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise MiaBenchError(f"{what} returned {got} for {x.shape[0]} records; it must return (n,) or (n, 1) scores")
        return out.reshape(-1)

    try:
        disc(torch.zeros(2, *shape))
    except MiaBenchError:
        raise
    except Exception as e:  # noqa: BLE001
        raise MiaBenchError(f"{what} failed on records of shape {shape}: {type(e).__name__}: {e}") from None
    return disc
