package xattn

import (
	"fmt"
	"sync"

	"github.com/xattn/xattn/blas"
)

// Shape gives the sequence sizes of one call: Batch sequences of Tq queries
// attend over Tk keys each. Inputs and outputs are row-major: x is
// [Batch, Tq, QueryDim], the context [Batch, Tk, ContextDim], y
// [Batch, Tq, OutDim].
type Shape struct {
	Batch, Tq, Tk int
}

// Layer is a multi-head cross-attention layer:
//
//	Q = x·Wqᵀ + bq,  K = context·Wkᵀ + bk,  V = context·Wvᵀ + bv
//	O_h = softmax(Scale·Q_h·K_gᵀ + mask)·V_g   for every head h (g = h's key/value head)
//	y = [O_1 … O_Heads]·Woᵀ + bo
//
// A Layer is immutable once built and safe for concurrent use by any number
// of goroutines; the scratch of a call comes from a pool, so a steady stream of
// calls with the same shapes allocates nothing.
type Layer struct {
	cfg     Config // resolved
	backend blas.Backend
	plan    Plan

	wq, wk, wv, wo []float32
	bq, bk, bv, bo []float32
	// wkv and bkv stack [Wk; Wv] and [bk; bv] when keys and values have the
	// same source width, so that one GEMM projects both; wk, wv, bk and bv
	// are then views into them.
	wkv, bkv []float32
	// pq … po are the weights as the backend packed them for its products
	// (blas.Backend.Pack), nil where it reads them as they are. pk and pv
	// are views into pkv when the panels of Wk end where Wv's begin.
	pq, pk, pv, po, pkv []float32

	// abs holds the weights of the absorbed form (see absorb.go), made by
	// absOnce on first use.
	absOnce sync.Once
	abs     absorbedWeights

	// free holds the workspaces of finished calls.
	free freeList[workspace]
}

// New returns a layer with the shapes of cfg and a copy of the weights w, in
// the layout documented on [Weights]. It derives the plan from the CPU;
// options override it or choose the backend.
func New(cfg Config, w *Weights, opts ...Option) (*Layer, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if err := w.check(c); err != nil {
		return nil, err
	}
	s := settings{backend: blas.Default(), plan: defaultPlan(c.HeadDim, c.ValueHeadDim)}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil Option", ErrConfig)
		}
		if err := o(&s); err != nil {
			return nil, err
		}
	}
	l := &Layer{cfg: c, backend: s.backend, plan: s.plan}
	l.wq = clone(w.Q)
	l.wo = clone(w.Out)
	l.bo = clone(w.OutBias)
	if c.Bias {
		l.bq = clone(w.QBias)
	}
	if c.ContextDim == c.ValueDim {
		l.wkv = append(clone(w.K), w.V...)
		l.wk, l.wv = l.wkv[:len(w.K)], l.wkv[len(w.K):]
		if c.Bias {
			l.bkv = append(clone(w.KBias), w.VBias...)
			l.bk, l.bv = l.bkv[:len(w.KBias)], l.bkv[len(w.KBias):]
		}
	} else {
		l.wk, l.wv = clone(w.K), clone(w.V)
		if c.Bias {
			l.bk, l.bv = clone(w.KBias), clone(w.VBias)
		}
	}
	l.pack()
	return l, nil
}

// pack prepares the weights for the backend's products.
func (l *Layer) pack() {
	c, be := &l.cfg, l.backend
	nk, nv, nq := c.KVHeads*c.HeadDim, c.KVHeads*c.ValueHeadDim, c.Heads*c.HeadDim
	l.pq = be.Pack(l.wq, nq, c.QueryDim)
	l.po = be.Pack(l.wo, c.OutDim, c.Heads*c.ValueHeadDim)
	if l.wkv != nil {
		l.pkv = be.Pack(l.wkv, nk+nv, c.ContextDim)
		if l.pkv != nil && nk%64 == 0 {
			// Rows [0, nk) of [Wk; Wv] fill whole panels: the packed Wk
			// is the first nk/64 panels, and the packed Wv the rest.
			split := nk / 64 * 64 * c.ContextDim
			l.pk, l.pv = l.pkv[:split:split], l.pkv[split:]
			return
		}
	}
	l.pk = be.Pack(l.wk, nk, c.ContextDim)
	l.pv = be.Pack(l.wv, nv, c.ValueDim)
}

