"""`predsparse report`: figures, tables, report.md and report.html from the summary and history CSVs."""

from __future__ import annotations

HELP = "draw the figures and tables and write results/report.md and report.html from summary/history CSVs"


def add_arguments(parser) -> None:
    parser.add_argument("--summary", required=True, help="results/summary.csv (one row per run)")
    parser.add_argument("--history", required=True, help="results/history.csv (one row per run per epoch)")
    parser.add_argument("--out", required=True, help="output directory (figures/, tables/, report.md, report.html)")
    parser.add_argument("--run-info", default=None,
                        help="run-info JSON written by the pipeline (preset, versions, wall time, deviations)")
    parser.add_argument("--paper", default=None,
                        help="paper numbers CSV (default: the copy of paper_numbers.csv shipped with predsparse)")
    parser.add_argument("--counts", default=None,
                        help="training-free counts of config.yaml's Table 1/2 configurations (`predsparse counts`; "
                             "default: the config_counts.csv shipped with predsparse)")
    parser.add_argument("--reasons", default=None,
                        help="curated reasons for disagreements (default: the paper_reasons.yaml shipped with "
                             "predsparse)")


def run(args) -> int:
    from predsparse.io import check_output_dir
    from predsparse.report.document import build_report

    check_output_dir(args.out)
    written = build_report(args.summary, args.history, args.out, args.run_info, args.paper, args.counts,
                           args.reasons)
    print(f"wrote {len(written)} files under {args.out} (report.md, report.html)")
    return 0
