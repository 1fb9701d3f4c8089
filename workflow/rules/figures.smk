rule figures:
    """Draw one run's figures: loss, sigma, montage, 3D views, pose error (`holly figures`)."""
    input:
        points=f"{RESULTS}/{{experiment}}/points.ply",
        evaluation=f"{RESULTS}/{{experiment}}/evaluation.json",
    output:
        loss=report(
            f"{RESULTS}/{{experiment}}/figures/loss.{FIG_FORMAT}",
            caption="../report/loss.rst",
            category="{experiment}",
            subcategory="training",
            labels={"experiment": "{experiment}", "figure": "loss curves"},
        ),
        sigma=report(
            f"{RESULTS}/{{experiment}}/figures/sigma.{FIG_FORMAT}",
            caption="../report/sigma.rst",
            category="{experiment}",
            subcategory="training",
            labels={"experiment": "{experiment}", "figure": "sigma"},
        ),
        montage=report(
            f"{RESULTS}/{{experiment}}/figures/montage.{FIG_FORMAT}",
            caption="../report/montage.rst",
            category="{experiment}",
            subcategory="training",
            labels={"experiment": "{experiment}", "figure": "inputs and renderings"},
        ),
        views=report(
            f"{RESULTS}/{{experiment}}/figures/views.{FIG_FORMAT}",
            caption="../report/views.rst",
            category="{experiment}",
            subcategory="reconstruction",
            labels={"experiment": "{experiment}", "figure": "orthogonal views"},
        ),
        pose_error=report(
            f"{RESULTS}/{{experiment}}/figures/pose_error.{FIG_FORMAT}",
            caption="../report/pose_error.rst",
            category="{experiment}",
            subcategory="reconstruction",
            labels={"experiment": "{experiment}", "figure": "pose error"},
        ),
    log:
        f"{LOGS}/{{experiment}}/figures.log",
    conda:
        "../../envs/holly.yaml"
    params:
        run=lambda w: run_dir(w.experiment),
        out=lambda w: f"{run_dir(w.experiment)}/figures",
        fmt=FIG_FORMAT,
        dpi=config["figures"]["dpi"],
        montage=config["figures"]["montage_images"],
    shell:
        "holly figures {params.run:q} --out {params.out:q} --format {params.fmt}"
        " --dpi {params.dpi} --montage-images {params.montage} 2> {log:q}"


rule viewer:
    """Write the offline 3D viewer of one run over training (`holly viewer`)."""
    input:
        points=f"{RESULTS}/{{experiment}}/points.ply",
        evaluation=f"{RESULTS}/{{experiment}}/evaluation.json",
    output:
        html=report(
            f"{RESULTS}/{{experiment}}/viewer.html",
            caption="../report/viewer.rst",
            category="{experiment}",
            subcategory="reconstruction",
            labels={"experiment": "{experiment}", "figure": "3D viewer"},
        ),
    log:
        f"{LOGS}/{{experiment}}/viewer.log",
    conda:
        "../../envs/holly.yaml"
    params:
        run=lambda w: run_dir(w.experiment),
        snapshots=config["viewer"]["max_snapshots"],
    shell:
        "holly viewer {params.run:q} --out {output.html:q}"
        " --max-snapshots {params.snapshots} 2> {log:q}"


rule evolution:
    """Draw one run's point cloud at several steps of training (`holly figures --only`)."""
    input:
        points=f"{RESULTS}/{{experiment}}/points.ply",
        evaluation=f"{RESULTS}/{{experiment}}/evaluation.json",
    output:
        png=report(
            f"{RESULTS}/{{experiment}}/figures/evolution.{FIG_FORMAT}",
            caption="../report/evolution.rst",
            category="{experiment}",
            subcategory="reconstruction",
            labels={
                "experiment": "{experiment}",
                "figure": "point cloud over training",
            },
        ),
    log:
        f"{LOGS}/{{experiment}}/evolution.log",
    conda:
        "../../envs/holly.yaml"
    params:
        run=lambda w: run_dir(w.experiment),
        out=lambda w: f"{run_dir(w.experiment)}/figures",
        fmt=FIG_FORMAT,
        dpi=config["figures"]["dpi"],
        snapshots=config["figures"]["evolution_snapshots"],
    shell:
        "holly figures {params.run:q} --out {params.out:q} --only evolution"
        " --snapshots {params.snapshots} --format {params.fmt} --dpi {params.dpi} 2> {log:q}"


rule fusion_figure:
    """Draw a refine.fusion run's own particle fusion with its cloud (`holly figures --only`)."""
    input:
        points=f"{RESULTS}/{{experiment}}/points.ply",
    output:
        png=report(
            f"{RESULTS}/{{experiment}}/figures/fusion.{FIG_FORMAT}",
            caption="../report/fusion.rst",
            category="{experiment}",
            subcategory="reconstruction",
            labels={"experiment": "{experiment}", "figure": "particle fusion"},
        ),
    log:
        f"{LOGS}/{{experiment}}/fusion_figure.log",
    conda:
        "../../envs/holly.yaml"
    params:
        run=lambda w: run_dir(w.experiment),
        out=lambda w: f"{run_dir(w.experiment)}/figures",
        fmt=FIG_FORMAT,
        dpi=config["figures"]["dpi"],
    shell:
        "holly figures {params.run:q} --out {params.out:q} --only fusion"
        " --format {params.fmt} --dpi {params.dpi} 2> {log:q}"


rule published_figure:
    """Draw a reconstruction beside the published cloud it was scored against (`holly figures`)."""
    input:
        published=lambda w: PUBLISHED[w.experiment],
        aligned=f"{RESULTS}/{{experiment}}/vs_published_aligned.ply",
        scores=f"{RESULTS}/{{experiment}}/vs_published.json",
    output:
        png=report(
            f"{RESULTS}/{{experiment}}/figures/vs_published.{FIG_FORMAT}",
            caption="../report/vs_published.rst",
            category="{experiment}",
            subcategory="reconstruction",
            labels={"experiment": "{experiment}", "figure": "vs published"},
        ),
    log:
        f"{LOGS}/{{experiment}}/published_figure.log",
    conda:
        "../../envs/holly.yaml"
    params:
        run=lambda w: run_dir(w.experiment),
        out=lambda w: f"{run_dir(w.experiment)}/figures",
        fmt=FIG_FORMAT,
        dpi=config["figures"]["dpi"],
    shell:
        "holly figures {params.run:q} --out {params.out:q} --only vs_published"
        " --published {input.published:q} --aligned {input.aligned:q}"
        " --scores {input.scores:q} --format {params.fmt} --dpi {params.dpi} 2> {log:q}"
