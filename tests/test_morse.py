"""The Morse generator: samples are what they claim, the family's numbers, determinism, overrides, output."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys

import numpy as np
import pytest

from predsparse.cli import main
from predsparse.data import load_arrays, read_info
from predsparse.data.morse import (
    VARIANTS, MorseParams, flip_bits, generate, load_codebook, parse_assignments, resolve_params, save,
)
from predsparse.errors import DatasetError
from predsparse.io import npz_bytes

SMALL = (12, 4, 4)


def runs(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of every run of non-zero values."""
    on = np.concatenate([[False], row > 0, [False]])
    edges = np.flatnonzero(on[1:] != on[:-1])
    return edges[0::2], edges[1::2]


def decode_all(arrays, params: MorseParams):
    """Run-length decode every sample of every split; check it against its class and the length ranges."""
    book = load_codebook()
    dot_lo, dot_hi = params.lengths("dot")
    dash_lo, dash_hi = params.lengths("dash")
    sp_lo, sp_hi = params.lengths("space")
    leads = []
    for xname, yname in (("xtr", "ytr"), ("xva", "yva"), ("xte", "yte")):
        for row, label in zip(arrays[xname], arrays[yname]):
            starts, ends = runs(row)
            marks, gaps = ends - starts, starts[1:] - ends[:-1]
            code = "".join("." if m <= dot_hi else "-" for m in marks)
            assert code == book[label][1], (xname, label, row)
            for symbol, m in zip(code, marks):
                lo, hi = (dot_lo, dot_hi) if symbol == "." else (dash_lo, dash_hi)
                assert lo <= m <= hi
            assert np.all((sp_lo <= gaps) & (gaps <= sp_hi))
            leads.append(starts[0])
    return np.array(leads)


@pytest.mark.parametrize("overrides", [
    {},
    {"style": "bw"},
    {"leadingsp_rand": True},
    {"dilation": 2, "style": "bw", "leadingsp_rand": True},
    {"framelen": 57, "minlendash": 5, "maxlensp": 2},
])
def test_every_noise_free_sample_decodes_to_its_codeword(overrides):
    params = resolve_params("baseline", overrides)
    arrays = generate(params, SMALL, seed=3)
    leads = decode_all(arrays, params)
    if params.leadingsp_rand:
        assert leads.max() > 10 and (leads == 0).any()
    else:
        assert np.all(leads == 0)


def test_shapes_dtypes_ranges_and_class_counts():
    arrays = generate(VARIANTS["difficult"], (7, 3, 2), seed=0)
    for xname, yname, m in (("xtr", "ytr", 7), ("xva", "yva", 3), ("xte", "yte", 2)):
        x, y = arrays[xname], arrays[yname]
        assert x.dtype == np.float32 and x.shape == (64 * m, 64)
        assert y.dtype == np.int64 and y.shape == (64 * m,)
        assert 0 <= x.min() and x.max() <= 1
        assert np.array_equal(np.bincount(y, minlength=64), np.full(64, m))
        assert not np.array_equal(y, np.sort(y))  # shuffled
    assert generate(resolve_params("baseline", {"dilation": 2}), SMALL)["xtr"].shape == (64 * 12, 128)


def test_gray_levels_follow_the_family_numbers():
    """Marks: N(12, 1.34) out of 16 levels, rounded to 3 decimals; spaces exactly 0 without noise."""
    x = generate(VARIANTS["baseline"], (200, 1, 1), seed=1)["xtr"]
    marks = x[x > 0].astype(np.float64)
    assert marks.mean() == pytest.approx(12 / 16, abs=0.002)
    assert marks.std() == pytest.approx(1.34 / 16, abs=0.002)
    assert np.allclose(marks * 1000, np.round(marks * 1000), atol=1e-3)
    assert np.all(x[:, 57:] == 0)  # no codeword reaches past 57 values


def test_gray_noise_is_added_everywhere_and_clipped():
    params = resolve_params("baseline", {"noisesd": "4"})
    tail = generate(params, (200, 1, 1), seed=2)["xtr"][:, 57:].astype(np.float64)  # always trailing space
    # clip(N(0, 4), 0, 16) / 16: half the values are 0, the mean is 4 / sqrt(2 pi) / 16
    assert (tail == 0).mean() == pytest.approx(0.5, abs=0.02)
    assert tail.mean() == pytest.approx(4 / np.sqrt(2 * np.pi) / 16, abs=0.003)


