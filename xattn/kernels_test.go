package xattn_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// TestMain runs the package's tests on the backend [blas.Default] is. When
// XATTN_KERNELS names a variant of the OpenBLAS backend this CPU lacks
// (scripts/test.sh asks for each in turn), it says so and runs nothing,
// rather than run the CPU's own variant again under another name.
func TestMain(m *testing.M) {
	if name := os.Getenv("XATTN_KERNELS"); name != "" && blas.OpenBLASInfo().Linked {
		if _, err := blas.OpenBLASVariant(name); err != nil {
			fmt.Printf("skipping every test of package xattn: XATTN_KERNELS=%s: %v\n", name, err)
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// TestRequireKernels fails if XATTN_KERNELS names a variant that the
// default backend does not run, so that a per-variant run of the layer
// tests cannot test the CPU's own variant instead.
func TestRequireKernels(t *testing.T) {
	name := os.Getenv("XATTN_KERNELS")
	if name == "" || !blas.OpenBLASInfo().Linked {
		t.Skip("XATTN_KERNELS unset, or no OpenBLAS backend in this build")
	}
	want, err := blas.OpenBLASVariant(name)
	if err != nil {
		t.Fatal(err)
	}
	if got := blas.Kernels(blas.Default()); got != blas.Kernels(want) {
		t.Fatalf("XATTN_KERNELS=%s: the default backend runs %s, want %s", name, got, blas.Kernels(want))
	}
	t.Logf("XATTN_KERNELS=%s: %s", name, blas.Kernels(want))
}

// TestPlanKernels checks that a Layer's Plan names its backend's kernels,
// for every backend and every variant of the OpenBLAS backend this CPU runs.
func TestPlanKernels(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 8, Heads: 2, HeadDim: 4, OutDim: 8}
	w := mustWeights(t, cfg)
	bes := blas.All()
	for _, name := range blas.Variants() {
		be, err := blas.OpenBLASVariant(name)
		if err != nil {
			t.Fatalf("Variants lists %q, but OpenBLASVariant: %v", name, err)
		}
		bes = append(bes, be)
	}
	seen := map[string]bool{}
	for _, be := range bes {
		l, err := xattn.New(cfg, w, xattn.WithBackend(be))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := l.Plan().Kernels, blas.Kernels(be); got != want || got == "" {
			t.Errorf("backend %s: Plan().Kernels = %q, want %q", be.Name(), got, want)
		}
		seen[l.Plan().Kernels] = true
	}
	if want := len(blas.Variants()) + 1; len(seen) != want {
		t.Errorf("%d distinct kernel names over %d backends, want %d: %v", len(seen), len(bes), want, seen)
	}
	if _, err := blas.OpenBLASVariant("rows=avx1024"); err == nil {
		t.Errorf("OpenBLASVariant(rows=avx1024) did not fail")
	}
}
