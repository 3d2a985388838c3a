package xattn

import (
	"testing"

	"github.com/xattn/xattn/blas"
)

// TestBF16KVGemms checks that the keys and values of one source are one
// product against [Wk; Wv] in BF16 as in FP32 (the packed pkv in BF16,
// whose float32 weights are gone), and two products from two sources.
func TestBF16KVGemms(t *testing.T) {
	skipForcedBF16Missing(t)
	cfg := Config{QueryDim: 32, ContextDim: 24, Heads: 3, HeadDim: 12, Bias: true}
	w, err := NewWeights(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range [][]Option{{WithBackend(blas.Pure())}, {WithPrecision(BF16)}, {WithBackend(blas.Pure()), WithPrecision(BF16)}} {
		l, err := New(cfg, w, opts...)
		if err != nil {
			t.Fatal(err)
		}
		c := &l.cfg
		x := make([]float32, 5*c.ContextDim)
		kv := make([]float32, 5*c.KVHeads*(c.HeadDim+c.ValueHeadDim))
		for _, tc := range []struct {
			xv   []float32
			want int
		}{{x, 1}, {append([]float32(nil), x...), 2}} {
			p := l.getPipeline()
			p.layer = l
			p.ws.gemms = p.ws.gemms[:0]
			p.addKV(x, tc.xv, kv)
			if n := len(p.ws.gemms); n != tc.want {
				t.Errorf("%s: %d products for the keys and values, want %d", l, n, tc.want)
			}
			if g := p.ws.gemms[0]; tc.want == 1 && l.plan.Precision == BF16 && (g.packed.IsZero() || g.n != len(kv)/5) {
				t.Errorf("%s: the one product is %d columns, packed %v", l, g.n, !g.packed.IsZero())
			}
			l.putPipeline(p)
		}
	}
}
