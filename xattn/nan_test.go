package xattn_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/internal/testutil"
	"github.com/xattn/xattn/xattn"
)

// The non-finite rule (see the package doc, "Non-finite inputs"): a NaN or
// ±Inf that takes part in a visible score or value makes exactly the outputs
// it reaches non-finite (NaN for NaN inputs and for every non-finite
// score), and a masked key never changes anything, whatever its rows hold.
// These tests put one non-finite input row in a call and compare it with
// the same call with that row zeroed: every output the rule says the row
// reaches must be non-finite (every element), and every other output must
// equal the zeroed call's bit for bit.

// sees reports whether query i of batch b, head h sees key j under m, with
// the causal diagonal moved by off (a KV cache's cached positions): key
// length, causal, keep and a −Inf bias.
func sees(m *xattn.Mask, b, h, i, j, off int) bool {
	if m == nil {
		return true
	}
	if m.Causal && j > i+off {
		return false
	}
	if !allowed(&xattn.Mask{KeyLen: m.KeyLen, Keep: m.Keep}, b, h, i, j) {
		return false
	}
	if bm := m.Bias; bm != nil {
		tk := len(bm.Data) / (bm.Batch * bm.Heads * bm.Rows)
		if math.IsInf(float64(bm.Data[maskIndex(bm.Batch, bm.Heads, bm.Rows, tk, b, h, i, j)]), -1) {
			return false
		}
	}
	return true
}

// nanMask is a mask of kind k for s whose key nanKey is seen by some query
// rows of the last batch element and hidden from others, by the kind's own
// means: its key length ends before or after it, the causal diagonal passes
// it, Keep is false and the bias −Inf on every other row.
func nanMask(rng *rand.Rand, k maskKind, s xattn.Shape, heads, nanKey int) *xattn.Mask {
	m := makeMask(rng, k, s, heads)
	if m == nil {
		return nil
	}
	last := s.Batch - 1
	if m.KeyLen != nil && last > 0 {
		m.KeyLen[last] = min(nanKey+1+rng.IntN(2)*(s.Tk), s.Tk) // sees it or not, by seed
		if rng.IntN(2) == 0 {
			m.KeyLen[last] = nanKey // hidden
		}
	}
	if kp := m.Keep; kp != nil {
		for h := range kp.Heads {
			for i := range kp.Rows {
				kp.Data[maskIndex(kp.Batch, kp.Heads, kp.Rows, s.Tk, last, h, i, nanKey)] = (i+h)%2 == 0
			}
		}
	}
	if bm := m.Bias; bm != nil {
		for h := range bm.Heads {
			for i := range bm.Rows {
				v := float32(0.5)
				if (i+h)%2 == 1 {
					v = float32(math.Inf(-1))
				}
				bm.Data[maskIndex(bm.Batch, bm.Heads, bm.Rows, s.Tk, last, h, i, nanKey)] = v
			}
		}
	}
	return m
}

// nanInput names where a call gets its non-finite row.
type nanInput int

const (
	nanContext nanInput = iota // a context row: keys and values
	nanValue                   // a value row only (ForwardQKV)
	nanQuery                   // an x row
)

func (n nanInput) String() string { return [...]string{"context", "value", "query"}[n] }

// nanPlacement is one non-finite input: which input, which row of the last
// batch element, and the value written to every column of it.
type nanPlacement struct {
	in  nanInput
	row int
	val float32
}

func (p nanPlacement) String() string { return fmt.Sprintf("%v[%d]=%v", p.in, p.row, p.val) }

// setRow writes v into row r of batch b of the [batch, t, d] array x.
func setRow(x []float32, t, d, b, r int, v float32) {
	clear(x[(b*t+r)*d:][:d])
	for c := range d {
		x[(b*t+r)*d+c] = v
	}
}

