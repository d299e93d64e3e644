"""Figures, tables and the report, drawn only from results/summary.csv and results/history.csv.

`STUDIES` (the paper's study names of config.yaml and the figure panel each feeds) and `BEYOND` (the
studies beyond the paper) are importable without the plotting stack;
`predsparse.report.document.build_report` renders everything.
"""

from predsparse.report.studies import BEYOND, FIGURES, STUDIES, Study, is_beyond, study_info

__all__ = ["BEYOND", "FIGURES", "STUDIES", "Study", "is_beyond", "study_info"]
