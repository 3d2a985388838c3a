package xattn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"unsafe"

	"github.com/xattn/xattn/blas"
)

// FiLMConfig fixes the shapes of a [FiLM] layer. Dim and CondDim are
// required; the zero value is invalid.
type FiLMConfig struct {
	// Dim is the feature count of x and y, and of γ and β.
	Dim int
	// CondDim is the feature count of the conditioning vector c.
	CondDim int
	// Bias adds biases to the γ and β projections (PyTorch's nn.Linear has
	// them by default; set Bias to load such weights).
	Bias bool
	// GammaPlusOne makes the scale 1 + (Wγ·c + bγ) instead of Wγ·c + bγ:
	// the scale-shift form of diffusers (ResnetBlock2D with
	// time_embedding_norm="scale_shift", AdaLayerNorm) and of DiT's adaLN,
	// under which a projection near zero leaves x unchanged.
	GammaPlusOne bool
}

// resolve returns c, or an error wrapping ErrConfig.
func (c FiLMConfig) resolve() (FiLMConfig, error) {
	if c.Dim <= 0 || c.CondDim <= 0 {
		return c, fmt.Errorf("%w: FiLM Dim=%d, CondDim=%d must be positive", ErrConfig, c.Dim, c.CondDim)
	}
	// γ and β are the 2·Dim columns of one product from CondDim features:
	// both fit the 32-bit sizes of the C kernels, and [Wγ; Wβ] an int.
	if c.Dim > math.MaxInt32/2 || c.CondDim > math.MaxInt32 {
		return c, fmt.Errorf("%w: FiLM Dim=%d or CondDim=%d is too large", ErrConfig, c.Dim, c.CondDim)
	}
	if _, ok := mul(2*c.Dim, c.CondDim); !ok {
		return c, fmt.Errorf("%w: FiLM weight matrix %d×%d overflows", ErrConfig, 2*c.Dim, c.CondDim)
	}
	return c, nil
}

// String reports the shape of c in one line.
func (c FiLMConfig) String() string {
	if _, err := c.resolve(); err != nil {
		return fmt.Sprintf("invalid config (%v)", err)
	}
	return fmt.Sprintf("dim=%d cond=%d bias=%t gamma+1=%t", c.Dim, c.CondDim, c.Bias, c.GammaPlusOne)
}

// FiLMWeights holds the parameters of a [FiLM] layer in PyTorch's nn.Linear
// layout (out × in, applied as c·Wᵀ + b):
//
//	Gamma  [Dim, CondDim]   GammaBias  [Dim]
//	Beta   [Dim, CondDim]   BetaBias   [Dim]
//
// GammaBias and BetaBias are used only when FiLMConfig.Bias is set and must
// be nil otherwise.
//
// Most PyTorch code computes γ and β with one nn.Linear(CondDim, 2·Dim) and
// splits its output in two: its weight is [Gamma; Beta] stacked, so Gamma is
// the first Dim·CondDim values and Beta the rest (likewise the bias), when
// the scale comes first (diffusers' `scale, shift = emb.chunk(2)`); swap the
// halves when the shift comes first (DiT's `shift, scale`).
type FiLMWeights struct {
	Gamma, Beta         []float32
	GammaBias, BetaBias []float32
}

// NewFiLMWeights returns weights for cfg drawn, reproducibly from seed, from
// PyTorch's default nn.Linear initialisation, as [NewWeights] does: every
// weight and bias uniform in [−1/√CondDim, 1/√CondDim].
func NewFiLMWeights(cfg FiLMConfig, seed uint64) (*FiLMWeights, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x66696c6d)) // "film"
	bound := 1 / math.Sqrt(float64(c.CondDim))
	fill := func(n int) []float32 {
		w := make([]float32, n)
		for i := range w {
			w[i] = float32((2*rng.Float64() - 1) * bound)
		}
		return w
	}
	w := &FiLMWeights{Gamma: fill(c.Dim * c.CondDim), Beta: fill(c.Dim * c.CondDim)}
	if c.Bias {
		w.GammaBias, w.BetaBias = fill(c.Dim), fill(c.Dim)
	}
	return w, nil
}

