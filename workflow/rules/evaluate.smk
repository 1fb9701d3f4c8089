rule evaluate:
    """Score a run against its ground truth, mirror-aware (`holly evaluate`)."""
    input:
        unpack(structure_inputs),
        points=f"{RESULTS}/{{experiment}}/points.ply",
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
        structure=structure_options,
    shell:
        "holly evaluate {params.run:q} --out {output.json:q} --seed {params.seed}"
        " {params.extra} {params.structure} 2> {log:q}"


rule vs_published:
    """Score a reconstruction against a published point cloud, mirror-aware (`holly evaluate`)."""
    input:
        points=f"{RESULTS}/{{experiment}}/points.ply",
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


rule compare_halves:
    """Align an experiment's two half-set runs and compute their FSC resolution (`holly compare`)."""
    input:
        half1=f"{RESULTS}/{{experiment}}/halves/half1/points.ply",
        half2=f"{RESULTS}/{{experiment}}/halves/half2/points.ply",
    output:
        json=f"{RESULTS}/{{experiment}}/halfsets.json",
        figure=report(
            f"{RESULTS}/{{experiment}}/figures/fsc.{FIG_FORMAT}",
            caption="../report/fsc.rst",
            category="{experiment}",
            subcategory="reconstruction",
            labels={"experiment": "{experiment}", "figure": "half-set FSC"},
        ),
        aligned=f"{RESULTS}/{{experiment}}/halves/half2_aligned.ply",
    log:
        f"{LOGS}/{{experiment}}/compare_halves.log",
    conda:
        "../../envs/holly.yaml"
    params:
        half1=lambda w: half_dir(w.experiment, "half1"),
        half2=lambda w: half_dir(w.experiment, "half2"),
        seed=config["evaluation"]["seed"],
        dpi=config["figures"]["dpi"],
    shell:
        "holly compare {params.half1:q} {params.half2:q} --out {output.json:q}"
        " --figure {output.figure:q} --aligned {output.aligned:q} --seed {params.seed}"
        " --dpi {params.dpi} 2> {log:q}"
