package xattn_test

import (
	"encoding/json"
	"math"
	"path/filepath"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// TestRoPEPyTorch runs causal self-attention with RoPE on the weights and
// inputs of testdata/golden/rope.safetensors (scripts/golden.py, rope):
// Hugging Face's half-split (Llama, GPT-NeoX) and interleaved (GPT-J)
// pairings, whole and partial, computed by PyTorch in float64; on every
// backend and variant, through ForwardInto and through a KV cache decoded
// in steps of 5, 1 and 3 positions (queries and keys at the cache offset).
func TestRoPEPyTorch(t *testing.T) {
	f := openSafetensors(t, filepath.Join("testdata", "golden", "rope.safetensors"))
	var g struct {
		Torch  string       `json:"torch"`
		Config xattn.Config `json:"config"`
		Batch  int          `json:"batch"`
		T      int          `json:"t"`
		Cases  []struct {
			Name        string  `json:"name"`
			Dims        int     `json:"dims"`
			Base        float64 `json:"base"`
			Interleaved bool    `json:"interleaved"`
			Y           string  `json:"y"`
		} `json:"cases"`
	}
	if err := json.Unmarshal([]byte(f.Metadata()["golden"]), &g); err != nil {
		t.Fatal(err)
	}
	get := func(name string) []float32 { return goldenTensor(t, f, name).Data }
	w := &xattn.Weights{
		Q: get("q_proj.weight"), K: get("k_proj.weight"), V: get("v_proj.weight"), Out: get("out_proj.weight"),
		QBias: get("q_proj.bias"), KBias: get("k_proj.bias"), VBias: get("v_proj.bias"), OutBias: get("out_proj.bias"),
	}
	x := get("x")
	d := g.Config.QueryDim
	s := xattn.Shape{Batch: g.Batch, Tq: g.T, Tk: g.T}
	for _, be := range structBackends(t) {
		for _, c := range g.Cases {
			r := xattn.RoPE{Base: c.Base, Dims: c.Dims, Interleaved: c.Interleaved}
			l, err := xattn.New(g.Config, w, xattn.WithBackend(be), xattn.WithRoPE(r), xattn.WithThreads(2), xattn.WithTile(4, 4), xattn.WithSerialFLOPs(0))
			if err != nil {
				t.Fatal(err)
			}
			want := get(c.Y)
			w64 := make([]float64, len(want))
			for i, v := range want {
				w64[i] = float64(v)
			}
			y := make([]float32, len(want))
			if err := l.ForwardInto(y, x, nil, s, &xattn.Mask{Causal: true}); err != nil {
				t.Fatal(err)
			}
			if diff, norm := maxAbsDiff(y, w64); diff > tolerance(norm) || math.IsNaN(diff) {
				t.Errorf("backend=%s case=%s: max |y−torch| = %.3g, bound %.3g", blas.Kernels(be), c.Name, diff, tolerance(norm))
			}
			// Decoding: the rows of each step, at their positions.
			kv, err := l.NewKVCache(g.Batch, g.T)
			if err != nil {
				t.Fatal(err)
			}
			for _, tq := range []int{5, 1, 3} {
				n := kv.Len()
				xs := make([]float32, 0, g.Batch*tq*d)
				ws := make([]float64, 0, g.Batch*tq*d)
				for b := range g.Batch {
					xs = append(xs, x[(b*g.T+n)*d:(b*g.T+n+tq)*d]...)
					ws = append(ws, w64[(b*g.T+n)*d:(b*g.T+n+tq)*d]...)
				}
				ys := make([]float32, len(xs))
				if err := l.ForwardStep(ys, xs, kv, tq, nil); err != nil {
					t.Fatal(err)
				}
				if diff, norm := maxAbsDiff(ys, ws); diff > tolerance(norm) || math.IsNaN(diff) {
					t.Errorf("backend=%s case=%s: step at %d of %d: max |y−torch| = %.3g, bound %.3g",
						blas.Kernels(be), c.Name, n, tq, diff, tolerance(norm))
				}
			}
		}
	}
	t.Logf("torch %s, %d cases", g.Torch, len(g.Cases))
}
