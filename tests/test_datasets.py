"""Every real loader reads its real on-disk format, from small files written here; downloads go through
the same code with file:// URLs; CelebA splits are identity-disjoint."""

import hashlib
import io
import itertools
import pickle
import tarfile

import numpy as np
import pytest
import torch
from fake_data import (
    write_adult,
    write_binary_npz,
    write_celeba,
    write_cifar_batches,
    write_idx,
    write_mnist_like,
)

from mia_bench.data import DatasetConfig, MembershipSplit, SplitConfig, load_dataset
from mia_bench.data.datasets import DataKind
from mia_bench.data.download import RemoteFile, ensure_files, fetch
from mia_bench.errors import DataError


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_loaders_read_train_and_test(tmp_path, name, gz):
    written = write_mnist_like(tmp_path / name, gz=gz)
    data = load_dataset(DatasetConfig(name=name, root=str(tmp_path)))
    assert data.x.shape == (160, 1, 28, 28) and data.info.n_classes == 10
    images = np.concatenate([written["train"][0], written["t10k"][0]])
    torch.testing.assert_close(data.x[:, 0], torch.from_numpy(images).float() / 127.5 - 1)
    assert data.y.tolist() == np.concatenate([written["train"][1], written["t10k"][1]]).tolist()
    only_test = load_dataset(DatasetConfig(name=name, root=str(tmp_path), options={"parts": ["test"]}))
    assert len(only_test) == 40


