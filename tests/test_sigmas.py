"""Sigma lists: one grammar for the config's files, ``holly localise --sigmas`` and ``holly
simulate --sigmas`` (holly/data/sigmas.py)."""

import pytest

from holly.data.sigmas import SHIPPED, load_sigma_list, parse_sigma_text, parse_sigmas
from holly.errors import HollyError


def test_one_grammar_commas_or_line_breaks():
    assert parse_sigma_text("3, 2,1.5\n") == [3.0, 2.0, 1.5]
    assert parse_sigma_text("3\n2\n\n1.5") == [3.0, 2.0, 1.5]
    assert parse_sigma_text("3,,2,") == [3.0, 2.0]
    with pytest.raises(ValueError):
        parse_sigma_text("3, x")


def test_a_sigma_file_may_span_lines(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("10,8\n6,4\n")
    assert load_sigma_list(str(path)) == [10.0, 8.0, 6.0, 4.0]


def test_every_shipped_list_reads_the_same_through_each_entry():
    for name in SHIPPED:
        assert parse_sigmas(name) == load_sigma_list(name)


def test_localise_option_forms(tmp_path):
    path = tmp_path / "levels.txt"
    path.write_text("4,2\n1\n")
    assert parse_sigmas("4, 2, 1") == [4.0, 2.0, 1.0]
    assert parse_sigmas(str(path)) == [4.0, 2.0, 1.0]
    with pytest.raises(HollyError, match="comma-separated numbers or a file"):
        parse_sigmas("4, two")
    with pytest.raises(HollyError, match="empty"):
        parse_sigmas(",")
    with pytest.raises(HollyError, match="neither a shipped list"):
        parse_sigmas("nope")
