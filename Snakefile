# holly workflow: simulated (or real) experiments -> training -> evaluation -> figures -> report.
#
#   snakemake --cores all                          # the default experiments (config/config.yaml)
#   snakemake --cores all --configfile my.yaml     # your own experiments
#   snakemake --report report.html                 # Snakemake's report of the finished run
#
# Every rule is one call of the `holly` command line (see workflow/rules/); the config is
# validated against workflow/schemas/config.schema.yaml before any job runs. config/README.md
# explains every key. Outputs go to results/<experiment>/, logs to logs/, timings to benchmarks/.
from snakemake.utils import min_version

min_version("9.27")


# The default experiments, unless --configfile names others: Snakemake would otherwise merge
# the two files key by key, and the defaults' keys would leak into the user's experiments.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


container: config["container_image"]


report: "workflow/report/workflow.rst"


wildcard_constraints:
    experiment="|".join(re.escape(name) for name in EXPERIMENTS),


rule all:
    """Every experiment trained, evaluated and drawn, the summary table and the HTML report."""
    input:
        all_targets(),


include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"
