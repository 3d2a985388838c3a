package xattn

import (
	"fmt"
	"slices"
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
	// (blas.Backend.Pack), zero where it reads them as they are. pk and pv
	// are views into pkv where the layout has them (blas.Packed.Cols).
	pq, pk, pv, po, pkv blas.Packed
	// rowStep and colStep are the backend's cut (blas.Backend.Steps): work
	// is split in multiples of rowStep rows, and packed matrices at
	// multiples of colStep columns.
	rowStep, colStep int
	// rope is the rotation of the queries and keys (WithRoPE), or nil.
	rope *rope

	// abs holds the weights of the absorbed form (see absorb.go), made by
	// absOnce on first use.
	absOnce sync.Once
	abs     absorbedWeights

	// free holds the pipelines (with their workspaces) of finished calls.
	free freeList[pipeline]
}

// New returns a layer with the shapes of cfg and a copy of the weights w, in
// the layout documented on [Weights]; a nil w.OutBias means no output bias
// (zero, PyTorch's bias=False). It derives the plan from the CPU; options
// override it or choose the backend.
//
// The zero Layer, and a nil *Layer, are not usable: their methods return
// errors wrapping [ErrConfig] (getters return zero values), never panic.
func New(cfg Config, w *Weights, opts ...Option) (*Layer, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if err := w.check(c); err != nil {
		return nil, err
	}
	l, err := newLayer(c, opts)
	if err != nil {
		return nil, err
	}
	if l.plan.Precision == BF16 {
		l.packBF16(w.mats(&c))
	} else {
		l.setFP32(w, false)
	}
	return l, nil
}

// setFP32 sets and packs the weights of an FP32 layer: copies of w's, or
// w's own when own is set (w is then the layer's).
func (l *Layer) setFP32(w *Weights, own bool) {
	c := &l.cfg
	clone := clone
	if own {
		clone = func(s []float32) []float32 { return s }
	}
	l.wq = clone(w.Q)
	l.wo = clone(w.Out)
	if w.OutBias != nil {
		l.bo = clone(w.OutBias)
	}
	if c.Bias {
		l.bq = clone(w.QBias)
	}
	if c.ContextDim == c.ValueDim {
		l.wkv = slices.Concat(w.K, w.V) // one allocation
		l.wk, l.wv = l.wkv[:len(w.K)], l.wkv[len(w.K):]
		if c.Bias {
			l.bkv = slices.Concat(w.KBias, w.VBias)
			l.bk, l.bv = l.bkv[:len(w.KBias)], l.bkv[len(w.KBias):]
		}
	} else {
		l.wk, l.wv = clone(w.K), clone(w.V)
		if c.Bias {
			l.bk, l.bv = clone(w.KBias), clone(w.VBias)
		}
	}
	l.pack()
}

// newLayer returns a layer with the resolved Config c and the options
// opts, without its weights.
func newLayer(c Config, opts []Option) (*Layer, error) {
	s := settings{backend: blas.Default(), plan: defaultPlan(c.HeadDim, c.ValueHeadDim)}
	if err := s.apply(opts); err != nil {
		return nil, err
	}
	if err := s.resolvePrecision(); err != nil {
		return nil, err
	}
	if s.precision == BF16 {
		s.plan.Precision = BF16
	}
	l := &Layer{cfg: c, backend: s.backend, plan: s.plan}
	var err error
	if l.rope, err = newRoPE(s.rope, c.HeadDim); err != nil {
		return nil, err
	}
	l.rowStep, l.colStep = s.backend.Steps()
	if l.rowStep < 1 || l.colStep < 1 {
		return nil, fmt.Errorf("%w: backend %s cuts work in steps of %d rows and %d columns, want positive ones",
			ErrConfig, s.backend.Name(), l.rowStep, l.colStep)
	}
	l.plan.Kernels = blas.Kernels(s.backend)
	return l, nil
}

// pack prepares the weights of an FP32 layer for the backend's products.
func (l *Layer) pack() {
	c, be := &l.cfg, l.backend
	nk, nv, nq := c.KVHeads*c.HeadDim, c.KVHeads*c.ValueHeadDim, c.Heads*c.HeadDim
	l.pq = be.Pack(l.wq, nq, c.QueryDim)
	l.po = be.Pack(l.wo, c.OutDim, c.Heads*c.ValueHeadDim)
	if l.wkv != nil {
		l.pkv = be.Pack(l.wkv, nk+nv, c.ContextDim)
		// The packed Wk and Wv are views of the packed [Wk; Wv] where the
		// layout has them (Wv's rows start a column step).
		if l.viewKV(nk, nv) {
			return
		}
	}
	l.pk = be.Pack(l.wk, nk, c.ContextDim)
	l.pv = be.Pack(l.wv, nv, c.ValueDim)
}

// viewKV sets the packed Wk and Wv to views of the packed [Wk; Wv] (nk and
// nv rows), and reports whether the layout has them.
func (l *Layer) viewKV(nk, nv int) bool {
	pk, okk := l.pkv.Cols(0, nk)
	pv, okv := l.pkv.Cols(nk, nv)
	if okk && okv {
		l.pk, l.pv = pk, pv
	}
	return okk && okv
}

