"""Image (DCGAN-style) and tabular networks, and the factory defenses pick their players from."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import quick
from mia_bench.data.datasets import DataInfo, DataKind
from mia_bench.defenses.none import GANConfig
from mia_bench.nets.dcgan import ConvDiscriminator, ConvGenerator, conv_plan
from mia_bench.nets.factory import build_players, resolve_net
from mia_bench.nets.mlp import MLPDiscriminator, MLPGenerator
from mia_bench.nets.tabular import TabularGenerator
from mia_bench.runner import fit_defense


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)])
@pytest.mark.parametrize("n_classes", [0, 10])
def test_conv_players_fit_the_image_shape(shape, n_classes):
    g = ConvGenerator(z_dim=16, out_shape=shape, n_classes=n_classes, channels=8)
    d = ConvDiscriminator(in_shape=shape, n_classes=n_classes, channels=8, norm="layer")
    y = F.one_hot(torch.arange(4) % 10, 10).float() if n_classes else None
    x = g(torch.randn(4, 16), y)
    assert x.shape == (4, *shape) and x.abs().max() <= 1
    assert d(x, y).shape == (4,)
    feats = d.features(x)
    assert feats[-1].shape == (4, d.feature_dim) and all(f.dim() == 2 for f in feats)


def test_conv_plan_and_errors():
    assert conv_plan(28) == (7, 2) and conv_plan(32) == (4, 3) and conv_plan(64) == (4, 4) and conv_plan(8) == (4, 1)
    with pytest.raises(ValueError, match="square side"):
        conv_plan(30)
    with pytest.raises(ValueError, match="square"):
        ConvGenerator(z_dim=4, out_shape=(1, 28, 32))


def test_discriminator_has_no_cross_sample_coupling():
    """No BatchNorm in D: a sample's score does not depend on the rest of the batch (WGAN-GP, DP-SGD)."""
    d = ConvDiscriminator(in_shape=(1, 28, 28), channels=8, norm="layer").train()
    x = torch.randn(6, 1, 28, 28)
    torch.testing.assert_close(d(x)[:2], d(x[:2]))


def test_tabular_generator_heads():
    g = TabularGenerator(z_dim=8, dim=7, categorical=[(1, 3), (5, 2)], hidden=[16])
    x = g(torch.randn(32, 8))
    assert x.shape == (32, 7) and x.abs().max() <= 1
    for a, b in [(1, 3), (5, 2)]:  # 2p - 1 over a softmax block sums to 2 - size
        torch.testing.assert_close(x[:, a:a + b].sum(1), torch.full((32,), 2.0 - b))
    x.sum().backward()  # differentiable end to end (latent-search attacks need it)
    with pytest.raises(ValueError, match="do not fit"):
        TabularGenerator(z_dim=2, dim=3, categorical=[(2, 2)])


def test_factory_picks_by_data_and_keeps_digits_on_mlps():
    digits = DataInfo(name="digits", shape=(1, 8, 8), n_classes=10)
    mnist = DataInfo(name="mnist", shape=(1, 28, 28), n_classes=10)
    table = DataInfo(name="t", shape=(7,), n_classes=2, kind=DataKind.TABULAR, categorical=((1, 3),))
    assert resolve_net(digits) == "mlp" and resolve_net(mnist) == "conv" and resolve_net(digits, "conv") == "conv"
    with pytest.raises(ValueError, match="needs"):
        resolve_net(table, "conv")
    binary = DataInfo(name="b", shape=(5,), n_classes=1, kind=DataKind.TABULAR, binary=True)
    assert isinstance(build_players(table, GANConfig())[0], TabularGenerator)
    assert isinstance(build_players(binary, GANConfig())[0], TabularGenerator)
    # auto on digits builds exactly the MLPs (same weights, same seed) the `none` defense always had
    torch.manual_seed(0)
    g, d = build_players(digits, GANConfig())
    torch.manual_seed(0)
    g0 = MLPGenerator(z_dim=32, out_shape=(1, 8, 8), hidden=[128, 256])
    d0 = MLPDiscriminator(in_shape=(1, 8, 8), hidden=[256, 128])
    for a, b in ((g, g0), (d, d0)):
        assert type(a) is type(b)
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert ka == kb and torch.equal(va, vb)


def test_none_defense_trains_with_conv_players(digits):
    resolved = quick("none", "defense.net=conv", "defense.g_channels=8", "defense.d_channels=8", "trainer.max_steps=3")
    model = fit_defense(defense="none", params=resolved.defense_params, trainer=resolved.config.trainer, data=digits,
                        train_ids=np.arange(100), seed=0)
    assert isinstance(model.players["generator"], ConvGenerator)
    released = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert released.x.shape == (5, 1, 8, 8)
