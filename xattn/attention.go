package xattn

import (
	"fmt"
	"math"

	"github.com/xattn/xattn/blas"
)

// AttentionConfig fixes the shapes of an [Attention]: Heads and HeadDim are
// required; every other zero field takes the default it documents, as in
// [Config].
type AttentionConfig struct {
	// Heads is the number of query heads.
	Heads int
	// HeadDim is the size of a query and key head.
	HeadDim int
	// KVHeads is the number of key and value heads; each serves
	// Heads/KVHeads query heads (grouped-query attention; 1 is multi-query
	// attention). 0 means Heads.
	KVHeads int
	// ValueHeadDim is the size of a value head. 0 means HeadDim.
	ValueHeadDim int
	// Scale multiplies the scores Q·Kᵀ. 0 means 1/√HeadDim.
	Scale float32
}

// Attention is the attention core of a [Layer] on its own: for queries,
// keys and values projected already (by a fused QKV product, with LoRA
// deltas, from a cache of the caller's own), for every batch b, query head h
// (key/value head g = h/(Heads/KVHeads)) and query row i,
//
//	out[b,i,h,:] = Σ_j softmax_j(Scale·q[b,i,h,:]·k[b,j,g,:] + mask)·v[b,j,g,:]
//
// with the mask of [Mask] (key lengths, both causal alignments, sliding
// windows, ALiBi, Keep and Bias) computed as the layer computes it. It runs
// on the layer's backends, kernels, threads and tiles (the same [Option]s),
// and [Layer] runs its own core through the same code, so the two compute
// the same numbers.
//
// An Attention is immutable once built and safe for concurrent use by any
// number of goroutines; the scratch of a call comes from a pool, so a
// steady stream of calls with the same shapes allocates nothing.
type Attention struct {
	// l is a layer without weights: the configuration's attention fields,
	// the backend, the plan and the pool of pipelines.
	l *Layer
}

// NewAttention returns an attention core with the shapes of cfg. It derives
// the plan from the CPU; options override it or choose the backend, as for
// [New] ([WithAbsorb] has nothing to absorb here). [WithPrecision](BF16), or
// a backend of [blas.WithBF16], runs the BF16 core: q, k and v rounded to
// bf16 for its products, FP32 softmax and outputs, as a BF16 layer's core.
func NewAttention(cfg AttentionConfig, opts ...Option) (*Attention, error) {
	if cfg.Heads <= 0 || cfg.HeadDim <= 0 {
		return nil, fmt.Errorf("%w: Heads=%d, HeadDim=%d must be positive", ErrConfig, cfg.Heads, cfg.HeadDim)
	}
	w, ok := mul(cfg.Heads, cfg.HeadDim)
	if !ok || w > math.MaxInt32 {
		return nil, fmt.Errorf("%w: %d heads × %d features overflows", ErrConfig, cfg.Heads, cfg.HeadDim)
	}
	// The layer's resolution of the same fields: its errors name them alike.
	c, err := Config{QueryDim: w, Heads: cfg.Heads, HeadDim: cfg.HeadDim, KVHeads: cfg.KVHeads,
		ValueHeadDim: cfg.ValueHeadDim, Scale: cfg.Scale}.resolve()
	if err != nil {
		return nil, err
	}
	s := settings{backend: blas.Default(), plan: defaultPlan(c.HeadDim, c.ValueHeadDim)}
	if err := s.apply(opts); err != nil {
		return nil, err
	}
	if s.rope != nil {
		return nil, fmt.Errorf("%w: WithRoPE needs the layer's projections: rotate q and k before Attention", ErrConfig)
	}
	// WithPrecision(BF16) makes the backend a BF16 one, as New does, and a
	// backend of blas.WithBF16 makes the core BF16: Attend then runs the
	// BF16 core (every mask kind and stride, as the layer's).
	if err := s.resolvePrecision(); err != nil {
		return nil, err
	}
	if s.precision == BF16 {
		s.plan.Precision = BF16
	}
	l := &Layer{cfg: c, backend: s.backend, plan: s.plan}
	l.rowStep, l.colStep = s.backend.Steps()
	if l.rowStep < 1 || l.colStep < 1 {
		return nil, fmt.Errorf("%w: backend %s cuts work in steps of %d rows and %d columns, want positive ones",
			ErrConfig, s.backend.Name(), l.rowStep, l.colStep)
	}
	l.plan.Kernels = blas.Kernels(s.backend)
	return &Attention{l: l}, nil
}

