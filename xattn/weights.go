package xattn

import (
	"fmt"
	"math"
	"math/rand/v2"
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
			if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("%w: %s[%d] = %v", ErrWeights, x.name, i, v)
			}
		}
	}
	return nil
}
