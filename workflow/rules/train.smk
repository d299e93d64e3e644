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
        f"{RESULTS}/logs/specs.log",
    run:
        PLAN.write_specs(log[0])


# The MLflow store and every study's experiment, created once before the training jobs (which would
# otherwise race to create them).
rule tracking_store:
    output:
        touch(f"{RESULTS}/mlflow_store.ready"),
    params:
        uri=PLAN.tracking_uri,
        studies=sorted({run.study for run in PLAN.runs}),
    log:
        f"{RESULTS}/logs/tracking_store.log",
    run:
        PLAN.prepare_tracking(log[0])


rule train:
    input:
        spec=ancient(f"{RESULTS}/specs/{{study}}/{{run}}.json"),
        store=ancient(f"{RESULTS}/mlflow_store.ready"),
        data=lambda w: PLAN.run(w.study, w.run).spec.data,
        pattern=lambda w: PLAN.run(w.study, w.run).spec.pattern,
    output:
        metrics=f"{RESULTS}/runs/{{study}}/{{run}}/metrics.json",
    params:
        run_id=lambda w: PLAN.run(w.study, w.run).spec.run_id(),
        out=lambda w, output: os.path.dirname(output.metrics),
    log:
        f"{RESULTS}/logs/train/{{study}}/{{run}}.log",
    threads: lambda w: PLAN.run(w.study, w.run).resources["threads"]
    resources:
        mem_mb=lambda w: PLAN.run(w.study, w.run).resources["mem_mb"],
        runtime=lambda w: PLAN.run(w.study, w.run).resources["runtime"],
        gpu=lambda w: PLAN.run(w.study, w.run).resources.get("gpu", 0),
    conda:
        SOFTWARE
    shell:
        "predsparse train --spec {input.spec:q} --out {params.out:q} > {log:q} 2>&1"
