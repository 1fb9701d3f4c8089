# holly workflow: simulated (or real) experiments -> training -> evaluation -> figures -> report.
#
#   snakemake --cores all                          # the default experiments (config/config.yaml)
#   snakemake --cores all --configfile my.yaml     # your own experiments
#   snakemake --cores all --configfile config/paper.yaml   # the paper's experiments (GPU)
#   snakemake --report report.html                 # Snakemake's report of the finished run
#
# Every rule is one call of the `holly` command line (see workflow/rules/); the config is
# validated against workflow/schemas/config.schema.yaml before any job runs. config/README.md
# explains every key. Outputs go to results/<experiment>/ (config `results`), logs to logs/,
# timings to benchmarks/, downloads and image stores to resources/.
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version
from snakemake_interface_executor_plugins.settings import DeploymentMethod

min_version("9.27")


# This checkout's holly/plan.py, also where Snakemake runs without holly installed (--sdm).
sys.path.insert(0, workflow.basedir)
from holly.errors import HollyError
from holly.plan import apply_base

# Without --configfile: config/config.yaml of the working directory if there is one, else this
# repository's. With --configfile my.yaml: my.yaml over its base (`base: default`, the same
# config/config.yaml, unless it says `base: paper` or `base: none`; config/README.md).
DEFAULT_CONFIG = "config/config.yaml"
if not os.path.exists(DEFAULT_CONFIG):
    DEFAULT_CONFIG = os.path.join(workflow.basedir, DEFAULT_CONFIG)
if not workflow.overwrite_configfiles:

    configfile: DEFAULT_CONFIG


try:
    _with_base = apply_base(config)
except HollyError as exc:
    raise WorkflowError(f"Invalid config: {exc}") from None
config.clear()
config.update(_with_base)


include: "workflow/rules/common.smk"
include: "workflow/rules/deploy.smk"


# envs/holly.yaml (--sdm conda) installs holly from this checkout: pip expands ${HOLLY_SOURCE} in
# its last line, wherever Snakemake copies the file (.snakemake/conda/).
os.environ.setdefault("HOLLY_SOURCE", workflow.basedir)


# With --sdm apptainer every job runs in this image (ignored otherwise). A local image (a .sif
# path; the default holly.sif) that does not exist stops the run here, before any job, saying how
# to build it; registry URIs (docker://...) are pulled by Snakemake as usual.
if DeploymentMethod.APPTAINER in workflow.deployment_settings.deployment_method:
    check_container_image(config["container_image"])


container: config["container_image"]


report: "workflow/report/workflow.rst"


wildcard_constraints:
    experiment="|".join(re.escape(name) for name in EXPERIMENTS),


rule all:
    """Every experiment trained, evaluated and drawn, the summary table and the HTML report."""
    input:
        all_targets(),


rule downloads:
    """Only the Zenodo downloads (for clusters whose compute nodes cannot reach the internet)."""
    input:
        [fetch_flag(record) for record in RECORDS],


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"
