package xattn_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// TestBadBF16Env runs child processes with XATTN_BF16 naming no kernel,
// and naming a kernel this binary or CPU cannot run (where there is one):
// an FP32 New and NewAttention are unaffected; WithPrecision(BF16) fails
// with an error wrapping ErrConfig that names the value (and, for the
// unavailable kernel, says so); a BF16 backend given by WithBackend is
// unaffected.
func TestBadBF16Env(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 8, Heads: 2, HeadDim: 4, OutDim: 8}
	acfg := xattn.AttentionConfig{Heads: 2, HeadDim: 4}
	if spec := os.Getenv("XATTN_TEST_BAD_BF16"); spec != "" {
		w := mustWeights(t, cfg)
		if l, err := xattn.New(cfg, w); err != nil || l.Plan().Precision != xattn.FP32 {
			t.Errorf("FP32 New with XATTN_BF16=%s: %v, %v; want an FP32 layer", spec, l, err)
		}
		if a, err := xattn.NewAttention(acfg); err != nil || a.Plan().Precision != xattn.FP32 {
			t.Errorf("FP32 NewAttention with XATTN_BF16=%s: %v, %v; want an FP32 core", spec, a, err)
		}
		want := []string{spec}
		if os.Getenv("XATTN_TEST_BAD_BF16_WHY") != "" {
			want = append(want, "not available on this CPU")
		}
		check := func(what string, err error) {
			ok := errors.Is(err, xattn.ErrConfig)
			for _, s := range want {
				ok = ok && err != nil && strings.Contains(err.Error(), s)
			}
			if !ok {
				t.Errorf("%s with XATTN_BF16=%s: %v, want ErrConfig naming %q", what, spec, err, want)
			}
		}
		_, err := xattn.New(cfg, w, xattn.WithPrecision(xattn.BF16))
		check("New WithPrecision(BF16)", err)
		_, err = xattn.NewAttention(acfg, xattn.WithPrecision(xattn.BF16))
		check("NewAttention WithPrecision(BF16)", err)
		bb, err := blas.WithBF16(blas.Pure(), blas.BF16Kernel{})
		if err != nil {
			t.Fatal(err)
		}
		if l, err := xattn.New(cfg, w, xattn.WithBackend(bb)); err != nil || l.Plan().Precision != xattn.BF16 {
			t.Errorf("New WithBackend(BF16 pure) with XATTN_BF16=%s: %v, %v", spec, l, err)
		}
		return
	}
	run := func(spec string, why bool) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBadBF16Env$", "-test.count=1")
		cmd.Env = append(os.Environ(), "XATTN_BF16="+spec, "XATTN_TEST_BAD_BF16="+spec)
		if why {
			cmd.Env = append(cmd.Env, "XATTN_TEST_BAD_BF16_WHY=1")
		}
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "PASS") {
			t.Fatalf("XATTN_BF16=%s: %v\n%s", spec, err, out)
		}
	}
	run("avx1024", false)
	for _, name := range []string{"amx", "avx512bf16", "rounded", "rounded-scalar"} {
		if _, err := blas.BF16KernelNamed(name); errors.Is(err, blas.ErrUnsupported) {
			run(name, true)
			return
		}
	}
	t.Log("this CPU runs every BF16 kernel: no unavailable one to name")
}
