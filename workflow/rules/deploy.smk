# Deployment checks that must hold before any job runs. Plain Python on purpose: with
# --sdm apptainer the host needs only Snakemake, not holly.


def check_container_image(image):
    """Stop with a clear error when the local image named by `container_image` does not exist.

    Registry URIs (docker://, oras://, library://, ...) are left to Snakemake, which pulls them.
    A local image is a path (absolute, or relative to the working directory) or a file:// URI.
    """
    if "://" in image and not image.startswith("file://"):
        return
    path = image.removeprefix("file://")
    if os.path.isfile(path):
        return
    raise WorkflowError(
        f"container image {image!r} (config `container_image`) does not exist "
        f"(looked in {os.path.abspath(path)}). --sdm apptainer runs every job in it; build it "
        "first, in this working directory:\n"
        "  make image && make sif          # Docker, then Apptainer: holly.sif from holly:cuda\n"
        "  apptainer build holly.sif holly.def   # Apptainer only (see docs/containers.md)\n"
        "or point `container_image` at an existing .sif or a docker:// URI "
        "(--config container_image=...)."
    )
