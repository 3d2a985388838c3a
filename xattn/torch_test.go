package xattn_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/xattn/xattn/xattn"
)

// torchEffect is what a set of PyTorch masks does to the score of (b, h, i, j):
// whether the key is seen, and what is added to its score.
type torchEffect func(b, h, i, j int) (seen bool, bias float64)

// maskEffect is the torchEffect of an xattn Mask.
func maskEffect(m *xattn.Mask, tk int) torchEffect {
	return func(b, h, i, j int) (bool, float64) {
		if !allowed(m, b, h, i, j) {
			return false, 0
		}
		var bias float64
		if bm := m.Bias; bm != nil {
			bias = float64(bm.Data[maskIndex(bm.Batch, bm.Heads, bm.Rows, tk, b, h, i, j)])
		}
		return !math.IsInf(bias, -1), bias
	}
}

// sameEffect compares two effects over a call.
func sameEffect(t *testing.T, s xattn.Shape, heads int, got, want torchEffect) {
	t.Helper()
	for b := 0; b < s.Batch; b++ {
		for h := 0; h < heads; h++ {
			for i := 0; i < s.Tq; i++ {
				for j := 0; j < s.Tk; j++ {
					gs, gb := got(b, h, i, j)
					ws, wb := want(b, h, i, j)
					if gs != ws || ws && math.Abs(gb-wb) > 1e-6 {
						t.Fatalf("(b=%d, h=%d, i=%d, j=%d): seen %t bias %g, want seen %t bias %g", b, h, i, j, gs, gb, ws, wb)
					}
				}
			}
		}
	}
}

// torchValue is element (idx…) of a TorchMask, right-aligned broadcast.
func torchValue(m *xattn.TorchMask, idx ...int) (bool, float64) {
	idx = idx[len(idx)-len(m.Shape):]
	off := 0
	for k, d := range m.Shape {
		i := idx[k]
		if d == 1 {
			i = 0
		}
		off = off*d + i
	}
	if m.Bool != nil {
		return m.Bool[off], 0
	}
	return false, float64(m.Float[off])
}

// mhaEffect is MultiheadAttention's reading of its masks (PyTorch 2: masks
// of both kinds added as floats, true meaning masked).
func mhaEffect(s xattn.Shape, heads int, kpm, am *xattn.TorchMask) torchEffect {
	return func(b, h, i, j int) (bool, float64) {
		var bias float64
		if kpm != nil {
			v, f := torchValue(kpm, b, j)
			if v {
				return false, 0
			}
			bias += f
		}
		if am != nil {
			var v bool
			var f float64
			if len(am.Shape) == 2 {
				v, f = torchValue(am, i, j)
			} else {
				v, f = torchValue(am, b*heads+h, i, j)
			}
			if v {
				return false, 0
			}
			bias += f
		}
		return !math.IsInf(bias, -1), bias
	}
}

// sdpaEffect is scaled_dot_product_attention's reading of its mask.
func sdpaEffect(am *xattn.TorchMask, causal bool) torchEffect {
	return func(b, h, i, j int) (bool, float64) {
		if causal && j > i {
			return false, 0
		}
		if am == nil {
			return true, 0
		}
		v, f := torchValue(am, b, h, i, j)
		if am.Bool != nil {
			return v, 0
		}
		return !math.IsInf(f, -1), f
	}
}

func randBool(rng *rand.Rand, p float64, shape ...int) *xattn.TorchMask {
	n := 1
	for _, d := range shape {
		n *= d
	}
	m := &xattn.TorchMask{Shape: shape, Bool: make([]bool, n)}
	for i := range m.Bool {
		m.Bool[i] = rng.Float64() < p
	}
	return m
}

func randFloat(rng *rand.Rand, shape ...int) *xattn.TorchMask {
	n := 1
	for _, d := range shape {
		n *= d
	}
	m := &xattn.TorchMask{Shape: shape, Float: make([]float32, n)}
	for i := range m.Float {
		m.Float[i] = float32(rng.NormFloat64())
		if rng.IntN(8) == 0 {
			m.Float[i] = float32(math.Inf(-1))
		}
	}
	return m
}

