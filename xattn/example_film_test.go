package xattn_test

import (
	"fmt"
	"log"

	"github.com/xattn/xattn/xattn"
)

// A diffusion-style FiLM: one conditioning vector per image (a time or
// pooled text embedding) scales and shifts every feature of every token, in
// place, with diffusers' x·(1 + scale) + shift convention.
func ExampleFiLM() {
	cfg := xattn.FiLMConfig{Dim: 4, CondDim: 3, Bias: true, GammaPlusOne: true}
	w, err := xattn.NewFiLMWeights(cfg, 1) // PyTorch's default init, seeded
	if err != nil {
		log.Fatal(err)
	}
	film, err := xattn.NewFiLM(cfg, w)
	if err != nil {
		log.Fatal(err)
	}
	const batch, tokens = 2, 3
	x := make([]float32, batch*tokens*cfg.Dim)
	for i := range x {
		x[i] = float32(i%5)/4 - 0.5
	}
	cond := []float32{
		1, 0, -1, // sequence 0
		0.5, 0.5, 0.5, // sequence 1
	}
	if err := film.ForwardInto(x, x, cond, batch, tokens); err != nil { // in place
		log.Fatal(err)
	}
	for r := 0; r < batch*tokens; r++ {
		fmt.Printf("%.3f\n", x[r*cfg.Dim:(r+1)*cfg.Dim])
	}
	fmt.Println(film.ForwardInto(x, x, cond[:3], batch, tokens))
	// Output:
	// [-0.196 0.777 -1.090 -0.303]
	// [0.537 0.534 -1.059 -0.638]
	// [0.354 1.506 -1.029 -0.972]
	// [-0.396 -0.014 0.326 -0.207]
	// [-0.644 -0.021 0.094 0.486]
	// [-0.893 -0.028 -0.138 0.313]
	// xattn: shape mismatch: cond has 3 values, want [2, 3] = 6
}
