package xattn_test

import (
	"fmt"
	"log"

	"github.com/xattn/xattn/xattn"
)

// A Stable-Diffusion-style cross-attention: image tokens (queries) read text
// tokens (the context), with the text padded to a per-batch length.
func Example() {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}
	w, err := xattn.NewWeights(cfg, 1) // PyTorch's default init, seeded
	if err != nil {
		log.Fatal(err)
	}
	layer, err := xattn.New(cfg, w)
	if err != nil {
		log.Fatal(err)
	}
	s := xattn.Shape{Batch: 1, Tq: 3, Tk: 4}
	x := make([]float32, s.Batch*s.Tq*cfg.QueryDim)
	ctx := make([]float32, s.Batch*s.Tk*cfg.ContextDim)
	for i := range x {
		x[i] = float32(i%7)/7 - 0.5
	}
	for i := range ctx {
		ctx[i] = float32(i%5)/2 - 1
	}
	y, err := layer.Forward(x, ctx, s, &xattn.Mask{KeyLen: []int{3}})
	if err != nil {
		log.Fatal(err)
	}
	for t := 0; t < s.Tq; t++ {
		fmt.Printf("%.3f\n", y[t*cfg.QueryDim:(t+1)*cfg.QueryDim])
	}
	// Output:
	// [-0.262 0.233 0.085 0.564 -0.091 -0.009 -0.324 0.180]
	// [-0.269 0.234 0.076 0.564 -0.091 -0.013 -0.321 0.180]
	// [-0.263 0.233 0.082 0.555 -0.079 -0.019 -0.328 0.190]
}

// Errors name the offending shape and wrap a sentinel.
func ExampleLayer_ForwardInto_error() {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}
	w, _ := xattn.NewWeights(cfg, 1)
	layer, _ := xattn.New(cfg, w)
	y := make([]float32, 3*8)
	err := layer.ForwardInto(y, make([]float32, 3*8), make([]float32, 5), xattn.Shape{Batch: 1, Tq: 3, Tk: 4}, nil)
	fmt.Println(err)
	// Output:
	// xattn: shape mismatch: key input has 5 values, want [1, 4, 6] = 24
}
