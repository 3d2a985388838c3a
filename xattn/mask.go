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
	// CausalLowerRight aligns the mask to the bottom right, as PyTorch's
	// causal_lower_right and flash-attention's causal=True do: query i sits
	// at key position i + Tk − Tq, so it sees keys j ≤ i + Tk − Tq (the
	// last query sees every key; with Tq > Tk the first Tq − Tk queries see
	// none). It implies Causal, and places Window, ALiBi and the queries
	// of a layer [WithRoPE] alike. With
	// Tq = Tk both alignments agree. The alignment is to the call's Tk, not
	// to KeyLen. In [Layer.ForwardStep] the queries already sit at their
	// cache positions, which is this alignment, and the flag changes
	// nothing.
	CausalLowerRight bool
	// Window, when above 0, is a sliding window (local attention: Mistral,
	// Longformer): query i at key position p (i, or as CausalLowerRight
	// and ForwardStep place it) sees the Window keys p − Window < j ≤ p
	// only. It implies Causal. This is ONNX Runtime's
	// GroupQueryAttention local_window_size = Window − 1 and
	// flash-attention's window_size = (Window − 1, 0): theirs count the
	// keys left of the diagonal, ours the keys seen, the diagonal included.
	// Window = 1 attends to the query's own position alone. Key blocks
	// wholly outside the window are skipped: the cost grows with Window,
	// not Tk.
	Window int
	// ALiBi, if not nil, adds the linear bias −slope_h·(p − j) to the
	// scaled score of query head h at key position p (as for Window) and
	// key j (BLOOM, MPT; a penalty that grows with the distance to an
	// earlier key, and a bonus for a later one when the mask is not
	// causal). It is computed on the fly and stores nothing.
	ALiBi *ALiBi
	// Keep, if not nil, is a boolean mask: true attends, false masks.
	Keep *KeepMask
	// Bias, if not nil, is added to the scaled scores before the softmax;
	// −Inf masks a key. NaN and +Inf are errors.
	Bias *BiasMask
}

// ALiBi holds the slopes of an ALiBi bias ([Mask.ALiBi]).
type ALiBi struct {
	// Slopes holds one finite slope per query head, or is nil for the
	// standard geometric slopes of BLOOM and the ALiBi paper (see
	// [ALiBiSlopes]).
	Slopes []float32
}

// ALiBiSlopes returns the standard ALiBi slopes of heads heads, as BLOOM's
// build_alibi_tensor computes them: for heads a power of two n, head h
// (from 0) has slope 2^(−8(h+1)/n); otherwise, with n the largest power of
// two below heads, the n slopes of n heads come first, then the slopes
// 2^(−4(2k+1)/n), k = 0 … heads−n−1, the odd-numbered ones of 2n heads.
func ALiBiSlopes(heads int) []float32 {
	s := make([]float32, max(heads, 0))
	alibiSlopes(s)
	return s
}

// alibiSlopes fills s with the standard slopes of len(s) heads.
func alibiSlopes(s []float32) {
	h := len(s)
	if h == 0 {
		return
	}
	n := 1
	for n*2 <= h {
		n *= 2
	}
	for i := range n {
		s[i] = float32(math.Exp2(-8 * float64(i+1) / float64(n)))
	}
	for k := range h - n {
		s[n+k] = float32(math.Exp2(-4 * float64(2*k+1) / float64(n)))
	}
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
	a.Window, a.ALiBi = 0, nil
	if m == nil {
		return nil
	}
	if m.Window < 0 {
		return fmt.Errorf("%w: Window=%d is negative", ErrMask, m.Window)
	}
	if al := m.ALiBi; al != nil && al.Slopes != nil {
		if len(al.Slopes) != h {
			return fmt.Errorf("%w: ALiBi has %d slopes, want Heads=%d", ErrMask, len(al.Slopes), h)
		}
		for i, v := range al.Slopes {
			if v-v != 0 {
				return fmt.Errorf("%w: ALiBi.Slopes[%d] = %v", ErrMask, i, v)
			}
			// Every distance is below Tk+Tq: a term past 1e30 would come
			// near float32's range, and an infinite score is a NaN row.
			if math.Abs(float64(v))*float64(tk+tq) > 1e30 {
				return fmt.Errorf("%w: ALiBi.Slopes[%d] = %v: its terms over %d positions overflow", ErrMask, i, v, tk+tq)
			}
		}
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
	a.Causal = m.Causal || m.CausalLowerRight || m.Window > 0
	if m.CausalLowerRight {
		a.CausalOffset = tk - tq
	}
	a.Window = m.Window
	if m.Window > tk+tq {
		// Every query sits before position Tk+Tq: the window hides
		// nothing the causal limit does not (and stays in the backend's
		// range however large it was).
		a.Window = 0
	}
	if al := m.ALiBi; al != nil {
		a.ALiBi = al.Slopes
		if a.ALiBi == nil {
			ws.slopes = grow(ws.slopes, h)
			alibiSlopes(ws.slopes)
			a.ALiBi = ws.slopes
		}
	}
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