// check returns an error wrapping ErrWeights unless w fits the resolved c.
func (w *FiLMWeights) check(c FiLMConfig) error {
	if w == nil {
		return fmt.Errorf("%w: nil FiLM weights", ErrWeights)
	}
	return checkParts("FiLMConfig.Bias", []weightPart{
		{"Gamma", w.Gamma, c.Dim, c.CondDim, true},
		{"Beta", w.Beta, c.Dim, c.CondDim, true},
		{"GammaBias", w.GammaBias, c.Dim, 1, c.Bias},
		{"BetaBias", w.BetaBias, c.Dim, 1, c.Bias},
	})
}

// FiLM is a feature-wise linear modulation layer (Perez et al., 2018): a
// conditioning vector per sequence scales and shifts every feature of every
// token of that sequence,
//
//	γ_b = Wγ·c_b + bγ          (1 + Wγ·c_b + bγ with GammaPlusOne)
//	β_b = Wβ·c_b + bβ
//	y[b,t,:] = γ_b ⊙ x[b,t,:] + β_b
//
// for x [Batch, T, Dim], c [Batch, CondDim] and y [Batch, T, Dim]. Its cost
// is linear in T, where cross-attention's is T times the context length.
// Conditioning per token (c [Batch, T, CondDim]) is the same layer called
// with Batch·T sequences of one token each. A nonlinearity applied to c
// first (diffusers' SiLU before the projection) is the caller's.
//
// γ and β of all sequences are one product c·[Wγ; Wβ]ᵀ on the layer's
// backend (in BF16 for a BF16 FiLM); the modulation is a pass in Go over
// x. A FiLM is immutable once built and safe for concurrent use by any
// number of goroutines; the scratch of a call comes from a pool, so a
// steady stream of calls with the same shapes allocates nothing.
type FiLM struct {
	cfg     FiLMConfig
	backend blas.Backend
	plan    Plan

	// w is [Wγ; Wβ], 2·Dim × CondDim; b is [bγ; bβ] with the 1 of
	// GammaPlusOne folded into bγ, or nil when both are zero.
	w, b []float32
	// pw is w packed in bf16 for a BF16 FiLM (w is then nil), whose column
	// blocks start on multiples of colStep (the backend's panels).
	pw      blas.Packed
	colStep int

	free freeList[filmScratch] // the scratch of finished calls
}

// filmSerialFLOPs is FiLM's default for [WithSerialFLOPs]: about 64K
// modulated values, 30–60 µs of a memory-bound pass, below which a hand-off
// to workers costs more than it saves.
const filmSerialFLOPs = 1 << 17

