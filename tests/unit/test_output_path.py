"""A job's file name, untrusted: it resolves inside the data dir or is refused."""

from __future__ import annotations

import pytest

from filewriter.journal import JobJournal
from filewriter.output_path import UnsafePath, resolve_output


@pytest.mark.parametrize("name", ["/tmp/x.nxs", "../x.nxs", "a/../../x.nxs", "", " ",
                                  "a\x00b.nxs", "sub/", ".", "sub/.."])
def test_names_that_leave_the_data_dir_or_name_no_file_are_refused(tmp_path, name):
    with pytest.raises(UnsafePath):
        resolve_output(tmp_path, name)


def test_a_symlinked_folder_leading_out_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (data / "link").symlink_to(outside)
    with pytest.raises(UnsafePath, match="symbolic link"):
        resolve_output(data, "link/x.nxs")


def test_plain_names_and_subfolders_resolve_inside(tmp_path):
    assert resolve_output(tmp_path, "INST00000001.nxs") == tmp_path / "INST00000001.nxs"
    assert resolve_output(tmp_path, "cycle_26_4/x.nxs") == tmp_path / "cycle_26_4" / "x.nxs"


def test_the_journal_keeps_jobs_until_removed(tmp_path):
    journal = JobJournal(tmp_path / "jobs")
    assert journal.owned() == []
    journal.add("a", b"first")
    journal.add("b", b"second")
    assert sorted(journal.owned()) == [("a", b"first"), ("b", b"second")]
    journal.remove("a")
    journal.remove("never-there")
    assert journal.owned() == [("b", b"second")]
    assert not list((tmp_path / "jobs").glob(".*.tmp"))
