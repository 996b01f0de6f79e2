import os

import pytest

from arssr import files
from arssr.errors import InputError, OutputError, OutputExistsError
from arssr.files import (atomic_file, atomic_folder, check_distinct, check_input_file, check_output, refuse_inputs,
                         same_file)


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


def _tree(folder):
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else "folder") for p in sorted(folder.rglob("*"))}


def test_files_land_whole_in_a_new_folder_or_the_current_one(tmp_path, monkeypatch):
    with atomic_folder(tmp_path / "a" / "b") as staging:
        (staging / "x.txt").write_bytes(b"x")
    assert _tree(tmp_path) == {"a": "folder", "a/b": "folder", "a/b/x.txt": b"x"}
    monkeypatch.chdir(tmp_path / "a")
    with atomic_folder(".") as staging:  # a folder named "." has no name to stage beside: it is resolved first
        (staging / "y.txt").write_bytes(b"y")
    assert (tmp_path / "a" / "y.txt").read_bytes() == b"y" and not any(p.name.startswith(".") for p in
                                                                         (tmp_path / "a").iterdir())


def test_a_failure_or_a_type_clash_leaves_the_folder_as_it_was(tmp_path):
    out = tmp_path / "out"
    (out / "zz").mkdir(parents=True)
    for i in range(5):
        (out / f"f{i}").write_bytes(b"old %d" % i)
    before = _tree(out)
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_folder(out) as staging:
            (staging / "f0").write_bytes(b"new")
            raise RuntimeError("boom")
    with pytest.raises(OutputError, match="zz: is a folder where the output writes a file"):
        with atomic_folder(out) as staging:
            for i in range(5):
                (staging / f"f{i}").write_bytes(b"new")
            (staging / "zz").write_bytes(b"a file where a folder is")
    with pytest.raises(OutputError, match="f1: is a file where the output writes a folder"):
        with atomic_folder(out) as staging:
            (staging / "f0").write_bytes(b"new")
            (staging / "f1").mkdir()
    assert _tree(out) == before and sorted(os.listdir(tmp_path)) == ["out"]
    with atomic_folder(out) as staging:
        (staging / "f0").write_bytes(b"new")
    assert (out / "f0").read_bytes() == b"new" and (out / "f1").read_bytes() == b"old 1"
