package xattn_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xattn/xattn/internal/testutil"
	"github.com/xattn/xattn/xattn"
	"github.com/xattn/xattn/xattn/safetensors"
)

func readBytes(b []byte) (*xattn.SafetensorsFile, error) {
	return xattn.ReadSafetensors(bytes.NewReader(b), int64(len(b)))
}

// TestSafetensorsWrappers checks that the safetensors API of package xattn,
// which package safetensors implements, keeps its errors: a malformed file
// wraps ErrFormat (the same value as safetensors.ErrFormat), a bad request
// ErrWeights (and safetensors.ErrTensor), and the file is the one read.
func TestSafetensorsWrappers(t *testing.T) {
	if xattn.ErrFormat != safetensors.ErrFormat {
		t.Fatal("xattn.ErrFormat is not safetensors.ErrFormat")
	}
	if _, err := readBytes(testutil.RawSafetensors("{", nil)); !errors.Is(err, xattn.ErrFormat) {
		t.Errorf("malformed header: got %v, want ErrFormat", err)
	}
	b := testutil.RawSafetensors(`{"i":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},"f":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`,
		binary.LittleEndian.AppendUint32(make([]byte, 8), math.Float32bits(1.5)))
	f, err := readBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Names(), f.File().Names(); !slices.Equal(got, want) || len(got) != 2 {
		t.Errorf("Names() = %v, File().Names() = %v", got, want)
	}
	if x, err := f.Tensor("f"); err != nil || !slices.Equal(x.Data, []float32{1.5}) {
		t.Errorf("Tensor(f) = %v, %v", x, err)
	}
	if info, ok := f.Info("i"); !ok || info.DType != "I32" || info.Len() != 2 {
		t.Errorf("Info(i) = %+v, %v", info, ok)
	}
	for name, err := range map[string]error{
		"Tensor of I32":     func() error { _, err := f.Tensor("i"); return err }(),
		"Tensor of missing": func() error { _, err := f.Tensor("nope"); return err }(),
		"Bytes of missing":  func() error { _, err := f.Bytes("nope"); return err }(),
		"Write of F64":      xattn.WriteSafetensors(io.Discard, nil, "F64", nil),
	} {
		if !errors.Is(err, xattn.ErrWeights) || !errors.Is(err, safetensors.ErrTensor) || errors.Is(err, xattn.ErrFormat) {
			t.Errorf("%s: got %v, want ErrWeights", name, err)
		}
	}
}

// mappingConfigs are layer shapes each mapping can hold.
func mappingConfigs(m xattn.Mapping) []xattn.Config {
	if m == xattn.TorchMHA {
		return []xattn.Config{
			{QueryDim: 8, Heads: 2, HeadDim: 4, Bias: true},
			{QueryDim: 8, Heads: 2, HeadDim: 4},
			{QueryDim: 6, ContextDim: 5, ValueDim: 3, Heads: 3, HeadDim: 2, Bias: true},
			{QueryDim: 6, ContextDim: 5, Heads: 1, HeadDim: 6},
		}
	}
	return []xattn.Config{
		{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 5},
		{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 5, Bias: true, OutDim: 3},
		{QueryDim: 7, ContextDim: 5, ValueDim: 4, Heads: 4, KVHeads: 2, HeadDim: 3, ValueHeadDim: 2, Bias: true},
	}
}

var mappings = []xattn.Mapping{xattn.Diffusers, xattn.TorchMHA, xattn.Plain}

func weightsEqual(a, b *xattn.Weights) bool {
	bits := func(x, y []float32) bool {
		return (x == nil) == (y == nil) && slices.EqualFunc(x, y, func(p, q float32) bool { return math.Float32bits(p) == math.Float32bits(q) })
	}
	return bits(a.Q, b.Q) && bits(a.K, b.K) && bits(a.V, b.V) && bits(a.Out, b.Out) &&
		bits(a.QBias, b.QBias) && bits(a.KBias, b.KBias) && bits(a.VBias, b.VBias) && bits(a.OutBias, b.OutBias)
}