// checkRows compares got with want (the call with the non-finite row zeroed)
// row by row, rows of width d: a row reached(b, i) must be non-finite in
// every element, NaN when nan; every other row equal to want bit for bit.
func checkRows(t *testing.T, got, want []float32, batch, rows, d int, nan bool, reached func(b, i int) bool) {
	t.Helper()
	for k, v := range want {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			t.Fatalf("y[%d] = %v with the non-finite row zeroed, want every output finite", k, v)
		}
	}
	for b := range batch {
		for i := range rows {
			g, w := got[(b*rows+i)*d:][:d], want[(b*rows+i)*d:][:d]
			if reached(b, i) {
				for c, v := range g {
					if f := float64(v); !math.IsNaN(f) && (nan || !math.IsInf(f, 0)) {
						t.Fatalf("row (b=%d, i=%d) is reached by the non-finite input, but [%d] = %v", b, i, c, v)
					}
				}
				continue
			}
			if k := testutil.BitDiff(g, w); k >= 0 {
				t.Fatalf("row (b=%d, i=%d) is not reached by the non-finite input, but [%d] = %v, %v with it zeroed", b, i, k, g[k], w[k])
			}
		}
	}
}

// nanCfg is the layer of the non-finite tests: self-attention capable
// (ContextDim = ValueDim = QueryDim) with biases, two heads.
var nanCfg = xattn.Config{QueryDim: 16, OutDim: 12, Heads: 2, HeadDim: 8, Bias: true}

// nanPath is a way through the layer: a shape and options that force it.
type nanPath struct {
	name   string
	shape  xattn.Shape
	opts   []xattn.Option
	absorb bool // the shape must run in the absorbed form
}

func nanPaths() []nanPath {
	off := xattn.WithAbsorb(false)
	return []nanPath{
		{"serial", xattn.Shape{Batch: 2, Tq: 9, Tk: 40}, []xattn.Option{off, xattn.WithThreads(1)}, false},
		{"fused", xattn.Shape{Batch: 2, Tq: 30, Tk: 40}, []xattn.Option{off, xattn.WithThreads(2), xattn.WithTile(4, 16), xattn.WithSerialFLOPs(0)}, false},
		{"phased", xattn.Shape{Batch: 2, Tq: 9, Tk: 40}, []xattn.Option{off, xattn.WithThreads(2), xattn.WithTile(64, 16), xattn.WithSerialFLOPs(0)}, false},
		{"kv=64", xattn.Shape{Batch: 2, Tq: 7, Tk: 130}, []xattn.Option{off, xattn.WithThreads(2), xattn.WithTile(6, 64), xattn.WithSerialFLOPs(0)}, false},
		// Query blocks of whole BF16 row steps (32): the keys are packed once a call.
		{"keys-once", xattn.Shape{Batch: 2, Tq: 70, Tk: 40}, []xattn.Option{off, xattn.WithThreads(2), xattn.WithTile(32, 16), xattn.WithSerialFLOPs(0)}, false},
		{"split", xattn.Shape{Batch: 2, Tq: 2, Tk: 100}, []xattn.Option{off, xattn.WithThreads(8), xattn.WithTile(4, 16), xattn.WithSerialFLOPs(0)}, false},
		{"absorbed", xattn.Shape{Batch: 2, Tq: 2, Tk: 100}, []xattn.Option{xattn.WithThreads(2), xattn.WithTile(4, 16), xattn.WithSerialFLOPs(0)}, true},
		{"absorbed-split", xattn.Shape{Batch: 2, Tq: 1, Tk: 1000}, []xattn.Option{xattn.WithThreads(8), xattn.WithSerialFLOPs(0)}, true},
	}
}

// placements are the non-finite rows a path's calls are tried with; fewer
// in -short and -race runs.
func placements(s xattn.Shape) []nanPlacement {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	if testing.Short() || raceEnabled {
		return []nanPlacement{{nanContext, s.Tk / 2, nan}, {nanValue, s.Tk - 1, inf}, {nanQuery, 0, nan}}
	}
	return []nanPlacement{
		{nanContext, 0, nan}, {nanContext, s.Tk / 2, nan}, {nanContext, s.Tk - 1, nan},
		{nanContext, s.Tk - 1, inf}, {nanContext, s.Tk / 3, -inf},
		{nanValue, s.Tk / 2, nan}, {nanValue, s.Tk - 1, inf},
		{nanQuery, 0, nan}, {nanQuery, s.Tq - 1, inf}, {nanQuery, s.Tq / 2, -inf},
	}
}

