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
    result = scatter_vector(pattern).to_dict()
    if args.output:
        atomic_write_json(args.output, result)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{args.pattern}: net {'-'.join(map(str, pattern.net))}, fan-outs "
        f"{'-'.join(map(str, pattern.fanouts))}, kind {pattern.kind}"
    )
    for label, value in zip(result["labels"], result["vector"]):
        print(f"  {label:<4} {value:.4f}")
    print(f"  S    {result['scatter']:.4f}  (minimum)")
    return 0
