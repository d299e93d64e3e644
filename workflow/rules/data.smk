# Datasets: Morse is generated (seeded, seconds); MNIST and CIFAR are downloaded, checksummed and
# parsed. Both run on the submitting machine (compute nodes often have no internet; generating takes
# seconds); downloads are retried.


localrules:
    morse,
    download,


rule morse:
    output:
        f"{RESOURCES}/morse/{{name}}.npz",
    params:
        args=lambda w, output: PLAN.data_args(output[0]),
    log:
        f"{RESULTS}/logs/data/morse_{{name}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/morse_{{name}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        SOFTWARE
    shell:
        "predsparse data {params.args} -o {output:q} > {log:q} 2>&1"


rule download:
    output:
        f"{RESOURCES}/{{dataset}}/{{layout}}.npz",
    wildcard_constraints:
        dataset="mnist|cifar10|cifar100",
    params:
        args=lambda w, output: PLAN.data_args(output[0]),
    log:
        f"{RESULTS}/logs/data/{{dataset}}_{{layout}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/{{dataset}}_{{layout}}.tsv"
    retries: 3
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        SOFTWARE
    shell:
        "predsparse data {params.args} -o {output:q} > {log:q} 2>&1"