func clone(s []float32) []float32 { return append([]float32(nil), s...) }

// Config returns the layer's configuration with every default filled in.
func (l *Layer) Config() Config { return l.cfg }

// Plan returns how the layer splits its work.
func (l *Layer) Plan() Plan { return l.plan }

// Backend returns the kernels the layer computes with.
func (l *Layer) Backend() blas.Backend { return l.backend }

// String reports the backend and the plan, as "openblas threads=2 tile=…".
func (l *Layer) String() string {
	return l.backend.Name() + " " + l.plan.String()
}

// Forward returns y = Layer(x, context) in a new slice of Batch·Tq·OutDim
// values; see [Layer.ForwardInto].
func (l *Layer) Forward(x, context []float32, s Shape, m *Mask) ([]float32, error) {
	n, ok := mul3(max(s.Batch, 0), max(s.Tq, 0), l.cfg.OutDim)
	if !ok {
		return nil, fmt.Errorf("%w: output [%d, %d, %d] overflows", ErrShape, s.Batch, s.Tq, l.cfg.OutDim)
	}
	if err := l.checkShape(s); err != nil {
		return nil, err
	}
	y := make([]float32, n)
	if err := l.ForwardInto(y, x, context, s, m); err != nil {
		return nil, err
	}
	return y, nil
}

// ForwardInto computes y = Layer(x, context) into y, which must hold exactly
// Batch·Tq·OutDim values. x holds Batch·Tq·QueryDim values and context
// Batch·Tk·ContextDim; keys and values both come from the context, so the
// layer needs ValueDim = ContextDim (use [Layer.ForwardQKV] otherwise). A nil
// context means self-attention: keys and values come from x, Tk must be 0 or
// Tq, and the layer needs ContextDim = ValueDim = QueryDim.
//
// y must not overlap the inputs; the inputs are only read. After the pool
// has warmed up to the shape, ForwardInto allocates nothing.
func (l *Layer) ForwardInto(y, x, context []float32, s Shape, m *Mask) error {
	c := &l.cfg
	if context == nil {
		if c.ContextDim != c.QueryDim || c.ValueDim != c.QueryDim {
			return fmt.Errorf("%w: nil context means self-attention, but QueryDim=%d, ContextDim=%d, ValueDim=%d differ",
				ErrShape, c.QueryDim, c.ContextDim, c.ValueDim)
		}
		if s.Tk != 0 && s.Tk != s.Tq {
			return fmt.Errorf("%w: self-attention with Tq=%d but Tk=%d", ErrShape, s.Tq, s.Tk)
		}
		s.Tk = s.Tq
		return l.forward(y, x, x, x, s, m)
	}
	if c.ValueDim != c.ContextDim {
		return fmt.Errorf("%w: ValueDim=%d ≠ ContextDim=%d: pass keys and values to ForwardQKV",
			ErrShape, c.ValueDim, c.ContextDim)
	}
	return l.forward(y, x, context, context, s, m)
}

// ForwardQKV computes the layer with queries, keys and values projected from
// three sources, like PyTorch's MultiheadAttention.forward(query, key, value):
// query is [Batch, Tq, QueryDim], key [Batch, Tk, ContextDim] and value
// [Batch, Tk, ValueDim]. y is as for [Layer.ForwardInto]. Passing the same
// slice as key and value is the plain cross-attention case.
func (l *Layer) ForwardQKV(y, query, key, value []float32, s Shape, m *Mask) error {
	return l.forward(y, query, key, value, s, m)
}

