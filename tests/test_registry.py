import pytest

from mia_bench.attacks import ATTACKS
from mia_bench.data import DATASETS
from mia_bench.defenses import DEFENSES
from mia_bench.errors import UnknownNameError
from mia_bench.metrics import METRICS
from mia_bench.registry import Registry


def test_register_get_names():
    reg: Registry[int] = Registry("widget")
    reg.register("beta")(2)
    reg.register("alpha")(1)
    assert reg.get("alpha") == 1
    assert reg.names() == ["alpha", "beta"]
    assert "beta" in reg and "gamma" not in reg


def test_unknown_name_suggests_and_lists():
    reg: Registry[int] = Registry("defense")
    for i, n in enumerate(["megan", "mimgan", "none"]):
        reg.register(n)(i)
    with pytest.raises(UnknownNameError) as e:
        reg.get("megn")
    msg = str(e.value)
    assert msg.startswith("Unknown defense 'megn'. Did you mean: megan")
    assert "Available: megan, mimgan, none" in msg


def test_double_registration_is_refused():
    reg: Registry[int] = Registry("x")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(2)


def test_project_registries_are_populated():
    assert {"digits"} <= set(DATASETS.names())
    assert {"none", "memorizer", "independent"} <= set(DEFENSES.names())
    assert {"ganleaks_fbb", "logan_wb"} <= set(ATTACKS.names())
    assert {"auc", "tpr_at_fpr", "precision_at_n", "balanced_accuracy"} <= set(METRICS.names())
    for name, spec in METRICS.items():
        assert spec.name == name and spec.kind in ("privacy", "utility", "diagnostic")
