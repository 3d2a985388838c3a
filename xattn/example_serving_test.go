package xattn_test

import (
	"bytes"
	"errors"
	"fmt"
	"log"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// The README's first example: Stable Diffusion's cross-attention shapes
// (320-feature image tokens read 77 text tokens of 768 features), with the
// second prompt padded after 12 tokens.
func ExampleNew() {
	cfg := xattn.Config{QueryDim: 320, ContextDim: 768, Heads: 8, HeadDim: 40}
	w, err := xattn.NewWeights(cfg, 1) // or your trained weights, [out, in] like nn.Linear
	if err != nil {
		log.Fatal(err)
	}
	layer, err := xattn.New(cfg, w) // plan from the CPU; see WithThreads, WithTile, WithBackend
	if err != nil {
		log.Fatal(err)
	}

	s := xattn.Shape{Batch: 2, Tq: 64, Tk: 77}
	x := make([]float32, s.Batch*s.Tq*cfg.QueryDim)         // image tokens
	context := make([]float32, s.Batch*s.Tk*cfg.ContextDim) // text embedding
	for i := range x {
		x[i] = float32(i%7)/7 - 0.5
	}
	for i := range context {
		context[i] = float32(i%5)/5 - 0.4
	}
	y := make([]float32, s.Batch*s.Tq*cfg.QueryDim) // OutDim defaults to QueryDim
	err = layer.ForwardInto(y, x, context, s, &xattn.Mask{KeyLen: []int{77, 12}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%.3f\n", y[:4])
	fmt.Printf("%.3f\n", y[len(y)-4:])
	// Output:
	// [-0.016 0.024 -0.015 0.017]
	// [0.018 -0.036 0.028 -0.020]
}

// Serving: a context projected once (a diffusion prompt over every
// denoising step, an encoder output over every decoder step) serves any
// number of calls, bit for bit what ForwardInto computes on a layer built
// WithAbsorb(false).
func ExampleLayer_ForwardContext() {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		log.Fatal(err)
	}
	layer, err := xattn.New(cfg, w, xattn.WithAbsorb(false))
	if err != nil {
		log.Fatal(err)
	}
	const batch, tk, tq = 1, 5, 2
	encoderOut := make([]float32, batch*tk*cfg.ContextDim)
	for i := range encoderOut {
		encoderOut[i] = float32(i%5)/2 - 1
	}
	ctx, err := layer.ProjectContext(encoderOut, batch, tk) // ProjectKV(key, value, batch, tk) for a ValueDim
	if err != nil {
		log.Fatal(err)
	}
	x := make([]float32, batch*tq*cfg.QueryDim)
	y := make([]float32, batch*tq*cfg.QueryDim)
	for step := range 2 {
		for i := range x {
			x[i] = float32((i+step)%7)/7 - 0.5
		}
		if err := layer.ForwardContext(y, x, ctx, tq, nil); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("step %d: %.3f\n", step, y[:4])
	}
	fresh := make([]float32, len(y))
	err = layer.ForwardInto(fresh, x, encoderOut, xattn.Shape{Batch: batch, Tq: tq, Tk: tk}, nil)
	fmt.Println(err, fmt.Sprint(fresh) == fmt.Sprint(y))
	// Output:
	// step 0: [0.028 0.118 0.072 0.265]
	// step 1: [0.040 0.111 0.072 0.252]
	// <nil> true
}

// Incremental decoding with a KV cache: a prompt of 3 positions, then one
// position a step; the causal mask is implied.
func ExampleLayer_ForwardStep() {
	cfg := xattn.Config{QueryDim: 8, Heads: 2, HeadDim: 4} // self-attention
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		log.Fatal(err)
	}
	layer, err := xattn.New(cfg, w)
	if err != nil {
		log.Fatal(err)
	}
	const batch, maxLen = 1, 16
	kv, err := layer.NewKVCache(batch, maxLen)
	if err != nil {
		log.Fatal(err)
	}
	prompt := make([]float32, batch*3*cfg.QueryDim)
	for i := range prompt {
		prompt[i] = float32(i%7)/7 - 0.5
	}
	y := make([]float32, batch*3*cfg.QueryDim)
	if err := layer.ForwardStep(y, prompt, kv, 3, nil); err != nil {
		log.Fatal(err)
	}
	xNew := make([]float32, batch*cfg.QueryDim)
	for step := range 2 {
		xNew[step] = 1 // the next token's features
		if err := layer.ForwardStep(y[:batch*cfg.QueryDim], xNew, kv, 1, nil); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("len %d: %.3f\n", kv.Len(), y[:4])
	}
	kv.Reset() // the next sequence
	fmt.Println(kv.Len(), kv.Cap())
	// Output:
	// len 4: [0.226 -0.207 0.272 0.254]
	// len 5: [0.245 -0.243 0.297 0.238]
	// 0 16
}

// Many small independent requests in one call: each projection reads the
// weights once for all of them.
func ExampleLayer_ForwardBatch() {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		log.Fatal(err)
	}
	layer, err := xattn.New(cfg, w)
	if err != nil {
		log.Fatal(err)
	}
	fill := func(n, k int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32((i+k)%7)/7 - 0.5
		}
		return v
	}
	s1 := xattn.Shape{Batch: 1, Tq: 2, Tk: 3}
	s2 := xattn.Shape{Batch: 2, Tq: 1, Tk: 4}
	ctx, err := layer.ProjectContext(fill(2*4*6, 3), 2, 4)
	if err != nil {
		log.Fatal(err)
	}
	y1, y2 := make([]float32, 2*8), make([]float32, 2*8)
	err = layer.ForwardBatch([]xattn.Request{
		{Y: y1, X: fill(2*8, 1), Context: fill(3*6, 2), Shape: s1},
		{Y: y2, X: fill(2*8, 4), Cached: ctx, Shape: s2, Mask: &xattn.Mask{KeyLen: []int{4, 2}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%.3f\n%.3f\n", y1[:4], y2[8:12])
	// A bad request fails the whole call before any Y is written.
	err = layer.ForwardBatch([]xattn.Request{{Y: y1, X: fill(2*8, 1), Context: fill(3*6, 2), Shape: s1}, {Y: y1, X: y2, Shape: s1}})
	fmt.Println(err)
	// Output:
	// [-0.020 0.152 0.089 0.284]
	// [0.145 0.101 0.190 0.149]
	// request 1: xattn: shape mismatch: nil Context means self-attention, but QueryDim=8, ContextDim=6, ValueDim=6 differ
}

// Keys and values from different sources, as PyTorch's
// MultiheadAttention.forward(query, key, value) with a vdim.
func ExampleLayer_ForwardQKV() {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, ValueDim: 5, Heads: 2, HeadDim: 4}
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		log.Fatal(err)
	}
	layer, err := xattn.New(cfg, w)
	if err != nil {
		log.Fatal(err)
	}
	s := xattn.Shape{Batch: 1, Tq: 2, Tk: 3}
	query := make([]float32, s.Batch*s.Tq*cfg.QueryDim)
	key := make([]float32, s.Batch*s.Tk*cfg.ContextDim)
	value := make([]float32, s.Batch*s.Tk*cfg.ValueDim)
	for i := range query {
		query[i] = float32(i%7)/7 - 0.5
	}
	for i := range key {
		key[i] = float32(i%5)/2 - 1
	}
	for i := range value {
		value[i] = float32(i%3) - 1
	}
	y := make([]float32, s.Batch*s.Tq*cfg.QueryDim)
	if err := layer.ForwardQKV(y, query, key, value, s, &xattn.Mask{Causal: true}); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%.3f\n%.3f\n", y[:8], y[8:])
	// Output:
	// [-0.317 0.040 0.322 0.431 0.258 0.245 -0.294 0.046]
	// [-0.404 0.290 0.014 0.119 0.244 0.211 -0.034 0.158]
}

// Every build has the portable Go kernels; a layer may use them in a binary
// that also has OpenBLAS. Both compute the same function.
func ExampleWithBackend() {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		log.Fatal(err)
	}
	s := xattn.Shape{Batch: 1, Tq: 2, Tk: 3}
	x := make([]float32, s.Batch*s.Tq*cfg.QueryDim)
	context := make([]float32, s.Batch*s.Tk*cfg.ContextDim)
	for i := range x {
		x[i] = float32(i%7)/7 - 0.5
	}
	for i := range context {
		context[i] = float32(i%5)/2 - 1
	}
	for _, be := range []blas.Backend{blas.Pure(), blas.Default()} {
		layer, err := xattn.New(cfg, w, xattn.WithBackend(be), xattn.WithThreads(1))
		if err != nil {
			log.Fatal(err)
		}
		y, err := layer.Forward(x, context, s, nil)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%.3f\n", y[:4])
	}
	// Output:
	// [-0.262 0.233 0.085 0.564]
	// [-0.262 0.233 0.085 0.564]
}

// A malformed file is an error wrapping ErrFormat, whatever it claims.
func ExampleReadSafetensors() {
	// An 8-byte header size of 2^40 bytes, in a file of 12 bytes.
	file := []byte{0, 0, 0, 0, 0, 1, 0, 0, '{', '}', ' ', ' '}
	_, err := xattn.ReadSafetensors(bytes.NewReader(file), int64(len(file)))
	fmt.Println(errors.Is(err, xattn.ErrFormat))
	fmt.Println(err)
	// Output:
	// true
	// xattn: malformed safetensors file: header of 1099511627776 bytes exceeds the limit of 100000000
}
