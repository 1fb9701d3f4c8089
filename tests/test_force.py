"""`--force` replaces only a store at the output path, never an input or a folder holding one.

Issue 9: `ingest SRC --out SRC --force` deleted the input FITS; `localise --force` onto its CSV.
"""

import numpy as np
import pytest
from astropy.io import fits

from holly.cli import main
from holly.data.imagestore import guard_output
from holly.errors import HollyError


def fits_tree(root):
    rng = np.random.default_rng(0)
    for sigma in ("2.0", "1.0"):
        (root / sigma).mkdir(parents=True)
        for i in range(4):
            fits.PrimaryHDU(rng.random((8, 8), dtype=np.float32) + 0.1).writeto(
                root / sigma / f"image_{i:06d}.fits"
            )
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("where", ["src", "parent", "dot"])
def test_ingest_force_never_deletes_its_input(tmp_path, monkeypatch, capsys, where):
    src = tmp_path / "data" / "run"
    before = fits_tree(src)
    out = {"src": src, "parent": src.parent, "dot": "."}[where]
    monkeypatch.chdir(src if where == "dot" else tmp_path)
    assert main(["ingest", str(src), "--out", str(out), "--force"]) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert sorted(str(p.relative_to(src)) for p in src.rglob("*")) == before


def test_force_replaces_a_store_but_not_other_things(tmp_path, capsys):
    src = tmp_path / "run"
    fits_tree(src)
    out = tmp_path / "s.zarr"
    assert main(["ingest", str(src), "--out", str(out)]) == 0
    assert main(["ingest", str(src), "--out", str(out)]) == 2  # exists, no --force
    assert "already exists" in capsys.readouterr().err
    assert main(["ingest", str(src), "--out", str(out), "--force"]) == 0  # a store: replaced
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("keep")
    assert main(["ingest", str(src), "--out", str(notes), "--force"]) == 2
    assert "is not a Zarr store" in capsys.readouterr().err
    assert (notes / "mine.txt").read_text() == "keep"


def test_localise_force_onto_its_input_is_refused(tmp_path):
    csv = tmp_path / "locs.csv"
    csv.write_text("x,y,particle\n1,2,0\n")
    with pytest.raises(HollyError, match="would replace the input"):
        guard_output(csv, [csv], overwrite=True)
    with pytest.raises(HollyError, match="would replace the input"):
        guard_output(tmp_path, [csv], overwrite=True)
    assert csv.read_text().startswith("x,y")
    assert guard_output(tmp_path / "new.zarr", [csv], overwrite=True) == tmp_path / "new.zarr"
    assert main(["localise", str(csv), "--out", str(csv), "--sigmas", "2", "--force"]) == 2
    assert csv.read_text().startswith("x,y")
