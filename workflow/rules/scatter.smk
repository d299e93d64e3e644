# Scatter vector S = [S1f, S1b, ..., Sf, Sb] of every pattern file (Section 3.1): a second, no training,
# so a local rule.


localrules:
    scatter,


rule scatter:
    input:
        f"{RESULTS}/patterns/{{pattern_id}}.npz",
    output:
        f"{RESULTS}/scatter/{{pattern_id}}.json",
    log:
        f"{RESULTS}/logs/scatter/{{pattern_id}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        SOFTWARE
    shell:
        "predsparse scatter {input} --json -o {output} > {log} 2>&1"