// TestMaskFromTorchMHA checks, for masks of every form, that the Mask does
// to every score what MultiheadAttention does, and uses the cheap forms where
// it can.
func TestMaskFromTorchMHA(t *testing.T) {
	s := xattn.Shape{Batch: 2, Tq: 4, Tk: 5}
	const H = 3
	rng := rand.New(rand.NewPCG(5, 6))
	suffix := &xattn.TorchMask{Shape: []int{2, 5}, Bool: []bool{false, false, false, true, true, true, true, true, true, true}}
	causalBool := &xattn.TorchMask{Shape: []int{4, 5}, Bool: make([]bool, 20)}
	causalFloat := &xattn.TorchMask{Shape: []int{4, 5}, Float: make([]float32, 20)}
	for i := 0; i < 4; i++ {
		for j := i + 1; j < 5; j++ {
			causalBool.Bool[i*5+j] = true
			causalFloat.Float[i*5+j] = float32(math.Inf(-1))
		}
	}
	for _, c := range []struct {
		name     string
		kpm, am  *xattn.TorchMask
		keyLen   []int
		causal   bool
		keep     []int // Batch, Heads, Rows of Keep, nil for none
		bias     []int
		shareBuf bool
	}{
		{name: "none"},
		{name: "kpm-suffix", kpm: suffix, keyLen: []int{3, 0}},
		{name: "kpm-holes", kpm: randBool(rng, 0.4, 2, 5), keep: []int{2, 1, 1}},
		{name: "kpm-float", kpm: randFloat(rng, 2, 5), bias: []int{2, 1, 1}},
		{name: "attn2d-causal-bool", am: causalBool, causal: true},
		{name: "attn2d-causal-float", am: causalFloat, causal: true},
		{name: "attn2d-bool", am: randBool(rng, 0.4, 4, 5), keep: []int{1, 1, 4}},
		{name: "attn2d-float", am: randFloat(rng, 4, 5), bias: []int{1, 1, 4}},
		{name: "attn3d-bool", am: randBool(rng, 0.4, 6, 4, 5), keep: []int{2, 3, 4}},
		{name: "attn3d-float", am: randFloat(rng, 6, 4, 5), bias: []int{2, 3, 4}},
		{name: "kpm-suffix+attn3d-bool", kpm: suffix, am: randBool(rng, 0.3, 6, 4, 5), keyLen: []int{3, 0}, keep: []int{2, 3, 4}},
		{name: "kpm-holes+attn2d-bool", kpm: randBool(rng, 0.3, 2, 5), am: randBool(rng, 0.3, 4, 5), keep: []int{2, 1, 4}},
		{name: "kpm-holes+attn3d-float", kpm: randBool(rng, 0.3, 2, 5), am: randFloat(rng, 6, 4, 5), keep: []int{2, 1, 1}, bias: []int{2, 3, 4}},
		{name: "kpm-float+attn2d-float", kpm: randFloat(rng, 2, 5), am: randFloat(rng, 4, 5), bias: []int{2, 1, 4}},
		{name: "kpm-float+attn-causal", kpm: randFloat(rng, 2, 5), am: causalBool, causal: true, bias: []int{2, 1, 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := xattn.MaskFromTorchMHA(s, H, c.kpm, c.am)
			if err != nil {
				t.Fatal(err)
			}
			checkForm(t, m, c.keyLen, c.causal, c.keep, c.bias)
			sameEffect(t, s, H, maskEffect(m, s.Tk), mhaEffect(s, H, c.kpm, c.am))
		})
	}
	// Unbatched: key_padding_mask [Tk] with Batch 1.
	m, err := xattn.MaskFromTorchMHA(xattn.Shape{Batch: 1, Tq: 2, Tk: 3}, 1, &xattn.TorchMask{Shape: []int{3}, Bool: []bool{false, false, true}}, nil)
	if err != nil || !slices.Equal(m.KeyLen, []int{2}) {
		t.Errorf("unbatched key_padding_mask: %+v, %v", m, err)
	}
}