// TestSaveLoadRoundTrip saves weights under every mapping and loads them
// back: exactly in F32, rounded in F16 and BF16.
func TestSaveLoadRoundTrip(t *testing.T) {
	for _, m := range mappings {
		for i, cfg := range mappingConfigs(m) {
			for _, prefix := range []string{"", "blocks.3.attn", "blocks.3.attn."} {
				t.Run(fmt.Sprintf("mapping=%s/cfg=%d/prefix=%q", m, i, prefix), func(t *testing.T) {
					w, err := xattn.NewWeights(cfg, uint64(i))
					if err != nil {
						t.Fatal(err)
					}
					var buf bytes.Buffer
					if err := w.Save(&buf, cfg, m, prefix); err != nil {
						t.Fatal(err)
					}
					b := buf.Bytes()
					got, err := xattn.LoadWeights(bytes.NewReader(b), int64(len(b)), cfg, m, prefix)
					if err != nil {
						t.Fatal(err)
					}
					if !weightsEqual(got, w) {
						t.Error("weights differ after Save and LoadWeights")
					}
					f, _ := readBytes(b)
					if f.Metadata()["format"] != "pt" {
						t.Errorf("metadata %v", f.Metadata())
					}
					for _, name := range f.Names() {
						if p := strings.TrimSuffix(prefix, ".") + "."; prefix != "" && !strings.HasPrefix(name, p) {
							t.Errorf("tensor %q lacks the prefix %q", name, p)
						}
					}
					// The other forms of the prefix load the same file.
					if prefix != "" {
						other := strings.TrimSuffix(prefix, ".")
						if other == prefix {
							other += "."
						}
						if _, err := xattn.LoadWeights(bytes.NewReader(b), int64(len(b)), cfg, m, other); err != nil {
							t.Errorf("prefix %q: %v", other, err)
						}
					}
					for _, dtype := range []string{"F16", "BF16"} {
						ts, err := w.Tensors(cfg, m, prefix)
						if err != nil {
							t.Fatal(err)
						}
						var buf bytes.Buffer
						if err := xattn.WriteSafetensors(&buf, ts, dtype, nil); err != nil {
							t.Fatal(err)
						}
						got, err := xattn.LoadWeights(bytes.NewReader(buf.Bytes()), int64(buf.Len()), cfg, m, prefix)
						if err != nil {
							t.Fatal(err)
						}
						for _, p := range [][2][]float32{{got.Q, w.Q}, {got.K, w.K}, {got.V, w.V}, {got.Out, w.Out}, {got.OutBias, w.OutBias}, {got.QBias, w.QBias}} {
							for j := range p[0] {
								if want := testutil.Round16Ref64(float64(p[1][j]), dtype == "BF16"); float64(p[0][j]) != want {
									t.Fatalf("%s: %g loads as %g, want %g", dtype, p[1][j], p[0][j], want)
								}
							}
						}
					}
				})
			}
		}
	}
}

// TestMappingNames pins the tensor names and shapes of each mapping.
func TestMappingNames(t *testing.T) {
	names := func(m xattn.Mapping, cfg xattn.Config) string {
		w, err := xattn.NewWeights(cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		ts, err := w.Tensors(cfg, m, "p")
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, x := range ts {
			s = append(s, fmt.Sprintf("%s%v", x.Name, x.Shape))
		}
		return strings.Join(s, " ")
	}
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 5, Bias: true, OutDim: 3}
	mha := xattn.Config{QueryDim: 8, Heads: 2, HeadDim: 4, Bias: true}
	for _, c := range []struct {
		m    xattn.Mapping
		cfg  xattn.Config
		want string
	}{
		{xattn.Diffusers, cfg, "p.to_q.weight[10 8] p.to_k.weight[10 6] p.to_v.weight[10 6] p.to_out.0.weight[3 10] p.to_out.0.bias[3] p.to_q.bias[10] p.to_k.bias[10] p.to_v.bias[10]"},
		{xattn.Plain, cfg, "p.q_proj.weight[10 8] p.k_proj.weight[10 6] p.v_proj.weight[10 6] p.out_proj.weight[3 10] p.out_proj.bias[3] p.q_proj.bias[10] p.k_proj.bias[10] p.v_proj.bias[10]"},
		{xattn.TorchMHA, mha, "p.in_proj_weight[24 8] p.out_proj.weight[8 8] p.out_proj.bias[8] p.in_proj_bias[24]"},
		{xattn.TorchMHA, xattn.Config{QueryDim: 8, ContextDim: 6, ValueDim: 5, Heads: 2, HeadDim: 4},
			"p.q_proj_weight[8 8] p.k_proj_weight[8 6] p.v_proj_weight[8 5] p.out_proj.weight[8 8] p.out_proj.bias[8]"},
	} {
		if got := names(c.m, c.cfg); got != c.want {
			t.Errorf("%s %v:\n got %s\nwant %s", c.m, c.cfg, got, c.want)
		}
	}
	// MultiheadAttention(bias=False) has no out_proj.bias: a zero one is left out.
	cfg = xattn.Config{QueryDim: 8, Heads: 2, HeadDim: 4}
	w, _ := xattn.NewWeights(cfg, 1)
	clear(w.OutBias)
	ts, _ := w.Tensors(cfg, xattn.TorchMHA, "")
	if len(ts) != 2 {
		t.Errorf("bias=False MHA: %d tensors, want in_proj_weight and out_proj.weight", len(ts))
	}
}

