package xattn_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/xattn/xattn/xattn"
)

// TestFiniteCheck puts one NaN or ±Inf into each input of each entry point
// of a layer built WithFiniteCheck: the call returns an error wrapping
// ErrNonFinite that names the input and the element, and writes no output.
// The same calls on finite inputs succeed, and without the option the
// non-finite ones are no error.
func TestFiniteCheck(t *testing.T) {
	cfg := nanCfg
	r := resolved(cfg)
	w, err := xattn.NewWeights(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	checked, err := xattn.New(cfg, w, xattn.WithFiniteCheck())
	if err != nil {
		t.Fatal(err)
	}
	if !checked.Plan().FiniteCheck || !strings.Contains(checked.Plan().String(), " finite-check") {
		t.Fatalf("Plan %q does not report the check", checked.Plan())
	}
	plain, err := xattn.New(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	s := xattn.Shape{Batch: 2, Tq: 3, Tk: 5}
	d := r.QueryDim
	rng := rand.New(rand.NewPCG(1, 1))
	x, ctx := randn(rng, s.Batch*s.Tq*d), randn(rng, s.Batch*s.Tk*d)
	type call struct {
		name string
		run  func(l *xattn.Layer, x, ctx, value []float32, y []float32) error
	}
	calls := []call{
		{"ForwardInto", func(l *xattn.Layer, x, ctx, _, y []float32) error { return l.ForwardInto(y, x, ctx, s, nil) }},
		{"ForwardQKV", func(l *xattn.Layer, x, ctx, v, y []float32) error { return l.ForwardQKV(y, x, ctx, v, s, nil) }},
		{"ForwardContext", func(l *xattn.Layer, x, ctx, v, y []float32) error {
			c, err := l.ProjectKV(ctx, v, s.Batch, s.Tk)
			if err != nil {
				return err
			}
			return l.ForwardContext(y, x, c, s.Tq, nil)
		}},
		{"ForwardBatch", func(l *xattn.Layer, x, ctx, _, y []float32) error {
			ok := make([]float32, len(y))
			return l.ForwardBatch([]xattn.Request{
				{Y: ok, X: randn(rng, len(x)), Context: randn(rng, len(ctx)), Shape: s},
				{Y: y, X: x, Context: ctx, Shape: s},
			})
		}},
		{"AttentionMap", func(l *xattn.Layer, x, ctx, _, y []float32) error {
			_, err := l.AttentionMap(x, ctx, s, nil, true)
			return err
		}},
	}
	for _, c := range calls {
		for _, in := range []string{"query", "key", "value"} {
			if in == "value" && (c.name == "ForwardInto" || c.name == "ForwardBatch" || c.name == "AttentionMap") {
				continue // one context for keys and values, or no values
			}
			for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
				xq, xk, xv := append([]float32(nil), x...), append([]float32(nil), ctx...), append([]float32(nil), ctx...)
				// Element [1, 2, 5] of x, [1, 3, 7] of the key or value input.
				want := "query input[1, 2, 5]"
				switch in {
				case "query":
					xq[(1*s.Tq+2)*d+5] = bad
				case "key":
					xk[(1*s.Tk+3)*d+7], want = bad, "key input[1, 3, 7]"
				case "value":
					xv[(1*s.Tk+3)*d+7], want = bad, "value input[1, 3, 7]"
				}
				if c.name == "ForwardInto" || c.name == "ForwardBatch" {
					xv = xk
				}
				y := make([]float32, s.Batch*s.Tq*r.OutDim)
				for i := range y {
					y[i] = 42
				}
				err := c.run(checked, xq, xk, xv, y)
				if !errors.Is(err, xattn.ErrNonFinite) || !strings.Contains(err.Error(), want) {
					t.Errorf("%s, %v in the %s: err = %v, want ErrNonFinite naming %s", c.name, bad, in, err, want)
				}
				if c.name == "ForwardBatch" && !strings.HasPrefix(err.Error(), "request 1: ") {
					t.Errorf("%s: err = %v, want it to name request 1", c.name, err)
				}
				for i, v := range y {
					if v != 42 {
						t.Fatalf("%s, %v in the %s: y[%d] written (%v) on error", c.name, bad, in, i, v)
					}
				}
				if err := c.run(plain, xq, xk, xv, y); err != nil {
					t.Errorf("%s without the check: %v", c.name, err)
				}
			}
		}
		if err := c.run(checked, x, ctx, ctx, make([]float32, s.Batch*s.Tq*r.OutDim)); err != nil {
			t.Errorf("%s, finite inputs: %v", c.name, err)
		}
	}

	// Self-attention and a KV cache step: x is the only input.
	xs := append([]float32(nil), x...)
	xs[(0*s.Tq+1)*d+2] = float32(math.NaN())
	ss := xattn.Shape{Batch: s.Batch, Tq: s.Tq}
	if err := checked.ForwardInto(make([]float32, s.Batch*s.Tq*r.OutDim), xs, nil, ss, nil); !errors.Is(err, xattn.ErrNonFinite) ||
		!strings.Contains(err.Error(), "query input[0, 1, 2]") {
		t.Errorf("self-attention: err = %v", err)
	}
	kv, err := checked.NewKVCache(s.Batch, 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := checked.ForwardStep(make([]float32, s.Batch*s.Tq*r.OutDim), xs, kv, s.Tq, nil); !errors.Is(err, xattn.ErrNonFinite) ||
		!strings.Contains(err.Error(), "query input[0, 1, 2]") {
		t.Errorf("ForwardStep: err = %v", err)
	}
	if kv.Len() != 0 {
		t.Errorf("ForwardStep failed but the cache holds %d positions", kv.Len())
	}
}

// TestFiniteCheckAllocs checks that the scan allocates nothing: a layer
// built WithFiniteCheck still runs a warm ForwardInto with no allocation.
func TestFiniteCheckAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations differ under -race")
	}
	w, err := xattn.NewWeights(nanCfg, 4)
	if err != nil {
		t.Fatal(err)
	}
	l, err := xattn.New(nanCfg, w, xattn.WithFiniteCheck(), xattn.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	s := xattn.Shape{Batch: 2, Tq: 7, Tk: 33}
	rng := rand.New(rand.NewPCG(2, 2))
	x, ctx := randn(rng, s.Batch*s.Tq*nanCfg.QueryDim), randn(rng, s.Batch*s.Tk*nanCfg.QueryDim)
	y := make([]float32, s.Batch*s.Tq*resolved(nanCfg).OutDim)
	if n := testing.AllocsPerRun(20, func() {
		if err := l.ForwardInto(y, x, ctx, s, nil); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ForwardInto WithFiniteCheck: %v allocations a call, want 0", n)
	}
}