// Config returns the configuration with every default filled in (the zero
// AttentionConfig for a nil or zero Attention).
func (a *Attention) Config() AttentionConfig {
	if a.usable() != nil {
		return AttentionConfig{}
	}
	c := &a.l.cfg
	return AttentionConfig{Heads: c.Heads, HeadDim: c.HeadDim, KVHeads: c.KVHeads, ValueHeadDim: c.ValueHeadDim, Scale: c.Scale}
}

// Plan returns how the core splits its work (the zero Plan for a nil or
// zero Attention).
func (a *Attention) Plan() Plan {
	if a.usable() != nil {
		return Plan{}
	}
	return a.l.plan
}

// String reports the backend and the plan, as [Layer.String] does.
func (a *Attention) String() string {
	if a.usable() != nil {
		return "invalid attention (not made by NewAttention)"
	}
	return a.l.String()
}

// FLOPs returns the floating-point operations of one call of shape s,
// 2·B·H·Tq·Tk·(HeadDim+ValueHeadDim), as [Layer.FLOPs] counts its core
// (masks that skip keys do not reduce it).
func (a *Attention) FLOPs(s Shape) float64 {
	if a.usable() != nil {
		return 0
	}
	return work(&a.l.cfg, 0, 0, float64(s.Batch)*float64(s.Tq)*float64(s.Tk))
}

// usable returns an error wrapping ErrConfig for a nil *Attention or one
// not made by NewAttention.
func (a *Attention) usable() error {
	if a == nil || a.l == nil {
		return fmt.Errorf("%w: nil or zero Attention: make one with NewAttention", ErrConfig)
	}
	return nil
}

// Strides are the row strides of the operands of [Attention.ForwardStrided]:
// the float32 values from one token row to the next (0: the dense width,
// Heads·HeadDim for Q, KVHeads·HeadDim for K, KVHeads·ValueHeadDim for V
// and Heads·ValueHeadDim for Out). A batch's rows follow its previous
// batch's, so batch b starts at row b·Tq (Q, Out) or b·Tk (K, V).
//
// They read common layouts in place: a fused QKV product of rows
// [q | k | v] (PyTorch's in_proj, one [B·T, (H+2·G)·dh] GEMM) is q = buf,
// k = buf[H·dh:], v = buf[(H+G)·dh:] with every stride (H+2·G)·dh; an
// output written into a wider row (heads concatenated with other features)
// sets Out.
type Strides struct {
	Q, K, V, Out int
}

// ForwardInto computes the attention of dense operands into out:
//
//	q   [Batch, Tq, Heads,   HeadDim]
//	k   [Batch, Tk, KVHeads, HeadDim]
//	v   [Batch, Tk, KVHeads, ValueHeadDim]
//	out [Batch, Tq, Heads,   ValueHeadDim]
//
// row-major, batch first; each slice must hold exactly its shape's values.
// It is [Attention.ForwardStrided] with zero Strides.
func (a *Attention) ForwardInto(out, q, k, v []float32, s Shape, m *Mask) error {
	return a.forward(out, q, k, v, s, m, Strides{}, true)
}

// ForwardStrided is [Attention.ForwardInto] over operands with row strides
// ld (see [Strides]): row t of q (t = b·Tq + i) starts at q[t·ld.Q] and
// holds Heads·HeadDim values, head h's from h·HeadDim on; likewise k, v
// (rows t = b·Tk + j) and out. Each slice must reach its last row's last
// value; values between rows are neither read nor written.
//
// The mask m is as for [Layer.ForwardInto] over Tk keys: a query at key
// position i (top-left) or i + Tk − Tq (CausalLowerRight); a row that sees
// no key gives zeros. Errors wrap [ErrShape] (shapes, strides, lengths,
// overlaps) or [ErrMask], naming the value; out must not overlap q, k or v
// (their spans from first to last value). With [WithFiniteCheck] a
// non-finite q, k or v element is an error wrapping [ErrNonFinite]. After
// the pool has warmed up to the shape, a call allocates nothing.
func (a *Attention) ForwardStrided(out, q, k, v []float32, s Shape, m *Mask, ld Strides) error {
	return a.forward(out, q, k, v, s, m, ld, false)
}