// TestLoadWeightsErrors breaks a valid file in every way the loader must
// notice.
func TestLoadWeightsErrors(t *testing.T) {
	cfg := xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 5, Bias: true}
	w, _ := xattn.NewWeights(cfg, 1)
	base, err := w.Tensors(cfg, xattn.Diffusers, "blk")
	if err != nil {
		t.Fatal(err)
	}
	file := func(ts []xattn.Tensor) []byte {
		var buf bytes.Buffer
		if err := xattn.WriteSafetensors(&buf, ts, "F32", nil); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	without := func(name string) []xattn.Tensor {
		return slices.DeleteFunc(slices.Clone(base), func(x xattn.Tensor) bool { return x.Name == name })
	}
	with := func(x ...xattn.Tensor) []xattn.Tensor { return append(slices.Clone(base), x...) }
	reshaped := func(name string, shape ...int) []xattn.Tensor {
		ts := slices.Clone(base)
		for i := range ts {
			if ts[i].Name == name {
				ts[i].Shape = shape
			}
		}
		return ts
	}
	nan := slices.Clone(base)
	nan[0].Data = slices.Clone(nan[0].Data)
	nan[0].Data[3] = float32(math.NaN())
	i32 := testutil.RawSafetensors(`{"blk.to_q.weight":{"dtype":"I32","shape":[10,8],"data_offsets":[0,320]}}`, make([]byte, 320))
	mha := xattn.Config{QueryDim: 8, Heads: 2, HeadDim: 4}
	wm, _ := xattn.NewWeights(mha, 2)
	mhaTs, _ := wm.Tensors(mha, xattn.TorchMHA, "")
	plainTs, _ := w.Tensors(cfg, xattn.Plain, "")
	plainNoK := slices.DeleteFunc(slices.Clone(plainTs), func(x xattn.Tensor) bool { return x.Name == "k_proj.bias" })
	plainNoQ := slices.DeleteFunc(slices.Clone(plainTs), func(x xattn.Tensor) bool { return x.Name == "q_proj.bias" })
	mhaBoth := append(slices.Clone(mhaTs), xattn.Tensor{Name: "q_proj_weight", Shape: []int{8, 8}, Data: make([]float32, 64)})

	for _, c := range []struct {
		name   string
		data   []byte
		cfg    xattn.Config
		m      xattn.Mapping
		prefix string
		want   error
	}{
		{"ok", file(base), cfg, xattn.Diffusers, "blk", nil},
		{"ok-other-tensors", file(with(xattn.Tensor{Name: "blk2.to_q.weight", Shape: []int{1}, Data: []float32{1}})), cfg, xattn.Diffusers, "blk", nil},
		{"ok-no-out-bias", file(without("blk.to_out.0.bias")), cfg, xattn.Diffusers, "blk", nil},
		{"malformed", []byte("junk"), cfg, xattn.Diffusers, "blk", xattn.ErrFormat},
		{"bad-config", file(base), xattn.Config{}, xattn.Diffusers, "blk", xattn.ErrConfig},
		{"bad-mapping", file(base), cfg, xattn.Mapping(0), "blk", xattn.ErrConfig},
		{"bad-mapping-9", file(base), cfg, xattn.Mapping(9), "blk", xattn.ErrConfig},
		{"wrong-mapping", file(base), cfg, xattn.Plain, "blk", xattn.ErrWeights},
		{"wrong-prefix", file(base), cfg, xattn.Diffusers, "block", xattn.ErrWeights},
		{"no-prefix", file(base), cfg, xattn.Diffusers, "", xattn.ErrWeights},
		{"missing-weight", file(without("blk.to_k.weight")), cfg, xattn.Diffusers, "blk", xattn.ErrWeights},
		{"missing-bias", file(without("blk.to_v.bias")), cfg, xattn.Diffusers, "blk", xattn.ErrWeights},
		{"unexpected-bias", file(base), func() xattn.Config { c := cfg; c.Bias = false; return c }(), xattn.Diffusers, "blk", xattn.ErrWeights},
		{"extra-tensor", file(with(xattn.Tensor{Name: "blk.norm_q.weight", Shape: []int{5}, Data: make([]float32, 5)})), cfg, xattn.Diffusers, "blk", xattn.ErrWeights},
		{"wrong-shape", file(reshaped("blk.to_q.weight", 8, 10)), cfg, xattn.Diffusers, "blk", xattn.ErrWeights},
		{"flat-shape", file(reshaped("blk.to_q.weight", 80)), cfg, xattn.Diffusers, "blk", xattn.ErrWeights},
		{"bias-2d", file(reshaped("blk.to_q.bias", 10, 1)), cfg, xattn.Diffusers, "blk", xattn.ErrWeights},
		{"config-mismatch", file(base), func() xattn.Config { c := cfg; c.ContextDim = 7; return c }(), xattn.Diffusers, "blk", xattn.ErrWeights},
		{"nan", file(nan), cfg, xattn.Diffusers, "blk", xattn.ErrWeights},
		{"int-dtype", i32, xattn.Config{QueryDim: 8, Heads: 2, HeadDim: 5}, xattn.Diffusers, "blk", xattn.ErrWeights},
		{"plain-no-k-bias", file(plainNoK), cfg, xattn.Plain, "", nil},
		{"plain-no-q-bias", file(plainNoQ), cfg, xattn.Plain, "", xattn.ErrWeights},
		{"diffusers-no-k-bias", file(without("blk.to_k.bias")), cfg, xattn.Diffusers, "blk", xattn.ErrWeights},
		{"mha-ok", file(mhaTs), mha, xattn.TorchMHA, "", nil},
		{"mha-both-forms", file(mhaBoth), mha, xattn.TorchMHA, "", xattn.ErrWeights},
		{"mha-config", file(mhaTs), xattn.Config{QueryDim: 8, Heads: 2, HeadDim: 3}, xattn.TorchMHA, "", xattn.ErrConfig},
		{"mha-gqa", file(mhaTs), xattn.Config{QueryDim: 8, Heads: 2, KVHeads: 1, HeadDim: 4}, xattn.TorchMHA, "", xattn.ErrConfig},
		{"mha-packed-kdim", file(mhaTs), xattn.Config{QueryDim: 8, ContextDim: 6, Heads: 2, HeadDim: 4}, xattn.TorchMHA, "", xattn.ErrWeights},
		{"mha-unexpected-bias", file(append(slices.Clone(mhaTs), xattn.Tensor{Name: "in_proj_bias", Shape: []int{24}, Data: make([]float32, 24)})), mha, xattn.TorchMHA, "", xattn.ErrWeights},
		{"mha-bias-k", file(append(slices.Clone(mhaTs), xattn.Tensor{Name: "bias_k", Shape: []int{1, 1, 8}, Data: make([]float32, 8)})), mha, xattn.TorchMHA, "", xattn.ErrWeights},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := xattn.LoadWeights(bytes.NewReader(c.data), int64(len(c.data)), c.cfg, c.m, c.prefix)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := xattn.New(c.cfg, got); err != nil {
					t.Fatalf("New with the loaded weights: %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			t.Log(err)
		})
	}
	if _, err := xattn.LoadWeightsFile(filepath.Join(t.TempDir(), "none.safetensors"), cfg, xattn.Diffusers, ""); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v", err)
	}
	// Saving checks too.
	if err := w.Save(io.Discard, cfg, xattn.TorchMHA, ""); !errors.Is(err, xattn.ErrConfig) {
		t.Errorf("Save of a non-MHA config as TorchMHA: got %v, want ErrConfig", err)
	}
	if err := w.Save(io.Discard, mha, xattn.Diffusers, ""); !errors.Is(err, xattn.ErrWeights) {
		t.Errorf("Save with a config the weights do not fit: got %v, want ErrWeights", err)
	}
	if err := w.Save(io.Discard, cfg, xattn.Mapping(0), ""); !errors.Is(err, xattn.ErrConfig) {
		t.Errorf("Save with Mapping(0): got %v, want ErrConfig", err)
	}
}

