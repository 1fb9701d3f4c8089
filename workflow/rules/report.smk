rule summarise:
    """Tabulate every experiment's metrics and chart them side by side (`holly summarise`)."""
    input:
        evaluations=expand(
            f"{RESULTS}/{{experiment}}/evaluation.json", experiment=EXPERIMENTS
        ),
        published=published_jsons(),
        halfsets=[path for name in EXPERIMENTS for path in halfset_paths(name)],
    output:
        csv=report(
            f"{RESULTS}/summary.csv",
            caption="../report/summary.rst",
            category="Experiments compared",
            labels={"table": "summary (CSV)"},
        ),
        table=report(
            f"{RESULTS}/summary.html",
            caption="../report/summary.rst",
            category="Experiments compared",
            labels={"table": "summary"},
        ),
        chart=report(
            f"{RESULTS}/figures/comparison.{FIG_FORMAT}",
            caption="../report/comparison.rst",
            category="Experiments compared",
            labels={"table": "comparison chart"},
        ),
    log:
        f"{LOGS}/summarise.log",
    conda:
        "../../envs/holly.yaml"
    params:
        runs=run_options,
        dpi=config["figures"]["dpi"],
    shell:
        "holly summarise {params.runs:q} --out {output.csv:q} --chart {output.chart:q}"
        " --table {output.table:q} --dpi {params.dpi} 2> {log:q}"


rule report:
    """Build the self-contained HTML report with figures, captions and 3D viewers (`holly report`)."""
    input:
        summary=f"{RESULTS}/summary.csv",
        chart=f"{RESULTS}/figures/comparison.{FIG_FORMAT}",
        figures=[path for name in EXPERIMENTS for path in figure_paths(name)],
        extra=[path for name in EXPERIMENTS for path in extra_figure_paths(name)],
        halfsets=[path for name in EXPERIMENTS for path in halfset_paths(name)],
        evaluations=expand(
            f"{RESULTS}/{{experiment}}/evaluation.json", experiment=EXPERIMENTS
        ),
        captions=expand(
            f"{CAPTIONS}/{{key}}.rst", key=RUN_FIGURES + ("viewer", "workflow", "fsc")
        ),
        extra_captions=expand(f"{CAPTIONS}/{{key}}.rst", key=EXTRA_CAPTIONS),
    output:
        html=f"{RESULTS}/report.html",
    log:
        f"{LOGS}/report.log",
    conda:
        "../../envs/holly.yaml"
    params:
        runs=run_options,
        captions=lambda w, input: os.path.dirname(input.captions[0]),
        fmt=FIG_FORMAT,
        title=config["report"]["title"],
        snapshots=config["viewer"]["max_snapshots"],
    shell:
        "holly report {params.runs:q} --summary {input.summary:q} --chart {input.chart:q}"
        " --captions {params.captions:q} --format {params.fmt} --title {params.title:q}"
        " --max-snapshots {params.snapshots} --out {output.html:q} 2> {log:q}"
