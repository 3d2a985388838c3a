package xattn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/xattn/xattn/blas"
)

// Weights holds the parameters of a layer in PyTorch's nn.Linear layout: a
// projection from n to m features is an m×n row-major matrix W (out × in),
// applied as y = x·Wᵀ + b. Loaded PyTorch or diffusers weights are used as
// they are, without transposing.
//
//	Q       [Heads·HeadDim,          QueryDim]     QBias   [Heads·HeadDim]
//	K       [KVHeads·HeadDim,        ContextDim]   KBias   [KVHeads·HeadDim]
//	V       [KVHeads·ValueHeadDim,   ValueDim]     VBias   [KVHeads·ValueHeadDim]
//	Out     [OutDim, Heads·ValueHeadDim]           OutBias [OutDim]
//
// Head h owns rows h·HeadDim … (h+1)·HeadDim−1 of Q (likewise K and V), and
// columns h·ValueHeadDim … of Out. QBias, KBias and VBias are used only when
// Config.Bias is set and must be nil otherwise. A nil OutBias means no output
// bias (zero), as PyTorch's bias=False.
type Weights struct {
	Q, K, V, Out                 []float32
	QBias, KBias, VBias, OutBias []float32
}

// NewWeights returns weights for cfg drawn, reproducibly from seed, from the
// distribution of PyTorch's default nn.Linear initialisation: every weight and
// bias of a projection from n features uniform in [−1/√n, 1/√n]
// (kaiming_uniform with a = √5). The values differ from PyTorch's own random
// stream; the distribution is the same.
func NewWeights(cfg Config, seed uint64) (*Weights, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x78617474)) // "xatt"
	fill := func(n, fanIn int) []float32 {
		bound := 1 / math.Sqrt(float64(fanIn))
		w := make([]float32, n)
		for i := range w {
			w[i] = float32((2*rng.Float64() - 1) * bound)
		}
		return w
	}
	hq, hk, hv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.KVHeads*c.ValueHeadDim
	w := &Weights{
		Q:   fill(hq*c.QueryDim, c.QueryDim),
		K:   fill(hk*c.ContextDim, c.ContextDim),
		V:   fill(hv*c.ValueDim, c.ValueDim),
		Out: fill(c.OutDim*c.Heads*c.ValueHeadDim, c.Heads*c.ValueHeadDim),
	}
	if c.Bias {
		w.QBias = fill(hq, c.QueryDim)
		w.KBias = fill(hk, c.ContextDim)
		w.VBias = fill(hv, c.ValueDim)
	}
	w.OutBias = fill(c.OutDim, c.Heads*c.ValueHeadDim)
	return w, nil
}

// check returns an error wrapping ErrWeights unless w fits the resolved c.
func (w *Weights) check(c Config) error {
	if w == nil {
		return fmt.Errorf("%w: nil weights", ErrWeights)
	}
	hq, hk, hv, ho := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.KVHeads*c.ValueHeadDim, c.Heads*c.ValueHeadDim
	return checkParts("Config.Bias", []weightPart{
		{"Q", w.Q, hq, c.QueryDim, true},
		{"K", w.K, hk, c.ContextDim, true},
		{"V", w.V, hv, c.ValueDim, true},
		{"Out", w.Out, c.OutDim, ho, true},
		{"QBias", w.QBias, hq, 1, c.Bias},
		{"KBias", w.KBias, hk, 1, c.Bias},
		{"VBias", w.VBias, hv, 1, c.Bias},
		{"OutBias", w.OutBias, c.OutDim, 1, w.OutBias != nil}, // nil: no output bias
	})
}

// weightPart is one matrix (rows×cols) or bias vector (cols = 1) of a set of
// weights, used unless use is false.
type weightPart struct {
	name       string
	data       []float32
	rows, cols int
	use        bool
}