// NewFiLM returns a FiLM layer with the shapes of cfg and a copy of the
// weights w, in the layout documented on [FiLMWeights]. [WithBackend],
// [WithThreads] and [WithSerialFLOPs] apply as for [New] (the serial
// threshold defaults to about 0.13 MFLOP here: the modulation is bound by
// memory, not arithmetic); [WithTile] has no meaning for FiLM and is an
// error wrapping ErrConfig. [WithPrecision](BF16), or a BF16 backend, makes
// a BF16 FiLM: [Wγ; Wβ] packed in bf16 only (half the memory), the
// conditioning rounded to bf16 on its way into the product, FP32 sums, γ,
// β and modulation.
func NewFiLM(cfg FiLMConfig, w *FiLMWeights, opts ...Option) (*FiLM, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if err := w.check(c); err != nil {
		return nil, err
	}
	s := settings{backend: blas.Default(), plan: defaultPlan(1, 1)}
	s.plan.QBlock, s.plan.KVBlock = 0, 0
	s.plan.SerialFLOPs = filmSerialFLOPs
	if err := s.apply(opts); err != nil {
		return nil, err
	}
	if s.rope != nil {
		return nil, fmt.Errorf("%w: WithRoPE does not apply to FiLM", ErrConfig)
	}
	if s.plan.QBlock != 0 || s.plan.KVBlock != 0 {
		return nil, fmt.Errorf("%w: WithTile(%d, %d) does not apply to FiLM", ErrConfig, s.plan.QBlock, s.plan.KVBlock)
	}
	if err := s.resolvePrecision(); err != nil {
		return nil, err
	}
	f := &FiLM{cfg: c, backend: s.backend, plan: s.plan}
	f.w = slices.Concat(w.Gamma, w.Beta) // one allocation
	if s.precision == BF16 {
		// The projection reads the weights packed in bf16 only (half the
		// memory of FP32: its products are a few rows against 2·Dim
		// weights, bound by reading them); the FP32 copy goes.
		f.plan.Precision = BF16
		f.pw = s.backend.Pack(f.w, 2*c.Dim, c.CondDim)
		f.w = nil
		_, f.colStep = s.backend.Steps()
	}
	if c.Bias || c.GammaPlusOne {
		f.b = make([]float32, 2*c.Dim)
		if c.Bias {
			copy(f.b, w.GammaBias)
			copy(f.b[c.Dim:], w.BetaBias)
		}
		if c.GammaPlusOne {
			for i := range c.Dim {
				f.b[i]++
			}
		}
	}
	return f, nil
}

// Config returns the layer's configuration (the zero FiLMConfig for a nil
// or zero FiLM).
func (f *FiLM) Config() FiLMConfig {
	if f == nil {
		return FiLMConfig{}
	}
	return f.cfg
}

// Plan returns how the layer splits its work; QBlock and KVBlock are 0 (the
// zero Plan for a nil or zero FiLM).
func (f *FiLM) Plan() Plan {
	if f == nil {
		return Plan{}
	}
	return f.plan
}

// Backend returns the kernels the layer computes γ and β with (nil for a
// nil or zero FiLM).
func (f *FiLM) Backend() blas.Backend {
	if f == nil {
		return nil
	}
	return f.backend
}

// usable returns an error wrapping ErrConfig for a nil *FiLM or one not
// made by NewFiLM (the zero FiLM, whose methods return such errors or zero
// values, never panic).
func (f *FiLM) usable() error {
	if f == nil {
		return fmt.Errorf("%w: nil *FiLM: make one with NewFiLM", ErrConfig)
	}
	if f.backend == nil {
		return fmt.Errorf("%w: zero FiLM: make one with NewFiLM", ErrConfig)
	}
	return nil
}

// String reports the backend and the plan, as "openblas threads=2 serial<0.131MFLOP".
func (f *FiLM) String() string {
	if f.usable() != nil {
		return "invalid FiLM (not made by NewFiLM)"
	}
	return fmt.Sprintf("%s threads=%d serial<%.3gMFLOP", f.backend.Name(), f.plan.Threads, f.plan.SerialFLOPs/1e6)
}

// FLOPs returns the floating-point operations of one call on batch
// sequences of t tokens, 2 per multiply-add (bias additions not counted):
//
//	2·batch·(2·Dim)·CondDim + 2·batch·t·Dim
func (f *FiLM) FLOPs(batch, t int) float64 {
	if f == nil {
		return 0
	}
	return filmFLOPs(&f.cfg, batch, t)
}

// Forward returns FiLM(x, cond) in a new slice of batch·t·Dim values; see
// [FiLM.ForwardInto]. It validates the call before it allocates the result.
func (f *FiLM) Forward(x, cond []float32, batch, t int) ([]float32, error) {
	if err := f.usable(); err != nil {
		return nil, err
	}
	if err := f.checkCall(nil, x, cond, batch, t); err != nil {
		return nil, err
	}
	y := make([]float32, len(x))
	if err := f.ForwardInto(y, x, cond, batch, t); err != nil {
		return nil, err
	}
	return y, nil
}