// forward validates a call and runs it; exact asks the dense slices to
// hold exactly their shapes.
func (a *Attention) forward(out, q, k, v []float32, s Shape, m *Mask, ld Strides, exact bool) error {
	if err := a.usable(); err != nil {
		return err
	}
	l := a.l
	c := &l.cfg
	op, err := a.check(out, q, k, v, s, ld, exact)
	if err != nil {
		return err
	}
	if l.plan.FiniteCheck {
		for _, x := range []struct {
			name         string
			data         []float32
			t, ld, width int
		}{
			{"q", op.q, s.Tq, op.ldq, c.Heads * c.HeadDim},
			{"k", op.k, s.Tk, op.ldk, c.KVHeads * c.HeadDim},
			{"v", op.v, s.Tk, op.ldv, c.KVHeads * c.ValueHeadDim},
		} {
			if err := finiteRows(x.name, x.data, s.Batch, x.t, x.ld, x.width); err != nil {
				return err
			}
		}
	}
	if s.Batch == 0 || s.Tq == 0 {
		return a.checkMask(m, s)
	}
	pl := l.getPipeline() // a pooled one: its scratch grows only once checked
	defer l.putPipeline(pl)
	if err := checkMem("the call's scratch", l.tileScratch(&pl.att, s)); err != nil {
		return err
	}
	if err := pl.ws.setMask(&pl.att, m, s.Batch, c.Heads, s.Tq, s.Tk); err != nil {
		return err
	}
	pl.begin(l, work(c, 0, 0, visiblePairs(&pl.att, s)))
	pl.attendCore(&op, s)
	return nil
}

// tileScratch estimates the float32 scratch values of the attention core's
// tiles for a call of shape s: each thread's, at the plan's blocks, as long
// as the backend asks (blas.Backend.ScratchLen: the BF16 core's is longer
// than the FP32 one's), at least a tile of scores. It describes the tiles
// in a, a pooled pipeline's descriptor (so that nothing escapes to the
// heap), and leaves a zero.
func (l *Layer) tileScratch(a *blas.Attention, s Shape) float64 {
	c, p := &l.cfg, &l.plan
	qb, kb := max(min(p.QBlock, s.Tq), 1), max(min(p.KVBlock, s.Tk), 1)
	*a = blas.Attention{Batch: max(s.Batch, 1), Heads: c.Heads, KVHeads: c.KVHeads, Tq: max(s.Tq, 1), Tk: max(s.Tk, 1),
		DK: c.HeadDim, DV: c.ValueHeadDim, QBlock: qb, KVBlock: kb}
	n := l.backend.ScratchLen(a)
	*a = blas.Attention{}
	tiles := float64(p.Threads) * max(float64(n), float64(qb)*float64(kb))
	// The keys and values packed once a call (pipeline.packKeys).
	if _, ok := l.backend.(blas.KeyPacker); ok {
		kv, _ := blas.PackedKeysLen(l.backend, max(s.Batch, 1)*c.KVHeads, s.Tk, c.HeadDim, c.ValueHeadDim)
		tiles += kv
	}
	return tiles
}

// check validates the shape, strides and lengths of a call and returns its
// operands.
func (a *Attention) check(out, q, k, v []float32, s Shape, ld Strides, exact bool) (operands, error) {
	c := &a.l.cfg
	if s.Batch < 0 || s.Tq < 0 || s.Tk < 0 {
		return operands{}, fmt.Errorf("%w: negative shape Batch=%d Tq=%d Tk=%d", ErrShape, s.Batch, s.Tq, s.Tk)
	}
	if s.Tq > math.MaxInt32 || s.Tk > math.MaxInt32 {
		return operands{}, fmt.Errorf("%w: Tq=%d or Tk=%d exceeds %d", ErrShape, s.Tq, s.Tk, math.MaxInt32)
	}
	op := operands{q: q, k: k, v: v, o: out}
	var err error
	if op.ldq, op.bq, err = checkOperand("q", q, ld.Q, s.Batch, s.Tq, c.Heads*c.HeadDim, exact); err != nil {
		return operands{}, err
	}
	if op.ldk, op.bk, err = checkOperand("k", k, ld.K, s.Batch, s.Tk, c.KVHeads*c.HeadDim, exact); err != nil {
		return operands{}, err
	}
	if op.ldv, op.bv, err = checkOperand("v", v, ld.V, s.Batch, s.Tk, c.KVHeads*c.ValueHeadDim, exact); err != nil {
		return operands{}, err
	}
	if op.ldo, op.bo, err = checkOperand("out", out, ld.Out, s.Batch, s.Tq, c.Heads*c.ValueHeadDim, exact); err != nil {
		return operands{}, err
	}
	if s.Tk == 0 {
		op.k, op.v = nil, nil // nothing is read
	}
	spans := func(x []float32, t, ld, width int) []float32 {
		if s.Batch == 0 || t == 0 {
			return nil
		}
		return x[:(s.Batch*t-1)*ld+width]
	}
	o := spans(out, s.Tq, op.ldo, c.Heads*c.ValueHeadDim)
	if err := checkOverlap("out", o, "q", spans(q, s.Tq, op.ldq, c.Heads*c.HeadDim)); err != nil {
		return operands{}, err
	}
	if err := checkOverlap("out", o, "k", spans(k, s.Tk, op.ldk, c.KVHeads*c.HeadDim)); err != nil {
		return operands{}, err
	}
	if err := checkOverlap("out", o, "v", spans(v, s.Tk, op.ldv, c.KVHeads*c.ValueHeadDim)); err != nil {
		return operands{}, err
	}
	return op, nil
}

