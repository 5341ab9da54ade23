"""Datasets (registered loaders), membership splits and the Lightning data module."""

from mia_bench._discover import import_submodules
from mia_bench.data.datasets import DATASETS, ArrayDataset, DataInfo, DatasetConfig, load_dataset
from mia_bench.data.splits import MembershipSplit, SplitConfig

import_submodules(__name__, __path__)

__all__ = ["DATASETS", "ArrayDataset", "DataInfo", "DatasetConfig", "MembershipSplit", "SplitConfig", "load_dataset"]