// ForwardInto computes y = FiLM(x, cond) into y. x and y hold exactly
// batch·t·Dim values ([batch, t, Dim]); cond holds batch·CondDim values, one
// conditioning vector per sequence.
//
// y may be x itself, to modulate in place: ForwardInto(x, x, cond, …).
// Otherwise y must not overlap x or cond (an error wrapping [ErrShape]), and
// x is only read; cond always is. Weights are checked finite by [NewFiLM], so y is finite whenever x and
// cond are (short of float32 overflow). After the pool has warmed up to the
// shape, ForwardInto allocates nothing.
func (f *FiLM) ForwardInto(y, x, cond []float32, batch, t int) error {
	if err := f.usable(); err != nil {
		return err
	}
	if y == nil {
		y = []float32{} // checked, unlike Forward's absent y
	}
	if err := f.checkCall(y, x, cond, batch, t); err != nil {
		return err
	}
	if batch == 0 || t == 0 {
		return nil
	}
	ws := f.getScratch()
	defer f.putScratch(ws)
	ws.run(f, y, x, cond, batch, t)
	return nil
}

// checkCall validates a call's shape and lengths (y's unless nil), and that y
// is x or does not overlap it, and does not overlap cond.
func (f *FiLM) checkCall(y, x, cond []float32, batch, t int) error {
	c := &f.cfg
	if err := f.checkShape(batch, t); err != nil {
		return err
	}
	if y != nil {
		if err := checkLen("y", y, batch, t, c.Dim); err != nil {
			return err
		}
	}
	if err := checkLen("x", x, batch, t, c.Dim); err != nil {
		return err
	}
	if len(cond) != batch*c.CondDim {
		hint := ""
		if t > 1 && len(cond) == batch*t*c.CondDim {
			hint = fmt.Sprintf(" (one vector per sequence; per token, call with batch=%d, t=1)", batch*t)
		}
		return fmt.Errorf("%w: cond has %d values, want [%d, %d] = %d%s",
			ErrShape, len(cond), batch, c.CondDim, batch*c.CondDim, hint)
	}
	if len(y) > 0 && unsafe.SliceData(y) != unsafe.SliceData(x) {
		if err := checkOverlap("y", y, "input x", x); err != nil {
			return err
		}
	}
	return checkOverlap("y", y, "conditioning input cond", cond)
}

// checkShape validates batch and t: γ and β are a product of batch rows (a
// C int), and x must be addressable.
func (f *FiLM) checkShape(batch, t int) error {
	if batch < 0 || t < 0 {
		return fmt.Errorf("%w: negative FiLM shape batch=%d t=%d", ErrShape, batch, t)
	}
	if batch > math.MaxInt32 {
		return fmt.Errorf("%w: FiLM batch=%d is too large", ErrShape, batch)
	}
	if _, ok := mul3(batch, t, f.cfg.Dim); !ok {
		return fmt.Errorf("%w: [%d, %d, %d] overflows", ErrShape, batch, t, f.cfg.Dim)
	}
	return nil
}

// filmScratch is the scratch of one FiLM call: γ and β of every sequence
// and the descriptors handed to the backend. It lives in the layer's pool and
// grows to the largest batch seen.
type filmScratch struct {
	gb      []float32    // [batch, 2·Dim]: γ_b then β_b
	batches []blas.Batch // one per worker slot, so no descriptor escapes per call
	job     job

	// Per call.
	f                *FiLM
	y, x, cond       []float32
	batch, t         int
	phase            int
	colStep, rowStep int
}

const (
	filmPhaseProject = iota
	filmPhaseModulate
)

// Work split, so that each item outweighs its hand-off: a column block of
// the projection has at least filmMinCols of the 2·Dim outputs, a row block
// of the modulation at least filmMinChunk values. (The projection reads
// the weights unpacked: no layout constrains the cut.)
const (
	filmMinCols  = 64
	filmMinChunk = 1 << 13
)

func (f *FiLM) getScratch() *filmScratch { return f.free.get() }