// nanKey is the key a placement's mask is built around.
func (p nanPlacement) nanKey(s xattn.Shape) int {
	if p.in == nanQuery {
		return s.Tk - 1
	}
	return p.row
}

// reachedBy returns the rule's reached(b, i) for placement p under m over
// the heads of the layer: a key (or value) row reaches the queries that see
// it in some head; a query row reaches itself if it sees any key.
func reachedBy(p nanPlacement, m *xattn.Mask, s xattn.Shape, heads, off int) func(b, i int) bool {
	last := s.Batch - 1
	return func(b, i int) bool {
		if b != last {
			return false
		}
		for h := range heads {
			if p.in != nanQuery && sees(m, b, h, i, p.row, off) {
				return true
			}
			if p.in == nanQuery && i == p.row {
				for j := range s.Tk {
					if sees(m, b, h, i, j, off) {
						return true
					}
				}
			}
		}
		return false
	}
}

// nanInputs returns x, key and value for s, zeroed rows where p puts its
// value, and the same with p's value written.
func nanInputs(seed uint64, s xattn.Shape, p nanPlacement) (clean, dirty [3][]float32) {
	rng := rand.New(rand.NewPCG(seed, 3))
	d := nanCfg.QueryDim
	x, ctx := randn(rng, s.Batch*s.Tq*d), randn(rng, s.Batch*s.Tk*d)
	clean = [3][]float32{x, ctx, ctx}
	if p.in == nanValue {
		clean[2] = append([]float32(nil), ctx...)
	}
	for i := range clean {
		dirty[i] = append([]float32(nil), clean[i]...)
	}
	// Keys and values from one slice where the clean call has them so: the
	// layer then runs ForwardInto's single [Wk; Wv] product, on another
	// kernel than two products of half the width (packed weights or not),
	// and the two calls must take the same products to agree bit for bit
	// (under OpenBLAS cores other than SkylakeX they sum in another order).
	if &clean[1][0] == &clean[2][0] {
		dirty[2] = dirty[1]
	}
	last := s.Batch - 1
	switch p.in {
	case nanContext:
		setRow(clean[1], s.Tk, d, last, p.row, 0)
		setRow(dirty[1], s.Tk, d, last, p.row, p.val)
	case nanValue:
		setRow(clean[2], s.Tk, d, last, p.row, 0)
		setRow(dirty[2], s.Tk, d, last, p.row, p.val)
	case nanQuery:
		setRow(clean[0], s.Tq, d, last, p.row, 0)
		setRow(dirty[0], s.Tq, d, last, p.row, p.val)
	}
	return clean, dirty
}

