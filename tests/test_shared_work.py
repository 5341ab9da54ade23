"""Work a run shares instead of repeating: a latent search asked for twice (GAN-Leaks and its calibrated form
search the target alike), and the LiRA statistics of a bank (the natural bank is every defense's reference).
Sharing must return what the work itself would, and never when any input differs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mia_bench import shadows
from mia_bench.attacks import ATTACKS, AccessLevel, Recipe, make_view
from mia_bench.attacks.base import GeneratorQuery
from mia_bench.config import load_run
from mia_bench.nets import latent
from mia_bench.nets.latent import SearchConfig, reconstruct, reconstruct_many
from mia_bench.protocol import LiraStatistics, make_design, releases


class Counting:
    """A linear generator that counts the latents it was queried with."""

    def __init__(self, seed: int, source: object | None) -> None:
        self.w = torch.randn(4, 64, generator=torch.Generator().manual_seed(seed)) * 0.3
        self.calls, self.z_dim, self.n_classes, self.differentiable = 0, 4, 0, True
        self.source = source

    def query(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += z.shape[0]
        return torch.tanh(z @ self.w)

    def draw_latent(self, n: int, g: torch.Generator) -> torch.Tensor:
        return torch.randn(n, 4, generator=g)


CFG = SearchConfig(method="es", steps=5, population=4, init_draws=100)
X = torch.rand(20, 64) * 2 - 1


def test_a_search_is_shared_only_when_generator_records_settings_and_seed_all_match():
    a, b = Counting(0, object()), Counting(1, object())
    alone = reconstruct(a, X, None, CFG, seed=0)
    with latent.shared_searches():
        first = reconstruct(a, X, None, CFG, seed=0)
        calls = a.calls
        again = reconstruct(a, X, None, CFG, seed=0)
        assert a.calls == calls  # answered from memory
        for kwargs in ({"seed": 1}, {"cfg": SearchConfig(method="es", steps=6, population=4, init_draws=100)},
                       {"x": X[:10]}):
            before = a.calls
            reconstruct(a, kwargs.get("x", X), None, kwargs.get("cfg", CFG), seed=kwargs.get("seed", 0))
            assert a.calls > before, kwargs  # searched again
        before = b.calls
        reconstruct(b, X, None, CFG, seed=0)
        assert b.calls > before  # another generator
        # the evolution strategy deals its draws over the whole batch: a generator searched beside another is
        # a different search from the same generator alone, and is not answered by it
        pair = reconstruct_many([a, b], X, None, CFG, seed=0)
        assert not torch.equal(pair[0], first)
    torch.testing.assert_close(first, alone, rtol=0, atol=0)
    torch.testing.assert_close(again, alone, rtol=0, atol=0)
    before = a.calls
    reconstruct(a, X, None, CFG, seed=0)
    assert a.calls > before  # outside the block nothing is remembered


def test_a_generator_nothing_identifies_is_always_searched():
    g = Counting(0, None)
    with latent.shared_searches():
        reconstruct(g, X, None, CFG, seed=0)
        before = g.calls
        reconstruct(g, X, None, CFG, seed=0)
        assert g.calls > before


@pytest.fixture(scope="module")
def design_and_models():
    resolved = load_run(suite="digits", defense="none")
    data, design = make_design(resolved, 0)
    recipe = Recipe.of(resolved, data.info)
    models = [shadows._fresh(recipe, 500, seed) for seed in (1, 2, 3)]
    return resolved, data, design, recipe, models


def test_every_view_of_one_model_has_one_token_and_it_reveals_nothing(design_and_models):
    *_, models = design_and_models
    empty = releases(models[:1], 4, 0)[0]
    first = make_view(models[0], AccessLevel.GENERATOR, empty).generator
    assert isinstance(first, GeneratorQuery)
    assert make_view(models[0], AccessLevel.WHITE_BOX, empty).generator.source is first.source
    assert make_view(models[1], AccessLevel.GENERATOR, empty).generator.source is not first.source
    assert not hasattr(first.source, "__dict__") and not type(first.source).__slots__


def _bank(models, recipe, design) -> shadows.ShadowBank:
    return shadows.ShadowBank(models=models, record_ids=design.population,
                              members=np.ones((len(models), design.population.size), bool), recipe=recipe,
                              digest="a" * 64, stacked=False, seconds=0.0, cached=False)


def test_lira_statistics_are_kept_on_disk_for_the_same_weights_only(design_and_models, tmp_path, monkeypatch):
    resolved, data, design, recipe, models = design_and_models
    bank = _bank(models, recipe, design)
    rel = releases(models, 8, 0)
    attack = ATTACKS.get("lira_wb")(config=resolved.attack_params["lira_wb"], seed=0)
    computed = LiraStatistics(data, design, 0, tmp_path).get(attack, bank, rel)
    assert computed.shape == (3, design.population.size) and len(list(tmp_path.glob("*.npz"))) == 1
    assert np.array_equal(computed, LiraStatistics(data, design, 0).get(attack, bank, rel))  # = no cache at all

    def refuse(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(type(attack), "target_losses", refuse)
    assert np.array_equal(LiraStatistics(data, design, 0, tmp_path).get(attack, bank, rel), computed)
    with pytest.raises(AssertionError, match="computed again"):  # another seed: other auxiliary records
        LiraStatistics(data, design, 1, tmp_path).get(attack, bank, rel)
    with torch.no_grad():  # the same digest, retrained weights (a DP bank draws fresh noise)
        next(models[0].players["discriminator"].parameters()).add_(0.01)
    with pytest.raises(AssertionError, match="computed again"):
        LiraStatistics(data, design, 0, tmp_path).get(attack, bank, rel)
