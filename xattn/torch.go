package xattn

import (
	"fmt"
	"math"
)

// TorchMask is a PyTorch attention mask as the caller has it: a boolean or a
// float tensor, row-major, with its shape. Exactly one of Bool and Float is
// set; its length is the product of Shape. What true means depends on the
// function it is given to: PyTorch's two conventions are opposite.
type TorchMask struct {
	Shape []int
	Bool  []bool
	Float []float32
}

// MaskFromTorchMHA converts the masks of torch.nn.MultiheadAttention's
// forward to a [Mask] for a call of shape s on a layer with the given number
// of heads (num_heads). Either mask may be nil.
//
// keyPaddingMask is MultiheadAttention's key_padding_mask, of shape
// [Batch, Tk] ([Tk] when Batch is 1): for a bool mask, true means the key is
// padding and is ignored; a float mask is added to the scores of its keys.
//
// attnMask is its attn_mask, of shape [Tq, Tk] (the same for every batch
// element and head) or [Batch·heads, Tq, Tk] (entry b·heads+h for batch
// element b and head h, as PyTorch orders them): for a bool mask, true means
// the query may NOT attend to the key; a float mask is added to the scores.
//
// The result uses the cheapest form of [Mask] that has the same effect: a
// bool key padding mask that masks a suffix of each batch element's keys
// becomes KeyLen, and an attn_mask that is exactly the causal pattern
// (nn.Transformer.generate_square_subsequent_mask, or the bool
// torch.ones(Tq, Tk).triu(1)) becomes Causal. Two masks of one kind (bool,
// or float) combine into one array, as PyTorch combines them. A float
// key_padding_mask is always added, as PyTorch 2 does; PyTorch 1.13 only does
// so when attn_mask is None. The returned Mask may share the slices of a
// bool mask it did not need to invert or of a float mask it did not combine.
//
// # Fully masked rows
//
// Where a query can attend to no key, PyTorch's MultiheadAttention returns a
// row of NaN (torch 1.13, on its fast and slow paths alike: softmax over a
// row of −∞). xattn returns the output bias there instead: the attention
// output of the row is zero, as in PyTorch's flash kernels (see [Mask]).
//
// Errors wrap [ErrMask]: a shape that fits neither form, a length that does
// not match the shape, neither or both of Bool and Float set, NaN or +Inf in
// a float mask.
func MaskFromTorchMHA(s Shape, heads int, keyPaddingMask, attnMask *TorchMask) (*Mask, error) {
	if err := checkTorchCall(s, heads); err != nil {
		return nil, err
	}
	var b maskBuilder
	b.init(s, heads)
	if k := keyPaddingMask; k != nil {
		ok := len(k.Shape) == 2 && k.Shape[0] == s.Batch && k.Shape[1] == s.Tk ||
			len(k.Shape) == 1 && s.Batch == 1 && k.Shape[0] == s.Tk
		if !ok {
			return nil, fmt.Errorf("%w: key_padding_mask has shape %v, want [%d, %d]", ErrMask, k.Shape, s.Batch, s.Tk)
		}
		if err := k.check("key_padding_mask"); err != nil {
			return nil, err
		}
		a := part{batch: s.Batch, heads: 1, rows: 1}
		if k.Bool != nil {
			a.keep = invert(k.Bool)
		} else {
			a.bias = k.Float
		}
		b.add(a, true)
	}
	if a := attnMask; a != nil {
		p := part{batch: 1, heads: 1, rows: s.Tq}
		switch {
		case len(a.Shape) == 2 && a.Shape[0] == s.Tq && a.Shape[1] == s.Tk:
		case len(a.Shape) == 3 && a.Shape[0] == s.Batch*heads && a.Shape[1] == s.Tq && a.Shape[2] == s.Tk:
			p.batch, p.heads = s.Batch, heads
		default:
			return nil, fmt.Errorf("%w: attn_mask has shape %v, want [%d, %d] or [%d·%d, %d, %d]",
				ErrMask, a.Shape, s.Tq, s.Tk, s.Batch, heads, s.Tq, s.Tk)
		}
		if err := a.check("attn_mask"); err != nil {
			return nil, err
		}
		if a.Bool != nil {
			p.keep = invert(a.Bool)
		} else {
			p.bias = a.Float
		}
		b.add(p, false)
	}
	return b.mask(), nil
}