func checkForm(t *testing.T, m *xattn.Mask, keyLen []int, causal bool, keep, bias []int) {
	t.Helper()
	if !slices.Equal(m.KeyLen, keyLen) {
		t.Errorf("KeyLen = %v, want %v", m.KeyLen, keyLen)
	}
	if m.Causal != causal {
		t.Errorf("Causal = %t, want %t", m.Causal, causal)
	}
	dims := func(p any) []int {
		switch p := p.(type) {
		case *xattn.KeepMask:
			if p != nil {
				return []int{p.Batch, p.Heads, p.Rows}
			}
		case *xattn.BiasMask:
			if p != nil {
				return []int{p.Batch, p.Heads, p.Rows}
			}
		}
		return nil
	}
	if got := dims(m.Keep); !slices.Equal(got, keep) {
		t.Errorf("Keep is %v, want %v", got, keep)
	}
	if got := dims(m.Bias); !slices.Equal(got, bias) {
		t.Errorf("Bias is %v, want %v", got, bias)
	}
}

func TestMaskFromTorchSDPA(t *testing.T) {
	s := xattn.Shape{Batch: 2, Tq: 4, Tk: 5}
	const H = 3
	rng := rand.New(rand.NewPCG(7, 8))
	prefix := &xattn.TorchMask{Shape: []int{2, 1, 1, 5}, Bool: []bool{true, true, false, false, false, true, true, true, true, true}}
	tril := &xattn.TorchMask{Shape: []int{4, 5}, Bool: make([]bool, 20)}
	for i := 0; i < 4; i++ {
		for j := 0; j <= i; j++ {
			tril.Bool[i*5+j] = true
		}
	}
	for _, c := range []struct {
		name   string
		am     *xattn.TorchMask
		causal bool
		keyLen []int
		wantC  bool
		keep   []int
		bias   []int
	}{
		{name: "none"},
		{name: "is-causal", causal: true, wantC: true},
		{name: "prefix", am: prefix, keyLen: []int{2, 5}},
		{name: "prefix-broadcast-batch", am: &xattn.TorchMask{Shape: []int{5}, Bool: []bool{true, true, true, false, false}}, keyLen: []int{3, 3}},
		{name: "tril", am: tril, wantC: true},
		{name: "holes", am: randBool(rng, 0.6, 2, 1, 1, 5), keep: []int{2, 1, 1}},
		{name: "bool-2d", am: randBool(rng, 0.6, 4, 5), keep: []int{1, 1, 4}},
		{name: "bool-3d", am: randBool(rng, 0.6, 3, 4, 5), keep: []int{1, 3, 4}},
		{name: "bool-4d", am: randBool(rng, 0.6, 2, 3, 4, 5), keep: []int{2, 3, 4}},
		{name: "bool-4d-row-bcast", am: randBool(rng, 0.6, 2, 3, 1, 5), keep: []int{2, 3, 1}},
		{name: "float-1d", am: randFloat(rng, 5), bias: []int{1, 1, 1}},
		{name: "float-4d", am: randFloat(rng, 2, 3, 4, 5), bias: []int{2, 3, 4}},
		{name: "float-diffusers", am: randFloat(rng, 2, 1, 1, 5), bias: []int{2, 1, 1}},
		{name: "float+causal", am: randFloat(rng, 1, 3, 4, 5), causal: true, wantC: true, bias: []int{1, 3, 4}},
		{name: "prefix+causal", am: prefix, causal: true, wantC: true, keyLen: []int{2, 5}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := xattn.MaskFromTorchSDPA(s, H, c.am, c.causal)
			if err != nil {
				t.Fatal(err)
			}
			checkForm(t, m, c.keyLen, c.wantC, c.keep, c.bias)
			sameEffect(t, s, H, maskEffect(m, s.Tk), sdpaEffect(c.am, c.causal))
		})
	}
}

