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
	skipForcedBF16Missing(t)
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
	// Each thread's tiles, and the keys and values packed once a call
	// (pipeline.packKeys; none for the Go core of the pure kernel).
	kv, _ := blas.PackedKeysLen(bf.l.backend, 2*4, 500, 72, 72)
	if got := float64(2*bf.l.backend.ScratchLen(&want)) + kv; nb != got || nb <= nf {
		t.Fatalf("BF16 tile scratch %v, want 2·ScratchLen + packed keys %v = %v, above the FP32 one's %v", nb, kv, got, nf)
	}
	t.Logf("tile scratch: FP32 %v, BF16 %v floats (2 threads)", nf, nb)
}

// TestPackKeysOnce: a BF16 call whose tasks share keys (query blocks of
// one head, here 4 a head) packs them once into the workspace and hands
// them to the tasks; one whose tasks each read their own keys (one block a
// head) packs nothing; a backend that reads keys as they are never does.
func TestPackKeysOnce(t *testing.T) {
	be, err := blas.WithBF16(blas.Default(), blas.BF16Default())
	if err != nil || blas.Default().Name() != "openblas" {
		t.Skipf("no BF16 C core: %v", err)
	}
	cfg := Config{QueryDim: 32, Heads: 2, HeadDim: 16}
	w, err := NewWeights(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		be    blas.Backend
		tq    int
		packs bool
	}{{be, 128, true}, {be, 16, false}, {blas.Default(), 128, false}} {
		l, err := New(cfg, w, WithBackend(tc.be), WithThreads(2), WithTile(32, 64), WithAbsorb(false))
		if err != nil {
			t.Fatal(err)
		}
		s := Shape{Batch: 1, Tq: tc.tq, Tk: 200}
		x, ctx := make([]float32, tc.tq*32), make([]float32, 200*32)
		for i := range ctx {
			ctx[i] = float32(i%13) / 13
		}
		y := make([]float32, tc.tq*32)
		if err := l.ForwardInto(y, x, ctx, s, nil); err != nil {
			t.Fatal(err)
		}
		p := l.getPipeline()
		packed := cap(p.ws.keys) > 0
		l.putPipeline(p)
		if packed != tc.packs {
			t.Errorf("%s, Tq=%d: keys packed once %v, want %v", blas.Kernels(tc.be), tc.tq, packed, tc.packs)
		}
	}
}
