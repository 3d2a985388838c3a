package xattn_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// TestMain runs the package's tests on the backend [blas.Default] is. When
// XATTN_KERNELS names a variant of the OpenBLAS backend this CPU lacks
// (scripts/test.sh asks for each in turn), it says so and runs nothing,
// rather than run the CPU's own variant again under another name; when it
// names no variant at all, the run fails. (TestBadKernelsEnv's child
// process sets XATTN_TEST_BAD_KERNELS to be let through.)
func TestMain(m *testing.M) {
	if name := os.Getenv("XATTN_KERNELS"); name != "" && blas.OpenBLASInfo().Linked && os.Getenv("XATTN_TEST_BAD_KERNELS") == "" {
		if _, err := blas.OpenBLASVariant(name); errors.Is(err, blas.ErrUnsupported) {
			fmt.Printf("skipping every test of package xattn: XATTN_KERNELS=%s: %v\n", name, err)
			os.Exit(0)
		} else if err != nil {
			fmt.Printf("XATTN_KERNELS=%s: %v\n", name, err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// TestBadKernelsEnv runs a child process with XATTN_KERNELS naming no
// variant: New and NewFiLM fail with an error wrapping ErrConfig that names
// the value, unless WithBackend chose the backend.
func TestBadKernelsEnv(t *testing.T) {
	if !blas.OpenBLASInfo().Linked {
		t.Skip("no OpenBLAS backend in this build: XATTN_KERNELS is not read")
	}
	cfg := xattn.Config{QueryDim: 8, ContextDim: 8, Heads: 2, HeadDim: 4, OutDim: 8}
	fcfg := xattn.FiLMConfig{Dim: 4, CondDim: 3}
	if spec := os.Getenv("XATTN_TEST_BAD_KERNELS"); spec != "" {
		w := mustWeights(t, cfg)
		fw, err := xattn.NewFiLMWeights(fcfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		_, err = xattn.New(cfg, w)
		if !errors.Is(err, xattn.ErrConfig) || !errors.Is(err, blas.ErrVariant) || !strings.Contains(err.Error(), spec) {
			t.Errorf("New with XATTN_KERNELS=%s: %v, want ErrConfig naming it", spec, err)
		}
		_, err = xattn.NewFiLM(fcfg, fw)
		if !errors.Is(err, xattn.ErrConfig) || !strings.Contains(err.Error(), spec) {
			t.Errorf("NewFiLM with XATTN_KERNELS=%s: %v, want ErrConfig naming it", spec, err)
		}
		if _, err := xattn.New(cfg, w, xattn.WithBackend(blas.Pure())); err != nil {
			t.Errorf("New WithBackend(Pure) with XATTN_KERNELS=%s: %v", spec, err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBadKernelsEnv$", "-test.count=1")
	cmd.Env = append(os.Environ(), "XATTN_KERNELS=avx1024", "XATTN_TEST_BAD_KERNELS=avx1024")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("%v\n%s", err, out)
	}
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

// oddSteps is a backend that cuts work in other steps than the one it
// wraps: rows of 5 and columns of 32, so that half the column cuts of a
// packed matrix have no view (blas.Packed.Cols) and the products read the
// weights as they are.
type oddSteps struct{ blas.Backend }

func (oddSteps) Steps() (rows, cols int) { return 5, 32 }

// TestOtherSteps runs part of the differential sweep on every backend
// wrapped to state other steps: package xattn takes the cut from the
// backend and never assumes a layout, so the results stay right.
func TestOtherSteps(t *testing.T) {
	for i, c := range sweep(true) {
		if i%3 != 0 {
			continue
		}
		d := makeCase(t, c, uint64(i))
		for _, be := range blas.All() {
			t.Run("backend="+be.Name()+"/"+c.name(), func(t *testing.T) {
				checkPlans(t, c, d,
					[]xattn.Option{xattn.WithBackend(oddSteps{be}), xattn.WithThreads(3), xattn.WithSerialFLOPs(0)},
					[]xattn.Option{xattn.WithBackend(oddSteps{be}), xattn.WithThreads(3), xattn.WithTile(7, 16), xattn.WithSerialFLOPs(0), xattn.WithAbsorb(false)})
			})
		}
	}
}

// badSteps is a backend that states no step.
type badSteps struct{ blas.Backend }

func (badSteps) Steps() (rows, cols int) { return 0, 64 }

func TestBadSteps(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 8, Heads: 2, HeadDim: 4, OutDim: 8}
	_, err := xattn.New(cfg, mustWeights(t, cfg), xattn.WithBackend(badSteps{blas.Default()}))
	if !errors.Is(err, xattn.ErrConfig) || !strings.Contains(err.Error(), "0 rows") {
		t.Fatalf("New with a backend of 0-row steps: %v, want ErrConfig naming the steps", err)
	}
}

// TestCrewRuns checks that a layer's phases run on its backend's crew where
// the backend has one (blas.CrewOf): after a forward pass on three threads,
// at least two crew threads have started. The layer-level tests hold the
// results of those phases against the float64 reference.
func TestCrewRuns(t *testing.T) {
	be := blas.Default()
	if blas.CrewOf(be) == nil {
		t.Skipf("backend %s (%s) has no crew", be.Name(), blas.Kernels(be))
	}
	cfg := xattn.Config{QueryDim: 256, Heads: 4, HeadDim: 64}
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := xattn.New(cfg, w, xattn.WithThreads(3))
	if err != nil {
		t.Fatal(err)
	}
	s := xattn.Shape{Batch: 2, Tq: 16, Tk: 16}
	x := make([]float32, s.Batch*s.Tq*cfg.QueryDim)
	if _, err := l.Forward(x, x, s, nil); err != nil {
		t.Fatal(err)
	}
	if n := blas.CrewThreads(); n < 2 {
		t.Fatalf("CrewThreads() = %d after a forward pass on 3 threads, want at least 2", n)
	}
}