// checkParts returns an error wrapping ErrWeights for the first part that is
// given though unused (flag names the setting that would use it), has the
// wrong length, or holds a NaN or an infinity.
func checkParts(flag string, parts []weightPart) error {
	for _, x := range parts {
		if !x.use {
			if x.data != nil {
				return fmt.Errorf("%w: %s given but %s is false", ErrWeights, x.name, flag)
			}
			continue
		}
		if len(x.data) != x.rows*x.cols {
			return fmt.Errorf("%w: %s has %d values, want %d×%d = %d",
				ErrWeights, x.name, len(x.data), x.rows, x.cols, x.rows*x.cols)
		}
		for i, v := range x.data {
			if err := finiteWeight(x.name, i, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// finiteWeight returns an error wrapping ErrWeights if v, value i of the
// part called name, is a NaN or an infinity.
func finiteWeight(name string, i int, v float32) error {
	if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("%w: %s[%d] = %v", ErrWeights, name, i, v)
	}
	return nil
}

// weightMat is one weight matrix of a layer, rows×cols in the layout of
// [Weights], as a BF16 layer packs it: float32 values, or values read one at
// a time from a file's tensor (SafetensorsFile.Layer), which are never
// copied to float32 as a whole.
type weightMat struct {
	rows, cols int
	f32        []float32           // the rows·cols values, unless at is set
	at         func(i int) float32 // value i (row i/cols), for values from a file
}

// elem returns the value in row r, column c.
func (m weightMat) elem(r, c int) float32 {
	if m.at != nil {
		return m.at(r*m.cols + c)
	}
	return m.f32[r*m.cols+c]
}

// slice returns rows [r0, r0+n) of m.
func (m weightMat) slice(r0, n int) weightMat {
	if m.at == nil {
		return weightMat{rows: n, cols: m.cols, f32: m.f32[r0*m.cols:][:n*m.cols]}
	}
	at, off := m.at, r0*m.cols
	return weightMat{rows: n, cols: m.cols, at: func(i int) float32 { return at(off + i) }}
}

// stackMats returns [a; b], a's rows then b's, of matrices with the same
// columns: for float32 values a new slice (one allocation), else a view.
func stackMats(a, b weightMat) weightMat {
	if a.at == nil && b.at == nil {
		return weightMat{rows: a.rows + b.rows, cols: a.cols, f32: slices.Concat(a.f32, b.f32)}
	}
	n := a.rows * a.cols
	return weightMat{rows: a.rows + b.rows, cols: a.cols, at: func(i int) float32 {
		if i < n {
			return a.elem(0, i)
		}
		return b.elem(0, i-n)
	}}
}

// pack returns m packed by be (blas.Backend.Pack), which must be a BF16
// backend for values from a file: only its packed weights replace them
// (blas.PackFunc).
func (m weightMat) pack(be blas.Backend) blas.Packed {
	if m.at == nil {
		return be.Pack(m.f32, m.rows, m.cols)
	}
	p, ok := blas.PackFunc(be, m.rows, m.cols, func(r, c int) float32 { return m.elem(r, c) })
	if !ok {
		panic("xattn: weights from a file packed for the float32 backend " + blas.Kernels(be))
	}
	return p
}

// layerWeights are the weights a BF16 layer packs (Layer.packBF16): the
// matrices as weightMats, the biases as float32 values of the layer's own
// (nil where Config.Bias is false; a nil outBias is no output bias).
type layerWeights struct {
	q, k, v, out                 weightMat
	qBias, kBias, vBias, outBias []float32
}

// mats returns w, checked against the resolved c, as layerWeights: the
// matrices read from w, the biases copied (see packBF16).
func (w *Weights) mats(c *Config) layerWeights {
	hq, hk, hv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.KVHeads*c.ValueHeadDim
	lw := layerWeights{
		q:   weightMat{rows: hq, cols: c.QueryDim, f32: w.Q},
		k:   weightMat{rows: hk, cols: c.ContextDim, f32: w.K},
		v:   weightMat{rows: hv, cols: c.ValueDim, f32: w.V},
		out: weightMat{rows: c.OutDim, cols: c.Heads * c.ValueHeadDim, f32: w.Out},
	}
	if w.OutBias != nil {
		lw.outBias = clone(w.OutBias)
	}
	if c.Bias {
		// packBF16 copies the key and value biases into the stacked [bk; bv].
		lw.qBias, lw.kBias, lw.vBias = clone(w.QBias), w.KBias, w.VBias
	}
	return lw
}

// check returns an error wrapping ErrWeights for the first NaN or infinity
// in w, named as [Weights] names its parts; the sizes are right by
// construction (SafetensorsFile.Layer).
func (w *layerWeights) check() error {
	for _, m := range [...]struct {
		name string
		m    weightMat
	}{{"Q", w.q}, {"K", w.k}, {"V", w.v}, {"Out", w.out}} {
		for i := range m.m.rows * m.m.cols {
			if err := finiteWeight(m.name, i, m.m.elem(0, i)); err != nil {
				return err
			}
		}
	}
	vec := func(name string, v []float32) weightPart {
		return weightPart{name, v, len(v), 1, v != nil}
	}
	return checkParts("Config.Bias", []weightPart{
		vec("QBias", w.qBias), vec("KBias", w.kBias), vec("VBias", w.vBias), vec("OutBias", w.outBias),
	})
}
