package xattn_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/xattn/xattn/xattn"
)

// rawFile returns a safetensors file with the given header text and buffer.
func rawFile(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func readBytes(b []byte) (*xattn.SafetensorsFile, error) {
	return xattn.ReadSafetensors(bytes.NewReader(b), int64(len(b)))
}

// malformedFiles are files ReadSafetensors must reject with ErrFormat. They
// also seed FuzzReadSafetensors.
func malformedFiles() []struct {
	name string
	data []byte
} {
	t := func(dtype, shape, off string) string {
		return `{"t":{"dtype":"` + dtype + `","shape":` + shape + `,"data_offsets":` + off + `}}`
	}
	huge := binary.LittleEndian.AppendUint64(nil, 1<<62)
	return []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"short", []byte{2, 0, 0, 0, 0, 0, 0}},
		{"header-beyond-file", append(binary.LittleEndian.AppendUint64(nil, 100), "{}"...)},
		{"header-huge", append(huge, "{}"...)},
		{"header-max-uint64", append(binary.LittleEndian.AppendUint64(nil, math.MaxUint64), "{}"...)},
		{"header-empty", rawFile("", nil)},
		{"not-json", rawFile("{nope}", nil)},
		{"not-object", rawFile("[]", nil)},
		{"truncated-json", rawFile(`{"t":{"dtype":"F32"`, nil)},
		{"trailing-garbage", rawFile("{} x", nil)},
		{"two-objects", rawFile("{}{}", nil)},
		{"invalid-utf8", rawFile("{\"\xff\":{}}", nil)},
		{"duplicate-name", rawFile(`{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8))},
		{"duplicate-metadata", rawFile(`{"__metadata__":{},"__metadata__":{}}`, nil)},
		{"duplicate-metadata-key", rawFile(`{"__metadata__":{"a":"1","a":"2"}}`, nil)},
		{"duplicate-field", rawFile(`{"t":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4))},
		{"unknown-field", rawFile(`{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, make([]byte, 4))},
		{"missing-dtype", rawFile(`{"t":{"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4))},
		{"missing-shape", rawFile(`{"t":{"dtype":"F32","data_offsets":[0,4]}}`, make([]byte, 4))},
		{"missing-offsets", rawFile(`{"t":{"dtype":"F32","shape":[1]}}`, make([]byte, 4))},
		{"tensor-not-object", rawFile(`{"t":[1]}`, nil)},
		{"dtype-not-string", rawFile(`{"t":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4))},
		{"unknown-dtype", rawFile(t("F17", "[1]", "[0,4]"), make([]byte, 4))},
		{"sub-byte-dtype", rawFile(t("F4", "[2]", "[0,1]"), make([]byte, 1))},
		{"lowercase-dtype", rawFile(t("f32", "[1]", "[0,4]"), make([]byte, 4))},
		{"negative-dim", rawFile(t("F32", "[-1]", "[0,4]"), make([]byte, 4))},
		{"fractional-dim", rawFile(t("F32", "[1.0]", "[0,4]"), make([]byte, 4))},
		{"exponent-dim", rawFile(t("F32", "[1e0]", "[0,4]"), make([]byte, 4))},
		{"string-dim", rawFile(t("F32", `["1"]`, "[0,4]"), make([]byte, 4))},
		{"dim-beyond-uint64", rawFile(t("F32", "[18446744073709551616]", "[0,4]"), make([]byte, 4))},
		{"rank-33", rawFile(t("U8", "["+strings.Repeat("1,", 32)+"1]", "[0,1]"), make([]byte, 1))},
		{"shape-not-array", rawFile(t("F32", "1", "[0,4]"), make([]byte, 4))},
		{"offsets-one", rawFile(t("F32", "[1]", "[4]"), make([]byte, 4))},
		{"offsets-three", rawFile(t("F32", "[1]", "[0,4,8]"), make([]byte, 4))},
		{"offsets-reversed", rawFile(t("F32", "[0]", "[4,0]"), make([]byte, 4))},
		{"offsets-beyond-buffer", rawFile(t("F32", "[2]", "[0,8]"), make([]byte, 4))},
		{"offsets-huge", rawFile(t("F32", "[1]", "[18446744073709551612,18446744073709551615]"), make([]byte, 4))},
		{"size-mismatch", rawFile(t("F32", "[2]", "[0,4]"), make([]byte, 4))},
		{"size-mismatch-f16", rawFile(t("F16", "[2]", "[0,8]"), make([]byte, 8))},
		{"shape-overflow", rawFile(t("F32", "[4294967296,4294967296,4294967296]", "[0,0]"), nil)},
		{"shape-overflow-wraps-to-4", rawFile(t("F32", "[4611686018427387905,4]", "[0,4]"), make([]byte, 4))},
		{"shape-overflow-behind-zero", rawFile(t("F32", "[0,4611686018427387904,4611686018427387904]", "[0,0]"), nil)},
		{"overlap", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12))},
		{"same-range", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 8))},
		{"gap", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, make([]byte, 12))},
		{"gap-at-start", rawFile(t("F32", "[1]", "[4,8]"), make([]byte, 8))},
		{"trailing-bytes", rawFile(t("F32", "[1]", "[0,4]"), make([]byte, 5))},
		{"bytes-without-tensors", rawFile("{}", make([]byte, 4))},
		{"metadata-not-object", rawFile(`{"__metadata__":"x"}`, nil)},
		{"metadata-number", rawFile(`{"__metadata__":{"a":1}}`, nil)},
		{"metadata-nested", rawFile(`{"__metadata__":{"a":{}}}`, nil)},
	}
}

func TestReadSafetensorsMalformed(t *testing.T) {
	for _, c := range malformedFiles() {
		t.Run("file="+c.name, func(t *testing.T) {
			f, err := readBytes(c.data)
			if !errors.Is(err, xattn.ErrFormat) {
				t.Fatalf("got %v, %v; want an error wrapping ErrFormat", f, err)
			}
			t.Log(err)
		})
	}
}

// fakeFile is an io.ReaderAt of a claimed size whose bytes after head are
// zero, or an error.
type fakeFile struct {
	head []byte
	fail error
}

func (f fakeFile) ReadAt(p []byte, off int64) (int, error) {
	if f.fail != nil && off >= int64(len(f.head)) {
		return 0, f.fail
	}
	clear(p)
	if off < int64(len(f.head)) {
		copy(p, f.head[off:])
	}
	return len(p), nil
}

// TestReadSafetensorsHugeClaims checks that sizes in a file are checked
// before anything is allocated from them, even when the file claims to be
// huge.
func TestReadSafetensorsHugeClaims(t *testing.T) {
	const tb = 1 << 40
	for _, c := range []struct {
		name string
		n    uint64
		size int64
	}{
		{"header-over-limit", xattn.MaxSafetensorsHeader + 1, tb},
		{"header-1TB", tb - 8, tb},
		{"header-beyond-size", 1 << 20, 1 << 19},
	} {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := xattn.ReadSafetensors(fakeFile{head: binary.LittleEndian.AppendUint64(nil, c.n)}, c.size)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, xattn.ErrFormat) {
				t.Fatalf("got %v, want ErrFormat", err)
			}
			if a := after.TotalAlloc - before.TotalAlloc; a > 1<<16 {
				t.Errorf("allocated %d bytes", a)
			}
		})
	}
	// A tensor claiming a terabyte of a file that has 8 bytes of buffer.
	hdr := `{"t":{"dtype":"U8","shape":[1099511627776],"data_offsets":[0,1099511627776]}}`
	if _, err := readBytes(rawFile(hdr, make([]byte, 8))); !errors.Is(err, xattn.ErrFormat) {
		t.Errorf("terabyte tensor: got %v, want ErrFormat", err)
	}
	// A reader that fails.
	boom := errors.New("disk on fire")
	b := rawFile(`{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4))
	if _, err := xattn.ReadSafetensors(fakeFile{head: b[:8], fail: boom}, int64(len(b))); !errors.Is(err, xattn.ErrFormat) || !errors.Is(err, boom) {
		t.Errorf("failing reader: got %v, want ErrFormat and the reader's error", err)
	}
	f, err := xattn.ReadSafetensors(fakeFile{head: b[:len(b)-4], fail: boom}, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Tensor("t"); !errors.Is(err, xattn.ErrFormat) || !errors.Is(err, boom) {
		t.Errorf("failing reader: got %v, want ErrFormat and the reader's error", err)
	}
}

func TestReadSafetensorsValid(t *testing.T) {
	le := binary.LittleEndian
	f32 := func(v ...float32) []byte {
		var b []byte
		for _, x := range v {
			b = le.AppendUint32(b, math.Float32bits(x))
		}
		return b
	}
	t.Run("empty", func(t *testing.T) {
		for _, hdr := range []string{"{}", "{}      ", " {\n} ", `{"__metadata__":{}}`} {
			f, err := readBytes(rawFile(hdr, nil))
			if err != nil {
				t.Fatalf("%q: %v", hdr, err)
			}
			if len(f.Names()) != 0 {
				t.Errorf("%q: names %v", hdr, f.Names())
			}
		}
	})
	t.Run("mixed", func(t *testing.T) {
		// Header order differs from buffer order; a scalar, an empty tensor,
		// integer and bool tensors, escaped names and metadata.
		data := slices.Concat(
			f32(1.5, -2),                // a [2] at 0
			[]byte{1, 0, 1},             // mask [3] BOOL at 8
			le.AppendUint64(nil, 1<<40), // i I64 scalar at 11
			f32(7),                      // s F32 scalar at 19
			le.AppendUint16(le.AppendUint16(nil, 0x3c00), 0xc000), // h F16 [1,2] at 23
			le.AppendUint16(nil, 0x3f80),                          // bf BF16 [1] at 27
			le.AppendUint64(nil, math.Float64bits(0.1)),           // d F64 [1] at 29
		)
		hdr := `{"s":{"dtype":"F32","shape":[],"data_offsets":[19,23]},` +
			`"__metadata__":{"format":"pt","note":"\u00e9\n"},` +
			`"a":{"shape":[2],"data_offsets":[0,8],"dtype":"F32"},` +
			`"e\"mpty":{"dtype":"F32","shape":[3,0],"data_offsets":[8,8]},` +
			`"mask":{"dtype":"BOOL","shape":[3],"data_offsets":[8,11]},` +
			`"i":{"dtype":"I64","shape":[],"data_offsets":[11,19]},` +
			`"h":{"dtype":"F16","shape":[1,2],"data_offsets":[23,27]},` +
			`"bf":{"dtype":"BF16","shape":[1],"data_offsets":[27,29]},` +
			`"d":{"dtype":"F64","shape":[1],"data_offsets":[29,37]}}   `
		b := rawFile(hdr, data)
		f, err := readBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := f.Names(), []string{"s", "a", `e"mpty`, "mask", "i", "h", "bf", "d"}; !slices.Equal(got, want) {
			t.Errorf("Names() = %q, want %q", got, want)
		}
		if m := f.Metadata(); len(m) != 2 || m["format"] != "pt" || m["note"] != "é\n" {
			t.Errorf("Metadata() = %q", m)
		}
		start := int64(8 + len(hdr))
		for _, c := range []struct {
			name  string
			shape []int
			data  []float32
		}{
			{"s", []int{}, []float32{7}},
			{"a", []int{2}, []float32{1.5, -2}},
			{`e"mpty`, []int{3, 0}, []float32{}},
			{"h", []int{1, 2}, []float32{1, -2}},
			{"bf", []int{1}, []float32{1}},
			{"d", []int{1}, []float32{float32(0.1)}},
		} {
			x, err := f.Tensor(c.name)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if x.Name != c.name || !slices.Equal(x.Shape, c.shape) || !slices.Equal(x.Data, c.data) {
				t.Errorf("Tensor(%q) = %+v, want shape %v data %v", c.name, x, c.shape, c.data)
			}
		}
		info, ok := f.Info("i")
		if !ok || info.DType != "I64" || info.Offset != start+11 || info.Size != 8 || len(info.Shape) != 0 || info.Len() != 1 {
			t.Errorf("Info(i) = %+v, %t", info, ok)
		}
		raw, err := f.Bytes("mask")
		if err != nil || !bytes.Equal(raw, []byte{1, 0, 1}) {
			t.Errorf("Bytes(mask) = %v, %v", raw, err)
		}
		if _, err := f.Tensor("i"); !errors.Is(err, xattn.ErrWeights) {
			t.Errorf("Tensor of I64: got %v, want ErrWeights", err)
		}
		if _, err := f.Tensor("nope"); !errors.Is(err, xattn.ErrWeights) {
			t.Errorf("Tensor of a missing name: got %v, want ErrWeights", err)
		}
		if _, ok := f.Info("nope"); ok {
			t.Error("Info of a missing name")
		}
	})
}

// roundRef64 rounds v to the nearest binary16 (bf false) or bfloat16 (bf true),
// ties to even, in float64: the reference for the writer's conversions.
// Overflow gives ±Inf.
func roundRef64(v float64, bf bool) float64 {
	mant, minExp, maxVal := 10, -14, 65504.0
	if bf {
		mant, minExp, maxVal = 7, -126, float64(math.Float32frombits(0x7f7f0000))
	}
	if v == 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return v
	}
	_, e := math.Frexp(v) // |v| = f·2^e, f ∈ [0.5, 1)
	e = max(e-1, minExp)  // exponent of v, or of the subnormal range
	ulp := math.Ldexp(1, e-mant)
	r := math.RoundToEven(v/ulp) * ulp
	// Beyond max, the rounding goes to Inf once v reaches max + ulp/2.
	if math.Abs(r) > maxVal {
		return math.Copysign(math.Inf(1), v)
	}
	return r
}

// TestFloatConversions checks the F16 and BF16 conversions of the reader
// (every one of the 65536 values) and of the writer (every value that comes
// back, then random float32s against a float64 reference).
func TestFloatConversions(t *testing.T) {
	le := binary.LittleEndian
	for _, dtype := range []string{"F16", "BF16"} {
		t.Run("dtype="+dtype, func(t *testing.T) {
			bf := dtype == "BF16"
			// Decode all 65536 values.
			var data []byte
			for h := 0; h < 1<<16; h++ {
				data = le.AppendUint16(data, uint16(h))
			}
			hdr := fmt.Sprintf(`{"all":{"dtype":"%s","shape":[65536],"data_offsets":[0,%d]}}`, dtype, len(data))
			f, err := readBytes(rawFile(hdr, data))
			if err != nil {
				t.Fatal(err)
			}
			all, err := f.Tensor("all")
			if err != nil {
				t.Fatal(err)
			}
			var finite []float32
			for h, got := range all.Data {
				want := decodeRef64(uint16(h), bf)
				switch {
				case math.IsNaN(want):
					if !math.IsNaN(float64(got)) {
						t.Fatalf("%#04x: got %v, want NaN", h, got)
					}
				case float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want):
					t.Fatalf("%#04x: got %v, want %v", h, got, want)
				default:
					finite = append(finite, got)
				}
			}
			// Every value that is not NaN converts back to its own bits.
			var buf bytes.Buffer
			if err := xattn.WriteSafetensors(&buf, []xattn.Tensor{{Name: "v", Shape: []int{len(finite)}, Data: finite}}, dtype, nil); err != nil {
				t.Fatal(err)
			}
			back := readTensor(t, buf.Bytes(), "v")
			if !slices.EqualFunc(back, finite, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
				t.Fatal("values do not round-trip")
			}
			// Random float32s over the whole range, from subnormal to the overflow
			// threshold, plus ties.
			rng := rand.New(rand.NewPCG(3, 4))
			minExp, maxExp := -26, 16
			if bf {
				minExp, maxExp = -135, 128
			}
			var in []float32
			for len(in) < 100000 {
				v := float32(math.Ldexp(1+rng.Float64(), minExp+rng.IntN(maxExp-minExp)))
				if rng.IntN(2) == 0 {
					v = -v
				}
				if math.IsInf(float64(v), 0) || math.IsInf(roundRef64(float64(v), bf), 0) {
					continue
				}
				in = append(in, v)
			}
			ties := []float32{1 + 1.0/2048, 1 + 3.0/2048, 65504 + 15, float32(math.Ldexp(1, -25)), float32(math.Ldexp(3, -25))}
			if bf {
				ties = []float32{1 + 1.0/256, 1 + 3.0/256, float32(math.Ldexp(1, -134)), float32(math.Ldexp(3, -134))}
			}
			in = append(in, ties...)
			buf.Reset()
			if err := xattn.WriteSafetensors(&buf, []xattn.Tensor{{Name: "v", Shape: []int{len(in)}, Data: in}}, dtype, nil); err != nil {
				t.Fatal(err)
			}
			for i, got := range readTensor(t, buf.Bytes(), "v") {
				if want := roundRef64(float64(in[i]), bf); float64(got) != want {
					t.Fatalf("%s(%g) = %g, want %g", dtype, in[i], got, want)
				}
			}
			// Overflow is an error, Inf and NaN are kept.
			big := float32(65520)
			if bf {
				big = math.MaxFloat32
			}
			err = xattn.WriteSafetensors(io.Discard, []xattn.Tensor{{Name: "v", Shape: []int{1}, Data: []float32{big}}}, dtype, nil)
			if !errors.Is(err, xattn.ErrWeights) {
				t.Errorf("%g: got %v, want ErrWeights", big, err)
			}
			buf.Reset()
			special := []float32{float32(math.Inf(-1)), float32(math.NaN())}
			if err := xattn.WriteSafetensors(&buf, []xattn.Tensor{{Name: "v", Shape: []int{2}, Data: special}}, dtype, nil); err != nil {
				t.Fatal(err)
			}
			if got := readTensor(t, buf.Bytes(), "v"); !math.IsInf(float64(got[0]), -1) || !math.IsNaN(float64(got[1])) {
				t.Errorf("Inf, NaN came back as %v", got)
			}
		})
	}
}

// decodeRef64 is the value of a binary16 or bfloat16 bit pattern.
func decodeRef64(h uint16, bf bool) float64 {
	mant, ebits := 10, 5
	if bf {
		mant, ebits = 7, 8
	}
	bias := 1<<(ebits-1) - 1
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e := int(h>>mant) & (1<<ebits - 1)
	m := float64(int(h) & (1<<mant - 1))
	switch {
	case e == 1<<ebits-1 && m != 0:
		return math.NaN()
	case e == 1<<ebits-1:
		return math.Inf(int(sign))
	case e == 0:
		return sign * math.Ldexp(m, 1-bias-mant)
	}
	return sign * math.Ldexp(1+m/float64(int(1)<<mant), e-bias)
}

func readTensor(t *testing.T, b []byte, name string) []float32 {
	t.Helper()
	f, err := readBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	x, err := f.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	return x.Data
}

func TestWriteSafetensorsErrors(t *testing.T) {
	one := []float32{1}
	for _, c := range []struct {
		name    string
		tensors []xattn.Tensor
		dtype   string
		meta    map[string]string
	}{
		{"dtype", []xattn.Tensor{{Name: "a", Shape: []int{1}, Data: one}}, "F64", nil},
		{"shape", []xattn.Tensor{{Name: "a", Shape: []int{2}, Data: one}}, "F32", nil},
		{"negative-dim", []xattn.Tensor{{Name: "a", Shape: []int{-1, -1}, Data: one}}, "F32", nil},
		{"overflow-dim", []xattn.Tensor{{Name: "a", Shape: []int{math.MaxInt, 2}, Data: nil}}, "F32", nil},
		{"duplicate", []xattn.Tensor{{Name: "a", Shape: []int{1}, Data: one}, {Name: "a", Shape: []int{1}, Data: one}}, "F32", nil},
		{"reserved", []xattn.Tensor{{Name: "__metadata__", Shape: []int{1}, Data: one}}, "F32", nil},
		{"utf8", []xattn.Tensor{{Name: "\xff", Shape: []int{1}, Data: one}}, "F32", nil},
		{"metadata-utf8", nil, "F32", map[string]string{"a": "\xff"}},
	} {
		if err := xattn.WriteSafetensors(io.Discard, c.tensors, c.dtype, c.meta); !errors.Is(err, xattn.ErrWeights) {
			t.Errorf("%s: got %v, want ErrWeights", c.name, err)
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
								if want := roundRef64(float64(p[1][j]), dtype == "BF16"); float64(p[0][j]) != want {
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
	i32 := rawFile(`{"blk.to_q.weight":{"dtype":"I32","shape":[10,8],"data_offsets":[0,320]}}`, make([]byte, 320))
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
		if err := xattn.WriteSafetensors(&buf, ts, dtype, map[string]string{"format": "pt"}); err != nil {
			f.Fatal(err)
		}
		seeds["valid-plain-"+dtype] = slices.Clone(buf.Bytes())
	}
	seeds["valid-empty"] = rawFile("{}", nil)
	seeds["valid-mixed"] = rawFile(`{"a":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"b":{"dtype":"F64","shape":[1,1],"data_offsets":[8,16]},"z":{"dtype":"F16","shape":[0],"data_offsets":[16,16]}}`, make([]byte, 16))
	if *updateCorpus {
		dir := filepath.Join("testdata", "fuzz", "FuzzReadSafetensors")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			f.Fatal(err)
		}
		golden, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.safetensors"))
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
			if !errors.Is(err, xattn.ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		headerEnd := 8 + int64(binary.LittleEndian.Uint64(data))
		var covered int64
		var floats []xattn.Tensor
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
				if !errors.Is(err, xattn.ErrWeights) {
					t.Fatalf("Tensor(%q) of %s: %v", name, info.DType, err)
				}
			}
		}
		if covered != int64(len(data))-headerEnd {
			t.Fatalf("tensors cover %d of %d buffer bytes", covered, int64(len(data))-headerEnd)
		}
		// The float tensors rewrite as F32 and read back bit for bit.
		var out bytes.Buffer
		if err := xattn.WriteSafetensors(&out, floats, "F32", sf.Metadata()); err != nil {
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
		for _, m := range mappings {
			for _, cfg := range []xattn.Config{{QueryDim: 2, Heads: 1, HeadDim: 2, Bias: true}, {QueryDim: 2, Heads: 1, HeadDim: 2}} {
				w, err := sf.Weights(cfg, m, "")
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
