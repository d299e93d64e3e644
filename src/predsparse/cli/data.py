"""`predsparse data`: generate the Morse dataset, or fetch and parse MNIST / CIFAR-10 / CIFAR-100.

Every dataset becomes one .npz (xtr, ytr, xva, yva, xte, yte) with a JSON of how it was made beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path

from predsparse.cli import OneLineParser, parse_int_list
from predsparse.errors import DatasetError

HELP = "generate Morse data, or download and parse MNIST / CIFAR-10 / CIFAR-100, into the .npz the models read"

DATA_ENV = "PREDSPARSE_DATA"
DEFAULT_ROOT = Path("resources/raw")


def _morse_epilog() -> str:
    from predsparse.data.morse import VARIANTS

    base = dataclasses.asdict(VARIANTS["baseline"])
    lines = ["Morse parameters (--set NAME=VALUE, repeatable; names as in the family's generator):",
             f"  {'NAME':16} {'baseline':>10}  {'difficult':>10}"]
    difficult = dataclasses.asdict(VARIANTS["difficult"])
    for name, value in base.items():
        lines.append(f"  {name:16} {str(value):>10}  {str(difficult[name]):>10}")
    lines += [
        "style gray: Gaussian levels N(symbmean, symbsd) out of `levels`, additive noise N(noisemean, noisesd);",
        "style bw: 0/1 values, noise = up to maxflip bit flips. dilation d: frame = framelen*d values and every",
        "length range [lo, hi] becomes [lo*d, hi*d]. Parameters letting a codeword overrun the frame are refused.",
        "Example: predsparse data morse --variant difficult --set noisesd=2 -o resources/morse/noise2.npz",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from predsparse.data import DATASETS
    from predsparse.data.morse import DEFAULT_PER_CLASS, VARIANTS

    sub = parser.add_subparsers(dest="dataset", metavar="DATASET", parser_class=OneLineParser)
    sub.required = True

    morse = sub.add_parser(
        "morse", help="generate a Morse code dataset (64 classes)",
        description="Generate a Morse code dataset: .npz + .json of its parameters + .png of one sample per class.",
        epilog=_morse_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    morse.add_argument("--variant", choices=list(VARIANTS), default="baseline", help="named variant (default baseline)")
    morse.add_argument("--per-class", type=parse_int_list, default=list(DEFAULT_PER_CLASS), metavar="TRAIN,VAL,TEST",
                       help="samples per class in each split (default 5000,1000,1000)")
    morse.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    morse.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                       help="override one generator parameter (repeatable; see the table below)")
    morse.add_argument("-o", "--out", type=Path,
                       help="output .npz (default resources/morse/VARIANT.npz; required with --set)")
    morse.add_argument("--figure", type=Path, help="PNG of one sample per class (default: beside the .npz)")

    for name in ("mnist", "cifar10", "cifar100"):
        info = DATASETS[name]
        fetched = sub.add_parser(
            name, help=f"download (or find) and parse {name}",
            description=f"{info.description}. Archives are verified by MD5 and kept in ROOT/{name}/ (or "
                        f"directly in ROOT when it has no {name}/ folder); a file already there that fails "
                        "verification is refused and never changed. The validation split is the last 10% of the "
                        "official training set.",
        )
        if len(info.layouts) > 1:
            fetched.add_argument("--layout", choices=list(info.layouts), default=info.default_layout,
                                 help="sample shape: " + ", ".join(f"{k} {v}" for k, v in info.layouts.items())
                                 + f" (default {info.default_layout})")
        fetched.add_argument("--root", type=Path,
                             help=f"directory of the original archives (default ${DATA_ENV}, else {DEFAULT_ROOT})")
        fetched.add_argument("--offline", action="store_true",
                             help=f"never download: use the archives already in ROOT/{name} (read only: nothing "
                                  "is written there, so a read-only shared folder works)")
        fetched.add_argument("-o", "--out", type=Path,
                             help=f"output .npz (default resources/{name}/{name}.npz for the default layout, "
                                  f"resources/{name}/{name}_LAYOUT.npz otherwise)")
        fetched.add_argument("--timeout", type=float, default=60.0, help="seconds per network operation (default 60)")
        fetched.add_argument("--retries", type=int, default=3, help="further attempts per mirror (default 3)")
        fetched.add_argument("--deadline", type=float, default=3600.0,
                             help="seconds for each file's whole download, every mirror and attempt together "
                                  "(default 3600); a partial file is kept and resumed by the next run")


def _default_output(name: str, layout: str) -> Path:
    from predsparse.data import DATASETS

    stem = name if layout == DATASETS[name].default_layout else f"{name}_{layout}"
    return Path("resources") / name / f"{stem}.npz"


def run(args: argparse.Namespace) -> int:
    from predsparse.data import info_path
    from predsparse.io import check_output_file

    for path in (args.out, getattr(args, "figure", None)):
        if path is not None:
            check_output_file(path)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="predsparse data: %(message)s")
    if args.dataset == "morse":
        from predsparse.data import morse

        overrides = morse.parse_assignments(args.overrides)
        if overrides and args.out is None:
            raise DatasetError("give -o/--out with --set, so the file of the named variant is not replaced")
        out = args.out or Path("resources/morse") / f"{args.variant}.npz"
        meta = morse.save(out, args.variant, overrides, args.per_class, args.seed, args.figure)
        extra = f" and {(args.figure or out.with_suffix('.png'))}"
    else:
        if not args.timeout > 0 or args.retries < 0 or not args.deadline > 0:
            raise DatasetError(f"--timeout and --deadline must be > 0 and --retries >= 0, got {args.timeout}, "
                               f"{args.deadline} and {args.retries}")
        root = args.root or Path(os.environ.get(DATA_ENV) or DEFAULT_ROOT)
        options = {"offline": args.offline, "timeout": args.timeout, "retries": args.retries,
                   "deadline": args.deadline}
        if args.dataset == "mnist":
            from predsparse.data import mnist

            out = args.out or _default_output("mnist", args.layout)
            meta = mnist.prepare(root, out, args.layout, **options)
        else:
            from predsparse.data import cifar

            out = args.out or _default_output(args.dataset, "conv")
            meta = cifar.prepare(args.dataset, root, out, **options)
        extra = ""
    splits = ", ".join(f"{split} {n}" for split, n in meta["splits"].items())
    print(f"wrote {out} and {info_path(out)}{extra}: {splits} samples of shape {tuple(meta['sample_shape'])}")
    return 0
