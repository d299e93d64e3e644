# Figures, tables and results/report.md from the summary alone (redrawn without retraining), plus
# run_info.json: what the config asked for (including its deviations from the paper's protocol) and the
# software that ran it; rewritten whenever the summary changes. Every figure and table is a declared
# output once a summary of this config's runs exists (PLAN.report_outputs), so deleting one redraws the
# report; figures, CSV tables and report.html are marked for `snakemake --report report.zip`.


localrules:
    run_info,
    report,


REPORT_SOURCES = {
    "reasons_path": os.path.join(workflow.basedir, "src/predsparse/report/paper_reasons.yaml"),
    "counts_path": os.path.join(workflow.basedir, "src/predsparse/report/config_counts.csv"),
}
REPORT = PLAN.report_outputs(**REPORT_SOURCES)


rule run_info:
    input:
        PLAN.path("summary.csv"),
    output:
        PLAN.path("run_info.json"),
    params:
        info=lambda w: PLAN.run_info(),
    log:
        PLAN.log_path("run_info"),
    benchmark:
        PLAN.benchmark_path("run_info")
    run:
        PLAN.write_run_info(output[0], log[0])


rule report:
    input:
        summary=PLAN.path("summary.csv"),
        history=PLAN.path("history.csv"),
        run_info=PLAN.path("run_info.json"),
        # Shipped with the report: the curated reasons for disagreements and config.yaml's training-free
        # counts (`predsparse counts`); editing either redraws the report.
        reasons=REPORT_SOURCES["reasons_path"],
        counts=REPORT_SOURCES["counts_path"],
    output:
        md=PLAN.path("report.md"),
        html=report(PLAN.path("report.html"), category="Report", labels={"document": "report.html"}),
        figures=[report(p, category="Figures", labels={"figure": Path(p).stem}) for p in REPORT["figures"]],
        figure_pdfs=REPORT["figure_pdfs"],
        tables=[report(p, category="Tables", labels={"table": Path(p).stem}) for p in REPORT["table_csv"]],
        table_md=REPORT["tables"],
        table_tex=REPORT["table_tex"],
    params:
        out=lambda w: PLAN.results_dir,
    log:
        PLAN.log_path("report"),
    benchmark:
        PLAN.benchmark_path("report")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        SOFTWARE
    shell:
        "predsparse report --summary {input.summary:q} --history {input.history:q} --out {params.out:q} "
        "--run-info {input.run_info:q} --reasons {input.reasons:q} --counts {input.counts:q} > {log:q} 2>&1"
