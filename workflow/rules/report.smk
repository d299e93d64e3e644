# Figures, tables and results/report.md from the summary alone (redrawn without retraining), plus
# run_info.json: what the config asked for (including its deviations from the paper's protocol) and the
# software that ran it; rewritten whenever the summary changes.


localrules:
    run_info,
    report,


rule run_info:
    input:
        f"{RESULTS}/summary.csv",
    output:
        f"{RESULTS}/run_info.json",
    params:
        info=lambda w: PLAN.run_info(),
    log:
        f"{RESULTS}/logs/run_info.log",
    run:
        PLAN.write_run_info(output[0], log[0])


rule report:
    input:
        summary=f"{RESULTS}/summary.csv",
        history=f"{RESULTS}/history.csv",
        run_info=f"{RESULTS}/run_info.json",
        # Shipped with the report: the curated reasons for disagreements and config.yaml's training-free
        # counts (`predsparse counts`); editing either redraws the report.
        reasons=os.path.join(workflow.basedir, "src/predsparse/report/paper_reasons.yaml"),
        counts=os.path.join(workflow.basedir, "src/predsparse/report/config_counts.csv"),
    output:
        f"{RESULTS}/report.md",
    params:
        out=lambda w: RESULTS,
    log:
        f"{RESULTS}/logs/report.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        SOFTWARE
    shell:
        "predsparse report --summary {input.summary:q} --history {input.history:q} --out {params.out:q} "
        "--run-info {input.run_info:q} --reasons {input.reasons:q} --counts {input.counts:q} > {log:q} 2>&1"
