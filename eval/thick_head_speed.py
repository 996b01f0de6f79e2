"""A 1 mm whole head from 5 mm slices: time and peak memory of ``arssr upsample`` with the plane prior's
mirrored copies (``--prior-mirrors``) and with the 3D model (``--plane-prior none``), side by side in one run.

The real whole head ds000031 (192 x 256 x 256 at 0.9 x 0.94 x 0.94 mm) is made into contiguous 5 mm boxcar
slices along axis 2 (192 x 256 x 48) and upsampled back to about 1 mm with the defaults otherwise (taken as
2D multi-slice by the default rule, smooth slice correction, no adaptation), each run a command of its own
under ``/usr/bin/time -v``: the seconds inside ``upsample`` (the sidecar's ``seconds``), the whole command's,
and the peak resident memory. Run it with nothing else on the machine.

Usage: python eval/thick_head_speed.py [--data ../shared/data] [--threads 2]
                                       [--json eval/results/thick_head_speed/results.json]
"""

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from arssr.protocol import DEFAULT_PRIOR_MIRRORS
from arssr.simulate import ThickSlices, simulate_thick_slices
from arssr.volume import load_volume, save_volume

SCAN = "ds000031_sub-01_T1w.nii.gz"
RUNS = ((f"plane prior, {DEFAULT_PRIOR_MIRRORS} copies (default)", []),
        ("plane prior, 1 copy", ["--prior-mirrors", "1"]), ("3D model", ["--plane-prior", "none"]))


def timed(command: list[str]) -> dict:
    """The command under ``/usr/bin/time -v``: its wall-clock seconds and peak resident memory (MiB)."""
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=True)
    elapsed = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", done.stderr).group(1)
    seconds = sum(float(part) * 60 ** k for k, part in enumerate(reversed(elapsed.split(":"))))
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return {"command_seconds": round(seconds, 1), "peak_mib": round(peak_kb / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="folder holding " + SCAN)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="eval/results/thick_head_speed/results.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        thick = Path(scratch) / "head_5mm.nii.gz"
        slices = simulate_thick_slices(load_volume(Path(args.data) / SCAN), ThickSlices(5.0, 2))
        save_volume(slices, thick)
        for name, options in RUNS:
            out = Path(scratch) / "head_1mm.nii.gz"
            row = {"run": name, **timed([sys.executable, "-m", "arssr", "upsample", str(thick), "--voxel-size",
                                         "0.9,0.9375,1", "-o", str(out), "--threads", str(args.threads),
                                         "--overwrite", "-q", *options])}
            sidecar = json.loads(out.with_suffix("").with_suffix(".json").read_text())
            if (sidecar["estimator"] == "plane prior") != name.startswith("plane prior"):
                raise SystemExit(f"{name}: made by the {sidecar['estimator']} (is the shipped prior installed?)")
            row.update(upsample_seconds=round(sidecar["seconds"], 1), estimator=sidecar["estimator"],
                       output_shape=sidecar["output_shape"])
            rows.append(row)
    first = rows[0]["upsample_seconds"]
    print(f"{'run':36} {'upsample s':>10} {'command s':>10} {'peak MiB':>9} {'time ratio':>10}")
    for row in rows:
        row["ratio_to_default"] = round(row["upsample_seconds"] / first, 2)
        print(f"{row['run']:36} {row['upsample_seconds']:10.1f} {row['command_seconds']:10.1f} "
              f"{row['peak_mib']:9.1f} {row['ratio_to_default']:10.2f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": args.threads, "cpu": platform.processor() or platform.machine(),
                               "input_shape": list(slices.shape), "rows": rows}, indent=1) + "\n")
    print(out)


if __name__ == "__main__":
    main()
