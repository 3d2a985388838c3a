package safetensors_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
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

var updateCorpus = flag.Bool("update-safetensors-corpus", false, "rewrite testdata/fuzz/FuzzReadSafetensors")

// FuzzReadSafetensors feeds arbitrary bytes to the reader. A file it accepts
// must be consistent: every tensor inside the file, the buffer tiled exactly,
// each float tensor readable and rewritable bit for bit, and loading weights
// from it must fail with a sentinel error or succeed, never panic. Its seed
// corpus (testdata/fuzz/FuzzReadSafetensors) holds the golden files and the
// malformed files of TestReadSafetensorsMalformed; rewrite it with
// -update-safetensors-corpus.
func FuzzReadSafetensors(f *testing.F) {
	seeds := map[string][]byte{}
	for _, c := range malformedFiles() {
		seeds["malformed-"+c.name] = c.data
	}
	var buf bytes.Buffer
	w, _ := xattn.NewWeights(xattn.Config{QueryDim: 2, Heads: 1, HeadDim: 2, Bias: true}, 1)
	ts, _ := w.Tensors(xattn.Config{QueryDim: 2, Heads: 1, HeadDim: 2, Bias: true}, xattn.Plain, "")
	for _, dtype := range []string{"F32", "F16", "BF16"} {
		buf.Reset()
		if err := safetensors.Write(&buf, ts, dtype, map[string]string{"format": "pt"}); err != nil {
			f.Fatal(err)
		}
		seeds["valid-plain-"+dtype] = slices.Clone(buf.Bytes())
	}
	seeds["valid-empty"] = testutil.RawSafetensors("{}", nil)
	seeds["valid-mixed"] = testutil.RawSafetensors(`{"a":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"b":{"dtype":"F64","shape":[1,1],"data_offsets":[8,16]},"z":{"dtype":"F16","shape":[0],"data_offsets":[16,16]}}`, make([]byte, 16))
	if *updateCorpus {
		dir := filepath.Join("testdata", "fuzz", "FuzzReadSafetensors")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			f.Fatal(err)
		}
		golden, _ := filepath.Glob(filepath.Join("..", "testdata", "golden", "*.safetensors"))
		for _, p := range golden {
			if strings.HasSuffix(p, "_io.safetensors") {
				continue // large; the weights files cover the same ground
			}
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			seeds["golden-"+strings.TrimSuffix(filepath.Base(p), ".safetensors")] = b
		}
		for name, b := range seeds {
			text := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				f.Fatal(err)
			}
		}
	}
	for _, b := range seeds {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := readBytes(data)
		if err != nil {
			if !errors.Is(err, safetensors.ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		headerEnd := 8 + int64(binary.LittleEndian.Uint64(data))
		var covered int64
		var floats []safetensors.Tensor
		for _, name := range sf.Names() {
			info, ok := sf.Info(name)
			if !ok {
				t.Fatalf("Info(%q) missing", name)
			}
			if info.Offset < headerEnd || info.Offset+info.Size > int64(len(data)) {
				t.Fatalf("%q: bytes %d+%d outside the buffer [%d, %d)", name, info.Offset, info.Size, headerEnd, len(data))
			}
			covered += info.Size
			raw, err := sf.Bytes(name)
			if err != nil || !bytes.Equal(raw, data[info.Offset:info.Offset+info.Size]) {
				t.Fatalf("Bytes(%q) = %v", name, err)
			}
			x, err := sf.Tensor(name)
			switch info.DType {
			case "F32", "F16", "BF16", "F64":
				if err != nil {
					t.Fatalf("Tensor(%q): %v", name, err)
				}
				if len(x.Data) != info.Len() || int64(info.Len())*map[string]int64{"F32": 4, "F16": 2, "BF16": 2, "F64": 8}[info.DType] != info.Size {
					t.Fatalf("%q: %d values for %s%v in %d bytes", name, len(x.Data), info.DType, info.Shape, info.Size)
				}
				floats = append(floats, x)
			default:
				if !errors.Is(err, safetensors.ErrTensor) {
					t.Fatalf("Tensor(%q) of %s: %v", name, info.DType, err)
				}
			}
		}
		if covered != int64(len(data))-headerEnd {
			t.Fatalf("tensors cover %d of %d buffer bytes", covered, int64(len(data))-headerEnd)
		}
		// The float tensors rewrite as F32 and read back bit for bit.
		var out bytes.Buffer
		if err := safetensors.Write(&out, floats, "F32", sf.Metadata()); err != nil {
			t.Fatalf("rewriting: %v", err)
		}
		back, err := readBytes(out.Bytes())
		if err != nil {
			t.Fatalf("reading the rewritten file: %v", err)
		}
		for _, x := range floats {
			y, err := back.Tensor(x.Name)
			if err != nil || !slices.Equal(x.Shape, y.Shape) ||
				!slices.EqualFunc(x.Data, y.Data, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
				t.Fatalf("%q does not round-trip: %v", x.Name, err)
			}
		}
		// Loading weights fails cleanly or succeeds.
		xf, err := xattn.ReadSafetensors(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("xattn.ReadSafetensors rejects what Read accepts: %v", err)
		}
		for _, m := range []xattn.Mapping{xattn.Diffusers, xattn.TorchMHA, xattn.Plain} {
			for _, cfg := range []xattn.Config{{QueryDim: 2, Heads: 1, HeadDim: 2, Bias: true}, {QueryDim: 2, Heads: 1, HeadDim: 2}} {
				w, err := xf.Weights(cfg, m, "")
				if err == nil {
					_, err = xattn.New(cfg, w)
				}
				if err != nil && !errors.Is(err, xattn.ErrWeights) && !errors.Is(err, xattn.ErrConfig) {
					t.Fatalf("Weights(%s): %v", m, err)
				}
			}
		}
	})
}
