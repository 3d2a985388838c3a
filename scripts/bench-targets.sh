#!/bin/sh
# bench-targets.sh measures the performance table of the project's four
# workloads (sd_unet64, decoder, perceiver, tiny) the way the throughput
# targets are stated: the full layer at 2 threads, median of 9 timed calls,
# side by side with ONNX Runtime and PyTorch on the same inputs, in one run of
# xbench each:
#
#   1. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (OpenBLAS picks its own
#      kernels; on AVX-512 CPUs xattn's products run on its own kernel);
#   2. OPENBLAS_CORETYPE=Haswell, the setting some of the project's machines
#      carry, which forces OpenBLAS (and the peers built on it) onto its AVX2
#      kernels;
#   3. sd_unet64 at 1 and 2 threads, for the scaling.
#
# xbench runs with GOMAXPROCS one above its 2 threads (override with
# XBENCH_GOMAXPROCS): a cgo call that outlasts a sysmon tick while no P is
# idle has its P handed to another thread, and getting it back costs a thread
# switch on return; one idle P avoids that. Measured here, 2 threads on 2
# cores without SMT: sd_unet64 19.2–20.0 → 17.0–17.4 ms, decoder 29.2–30.0 →
# 26.2–27.9 ms. The README recommends the same for services.
#
# Usage: bash scripts/bench-targets.sh [outdir]   (default bench-out/)
# It installs the peers (scripts/peers-setup.sh) and writes one JSON report
# per run to outdir beside the tables it prints. On a shared machine, run it
# when nothing else is busy: the medians are only as quiet as the machine.
set -eu
cd "$(dirname "$0")/.."
out=${1:-bench-out}
mkdir -p "$out"

bash scripts/peers-setup.sh
go build -o "$out/xbench" ./cmd/xbench
xb="$out/xbench"
export GOMAXPROCS="${XBENCH_GOMAXPROCS:-3}"

echo "== 1. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$xb" -threads 2 -repeats 9 -peers ort,torch -o "$out/unset.json"

echo "== 2. OPENBLAS_CORETYPE=Haswell"
env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=Haswell "$xb" -threads 2 -repeats 9 -peers ort,torch -o "$out/haswell.json"

echo "== 3. sd_unet64 scaling, 1 → 2 threads"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$xb" -preset sd_unet64 -sweep threads=1,2 -repeats 9 -o "$out/scaling.json"