func TestMaskFromTorchErrors(t *testing.T) {
	s := xattn.Shape{Batch: 2, Tq: 4, Tk: 5}
	b := func(shape ...int) *xattn.TorchMask {
		n := 1
		for _, d := range shape {
			n *= d
		}
		return &xattn.TorchMask{Shape: shape, Bool: make([]bool, n)}
	}
	nan := &xattn.TorchMask{Shape: []int{4, 5}, Float: make([]float32, 20)}
	nan.Float[7] = float32(math.NaN())
	inf := &xattn.TorchMask{Shape: []int{4, 5}, Float: make([]float32, 20)}
	inf.Float[7] = float32(math.Inf(1))
	both := b(4, 5)
	both.Float = make([]float32, 20)
	short := &xattn.TorchMask{Shape: []int{4, 5}, Bool: make([]bool, 19)}
	neither := &xattn.TorchMask{Shape: []int{4, 5}}
	for _, c := range []struct {
		name    string
		s       xattn.Shape
		heads   int
		kpm, am *xattn.TorchMask
		sdpa    bool
	}{
		{"heads-0", s, 0, nil, nil, false},
		{"negative-shape", xattn.Shape{Batch: -1, Tq: 4, Tk: 5}, 3, nil, nil, false},
		{"kpm-shape", s, 3, b(2, 4), nil, false},
		{"kpm-1d-batched", s, 3, b(5), nil, false},
		{"kpm-3d", s, 3, b(2, 1, 5), nil, false},
		{"attn-shape", s, 3, nil, b(5, 4), false},
		{"attn-3d-batch", s, 3, nil, b(2, 4, 5), false},
		{"attn-4d", s, 3, nil, b(2, 3, 4, 5), false},
		{"nan", s, 3, nil, nan, false},
		{"inf", s, 3, nil, inf, false},
		{"both", s, 3, nil, both, false},
		{"neither", s, 3, nil, neither, false},
		{"short", s, 3, nil, short, false},
		{"sdpa-heads-0", s, 0, nil, nil, true},
		{"sdpa-last-dim", s, 3, nil, b(4, 1), true},
		{"sdpa-rank-5", s, 3, nil, b(1, 2, 3, 4, 5), true},
		{"sdpa-rank-0", s, 3, nil, b(), true},
		{"sdpa-bad-dim", s, 3, nil, b(2, 2, 4, 5), true},
		{"sdpa-nan", s, 3, nil, nan, true},
		{"sdpa-short", s, 3, nil, short, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var err error
			if c.sdpa {
				_, err = xattn.MaskFromTorchSDPA(c.s, c.heads, c.am, false)
			} else {
				_, err = xattn.MaskFromTorchMHA(c.s, c.heads, c.kpm, c.am)
			}
			if !errors.Is(err, xattn.ErrMask) {
				t.Fatalf("got %v, want ErrMask", err)
			}
			t.Log(err)
		})
	}
}

// TestTorchMaskFullyMasked checks the documented answer for a query that
// sees no key: PyTorch gives NaN, xattn the output bias.
func TestTorchMaskFullyMasked(t *testing.T) {
	cfg := xattn.Config{QueryDim: 4, Heads: 2, HeadDim: 2}
	w, _ := xattn.NewWeights(cfg, 3)
	l, err := xattn.New(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	s := xattn.Shape{Batch: 1, Tq: 2, Tk: 3}
	am := &xattn.TorchMask{Shape: []int{2, 3}, Bool: []bool{true, true, true, false, true, false}}
	m, err := xattn.MaskFromTorchMHA(s, 2, nil, am)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	x, ctx := randn(rng, 2*4), randn(rng, 3*4)
	y, err := l.Forward(x, ctx, s, m)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(y[:4]); got != fmt.Sprint(w.OutBias) {
		t.Errorf("fully masked row = %s, want the output bias %v", got, w.OutBias)
	}
}

// TestMaskFromTorchEmpty runs the helpers on empty calls.
func TestMaskFromTorchEmpty(t *testing.T) {
	for _, s := range []xattn.Shape{{Batch: 0, Tq: 2, Tk: 3}, {Batch: 2, Tq: 0, Tk: 3}, {Batch: 2, Tq: 2, Tk: 0}} {
		cfg := xattn.Config{QueryDim: 4, Heads: 2, HeadDim: 2}
		w, _ := xattn.NewWeights(cfg, 1)
		l, _ := xattn.New(cfg, w)
		x, ctx := make([]float32, s.Batch*s.Tq*4), make([]float32, s.Batch*s.Tk*4)
		m, err := xattn.MaskFromTorchSDPA(s, 2, &xattn.TorchMask{Shape: []int{1, 1, 1, s.Tk}, Bool: make([]bool, s.Tk)}, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Forward(x, ctx, s, m); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
		kpm := &xattn.TorchMask{Shape: []int{s.Batch, s.Tk}, Bool: make([]bool, s.Batch*s.Tk)}
		am := &xattn.TorchMask{Shape: []int{s.Batch * 2, s.Tq, s.Tk}, Float: make([]float32, s.Batch*2*s.Tq*s.Tk)}
		if m, err = xattn.MaskFromTorchMHA(s, 2, kpm, am); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Forward(x, ctx, s, m); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
}
