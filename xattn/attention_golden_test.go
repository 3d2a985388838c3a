package xattn_test

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// coreGolden is the metadata of testdata/golden/attention_core.safetensors,
// which scripts/golden.py (attention_core) wrote: projected operands, and
// the float64 outputs of PyTorch for each case.
type coreGolden struct {
	Torch  string                `json:"torch"`
	Config xattn.AttentionConfig `json:"config"`
	Batch  int                   `json:"batch"`
	Tk     int                   `json:"tk"`
	Cases  []struct {
		Name string `json:"name"`
		Q    string `json:"q"`
		Tq   int    `json:"tq"`
		Out  string `json:"out"`
		Mask struct {
			Causal     bool            `json:"causal"`
			LowerRight bool            `json:"lower_right"`
			Window     int             `json:"window"`
			KeyLen     []int           `json:"keylen"`
			ALiBi      json.RawMessage `json:"alibi"`
			Bias       bool            `json:"bias"`
		} `json:"mask"`
	} `json:"cases"`
}

// TestAttentionPyTorch runs Attention on PyTorch's operands, dense and in a
// fused [q|k|v]-like padded layout, on every backend and variant, against
// PyTorch's float64 core (GQA 6/2, Tq = 7 and 1 over Tk = 13, causal both
// ways, windows of 1, 4, 5 and past Tk, key lengths with an empty row,
// ALiBi standard and given, a bias with −Inf).
func TestAttentionPyTorch(t *testing.T) {
	f := openSafetensors(t, filepath.Join("testdata", "golden", "attention_core.safetensors"))
	var g coreGolden
	if err := json.Unmarshal([]byte(f.Metadata()["golden"]), &g); err != nil {
		t.Fatal(err)
	}
	k, v := goldenTensor(t, f, "k").Data, goldenTensor(t, f, "v").Data
	bias := goldenTensor(t, f, "bias")
	for _, be := range structBackends(t) {
		a, err := xattn.NewAttention(g.Config, xattn.WithBackend(be), xattn.WithTile(4, 8), xattn.WithThreads(2), xattn.WithSerialFLOPs(0))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range g.Cases {
			q := goldenTensor(t, f, c.Q).Data
			s := xattn.Shape{Batch: g.Batch, Tq: c.Tq, Tk: g.Tk}
			m := &xattn.Mask{Causal: c.Mask.Causal, CausalLowerRight: c.Mask.LowerRight, Window: c.Mask.Window, KeyLen: c.Mask.KeyLen}
			if len(c.Mask.ALiBi) > 0 {
				m.ALiBi = &xattn.ALiBi{}
				if string(c.Mask.ALiBi) != `"standard"` {
					if err := json.Unmarshal(c.Mask.ALiBi, &m.ALiBi.Slopes); err != nil {
						t.Fatal(err)
					}
				}
			}
			if c.Mask.Bias {
				m.Bias = &xattn.BiasMask{Data: bias.Data, Batch: g.Batch, Heads: g.Config.Heads, Rows: c.Tq}
			}
			want := goldenTensor(t, f, c.Out).Data
			w64 := make([]float64, len(want))
			for i, x := range want {
				w64[i] = float64(x)
			}
			out := make([]float32, len(want))
			if err := a.ForwardInto(out, q, k, v, s, m); err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			diff, norm := maxAbsDiff(out, w64)
			if diff > tolerance(norm) {
				t.Errorf("backend=%s case=%s: max |out−torch| = %.3g, bound %.3g", blas.Kernels(be), c.Name, diff, tolerance(norm))
			}
			// The same operands one row of a wider buffer each.
			pad := func(x []float32, w, extra int) []float32 {
				r := make([]float32, len(x)/w*(w+extra))
				for i := range len(x) / w {
					copy(r[i*(w+extra):], x[i*w:(i+1)*w])
				}
				return r
			}
			h, kv, dh, dv := g.Config.Heads, g.Config.KVHeads, g.Config.HeadDim, g.Config.ValueHeadDim
			ld := xattn.Strides{Q: h*dh + 5, K: kv*dh + 2, V: kv*dv + 7, Out: h*dv + 1}
			pout := make([]float32, len(out)/(h*dv)*ld.Out)
			if err := a.ForwardStrided(pout, pad(q, h*dh, 5), pad(k, kv*dh, 2), pad(v, kv*dv, 7), s, m, ld); err != nil {
				t.Fatalf("%s strided: %v", c.Name, err)
			}
			for i := range len(out) / (h * dv) {
				copy(out[i*h*dv:(i+1)*h*dv], pout[i*ld.Out:])
			}
			if diff, norm := maxAbsDiff(out, w64); diff > tolerance(norm) {
				t.Errorf("backend=%s case=%s strided: max |out−torch| = %.3g, bound %.3g", blas.Kernels(be), c.Name, diff, tolerance(norm))
			}
		}
	}
	t.Logf("torch %s, %d cases", g.Torch, len(g.Cases))
}
