"""The pipeline's view of a config: checked (schema, then semantics) and expanded into the run table.

`load_plan(path_or_dict)` gives a `Plan`: its runs (one `RunSpec` each), the pattern files they share
and the dataset files they read, with the path of every output. The Snakemake workflow
(workflow/rules/common.smk) and `predsparse plan` both go through it, so they cannot disagree.
"""

from predsparse.pipeline.config import check_schema, read_yaml
from predsparse.pipeline.plan import DataTarget, PatternRow, Plan, Run, load_plan, plan_for_snakemake

__all__ = [
    "DataTarget",
    "PatternRow",
    "Plan",
    "Run",
    "check_schema",
    "load_plan",
    "plan_for_snakemake",
    "read_yaml",
]
