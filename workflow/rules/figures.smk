rule figures:
    """Draw one run's figures: loss, sigma, montage, 3D views, pose error (`holly figures`)."""
    input:
        points=f"{RESULTS}/{{experiment}}/points.ply",
        metrics=f"{RESULTS}/{{experiment}}/metrics.csv",
        samples=f"{RESULTS}/{{experiment}}/samples.npz",
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
        "logs/{experiment}/figures.log",
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
        snapshots=f"{RESULTS}/{{experiment}}/snapshots",
        initial=f"{RESULTS}/{{experiment}}/initial_points.ply",
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
        "logs/{experiment}/viewer.log",
    conda:
        "../../envs/holly.yaml"
    params:
        run=lambda w: run_dir(w.experiment),
        snapshots=config["viewer"]["max_snapshots"],
    shell:
        "holly viewer {params.run:q} --out {output.html:q}"
        " --max-snapshots {params.snapshots} 2> {log:q}"
