package xattn_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// The parity tests run modules that PyTorch ran, from the files that
// scripts/golden.py wrote under testdata/golden: for each module its weights
// (<module>.safetensors) and its inputs, masks and outputs
// (<module>_io.safetensors), whose "golden" metadata describes the cases.

type goldenMeta struct {
	Module     string       `json:"module"`
	Torch      string       `json:"torch"`
	Mapping    string       `json:"mapping"`
	Weights    string       `json:"weights"`
	Prefix     string       `json:"prefix"`
	Config     xattn.Config `json:"config"`
	Convention string       `json:"convention"` // "mha" or "sdpa"
	Cases      []goldenCase `json:"cases"`
}

type goldenCase struct {
	Name           string `json:"name"`
	Route          string `json:"route"` // "self", "cross" or "qkv"
	KeyPaddingMask string `json:"key_padding_mask"`
	AttnMask       string `json:"attn_mask"`
	IsCausal       bool   `json:"is_causal"`
	Y              string `json:"y"`
	TorchPath      string `json:"torch_path"` // MultiheadAttention: "fast" or "slow"
	NaNRows        int    `json:"nan_rows"`
	// Struct, when not nil, is a structural mask, which the Go side builds
	// as a Mask of its own (Window, CausalLowerRight, ALiBi).
	Struct *goldenStruct `json:"struct"`
}

// goldenStruct is a structural mask of a golden case.
type goldenStruct struct {
	Causal     bool            `json:"causal"`
	LowerRight bool            `json:"lower_right"`
	Window     int             `json:"window"`
	ALiBi      json.RawMessage `json:"alibi"` // "standard" or the slopes
}

// apply adds the structural parts of g to m (nil for a new Mask).
func (g *goldenStruct) apply(t testing.TB, m *xattn.Mask) *xattn.Mask {
	t.Helper()
	if m == nil {
		m = &xattn.Mask{}
	}
	m.Causal = m.Causal || g.Causal
	m.CausalLowerRight, m.Window = g.LowerRight, g.Window
	if len(g.ALiBi) > 0 {
		m.ALiBi = &xattn.ALiBi{}
		if string(g.ALiBi) != `"standard"` {
			if err := json.Unmarshal(g.ALiBi, &m.ALiBi.Slopes); err != nil {
				t.Fatalf("alibi %s: %v", g.ALiBi, err)
			}
		}
	}
	return m
}

// goldenModule is one module's golden data, loaded.
type goldenModule struct {
	name    string
	meta    goldenMeta
	mapping xattn.Mapping
	io      *xattn.SafetensorsFile
	w       *xattn.Weights
}

func parseMapping(t testing.TB, s string) xattn.Mapping {
	t.Helper()
	for _, m := range []xattn.Mapping{xattn.Diffusers, xattn.TorchMHA, xattn.Plain} {
		if m.String() == s {
			return m
		}
	}
	t.Fatalf("unknown mapping %q", s)
	return 0
}

// openSafetensors reads a whole file and parses it.
func openSafetensors(t testing.TB, path string) *xattn.SafetensorsFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := xattn.ReadSafetensors(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

func loadGolden(t testing.TB) []goldenModule {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "golden", "*_io.safetensors"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden files (run scripts/golden.py): %v", err)
	}
	var mods []goldenModule
	for _, p := range paths {
		g := goldenModule{name: strings.TrimSuffix(filepath.Base(p), "_io.safetensors")}
		g.io = openSafetensors(t, p)
		if err := json.Unmarshal([]byte(g.io.Metadata()["golden"]), &g.meta); err != nil {
			t.Fatalf("%s: metadata: %v", p, err)
		}
		g.mapping = parseMapping(t, g.meta.Mapping)
		g.w, err = xattn.LoadWeightsFile(filepath.Join("testdata", "golden", g.meta.Weights), g.meta.Config, g.mapping, g.meta.Prefix)
		if err != nil {
			t.Fatalf("%s: %v", g.meta.Weights, err)
		}
		mods = append(mods, g)
	}
	return mods
}

