"""MNIST and CIFAR: download from a loopback server, parse files written here in the real formats, layouts,
splits, labels, and every way an archive can be wrong; the .npz loader's validation; the CLI."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import LoopbackServer, read_only

from predsparse.cli import main
from predsparse.data import DATASETS, holdout_last, load_arrays, read_info
from predsparse.data import cifar, mnist
from predsparse.data.download import RemoteFile
from predsparse.errors import DatasetError
from predsparse.io import save_npz

FAST = {"backoff": 0.0, "timeout": 5.0}


def idx_gz(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes (magic 0x0000080N, big-endian dims), gzipped."""
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        folder = tarfile.TarInfo(next(iter(members)).split("/")[0])
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


RNG = np.random.default_rng(0)
MNIST_TRAIN = RNG.integers(0, 256, (60, 28, 28), dtype=np.uint8)
MNIST_TRAIN_Y = np.arange(60) % 10
MNIST_TEST = RNG.integers(0, 256, (20, 28, 28), dtype=np.uint8)
MNIST_TEST_Y = (np.arange(20) * 3) % 10
MNIST_BYTES = {
    "train_images": idx_gz(MNIST_TRAIN), "train_labels": idx_gz(MNIST_TRAIN_Y),
    "test_images": idx_gz(MNIST_TEST), "test_labels": idx_gz(MNIST_TEST_Y),
}


def mnist_files(server: LoopbackServer, overrides: dict[str, bytes] | None = None) -> dict[str, RemoteFile]:
    data = {**MNIST_BYTES, **(overrides or {})}
    return {role: server.remote(mnist.FILES[role].name, data[role]) for role in mnist.FILES}


def cifar_records(images: np.ndarray, labels: list[np.ndarray]) -> bytes:
    """Records of label byte(s) then 3072 pixel bytes (R, G, B planes)."""
    columns = [np.asarray(lab, dtype=np.uint8)[:, None] for lab in labels] + [images.reshape(len(images), -1)]
    return np.concatenate(columns, axis=1).tobytes()


C10_TRAIN = RNG.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
C10_TRAIN_Y = np.arange(20) % 10
C10_TEST = RNG.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
C10_TEST_Y = np.array([9, 0, 3, 3, 1])
C10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar10_members() -> dict[str, bytes]:
    source = cifar.SOURCES["cifar10"]
    members = {
        name: cifar_records(C10_TRAIN[4 * i:4 * i + 4], [C10_TRAIN_Y[4 * i:4 * i + 4]])
        for i, name in enumerate(source.train_members)
    }
    members[source.test_member] = cifar_records(C10_TEST, [C10_TEST_Y])
    members[source.names_member] = ("\n".join(C10_NAMES) + "\n\n").encode()
    return members


C100_TRAIN = RNG.integers(0, 256, (30, 3, 32, 32), dtype=np.uint8)
C100_FINE = (np.arange(30) * 7) % 100
C100_TEST = RNG.integers(0, 256, (10, 3, 32, 32), dtype=np.uint8)
C100_TEST_FINE = np.arange(90, 100)


