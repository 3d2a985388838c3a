package xattn

import (
	"runtime"
	"sync"
	"testing"
	"time"
	"weak"
)

// collectable calls f with new buffers of the given lengths, filled with
// small values, and returns weak pointers to them: once f returns, nothing
// of the package may keep them alive.
//
//go:noinline
func collectable(t *testing.T, f func(bufs [][]float32) error, lens ...int) []weak.Pointer[float32] {
	t.Helper()
	bufs := make([][]float32, len(lens))
	wps := make([]weak.Pointer[float32], len(lens))
	for i, n := range lens {
		bufs[i] = make([]float32, n)
		for j := range bufs[i] {
			bufs[i][j] = float32(j%7) / 8
		}
		wps[i] = weak.Make(&bufs[i][0])
	}
	if err := f(bufs); err != nil {
		t.Fatal(err)
	}
	return wps
}

// TestCallerBuffersCollectable checks that no pooled workspace keeps a
// caller's buffer alive after the call: on every route (the phased and the
// fused path, separate keys and values, self-attention, a KV cache step, a
// cached context, a batch, FiLM) each input and output is collected by the
// first garbage collection after the call returns.
func TestCallerBuffersCollectable(t *testing.T) {
	cfg := Config{QueryDim: 32, ContextDim: 16, Heads: 2, HeadDim: 16}
	w, _ := NewWeights(cfg, 1)
	l, err := New(cfg, w, WithThreads(2), WithSerialFLOPs(0), WithAbsorb(false))
	if err != nil {
		t.Fatal(err)
	}
	big := 4 * 1000 // query rows of the fused path (many query blocks)
	if l.fusedRows(Shape{1, big, 20}) == 0 {
		t.Logf("%v: no fused path", l)
	}
	qkvCfg := Config{QueryDim: 32, ContextDim: 16, ValueDim: 12, Heads: 2, HeadDim: 8}
	qw, _ := NewWeights(qkvCfg, 1)
	qkv, _ := New(qkvCfg, qw, WithThreads(2), WithSerialFLOPs(0))
	selfCfg := Config{QueryDim: 32, Heads: 2, HeadDim: 8}
	sw, _ := NewWeights(selfCfg, 1)
	self, _ := New(selfCfg, sw, WithThreads(2), WithSerialFLOPs(0))
	kv, _ := self.NewKVCache(2, 64)
	fcfg := FiLMConfig{Dim: 32, CondDim: 8}
	fw, _ := NewFiLMWeights(fcfg, 1)
	film, _ := NewFiLM(fcfg, fw, WithThreads(2), WithSerialFLOPs(0))
	pc, err := l.ProjectContext(make([]float32, 2*20*16), 2, 20)
	if err != nil {
		t.Fatal(err)
	}
	const tq, tk = 7, 20
	for _, tc := range []struct {
		name string
		lens []int
		call func(b [][]float32) error
	}{
		{"ForwardInto", []int{2 * tq * 32, 2 * tq * 32, 2 * tk * 16}, func(b [][]float32) error {
			return l.ForwardInto(b[0], b[1], b[2], Shape{2, tq, tk}, &Mask{KeyLen: []int{3, 20}})
		}},
		{"ForwardInto/fused", []int{big * 32, big * 32, tk * 16}, func(b [][]float32) error {
			return l.ForwardInto(b[0], b[1], b[2], Shape{1, big, tk}, nil)
		}},
		{"ForwardQKV", []int{2 * tq * 32, 2 * tq * 32, 2 * tk * 16, 2 * tk * 12}, func(b [][]float32) error {
			return qkv.ForwardQKV(b[0], b[1], b[2], b[3], Shape{2, tq, tk}, nil)
		}},
		{"self", []int{2 * tq * 32, 2 * tq * 32}, func(b [][]float32) error {
			return self.ForwardInto(b[0], b[1], nil, Shape{Batch: 2, Tq: tq}, &Mask{Causal: true})
		}},
		{"ForwardStep", []int{2 * 3 * 32, 2 * 3 * 32}, func(b [][]float32) error {
			kv.Reset()
			return self.ForwardStep(b[0], b[1], kv, 3, nil)
		}},
		{"ProjectContext", []int{2 * tk * 16}, func(b [][]float32) error {
			_, err := l.ProjectContext(b[0], 2, tk)
			return err
		}},
		{"ForwardContext", []int{2 * tq * 32, 2 * tq * 32}, func(b [][]float32) error {
			return l.ForwardContext(b[0], b[1], pc, tq, nil)
		}},
		{"ForwardBatch", []int{2 * tq * 32, 2 * tq * 32, 2 * tk * 16, 2 * 3 * 32, 2 * 3 * 32}, func(b [][]float32) error {
			return l.ForwardBatch([]Request{
				{Y: b[0], X: b[1], Context: b[2], Shape: Shape{2, tq, tk}},
				{Y: b[3], X: b[4], Cached: pc, Shape: Shape{Batch: 2, Tq: 3}},
			})
		}},
		{"FiLM", []int{2 * 50 * 32, 2 * 50 * 32, 2 * 8}, func(b [][]float32) error {
			return film.ForwardInto(b[0], b[1], b[2], 2, 50)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wps := collectable(t, tc.call, tc.lens...)
			runtime.GC()
			for i, wp := range wps {
				if wp.Value() != nil {
					t.Errorf("buffer %d of the call is still reachable after it returned", i)
				}
			}
		})
	}
}

