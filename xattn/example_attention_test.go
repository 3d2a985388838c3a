package xattn_test

import (
	"fmt"
	"log"

	"github.com/xattn/xattn/xattn"
)

// The attention core over a fused QKV projection, read in place: each token
// row of buf is [q (4 heads) | k (2 heads) | v (2 heads)], as one
// [T, (H+2·G)·dh] product leaves it, with grouped-query attention and a
// sliding window of 2 keys.
func ExampleAttention_ForwardStrided() {
	const heads, kvHeads, dh = 4, 2, 3
	a, err := xattn.NewAttention(xattn.AttentionConfig{Heads: heads, KVHeads: kvHeads, HeadDim: dh})
	if err != nil {
		log.Fatal(err)
	}
	s := xattn.Shape{Batch: 1, Tq: 3, Tk: 3}
	row := (heads + 2*kvHeads) * dh // 24 values a token
	buf := make([]float32, s.Tq*row)
	for i := range buf {
		buf[i] = float32(i%11)/5 - 1
	}
	q, k, v := buf, buf[heads*dh:], buf[(heads+kvHeads)*dh:]
	out := make([]float32, s.Tq*heads*dh) // [B, Tq, H, dv], dense
	ld := xattn.Strides{Q: row, K: row, V: row}
	if err := a.ForwardStrided(out, q, k, v, s, &xattn.Mask{Window: 2}, ld); err != nil {
		log.Fatal(err)
	}
	for t := range s.Tq {
		fmt.Printf("%.3f\n", out[t*heads*dh:(t+1)*heads*dh])
	}
	// Output:
	// [0.400 0.600 0.800 0.400 0.600 0.800 1.000 -1.000 -0.800 1.000 -1.000 -0.800]
	// [0.572 0.772 0.024 0.614 0.814 -0.162 -0.143 -0.746 -0.546 0.343 -0.854 -0.654]
	// [-0.100 0.100 -0.800 -0.284 -0.084 -0.759 -0.618 -0.418 -0.218 -0.628 -0.428 -0.228]
}
