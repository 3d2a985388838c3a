package xattn_test

import (
	"fmt"
	"log"

	"github.com/xattn/xattn/xattn"
)

// The attention probabilities of a causal self-attention, averaged over the
// heads: row i is query i, column j key j; the causal mask leaves the upper
// triangle at 0 and every row sums to 1.
func ExampleLayer_AttentionMap() {
	cfg := xattn.Config{QueryDim: 8, Heads: 2, HeadDim: 4}
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		log.Fatal(err)
	}
	layer, err := xattn.New(cfg, w)
	if err != nil {
		log.Fatal(err)
	}
	s := xattn.Shape{Batch: 1, Tq: 4}
	x := make([]float32, s.Batch*s.Tq*cfg.QueryDim)
	for i := range x {
		x[i] = float32(i%5) - 2
	}
	p, err := layer.AttentionMap(x, nil, s, &xattn.Mask{Causal: true}, false)
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; i < s.Tq; i++ {
		fmt.Printf("%.3f\n", p[i*s.Tq:(i+1)*s.Tq])
	}
	// Output:
	// [1.000 0.000 0.000 0.000]
	// [0.520 0.480 0.000 0.000]
	// [0.417 0.417 0.166 0.000]
	// [0.021 0.467 0.485 0.027]
}