def test_flip_bits_flips_up_to_maxflip_distinct_positions():
    rng = np.random.default_rng(0)
    flipped = flip_bits(np.zeros((2000, 64)), 3, rng)
    counts = flipped.sum(axis=1)
    assert set(np.unique(counts)) == {0, 1, 2, 3}
    assert np.bincount(counts.astype(int)) == pytest.approx([500] * 4, abs=80)
    assert np.array_equal(flip_bits(np.ones((5, 64)), 0, rng), np.ones((5, 64)))


def test_bw_noise_keeps_values_binary_and_changes_samples():
    clean = generate(resolve_params("baseline", {"style": "bw"}), SMALL, seed=4)["xtr"]
    noisy = generate(resolve_params("baseline", {"style": "bw", "maxflip": 4}), SMALL, seed=4)["xtr"]
    assert set(np.unique(noisy)) == {0.0, 1.0}
    assert not np.array_equal(clean, noisy)


def test_lengths_cover_their_whole_ranges():
    params = resolve_params("baseline", {"style": "bw"})
    x = generate(params, (40, 1, 1), seed=5)["xtr"]
    lengths = np.concatenate([e - s for s, e in map(runs, x)])
    assert set(lengths) == set(range(1, 10))  # dots 1..3 and dashes 4..9 all occur


def test_same_seed_same_bytes_other_seed_other_bytes():
    params = VARIANTS["difficult"]
    assert npz_bytes(generate(params, SMALL, seed=7)) == npz_bytes(generate(params, SMALL, seed=7))
    assert npz_bytes(generate(params, SMALL, seed=7)) != npz_bytes(generate(params, SMALL, seed=8))


def test_variants_are_the_reference_ones():
    assert VARIANTS["baseline"] == MorseParams()
    base = dataclasses.asdict(VARIANTS["baseline"])
    diff = dataclasses.asdict(VARIANTS["difficult"])
    assert {k: v for k, v in diff.items() if base[k] != v} == {"noisesd": 4.0, "leadingsp_rand": True, "minlendash": 3}
    assert (base["minlendot"], base["maxlendot"], base["minlendash"], base["maxlendash"]) == (1, 3, 4, 9)
    assert (base["symbmean"], base["symbsd"], base["levels"], base["framelen"]) == (12.0, 1.34, 16, 64)


def test_codebook_has_64_classes_and_one_duplicated_code():
    book = load_codebook()
    assert len(book) == 64
    codes = [code for _, code in book]
    dupes = {code for code in codes if codes.count(code) > 1}
    assert dupes == {"-.--."}
    assert [book[i][0] for i, code in enumerate(codes) if code == "-.--."] == ["H^", "("]


def test_overrides_are_typed_and_validated():
    params = resolve_params("difficult", {"noisesd": "2", "leadingsp_rand": "false", "style": "GRAY", "maxlendot": 2})
    assert (params.noisesd, params.leadingsp_rand, params.style, params.maxlendot) == (2.0, False, "gray", 2)
    assert parse_assignments(["noisesd=2", "style=bw"]) == {"noisesd": "2", "style": "bw"}
    bad = [
        ({"nosiesd": 1}, "unknown Morse parameter 'nosiesd'"),
        ({"framelen": "6.5"}, "not an integer"),
        ({"leadingsp_rand": "maybe"}, "not a boolean"),
        ({"dilation": True}, "must be of type int"),
        ({"style": "color"}, "not one of"),
        ({"minlendash": 10}, "minlendash=10, maxlendash=9"),
        ({"noisesd": -1}, "noisesd must be >= 0"),
        ({"style": "bw", "noisesd": 1}, "gray-style noise"),
        ({"maxflip": 2}, "bw-style noise"),
        ({"maxlendash": 11}, "frame holds 64"),
        ({"framelen": 56}, "takes up to 57 values"),
    ]
    for overrides, message in bad:
        with pytest.raises(DatasetError, match=message):
            resolve_params("baseline", overrides)
    with pytest.raises(DatasetError, match="not NAME=VALUE"):
        parse_assignments(["noisesd"])
    with pytest.raises(DatasetError, match="variant 'hard'"):
        resolve_params("hard")
    with pytest.raises(DatasetError, match="three counts"):
        generate(MorseParams(), (5, 0, 1))
    with pytest.raises(DatasetError, match="seed"):
        generate(MorseParams(), SMALL, seed=-1)