// packBF16 packs the weights w of a BF16 layer: its products read the packed
// bf16 weights only (blas.WithBF16), so no float32 copy of them is kept, nor
// made when w reads them from a file (SafetensorsFile.Layer). The absorbed
// form's weights are made now, from w. The biases stay float32.
func (l *Layer) packBF16(w layerWeights) {
	c, be := &l.cfg, l.backend
	l.bq, l.bo = w.qBias, w.outBias
	if c.Bias {
		l.bkv = slices.Concat(w.kBias, w.vBias)
		l.bk, l.bv = l.bkv[:len(w.kBias)], l.bkv[len(w.kBias):]
	}
	l.pq = w.q.pack(be)
	l.po = w.out.pack(be)
	viewed := false
	if c.ContextDim == c.ValueDim {
		l.pkv = stackMats(w.k, w.v).pack(be)
		viewed = l.viewKV(w.k.rows, w.v.rows)
	}
	if !viewed {
		l.pk, l.pv = w.k.pack(be), w.v.pack(be)
	}
	if l.plan.Absorb {
		l.absOnce.Do(func() { l.makeAbsorbed(w.k, w.v) })
	}
}

func clone(s []float32) []float32 { return append([]float32(nil), s...) }

// Config returns the layer's configuration with every default filled in
// (the zero Config for a nil or zero Layer).
func (l *Layer) Config() Config {
	if l == nil {
		return Config{}
	}
	return l.cfg
}

// Plan returns how the layer splits its work (the zero Plan for a nil or
// zero Layer).
func (l *Layer) Plan() Plan {
	if l == nil {
		return Plan{}
	}
	return l.plan
}

// Backend returns the kernels the layer computes with (nil for a nil or
// zero Layer).
func (l *Layer) Backend() blas.Backend {
	if l == nil {
		return nil
	}
	return l.backend
}

// String reports the backend and the plan, as "openblas threads=2 tile=…".
func (l *Layer) String() string {
	if l.usable() != nil {
		return "invalid layer (not made by New)"
	}
	return l.backend.Name() + " " + l.plan.String()
}

// usable returns an error wrapping ErrConfig for a nil *Layer or one not
// made by New (the zero Layer).
func (l *Layer) usable() error {
	if l == nil {
		return fmt.Errorf("%w: nil *Layer: make one with New", ErrConfig)
	}
	if l.backend == nil {
		return fmt.Errorf("%w: zero Layer: make one with New", ErrConfig)
	}
	return nil
}

