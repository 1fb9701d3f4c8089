#!/bin/sh
# Which build of torch 2.13.0 `make` installs: prints "cpu" or "cuda".
#   sh tools/torch-choice.sh auto|cpu|cuda
# auto: cuda when `nvidia-smi -L` lists a GPU, else cpu (a laptop, a CI runner, a CPU node).
# Only Linux has two builds; elsewhere PyPI's wheel is the only one and the answer is "pypi".
choice=${1:-auto}
case "$choice" in
cpu | cuda) ;;
auto)
    if command -v "${NVIDIA_SMI:-nvidia-smi}" >/dev/null 2>&1 &&
        "${NVIDIA_SMI:-nvidia-smi}" -L 2>/dev/null | grep -q GPU; then
        choice=cuda
    else
        choice=cpu
    fi
    ;;
*)
    echo "error: TORCH must be auto, cpu or cuda, not '$choice'" >&2
    exit 2
    ;;
esac
if [ "$(uname -s)" != Linux ]; then
    choice=pypi
fi
echo "$choice"