// TestNonFiniteRule holds the cross-attention paths — serial, fused,
// phased, packed keys, keys packed once a call, split keys, absorbed, absorbed with split keys,
// and the same calls through a projected Context — on every backend, in
// FP32 and BF16, and every mask kind to the rule, for NaN, +Inf and −Inf in a context row, a
// value row and a query row.
func TestNonFiniteRule(t *testing.T) {
	w, err := xattn.NewWeights(nanCfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	r := resolved(nanCfg)
	for _, be := range blas.All() {
		for _, prec := range []xattn.Precision{xattn.FP32, xattn.BF16} {
			for _, path := range nanPaths() {
				l, err := xattn.New(nanCfg, w, append([]xattn.Option{xattn.WithBackend(be), xattn.WithPrecision(prec)}, path.opts...)...)
				if err != nil {
					t.Fatal(err)
				}
				s := path.shape
				if l.Absorbs(s) != path.absorb {
					t.Fatalf("path %s: Absorbs(%v) = %t", path.name, s, !path.absorb)
				}
				for mk := maskNone; mk <= maskAll; mk++ {
					for pi, p := range placements(s) {
						name := fmt.Sprintf("backend=%s/precision=%v/path=%s/mask=%v/%v", be.Name(), prec, path.name, mk, p)
						t.Run(name, func(t *testing.T) {
							rng := rand.New(rand.NewPCG(uint64(pi), uint64(mk)))
							m := nanMask(rng, mk, s, r.Heads, p.nanKey(s))
							clean, dirty := nanInputs(uint64(pi+10*int(mk)), s, p)
							run := func(in [3][]float32) []float32 {
								y := make([]float32, s.Batch*s.Tq*r.OutDim)
								if err := l.ForwardQKV(y, in[0], in[1], in[2], s, m); err != nil {
									t.Fatal(err)
								}
								return y
							}
							reached := reachedBy(p, m, s, r.Heads, 0)
							nan := p.val != p.val || p.in != nanValue
							checkRows(t, run(dirty), run(clean), s.Batch, s.Tq, r.OutDim, nan, reached)
							if path.absorb {
								return
							}
							// The same keys and values through a Context.
							ctxRun := func(in [3][]float32) []float32 {
								ctx, err := l.ProjectKV(in[1], in[2], s.Batch, s.Tk)
								if err != nil {
									t.Fatal(err)
								}
								y := make([]float32, s.Batch*s.Tq*r.OutDim)
								if err := l.ForwardContext(y, in[0], ctx, s.Tq, m); err != nil {
									t.Fatal(err)
								}
								return y
							}
							checkRows(t, ctxRun(dirty), ctxRun(clean), s.Batch, s.Tq, r.OutDim, nan, reached)
						})
					}
				}
			}
		}
	}
}

// TestNonFiniteSelfAndCache holds self-attention (an x row is a query, a
// key and a value at once) and a KV cache's steps to the rule: a NaN
// position cached by the first step reaches the second step's queries that
// see it, and nothing else.
func TestNonFiniteSelfAndCache(t *testing.T) {
	r := resolved(nanCfg)
	d := r.QueryDim
	nan := float32(math.NaN())
	forNaNLayers(t, 6, func(l *xattn.Layer, name string) {
		for mk := maskNone; mk <= maskAll; mk++ {
			for _, row := range []int{0, 4, 8} {
				t.Run(fmt.Sprintf("%s/mask=%v/row=%d", name, mk, row), func(t *testing.T) {
					s := xattn.Shape{Batch: 2, Tq: 9, Tk: 9}
					rng := rand.New(rand.NewPCG(uint64(row), uint64(mk)))
					m := nanMask(rng, mk, s, r.Heads, row)
					x := randn(rng, s.Batch*s.Tq*d)
					dirty := append([]float32(nil), x...)
					setRow(x, s.Tq, d, 1, row, 0)
					setRow(dirty, s.Tq, d, 1, row, nan)
					self := func(x []float32) []float32 {
						y := make([]float32, s.Batch*s.Tq*r.OutDim)
						if err := l.ForwardInto(y, x, nil, s, m); err != nil {
							t.Fatal(err)
						}
						return y
					}
					key := reachedBy(nanPlacement{nanContext, row, nan}, m, s, r.Heads, 0)
					query := reachedBy(nanPlacement{nanQuery, row, nan}, m, s, r.Heads, 0)
					both := func(b, i int) bool { return key(b, i) || query(b, i) }
					checkRows(t, self(dirty), self(x), s.Batch, s.Tq, r.OutDim, true, both)

					// Two steps, 5 positions then 4, the second under
					// m's rows 5… (a mask over Tk = 9 keys for 4 queries).
					m2 := stepMask(m, s.Batch, r.Heads, s.Tk, 5, 4)
					step := func(x []float32) (y1, y2 []float32) {
						kv, err := l.NewKVCache(s.Batch, s.Tk)
						if err != nil {
							t.Fatal(err)
						}
						x1, x2 := make([]float32, 0, s.Batch*5*d), make([]float32, 0, s.Batch*4*d)
						for b := range s.Batch {
							x1 = append(x1, x[(b*9)*d:(b*9+5)*d]...)
							x2 = append(x2, x[(b*9+5)*d:(b*9+9)*d]...)
						}
						y1, y2 = make([]float32, s.Batch*5*r.OutDim), make([]float32, s.Batch*4*r.OutDim)
						if err := l.ForwardStep(y1, x1, kv, 5, nil); err != nil {
							t.Fatal(err)
						}
						if err := l.ForwardStep(y2, x2, kv, 4, m2); err != nil {
							t.Fatal(err)
						}
						return y1, y2
					}
					d1, d2 := step(dirty)
					c1, c2 := step(x)
					s1 := xattn.Shape{Batch: 2, Tq: 5, Tk: 5}
					causal := &xattn.Mask{Causal: true}
					if row < 5 {
						p := nanPlacement{nanContext, row, nan}
						r1k, r1q := reachedBy(p, causal, s1, r.Heads, 0), reachedBy(nanPlacement{nanQuery, row, nan}, causal, s1, r.Heads, 0)
						checkRows(t, d1, c1, s.Batch, 5, r.OutDim, true, func(b, i int) bool { return r1k(b, i) || r1q(b, i) })
						s2 := xattn.Shape{Batch: 2, Tq: 4, Tk: 9}
						checkRows(t, d2, c2, s.Batch, 4, r.OutDim, true, reachedBy(p, m2Causal(m2), s2, r.Heads, 5))
						return
					}
					checkRows(t, d1, c1, s.Batch, 5, r.OutDim, true, func(int, int) bool { return false })
					s2 := xattn.Shape{Batch: 2, Tq: 4, Tk: 9}
					k2 := reachedBy(nanPlacement{nanContext, row, nan}, m2Causal(m2), s2, r.Heads, 5)
					q2 := reachedBy(nanPlacement{nanQuery, row - 5, nan}, m2Causal(m2), s2, r.Heads, 5)
					checkRows(t, d2, c2, s.Batch, 4, r.OutDim, true, func(b, i int) bool { return k2(b, i) || q2(b, i) })
				})
			}
		}
	})
}

// forNaNLayers calls f with a layer of nanCfg, weights drawn from seed, for
// every backend (FP32, and BF16 on each BF16 kernel: a BF16 KV cache packs
// its keys and values as steps append them) and every plan of planOptions,
// and the sub-test name of the pair.
func forNaNLayers(t *testing.T, seed uint64, f func(l *xattn.Layer, name string)) {
	w, err := xattn.NewWeights(nanCfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	backends := blas.All()
	for _, b := range bf16Backends(t) {
		backends = append(backends, b.be)
	}
	for _, be := range backends {
		for pname, opts := range planOptions(be) {
			l, err := xattn.New(nanCfg, w, opts...)
			if err != nil {
				t.Fatal(err)
			}
			f(l, fmt.Sprintf("backend=%s/plan=%s", blas.Kernels(be), pname))
		}
	}
}

// m2Causal is a step's mask with the causal diagonal ForwardStep implies.
func m2Causal(m *xattn.Mask) *xattn.Mask {
	c := xattn.Mask{Causal: true}
	if m != nil {
		c = *m
		c.Causal = true
	}
	return &c
}

// TestNonFiniteBatch runs a NaN context row in one request of a
// ForwardBatch: that request follows the rule, and the others, a clean
// cross-attention request and one over a cached Context, are unchanged bit
// for bit.
func TestNonFiniteBatch(t *testing.T) {
	r := resolved(nanCfg)
	d := r.QueryDim
	nan := float32(math.NaN())
	forNaNLayers(t, 7, func(l *xattn.Layer, name string) {
		for mk := maskNone; mk <= maskAll; mk++ {
			t.Run(fmt.Sprintf("%s/mask=%v", name, mk), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(9, uint64(mk)))
				s0, s1 := xattn.Shape{Batch: 2, Tq: 9, Tk: 40}, xattn.Shape{Batch: 1, Tq: 5, Tk: 20}
				p := nanPlacement{nanContext, 20, nan}
				m := nanMask(rng, mk, s0, r.Heads, p.row)
				clean, dirty := nanInputs(11, s0, p)
				x1, c1 := randn(rng, s1.Tq*d), randn(rng, s1.Tk*d)
				ctx, err := l.ProjectContext(c1, 1, s1.Tk)
				if err != nil {
					t.Fatal(err)
				}
				run := func(in [3][]float32) [3][]float32 {
					reqs := []xattn.Request{
						{Y: make([]float32, s0.Batch*s0.Tq*r.OutDim), X: in[0], Context: in[1], Shape: s0, Mask: m},
						{Y: make([]float32, s1.Tq*r.OutDim), X: x1, Context: c1, Shape: s1},
						{Y: make([]float32, s1.Tq*r.OutDim), X: x1, Cached: ctx, Shape: s1},
					}
					if err := l.ForwardBatch(reqs); err != nil {
						t.Fatal(err)
					}
					return [3][]float32{reqs[0].Y, reqs[1].Y, reqs[2].Y}
				}
				got, want := run(dirty), run(clean)
				checkRows(t, got[0], want[0], s0.Batch, s0.Tq, r.OutDim, true, reachedBy(p, m, s0, r.Heads, 0))
				for i := 1; i < 3; i++ {
					if k := testutil.BitDiff(got[i], want[i]); k >= 0 {
						t.Fatalf("request %d: y[%d] = %v, %v without the NaN in request 0", i, k, got[i][k], want[i][k])
					}
				}
			})
		}
	})
}

