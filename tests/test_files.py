import os

import pytest

from arssr import files
from arssr.errors import InputError, OutputError, OutputExistsError
from arssr.files import atomic_file, check_distinct, check_input_file, check_output, refuse_inputs, same_file


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


def test_atomic_file_never_touches_temporaries_it_did_not_make(tmp_path, mode):
    # a dead pid here may be a live process of another host or container sharing the folder
    foreign = [tmp_path / ".out.nii.tmp-999999999", tmp_path / f".out.nii.tmp-{os.getppid()}"]
    for index, path in enumerate(foreign):
        path.write_bytes(b"another process's bytes %d" % index)
    with atomic_file(tmp_path / "out.nii") as handle:
        handle.write(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(p.name for p in foreign), "out.nii"])
    assert [p.read_bytes() for p in foreign] == [b"another process's bytes 0", b"another process's bytes 1"]


def test_two_outputs_naming_one_file_are_refused(tmp_path):
    (tmp_path / "real.json").write_text("{}")
    os.symlink(tmp_path / "real.json", tmp_path / "link.json")
    with pytest.raises(OutputError, match="given for two outputs"):
        check_distinct([tmp_path / "o.arssr", tmp_path / "sub" / ".." / "o.arssr"])
    with pytest.raises(OutputError, match="given for two outputs"):
        check_distinct([tmp_path / "real.json", tmp_path / "link.json"])
    check_distinct([tmp_path / "o.arssr", tmp_path / "o.json"])
    many = [tmp_path / f"out{i}.nii.gz" for i in range(20000)]  # one pass, not a comparison of every pair
    check_distinct(many)
    with pytest.raises(OutputError, match="out7.nii.gz: given for two outputs"):
        check_distinct([*many, tmp_path / "x" / ".." / "out7.nii.gz"])


def test_output_names_the_file_system_cannot_hold_are_refused_before_work(tmp_path):
    with pytest.raises(OutputError, match="longer than the file system"):
        check_output(tmp_path / ("x" * 300 + ".nii.gz"))
    with pytest.raises(OutputError, match="longer than the file system"):
        check_output(tmp_path / ("d" * 300) / "out.nii.gz")
    with pytest.raises(OutputError, match="output path is empty"):
        check_output("")
    assert check_output(os.fsdecode(bytes(tmp_path) + b"/not-utf8-\xff.nii.gz")).name.endswith(".nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_input_files_are_checked_for_their_kind_before_reading(tmp_path):
    (tmp_path / "v.nii").write_bytes(b"x")
    os.mkfifo(tmp_path / "fifo.nii")
    os.symlink(tmp_path / "gone.nii", tmp_path / "dangling.nii")
    assert check_input_file(tmp_path / "v.nii") == tmp_path / "v.nii"
    for name, message in [("missing.nii", "volume not found"), ("fifo.nii", "is a FIFO, not a volume"),
                          ("dangling.nii", "is a link to a missing volume"), (".", "is a folder, not a volume")]:
        with pytest.raises(InputError, match=message):
            check_input_file(tmp_path / name, "volume")
    with pytest.raises(InputError, match="is a device, not a volume"):
        check_input_file("/dev/null", "volume")


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
