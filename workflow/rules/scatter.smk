# Scatter vector S = [S1f, S1b, ..., Sf, Sb] of every pattern file (Section 3.1): a second, no training,
# so a local rule. A study with `scatter: {neurons: real}` scores padded layers over their real neurons
# only (--real-in/--real-out, recorded in the JSON as real_neurons).


localrules:
    scatter,


rule scatter:
    input:
        PLAN.pattern_path("{pattern_id}"),
    output:
        PLAN.scatter_path("{pattern_id}"),
    params:
        args=lambda w: PLAN.scatter_args(w.pattern_id),
    log:
        PLAN.log_path("scatter/{pattern_id}"),
    benchmark:
        PLAN.benchmark_path("scatter/{pattern_id}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        SOFTWARE
    shell:
        "predsparse scatter {input:q} {params.args} --json -o {output:q} > {log:q} 2>&1"
