# Datasets: Morse is generated (seeded, seconds); MNIST and CIFAR are downloaded, checksummed and
# parsed. Both run on the submitting machine (compute nodes often have no internet; generating takes
# seconds); downloads are retried.


localrules:
    morse,
    download,


rule morse:
    output:
        PLAN.dataset_path("morse", "{name}"),
    params:
        args=lambda w, output: PLAN.data_args(output[0]),
    log:
        PLAN.log_path("data/morse_{name}"),
    benchmark:
        PLAN.benchmark_path("data/morse_{name}")
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
        PLAN.dataset_path("{dataset}", "{layout}"),
    wildcard_constraints:
        dataset="mnist|cifar10|cifar100",
    params:
        args=lambda w, output: PLAN.data_args(output[0]),
    log:
        PLAN.log_path("data/{dataset}_{layout}"),
    benchmark:
        PLAN.benchmark_path("data/{dataset}_{layout}")
    retries: 3
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        SOFTWARE
    shell:
        "predsparse data {params.args} -o {output:q} > {log:q} 2>&1"
