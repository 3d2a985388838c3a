package xattn

import (
	"fmt"
	"math"
)

// RoPE describes rotary position embeddings (RoFormer; Llama, Mistral,
// Qwen, GPT-NeoX, GPT-J): the query and key heads are rotated by their
// absolute positions after the projections (biases included) and before the
// scores, so that a score depends on the distance between its query and key.
// For a head x of HeadDim values at position p, pair k = 0 … Dims/2−1 of
// the first Dims values is rotated by the angle p·Base^(−2k/Dims):
//
//	(a, b) ← (a·cos θ − b·sin θ, b·cos θ + a·sin θ)
//
// with a, b = x[k], x[k+Dims/2] (half-split, HF Llama's rotate_half and
// GPT-NeoX's) or x[2k], x[2k+1] (Interleaved: GPT-J, RoFormer, Meta's
// complex-number Llama). Values past Dims are not rotated (GPT-NeoX's
// rotary_pct, Phi's partial_rotary_factor).
type RoPE struct {
	// Base of the frequencies; 0 means 10000.
	Base float64
	// Dims is the number of rotated values of a head, even; 0 means HeadDim
	// (HeadDim−1 when HeadDim is odd).
	Dims int
	// Interleaved pairs adjacent values instead of the two halves.
	Interleaved bool
}

// WithRoPE rotates the queries and keys of the layer by their positions
// ([RoPE]). Positions count from 0 at the first query and the first key of
// a sequence in [Layer.ForwardInto], ForwardQKV and ForwardSelfDoc (self
// attention over Tq = Tk positions) and for the keys of
// [Layer.ProjectContext] and ProjectKV; the queries of
// [Layer.ForwardContext] count from 0 too. In [Layer.ForwardStep] the new
// queries and keys sit at their cache positions KVCache.Len()+i, and the
// cache holds rotated keys. The absorbed and fused forms are not used with
// it (the rotation sits between the projection and the scores), and
// [Layer.ForwardBatch] and the attention maps return an error wrapping
// [ErrConfig]. Base must be positive and finite (or 0), Dims even, at most
// HeadDim (New checks), or New returns an error wrapping ErrConfig.
func WithRoPE(r RoPE) Option {
	return func(s *settings) error {
		if r.Base < 0 || math.IsNaN(r.Base) || math.IsInf(r.Base, 0) {
			return fmt.Errorf("%w: RoPE Base=%v must be positive and finite", ErrConfig, r.Base)
		}
		if r.Dims < 0 || r.Dims%2 != 0 {
			return fmt.Errorf("%w: RoPE Dims=%d must be even and not negative", ErrConfig, r.Dims)
		}
		if r.Base == 0 {
			r.Base = 10000
		}
		s.rope = &r
		return nil
	}
}

// rope is a layer's rotation: the frequency of each pair, for a head of
// dims rotated values.
type rope struct {
	freq        []float64 // Base^(−2k/Dims), k < Dims/2
	dims        int
	interleaved bool
}

// newRoPE resolves r for heads of dh values.
func newRoPE(r *RoPE, dh int) (*rope, error) {
	if r == nil {
		return nil, nil
	}
	d := r.Dims
	if d == 0 {
		d = dh - dh%2
	}
	if d > dh {
		return nil, fmt.Errorf("%w: RoPE Dims=%d exceeds HeadDim=%d", ErrConfig, r.Dims, dh)
	}
	rp := &rope{freq: make([]float64, d/2), dims: d, interleaved: r.Interleaved}
	for k := range rp.freq {
		rp.freq[k] = math.Pow(r.Base, -2*float64(k)/float64(d))
	}
	return rp, nil
}

// ropeRows are rows to rotate: rows of heads heads of dh values at stride
// ld, row r at position off + r%period.
type ropeRows struct {
	x           []float32
	rows, ld    int
	heads       int
	period, off int
}

// table fills t (grown) with cos θ, sin θ of positions [p0, p1) and every
// pair: entry (p−p0)·dims + 2k, +1.
func (rp *rope) table(t []float32, p0, p1 int) []float32 {
	half := rp.dims / 2
	t = grow(t, (p1-p0)*2*half)
	for p := p0; p < p1; p++ {
		row := t[(p-p0)*2*half:][:2*half]
		for k, f := range rp.freq {
			s, c := math.Sincos(float64(p) * f)
			row[2*k], row[2*k+1] = float32(c), float32(s)
		}
	}
	return t
}

// rotate rotates the heads of the rows of x in place, with the table of
// positions from p0 on (table).
func (rp *rope) rotate(x *ropeRows, dh int, t []float32, p0 int) {
	half := rp.dims / 2
	for r := range x.rows {
		cs := t[(x.off+r%x.period-p0)*2*half:][:2*half]
		row := x.x[r*x.ld:]
		for h := range x.heads {
			v := row[h*dh : h*dh+rp.dims]
			if rp.interleaved {
				for k := range half {
					c, s := cs[2*k], cs[2*k+1]
					a, b := v[2*k], v[2*k+1]
					v[2*k], v[2*k+1] = a*c-b*s, b*c+a*s
				}
				continue
			}
			lo, hi := v[:half], v[half:]
			for k := range half {
				c, s := cs[2*k], cs[2*k+1]
				a, b := lo[k], hi[k]
				lo[k], hi[k] = a*c-b*s, b*c+a*s
			}
		}
	}
}
