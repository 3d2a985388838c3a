#!/bin/sh
# test.sh is the project's test matrix, run by CI and by the README's test
# command. Every step must pass.
set -eu
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "gofmt"
bad=$(gofmt -l .)
if [ -n "$bad" ]; then
	echo "gofmt needed on: $bad" >&2
	exit 1
fi

step "go mod tidy -diff"
# go.mod and go.sum are what go mod tidy makes of them: direct dependencies
# marked direct, and golang.org/x/exp pinned (netlib's tests import
# golang.org/x/exp/rand without requiring a version, so tidy in a module
# that imports this one would otherwise pick the newest).
go mod tidy -diff

step "go vet (cgo, CGO_ENABLED=0, purego)"
go vet ./...
CGO_ENABLED=0 go vet ./...
go vet -tags purego ./...

step "go test, cgo with OpenBLAS required"
XATTN_REQUIRE_OPENBLAS=1 go test ./...

step "layer tests on every other kernel variant (XATTN_KERNELS)"
# The xattn tests (the differential sweep, masks, GQA, cache, batch, the
# fuzz corpus) with the OpenBLAS backend forced to each variant below the
# CPU's widest, which the run above tested: products on OpenBLAS with the
# widest row pass, then the AVX2 and scalar row passes. TestMain skips a
# variant the CPU lacks and says why; TestRequireKernels fails if the
# variant asked for is not the one that runs.
for k in openblas avx2 scalar; do
	echo "XATTN_KERNELS=$k"
	XATTN_KERNELS=$k XATTN_REQUIRE_OPENBLAS=1 go test -short ./xattn/...
done

step "BF16 layer tests on every BF16 kernel (XATTN_BF16)"
# The BF16 tests of the layer (the sweep against the FP32 reference, the
# routes, allocations, concurrency) with the BF16 kernel forced to each in
# turn, on both backends; one the CPU lacks is skipped with the reason.
for k in amx avx512bf16 rounded rounded-scalar pure; do
	echo "XATTN_BF16=$k"
	XATTN_BF16=$k XATTN_REQUIRE_OPENBLAS=1 go test -short -run BF16 ./xattn/...
done

step "hostile inputs under a 2 GB address-space limit"
# TestHostile's bogus and huge requests must be errors, never a fatal
# out-of-memory, also where the address space runs out first. The Go
# runtime and OpenBLAS reserve about 1.6 GB of it in a cgo test binary, so
# the limit leaves little room. Not under -race: its shadow memory needs far
# more address space.
hostile=$(mktemp -d)
trap 'rm -rf "$hostile"' EXIT
go test -c -o "$hostile/xattn.test" ./xattn
(cd xattn && ulimit -v 2097152 && XATTN_REQUIRE_OPENBLAS=1 "$hostile/xattn.test" -test.run '^TestHostile$')

step "go test, CGO_ENABLED=0"
CGO_ENABLED=0 go test ./...

step "go test, -tags purego"
go test -tags purego ./...

step "go test -race -cpu=1,4"
# A binary's race run takes 5–10 minutes on a shared 2-core machine: the
# default 10-minute limit of go test is too close.
XATTN_REQUIRE_OPENBLAS=1 go test -race -short -cpu=1,4 -timeout 30m ./...

step "cgocheck2"
XATTN_REQUIRE_OPENBLAS=1 GOEXPERIMENT=cgocheck2 go test -short ./blas/... ./xattn/...

step "benchmarks, one iteration each"
go test -short -run '^$' -bench . -benchtime 1x ./...

step "all steps passed"
