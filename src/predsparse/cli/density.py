"""`predsparse density`: weights, densities and op savings of a net, a pattern file, the valid splits of an
overall density, or the fan-outs an allocation rule gives it."""

from __future__ import annotations

import argparse
import json

from predsparse.cli import parse_int_list
from predsparse.errors import PatternError
from predsparse.methods.allocation import RULES

HELP = ("CL densities, weight and op counts of a net or a pattern file; every fan-out split of an overall "
        "density, or the split an allocation rule gives it")


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number (a fraction, e.g. 0.25 for 25%)") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--net", type=parse_int_list, help="layer sizes N_1,...,N_{J+1}, e.g. 4096,512,16")
    source.add_argument("--pattern", help="a pattern file (.npz) to account for instead of --net/--fanouts")
    parser.add_argument("--fanouts", type=parse_int_list, help="fan-outs fo_1,...,fo_J, e.g. 1,8")
    parser.add_argument(
        "--overall",
        type=_fraction,
        help="list every valid fan-out combination of --net with this overall CL density (a fraction), "
        "sorted by junction-1 density (the sweep of Fig. 3b, c)",
    )
    parser.add_argument(
        "--tol",
        type=_fraction,
        help="with --overall: accepted distance from it (a fraction; default 0: exact)",
    )
    parser.add_argument(
        "--allocate",
        metavar="RULE",
        help=f"with --overall: the fan-outs rule RULE ({', '.join(RULES)}) allocates across the junctions "
        "(paper: each junction 3x as dense as the one before; erk: Erdos-Renyi as in RigL), with their densities",
    )
    parser.add_argument(
        "--other-params",
        type=int,
        default=0,
        help="parameters outside the CLs (conv layers), for the overall parameter reduction of Table 2",
    )
    parser.add_argument(
        "--other-ops",
        type=int,
        default=0,
        help="ops outside the CLs (conv MACs and bias adds), for the overall op reduction of Table 2",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (fractions, not percent)")


def _print_density(d, as_json: bool) -> None:
    if as_json:
        print(json.dumps(d.to_dict(), sort_keys=True))
        return
    rows = [("junction", "N_i->N_i+1", "fo", "fi", "weights", "dense", "density")]
    for i, (a, b) in enumerate(zip(d.net[:-1], d.net[1:])):
        rows.append(
            (
                str(i + 1),
                f"{a}->{b}",
                str(d.fanouts[i]),
                str(d.fanins[i]),
                str(d.junction_weights[i]),
                str(d.junction_dense_weights[i]),
                f"{100 * d.junction_densities[i]:.4g}%",
            )
        )
    rows.append(("all", "", "", "", str(d.weights), str(d.dense_weights), f"{100 * d.overall_density:.4g}%"))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))
    print(f"compression {d.compression:.4g}x; CL MACs per sample {d.macs} (dense {d.dense_macs})")
    if d.other_params or d.other_ops:
        print(
            f"overall parameter reduction {100 * d.param_reduction:.4g}% (other params {d.other_params}); "
            f"overall op reduction {100 * d.op_reduction:.4g}% (other ops {d.other_ops})"
        )


def _print_splits(net, overall: float, tol: float, as_json: bool) -> None:
    from predsparse.density import junction_densities, nearest_split, overall_density, valid_splits

    splits = valid_splits(net, overall, tol)
    if not splits:
        near = nearest_split(net, overall)
        raise PatternError(
            f"no valid fan-outs of net {','.join(map(str, net))} give overall density {overall:g} within tol "
            f"{tol:g}; the closest is {overall_density(net, near):.6g} (fan-outs {','.join(map(str, near))}); "
            "widen --tol"
        )
    records = [
        {
            "fanouts": list(split),
            "junction_densities": list(junction_densities(net, split)),
            "overall_density": overall_density(net, split),
        }
        for split in splits
    ]
    if as_json:
        print(json.dumps({"net": list(net), "overall": overall, "tol": tol, "splits": records}, sort_keys=True))
        return
    net_text = ",".join(map(str, net))
    print(f"{len(records)} valid fan-out splits of net {net_text} at overall density {overall:g} (tol {tol:g})")
    for record in records:
        densities = ", ".join(f"{100 * x:.4g}%" for x in record["junction_densities"])
        fanouts = ",".join(map(str, record["fanouts"]))
        print(f"fo {fanouts}: junctions {densities}; overall {100 * record['overall_density']:.4g}%")


def _print_allocation(args: argparse.Namespace) -> None:
    from predsparse.density import density
    from predsparse.methods.allocation import allocate, target_densities

    targets = target_densities(args.net, args.overall, args.allocate)
    d = density(args.net, allocate(args.net, args.overall, args.allocate), args.other_params, args.other_ops)
    if args.json:
        record = {**d.to_dict(), "allocation": args.allocate, "target_overall": args.overall,
                  "target_densities": list(targets)}
        print(json.dumps(record, sort_keys=True))
        return
    print(f"{args.allocate} allocation of overall density {args.overall:g} over net {','.join(map(str, d.net))}: "
          f"fan-outs {','.join(map(str, d.fanouts))} (target junction densities "
          + ", ".join(f"{100 * t:.4g}%" for t in targets) + ")")
    _print_density(d, False)


def run(args: argparse.Namespace) -> int:
    from predsparse.density import density, pattern_density
    from predsparse.patterns.format import load_pattern

    if args.pattern is not None:
        if args.fanouts is not None or args.overall is not None or args.allocate is not None:
            raise PatternError("--pattern takes its net and fan-outs from the file; drop --fanouts/--overall/--allocate")
        _print_density(pattern_density(load_pattern(args.pattern), args.other_params, args.other_ops), args.json)
    elif args.allocate is not None:
        if args.overall is None or args.fanouts is not None or args.tol is not None:
            raise PatternError("--allocate RULE takes --net and --overall (the density to allocate); drop --fanouts/--tol")
        _print_allocation(args)
    elif args.overall is not None:
        if args.fanouts is not None:
            raise PatternError("give either --fanouts (account for one net) or --overall (list the splits), not both")
        _print_splits(args.net, args.overall, 0.0 if args.tol is None else args.tol, args.json)
    elif args.fanouts is not None:
        _print_density(density(args.net, args.fanouts, args.other_params, args.other_ops), args.json)
    else:
        raise PatternError("with --net, give --fanouts (account for that net) or --overall (list the valid splits; "
                           "with --allocate RULE, the split RULE gives)")
    return 0
