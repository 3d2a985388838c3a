package xattn

import (
	"testing"

	"github.com/xattn/xattn/blas"
)

// TestTileScratchBF16 checks that the memory check of an Attention call
// counts the BF16 core's scratch (blas.Backend.ScratchLen of its tiles,
// longer than the FP32 core's) for every thread, and leaves the descriptor
// it uses zero.
func TestTileScratchBF16(t *testing.T) {
	cfg := AttentionConfig{Heads: 4, HeadDim: 72}
	s := Shape{Batch: 2, Tq: 300, Tk: 500}
	fp, err := NewAttention(cfg, WithThreads(2), WithTile(256, 32))
	if err != nil {
		t.Fatal(err)
	}
	bf, err := NewAttention(cfg, WithThreads(2), WithTile(256, 32), WithPrecision(BF16))
	if err != nil {
		t.Fatal(err)
	}
	var a blas.Attention
	nf, nb := fp.l.tileScratch(&a, s), bf.l.tileScratch(&a, s)
	if a.Heads != 0 || a.QBlock != 0 || a.KVBlock != 0 {
		t.Fatalf("tileScratch left the descriptor %+v", a)
	}
	want := blas.Attention{Batch: 2, Heads: 4, KVHeads: 4, Tq: 300, Tk: 500, DK: 72, DV: 72, QBlock: 256, KVBlock: 32}
	if got := float64(2 * bf.l.backend.ScratchLen(&want)); nb != got || nb <= nf {
		t.Fatalf("BF16 tile scratch %v, want 2·ScratchLen = %v, above the FP32 one's %v", nb, got, nf)
	}
	t.Logf("tile scratch: FP32 %v, BF16 %v floats (2 threads)", nf, nb)
}
