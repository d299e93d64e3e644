"""`predsparse pattern`: generate a connectivity pattern file."""

from __future__ import annotations

import argparse
import os

from predsparse.cli import parse_int_list
from predsparse.errors import PatternError

HELP = "generate a connectivity pattern (dense, random, planned, unstructured, csc) and save it as .npz"


def parse_shapes(text: str) -> list[tuple[int, ...] | None]:
    """'1x32x32,-,-' -> [(1, 32, 32), None, None]: one entry per layer, '-' for a flat layer."""
    shapes: list[tuple[int, ...] | None] = []
    for item in text.split(","):
        item = item.strip()
        if item == "-":
            shapes.append(None)
            continue
        try:
            shapes.append(tuple(int(d) for d in item.split("x")))
        except ValueError:
            raise PatternError(
                f"layer shape '{item}' in --shapes '{text}' is not e.g. 1x32x32 (or - for a flat layer)"
            ) from None
    return shapes


# Peak bytes per connection while a pattern is built and saved (int32 index, int64 temporaries, the
# serialised copy); measured at 15 (dense) to 48 (planned) on 2048-wide layers.
BYTES_PER_CONNECTION = 32


def join_ints(values) -> str:
    return ",".join(str(v) for v in values)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(net, fanouts, kind: str) -> None:
    """Refuse, before building it, a pattern whose connections cannot fit in the memory available."""
    from predsparse.density import dense_junction_weights
    from predsparse.patterns import check_net

    if kind == "dense":
        connections = sum(dense_junction_weights(net))
    elif fanouts is not None and kind in ("random", "planned", "unstructured"):
        try:
            net, fanouts = check_net(net, fanouts)
        except PatternError:
            return  # generate_pattern names the bad fan-out
        connections = sum(n * fo for n, fo in zip(net[:-1], fanouts))
    else:
        return
    need, have = connections * BYTES_PER_CONNECTION, available_memory()
    if have is not None and need > have:
        raise PatternError(
            f"net {join_ints(net)} ({kind}) has {connections:,} connections: building its pattern needs about "
            f"{need / 2**30:.1f} GiB of memory, more than the {have / 2**30:.1f} GiB available; use a smaller net "
            "or smaller fan-outs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from predsparse.patterns.generate import KINDS

    kinds = "; ".join(f"{name}: {kind.summary}" for name, kind in KINDS.items())
    parser.add_argument(
        "--net", type=parse_int_list, required=True, help="layer sizes N_1,...,N_{J+1}, e.g. 64,1024,64"
    )
    parser.add_argument(
        "--fanouts",
        type=parse_int_list,
        help="fan-outs fo_1,...,fo_J, e.g. 128,8 (fi_i = N_i*fo_i/N_{i+1} must be whole); "
        "optional for dense, not used by csc",
    )
    parser.add_argument("--kind", default="random", help=f"pattern kind (default random). {kinds}")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); same inputs, same file")
    parser.add_argument(
        "--generator",
        help="random only: uniform (default; close to uniform over all junctions, rows in random order) or "
        "sequential (the authors' generator: right neurons filled in index order, each from the left "
        "neurons whose fan-out is not yet full, the last ones forced to take what is left)",
    )
    parser.add_argument(
        "--cluster",
        action="append",
        default=[],
        metavar="J:f=C|J:b=C",
        help="planned only: forward (f) or backward (b) clustering C of junction J (1-based), so that "
        "S_Jf = 1/C or S_Jb = 1/C exactly; repeat the option or separate by commas, e.g. "
        "--cluster 1:f=2,2:b=4; junctions not named get 1 (perfect spread). C must divide fi (f) or "
        "fo (b) and the window size N_{J+1}/fo_J, and C_f*C_b must not exceed it",
    )
    parser.add_argument(
        "--shapes",
        help="layer shapes for shaped scatter windows, one per layer, '-' for flat, e.g. 1x32x32,-,- "
        "(an image input) or 256x4x4,-,- (conv features, flattened C,H,W); planned patterns are built "
        "on those windows",
    )
    parser.add_argument(
        "--radices",
        help="csc only: radices of the support layers, e.g. 32,32 for N = 1024; one group per dense layer "
        "separated by '/' for a net of several layers",
    )
    parser.add_argument("-o", "--output", required=True, help="pattern file to write (.npz), written atomically")


def run(args: argparse.Namespace) -> int:
    from predsparse.density import pattern_density
    from predsparse.io import check_output_file
    from predsparse.patterns.generate import generate_pattern, parse_clusters

    check_output_file(args.output)
    options = {}
    if args.generator is not None:
        if args.kind != "random":
            raise PatternError(f"--generator is for kind random, not {args.kind}")
        options["generator"] = args.generator
    if args.cluster:
        if args.kind != "planned":
            raise PatternError(f"--cluster is for kind planned, not {args.kind}")
        options["clusters"] = parse_clusters(",".join(args.cluster))
    if args.radices is not None:
        if args.kind != "csc":
            raise PatternError(f"--radices is for kind csc, not {args.kind}")
        options["radices"] = args.radices  # read by predsparse.patterns.csc ('32,32', or '3,10,10/1,10' per layer)
    shapes = parse_shapes(args.shapes) if args.shapes else None

    _check_memory(args.net, args.fanouts, args.kind)
    try:
        pattern = generate_pattern(args.net, args.fanouts, args.kind, args.seed, shapes=shapes, **options)
        pattern.save(args.output)
    except MemoryError:
        raise PatternError(f"out of memory building the {args.kind} pattern of net {join_ints(args.net)}; use a "
                           "smaller net or smaller fan-outs") from None
    d = pattern_density(pattern)

    def join(values) -> str:
        return ",".join(str(v) for v in values)

    generator = pattern.meta.get("options", {}).get("generator")
    print(
        f"{pattern.kind}{f' ({generator})' if generator else ''} net={join(pattern.net)} fo={join(pattern.fanouts)} fi={join(pattern.fanins)} "
        f"density={join(f'{100 * x:.4g}%' for x in d.junction_densities)} overall={100 * d.overall_density:.4g}% "
        f"weights={d.weights}/{d.dense_weights} -> {args.output}"
    )
    return 0
