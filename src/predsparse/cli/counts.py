"""`predsparse counts CONFIG`: the CL weights, densities and conv counts of every Table 1 / 2 configuration."""

from __future__ import annotations

HELP = ("write the training-free counts (CL weights and densities, conv params and ops from the models) of the "
        "Table 1 / 2 studies of a config to a CSV the report reads")


def add_arguments(parser) -> None:
    parser.add_argument("config", nargs="?", default="config.yaml",
                        help="pipeline config with the paper's studies (default: %(default)s, the paper preset)")
    parser.add_argument("-o", "--output", default=None,
                        help="CSV to write (default: the copy shipped with the report, "
                             "src/predsparse/report/config_counts.csv)")


def run(args) -> int:
    from predsparse.report.counts import build_counts, default_counts_path, write_counts

    rows = build_counts(args.config)
    output = args.output or default_counts_path()
    write_counts(rows, output)
    print(f"{len(rows)} configuration(s) of {args.config} -> {output}")
    return 0
