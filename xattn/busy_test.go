package xattn_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/xattn/xattn/xattn"
)

// TestForwardStepConcurrent misuses one KVCache from many goroutines at once
// (run it under -race): each step must either run whole or return an error
// wrapping ErrBusy and change nothing, so the cache ends up holding exactly
// the positions of the steps that ran, with the same contents as that many
// steps run one after another.
func TestForwardStepConcurrent(t *testing.T) {
	cfg := xattn.Config{QueryDim: 16, Heads: 2, HeadDim: 8}
	w, _ := xattn.NewWeights(cfg, 1)
	l, err := xattn.New(cfg, w, xattn.WithThreads(2))
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, steps, batch = 16, 40, 2
	kv, err := l.NewKVCache(batch, goroutines*steps)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, batch*cfg.QueryDim)
	for i := range x {
		x[i] = float32(i%5)/4 - 0.5
	}
	var ran, busy atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			y := make([]float32, batch*cfg.QueryDim)
			for range steps {
				switch err := l.ForwardStep(y, x, kv, 1, nil); {
				case err == nil:
					ran.Add(1)
				case errors.Is(err, xattn.ErrBusy):
					busy.Add(1)
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d steps ran, %d found the cache busy", ran.Load(), busy.Load())
	if int64(kv.Len()) != ran.Load() {
		t.Fatalf("the cache holds %d positions after %d steps", kv.Len(), ran.Load())
	}
	// The same number of steps in turn: the next step's output is the same.
	ref, _ := l.NewKVCache(batch, goroutines*steps)
	y := make([]float32, batch*cfg.QueryDim)
	for range kv.Len() {
		if err := l.ForwardStep(y, x, ref, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	if kv.Len() == kv.Cap() {
		return
	}
	y1, y2 := make([]float32, len(y)), make([]float32, len(y))
	if err := l.ForwardStep(y1, x, kv, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.ForwardStep(y2, x, ref, 1, nil); err != nil {
		t.Fatal(err)
	}
	for i := range y1 {
		if y1[i] != y2[i] {
			t.Fatalf("after the concurrent steps y[%d] = %v, after steps in turn %v", i, y1[i], y2[i])
		}
	}
}