func (f *FiLM) putScratch(ws *filmScratch) {
	// Drop every reference to caller memory before pooling.
	clear(ws.batches[:cap(ws.batches)])
	ws.f, ws.y, ws.x, ws.cond = nil, nil, nil, nil
	used, held := 4*len(ws.gb), 4*cap(ws.gb)
	ws.gb = ws.gb[:0]
	f.free.put(ws, used, held)
}

// run computes one validated call with batch, t > 0: the projection of cond
// split by columns, then the modulation split by rows, each phase on the
// plan's threads when its work is above the serial threshold.
func (ws *filmScratch) run(f *FiLM, y, x, cond []float32, batch, t int) {
	d := f.cfg.Dim
	n := 2 * d
	threads := f.plan.Threads
	ws.f, ws.y, ws.x, ws.cond, ws.batch, ws.t = f, y, x, cond, batch, t
	ws.gb = grow(ws.gb, batch*n)
	ws.batches = grow(ws.batches, threads)

	// Phase 1: [γ | β] = cond·[Wγ; Wβ]ᵀ + [bγ; bβ], batch × 2·Dim.
	ws.colStep = n
	helpers := 0
	if threads > 1 && 2*float64(batch)*float64(n)*float64(f.cfg.CondDim) >= f.plan.SerialFLOPs {
		ws.colStep = max(filmMinCols, ceilDiv(ceilDiv(n, 2*threads), 16)*16)
		if cs := f.colStep; cs > 0 {
			ws.colStep = ceilDiv(ws.colStep, cs) * cs // a BF16 block starts a panel
		}
		helpers = threads - 1
	}
	ws.phase = filmPhaseProject
	ws.job.run(ws, ceilDiv(n, ws.colStep), helpers)

	// Phase 2: y = γ ⊙ x + β, row by row.
	rows := batch * t
	ws.rowStep = rows
	helpers = 0
	if threads > 1 && 2*float64(rows)*float64(d) >= f.plan.SerialFLOPs {
		ws.rowStep = max(ceilDiv(filmMinChunk, d), ceilDiv(rows, 4*threads))
		helpers = threads - 1
	}
	ws.phase = filmPhaseModulate
	ws.job.run(ws, ceilDiv(rows, ws.rowStep), helpers)
}

// runItem runs item i of the current phase on worker slot.
func (ws *filmScratch) runItem(slot, i int) {
	f := ws.f
	d, k := f.cfg.Dim, f.cfg.CondDim
	n := 2 * d
	switch ws.phase {
	case filmPhaseProject:
		n0 := i * ws.colStep
		n1 := min(n0+ws.colStep, n)
		bt := &ws.batches[slot]
		*bt = blas.Batch{
			Count: 1, M: ws.batch, N: n1 - n0, K: k, TransB: true, Alpha: 1,
			A: ws.cond, LDA: k, LDB: k,
			C: ws.gb[n0:], LDC: n,
		}
		if f.w != nil {
			bt.B = f.w[n0*k:]
		} else {
			bt.Packed, _ = f.pw.Cols(n0, n1-n0) // colStep keeps n0 on a panel
		}
		if f.b != nil {
			bt.Bias = f.b[n0:n1]
		}
		f.backend.Sgemm(bt)
	case filmPhaseModulate:
		r0 := i * ws.rowStep
		r1 := min(r0+ws.rowStep, ws.batch*ws.t)
		b, tok := r0/ws.t, r0%ws.t
		for r := r0; r < r1; r++ {
			gb := ws.gb[b*n : (b+1)*n]
			modulate(ws.y[r*d:(r+1)*d], ws.x[r*d:(r+1)*d], gb[:d], gb[d:])
			if tok++; tok == ws.t {
				b, tok = b+1, 0
			}
		}
	}
}

// modulate sets y[i] = g[i]·x[i] + b[i] for every i < len(x). y may be x.
func modulate(y, x, g, b []float32) {
	n := len(x)
	y, g, b = y[:n], g[:n], b[:n]
	for i, v := range x {
		y[i] = g[i]*v + b[i]
	}
}