// MaskFromTorchSDPA converts the masks of PyTorch 2's
// torch.nn.functional.scaled_dot_product_attention (which diffusers'
// AttnProcessor2_0 calls) to a [Mask] for a call of shape s on a layer with
// the given number of heads. attnMask may be nil.
//
// attnMask is SDPA's attn_mask: its shape broadcasts to [Batch, heads, Tq,
// Tk] with NumPy's rules, each of its last four dimensions (aligned to the
// right) equal to the full size or 1, except the last, which must be Tk. For
// a bool mask, true means the query MAY attend to the key (the opposite of
// MultiheadAttention); a float mask is added to the scores, like the
// additive masks diffusers builds (0 and −10000, or −∞).
//
// isCausal is SDPA's is_causal: query i sees keys j ≤ i, aligned top-left as
// PyTorch does when Tq ≠ Tk. PyTorch refuses is_causal together with an
// attn_mask; here the two combine.
//
// As with [MaskFromTorchMHA], a bool mask of shape [Batch or 1, 1, 1, Tk]
// that keeps a prefix of each batch element's keys becomes KeyLen and the
// exact causal pattern becomes Causal; the Mask may share the mask's slice.
// A query that can attend to no key gets a zero attention output and so the
// output bias, where PyTorch's math path returns NaN.
//
// Errors wrap [ErrMask], as for [MaskFromTorchMHA].
func MaskFromTorchSDPA(s Shape, heads int, attnMask *TorchMask, isCausal bool) (*Mask, error) {
	if err := checkTorchCall(s, heads); err != nil {
		return nil, err
	}
	var b maskBuilder
	b.init(s, heads)
	b.m.Causal = isCausal
	if a := attnMask; a != nil {
		r := len(a.Shape)
		full := [4]int{s.Batch, heads, s.Tq, s.Tk}
		dims := [4]int{1, 1, 1, 1}
		ok := r >= 1 && r <= 4
		for i := 0; ok && i < r; i++ {
			d := a.Shape[r-1-i]
			dims[3-i] = d
			ok = d == full[3-i] || d == 1 && i > 0
		}
		if !ok {
			return nil, fmt.Errorf("%w: attn_mask has shape %v, which does not broadcast to [%d, %d, %d, %d] along all but its last dimension",
				ErrMask, a.Shape, s.Batch, heads, s.Tq, s.Tk)
		}
		if err := a.check("attn_mask"); err != nil {
			return nil, err
		}
		p := part{batch: dims[0], heads: dims[1], rows: dims[2], keep: a.Bool, bias: a.Float}
		b.add(p, true)
	}
	return b.mask(), nil
}

// checkTorchCall validates the call a mask is built for.
func checkTorchCall(s Shape, heads int) error {
	if s.Batch < 0 || s.Tq < 0 || s.Tk < 0 || heads < 1 {
		return fmt.Errorf("%w: Shape %+v with %d heads", ErrMask, s, heads)
	}
	return nil
}

// check validates the values of t against its shape, which the caller has
// checked.
func (t *TorchMask) check(name string) error {
	n := 1
	for _, d := range t.Shape {
		var ok bool
		if n, ok = mul(n, d); !ok {
			return fmt.Errorf("%w: %s shape %v overflows", ErrMask, name, t.Shape)
		}
	}
	switch {
	case (t.Bool == nil) == (t.Float == nil):
		return fmt.Errorf("%w: %s must have exactly one of Bool and Float", ErrMask, name)
	case t.Bool != nil && len(t.Bool) != n, t.Float != nil && len(t.Float) != n:
		return fmt.Errorf("%w: %s has %d values, its shape %v needs %d", ErrMask, name, max(len(t.Bool), len(t.Float)), t.Shape, n)
	}
	for i, v := range t.Float {
		if v != v || v > math.MaxFloat32 {
			return fmt.Errorf("%w: %s[%d] = %v", ErrMask, name, i, v)
		}
	}
	return nil
}

func invert(b []bool) []bool {
	r := make([]bool, len(b))
	for i, v := range b {
		r[i] = !v
	}
	return r
}

// part is a keep (true attends) or bias array [batch, heads, rows, Tk] that
// broadcasts where a dimension is 1, like [KeepMask].
type part struct {
	batch, heads, rows int
	keep               []bool
	bias               []float32
}

// maskBuilder collects the parts of a Mask.
type maskBuilder struct {
	m                    Mask
	batch, heads, tq, tk int
	keep, bias           *part
}