// TestNonFiniteAttentionMap holds AttentionMap to the rule: a reached
// (batch, head, query) row is NaN on every key it sees and 0 on every key it
// does not; the other rows are unchanged bit for bit.
func TestNonFiniteAttentionMap(t *testing.T) {
	w, err := xattn.NewWeights(nanCfg, 8)
	if err != nil {
		t.Fatal(err)
	}
	r := resolved(nanCfg)
	s := xattn.Shape{Batch: 2, Tq: 9, Tk: 40}
	for _, be := range blas.All() {
		l, err := xattn.New(nanCfg, w, xattn.WithBackend(be))
		if err != nil {
			t.Fatal(err)
		}
		for mk := maskNone; mk <= maskAll; mk++ {
			for pi, p := range placements(s) {
				if p.in == nanValue {
					continue // values play no part in the map
				}
				t.Run(fmt.Sprintf("backend=%s/mask=%v/%v", be.Name(), mk, p), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(pi), 77))
					m := nanMask(rng, mk, s, r.Heads, p.nanKey(s))
					clean, dirty := nanInputs(uint64(pi), s, p)
					got, err := l.AttentionMap(dirty[0], dirty[1], s, m, true)
					if err != nil {
						t.Fatal(err)
					}
					want, err := l.AttentionMap(clean[0], clean[1], s, m, true)
					if err != nil {
						t.Fatal(err)
					}
					for b := range s.Batch {
						for h := range r.Heads {
							for i := range s.Tq {
								row := ((b*r.Heads+h)*s.Tq + i) * s.Tk
								g, wr := got[row:][:s.Tk], want[row:][:s.Tk]
								hit := reachedByHead(p, m, s, b, h, i)
								for j, v := range wr {
									if v != v || math.IsInf(float64(v), 0) {
										t.Fatalf("P[%d,%d,%d,%d] = %v with the row zeroed, want it finite", b, h, i, j, v)
									}
								}
								for j := range s.Tk {
									v := g[j]
									switch {
									case hit && sees(m, b, h, i, j, 0):
										if v == v {
											t.Fatalf("P[%d,%d,%d,%d] = %v, want NaN", b, h, i, j, v)
										}
									case hit:
										if v != 0 || math.Signbit(float64(v)) {
											t.Fatalf("masked P[%d,%d,%d,%d] = %v in a NaN row, want 0", b, h, i, j, v)
										}
									case math.Float32bits(v) != math.Float32bits(wr[j]):
										t.Fatalf("P[%d,%d,%d,%d] = %v, %v with the row zeroed", b, h, i, j, v, wr[j])
									}
								}
							}
						}
					}
				})
			}
		}
	}
}