// ForwardSelfDoc computes the SelfDoc routing: queries and values from x,
// keys from the context, so query i's output mixes the x rows whose context
// rows match it. It needs Tq = Tk (row j of the context pairs with row j of x)
// and a layer with ValueDim = QueryDim.
func (l *Layer) ForwardSelfDoc(y, x, context []float32, s Shape, m *Mask) error {
	if s.Tq != s.Tk {
		return fmt.Errorf("%w: SelfDoc pairs context rows with x rows, but Tq=%d ≠ Tk=%d", ErrShape, s.Tq, s.Tk)
	}
	if l.cfg.ValueDim != l.cfg.QueryDim {
		return fmt.Errorf("%w: SelfDoc takes values from x, but ValueDim=%d ≠ QueryDim=%d",
			ErrShape, l.cfg.ValueDim, l.cfg.QueryDim)
	}
	return l.forward(y, x, context, x, s, m)
}

// FLOPs returns the floating-point operations of one forward pass of shape s
// (2 per multiply-add of every product; exponentials not counted):
//
//	2·B·(Tq·Dq·H·dk + Tk·Dc·G·dk + Tk·Dv·G·dv + Tq·H·dv·Do) + 2·B·H·Tq·Tk·(dk+dv)
//
// with G key/value heads. Masks that skip keys do not reduce it.
func (l *Layer) FLOPs(s Shape) float64 {
	return flops(&l.cfg, s)
}

// FLOPs is [Layer.FLOPs] for a configuration, with its defaults filled in; it
// returns 0 for an invalid one.
func FLOPs(cfg Config, s Shape) float64 {
	c, err := cfg.resolve()
	if err != nil {
		return 0
	}
	return flops(&c, s)
}

// flops is FLOPs for a resolved configuration.
func flops(c *Config, s Shape) float64 {
	b, tq, tk := float64(s.Batch), float64(s.Tq), float64(s.Tk)
	h, g, dk, dv := float64(c.Heads), float64(c.KVHeads), float64(c.HeadDim), float64(c.ValueHeadDim)
	proj := tq*float64(c.QueryDim)*h*dk + tk*float64(c.ContextDim)*g*dk +
		tk*float64(c.ValueDim)*g*dv + tq*h*dv*float64(c.OutDim)
	return 2*b*proj + 2*b*h*tq*tk*(dk+dv)
}

// checkShape validates the sizes of s.
func (l *Layer) checkShape(s Shape) error {
	if s.Batch < 0 || s.Tq < 0 || s.Tk < 0 {
		return fmt.Errorf("%w: negative shape Batch=%d Tq=%d Tk=%d", ErrShape, s.Batch, s.Tq, s.Tk)
	}
	const maxRows = 1<<31 - 1 // rows of one product, a C int
	if r, ok := mul(s.Batch, max(s.Tq, s.Tk)); !ok || r > maxRows {
		return fmt.Errorf("%w: Batch=%d × Tq=%d or Tk=%d rows overflow", ErrShape, s.Batch, s.Tq, s.Tk)
	}
	return nil
}

// checkLen returns an error unless data holds rows×cols values.
func checkLen(name string, data []float32, b, t, cols int) error {
	n, ok := mul3(b, t, cols)
	if !ok || len(data) != n {
		return fmt.Errorf("%w: %s has %d values, want [%d, %d, %d] = %d", ErrShape, name, len(data), b, t, cols, n)
	}
	return nil
}

// forward validates a call and runs it.
func (l *Layer) forward(y, q, k, v []float32, s Shape, m *Mask) error {
	c := &l.cfg
	if err := l.checkShape(s); err != nil {
		return err
	}
	for _, a := range []struct {
		name string
		data []float32
		t    int
		cols int
	}{
		{"y", y, s.Tq, c.OutDim},
		{"query input", q, s.Tq, c.QueryDim},
		{"key input", k, s.Tk, c.ContextDim},
		{"value input", v, s.Tk, c.ValueDim},
	} {
		if err := checkLen(a.name, a.data, s.Batch, a.t, a.cols); err != nil {
			return err
		}
	}
	if s.Batch == 0 || s.Tq == 0 {
		return nil
	}
	ws := l.getWorkspace()
	defer l.putWorkspace(ws)
	if err := ws.setMask(m, s.Batch, c.Heads, s.Tq, s.Tk); err != nil {
		return err
	}
	ws.run(l, y, q, k, v, s)
	return nil
}
