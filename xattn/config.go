package xattn

import (
	"fmt"
	"math"
	"math/bits"
)

// Config fixes the shapes of a layer. QueryDim, Heads and HeadDim are
// required; every other zero field takes the default it documents.
type Config struct {
	// QueryDim is the feature count of x, the query source.
	QueryDim int
	// ContextDim is the feature count of the key source (the context). 0
	// means QueryDim, as in self-attention.
	ContextDim int
	// ValueDim is the feature count of the value source. 0 means ContextDim;
	// it differs only for [Layer.ForwardQKV] (PyTorch's vdim) and
	// [Layer.ForwardSelfDoc] (values from x: ValueDim = QueryDim).
	ValueDim int
	// Heads is the number of query heads.
	Heads int
	// HeadDim is the size of a query and key head.
	HeadDim int
	// KVHeads is the number of key and value heads; each serves Heads/KVHeads
	// query heads (grouped-query attention; 1 is multi-query attention). 0
	// means Heads.
	KVHeads int
	// ValueHeadDim is the size of a value head. 0 means HeadDim.
	ValueHeadDim int
	// OutDim is the feature count of the output. 0 means QueryDim.
	OutDim int
	// Bias adds biases to the query, key and value projections. The output
	// projection always has one, as in PyTorch and diffusers.
	Bias bool
	// Scale multiplies the scores Q·Kᵀ. 0 means 1/√HeadDim.
	Scale float32
}

// resolve returns c with its defaults filled in, or an error wrapping
// ErrConfig.
func (c Config) resolve() (Config, error) {
	if c.QueryDim <= 0 || c.Heads <= 0 || c.HeadDim <= 0 {
		return c, fmt.Errorf("%w: QueryDim=%d, Heads=%d, HeadDim=%d must be positive",
			ErrConfig, c.QueryDim, c.Heads, c.HeadDim)
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"ContextDim", &c.ContextDim, c.QueryDim},
		{"ValueDim", &c.ValueDim, 0}, // after ContextDim, below
		{"KVHeads", &c.KVHeads, c.Heads},
		{"ValueHeadDim", &c.ValueHeadDim, c.HeadDim},
		{"OutDim", &c.OutDim, c.QueryDim},
	} {
		if *f.v < 0 {
			return c, fmt.Errorf("%w: %s=%d is negative", ErrConfig, f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.ValueDim == 0 {
		c.ValueDim = c.ContextDim
	}
	if c.Heads%c.KVHeads != 0 {
		return c, fmt.Errorf("%w: Heads=%d is not a multiple of KVHeads=%d", ErrConfig, c.Heads, c.KVHeads)
	}
	if c.Scale == 0 {
		c.Scale = float32(1 / math.Sqrt(float64(c.HeadDim)))
	}
	if s := float64(c.Scale); math.IsNaN(s) || math.IsInf(s, 0) {
		return c, fmt.Errorf("%w: Scale=%v is not finite", ErrConfig, c.Scale)
	}
	// Every weight matrix and every per-row width must be addressable, and
	// fit the 32-bit sizes of the C kernels.
	for _, p := range [][2]int{
		{c.Heads, c.HeadDim}, {c.Heads, c.ValueHeadDim},
		{c.KVHeads, c.HeadDim + c.ValueHeadDim},
	} {
		if n, ok := mul(p[0], p[1]); !ok || n > math.MaxInt32 {
			return c, fmt.Errorf("%w: %d heads × %d features overflows", ErrConfig, p[0], p[1])
		}
	}
	for _, d := range []int{c.QueryDim, c.ContextDim, c.ValueDim, c.OutDim} {
		if d > math.MaxInt32 {
			return c, fmt.Errorf("%w: dimension %d is too large", ErrConfig, d)
		}
	}
	for _, p := range [][2]int{
		{c.Heads * c.HeadDim, c.QueryDim}, {c.KVHeads * c.HeadDim, c.ContextDim},
		{c.KVHeads * c.ValueHeadDim, c.ValueDim}, {c.OutDim, c.Heads * c.ValueHeadDim},
	} {
		if _, ok := mul(p[0], p[1]); !ok {
			return c, fmt.Errorf("%w: weight matrix %d×%d overflows", ErrConfig, p[0], p[1])
		}
	}
	return c, nil
}

// mul returns a·b for a, b ≥ 0, and whether it fits an int.
func mul(a, b int) (int, bool) {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > math.MaxInt {
		return 0, false
	}
	return int(lo), true
}

// mul3 returns a·b·c for a, b, c ≥ 0, and whether it fits an int.
func mul3(a, b, c int) (int, bool) {
	ab, ok := mul(a, b)
	if !ok {
		return 0, false
	}
	return mul(ab, c)
}

// String reports the shape of c in one line.
func (c Config) String() string {
	r, err := c.resolve()
	if err != nil {
		return fmt.Sprintf("invalid config (%v)", err)
	}
	s := fmt.Sprintf("query=%d context=%d value=%d heads=%d/%d dk=%d dv=%d out=%d bias=%t scale=%.4g",
		r.QueryDim, r.ContextDim, r.ValueDim, r.Heads, r.KVHeads, r.HeadDim, r.ValueHeadDim, r.OutDim, r.Bias, r.Scale)
	return s
}
