#!/usr/bin/env bash
# The README's recipe for a user's own model, on four procedural asymmetric models that neither
# the defaults nor the tests were tuned on (tools/user_models.py): each is written as an OBJ in
# arbitrary units and position, then trained with the default settings plus data.fit_radius 1.5.
#
#   bash tools/user-models.sh [OUT_DIR]        (default: results/user-models, which git ignores)
#
# Results: OUT_DIR/results/summary.csv (Chamfer / blob, pose error before and after refinement).
set -euo pipefail
out=${1:-results/user-models}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
python "$repo/tools/user_models.py" "$out/models"
{
  echo "# written by tools/user-models.sh: the README recipe on procedural models"
  echo "results: $out/results"
  echo "experiments:"
  for obj in "$out"/models/*.obj; do
    name=$(basename "$obj" .obj)
    echo "  - name: $name"
    echo "    data: {shape: $obj, fit_radius: 1.5}"
  done
} > "$out/user-models.yaml"
cd "$repo"
snakemake --cores all --configfile "$out/user-models.yaml"
