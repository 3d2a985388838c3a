#!/bin/sh
# bench-targets.sh measures the performance table of the project's four
# workloads (sd_unet64, decoder, perceiver, tiny) the way the throughput
# targets are stated: the full layer at 2 threads, median of 9 timed calls,
# side by side with ONNX Runtime and PyTorch on the same inputs, in one run of
# xbench each:
#
#   1. OPENBLAS_CORETYPE chosen for this CPU: SkylakeX where /proc/cpuinfo
#      shows avx512f, Haswell where it shows avx2, else unset (override with
#      XBENCH_CORETYPE). OpenBLAS's own detection is not trusted: Debian
#      bookworm's 0.3.21 does not know recent Xeons (family 6 model 207) and
#      falls back to its SSE3 Prescott kernels, which slows the peers built
#      on OpenBLAS and, on CPUs without AVX-512, xattn's own products;
#   2. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, OpenBLAS choosing for
#      itself, for the record (xbench's header says which core it picked and
#      warns when it is a fallback);
#   3. sd_unet64 at 1 and 2 threads, for the scaling, with the core of 1;
#   4. the serving presets (xbench -preset serving), with the core of 1.
#
# The core of each run is printed and recorded in its JSON report
# (env.env_vars.OPENBLAS_CORETYPE and env.openblas.core_name).
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

if [ -n "${XBENCH_CORETYPE+set}" ]; then
	core=$XBENCH_CORETYPE
elif grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
	core=SkylakeX
elif grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
	core=Haswell
else
	core=
fi
echo "bench-targets: OPENBLAS_CORETYPE=${core:-(unset)} for runs 1, 3 and 4" | tee "$out/coretype.txt"

bash scripts/peers-setup.sh
go build -o "$out/xbench" ./cmd/xbench
xb="$out/xbench"
export GOMAXPROCS="${XBENCH_GOMAXPROCS:-3}"

# chosen runs xbench with the chosen core (or none).
chosen() {
	if [ -n "$core" ]; then
		env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE="$core" "$xb" "$@"
	else
		env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$xb" "$@"
	fi
}

echo "== 1. OPENBLAS_CORETYPE=${core:-(unset)}"
chosen -threads 2 -repeats 9 -peers ort,torch -o "$out/targets.json"

echo "== 2. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (OpenBLAS's own choice)"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$xb" -threads 2 -repeats 9 -peers ort,torch -o "$out/unset.json"

echo "== 3. sd_unet64 scaling, 1 → 2 threads"
chosen -preset sd_unet64 -sweep threads=1,2 -repeats 9 -o "$out/scaling.json"

echo "== 4. serving presets"
chosen -preset serving -threads 2 -o "$out/serving.json"
