package xattn

import (
	"fmt"
	"math"

	"github.com/xattn/xattn/blas"
)

// Mask chooses which keys each query attends to. Its parts combine: a key is
// seen only if every part present allows it. A nil *Mask, or the zero Mask,
// masks nothing. No part is ever expanded to a [B, Heads, Tq, Tk] array.
//
// A query row that sees no key at all (every key masked, or a key length of
// 0) gets an attention output of exactly 0 before the output projection, so
// its y row equals the output bias. This is what PyTorch's CPU flash kernel
// and ggml do; PyTorch's math path returns NaN there instead. No part of a
// Mask ever makes NaN.
type Mask struct {
	// KeyLen, if not nil, holds one key length per batch element: batch b
	// sees keys 0 … KeyLen[b]−1 only (key padding). 0 ≤ KeyLen[b] ≤ Tk. The
	// masked keys cost nothing: they are never read.
	KeyLen []int
	// Causal lets query i see keys j ≤ i only (top-left aligned, PyTorch's
	// is_causal). Blocks above the diagonal are skipped, not computed.
	Causal bool
	// Keep, if not nil, is a boolean mask: true attends, false masks.
	Keep *KeepMask
	// Bias, if not nil, is added to the scaled scores before the softmax;
	// −Inf masks a key. NaN and +Inf are errors.
	Bias *BiasMask
}

// KeepMask is a boolean [Batch, Heads, Rows, Tk] array, row-major, that
// broadcasts over the batch when Batch = 1, over heads when Heads = 1 and
// over queries when Rows = 1. Otherwise Batch, Heads and Rows must equal the
// call's B, the layer's Heads and Tq. Data has Batch·Heads·Rows·Tk elements.
type KeepMask struct {
	Data               []bool
	Batch, Heads, Rows int
}

// BiasMask is an additive [Batch, Heads, Rows, Tk] array, broadcast like
// [KeepMask].
type BiasMask struct {
	Data               []float32
	Batch, Heads, Rows int
}

// maskStrides checks a broadcast [batch, heads, rows, tk] array against the
// call and returns its strides for batch, head and row (0 where broadcast).
func maskStrides(name string, n, batch, heads, rows, b, h, tq, tk int) ([3]int, error) {
	var s [3]int
	for _, d := range []struct {
		what      string
		got, full int
	}{{"Batch", batch, b}, {"Heads", heads, h}, {"Rows", rows, tq}} {
		if d.got != 1 && d.got != d.full {
			return s, fmt.Errorf("%w: %s.%s=%d, want 1 or %d", ErrMask, name, d.what, d.got, d.full)
		}
	}
	want, ok := mul(batch*heads, rows)
	if ok {
		want, ok = mul(want, tk)
	}
	if !ok || n != want {
		return s, fmt.Errorf("%w: %s has %d values, want %d×%d×%d×%d", ErrMask, name, n, batch, heads, rows, tk)
	}
	s[2] = tk
	if rows == 1 {
		s[2] = 0
	}
	s[1] = rows * tk
	if heads == 1 {
		s[1] = 0
	}
	s[0] = heads * rows * tk
	if batch == 1 {
		s[0] = 0
	}
	return s, nil
}

// setMask validates m for a call and fills the mask fields of the
// attention descriptor a, with its key lengths in ws's buffer.
func (ws *workspace) setMask(a *blas.Attention, m *Mask, b, h, tq, tk int) error {
	a.KeyLen, a.Causal, a.CausalOffset = nil, false, 0
	a.Keep, a.KeepStride = nil, [3]int{}
	a.Bias, a.BiasStride = nil, [3]int{}
	if m == nil {
		return nil
	}
	if m.KeyLen != nil {
		if len(m.KeyLen) != b {
			return fmt.Errorf("%w: KeyLen has %d entries, want batch %d", ErrMask, len(m.KeyLen), b)
		}
		ws.keyLen = grow(ws.keyLen, b)
		for i, n := range m.KeyLen {
			if n < 0 || n > tk {
				return fmt.Errorf("%w: KeyLen[%d]=%d outside [0, Tk=%d]", ErrMask, i, n, tk)
			}
			ws.keyLen[i] = int32(n)
		}
		a.KeyLen = ws.keyLen[:b]
	}
	a.Causal = m.Causal
	if k := m.Keep; k != nil {
		s, err := maskStrides("Keep", len(k.Data), k.Batch, k.Heads, k.Rows, b, h, tq, tk)
		if err != nil {
			return err
		}
		if len(k.Data) > 0 {
			a.Keep, a.KeepStride = k.Data, s
		}
	}
	if bm := m.Bias; bm != nil {
		s, err := maskStrides("Bias", len(bm.Data), bm.Batch, bm.Heads, bm.Rows, b, h, tq, tk)
		if err != nil {
			return err
		}
		for i, v := range bm.Data {
			if v != v || v > math.MaxFloat32 {
				return fmt.Errorf("%w: Bias.Data[%d] = %v", ErrMask, i, v)
			}
		}
		if len(bm.Data) > 0 {
			a.Bias, a.BiasStride = bm.Data, s
		}
	}
	return nil
}
