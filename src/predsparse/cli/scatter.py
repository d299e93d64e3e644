"""`predsparse scatter`: the scatter vector of a pattern file."""

from __future__ import annotations

import argparse
import json

HELP = "compute the scatter vector S = [S1f, S1b, ..., Sf, Sb] and the scatter S = min of a pattern file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", help="pattern file (.npz) written by `predsparse pattern`")
    parser.add_argument(
        "--json", action="store_true", help='print {"vector": [...], "labels": ["S1f", ...], "scatter": min}'
    )
    parser.add_argument(
        "--shapes",
        help="layer shapes for the windows, overriding those stored in the pattern: one per layer, '-' for "
        "flat, e.g. 1x32x32,-,- (2-D tiles of an image input) or 256x4x4,-,- (cuboids of conv features)",
    )
    parser.add_argument(
        "--real-in",
        metavar="N|HxW/PxQ",
        help="padded input layer: score S1b and Sb over its real neurons only (the authors' convention); "
        "N = the first N neurons (zeros appended at the end), HxW/PxQ = an HxW image centred in a PxQ zero "
        "border, flattened row-major, e.g. 28x28/32x32 for `predsparse data mnist --layout pad32`",
    )
    parser.add_argument(
        "--real-out",
        metavar="N",
        help="padded output layer: score SJf and Sf over its first N neurons only (the real classes, e.g. 10 "
        "of 16); with --real-in or --real-out the JSON records them under real_neurons",
    )
    parser.add_argument("-o", "--output", help="also write the JSON to this file (atomically)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from predsparse.cli.pattern import parse_shapes
    from predsparse.io import atomic_write_json
    from predsparse.patterns import load_pattern
    from predsparse.scatter import scatter_vector

    pattern = load_pattern(args.pattern)
    if args.shapes is not None:
        pattern = replace(pattern, shapes=tuple(parse_shapes(args.shapes)))
    result = scatter_vector(pattern, real_in=args.real_in, real_out=args.real_out).to_dict()
    if args.output:
        atomic_write_json(args.output, result)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{args.pattern}: net {'-'.join(map(str, pattern.net))}, fan-outs "
        f"{'-'.join(map(str, pattern.fanouts))}, kind {pattern.kind}"
    )
    for side, real in result.get("real_neurons", {}).items():
        print(f"  real {side} neurons: {real['real']} of {real['of']} ({real['spec']})")
    for label, value in zip(result["labels"], result["vector"]):
        print(f"  {label:<4} {value:.4f}")
    print(f"  S    {result['scatter']:.4f}  (minimum)")
    return 0
