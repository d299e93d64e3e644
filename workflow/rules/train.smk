# One training job per run of the run table. The spec file is the job's whole definition: one local
# job writes them all (in-process, a second) whenever any run is added or changed. Training depends on
# its spec as `ancient` and on the run's id (a hash of its definition) as a param, so Snakemake
# (re)trains exactly the runs that are new or whose definition changed. A killed job resumes from its
# checkpoint when rerun (the checkpoint is not an output, so Snakemake leaves it in place).


localrules:
    specs,
    tracking_store,


rule specs:
    output:
        [PLAN.spec_path(run) for run in PLAN.runs],
    params:
        definition=PLAN.definition(),
    log:
        PLAN.log_path("specs"),
    benchmark:
        PLAN.benchmark_path("specs")
    run:
        PLAN.write_specs(log[0])


# The MLflow store and every study's experiment, created once before the training jobs (which would
# otherwise race to create them).
rule tracking_store:
    output:
        touch(PLAN.path("mlflow_store.ready")),
    params:
        uri=PLAN.tracking_uri,
        studies=sorted({run.study for run in PLAN.runs}),
    log:
        PLAN.log_path("tracking_store"),
    benchmark:
        PLAN.benchmark_path("tracking_store")
    run:
        PLAN.prepare_tracking(log[0])


# One training job per group of runs (PLAN.groups): runs that share a net and hyper-parameters train in
# one process (`predsparse train --spec A --out A --spec B --out B ...`), every run still its own
# folder, checkpoint and MLflow run; the others get a job of their own. A rule per group, named
# train_<group id>, declares exactly its runs' metrics.json; its params are the runs' ids, so a changed
# run reruns its group. The largest jobs have the highest priority (PLAN.priorities), so they start
# first. The config's `group_runs` caps a group (1: one job per run).
for group in PLAN.groups:

    rule:
        name:
            f"train_{group.id}"
        input:
            specs=[ancient(PLAN.spec_path(run)) for run in group.runs],
            store=ancient(PLAN.path("mlflow_store.ready")),
            data=sorted({run.spec.data for run in group.runs}),
            patterns=sorted({run.spec.pattern for run in group.runs}),
        output:
            [PLAN.metrics_path(run) for run in group.runs],
        params:
            run_ids=[run.spec.run_id() for run in group.runs],
            args=PLAN.train_args(group),
        log:
            PLAN.log_path(f"train/{group.id}"),
        benchmark:
            PLAN.benchmark_path(f"train/{group.id}")
        threads: group.runs[0].resources["threads"]
        priority: PLAN.priorities[group.id]
        resources:
            mem_mb=max(run.resources["mem_mb"] for run in group.runs),
            runtime=sum(run.resources["runtime"] for run in group.runs),
            gpu=group.runs[0].resources.get("gpu", 0),
        conda:
            SOFTWARE
        shell:
            "predsparse train {params.args} > {log:q} 2>&1"
