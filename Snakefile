# Reproduces "Characterizing Sparse Connectivity Patterns in Neural Networks" (Dey et al.).
#   snakemake --cores 2 --configfile config/morse.yaml   # every Morse study, on a laptop
#   snakemake --cores 8                                  # the whole paper (config.yaml)
# The config is checked and expanded into the run table in workflow/rules/common.smk (`predsparse plan CONFIG`
# prints the same table); each rule is a thin call of the `predsparse` CLI.


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/patterns.smk"
include: "workflow/rules/scatter.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        rules.report.output,  # report.md, report.html and every figure and table (see report.smk)
        PLAN.path("mlflow_sync.done"),
        [PLAN.scatter_path(pattern_id) for pattern_id in PLAN.patterns],
    default_target: True
