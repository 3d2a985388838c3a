package xattn_test

import (
	"math/rand/v2"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// benchShapes are the workloads of the project's targets.
var benchShapes = []struct {
	name  string
	cfg   xattn.Config
	shape xattn.Shape
}{
	{"sd_unet64", xattn.Config{QueryDim: 320, ContextDim: 768, Heads: 8, HeadDim: 40}, xattn.Shape{Batch: 2, Tq: 4096, Tk: 77}},
	{"decoder", xattn.Config{QueryDim: 512, Heads: 8, HeadDim: 64}, xattn.Shape{Batch: 8, Tq: 32, Tk: 1500}},
	{"perceiver", xattn.Config{QueryDim: 512, ContextDim: 256, Heads: 8, HeadDim: 64}, xattn.Shape{Batch: 1, Tq: 256, Tk: 16384}},
	{"tiny", xattn.Config{QueryDim: 512, Heads: 8, HeadDim: 64}, xattn.Shape{Batch: 1, Tq: 10, Tk: 20}},
}

// BenchmarkForward times ForwardInto with reused buffers on every backend and
// reports GFLOP/s with the count of xattn.FLOPs.
func BenchmarkForward(b *testing.B) {
	for _, bs := range benchShapes {
		for _, be := range blas.All() {
			b.Run("shape="+bs.name+"/backend="+be.Name(), func(b *testing.B) {
				w, err := xattn.NewWeights(bs.cfg, 1)
				if err != nil {
					b.Fatal(err)
				}
				l, err := xattn.New(bs.cfg, w, xattn.WithBackend(be))
				if err != nil {
					b.Fatal(err)
				}
				c := l.Config()
				s := bs.shape
				rng := rand.New(rand.NewPCG(1, 2))
				x := randn(rng, s.Batch*s.Tq*c.QueryDim)
				ctx := randn(rng, s.Batch*s.Tk*c.ContextDim)
				y := make([]float32, s.Batch*s.Tq*c.OutDim)
				if err := l.ForwardInto(y, x, ctx, s, nil); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := l.ForwardInto(y, x, ctx, s, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(l.FLOPs(s)*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "GFLOP/s")
			})
		}
	}
}

// BenchmarkCore times the attention core alone (Backend.Attend over every
// task, on one goroutine) on the projected shapes of the workloads.
func BenchmarkCore(b *testing.B) {
	for _, bs := range benchShapes {
		for _, be := range blas.All() {
			b.Run("shape="+bs.name+"/backend="+be.Name(), func(b *testing.B) {
				s := bs.shape
				h, d := bs.cfg.Heads, bs.cfg.HeadDim
				rng := rand.New(rand.NewPCG(1, 2))
				q := randn(rng, s.Batch*s.Tq*h*d)
				kv := randn(rng, s.Batch*s.Tk*2*h*d)
				o := make([]float32, s.Batch*s.Tq*h*d)
				p := xattn.Plan{}
				if l, err := newPlanProbe(bs.cfg); err == nil {
					p = l
				}
				a := &blas.Attention{
					Batch: s.Batch, Heads: h, KVHeads: h, Tq: s.Tq, Tk: s.Tk, DK: d, DV: d,
					Scale: 0.125,
					Q:     q, LDQ: h * d, BatchQ: s.Tq * h * d,
					K: kv, LDK: 2 * h * d, BatchK: s.Tk * 2 * h * d,
					V: kv[h*d:], LDV: 2 * h * d, BatchV: s.Tk * 2 * h * d,
					O: o, LDO: h * d, BatchO: s.Tq * h * d,
					QBlock: min(p.QBlock, s.Tq), KVBlock: min(p.KVBlock, s.Tk),
				}
				scratch := make([]float32, a.ScratchLen())
				b.ReportAllocs()
				for b.Loop() {
					be.Attend(a, 0, a.Tasks(), scratch)
				}
				flops := 2 * float64(s.Batch*h*s.Tq*s.Tk) * float64(2*d)
				b.ReportMetric(flops*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "GFLOP/s")
			})
		}
	}
}

// newPlanProbe returns the default plan for cfg.
func newPlanProbe(cfg xattn.Config) (xattn.Plan, error) {
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		return xattn.Plan{}, err
	}
	l, err := xattn.New(cfg, w)
	if err != nil {
		return xattn.Plan{}, err
	}
	return l.Plan(), nil
}