func (b *maskBuilder) init(s Shape, heads int) {
	b.batch, b.heads, b.tq, b.tk = s.Batch, heads, s.Tq, s.Tk
}

// add adds a part, or turns it into KeyLen (if keyLen) or Causal when it has
// exactly their pattern.
func (b *maskBuilder) add(p part, keyLen bool) {
	if p.keep != nil {
		if keyLen && b.m.KeyLen == nil && p.heads == 1 && p.rows == 1 {
			if lens, ok := prefixLens(p.keep, p.batch, b.tk); ok {
				if p.batch != b.batch { // broadcast over the batch
					n := lens[0]
					lens = make([]int, b.batch)
					for i := range lens {
						lens[i] = n
					}
				}
				b.m.KeyLen = lens
				return
			}
		}
		if p.batch == 1 && p.heads == 1 && p.rows == b.tq && isCausal(p.keep, nil, b.tq, b.tk) {
			b.m.Causal = true
			return
		}
		if b.keep != nil {
			p = combine(*b.keep, p, b.tk)
		}
		b.keep = &p
		return
	}
	if p.batch == 1 && p.heads == 1 && p.rows == b.tq && isCausal(nil, p.bias, b.tq, b.tk) {
		b.m.Causal = true
		return
	}
	if b.bias != nil {
		p = combine(*b.bias, p, b.tk)
	}
	b.bias = &p
}

func (b *maskBuilder) mask() *Mask {
	m := b.m
	if k := b.keep; k != nil {
		m.Keep = &KeepMask{Data: k.keep, Batch: k.batch, Heads: k.heads, Rows: k.rows}
	}
	if k := b.bias; k != nil {
		m.Bias = &BiasMask{Data: k.bias, Batch: k.batch, Heads: k.heads, Rows: k.rows}
	}
	return &m
}

// prefixLens returns, for each of the batch rows of keep ([batch, tk]), the
// number of keys it keeps, if each keeps a prefix of its keys and masks the
// rest.
func prefixLens(keep []bool, batch, tk int) ([]int, bool) {
	lens := make([]int, batch)
	for b := range lens {
		row := keep[b*tk : (b+1)*tk]
		n := 0
		for n < tk && row[n] {
			n++
		}
		for _, v := range row[n:] {
			if v {
				return nil, false
			}
		}
		lens[b] = n
	}
	return lens, true
}

// isCausal reports whether the [tq, tk] mask keep (or bias) is exactly the
// causal pattern: key j kept (bias 0) where j ≤ i, masked (bias −∞) where
// j > i. A pattern that masks nothing is not reported as causal.
func isCausal(keep []bool, bias []float32, tq, tk int) bool {
	ninf := float32(math.Inf(-1))
	masks := false
	for i := 0; i < tq; i++ {
		for j := 0; j < tk; j++ {
			want := j <= i
			masks = masks || !want
			if keep != nil && keep[i*tk+j] != want {
				return false
			}
			if bias != nil && (want && bias[i*tk+j] != 0 || !want && bias[i*tk+j] != ninf) {
				return false
			}
		}
	}
	return masks
}

// combine returns the element-wise AND (keep) or sum (bias) of a and b, of
// which each dimension is 1 or the full size, over the broadcast shape.
func combine(a, b part, tk int) part {
	r := part{batch: max(a.batch, b.batch), heads: max(a.heads, b.heads), rows: max(a.rows, b.rows)}
	n := r.batch * r.heads * r.rows * tk
	if a.keep != nil {
		r.keep = make([]bool, n)
	} else {
		r.bias = make([]float32, n)
	}
	idx := func(p part, bi, h, i int) int {
		if p.batch == 1 {
			bi = 0
		}
		if p.heads == 1 {
			h = 0
		}
		if p.rows == 1 {
			i = 0
		}
		return ((bi*p.heads+h)*p.rows + i) * tk
	}
	o := 0
	for bi := 0; bi < r.batch; bi++ {
		for h := 0; h < r.heads; h++ {
			for i := 0; i < r.rows; i++ {
				ia, ib := idx(a, bi, h, i), idx(b, bi, h, i)
				for j := 0; j < tk; j++ {
					if r.keep != nil {
						r.keep[o] = a.keep[ia+j] && b.keep[ib+j]
					} else {
						r.bias[o] = a.bias[ia+j] + b.bias[ib+j]
					}
					o++
				}
			}
		}
	}
	return r
}