// checkOperand validates operand name of a call, b batches of t rows of
// width values at row stride stride (0: width), and returns its row and
// batch strides; exact asks for exactly the dense length.
func checkOperand(name string, x []float32, stride, b, t, width int, exact bool) (ld, bs int, _ error) {
	const maxC = math.MaxInt32 // the C kernels' int
	ld = stride
	switch {
	case ld == 0:
		ld = width
	case ld < width:
		return 0, 0, fmt.Errorf("%w: Strides.%s=%d is below a row's %d values", ErrShape, strideName(name), ld, width)
	case ld > maxC:
		return 0, 0, fmt.Errorf("%w: Strides.%s=%d exceeds %d", ErrShape, strideName(name), ld, maxC)
	}
	rows, ok := mul(b, t)
	bs, ok2 := mul(t, ld)
	if !ok || !ok2 {
		return 0, 0, fmt.Errorf("%w: %s of [%d, %d] rows of stride %d overflows", ErrShape, name, b, t, ld)
	}
	need := 0
	if rows > 0 {
		n, ok := mul(rows-1, ld)
		if !ok || n > math.MaxInt-width {
			return 0, 0, fmt.Errorf("%w: %s of %d rows of stride %d overflows", ErrShape, name, rows, ld)
		}
		need = n + width
	}
	if exact && len(x) != need {
		return 0, 0, fmt.Errorf("%w: %s has %d values, want [%d, %d, %d] = %d", ErrShape, name, len(x), b, t, width, need)
	}
	if len(x) < need {
		return 0, 0, fmt.Errorf("%w: %s has %d values, want %d for [%d, %d] rows of stride %d and %d values",
			ErrShape, name, len(x), need, b, t, ld, width)
	}
	return ld, bs, nil
}

// checkMask validates m for an empty call of shape s, on a scratch
// workspace (nothing runs).
func (a *Attention) checkMask(m *Mask, s Shape) error {
	var ws workspace
	var att blas.Attention
	return ws.setMask(&att, m, s.Batch, a.l.cfg.Heads, s.Tq, s.Tk)
}

// strideName is the Strides field of operand name.
func strideName(name string) string {
	if name == "out" {
		return "Out"
	}
	return string(name[0] - 'a' + 'A')
}

// visiblePairs returns the (query, key) pairs per head an attention of
// shape s with the mask fields of a can see at most: a window bounds every
// query's keys by its length. It sizes a call's work (how many threads).
func visiblePairs(a *blas.Attention, s Shape) float64 {
	tk := s.Tk
	if a.Window > 0 {
		tk = min(tk, a.Window)
	}
	return float64(s.Batch) * float64(s.Tq) * float64(tk)
}

// finiteRows returns an error wrapping ErrNonFinite naming the first NaN or
// ±Inf of x, rows of width values at stride ld, t rows a batch, or nil.
func finiteRows(name string, x []float32, b, t, ld, width int) error {
	for r := range b * t {
		row := x[r*ld : r*ld+width]
		if i := firstNonFinite(row); i >= 0 {
			return fmt.Errorf("%w: %s[%d, %d, %d] = %v", ErrNonFinite, name, r/t, r%t, i, row[i])
		}
	}
	return nil
}
