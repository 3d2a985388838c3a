package xattn_test

import (
	"bytes"
	"fmt"
	"log"
	"math"

	"github.com/xattn/xattn/xattn"
)

// Load the cross-attention block (attn2) of a diffusers UNet from a
// safetensors checkpoint and run it with a text padding mask as diffusers
// passes it to scaled_dot_product_attention. The file is one that
// scripts/golden.py saved from PyTorch; a real UNet checkpoint works the same,
// with the block's prefix and the sizes of its config. PyTorch computes the
// same numbers from the same file.
func ExampleLoadWeightsFile() {
	// query_dim 8, cross_attention_dim 6, heads 2, dim_head 5; diffusers' to_q,
	// to_k and to_v have no bias by default (Bias false), to_out.0 has one.
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 5}
	w, err := xattn.LoadWeightsFile("testdata/golden/diffusers.safetensors", cfg,
		xattn.Diffusers, "mid_block.attentions.0.transformer_blocks.0.attn2")
	if err != nil {
		log.Fatal(err)
	}
	layer, err := xattn.New(cfg, w)
	if err != nil {
		log.Fatal(err)
	}

	s := xattn.Shape{Batch: 1, Tq: 2, Tk: 3}
	x := []float32{ // [1, 2, 8] image tokens
		0.1, -0.2, 0.3, 0.0, 0.5, -0.1, 0.2, 0.4,
		-0.3, 0.1, 0.0, 0.2, -0.4, 0.3, 0.1, -0.3,
	}
	ctx := []float32{ // [1, 3, 6] text tokens; the last one is padding
		0.5, 0.1, -0.3, 0.2, 0.0, 0.4,
		-0.2, 0.3, 0.1, -0.5, 0.2, 0.1,
		9, 9, 9, 9, 9, 9,
	}
	// SDPA's boolean mask: true = attend. Shape [B, 1, 1, Tk] broadcasts over
	// heads and queries; this one becomes Mask.KeyLen = [2].
	keep := &xattn.TorchMask{Shape: []int{1, 1, 1, 3}, Bool: []bool{true, true, false}}
	m, err := xattn.MaskFromTorchSDPA(s, cfg.Heads, keep, false)
	if err != nil {
		log.Fatal(err)
	}
	y, err := layer.Forward(x, ctx, s, m)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("key lengths:", m.KeyLen)
	for t := 0; t < s.Tq; t++ {
		fmt.Printf("%.3f\n", y[t*8:(t+1)*8])
	}
	// Output:
	// key lengths: [2]
	// [-0.124 0.177 0.148 0.061 -0.052 -0.220 -0.214 0.293]
	// [-0.124 0.178 0.148 0.060 -0.052 -0.219 -0.213 0.293]
}

// Save weights under torch.nn.MultiheadAttention's names; PyTorch loads the
// file with mha.load_state_dict(safetensors.torch.load_file(path)).
func ExampleWeights_Save() {
	cfg := xattn.Config{QueryDim: 8, Heads: 2, HeadDim: 4, Bias: true} // MHA(8, 2)
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		log.Fatal(err)
	}
	var buf bytes.Buffer
	if err := w.Save(&buf, cfg, xattn.TorchMHA, "attn"); err != nil {
		log.Fatal(err)
	}
	f, err := xattn.ReadSafetensors(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		fmt.Println(name, info.DType, info.Shape)
	}
	back, err := xattn.LoadWeights(bytes.NewReader(buf.Bytes()), int64(buf.Len()), cfg, xattn.TorchMHA, "attn")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%.3f %.3f\n", back.Q[0], w.Q[0])
	// Output:
	// attn.in_proj_weight F32 [24 8]
	// attn.out_proj.weight F32 [8 8]
	// attn.out_proj.bias F32 [8]
	// attn.in_proj_bias F32 [24]
	// -0.266 -0.266
}

// MultiheadAttention's masks, with true meaning "do not attend", become the
// cheapest Mask that does the same: a key_padding_mask that pads the end of
// each sequence becomes KeyLen, a square-subsequent attn_mask Causal.
func ExampleMaskFromTorchMHA() {
	s := xattn.Shape{Batch: 2, Tq: 3, Tk: 3}
	kpm := &xattn.TorchMask{Shape: []int{2, 3}, Bool: []bool{
		false, false, true, // batch 0: 2 keys
		false, false, false, // batch 1: 3 keys
	}}
	inf := float32(math.Inf(-1))
	causal := &xattn.TorchMask{Shape: []int{3, 3}, Float: []float32{
		0, inf, inf,
		0, 0, inf,
		0, 0, 0,
	}}
	m, err := xattn.MaskFromTorchMHA(s, 4, kpm, causal)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.KeyLen, m.Causal, m.Keep == nil, m.Bias == nil)
	// Output:
	// [2 3] true true true
}
