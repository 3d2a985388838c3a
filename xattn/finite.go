package xattn

import (
	"fmt"
	"math"
)

// WithFiniteCheck makes the layer reject non-finite inputs instead of
// computing with them, for services that prefer an error to a NaN row:
// every call scans its float inputs before any other work and returns an
// error wrapping [ErrNonFinite] that names the first NaN or ±Inf element
// (which input, batch, row, column). It covers ForwardInto, ForwardQKV,
// ForwardSelfDoc, ForwardContext (the queries; the context when it is
// projected), ProjectContext, ProjectKV, ForwardStep, ForwardBatch (the
// error names the request) and AttentionMap. Weights are always checked
// ([New] rejects non-finite ones with [ErrWeights]), and so are mask biases
// (NaN or +Inf is [ErrMask]). The scan reads each input once and allocates
// nothing; it costs about as much as copying the inputs.
func WithFiniteCheck() Option {
	return func(s *settings) error {
		s.plan.FiniteCheck = true
		return nil
	}
}

// finiteInputs returns an error wrapping ErrNonFinite for the first
// non-finite element of the query, key and value inputs q, k and v of a
// call of shape s (k or v nil, or the same slice as an earlier one, is not
// scanned again), when the layer checks; nil otherwise.
func (l *Layer) finiteInputs(q, k, v []float32, s Shape) error {
	if !l.plan.FiniteCheck {
		return nil
	}
	c := &l.cfg
	if err := finite("query input", q, s.Tq, c.QueryDim); err != nil {
		return err
	}
	if k != nil && !sameStart(k, q) {
		if err := finite("key input", k, s.Tk, c.ContextDim); err != nil {
			return err
		}
	}
	if v != nil && !sameStart(v, q) && !sameStart(v, k) {
		return finite("value input", v, s.Tk, c.ValueDim)
	}
	return nil
}

// sameStart reports whether a and b are non-empty and start at the same
// element.
func sameStart(a, b []float32) bool {
	return len(a) > 0 && len(b) > 0 && &a[0] == &b[0]
}

// finite returns an error wrapping ErrNonFinite naming the first NaN or
// ±Inf of x, a [batch, t, cols] array called name, or nil.
func finite(name string, x []float32, t, cols int) error {
	i := firstNonFinite(x)
	if i < 0 {
		return nil
	}
	row := i / max(cols, 1)
	return fmt.Errorf("%w: %s[%d, %d, %d] = %v", ErrNonFinite, name, row/max(t, 1), row%max(t, 1), i%max(cols, 1), x[i])
}

// firstNonFinite returns the index of the first NaN or ±Inf of x, or −1.
// x−x is +0 for every finite x and NaN otherwise, so a block's sum of them
// is 0 exactly when the block is finite: four independent sums of 16 values
// a step, then the block that failed value by value.
func firstNonFinite(x []float32) int {
	i := 0
	for ; i+16 <= len(x); i += 16 {
		v := x[i : i+16 : i+16]
		a := (v[0] - v[0]) + (v[4] - v[4]) + (v[8] - v[8]) + (v[12] - v[12])
		b := (v[1] - v[1]) + (v[5] - v[5]) + (v[9] - v[9]) + (v[13] - v[13])
		c := (v[2] - v[2]) + (v[6] - v[6]) + (v[10] - v[10]) + (v[14] - v[14])
		d := (v[3] - v[3]) + (v[7] - v[7]) + (v[11] - v[11]) + (v[15] - v[15])
		if a+b+c+d != 0 {
			break
		}
	}
	for ; i < len(x); i++ {
		if f := float64(x[i]); math.IsNaN(f) || math.IsInf(f, 0) {
			return i
		}
	}
	return -1
}
