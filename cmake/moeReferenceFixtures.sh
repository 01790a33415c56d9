#!/bin/sh
# ctest `reference_fixtures`: writes the PyTorch parity fixtures, or exits 77 (ctest: skipped)
# when the generator script or torch is not there.
#   sh cmake/moeReferenceFixtures.sh PYTHON SCRIPT OUT_DIR
python=$1 script=$2 out=$3
if [ ! -f "$script" ]; then
    echo "reference fixtures: $script does not exist yet: skipped"
    exit 77
fi
if [ ! -x "$python" ]; then
    echo "reference fixtures: $python not found (apt-get install python3-torch): skipped"
    exit 77
fi
if ! "$python" -c "import torch" >/dev/null 2>&1; then
    echo "reference fixtures: '$python -c \"import torch\"' failed (apt-get install python3-torch): skipped"
    exit 77
fi
# Write to a scratch directory and swap it in, so an interrupted run leaves no half set.
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
"$python" "$script" --out "$out.tmp" || { rc=$?; echo "reference fixtures: $script failed ($rc)"; exit 1; }
rm -rf "$out"
mv "$out.tmp" "$out"
echo "reference fixtures: written to $out"
