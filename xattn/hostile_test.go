package xattn_test

import (
	"bytes"
	"errors"
	"runtime"
	"testing"

	"github.com/xattn/xattn/xattn"
)

// hostileAllocBound is the most a rejected call may allocate: enough for its
// error message and a mask check's key lengths, far below anything sized by
// the claimed shape.
const hostileAllocBound = 1 << 20

// TestHostile feeds the public API the bogus shapes, legal but huge
// requests, nil and zero receivers and overlapping buffers a hostile or
// careless caller can produce, with the cases of TestErrors. Each must
// return an error wrapping the right sentinel, never panic, and allocate at
// most hostileAllocBound bytes: a request that cannot be met is an error,
// never a fatal out-of-memory. scripts/test.sh runs it again under an
// address-space limit of 2 GB.
func TestHostile(t *testing.T) {
	cases := append(layerErrorCases(t), hostileCases(t)...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := noPanic(t, func() error { return tc.call() })
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if d := after.TotalAlloc - before.TotalAlloc; d > hostileAllocBound {
				t.Fatalf("allocated %d bytes to return %v; the bound is %d", d, err, hostileAllocBound)
			}
			t.Log(err)
		})
	}
}

func hostileCases(t *testing.T) []errorCase {
	// The layer of the reproductions: QueryDim 16, ContextDim 12.
	cfg := xattn.Config{QueryDim: 16, ContextDim: 12, Heads: 2, HeadDim: 4}
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := xattn.New(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	selfCfg := xattn.Config{QueryDim: 16, Heads: 2, HeadDim: 8}
	sw, _ := xattn.NewWeights(selfCfg, 1)
	self, err := xattn.New(selfCfg, sw)
	if err != nil {
		t.Fatal(err)
	}
	fcfg := xattn.FiLMConfig{Dim: 4, CondDim: 3}
	fw, _ := xattn.NewFiLMWeights(fcfg, 1)
	film, err := xattn.NewFiLM(fcfg, fw)
	if err != nil {
		t.Fatal(err)
	}
	x16, c12 := make([]float32, 16), make([]float32, 12)
	// A legal attention map of 2 heads × 2^16 × 2^19 probabilities: 256 GiB.
	const mapTq, mapTk = 1 << 16, 1 << 19
	mapX, mapCtx := make([]float32, mapTq*16), make([]float32, mapTk*12)

	// Valid buffers for the overlap cases: Batch 1, Tq 3, Tk 4.
	s := xattn.Shape{Batch: 1, Tq: 3, Tk: 4}
	buf := make([]float32, 3*16+4*12+16)
	x, ctx := buf[:3*16], buf[3*16:][:4*12]
	y := make([]float32, 3*16)
	key := make([]float32, 4*12)
	kv, err := self.NewKVCache(1, 8)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := l.ProjectContext(make([]float32, 4*12), 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	var nilLayer *xattn.Layer
	var zero xattn.Layer
	var nilFiLM *xattn.FiLM
	var zeroFiLM xattn.FiLM
	var nilCtx *xattn.Context
	var nilKV *xattn.KVCache

	// Every error-returning method of a layer, on lay.
	layerCalls := func(prefix string, lay *xattn.Layer) []errorCase {
		return []errorCase{
			{prefix + "/Forward", xattn.ErrConfig, func() error { _, err := lay.Forward(x, ctx, s, nil); return err }},
			{prefix + "/ForwardInto", xattn.ErrConfig, func() error { return lay.ForwardInto(y, x, ctx, s, nil) }},
			{prefix + "/ForwardQKV", xattn.ErrConfig, func() error { return lay.ForwardQKV(y, x, ctx, ctx, s, nil) }},
			{prefix + "/ForwardSelfDoc", xattn.ErrConfig, func() error { return lay.ForwardSelfDoc(y, x, ctx, s, nil) }},
			{prefix + "/AttentionMap", xattn.ErrConfig, func() error { _, err := lay.AttentionMap(x, ctx, s, nil, true); return err }},
			{prefix + "/AttentionMapInto", xattn.ErrConfig, func() error { return lay.AttentionMapInto(y, x, ctx, s, nil, true) }},
			{prefix + "/ProjectContext", xattn.ErrConfig, func() error { _, err := lay.ProjectContext(ctx, 1, 4); return err }},
			{prefix + "/ProjectKV", xattn.ErrConfig, func() error { _, err := lay.ProjectKV(ctx, ctx, 1, 4); return err }},
			{prefix + "/ForwardContext", xattn.ErrConfig, func() error { return lay.ForwardContext(y, x, pc, 3, nil) }},
			{prefix + "/NewKVCache", xattn.ErrConfig, func() error { _, err := lay.NewKVCache(1, 8); return err }},
			{prefix + "/ForwardStep", xattn.ErrConfig, func() error { return lay.ForwardStep(y, x, kv, 3, nil) }},
			{prefix + "/ForwardBatch", xattn.ErrConfig, func() error {
				return lay.ForwardBatch([]xattn.Request{{Y: y, X: x, Context: ctx, Shape: s}})
			}},
			{prefix + "/getters", nil, func() error {
				if lay.FLOPs(s) != 0 || lay.WorkFLOPs(s) != 0 || lay.Absorbs(s) || lay.Backend() != nil || lay.Config() != (xattn.Config{}) ||
					lay.Plan() != (xattn.Plan{}) || lay.String() == "" {
					t.Errorf("getters of a %s Layer are not zero", prefix)
				}
				return nil
			}},
		}
	}
	filmCalls := func(prefix string, f *xattn.FiLM) []errorCase {
		return []errorCase{
			{prefix + "/Forward", xattn.ErrConfig, func() error { _, err := f.Forward(x[:4], x[:3], 1, 1); return err }},
			{prefix + "/ForwardInto", xattn.ErrConfig, func() error { return f.ForwardInto(y[:4], x[:4], x[:3], 1, 1) }},
			{prefix + "/getters", nil, func() error {
				if f.FLOPs(1, 1) != 0 || f.Backend() != nil || f.Config() != (xattn.FiLMConfig{}) ||
					f.Plan() != (xattn.Plan{}) || f.String() == "" {
					t.Errorf("getters of a %s FiLM are not zero", prefix)
				}
				return nil
			}},
		}
	}

	cases := []errorCase{
		// Bogus shapes: the claimed sizes are checked against the inputs
		// before anything is allocated.
		{"shape/Forward Tq=2^31-1", xattn.ErrShape, func() error {
			_, err := l.Forward(x16, c12, xattn.Shape{Batch: 1, Tq: 1<<31 - 1, Tk: 1}, nil)
			return err
		}},
		{"shape/Forward Tq=2e7", xattn.ErrShape, func() error {
			_, err := l.Forward(x16, c12, xattn.Shape{Batch: 1, Tq: 2e7, Tk: 1}, nil)
			return err
		}},
		{"shape/AttentionMap 2^20×2^20", xattn.ErrShape, func() error {
			_, err := l.AttentionMap(x16, c12, xattn.Shape{Batch: 1, Tq: 1 << 20, Tk: 1 << 20}, nil, true)
			return err
		}},
		{"shape/AttentionMap 2^15×2^15", xattn.ErrShape, func() error {
			_, err := l.AttentionMap(x16, c12, xattn.Shape{Batch: 1, Tq: 1 << 15, Tk: 1 << 15}, nil, false)
			return err
		}},
		{"shape/FiLM t=1e7", xattn.ErrShape, func() error { _, err := film.Forward(x16, c12[:3], 1, 1e7); return err }},
		{"shape/FiLM t=2^40", xattn.ErrShape, func() error { _, err := film.Forward(x16, c12[:3], 1, 1<<40); return err }},
		// Legal requests too large for the machine (or the address-space
		// limit): an error that says how much they need.
		{"huge/NewKVCache(1, 2^31-1)", xattn.ErrShape, func() error { _, err := self.NewKVCache(1, 1<<31-1); return err }},
		{"huge/AttentionMap 2^16×2^19", xattn.ErrShape, func() error {
			_, err := l.AttentionMap(mapX, mapCtx, xattn.Shape{Batch: 1, Tq: mapTq, Tk: mapTk}, nil, true)
			return err
		}},
		{"huge/WithThreads(65536)", xattn.ErrConfig, func() error { _, err := xattn.New(cfg, w, xattn.WithThreads(65536)); return err }},
		{"huge/WithThreads(MaxThreads+1)", xattn.ErrConfig, func() error {
			_, err := xattn.New(cfg, w, xattn.WithThreads(xattn.MaxThreads()+1))
			return err
		}},
		{"huge/FiLM WithThreads(65536)", xattn.ErrConfig, func() error { _, err := xattn.NewFiLM(fcfg, fw, xattn.WithThreads(65536)); return err }},
		// Misuse.
		{"nil/Context getters", nil, func() error {
			if nilCtx.Batch() != 0 || nilCtx.Tk() != 0 {
				t.Error("a nil Context's Batch or Tk is not 0")
			}
			return nil
		}},
		{"nil/KVCache getters", nil, func() error {
			nilKV.Reset()
			if nilKV.Len() != 0 || nilKV.Cap() != 0 || nilKV.Batch() != 0 {
				t.Error("a nil KVCache's Len, Cap or Batch is not 0")
			}
			return nil
		}},
		{"nil/KVCache Truncate", xattn.ErrShape, func() error { return nilKV.Truncate(0) }},
		{"nil/ForwardStep KVCache", xattn.ErrShape, func() error { return self.ForwardStep(y, x, nil, 3, nil) }},
		{"nil/ForwardContext Context", xattn.ErrShape, func() error { return l.ForwardContext(y, x, nil, 3, nil) }},
		{"nil/ForwardBatch Cached", xattn.ErrShape, func() error {
			return l.ForwardBatch([]xattn.Request{{Y: y, X: x, Cached: &xattn.Context{}, Shape: s}})
		}},
		{"nil/ReadSafetensors", xattn.ErrFormat, func() error { _, err := xattn.ReadSafetensors(nil, 100); return err }},
		// Outputs over inputs.
		{"overlap/ForwardInto y=x", xattn.ErrShape, func() error { return self.ForwardInto(x, x, nil, xattn.Shape{Batch: 1, Tq: 3}, nil) }},
		{"overlap/ForwardInto y over context", xattn.ErrShape, func() error { return l.ForwardInto(buf[3*16+8:][:3*16], x, ctx, s, nil) }},
		{"overlap/ForwardQKV y over value", xattn.ErrShape, func() error { return l.ForwardQKV(buf[3*16:][:3*16], x, key, ctx, s, nil) }},
		{"overlap/ForwardSelfDoc y over x", xattn.ErrShape, func() error {
			return self.ForwardSelfDoc(x, x, x, xattn.Shape{Batch: 1, Tq: 3, Tk: 3}, nil)
		}},
		{"overlap/ForwardContext y over x", xattn.ErrShape, func() error { return l.ForwardContext(x, x, pc, 3, nil) }},
		{"overlap/ForwardStep y over x", xattn.ErrShape, func() error { return self.ForwardStep(x, x, kv, 3, nil) }},
		{"overlap/AttentionMapInto p over x", xattn.ErrShape, func() error { return l.AttentionMapInto(buf[:2*3*4], x, ctx, s, nil, true) }},
		{"overlap/FiLM y over x", xattn.ErrShape, func() error { return film.ForwardInto(x[1:][:12], x[:12], c12[:3], 1, 3) }},
		{"overlap/FiLM y over cond", xattn.ErrShape, func() error { return film.ForwardInto(x[:12], y[:12], x[2:][:3], 1, 3) }},
		{"overlap/ForwardBatch shared Y", xattn.ErrShape, func() error {
			return l.ForwardBatch([]xattn.Request{{Y: y, X: x, Context: ctx, Shape: s}, {Y: y, X: x, Context: ctx, Shape: s}})
		}},
		{"overlap/ForwardBatch Y over another's X", xattn.ErrShape, func() error {
			return l.ForwardBatch([]xattn.Request{{Y: y, X: x, Context: ctx, Shape: s}, {Y: x, X: key[:3*16], Context: ctx, Shape: s}})
		}},
	}
	cases = append(cases, layerCalls("nil", nilLayer)...)
	cases = append(cases, layerCalls("zero", &zero)...)
	cases = append(cases, filmCalls("nil FiLM", nilFiLM)...)
	cases = append(cases, filmCalls("zero FiLM", &zeroFiLM)...)
	return cases
}

// TestHostileHugeDim builds the layer with QueryDim = 2^24 and one head of one
// feature, legal and 64 MiB a weight matrix: New must not pad its one-row
// weights to panels of 64 rows (the OpenBLAS backend's AVX-512 kernel packed
// each into 4 GiB), and allocates at most twice the weights it copies. A
// forward pass through it is right.
func TestHostileHugeDim(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 0.5 GiB")
	}
	cfg := xattn.Config{QueryDim: 1 << 24, Heads: 1, HeadDim: 1}
	w, err := xattn.NewWeights(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	weights := 4 * (len(w.Q) + len(w.K) + len(w.V) + len(w.Out) + len(w.OutBias))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	l, err := xattn.New(cfg, w)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > uint64(2*weights) {
		t.Fatalf("New allocated %d MiB for %d MiB of weights", d>>20, weights>>20)
	}
	t.Logf("%v: New allocated %d MiB for %d MiB of weights", l, (after.TotalAlloc-before.TotalAlloc)>>20, weights>>20)
	// x = e_0: Q = Wq[0], K = V = Wk[0], Wv[0] (one key), y = Wo·V + bo.
	x := make([]float32, cfg.QueryDim)
	x[0] = 1
	y, err := l.Forward(x, nil, xattn.Shape{Batch: 1, Tq: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, cfg.QueryDim - 1} {
		want := w.Out[i]*w.V[0] + w.OutBias[i]
		if d := y[i] - want; d > 1e-6 || d < -1e-6 {
			t.Fatalf("y[%d] = %v, want %v", i, y[i], want)
		}
	}
}

// TestNilOutBias checks that New takes a nil OutBias as no output bias (zero),
// as the loaders and PyTorch's bias=False do, and that such weights save and
// load back.
func TestNilOutBias(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}
	w, _ := xattn.NewWeights(cfg, 1)
	zero := *w
	zero.OutBias = make([]float32, cfg.QueryDim)
	none := *w
	none.OutBias = nil
	s := xattn.Shape{Batch: 1, Tq: 3, Tk: 4}
	x, ctx := make([]float32, 3*8), make([]float32, 4*6)
	for i := range x {
		x[i] = float32(i%5) - 2
	}
	for i := range ctx {
		ctx[i] = float32(i%3) - 1
	}
	var ys [2][]float32
	for i, w := range []*xattn.Weights{&zero, &none} {
		l, err := xattn.New(cfg, w)
		if err != nil {
			t.Fatal(err)
		}
		if ys[i], err = l.Forward(x, ctx, s, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := range ys[0] {
		if ys[0][i] != ys[1][i] {
			t.Fatalf("y[%d] = %v with a nil OutBias, %v with a zero one", i, ys[1][i], ys[0][i])
		}
	}
	var buf bytes.Buffer
	if err := none.Save(&buf, cfg, xattn.Diffusers, ""); err != nil {
		t.Fatal(err)
	}
	back, err := xattn.LoadWeights(bytes.NewReader(buf.Bytes()), int64(buf.Len()), cfg, xattn.Diffusers, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(back.OutBias) != cfg.QueryDim {
		t.Fatalf("loaded OutBias has %d values", len(back.OutBias))
	}
}
