import os

import pytest

from arssr import files
from arssr.errors import OutputError, OutputExistsError
from arssr.files import atomic_file, check_output, refuse_inputs, same_file


@pytest.fixture(params=["unnamed", "named"])
def mode(request, monkeypatch):
    """Both ways of writing: O_TMPFILE (where supported) and the named temporary file."""
    if request.param == "named":
        monkeypatch.setattr(files, "_open_unnamed", lambda folder: None)
    return request.param


def test_atomic_file_replaces_on_success_and_leaves_nothing_on_failure(tmp_path, mode):
    target = tmp_path / "out.json"
    with atomic_file(target) as handle:
        handle.write(b"new")
        assert not target.exists()
    assert target.read_bytes() == b"new"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_file(target) as handle:
            handle.write(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_file_removes_stale_temporaries_of_dead_processes(tmp_path, mode):
    stale, mine = tmp_path / ".out.nii.tmp-999999999", tmp_path / f".other.tmp-{os.getppid()}"
    stale.write_bytes(b"left by a killed run")
    mine.write_bytes(b"someone else's")
    with atomic_file(tmp_path / "out.nii") as handle:
        handle.write(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name, "out.nii"]


def test_unwritable_place_is_one_output_error(tmp_path, mode):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(OutputError, match="cannot write"):
        check_output(blocker / "out.nii")
    with pytest.raises(OutputError, match="cannot write"):
        with atomic_file(blocker / "out.nii") as handle:
            handle.write(b"x")
    assert blocker.read_text() == "a file, not a folder"


def test_output_that_is_an_input_is_refused_however_it_is_named(tmp_path):
    source = tmp_path / "in.nii"
    source.write_bytes(b"data")
    (tmp_path / "link.nii").symlink_to(source)
    os.link(source, tmp_path / "hard.nii")
    for output in (source, tmp_path / "link.nii", tmp_path / "hard.nii", tmp_path / "." / "in.nii"):
        assert same_file(output, source)
        with pytest.raises(OutputError, match="is the input"):
            check_output(output, overwrite=True, inputs=[source])
    assert not same_file(tmp_path / "new.nii", source)
    refuse_inputs([tmp_path / "new.nii"], [source, None])
    with pytest.raises(OutputExistsError):
        check_output(tmp_path / "hard.nii", inputs=[tmp_path / "other.nii"])
