"""How ``mycache ls`` lays out a table for a terminal of a given width."""

from __future__ import annotations

from my_cache.cli import COLUMNS, fitted, table

ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def test_a_long_cell_is_cut_in_the_middle_keeping_both_ends() -> None:
    assert fitted(ALPHABET, 13, right=False) == "abcdef…uvwxyz"
    # The character left over goes to the end, which tells keys and folders apart.
    assert fitted(ALPHABET, 12, right=False) == "abcde…uvwxyz"
    assert fitted(ALPHABET, 2, right=False) == "…z"
    assert fitted(ALPHABET, 1, right=True) == "…"
    assert fitted(ALPHABET, 0, right=False) == ""


def test_a_cell_that_fits_is_padded_not_cut() -> None:
    assert fitted(ALPHABET, 26, right=False) == ALPHABET
    assert fitted("12", 5, right=True) == "   12"
    assert fitted("ab", 5, right=False) == "ab   "


def test_a_table_cut_to_a_width_keeps_the_ends_that_tell_rows_apart() -> None:
    folders = [f"/home/user/projects/experiment/results/run-{n:03d}" for n in (7, 8)]
    keys = [f"{'0123456789abcdef' * 3}:{n:032x}" for n in (1, 2)]
    rows = [
        (folder, "module:function", key, "n=1", "16", "2024-01-01 00:00:00", "", "")
        for folder, key in zip(folders, keys, strict=True)
    ]
    lines = table(COLUMNS, rows, 110, numeric={"SIZE"}).splitlines()
    assert all(len(line) <= 110 for line in lines)
    cells = [line.split() for line in lines[1:]]
    for row, folder, key in zip(cells, folders, keys, strict=True):
        for shown, whole in ((row[0], folder), (row[2], key)):
            start, end = shown.split("…")
            assert whole.startswith(start) and whole.endswith(end) and len(end) >= 5, shown
    # Cut, the two rows still differ where their folders and keys do: at the end.
    assert cells[0][0] != cells[1][0] and cells[0][2] != cells[1][2]


def test_without_a_width_nothing_is_cut() -> None:
    rows = [("/" + "a" * 200, "m:f", "k" * 80, "x" * 500, "1", "t", "", "")]
    (_, line) = table(COLUMNS, rows, None, numeric={"SIZE"}).splitlines()
    assert "…" not in line and "a" * 200 in line and "x" * 500 in line
