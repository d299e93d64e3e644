# Pattern files: one per distinct (net, fan-outs, kind, options, shapes, seed), shared by every run
# that needs it (the file name is a hash of that definition; `predsparse plan` lists it per run).
# A local rule: it takes about a second, less than a cluster job would wait in the queue.


localrules:
    pattern,


rule pattern:
    output:
        PLAN.pattern_path("{pattern_id}"),
    params:
        args=lambda w: PLAN.pattern_args(w.pattern_id),
    log:
        PLAN.log_path("patterns/{pattern_id}"),
    benchmark:
        PLAN.benchmark_path("patterns/{pattern_id}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        SOFTWARE
    shell:
        "predsparse pattern {params.args} -o {output:q} > {log:q} 2>&1"