func goldenTensor(t testing.TB, f *xattn.SafetensorsFile, name string) xattn.Tensor {
	t.Helper()
	x, err := f.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// torchMask reads a mask of the golden file as PyTorch had it.
func torchMask(t testing.TB, f *xattn.SafetensorsFile, name string) *xattn.TorchMask {
	t.Helper()
	if name == "" {
		return nil
	}
	info, _ := f.Info(name)
	if info.DType == "BOOL" {
		b, err := f.Bytes(name)
		if err != nil {
			t.Fatal(err)
		}
		m := &xattn.TorchMask{Shape: info.Shape, Bool: make([]bool, len(b))}
		for i, v := range b {
			m.Bool[i] = v != 0
		}
		return m
	}
	x := goldenTensor(t, f, name)
	return &xattn.TorchMask{Shape: x.Shape, Float: x.Data}
}

// TestParityPyTorch runs every golden case on every backend and compares
// with PyTorch's output: max |Δ| ≤ 1e-5·max(1, ‖ref‖∞). Where PyTorch gives a
// NaN row (a query that sees no key), xattn must give the output bias.
func TestParityPyTorch(t *testing.T) {
	for _, g := range loadGolden(t) {
		t.Run("module="+g.name, func(t *testing.T) {
			cfg := g.meta.Config
			x := goldenTensor(t, g.io, "x")
			var key, value []float32
			tk := 0
			for _, name := range []string{"context", "key"} {
				if info, ok := g.io.Info(name); ok {
					key = goldenTensor(t, g.io, name).Data
					tk = info.Shape[1]
				}
			}
			if _, ok := g.io.Info("value"); ok {
				value = goldenTensor(t, g.io, "value").Data
			}
			bes := blas.All()
			if g.name == "structural" {
				bes = structBackends(t) // every variant: these masks are computed in the row passes
			}
			for _, be := range bes {
				t.Run("backend="+blas.Kernels(be), func(t *testing.T) {
					l, err := xattn.New(cfg, g.w, xattn.WithBackend(be))
					if err != nil {
						t.Fatal(err)
					}
					for _, c := range g.meta.Cases {
						t.Run("case="+c.Name, func(t *testing.T) {
							s := xattn.Shape{Batch: x.Shape[0], Tq: x.Shape[1], Tk: tk}
							if c.Route == "self" {
								s.Tk = s.Tq
							}
							var m *xattn.Mask
							var err error
							switch g.meta.Convention {
							case "mha":
								m, err = xattn.MaskFromTorchMHA(s, cfg.Heads,
									torchMask(t, g.io, c.KeyPaddingMask), torchMask(t, g.io, c.AttnMask))
							case "sdpa":
								m, err = xattn.MaskFromTorchSDPA(s, cfg.Heads, torchMask(t, g.io, c.AttnMask), c.IsCausal)
							default:
								t.Fatalf("convention %q", g.meta.Convention)
							}
							if err != nil {
								t.Fatal(err)
							}
							if c.Struct != nil {
								m = c.Struct.apply(t, m)
							}
							want := goldenTensor(t, g.io, c.Y).Data
							y := make([]float32, len(want))
							switch c.Route {
							case "self":
								err = l.ForwardInto(y, x.Data, nil, s, m)
							case "cross":
								err = l.ForwardInto(y, x.Data, key, s, m)
							case "qkv":
								err = l.ForwardQKV(y, x.Data, key, value, s, m)
							default:
								t.Fatalf("route %q", c.Route)
							}
							if err != nil {
								t.Fatal(err)
							}
							diff, norm, nanRows := compareGolden(t, y, want, g.w.OutBias)
							if nanRows != c.NaNRows {
								t.Errorf("%d NaN rows in PyTorch's output, metadata says %d", nanRows, c.NaNRows)
							}
							tol := 1e-5 * math.Max(1, norm)
							if diff > tol {
								t.Errorf("max |Δ| = %.3g > %.3g (‖ref‖∞ = %.3g)", diff, tol, norm)
							}
							t.Logf("parity mapping=%s module=%s case=%s backend=%s torch=%s: max|Δ| = %.3g (‖ref‖∞ = %.3g), %d fully masked rows",
								g.mapping, g.name, c.Name, be.Name(), c.TorchPath, diff, norm, nanRows)
						})
					}
				})
			}
		})
	}
}

// compareGolden returns max |got − want| over the rows where want has no NaN
// and ‖want‖∞ over them; rows where want has NaN must equal the output bias
// in got (to 1e-6), and are counted.
func compareGolden(t *testing.T, got, want, outBias []float32) (diff, norm float64, nanRows int) {
	t.Helper()
	d := len(outBias)
	for r := 0; r*d < len(want); r++ {
		g, w := got[r*d:(r+1)*d], want[r*d:(r+1)*d]
		if slices.ContainsFunc(w, func(v float32) bool { return v != v }) {
			nanRows++
			for j, v := range g {
				if math.Abs(float64(v-outBias[j])) > 1e-6 {
					t.Errorf("row %d: PyTorch gives NaN (no key seen); want the output bias %v, got %v", r, outBias, g)
					break
				}
			}
			continue
		}
		for j := range w {
			diff = math.Max(diff, math.Abs(float64(g[j])-float64(w[j])))
			norm = math.Max(norm, math.Abs(float64(w[j])))
		}
	}
	return diff, norm, nanRows
}

// TestGoldenTorchBehaviour pins what the golden files record about PyTorch
// 1.13: MultiheadAttention gives NaN rows for fully masked queries on its fast
// path (self-attention, no attn_mask) and its slow path alike.
func TestGoldenTorchBehaviour(t *testing.T) {
	paths := map[string]int{}
	for _, g := range loadGolden(t) {
		for _, c := range g.meta.Cases {
			if c.NaNRows > 0 {
				paths[fmt.Sprintf("%s/%s", g.meta.Convention, c.TorchPath)]++
			}
		}
	}
	for _, want := range []string{"mha/fast", "mha/slow", "sdpa/"} {
		if paths[want] == 0 {
			t.Errorf("no golden case with fully masked rows for %q (have %v)", want, paths)
		}
	}
}

// TestParityWithoutKeyBias backs the claim of [xattn.Mapping] that a key bias
// does not change the output (so Whisper's missing k_proj.bias loads as
// zero): PyTorch's outputs of the plain module, which has a key bias, are
// reproduced with the key bias dropped.
func TestParityWithoutKeyBias(t *testing.T) {
	for _, g := range loadGolden(t) {
		if g.name != "plain" {
			continue
		}
		w := *g.w
		w.KBias = make([]float32, len(w.KBias))
		l, err := xattn.New(g.meta.Config, &w)
		if err != nil {
			t.Fatal(err)
		}
		x, ctx := goldenTensor(t, g.io, "x"), goldenTensor(t, g.io, "context")
		want := goldenTensor(t, g.io, "none.y").Data
		s := xattn.Shape{Batch: x.Shape[0], Tq: x.Shape[1], Tk: ctx.Shape[1]}
		y, err := l.Forward(x.Data, ctx.Data, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		diff, norm, _ := compareGolden(t, y, want, w.OutBias)
		if diff > 1e-5*math.Max(1, norm) {
			t.Errorf("without the key bias: max |Δ| = %.3g", diff)
		}
		return
	}
	t.Fatal("no plain golden module")
}
