package xattn_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// TestSplitKeys runs decode-like calls (a few query rows of one or two heads
// over many keys) on a plan of 8 threads, where the tasks are too few and the
// layer splits the keys of every row into parts merged through the softmax
// statistics: every mask kind, grouped heads, key lengths that end inside,
// at and before a part, and causal diagonals that leave whole parts unseen.
func TestSplitKeys(t *testing.T) {
	var cases []sweepCase
	for i, sh := range []xattn.Shape{
		{Batch: 1, Tq: 1, Tk: 1000},
		{Batch: 1, Tq: 3, Tk: 257},
		{Batch: 2, Tq: 2, Tk: 130},
		{Batch: 1, Tq: 4, Tk: 64},
	} {
		for mk := maskNone; mk <= maskAll; mk++ {
			cfg := xattn.Config{QueryDim: 24, ContextDim: 20, OutDim: 12, Heads: 2, KVHeads: 1 + i%2, HeadDim: 8, Bias: true}
			if i == 3 {
				cfg.ValueHeadDim = 5
			}
			cases = append(cases, sweepCase{cfg, sh, routeCross, mk})
		}
	}
	for i, c := range cases {
		d := makeCase(t, c, uint64(100+i))
		for _, be := range blas.All() {
			t.Run(fmt.Sprintf("backend=%s/%s", be.Name(), c.name()), func(t *testing.T) {
				l, err := xattn.New(c.cfg, d.w, xattn.WithBackend(be), xattn.WithThreads(8),
					xattn.WithTile(4, 16), xattn.WithSerialFLOPs(0))
				if err != nil {
					t.Fatal(err)
				}
				got, err := runCase(l, c, d)
				if err != nil {
					t.Fatal(err)
				}
				diff, norm := maxAbsDiff(got, d.want)
				if diff > tolerance(norm) || math.IsNaN(diff) {
					t.Fatalf("%v: max |y−ref| = %.3g, ‖ref‖∞ = %.3g, bound %.3g", l, diff, norm, tolerance(norm))
				}
			})
		}
	}
}
