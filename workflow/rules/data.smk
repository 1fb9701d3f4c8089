# Downloads and preprocessing: Zenodo records -> point files and image stores under resources/;
# localisation files (config `localisations`) -> rendered image stores under resources/.
# Only `holly fetch` touches the network, and only when its job runs (never while planning).


rule fetch:
    """Download (resume, md5-check) and unpack one Zenodo record (`holly fetch`)."""
    input:
        fetch_inputs,
    output:
        # The only output: written last, after every file is verified. Partial downloads
        # (NAME.part beside the files) are no output, so a failed job leaves them to resume.
        done="resources/zenodo/{record}.fetched.json",
    log:
        "logs/zenodo/{record}.log",
    benchmark:
        "benchmarks/zenodo/{record}.tsv"
    wildcard_constraints:
        record="|".join(re.escape(name) for name in RECORDS) or "^$",
    retries: 2
    conda:
        "../../envs/holly.yaml"
    resources:
        runtime=24 * 60,  # minutes: ~50 GB at >= 1 MB/s (a cluster's default is often 1 h)
    params:
        record=lambda w: str(RECORDS[w.record]["record"]),
        dest=lambda w: f"resources/zenodo/{w.record}",
        options=fetch_options,
    shell:
        "holly fetch {params.record:q} --dest {params.dest:q} {params.options}"
        " --done {output.done:q} 2> {log:q}"


rule pick:
    """Copy a point file out of a downloaded record, found by a glob (`holly pick`)."""
    input:
        fetched=pick_flag,
    output:
        "resources/{file}",
    log:
        "logs/resources/{file}.log",
    wildcard_constraints:
        file="|".join(re.escape(path[len("resources/") :]) for path in FILES) or "^$",
    conda:
        "../../envs/holly.yaml"
    params:
        dir=pick_dir,
        pattern=lambda w: FILES[f"resources/{w.file}"]["path"],
    shell:
        "holly pick {params.dir:q} {params.pattern:q} --out {output:q} --points 2> {log:q}"


rule ingest:
    """Convert a downloaded folder of per-sigma FITS images into an image store (`holly ingest`)."""
    input:
        fetched=lambda w: fetch_flag(store_entry(w)["record"]),
    output:
        store=directory("resources/{store}.zarr"),
    log:
        "logs/resources/{store}.ingest.log",
    benchmark:
        "benchmarks/resources/{store}.ingest.tsv"
    wildcard_constraints:
        store="|".join(re.escape(entry["name"]) for entry in STORES.values()) or "^$",
    conda:
        "../../envs/holly.yaml"
    resources:
        mem_mb=4000,  # measured ~600 MiB (docs/data.md); ~30,000 files x 20 levels in ~15 min
        runtime=4 * 60,
    params:
        dir=lambda w: f"resources/zenodo/{store_entry(w)['record']}",
        pattern=lambda w: store_entry(w)["path"],
        record=lambda w: str(RECORDS[store_entry(w)["record"]]["record"]),
        options=ingest_options,
    shell:
        "holly ingest {params.dir:q} --find {params.pattern:q} --out {output.store:q}"
        " --record {params.record:q} {params.options} 2> {log:q}"


rule localise:
    """Render SMLM localisation files into an image store (`holly localise`)."""
    input:
        unpack(localise_inputs),
    output:
        store=directory("resources/{locstore}.zarr"),
    log:
        "logs/resources/{locstore}.localise.log",
    benchmark:
        "benchmarks/resources/{locstore}.localise.tsv"
    wildcard_constraints:
        locstore="|".join(re.escape(entry["name"]) for entry in LOCALISED.values())
        or "^$",
    conda:
        "../../envs/holly.yaml"
    resources:
        mem_mb=4000,
    params:
        options=localise_options,
    shell:
        "holly localise {input.locs:q} --out {output.store:q} {params.options} 2> {log:q}"