// reachedByHead is reachedBy for head h alone.
func reachedByHead(p nanPlacement, m *xattn.Mask, s xattn.Shape, b, h, i int) bool {
	if b != s.Batch-1 {
		return false
	}
	if p.in != nanQuery {
		return sees(m, b, h, i, p.row, 0)
	}
	if i != p.row {
		return false
	}
	for j := range s.Tk {
		if sees(m, b, h, i, j, 0) {
			return true
		}
	}
	return false
}

// TestNonFiniteKernels re-runs the non-finite tests in child processes
// with the OpenBLAS backend forced down to its other variants (blas reads
// XATTN_KERNELS once): the OpenBLAS-GEMM attention core that CPUs without
// AVX-512 run, with each row pass.
func TestNonFiniteKernels(t *testing.T) {
	if name := os.Getenv("XATTN_KERNELS"); name != "" {
		// In a child: the variant asked for must be the one that runs.
		want, err := blas.OpenBLASVariant(name)
		if err != nil {
			t.Skipf("XATTN_KERNELS=%s: %v", name, err)
		}
		if got := blas.Kernels(blas.Default()); got != blas.Kernels(want) {
			t.Fatalf("XATTN_KERNELS=%s, but the kernels are %s", name, got)
		}
		return
	}
	if info := blas.OpenBLASInfo(); !info.Linked || info.RowPass != "avx512" {
		t.Skip("the default is not the AVX-512 variant: the plain tests run this CPU's")
	}
	if testing.Short() {
		t.Skip("child processes in -short")
	}
	for _, isa := range blas.Variants()[1:] {
		t.Run("kernels="+isa, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestNonFinite(Rule|SelfAndCache|Batch|AttentionMap|Kernels)$", "-test.count=1")
			cmd.Env = append(os.Environ(), "XATTN_KERNELS="+isa)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestNonFiniteCacheValues caches a position whose value overflows to
// infinity while its key stays finite (Wk = 0, Wv = 0.25, the position's
// input 3e38),
// and runs a step whose queries see it, but for one that a Keep mask hides
// it from: those that see it must be non-finite, the other equal to the
// step with that input zeroed. A BF16 cache that packs its values for the
// core (non-finite rows as zeros) must leave such values to the core's
// panels, which apply the rule.
func TestNonFiniteCacheValues(t *testing.T) {
	r := resolved(nanCfg)
	d := r.QueryDim
	w, err := xattn.NewWeights(nanCfg, 8)
	if err != nil {
		t.Fatal(err)
	}
	clear(w.K)
	for i := range w.V {
		w.V[i] = 0.25 // every value of an input row of 3e38s overflows
	}
	backends := blas.All()
	for _, b := range bf16Backends(t) {
		backends = append(backends, b.be)
	}
	for _, be := range backends {
		for pname, opts := range planOptions(be) {
			t.Run(fmt.Sprintf("backend=%s/plan=%s", blas.Kernels(be), pname), func(t *testing.T) {
				l, err := xattn.New(nanCfg, w, opts...)
				if err != nil {
					t.Fatal(err)
				}
				const b, t1, t2 = 2, 5, 3
				rng := rand.New(rand.NewPCG(8, 8))
				x1, x2 := randn(rng, b*t1*d), randn(rng, b*t2*d)
				// Keys 0…7: key 1 hidden from query 0 of the second step.
				keep := make([]bool, t2*(t1+t2))
				for i := range keep {
					keep[i] = i != 1
				}
				m := &xattn.Mask{Keep: &xattn.KeepMask{Data: keep, Batch: 1, Heads: 1, Rows: t2}}
				run := func(v float32) []float32 {
					kv, err := l.NewKVCache(b, t1+t2)
					if err != nil {
						t.Fatal(err)
					}
					x := append([]float32(nil), x1...)
					setRow(x, t1, d, 0, 1, v)
					if err := l.ForwardStep(make([]float32, b*t1*r.OutDim), x, kv, t1, nil); err != nil {
						t.Fatal(err)
					}
					y := make([]float32, b*t2*r.OutDim)
					if err := l.ForwardStep(y, x2, kv, t2, m); err != nil {
						t.Fatal(err)
					}
					return y
				}
				checkRows(t, run(3e38), run(0), b, t2, r.OutDim, false, func(b, i int) bool { return b == 0 && i > 0 })
			})
		}
	}
}