// Forward returns y = Layer(x, context) in a new slice of Batch·Tq·OutDim
// values; see [Layer.ForwardInto]. It validates the call before it
// allocates y.
func (l *Layer) Forward(x, context []float32, s Shape, m *Mask) ([]float32, error) {
	if err := l.usable(); err != nil {
		return nil, err
	}
	k, v, s, err := l.route(x, context, s)
	if err != nil {
		return nil, err
	}
	if err := l.checkCall(nil, x, k, v, s); err != nil {
		return nil, err
	}
	var ws workspace // the mask checked before y is allocated, as ForwardInto will
	var a blas.Attention
	if err := ws.setMask(&a, m, s.Batch, l.cfg.Heads, s.Tq, s.Tk); err != nil {
		return nil, err
	}
	n := s.Batch * s.Tq * l.cfg.OutDim // checked by checkCall
	if err := checkMem("the output y", float64(n)); err != nil {
		return nil, err
	}
	y := make([]float32, n)
	if err := l.forward(y, x, k, v, s, m); err != nil {
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
// y must not overlap the inputs (an error wrapping [ErrShape]); the inputs
// are only read. After the pool has warmed up to the shape, ForwardInto
// allocates nothing.
func (l *Layer) ForwardInto(y, x, context []float32, s Shape, m *Mask) error {
	if err := l.usable(); err != nil {
		return err
	}
	k, v, s, err := l.route(x, context, s)
	if err != nil {
		return err
	}
	return l.forward(y, x, k, v, s, m)
}

// route returns the key and value sources of ForwardInto's x and context,
// and s with Tk set for self-attention.
func (l *Layer) route(x, context []float32, s Shape) (k, v []float32, _ Shape, _ error) {
	c := &l.cfg
	if context == nil {
		if c.ContextDim != c.QueryDim || c.ValueDim != c.QueryDim {
			return nil, nil, s, fmt.Errorf("%w: nil context means self-attention, but QueryDim=%d, ContextDim=%d, ValueDim=%d differ",
				ErrShape, c.QueryDim, c.ContextDim, c.ValueDim)
		}
		if s.Tk != 0 && s.Tk != s.Tq {
			return nil, nil, s, fmt.Errorf("%w: self-attention with Tq=%d but Tk=%d", ErrShape, s.Tq, s.Tk)
		}
		s.Tk = s.Tq
		return x, x, s, nil
	}
	if c.ValueDim != c.ContextDim {
		return nil, nil, s, fmt.Errorf("%w: ValueDim=%d ≠ ContextDim=%d: pass keys and values to ForwardQKV",
			ErrShape, c.ValueDim, c.ContextDim)
	}
	return context, context, s, nil
}

// ForwardQKV computes the layer with queries, keys and values projected from
// three sources, like PyTorch's MultiheadAttention.forward(query, key, value):
// query is [Batch, Tq, QueryDim], key [Batch, Tk, ContextDim] and value
// [Batch, Tk, ValueDim]. y is as for [Layer.ForwardInto]. Passing the same
// slice as key and value is the plain cross-attention case.
func (l *Layer) ForwardQKV(y, query, key, value []float32, s Shape, m *Mask) error {
	if err := l.usable(); err != nil {
		return err
	}
	return l.forward(y, query, key, value, s, m)
}

// ForwardSelfDoc computes the SelfDoc routing: queries and values from x,
// keys from the context, so query i's output mixes the x rows whose context
// rows match it. It needs Tq = Tk (row j of the context pairs with row j of x)
// and a layer with ValueDim = QueryDim.
func (l *Layer) ForwardSelfDoc(y, x, context []float32, s Shape, m *Mask) error {
	if err := l.usable(); err != nil {
		return err
	}
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
	if l == nil {
		return 0
	}
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

// WorkFLOPs returns the floating-point operations that a forward pass of
// shape s through [Layer.ForwardInto] (and ForwardQKV, ForwardSelfDoc)
// actually runs: [Layer.FLOPs] when it projects the keys and values, and
// less where it runs in the absorbed form ([Layer.Absorbs]):
//
//	2·B·Tq·(Dq·H·dk + H·(dk·Dc + Tk·(Dc+Dv) + Dv·dv) + H·dv·Do)
//
// Report speed by [Layer.FLOPs], the work of the layer's function, so that
// plans compare; WorkFLOPs tells how busy the cores were.
func (l *Layer) WorkFLOPs(s Shape) float64 {
	if l == nil {
		return 0
	}
	if l.Absorbs(s) {
		return absorbedFLOPs(&l.cfg, s)
	}
	return flops(&l.cfg, s)
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

// checkCall validates the shape of a forward pass and the lengths of its
// buffers (y is not checked when nil), and that y overlaps no input.
func (l *Layer) checkCall(y, q, k, v []float32, s Shape) error {
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
		if a.data == nil && a.name == "y" {
			continue
		}
		if err := checkLen(a.name, a.data, s.Batch, a.t, a.cols); err != nil {
			return err
		}
	}
	if err := checkOverlap("y", y, "query input", q); err != nil {
		return err
	}
	if err := checkOverlap("y", y, "key input", k); err != nil {
		return err
	}
	return checkOverlap("y", y, "value input", v)
}

// forward validates a call and runs it.
func (l *Layer) forward(y, q, k, v []float32, s Shape, m *Mask) error {
	c := &l.cfg
	if y == nil {
		y = []float32{} // checked, unlike Forward's absent y
	}
	if err := l.checkCall(y, q, k, v, s); err != nil {
		return err
	}
	if err := l.finiteInputs(q, k, v, s); err != nil {
		return err
	}
	if s.Batch == 0 || s.Tq == 0 {
		return nil
	}
	p := l.getPipeline() // a pooled one: its scratch grows only once checked
	defer l.putPipeline(p)
	if err := checkMem("the call's scratch", l.scratchLen(&p.att, s)); err != nil {
		return err
	}
	if err := p.ws.setMask(&p.att, m, s.Batch, c.Heads, s.Tq, s.Tk); err != nil {
		return err
	}
	p.run(l, &call{y: y, x: q, rows: s.Batch * s.Tq, s: s, xk: k, xv: v, kvRows: s.Batch * s.Tk, kPeriod: s.Tk,
		qOff:  p.att.CausalOffset, // RoPE: the queries where the mask places them (WithRoPE)
		pairs: visiblePairs(&p.att, s)})
	return nil
}

// scratchLen estimates the float32 values of a workspace for a forward pass
// of shape s (checked): the projected queries, keys and values and the
// attention output, or the absorbed form's queries and outputs instead of
// the keys and values, and the threads' tiles (see tileScratch, which uses
// and clears the descriptor a).
func (l *Layer) scratchLen(a *blas.Attention, s Shape) float64 {
	c := &l.cfg
	rows := float64(s.Batch) * float64(s.Tq)
	h := float64(c.Heads)
	n := rows * h * float64(c.HeadDim+c.ValueHeadDim)
	if l.Absorbs(s) {
		n += rows * h * float64(c.ContextDim+c.ValueDim)
	} else {
		n += float64(s.Batch) * float64(s.Tk) * float64(c.KVHeads*(c.HeadDim+c.ValueHeadDim))
	}
	// Each thread's tiles (WithTile allows large ones), the BF16 core's
	// longer scratch included.
	return n + l.tileScratch(a, s)
}