def cifar100_members() -> dict[str, bytes]:
    return {
        "cifar-100-binary/coarse_label_names.txt": "\n".join(f"super{i}" for i in range(20)).encode(),
        "cifar-100-binary/fine_label_names.txt": "\n".join(f"class{i}" for i in range(100)).encode(),
        "cifar-100-binary/train.bin": cifar_records(C100_TRAIN, [C100_FINE // 5, C100_FINE]),
        "cifar-100-binary/test.bin": cifar_records(C100_TEST, [C100_TEST_FINE // 5, C100_TEST_FINE]),
    }


def test_mnist_download_parse_and_every_layout(server, tmp_path):
    files = mnist_files(server)
    root = tmp_path / "raw"
    meta = mnist.prepare(root, tmp_path / "mnist.npz", "conv", files=files, **FAST)
    arrays = load_arrays(tmp_path / "mnist.npz")
    scaled = MNIST_TRAIN.astype(np.float32) / 255
    assert arrays["xtr"].shape == (54, 1, 28, 28) and arrays["xva"].shape == (6, 1, 28, 28)
    assert np.array_equal(arrays["xtr"][:, 0], scaled[:54]) and np.array_equal(arrays["xva"][:, 0], scaled[54:])
    assert np.array_equal(arrays["ytr"], MNIST_TRAIN_Y[:54]) and np.array_equal(arrays["yva"], MNIST_TRAIN_Y[54:])
    assert np.array_equal(arrays["xte"][:, 0], MNIST_TEST / np.float32(255))
    assert np.array_equal(arrays["yte"], MNIST_TEST_Y)
    assert meta["splits"] == {"train": 54, "validation": 6, "test": 20} and meta["layout"] == "conv"
    assert meta["sources"]["train-images-idx3-ubyte.gz"]["md5"] == md5(MNIST_BYTES["train_images"])
    assert meta["normalization"]["mean"] == [pytest.approx(float(scaled[:54].mean()), abs=1e-6)]
    assert read_info(tmp_path / "mnist.npz") == meta
    assert server.count("train-images-idx3-ubyte.gz") == 1

    # offline, the files already in ROOT/mnist serve every other layout
    mnist.prepare(root, tmp_path / "flat.npz", "flat", files=files, offline=True)
    mnist.prepare(root, tmp_path / "pad.npz", "pad32", files=files, offline=True)
    assert len(server.requests) == 4
    flat, pad = load_arrays(tmp_path / "flat.npz"), load_arrays(tmp_path / "pad.npz")
    assert flat["xtr"].shape == (54, 784) and np.array_equal(flat["xtr"], scaled[:54].reshape(54, 784))
    image = pad["xte"].reshape(20, 32, 32)
    assert pad["xte"].shape == (20, 1024)
    assert np.array_equal(image[:, 2:30, 2:30], MNIST_TEST / np.float32(255))
    assert image[:, :2].max() == image[:, 30:].max() == image[:, :, :2].max() == image[:, :, 30:].max() == 0


@pytest.mark.parametrize("role, data, message", [
    ("train_images", idx_gz(MNIST_TRAIN)[:-40], "truncated or not a gzip file"),
    ("train_images", gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">3I", 60, 28, 28) + b"\x00" * 100),
     "promises 47040 bytes"),
    ("train_labels", gzip.compress(b"\x00\x00\x0d\x01" + struct.pack(">I", 60) + bytes(60)), "bad magic"),
    ("test_labels", idx_gz(np.arange(19) % 10), "20 images but"),
    ("test_labels", idx_gz(np.full(20, 12)), "label 12"),
    ("test_images", b"plain text, not gzip", "not a gzip file"),
])
def test_mnist_bad_files_give_clear_errors_and_no_output(server, tmp_path, role, data, message):
    files = mnist_files(server, {role: data})
    with pytest.raises(DatasetError, match=message):
        mnist.prepare(tmp_path / "raw", tmp_path / "out" / "m.npz", "flat", files=files, **FAST)
    assert not (tmp_path / "out").exists()


def test_cifar10_download_and_parse(server, tmp_path):
    remote = server.remote("cifar-10-binary.tar.gz", tar_gz(cifar10_members()))
    meta = cifar.prepare("cifar10", tmp_path / "raw", tmp_path / "c10.npz", remote=remote, **FAST)
    arrays = load_arrays(tmp_path / "c10.npz")
    assert arrays["xtr"].shape == (18, 3, 32, 32) and arrays["xva"].shape == (2, 3, 32, 32)
    assert np.array_equal(arrays["xtr"], C10_TRAIN[:18] / np.float32(255))
    assert np.array_equal(arrays["xva"], C10_TRAIN[18:] / np.float32(255))
    assert np.array_equal(arrays["ytr"], C10_TRAIN_Y[:18]) and np.array_equal(arrays["yte"], C10_TEST_Y)
    assert meta["classes"] == C10_NAMES and meta["num_classes"] == 10
    means = [C10_TRAIN[:18, c].mean() / 255 for c in range(3)]
    assert meta["normalization"]["mean"] == pytest.approx(means, abs=1e-6)
    assert (tmp_path / "raw" / "cifar10" / "cifar-10-binary.tar.gz").exists()


def test_cifar100_keeps_fine_labels(server, tmp_path):
    remote = server.remote("cifar-100-binary.tar.gz", tar_gz(cifar100_members()))
    meta = cifar.prepare("cifar100", tmp_path / "raw", tmp_path / "c100.npz", remote=remote, **FAST)
    arrays = load_arrays(tmp_path / "c100.npz")
    assert np.array_equal(arrays["ytr"], C100_FINE[:27]) and np.array_equal(arrays["yva"], C100_FINE[27:])
    assert np.array_equal(arrays["yte"], C100_TEST_FINE)
    assert np.array_equal(arrays["xte"], C100_TEST / np.float32(255))
    assert meta["labels"] == "fine" and meta["classes"][99] == "class99" and meta["splits"]["validation"] == 3


def test_corrupted_archive_checksum_error_and_clean_up(server, tmp_path):
    remote = server.remote("cifar-10-binary.tar.gz", tar_gz(cifar10_members()))
    server.faults[remote.name] = ["corrupt", "corrupt"]
    with pytest.raises(DatasetError, match=f"expected {remote.md5}, twice"):
        cifar.prepare("cifar10", tmp_path / "raw", tmp_path / "c10.npz", remote=remote, **FAST)
    assert [p.name for p in (tmp_path / "raw" / "cifar10").iterdir()] == [".cifar-10-binary.tar.gz.lock"]
    assert not (tmp_path / "c10.npz").exists()


def _without(members: dict[str, bytes], name: str) -> dict[str, bytes]:
    return {k: v for k, v in members.items() if k != name}


@pytest.mark.parametrize("archive, message", [
    (tar_gz(cifar10_members())[:5000], "truncated or not a tar.gz archive"),
    (b"<html>a login page, not an archive</html>", "not a tar.gz archive"),
    (tar_gz(_without(cifar10_members(), "cifar-10-batches-bin/test_batch.bin")), "lacks"),
    (tar_gz({**cifar10_members(), "cifar-10-batches-bin/test_batch.bin": b"\x01" * 3000}), "not a whole number"),
    (tar_gz({**cifar10_members(), "cifar-10-batches-bin/test_batch.bin": cifar_records(C10_TEST, [[10] * 5])}),
     "label 10"),
    (tar_gz({**cifar10_members(), "cifar-10-batches-bin/batches.meta.txt": b"cat\ndog\n"}), "2 class names"),
])
def test_bad_cifar_archives_give_clear_errors_and_no_output(tmp_path, archive, message):
    """Archives whose MD5 matches (as if the publisher's) but whose content is wrong; used offline."""
    directory = tmp_path / "raw" / "cifar10"
    directory.mkdir(parents=True)
    (directory / "cifar-10-binary.tar.gz").write_bytes(archive)
    remote = RemoteFile("cifar-10-binary.tar.gz", md5(archive), ("http://127.0.0.1:9/unused",))
    with pytest.raises(DatasetError, match=message):
        cifar.prepare("cifar10", tmp_path / "raw", tmp_path / "out" / "c.npz", remote=remote, offline=True)
    assert not (tmp_path / "out").exists()


def test_cli_offline_with_dropped_files_uses_data_env_and_default_outputs(tmp_path, monkeypatch, capsys):
    raw = tmp_path / "dropped"
    (raw / "mnist").mkdir(parents=True)
    fake = {}
    for role, remote in mnist.FILES.items():
        (raw / "mnist" / remote.name).write_bytes(MNIST_BYTES[role])
        fake[role] = dataclasses.replace(remote, md5=md5(MNIST_BYTES[role]), size=len(MNIST_BYTES[role]))
    monkeypatch.setattr(mnist, "FILES", fake)
    archive = tar_gz(cifar100_members())
    (raw / "cifar100").mkdir()
    (raw / "cifar100" / "cifar-100-binary.tar.gz").write_bytes(archive)
    source = cifar.SOURCES["cifar100"]
    monkeypatch.setitem(cifar.SOURCES, "cifar100",
                        dataclasses.replace(source, remote=dataclasses.replace(source.remote, md5=md5(archive))))
    monkeypatch.setenv("PREDSPARSE_DATA", str(raw))
    monkeypatch.chdir(tmp_path)
    assert main(["data", "mnist", "--offline", "--layout", "pad32"]) == 0
    assert main(["data", "mnist", "--offline"]) == 0
    assert main(["data", "cifar100", "--offline"]) == 0
    assert load_arrays("resources/mnist/mnist_pad32.npz")["xtr"].shape == (54, 1024)
    assert load_arrays("resources/mnist/mnist.npz")["xtr"].shape == (54, 1, 28, 28)
    assert load_arrays("resources/cifar100/cifar100.npz")["xte"].shape == (10, 3, 32, 32)
    assert capsys.readouterr().out.count("wrote") == 3


@pytest.mark.parametrize("dataset, name, md5sum", [
    ("mnist", "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ("cifar10", "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"),
    ("cifar100", "cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8"),
])
def test_cli_offline_without_files_is_one_clear_line(tmp_path, monkeypatch, capsys, dataset, name, md5sum):
    monkeypatch.chdir(tmp_path)
    assert main(["data", dataset, "--offline", "--root", "raw"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("predsparse data: error:")
    assert name in err and md5sum in err and str(tmp_path / "raw" / dataset) in err and "https://" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_options_exit_2(tmp_path, capsys):
    assert main(["data", "cifar10", "--timeout", "0", "--root", str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["data", "mnist", "--layout", "square"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["data", "cifar10", "--layout", "conv"])  # CIFAR has one layout: no such option
    assert capsys.readouterr().err.count("\n") == 3


def test_load_arrays_rejects_what_is_not_a_dataset(tmp_path):
    good = {"xtr": np.zeros((4, 3), np.float32), "ytr": np.zeros(4, np.int64),
            "xva": np.zeros((2, 3), np.float32), "yva": np.zeros(2, np.int64),
            "xte": np.ones((2, 3), np.float32), "yte": np.ones(2, np.int64)}
    save_npz(tmp_path / "good.npz", good)
    assert set(load_arrays(tmp_path / "good.npz")) == set(good)
    cases = {
        "missing": (None, "does not exist"),
        "extra": ({**good, "z": np.zeros(1)}, "holds arrays"),
        "dtype": ({**good, "xtr": good["xtr"].astype(np.float64)}, "expected float32"),
        "labels": ({**good, "yva": np.zeros(3, np.int64)}, "to match xva"),
        "range": ({**good, "xte": np.full((2, 3), 2, np.float32)}, r"expected \[0, 1\]"),
        "shape": ({**good, "xva": np.zeros((2, 4), np.float32)}, "samples have shape"),
        "negative": ({**good, "ytr": np.full(4, -1, np.int64)}, "negative"),
    }
    for name, (arrays, message) in cases.items():
        if arrays is not None:
            save_npz(tmp_path / f"{name}.npz", arrays)
        with pytest.raises(DatasetError, match=message):
            load_arrays(tmp_path / f"{name}.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_arrays(tmp_path / "text.npz")


def test_validation_is_the_last_tenth_and_layout_table():
    x, y = np.arange(50).reshape(50, 1), np.arange(50)
    xtr, ytr, xva, yva = holdout_last(x, y)
    assert list(yva) == [45, 46, 47, 48, 49] and len(xtr) == 45
    with pytest.raises(DatasetError, match="too small"):
        holdout_last(x[:4], y[:4])
    assert {name: info.num_classes for name, info in DATASETS.items()} == {
        "morse": 64, "mnist": 10, "cifar10": 10, "cifar100": 100}
    assert DATASETS["mnist"].layouts == {"conv": (1, 28, 28), "flat": (784,), "pad32": (1024,)}


# --- hand-placed copies: recompressed MNIST accepted by content MD5, anything else refused and left as is ---

def idx_bytes(array: np.ndarray) -> bytes:
    """The decompressed IDX file (what the content MD5 is of)."""
    return gzip.decompress(idx_gz(array))


MNIST_ARRAYS = {"train_images": MNIST_TRAIN, "train_labels": MNIST_TRAIN_Y,
                "test_images": MNIST_TEST, "test_labels": MNIST_TEST_Y}


def recompressed_mnist(folder: Path, monkeypatch) -> dict[str, bytes]:
    """Write the synthetic IDX files to `folder` gzipped anew (level 9, another mtime), so their archive
    MD5s are not the 'publisher's' (the gzip -6 of `idx_gz`); patch their content MD5s into mnist.FILES."""
    folder.mkdir(parents=True, exist_ok=True)
    placed, fake = {}, {}
    for role, remote in mnist.FILES.items():
        content = idx_bytes(MNIST_ARRAYS[role])
        placed[role] = gzip.compress(content, compresslevel=9, mtime=987_654_321)
        assert md5(placed[role]) != md5(MNIST_BYTES[role])
        (folder / remote.name).write_bytes(placed[role])
        fake[role] = dataclasses.replace(remote, md5=md5(MNIST_BYTES[role]), size=len(MNIST_BYTES[role]),
                                         content_md5=md5(content), content_size=len(content))
    monkeypatch.setattr(mnist, "FILES", fake)
    return placed


def test_publisher_content_checksums_are_known():
    for remote in mnist.FILES.values():
        assert len(remote.content_md5) == 32 and remote.content_size > remote.size
    assert mnist.FILES["train_images"].content_size == 47_040_016 == 16 + 60_000 * 28 * 28
    assert mnist.FILES["test_labels"].content_size == 10_008 == 8 + 10_000


def test_cli_offline_accepts_a_recompressed_copy_by_content_md5(tmp_path, monkeypatch, capsys):
    placed = recompressed_mnist(tmp_path / "raw" / "mnist", monkeypatch)
    out = tmp_path / "out" / "m.npz"
    args = ["--offline", "--root", str(tmp_path / "raw"), "--layout", "flat", "-o", str(out)]
    assert main(["data", "mnist", *args]) == 0
    arrays = load_arrays(out)
    assert np.array_equal(arrays["xtr"], MNIST_TRAIN[:54].reshape(54, 784) / np.float32(255))
    sources = read_info(out)["sources"]
    for role, remote in mnist.FILES.items():
        assert sources[remote.name]["verified"] == "content md5"
        assert sources[remote.name]["file_md5"] == md5(placed[role])
        assert sources[remote.name]["content_md5"] == remote.content_md5
        assert (tmp_path / "raw" / "mnist" / remote.name).read_bytes() == placed[role]
    assert "wrote" in capsys.readouterr().out


def test_cli_offline_refuses_a_corrupted_copy_in_one_line_and_leaves_it_byte_identical(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "raw" / "mnist"
    recompressed_mnist(folder, monkeypatch)
    bad = MNIST_TRAIN.copy()
    bad[7, 14, 14] ^= 0x01  # one pixel: a valid gzip of a valid IDX file, but not the genuine content
    corrupted = gzip.compress(idx_bytes(bad), compresslevel=9, mtime=987_654_321)
    remote = mnist.FILES["train_images"]
    (folder / remote.name).write_bytes(corrupted)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    out = tmp_path / "out" / "m.npz"
    assert main(["data", "mnist", "--offline", "--root", str(tmp_path / "raw"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("predsparse data: error:")
    for part in (str(folder / remote.name), md5(corrupted), remote.md5, remote.content_md5, "left untouched"):
        assert part in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert not (tmp_path / "out").exists()


def test_cli_online_never_overwrites_a_placed_file_that_fails_both_checks(server, tmp_path, capsys):
    files = mnist_files(server)
    folder = tmp_path / "raw" / "mnist"
    folder.mkdir(parents=True)
    (folder / files["test_labels"].name).write_bytes(b"my own notes")
    with pytest.raises(DatasetError, match="left untouched"):
        mnist.prepare(tmp_path / "raw", tmp_path / "m.npz", files=files, **FAST)
    assert (folder / files["test_labels"].name).read_bytes() == b"my own notes"
    assert server.count(files["test_labels"].name) == 0


def test_cifar_archive_with_another_md5_is_refused_not_removed(server, tmp_path):
    remote = server.remote("cifar-10-binary.tar.gz", tar_gz(cifar10_members()))
    folder = tmp_path / "raw" / "cifar10"
    folder.mkdir(parents=True)
    other = tar_gz(cifar100_members())
    (folder / remote.name).write_bytes(other)
    for offline in (True, False):
        with pytest.raises(DatasetError, match=f"{md5(other)}.*{remote.md5}.*left untouched"):
            cifar.prepare("cifar10", tmp_path / "raw", tmp_path / "c.npz", remote=remote, offline=offline, **FAST)
        assert (folder / remote.name).read_bytes() == other
    assert server.requests == []


def test_cli_offline_from_a_read_only_folder_via_data_env_writes_nothing_there(tmp_path, monkeypatch, capsys):
    """$PREDSPARSE_DATA pointing straight at a read-only folder of the .gz files (no mnist/ inside)."""
    shared = tmp_path / "shared" / "mnist"
    recompressed_mnist(shared, monkeypatch)
    monkeypatch.setenv("PREDSPARSE_DATA", str(shared))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "work" / "m.npz"
    with read_only(shared):
        assert main(["data", "mnist", "--offline", "-o", str(out)]) == 0
        assert main(["data", "mnist", "--offline", "--root", str(shared), "--layout", "pad32",
                     "-o", str(tmp_path / "work" / "p.npz")]) == 0
    assert load_arrays(out)["xte"].shape == (20, 1, 28, 28)
    assert {s["verified"] for s in read_info(out)["sources"].values()} == {"content md5"}
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["m.json", "m.npz", "p.json", "p.npz"]
    assert capsys.readouterr().out.count("wrote") == 2


REAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.mark.skipif(not all((REAL_MNIST / r.name).is_file() for r in mnist.FILES.values()),
                    reason=f"the real MNIST files are not in {REAL_MNIST}")
def test_real_mnist_recompressed_copy_offline(tmp_path, capsys):
    """The real MNIST, recompressed (archive MD5s not the publisher's), used offline straight from its folder."""
    start = time.monotonic()
    before = sorted((p.name, p.stat().st_mtime_ns) for p in REAL_MNIST.iterdir())
    out = tmp_path / "mnist_flat.npz"
    assert main(["data", "mnist", "--offline", "--root", str(REAL_MNIST), "--layout", "flat", "-o", str(out)]) == 0
    assert sorted((p.name, p.stat().st_mtime_ns) for p in REAL_MNIST.iterdir()) == before
    info = json.loads(out.with_suffix(".json").read_text())
    assert {s["verified"] for s in info["sources"].values()} == {"content md5"}
    assert info["splits"] == {"train": 54_000, "validation": 6_000, "test": 10_000}
    arrays = load_arrays(out)
    assert len(arrays["xtr"]) + len(arrays["xva"]) == 60_000
    assert np.bincount(arrays["yte"], minlength=10).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    train_y = np.concatenate([arrays["ytr"], arrays["yva"]])
    assert np.bincount(train_y, minlength=10).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    total = arrays["xtr"].sum(dtype=np.float64) + arrays["xva"].sum(dtype=np.float64)
    assert total / (60_000 * 784) == pytest.approx(0.13066, abs=5e-6)
    assert "wrote" in capsys.readouterr().out
    assert time.monotonic() - start < 30
