# points.ply, written last, is the only output: it marks a finished run, like fetch's --done
# file. Snakemake deletes a failed or interrupted job's outputs, and points.ply does not exist
# then, so the training history (metrics.csv rows, snapshots, checkpoints) survives and the next
# run resumes (--resume auto: only if the experiment's config is unchanged; otherwise it starts
# afresh). Later rules read the other files of the run folder (docs/architecture.md) through it.
rule train:
    """Train one experiment: learn its point cloud and pose CNN (`holly train`)."""
    input:
        unpack(train_inputs),
    output:
        points=f"{RESULTS}/{{experiment}}/points.ply",
    log:
        f"{LOGS}/{{experiment}}/train.log",
    benchmark:
        f"{BENCHMARKS}/{{experiment}}/train.tsv"
    priority: train_priority
    conda:
        "../../envs/holly.yaml"
    threads: train_threads
    resources:
        gpu=1,
        mem_mb=train_mem_mb,
        runtime=train_runtime,
    params:
        cfg=experiment_json,
        run=lambda w: run_dir(w.experiment),
    shell:
        "OMP_NUM_THREADS={threads} holly train --config-json {params.cfg:q}"
        " --out {params.run:q} --resume auto 2> {log:q}"


rule train_half:
    """Train one half-set run: the experiment on half of its particles (`holly train --half`)."""
    input:
        unpack(train_inputs),
    output:
        points=f"{RESULTS}/{{experiment}}/halves/{{half}}/points.ply",
    log:
        f"{LOGS}/{{experiment}}/train_{{half}}.log",
    benchmark:
        f"{BENCHMARKS}/{{experiment}}/train_{{half}}.tsv"
    wildcard_constraints:
        half="|".join(HALVES),
    priority: train_priority
    conda:
        "../../envs/holly.yaml"
    threads: train_threads
    resources:
        gpu=1,
        mem_mb=train_mem_mb,
        runtime=train_runtime,
    params:
        cfg=experiment_json,
        run=lambda w: half_dir(w.experiment, w.half),
    shell:
        "OMP_NUM_THREADS={threads} holly train --config-json {params.cfg:q}"
        " --out {params.run:q} --resume auto 2> {log:q}"
