"""Recipes for `mia-bench audit-release --recipe` that train mia_bench's own registered defenses, so a table
(or image set) released by one of the project's defenses is audited with the shadow attacks too:

    mia-bench audit-release --train t.csv --holdout h.csv --synthetic s.csv \\
        --recipe mia_bench.external.recipes:defense_recipe --shadows 16

`defense_recipe` trains the unprotected GAN (`none`, 2,000 steps); for another defense or budget, define
`my_recipe = DefenseRecipe("dpgan", steps=4000, noise_multiplier=1.1)` in a module of your own and give
`--recipe mymodule:my_recipe` (keyword arguments are the defense's Config fields).

These recipes work in mia_bench's space (`mia_bench_space = True`): the audit hands them the records as every
attack sees them (encoding.py: numeric columns min-max scaled to [-1, 1], text columns one-hot in {-1, 1},
pixels in [-1, 1]) with the data's DataInfo, and reads their outputs in that space, so the model trains on
exactly the features the attacks score.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mia_bench.errors import MiaBenchError


class DefenseModel:
    """A trained mia_bench defense as the audit queries a recipe's model (mia_bench's space)."""

    def __init__(self, model: Any, seed: int) -> None:
        self.model, self.seed = model, seed
        self.z_dim = int(model.z_dim)

    def sample(self, n: int) -> torch.Tensor:
        with torch.no_grad():
            return self.model.sample(n, generator=torch.Generator().manual_seed(self.seed)).x

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.generate(z)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model.discriminate(x)


class DefenseRecipe:
    """recipe(x (N, *shape) float32 in mia_bench's space, y=None, seed=0, info=DataInfo) -> DefenseModel:
    one model of the registered defense `defense`, trained for `steps` generator updates on x."""

    mia_bench_space = True

    def __init__(self, defense: str = "none", *, steps: int = 2000, batch_size: int = 64, **params: Any) -> None:
        from mia_bench.defenses import DEFENSES

        cls = DEFENSES.get(defense)  # an unknown name: the registry's "did you mean"
        if cls.needs_reference or cls.train_role != "members":
            raise MiaBenchError(f"defense '{defense}' trains on reference data besides its members, which an "
                                "audit recipe is not given; pick a defense that trains on its members alone")
        try:
            self.params = cls.Config(**params)
        except TypeError as e:
            raise MiaBenchError(f"DefenseRecipe('{defense}', ...): {e}; the keywords are the fields of "
                                f"{cls.Config.__name__}") from None
        self.defense, self.steps, self.batch_size = defense, steps, batch_size

    def __repr__(self) -> str:
        return f"DefenseRecipe({self.defense!r}, steps={self.steps})"

    def __call__(self, x: Any, y: Any = None, seed: int = 0, info: Any = None) -> DefenseModel:
        from mia_bench import shadows
        from mia_bench.attacks import Recipe
        from mia_bench.data.datasets import ArrayDataset
        from mia_bench.schema import TrainerConfig

        if info is None:
            raise MiaBenchError("DefenseRecipe needs the data's DataInfo (info=); it is called by audit-release")
        xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        data = ArrayDataset(x=xt, y=torch.zeros(xt.shape[0], dtype=torch.int64), info=info)
        recipe = Recipe(defense=self.defense, params=self.params, info=info,
                        trainer=TrainerConfig(max_steps=self.steps, batch_size=self.batch_size, progress_bar=False))
        bank = shadows.train_bank(recipe=recipe, data=data, ids=np.arange(xt.shape[0]), n_models=1, seed=seed,
                                  cache_dir=None, size=shadows.EVERY_RECORD)
        return DefenseModel(bank.models[0].eval(), seed)


defense_recipe = DefenseRecipe("none")
memorizer_recipe = DefenseRecipe("memorizer")  # the control: every attack must catch what it releases
