import os

import pytest

from arssr.errors import OutputError
from arssr.output_folder import atomic_folder


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
