package xattn_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// FuzzForward maps its inputs to small shapes, routes, masks and tiles, skips
// invalid configurations, and checks every backend against the float64
// reference. The seed corpus lives in testdata/fuzz/FuzzForward.
func FuzzForward(f *testing.F) {
	f.Add(uint64(1), uint8(1), uint8(3), uint8(5), uint8(2), uint8(4), uint8(0), uint8(0))
	f.Add(uint64(2), uint8(2), uint8(17), uint8(1), uint8(3), uint8(7), uint8(0x3f), uint8(5))
	f.Add(uint64(3), uint8(3), uint8(1), uint8(40), uint8(8), uint8(1), uint8(0x15), uint8(0xff))
	f.Fuzz(func(t *testing.T, seed uint64, b, tq, tk, h, dh, bits, tile uint8) {
		c := sweepCase{
			cfg: xattn.Config{
				QueryDim:   1 + int(seed%23),
				ContextDim: 1 + int(seed/23%19),
				OutDim:     1 + int(seed/437%13),
				Heads:      1 + int(h%8),
				HeadDim:    1 + int(dh%24),
				Bias:       bits&0x40 != 0,
			},
			shape: xattn.Shape{Batch: 1 + int(b%3), Tq: int(tq % 48), Tk: int(tk % 64)},
			route: route(bits & 3),
			mask:  fuzzMask(bits),
		}
		switch c.route {
		case routeSelf:
			c.cfg.ContextDim = 0
			c.shape.Tk = c.shape.Tq
		case routeQKV:
			c.cfg.ValueDim = 1 + int(seed/7%11)
		case routeSelfDoc:
			c.cfg.ValueDim = c.cfg.QueryDim
			c.shape.Tk = c.shape.Tq
		}
		if bits&0x80 != 0 && c.cfg.Heads%2 == 0 {
			c.cfg.KVHeads = c.cfg.Heads / 2
			c.cfg.ValueHeadDim = 1 + int(dh/24%16)
		}
		if c.mask == maskKeyLen || c.mask == maskAll || c.mask == maskStructAll {
			if c.shape.Tk == 0 {
				c.mask = maskNone // a key length needs keys to count
			}
		}
		d := makeCase(t, c, seed)
		for _, be := range blas.All() {
			l, err := xattn.New(c.cfg, d.w, xattn.WithBackend(be),
				xattn.WithTile(1+int(tile%9), 1+int(tile/9%29)), xattn.WithThreads(1+int(tile%3)), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			got, err := runCase(l, c, d)
			if err != nil {
				t.Fatalf("%s: %v", c.name(), err)
			}
			diff, norm := maxAbsDiff(got, d.want)
			if diff > tolerance(norm) || math.IsNaN(diff) {
				t.Fatalf("backend=%s %s: max |y−ref| = %.3g, bound %.3g", be.Name(), c.name(), diff, tolerance(norm))
			}
		}
	})
}

// fuzzMask maps bits 2–5 of a fuzz input to a mask kind: 0–5 the array
// masks, 6–9 the structural ones, 10–15 the array masks again (as before
// there were structural masks).
func fuzzMask(bits uint8) maskKind {
	k := int(bits>>2) & 15
	if k >= maskKinds {
		k %= 6
	}
	return maskKind(k)
}

// FuzzAttention maps its inputs to small Attention calls (MHA, GQA, MQA,
// dv ≠ dk), masks, layouts (dense, padded, fused QKV) and tiles, and checks
// every backend against the float64 reference, and that nothing between
// output rows is written.
func FuzzAttention(f *testing.F) {
	f.Add(uint64(1), uint8(1), uint8(3), uint8(5), uint8(2), uint8(4), uint8(0), uint8(0))
	f.Add(uint64(2), uint8(2), uint8(17), uint8(1), uint8(3), uint8(7), uint8(0xa5), uint8(5))
	f.Add(uint64(3), uint8(0), uint8(1), uint8(40), uint8(8), uint8(1), uint8(0x9a), uint8(0xff))
	f.Add(uint64(4), uint8(1), uint8(9), uint8(9), uint8(6), uint8(16), uint8(0x66), uint8(40))
	f.Fuzz(func(t *testing.T, seed uint64, b, tq, tk, h, dh, bits, tile uint8) {
		cfg := xattn.AttentionConfig{Heads: 1 + int(h%8), HeadDim: 1 + int(dh%24), ValueHeadDim: int(seed % 13)}
		switch {
		case bits&0x80 != 0 && cfg.Heads%2 == 0:
			cfg.KVHeads = cfg.Heads / 2
		case bits&0x40 != 0:
			cfg.KVHeads = 1
		}
		s := xattn.Shape{Batch: 1 + int(b%3), Tq: int(tq % 48), Tk: int(tk % 64)}
		lay := attnLayout(int(bits&3) % 3)
		if lay == layoutFused {
			s.Tk = s.Tq
		}
		mk := fuzzMask(bits)
		if s.Tk == 0 && (mk == maskKeyLen || mk == maskAll || mk == maskStructAll) {
			mk = maskNone // a key length needs keys to count
		}
		rng := rand.New(rand.NewPCG(seed, 7))
		m := makeMask(rng, mk, s, cfg.Heads)
		ac := newAttnCase(rng, cfg, s, lay)
		for _, be := range blas.All() {
			a, err := xattn.NewAttention(cfg, xattn.WithBackend(be),
				xattn.WithTile(1+int(tile%9), 1+int(tile/9%29)), xattn.WithThreads(1+int(tile%3)), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			ac.reset()
			if err := ac.run(a, m); err != nil {
				t.Fatalf("backend=%s %+v %v mask=%v layout=%v: %v", be.Name(), cfg, s, mk, lay, err)
			}
			if err := ac.check(fmt.Sprintf("backend=%s %+v %v mask=%v layout=%v", be.Name(), cfg, s, mk, lay), m); err != nil {
				t.Fatal(err)
			}
		}
	})
}
