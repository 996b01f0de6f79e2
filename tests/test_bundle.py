"""The default model as a MONAI bundle: shipped as exported, run by MONAI exactly as ``arssr upsample``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from arssr.bundle import ENVIRONMENT_FIELDS, FILES, BundleUpsampler, export_bundle
from arssr.cli import main
from arssr.models import default_model_path
from arssr.volume import save_volume

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "bundle" / "arssr_default"

# The required fields of MONAI's meta_schema_20240725.json (and of its tensor description), written out here
# so that the test runs offline; `verify_metadata --filepath` skips the download when that file exists.
REQUIRED_FIELDS_SCHEMA = {
    "type": "object",
    "required": ["schema", "version", "monai_version", "pytorch_version", "numpy_version",
                 "required_packages_version", "task", "description", "authors", "copyright", "network_data_format"],
    "properties": {
        "references": {"type": "array", "items": {"type": "string"}},
        "network_data_format": {
            "type": "object", "required": ["inputs", "outputs"],
            "properties": {side: {"type": "object", "additionalProperties": {
                "type": "object",
                "required": ["type", "format", "num_channels", "spatial_shape", "dtype", "value_range"],
                "properties": {"num_channels": {"type": "integer"}, "value_range": {"type": "array"},
                               "spatial_shape": {"type": "array", "items": {"type": ["string", "integer"]}}},
            }} for side in ("inputs", "outputs")},
        },
    },
}


def python(*argv, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, cwd=cwd, env=env)


def test_shipped_bundle_is_the_export_of_the_default_model(tmp_path):
    export_bundle(tmp_path / "b")
    for name in FILES:
        fresh, shipped = (tmp_path / "b" / name).read_bytes(), (SHIPPED / name).read_bytes()
        if name == "configs/metadata.json":  # the versions it was exported with may differ from this environment's
            fresh, shipped = ({k: v for k, v in json.loads(m).items() if k not in ENVIRONMENT_FIELDS}
                              for m in (fresh, shipped))
        assert fresh == shipped, f"{name} differs: re-export with `arssr export-bundle bundle/arssr_default --overwrite`"
    assert (SHIPPED / "models/model.safetensors").read_bytes() == default_model_path().read_bytes()


def test_monai_bundle_run_equals_arssr_upsample(tmp_path, mni_crop):
    lr = save_volume(mni_crop, tmp_path / "lr.nii.gz")
    ran = python("-m", "monai.bundle", "run", "--bundle_root", SHIPPED, "--config_file",
                 SHIPPED / "configs/inference.json", "--input_file", lr, "--output_file", tmp_path / "bundle.nii.gz",
                 "--scale", "1.5,2,2.5", "--threads", "1", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    ran = python("-m", "arssr", "upsample", lr, "--scale", "1.5,2,2.5", "-o", tmp_path / "cli.nii.gz",
                 "--threads", "1", "-q", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    bundle, cli = nib.load(tmp_path / "bundle.nii.gz"), nib.load(tmp_path / "cli.nii.gz")
    assert bundle.shape == cli.shape == (36, 56, 50)
    assert np.array_equal(np.asarray(bundle.dataobj), np.asarray(cli.dataobj))
    assert bundle.header.binaryblock == cli.header.binaryblock  # affine, qform/sform and codes, dtype, units
    assert np.asarray(cli.dataobj).std() > 0


def test_verify_metadata_offline(tmp_path):
    schema = tmp_path / "meta_schema_20240725.json"
    schema.write_text(json.dumps(REQUIRED_FIELDS_SCHEMA))
    ran = python("-m", "monai.bundle", "verify_metadata", "--meta_file", SHIPPED / "configs/metadata.json",
                 "--filepath", schema, cwd=tmp_path)
    assert ran.returncode == 0 and "metadata is verified with no error" in ran.stdout + ran.stderr, ran.stderr[-2000:]
    broken = json.loads((SHIPPED / "configs/metadata.json").read_text())
    del broken["network_data_format"]["outputs"]["pred"]["value_range"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    ran = python("-m", "monai.bundle", "verify_metadata", "--meta_file", tmp_path / "broken.json",
                 "--filepath", schema, cwd=tmp_path)
    assert ran.returncode != 0 and "value_range" in ran.stderr


def test_export_bundle_command(tmp_path, capsys, tiny_weights):
    assert main(["export-bundle", str(tmp_path / "b"), "--weights", str(tiny_weights), "-q"]) == 0
    assert sorted(str(p.relative_to(tmp_path / "b")) for p in (tmp_path / "b").rglob("*") if p.is_file()) \
        == sorted(FILES)
    assert (tmp_path / "b/models/model.safetensors").read_bytes() == tiny_weights.read_bytes()
    metadata = json.loads((tmp_path / "b/configs/metadata.json").read_text())
    assert metadata["arssr_model"]["args"]["feature_dim"] == 16
    assert main(["export-bundle", str(tmp_path / "b"), "--weights", str(tiny_weights)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--overwrite" in err
    assert main(["export-bundle", str(tmp_path / "b"), "--weights", str(tiny_weights), "--overwrite", "-q"]) == 0
    assert main(["export-bundle", str(tmp_path / "c"), "--weights", str(tmp_path / "b/configs/metadata.json")]) == 1
    assert not (tmp_path / "c").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["export-bundle"])
    assert exit_info.value.code == 2


def test_bundle_upsampler_keeps_the_callers_threads(tmp_path, tiny_weights, oblique_volume):
    lr = save_volume(oblique_volume, tmp_path / "lr.nii.gz")
    before = torch.get_num_threads()
    upsampler = BundleUpsampler(tiny_weights, device="cpu", threads=before + 1)
    upsampler(lr, tmp_path / "sr.nii.gz", scale=2)
    assert torch.get_num_threads() == before
    assert nib.load(tmp_path / "sr.nii.gz").shape == (28, 24, 20)
    with pytest.raises(Exception, match="exists"):
        upsampler(lr, tmp_path / "sr.nii.gz", scale=2)
