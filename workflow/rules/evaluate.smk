rule evaluate:
    """Score a run against its ground truth, mirror-aware (`holly evaluate`)."""
    input:
        points=f"{RESULTS}/{{experiment}}/points.ply",
        initial=f"{RESULTS}/{{experiment}}/initial_points.ply",
    output:
        json=f"{RESULTS}/{{experiment}}/evaluation.json",
    log:
        f"{LOGS}/{{experiment}}/evaluate.log",
    benchmark:
        f"{BENCHMARKS}/{{experiment}}/evaluate.tsv"
    conda:
        "../../envs/holly.yaml"
    params:
        run=lambda w: run_dir(w.experiment),
        seed=config["evaluation"]["seed"],
        extra=evaluation_options,
    shell:
        "holly evaluate {params.run:q} --out {output.json:q} --seed {params.seed}"
        " {params.extra} 2> {log:q}"


rule vs_published:
    """Score a reconstruction against a published point cloud, mirror-aware (`holly evaluate`)."""
    input:
        points=f"{RESULTS}/{{experiment}}/points.ply",
        initial=f"{RESULTS}/{{experiment}}/initial_points.ply",
        published=lambda w: PUBLISHED[w.experiment],
    output:
        json=f"{RESULTS}/{{experiment}}/vs_published.json",
        aligned=f"{RESULTS}/{{experiment}}/vs_published_aligned.ply",
    log:
        f"{LOGS}/{{experiment}}/vs_published.log",
    conda:
        "../../envs/holly.yaml"
    params:
        run=lambda w: run_dir(w.experiment),
        seed=config["evaluation"]["seed"],
        extra=evaluation_options,
    shell:
        "holly evaluate {params.run:q} --ground-truth {input.published:q}"
        " --out {output.json:q} --aligned {output.aligned:q} --seed {params.seed}"
        " {params.extra} 2> {log:q}"
