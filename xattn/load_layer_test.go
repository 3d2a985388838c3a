package xattn_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/xattn/xattn/internal/testutil"
	"github.com/xattn/xattn/xattn"
)

// saveAs returns w saved under mapping m and the prefix "blk" as a
// safetensors file of dtype, with edit (if not nil) applied to the tensors
// (w's own slices) before they are written, and undone.
func saveAs(t *testing.T, w *xattn.Weights, cfg xattn.Config, m xattn.Mapping, dtype string, edit ...func(ts []xattn.Tensor) (undo func())) []byte {
	t.Helper()
	ts, err := w.Tensors(cfg, m, "blk")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range edit {
		defer e(ts)()
	}
	var buf bytes.Buffer
	if err := xattn.WriteSafetensors(&buf, ts, dtype, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestLoadLayer loads the weights of every mapping, saved as F32, F16 and
// BF16, with LoadLayer into an FP32 layer and into a layer on every BF16
// backend, and checks that each is New's layer of the weights the file
// holds (w rounded to the dtype), bit for bit: the same outputs of a
// projected call and of one the layer absorbs.
func TestLoadLayer(t *testing.T) {
	type backend struct {
		name string
		opts []xattn.Option
	}
	backends := []backend{{"fp32", nil}}
	for _, b := range bf16Backends(t) {
		backends = append(backends, backend{b.name, []xattn.Option{xattn.WithBackend(b.be)}})
	}
	absorbed := 0
	for _, m := range mappings {
		for i, cfg := range mappingConfigs(m) {
			w, err := xattn.NewWeights(cfg, uint64(10+i))
			if err != nil {
				t.Fatal(err)
			}
			for _, dtype := range []string{"F32", "F16", "BF16"} {
				file := saveAs(t, w, cfg, m, dtype)
				ww := roundWeights(w, dtype)
				for _, b := range backends {
					t.Run(fmt.Sprintf("mapping=%s/cfg=%d/%s/%s", m, i, dtype, b.name), func(t *testing.T) {
						opts := append([]xattn.Option{xattn.WithSerialFLOPs(0), xattn.WithThreads(2)}, b.opts...)
						got, err := xattn.LoadLayer(bytes.NewReader(file), int64(len(file)), cfg, m, "blk", opts...)
						if err != nil {
							t.Fatal(err)
						}
						want, err := xattn.New(cfg, ww, opts...)
						if err != nil {
							t.Fatal(err)
						}
						if got.Plan().Precision != want.Plan().Precision || got.String() != want.String() {
							t.Fatalf("LoadLayer made %v, New %v", got, want)
						}
						for _, s := range []xattn.Shape{{Batch: 2, Tq: 5, Tk: 3}, {Batch: 1, Tq: 1, Tk: 90}} {
							if got.Absorbs(s) {
								absorbed++
							}
							yg, yw := forwardQKV(t, got, s, 3), forwardQKV(t, want, s, 3)
							for j := range yw {
								if math.Float32bits(yg[j]) != math.Float32bits(yw[j]) {
									t.Fatalf("%+v (absorbed %t): y[%d] = %v, New's layer gives %v", s, got.Absorbs(s), j, yg[j], yw[j])
								}
							}
						}
					})
				}
			}
		}
	}
	if absorbed == 0 {
		t.Error("no call ran in the absorbed form")
	}
}

// forwardQKV returns the outputs of l on seeded inputs of shape s, keys and
// values from one slice where the layer's widths allow (the stacked [Wk; Wv]
// product).
func forwardQKV(t *testing.T, l *xattn.Layer, s xattn.Shape, seed uint64) []float32 {
	t.Helper()
	c := l.Config()
	rng := newTestRand(seed)
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	x, k := fill(s.Batch*s.Tq*c.QueryDim), fill(s.Batch*s.Tk*c.ContextDim)
	v := k
	if c.ValueDim != c.ContextDim {
		v = fill(s.Batch * s.Tk * c.ValueDim)
	}
	y := make([]float32, s.Batch*s.Tq*c.OutDim)
	if err := l.ForwardQKV(y, x, k, v, s, nil); err != nil {
		t.Fatal(err)
	}
	return y
}

// TestLoadLayerBF16Memory loads a BF16 file into a BF16 layer and checks
// that all it allocates stays under 6 bytes a weight: the file's 2 bytes a
// value read and the 2 of the packed bf16 weights, with room for the
// absorbed form's, but no float32 copy (4 bytes a value, which the route
// through Weights and New makes twice).
func TestLoadLayerBF16Memory(t *testing.T) {
	xattn.SkipForcedBF16Missing(t)
	cfg := xattn.Config{QueryDim: 256, ContextDim: 256, Heads: 4, HeadDim: 64, Bias: true}
	w, err := xattn.NewWeights(cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	file := saveAs(t, w, cfg, xattn.Diffusers, "BF16")
	n := len(w.Q) + len(w.K) + len(w.V) + len(w.Out)
	alloc := func(load func() error) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := load(); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	for _, absorb := range []bool{false, true} {
		opts := []xattn.Option{xattn.WithPrecision(xattn.BF16), xattn.WithAbsorb(absorb)}
		direct := alloc(func() error {
			_, err := xattn.LoadLayer(bytes.NewReader(file), int64(len(file)), cfg, xattn.Diffusers, "blk", opts...)
			return err
		})
		viaFP32 := alloc(func() error {
			ww, err := xattn.LoadWeights(bytes.NewReader(file), int64(len(file)), cfg, xattn.Diffusers, "blk")
			if err == nil {
				_, err = xattn.New(cfg, ww, opts...)
			}
			return err
		})
		t.Logf("absorb=%t: %d weights; LoadLayer allocates %.2f bytes a weight, LoadWeights and New %.2f",
			absorb, n, float64(direct)/float64(n), float64(viaFP32)/float64(n))
		if direct >= uint64(6*n) {
			t.Errorf("absorb=%t: LoadLayer allocated %d bytes for %d bf16 weights, want < %d", absorb, direct, n, 6*n)
		}
	}
}

// TestLoadLayerErrors checks that LoadLayer reports a non-finite weight of a
// BF16 or F16 file by its part and index in a BF16 layer as in an FP32 one,
// a bad option before it reads a tensor, and the file's errors.
func TestLoadLayerErrors(t *testing.T) {
	xattn.SkipForcedBF16Missing(t)
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4, Bias: true}
	w, err := xattn.NewWeights(cfg, 9)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		tensor, name string
		i            int
		value        float32
		dtype        string
	}{
		{"blk.to_q.weight", "Q[5]", 5, float32(math.NaN()), "BF16"},
		{"blk.to_out.0.weight", "Out[3]", 3, float32(math.Inf(1)), "F16"},
		{"blk.to_k.weight", "K[47]", 47, float32(math.Inf(-1)), "BF16"},
		{"blk.to_v.bias", "VBias[1]", 1, float32(math.NaN()), "F32"},
	} {
		file := saveAs(t, w, cfg, xattn.Diffusers, bad.dtype, func(ts []xattn.Tensor) func() {
			for _, x := range ts {
				if x.Name == bad.tensor {
					old := x.Data[bad.i]
					x.Data[bad.i] = bad.value
					return func() { x.Data[bad.i] = old }
				}
			}
			t.Fatalf("no tensor %s", bad.tensor)
			return nil
		})
		for _, prec := range []xattn.Precision{xattn.FP32, xattn.BF16} {
			_, err := xattn.LoadLayer(bytes.NewReader(file), int64(len(file)), cfg, xattn.Diffusers, "blk", xattn.WithPrecision(prec))
			if !errors.Is(err, xattn.ErrWeights) || !strings.Contains(err.Error(), bad.name) {
				t.Errorf("%s = %v in %s, %v: got %v, want ErrWeights naming %s", bad.name, bad.value, bad.dtype, prec, err, bad.name)
			}
		}
	}
	file := saveAs(t, w, cfg, xattn.Diffusers, "BF16")
	for name, c := range map[string]struct {
		err  error
		call func() error
	}{
		"nil option": {xattn.ErrConfig, func() error {
			_, err := xattn.LoadLayer(bytes.NewReader(file), int64(len(file)), cfg, xattn.Diffusers, "blk", nil)
			return err
		}},
		"bad config": {xattn.ErrConfig, func() error {
			_, err := xattn.LoadLayer(bytes.NewReader(file), int64(len(file)), xattn.Config{}, xattn.Diffusers, "blk")
			return err
		}},
		"wrong prefix": {xattn.ErrWeights, func() error {
			_, err := xattn.LoadLayer(bytes.NewReader(file), int64(len(file)), cfg, xattn.Diffusers, "other", xattn.WithPrecision(xattn.BF16))
			return err
		}},
		"wrong mapping": {xattn.ErrWeights, func() error {
			_, err := xattn.LoadLayer(bytes.NewReader(file), int64(len(file)), cfg, xattn.Plain, "blk", xattn.WithPrecision(xattn.BF16))
			return err
		}},
		"malformed file": {xattn.ErrFormat, func() error {
			b := testutil.RawSafetensors("{", nil)
			_, err := xattn.LoadLayer(bytes.NewReader(b), int64(len(b)), cfg, xattn.Diffusers, "blk", xattn.WithPrecision(xattn.BF16))
			return err
		}},
		"no file": {nil, func() error {
			_, err := xattn.LoadLayerFile(t.TempDir()+"/none.safetensors", cfg, xattn.Diffusers, "blk")
			return err
		}},
	} {
		err := c.call()
		if err == nil || c.err != nil && !errors.Is(err, c.err) {
			t.Errorf("%s: got %v, want %v", name, err, c.err)
		}
	}
}

// roundWeights returns a copy of w with every value rounded to dtype as a
// file of it stores them (F32: as they are).
func roundWeights(w *xattn.Weights, dtype string) *xattn.Weights {
	r := func(v []float32) []float32 {
		if v == nil {
			return nil
		}
		out := make([]float32, len(v))
		for i, x := range v {
			out[i] = x
			if dtype != "F32" {
				out[i] = float32(testutil.Round16Ref64(float64(x), dtype == "BF16"))
			}
		}
		return out
	}
	return &xattn.Weights{Q: r(w.Q), K: r(w.K), V: r(w.V), Out: r(w.Out),
		QBias: r(w.QBias), KBias: r(w.KBias), VBias: r(w.VBias), OutBias: r(w.OutBias)}
}