def test_save_writes_npz_json_and_figure(tmp_path):
    out = tmp_path / "morse" / "noisy.npz"
    meta = save(out, "baseline", {"noisesd": "1.5"}, SMALL, seed=9)
    arrays = load_arrays(out)
    assert arrays["xtr"].shape == (64 * 12, 64)
    info = read_info(out)
    assert info == meta
    assert info["params"] == dataclasses.asdict(resolve_params("baseline", {"noisesd": 1.5}))
    assert info["overrides"] == {"noisesd": 1.5} and info["variant"] == "baseline" and info["seed"] == 9
    assert info["per_class"] == {"train": 12, "validation": 4, "test": 4}
    assert info["splits"] == {"train": 768, "validation": 256, "test": 256}
    assert info["npz_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert info["normalization"]["mean"][0] == pytest.approx(float(arrays["xtr"].mean()), abs=1e-5)
    assert info["codes"] == [code for _, code in load_codebook()] and "63/64" in info["notes"]
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_generates_byte_identical_files(tmp_path, capsys):
    args = ["data", "morse", "--variant", "difficult", "--per-class", "6,2,2", "--seed", "1"]
    assert main(args + ["-o", str(tmp_path / "a.npz"), "--figure", str(tmp_path / "fig.png")]) == 0
    assert main(args + ["-o", str(tmp_path / "b.npz")]) == 0
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert (tmp_path / "fig.png").exists() and (tmp_path / "b.png").exists()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--set", "bogus=1", "-o", "x.npz"], "unknown Morse parameter 'bogus'"),
    (["--set", "noisesd=2"], "give -o"),
    (["--per-class", "5,2", "-o", "x.npz"], "three counts"),
    (["--set", "maxlendash=12", "-o", "x.npz"], "frame holds 64"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "morse", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_argument_errors_exit_2(capsys):
    for bad in (["--variant", "hard"], ["--per-class", "a,b,c"]):
        with pytest.raises(SystemExit) as exc:
            main(["data", "morse", *bad])
        assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 2


def test_cli_disk_full_leaves_nothing(tmp_path):
    """A write failure (a file-size limit stands in for a full disk): one-line error, exit 2, no files."""
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))\n"
        "from predsparse.cli import main\n"
        f"sys.exit(main(['data', 'morse', '--per-class', '12,4,4', '-o', {str(tmp_path / 'm.npz')!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "cannot write" in proc.stderr and proc.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_paper2017_variant_has_integer_levels_and_the_2017_statistics():
    """The October 2017 generator (authors_code.md): 17 levels k/16, about 0.509 of the values > 0 (the
    noise-free baseline has 0.289), noise sd 1 on every value, codeword at the left edge."""
    params = VARIANTS["paper2017"]
    assert (params.noisesd, params.integer_levels, params.leadingsp_rand, params.style) == (1.0, True, False, "gray")
    arrays = generate(params, (500, 1, 1), seed=0)
    x = arrays["xtr"]
    assert x.shape == (64 * 500, 64)
    assert set(np.unique(x * 16).tolist()) == set(range(17))
    assert np.array_equal(x * 16, np.rint(x * 16))
    assert abs((x > 0).mean() - 0.509) < 0.003
    baseline = generate(VARIANTS["baseline"], (500, 1, 1), seed=0)["xtr"]
    assert abs((baseline > 0).mean() - 0.289) < 0.003
    # The left edge: the first value of a frame is a mark (mean level 12/16) plus noise, never a leading space.
    assert x[:, 0].mean() > 0.7


def test_paper2017_lengths_decode_once_the_noise_is_off():
    params = resolve_params("paper2017", {"noisesd": 0})
    arrays = generate(params, SMALL, seed=1)
    leads = decode_all(arrays, params)
    assert np.all(leads == 0)
    assert set(np.unique(arrays["xtr"] * 16).tolist()) <= set(range(17))