// liveHeap returns the bytes of live heap objects after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestPoolReleasesHugeWorkspaces makes three concurrent calls with a long
// context (each workspace holds 28 MB of projected keys and values), then
// ordinary small ones: the layer must not hold the huge workspaces for its
// lifetime. After 2·retainWindow+1 small calls its pool holds at most
// retainBound of what they used (1 MiB and a little), and the live heap is
// within 2 MiB of what it was before the huge calls.
func TestPoolReleasesHugeWorkspaces(t *testing.T) {
	cfg := Config{QueryDim: 32, ContextDim: 16, Heads: 2, HeadDim: 8}
	w, _ := NewWeights(cfg, 1)
	l, err := New(cfg, w, WithThreads(2), WithAbsorb(false))
	if err != nil {
		t.Fatal(err)
	}
	call := func(tk int) {
		s := Shape{Batch: 1, Tq: 4, Tk: tk}
		if err := l.ForwardInto(make([]float32, 4*32), make([]float32, 4*32), make([]float32, tk*16), s, nil); err != nil {
			t.Error(err)
		}
	}
	call(10)
	before := liveHeap()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call(220_000)
		}()
	}
	wg.Wait()
	peak := liveHeap()
	for range 2*retainWindow + 1 {
		call(10)
	}
	after := liveHeap()
	runtime.KeepAlive(l) // the pool is measured, not the layer's death
	t.Logf("live heap %d KiB before the huge calls, %d KiB after them, %d KiB after %d small calls; pool holds %d KiB",
		before>>10, peak>>10, after>>10, 2*retainWindow+1, l.free.held()>>10)
	if peak < before+20<<20 {
		t.Fatalf("the huge calls left only %d KiB: the test does not test", (peak-before)>>10)
	}
	if after > before+2<<20 {
		t.Fatalf("the layer holds %d KiB more after the huge calls and %d small ones", (after-before)>>10, 2*retainWindow+1)
	}
	if h := l.free.held(); h > 2<<20 {
		t.Fatalf("the pool holds %d bytes", h)
	}
}

// TestHelpersExitWhenIdle runs one call on 64 threads, which starts the pool's
// helpers, and checks that they exit once idle (after helperIdle).
func TestHelpersExitWhenIdle(t *testing.T) {
	cfg := Config{QueryDim: 32, ContextDim: 16, Heads: 2, HeadDim: 8}
	w, _ := NewWeights(cfg, 1)
	l, err := New(cfg, w, WithThreads(64), WithSerialFLOPs(0))
	if err != nil {
		t.Fatal(err)
	}
	s := Shape{Batch: 1, Tq: 4096, Tk: 16}
	if err := l.ForwardInto(make([]float32, s.Tq*32), make([]float32, s.Tq*32), make([]float32, s.Tk*16), s, nil); err != nil {
		t.Fatal(err)
	}
	started, g := poolStarted.Load(), runtime.NumGoroutine()
	if started < 63 {
		t.Fatalf("%d helpers started, want 63", started)
	}
	for start := time.Now(); poolStarted.Load() > 0; time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d of %d helpers still run 10 s after the call", poolStarted.Load(), started)
		}
	}
	for start := time.Now(); runtime.NumGoroutine() > g-int(started); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > time.Second {
			t.Fatalf("%d goroutines, %d before the helpers exited", runtime.NumGoroutine(), g)
		}
	}
}