def test_idx_errors_name_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"missing .*train-images-idx3-ubyte.gz.*dataset.download: true"):
        load_dataset(DatasetConfig(name="mnist", root=str(tmp_path)))
    write_mnist_like(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x08\x03junk")
    with pytest.raises(DataError, match="gzip|IDX"):
        load_dataset(DatasetConfig(name="mnist", root=str(tmp_path)))
    with pytest.raises(DataError, match="no option"):
        load_dataset(DatasetConfig(name="mnist", root=str(tmp_path), options={"part": ["train"]}))


def test_download_verifies_the_checksum(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    write_mnist_like(src)
    md5 = {p.name[:-3]: hashlib.md5(p.read_bytes()).hexdigest() for p in src.iterdir()}
    monkeypatch.setattr("mia_bench.data.mnist.MNIST_URL", src.as_uri() + "/")
    monkeypatch.setattr("mia_bench.data.mnist.MNIST_MD5", md5)
    data = load_dataset(DatasetConfig(name="mnist", root=str(tmp_path / "root"), download=True))
    assert len(data) == 160
    bad = RemoteFile("x.gz", (src / "t10k-labels-idx1-ubyte.gz").as_uri(), "0" * 32)
    with pytest.raises(DataError, match="MD5"):
        fetch(bad, tmp_path / "dl" / "x.gz")
    assert not any((tmp_path / "dl").iterdir())  # nothing half-downloaded or unverified is kept
    with pytest.raises(DataError, match="cannot be downloaded automatically"):
        ensure_files(tmp_path, [RemoteFile("nope", "", "")], download=True, dataset="d", how="Ask a human.")


def test_cifar_batches_are_read_safely(tmp_path):
    written = write_cifar_batches(tmp_path / "cifar10" / "cifar-10-batches-py")
    data = load_dataset(DatasetConfig(name="cifar10", root=str(tmp_path)))
    assert data.x.shape == (120, 3, 32, 32) and data.info.n_classes == 10
    first, labels = written["data_batch_1"]
    # CIFAR rows hold the red plane, then green, then blue, each row-major
    torch.testing.assert_close(data.x[0, 1], torch.from_numpy(first[0, 1024:2048].reshape(32, 32)).float() / 127.5 - 1)
    assert data.y[:20].tolist() == labels
    evil = pickle.dumps({b"data": __import__("os").getcwd}, protocol=2)  # a global outside the allowlist
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch").write_bytes(evil)
    with pytest.raises(DataError, match="refusing"):
        load_dataset(DatasetConfig(name="cifar10", root=str(tmp_path)))


def test_cifar_archive_download_and_unpack(tmp_path, monkeypatch):
    staging = tmp_path / "staging"
    write_cifar_batches(staging / "cifar-10-batches-py", per_batch=4)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(buf.getvalue())
    remote = RemoteFile("cifar-10-python.tar.gz", archive.as_uri(), hashlib.md5(buf.getvalue()).hexdigest())
    monkeypatch.setattr("mia_bench.data.cifar.ARCHIVE", remote)
    data = load_dataset(DatasetConfig(name="cifar10", root=str(tmp_path / "root"), download=True))
    assert len(data) == 24


def test_celeba_reads_images_identities_and_attributes(tmp_path):
    meta = write_celeba(tmp_path / "celeba", n=30)
    cfg = DatasetConfig(name="celeba", root=str(tmp_path), options={"size": 16, "crop": 32})
    data = load_dataset(cfg)
    assert data.x.shape == (30, 3, 16, 16) and data.info.n_classes == 2
    assert data.groups.tolist() == list(meta["identities"].values())
    assert data.y.tolist() == list(meta["male"].values())
    # solid colour in, (almost) the same colour out, scaled to [-1, 1]
    expected = torch.tensor([0, 255, 128]) / 127.5 - 1
    assert torch.allclose(data.x[0].mean(dim=(1, 2)), expected, atol=0.03)
    assert list((tmp_path / "celeba").glob("celeba_16_32_*.npz"))  # preprocessed once, then reused
    again = load_dataset(cfg)
    torch.testing.assert_close(again.x, data.x)


def test_celeba_splits_never_share_an_identity(tmp_path):
    write_celeba(tmp_path / "celeba", n=90, per_identity=3)
    data = load_dataset(DatasetConfig(name="celeba", root=str(tmp_path), options={"size": 8, "crop": 32, "label": ""}))
    assert data.info.n_classes == 1
    sizes = SplitConfig(members=15, non_members=15, reference=12, attacker_aux=12, shadow_pool=12)
    for seed in range(3):
        split = MembershipSplit.make(n_records=len(data), sizes=sizes, seed=seed, groups=data.groups)
        people = {role: set(data.groups[getattr(split, role)].tolist()) for role in split.sizes()}
        for a, b in itertools.combinations(people, 2):
            assert not people[a] & people[b], (a, b)


def test_binary_table_npz_and_csv(tmp_path):
    x = write_binary_npz(tmp_path / "binary_table" / "data.npz", n=50, d=6)
    data = load_dataset(DatasetConfig(name="binary_table", root=str(tmp_path)))
    assert data.info.kind is DataKind.TABULAR and data.info.binary and data.info.shape == (6,)
    torch.testing.assert_close(data.x, torch.from_numpy(x).float() * 2 - 1)
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,label,c\n1,0,yes,1\n0,0,no,1\n1,1,yes,0\n")
    table = load_dataset(DatasetConfig(name="binary_table", options={"file": str(csv), "label": "label"}))
    assert table.x.tolist() == [[1, -1, 1], [-1, -1, 1], [1, 1, -1]] and table.y.tolist() == [1, 0, 1]
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="0/1"):
        load_dataset(DatasetConfig(name="binary_table", options={"file": str(csv)}))
    with pytest.raises(DataError, match="MIMIC-III"):
        load_dataset(DatasetConfig(name="binary_table", root=str(tmp_path / "none")))


def test_mixed_csv_encoding(tmp_path):
    (tmp_path / "tabular_csv").mkdir()
    (tmp_path / "tabular_csv" / "data.csv").write_text(
        "age,colour,score,y\n20,red,1.5,a\n40,blue,?,b\n30,red,3.5,a\n60,?,2.5,b\n")
    data = load_dataset(DatasetConfig(name="tabular_csv", root=str(tmp_path), options={"label": "y"}))
    # age min-max to [-1, 1]; colour one-hot over sorted {?, blue, red} in {-1, 1}; score's gap = median
    assert data.info.categorical == ((1, 3),) and data.info.shape == (5,)
    assert data.x[:, 0].tolist() == pytest.approx([-1, 0, -0.5, 1])
    assert data.x[:, 1:4].tolist() == [[-1, -1, 1], [-1, 1, -1], [-1, -1, 1], [1, -1, -1]]
    assert data.x[:, 4].tolist() == pytest.approx([-1, 0, 1, 0])
    assert data.y.tolist() == [0, 1, 0, 1]


def test_adult_reads_the_uci_files(tmp_path):
    n = write_adult(tmp_path / "adult")
    data = load_dataset(DatasetConfig(name="adult", root=str(tmp_path)))
    assert len(data) == n and data.info.n_classes == 2
    assert data.info.kind is DataKind.TABULAR and data.info.categorical
    assert set(data.y.tolist()) == {0, 1}  # "<=50K" and ">50K." are the same two classes across files
    assert data.x.min() >= -1 and data.x.max() <= 1
    for start, size in data.info.categorical:
        assert (data.x[:, start:start + size] == 1).sum(1).eq(1).all()


def test_idx_writer_round_trip(tmp_path):
    from mia_bench.data.mnist import read_idx

    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", a, gz=False)), a)
