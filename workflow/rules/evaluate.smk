rule evaluate:
    """Score a run against its ground truth, mirror-aware (`holly evaluate`)."""
    input:
        points=f"{RESULTS}/{{experiment}}/points.ply",
        initial=f"{RESULTS}/{{experiment}}/initial_points.ply",
    output:
        json=f"{RESULTS}/{{experiment}}/evaluation.json",
    log:
        "logs/{experiment}/evaluate.log",
    benchmark:
        "benchmarks/{experiment}/evaluate.tsv"
    conda:
        "../../envs/holly.yaml"
    params:
        run=lambda w: run_dir(w.experiment),
        seed=config["evaluation"]["seed"],
        extra=evaluation_options,
    shell:
        "holly evaluate {params.run:q} --out {output.json:q} --seed {params.seed}"
        " {params.extra} 2> {log:q}"