// TestGoldenWeightsRoundTrip saves the golden PyTorch weights under their
// own mapping and checks that every tensor comes back as PyTorch wrote it.
func TestGoldenWeightsRoundTrip(t *testing.T) {
	for _, g := range loadGolden(t) {
		t.Run("module="+g.name, func(t *testing.T) {
			orig := openSafetensors(t, filepath.Join("testdata", "golden", g.meta.Weights))
			var buf bytes.Buffer
			if err := g.w.Save(&buf, g.meta.Config, g.mapping, g.meta.Prefix); err != nil {
				t.Fatal(err)
			}
			saved, err := readBytes(buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range saved.Names() {
				a, err := saved.Tensor(name)
				if err != nil {
					t.Fatal(err)
				}
				b, err := orig.Tensor(name)
				if err != nil {
					t.Fatalf("saved %q, which PyTorch's file lacks: %v", name, err)
				}
				if !slices.Equal(a.Shape, b.Shape) || !slices.Equal(a.Data, b.Data) {
					t.Errorf("%s differs from PyTorch's", name)
				}
			}
			w2, err := xattn.LoadWeights(bytes.NewReader(buf.Bytes()), int64(buf.Len()), g.meta.Config, g.mapping, g.meta.Prefix)
			if err != nil {
				t.Fatal(err)
			}
			if !weightsEqual(w2, g.w) {
				t.Error("weights differ after a round trip")
			}
		})
	}
}
