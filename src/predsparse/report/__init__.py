"""Figures, tables and the report, drawn only from results/summary.csv and results/history.csv.

`STUDIES` (the study names of config.yaml and the figure panel each feeds) is importable without the
plotting stack; `predsparse.report.document.build_report` renders everything.
"""

from predsparse.report.studies import FIGURES, STUDIES, Study, study_info

__all__ = ["FIGURES", "STUDIES", "Study", "study_info"]
