import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arssr.compress.container import MAGIC, pack, read_container, unpack, write_container
from arssr.errors import InputError, OutputExistsError

META = {"shape": [3, 4, 5], "affine": [0.5, 0, 0, -1.25, 0, 1, 0, 2, 0, 0, 3, 0.1], "dtype": "int16"}
PAYLOAD = bytes(range(40))
#: Metadata that a reader accepts (``read_container`` checks it): a 3 x 4 x 5 int16 volume coded at scale 1.
FILE_META = {**META, "codes": [1, 1], "range": [-3.0, 7.0], "window": [-3.0, 7.0], "scale": 1.0, "method": "kspace",
             "lr_shape": [3, 4, 5], "decoder": None, "siren": {"width": 2, "depth": 1, "w0": 30.0}, "quant": "int8",
             "codec": "none"}
BLOB = pack(META, PAYLOAD)


def test_round_trip_and_layout():
    assert unpack(BLOB) == (META, PAYLOAD)
    assert BLOB.startswith(MAGIC)
    assert int.from_bytes(BLOB[-4:], "little") == zlib.crc32(BLOB[:-4])


def test_every_single_byte_change_is_caught():
    for position in range(len(BLOB)):
        for flip in (0x01, 0x80, 0xFF):
            broken = bytearray(BLOB)
            broken[position] ^= flip
            with pytest.raises(InputError, match="corrupted|not an .arssr file|version|truncated|trailing"):
                unpack(bytes(broken))


def test_every_truncation_and_extension_is_caught():
    for length in range(len(BLOB)):
        with pytest.raises(InputError, match="truncated|not an .arssr file"):
            unpack(BLOB[:length])
    with pytest.raises(InputError, match="trailing bytes"):
        unpack(BLOB + b"\x00")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(BLOB) - 1), st.integers(1, 255)), min_size=1, max_size=6))
def test_random_corruptions_never_give_other_data(changes):
    broken = bytearray(BLOB)
    for position, flip in changes:
        broken[position] ^= flip
    if bytes(broken) == BLOB:
        return
    with pytest.raises(InputError):
        unpack(bytes(broken))


def test_foreign_file_and_unknown_version():
    with pytest.raises(InputError, match="not an .arssr file"):
        unpack(b"\x1f\x8b\x08\x00" + bytes(100))  # a gzip (NIfTI) stream
    newer = bytearray(BLOB)
    newer[len(MAGIC)] = 6
    newer[-4:] = zlib.crc32(bytes(newer[:-4])).to_bytes(4, "little")
    with pytest.raises(InputError, match=r"format version 6 is not supported \(this arssr reads up to 5\)"):
        unpack(bytes(newer))


def test_version_2_marks_files_with_fine_tuned_decoder_parameters():
    assert BLOB[len(MAGIC)] == 1
    tuned = {**META, "finetune": {"mode": "bias", "params": 3}}
    blob = pack(tuned, PAYLOAD)
    assert blob[len(MAGIC)] == 2 and unpack(blob) == (tuned, PAYLOAD)
    weighted = {**tuned, "consistency": "kspace", "consistency_weights": [0.9, 0.5]}
    assert pack(weighted, PAYLOAD)[len(MAGIC)] == 4 and unpack(pack(weighted, PAYLOAD)) == (weighted, PAYLOAD)
    regions = {**weighted, "detail_gain": 0.7, "background_decoding": [0.2, 0.8, -0.1]}
    assert pack(regions, PAYLOAD)[len(MAGIC)] == 5 and unpack(pack(regions, PAYLOAD)) == (regions, PAYLOAD)


def test_version_3_marks_files_whose_lr_is_not_a_siren():
    sperr = {**META, "lr_codec": "sperr"}
    assert pack({**META, "lr_codec": "siren"}, PAYLOAD)[len(MAGIC)] == 1
    blob = pack(sperr, PAYLOAD)
    assert blob[len(MAGIC)] == 3 and unpack(blob) == (sperr, PAYLOAD)


def test_files_are_written_whole_and_not_overwritten(tmp_path):
    path = tmp_path / "a.arssr"
    assert write_container(path, FILE_META, PAYLOAD) == len(pack(FILE_META, PAYLOAD)) == path.stat().st_size
    assert read_container(path) == (FILE_META, PAYLOAD)
    with pytest.raises(OutputExistsError, match="exists"):
        write_container(path, META, b"")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.arssr"]
    with pytest.raises(InputError, match="file not found"):
        read_container(tmp_path / "missing.arssr")
