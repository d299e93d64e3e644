# Every run's metrics.json and history.csv -> results/summary.csv and results/history.csv (the only
# inputs of figures and tables); MLflow brought up to date with the run folders (idempotent). Both are
# local rules: quick, and the submitting machine reaches the MLflow tracking server.


localrules:
    aggregate,
    mlflow_sync,


rule aggregate:
    input:
        RUN_METRICS,
        scatter=[PLAN.scatter_path(pattern_id) for pattern_id in PLAN.patterns],
    output:
        summary=PLAN.path("summary.csv"),
        history=PLAN.path("history.csv"),
    params:
        runs=lambda w: PLAN.path("runs"),
        scatter=lambda w: PLAN.path("scatter"),
    log:
        PLAN.log_path("aggregate"),
    benchmark:
        PLAN.benchmark_path("aggregate")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        SOFTWARE
    shell:
        "predsparse aggregate {params.runs:q} -o {output.summary:q} --history {output.history:q} --scatter {params.scatter:q} > {log:q} 2>&1"


rule mlflow_sync:
    input:
        RUN_METRICS,
    output:
        touch(PLAN.path("mlflow_sync.done")),
    params:
        runs=lambda w: PLAN.path("runs"),
        uri=PLAN.tracking_uri,
    log:
        PLAN.log_path("mlflow_sync"),
    benchmark:
        PLAN.benchmark_path("mlflow_sync")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        SOFTWARE
    shell:
        "predsparse mlflow-sync {params.runs:q} --tracking-uri {params.uri:q} > {log:q} 2>&1"
