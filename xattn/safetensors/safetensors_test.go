package safetensors_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/xattn/xattn/internal/testutil"
	"github.com/xattn/xattn/xattn/safetensors"
)

func readBytes(b []byte) (*safetensors.File, error) {
	return safetensors.Read(bytes.NewReader(b), int64(len(b)))
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
		{"header-empty", testutil.RawSafetensors("", nil)},
		{"not-json", testutil.RawSafetensors("{nope}", nil)},
		{"not-object", testutil.RawSafetensors("[]", nil)},
		{"truncated-json", testutil.RawSafetensors(`{"t":{"dtype":"F32"`, nil)},
		{"trailing-garbage", testutil.RawSafetensors("{} x", nil)},
		{"two-objects", testutil.RawSafetensors("{}{}", nil)},
		{"invalid-utf8", testutil.RawSafetensors("{\"\xff\":{}}", nil)},
		{"duplicate-name", testutil.RawSafetensors(`{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8))},
		{"duplicate-metadata", testutil.RawSafetensors(`{"__metadata__":{},"__metadata__":{}}`, nil)},
		{"duplicate-metadata-key", testutil.RawSafetensors(`{"__metadata__":{"a":"1","a":"2"}}`, nil)},
		{"duplicate-field", testutil.RawSafetensors(`{"t":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4))},
		{"unknown-field", testutil.RawSafetensors(`{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, make([]byte, 4))},
		{"missing-dtype", testutil.RawSafetensors(`{"t":{"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4))},
		{"missing-shape", testutil.RawSafetensors(`{"t":{"dtype":"F32","data_offsets":[0,4]}}`, make([]byte, 4))},
		{"missing-offsets", testutil.RawSafetensors(`{"t":{"dtype":"F32","shape":[1]}}`, make([]byte, 4))},
		{"tensor-not-object", testutil.RawSafetensors(`{"t":[1]}`, nil)},
		{"dtype-not-string", testutil.RawSafetensors(`{"t":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4))},
		{"unknown-dtype", testutil.RawSafetensors(t("F17", "[1]", "[0,4]"), make([]byte, 4))},
		{"sub-byte-dtype", testutil.RawSafetensors(t("F4", "[2]", "[0,1]"), make([]byte, 1))},
		{"lowercase-dtype", testutil.RawSafetensors(t("f32", "[1]", "[0,4]"), make([]byte, 4))},
		{"negative-dim", testutil.RawSafetensors(t("F32", "[-1]", "[0,4]"), make([]byte, 4))},
		{"fractional-dim", testutil.RawSafetensors(t("F32", "[1.0]", "[0,4]"), make([]byte, 4))},
		{"exponent-dim", testutil.RawSafetensors(t("F32", "[1e0]", "[0,4]"), make([]byte, 4))},
		{"string-dim", testutil.RawSafetensors(t("F32", `["1"]`, "[0,4]"), make([]byte, 4))},
		{"dim-beyond-uint64", testutil.RawSafetensors(t("F32", "[18446744073709551616]", "[0,4]"), make([]byte, 4))},
		{"rank-33", testutil.RawSafetensors(t("U8", "["+strings.Repeat("1,", 32)+"1]", "[0,1]"), make([]byte, 1))},
		{"shape-not-array", testutil.RawSafetensors(t("F32", "1", "[0,4]"), make([]byte, 4))},
		{"offsets-one", testutil.RawSafetensors(t("F32", "[1]", "[4]"), make([]byte, 4))},
		{"offsets-three", testutil.RawSafetensors(t("F32", "[1]", "[0,4,8]"), make([]byte, 4))},
		{"offsets-reversed", testutil.RawSafetensors(t("F32", "[0]", "[4,0]"), make([]byte, 4))},
		{"offsets-beyond-buffer", testutil.RawSafetensors(t("F32", "[2]", "[0,8]"), make([]byte, 4))},
		{"offsets-huge", testutil.RawSafetensors(t("F32", "[1]", "[18446744073709551612,18446744073709551615]"), make([]byte, 4))},
		{"size-mismatch", testutil.RawSafetensors(t("F32", "[2]", "[0,4]"), make([]byte, 4))},
		{"size-mismatch-f16", testutil.RawSafetensors(t("F16", "[2]", "[0,8]"), make([]byte, 8))},
		{"shape-overflow", testutil.RawSafetensors(t("F32", "[4294967296,4294967296,4294967296]", "[0,0]"), nil)},
		{"shape-overflow-wraps-to-4", testutil.RawSafetensors(t("F32", "[4611686018427387905,4]", "[0,4]"), make([]byte, 4))},
		{"shape-overflow-behind-zero", testutil.RawSafetensors(t("F32", "[0,4611686018427387904,4611686018427387904]", "[0,0]"), nil)},
		{"overlap", testutil.RawSafetensors(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12))},
		{"same-range", testutil.RawSafetensors(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 8))},
		{"gap", testutil.RawSafetensors(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, make([]byte, 12))},
		{"gap-at-start", testutil.RawSafetensors(t("F32", "[1]", "[4,8]"), make([]byte, 8))},
		{"trailing-bytes", testutil.RawSafetensors(t("F32", "[1]", "[0,4]"), make([]byte, 5))},
		{"bytes-without-tensors", testutil.RawSafetensors("{}", make([]byte, 4))},
		{"metadata-not-object", testutil.RawSafetensors(`{"__metadata__":"x"}`, nil)},
		{"metadata-number", testutil.RawSafetensors(`{"__metadata__":{"a":1}}`, nil)},
		{"metadata-nested", testutil.RawSafetensors(`{"__metadata__":{"a":{}}}`, nil)},
	}
}

func TestReadSafetensorsMalformed(t *testing.T) {
	for _, c := range malformedFiles() {
		t.Run("file="+c.name, func(t *testing.T) {
			f, err := readBytes(c.data)
			if !errors.Is(err, safetensors.ErrFormat) {
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
		{"header-over-limit", safetensors.MaxHeader + 1, tb},
		{"header-1TB", tb - 8, tb},
		{"header-beyond-size", 1 << 20, 1 << 19},
	} {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := safetensors.Read(fakeFile{head: binary.LittleEndian.AppendUint64(nil, c.n)}, c.size)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, safetensors.ErrFormat) {
				t.Fatalf("got %v, want ErrFormat", err)
			}
			if a := after.TotalAlloc - before.TotalAlloc; a > 1<<16 {
				t.Errorf("allocated %d bytes", a)
			}
		})
	}
	// A tensor claiming a terabyte of a file that has 8 bytes of buffer.
	hdr := `{"t":{"dtype":"U8","shape":[1099511627776],"data_offsets":[0,1099511627776]}}`
	if _, err := readBytes(testutil.RawSafetensors(hdr, make([]byte, 8))); !errors.Is(err, safetensors.ErrFormat) {
		t.Errorf("terabyte tensor: got %v, want ErrFormat", err)
	}
	// A reader that fails.
	boom := errors.New("disk on fire")
	b := testutil.RawSafetensors(`{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4))
	if _, err := safetensors.Read(fakeFile{head: b[:8], fail: boom}, int64(len(b))); !errors.Is(err, safetensors.ErrFormat) || !errors.Is(err, boom) {
		t.Errorf("failing reader: got %v, want ErrFormat and the reader's error", err)
	}
	f, err := safetensors.Read(fakeFile{head: b[:len(b)-4], fail: boom}, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Tensor("t"); !errors.Is(err, safetensors.ErrFormat) || !errors.Is(err, boom) {
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
			f, err := readBytes(testutil.RawSafetensors(hdr, nil))
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
		b := testutil.RawSafetensors(hdr, data)
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
		if _, err := f.Tensor("i"); !errors.Is(err, safetensors.ErrTensor) {
			t.Errorf("Tensor of I64: got %v, want ErrTensor", err)
		}
		if _, err := f.Tensor("nope"); !errors.Is(err, safetensors.ErrTensor) {
			t.Errorf("Tensor of a missing name: got %v, want ErrTensor", err)
		}
		if _, ok := f.Info("nope"); ok {
			t.Error("Info of a missing name")
		}
	})
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
			f, err := readBytes(testutil.RawSafetensors(hdr, data))
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
			if err := safetensors.Write(&buf, []safetensors.Tensor{{Name: "v", Shape: []int{len(finite)}, Data: finite}}, dtype, nil); err != nil {
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
				if math.IsInf(float64(v), 0) || math.IsInf(testutil.Round16Ref64(float64(v), bf), 0) {
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
			if err := safetensors.Write(&buf, []safetensors.Tensor{{Name: "v", Shape: []int{len(in)}, Data: in}}, dtype, nil); err != nil {
				t.Fatal(err)
			}
			for i, got := range readTensor(t, buf.Bytes(), "v") {
				if want := testutil.Round16Ref64(float64(in[i]), bf); float64(got) != want {
					t.Fatalf("%s(%g) = %g, want %g", dtype, in[i], got, want)
				}
			}
			// Overflow is an error, Inf and NaN are kept.
			big := float32(65520)
			if bf {
				big = math.MaxFloat32
			}
			err = safetensors.Write(io.Discard, []safetensors.Tensor{{Name: "v", Shape: []int{1}, Data: []float32{big}}}, dtype, nil)
			if !errors.Is(err, safetensors.ErrTensor) {
				t.Errorf("%g: got %v, want ErrTensor", big, err)
			}
			buf.Reset()
			special := []float32{float32(math.Inf(-1)), float32(math.NaN())}
			if err := safetensors.Write(&buf, []safetensors.Tensor{{Name: "v", Shape: []int{2}, Data: special}}, dtype, nil); err != nil {
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
		tensors []safetensors.Tensor
		dtype   string
		meta    map[string]string
	}{
		{"dtype", []safetensors.Tensor{{Name: "a", Shape: []int{1}, Data: one}}, "F64", nil},
		{"shape", []safetensors.Tensor{{Name: "a", Shape: []int{2}, Data: one}}, "F32", nil},
		{"negative-dim", []safetensors.Tensor{{Name: "a", Shape: []int{-1, -1}, Data: one}}, "F32", nil},
		{"overflow-dim", []safetensors.Tensor{{Name: "a", Shape: []int{math.MaxInt, 2}, Data: nil}}, "F32", nil},
		{"duplicate", []safetensors.Tensor{{Name: "a", Shape: []int{1}, Data: one}, {Name: "a", Shape: []int{1}, Data: one}}, "F32", nil},
		{"reserved", []safetensors.Tensor{{Name: "__metadata__", Shape: []int{1}, Data: one}}, "F32", nil},
		{"utf8", []safetensors.Tensor{{Name: "\xff", Shape: []int{1}, Data: one}}, "F32", nil},
		{"metadata-utf8", nil, "F32", map[string]string{"a": "\xff"}},
	} {
		if err := safetensors.Write(io.Discard, c.tensors, c.dtype, c.meta); !errors.Is(err, safetensors.ErrTensor) {
			t.Errorf("%s: got %v, want ErrTensor", c.name, err)
		}
	}
}

// TestFloats checks Floats.At against Tensor's conversion, element by
// element and bit for bit, for every float dtype, and its errors.
func TestFloats(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	data := make([]float32, 6*5)
	for i := range data {
		data[i] = float32(rng.NormFloat64())
	}
	data[3] = float32(math.Inf(-1))
	for _, dtype := range []string{"F32", "F16", "BF16"} {
		var buf bytes.Buffer
		if err := safetensors.Write(&buf, []safetensors.Tensor{{Name: "w", Shape: []int{6, 5}, Data: data}}, dtype, nil); err != nil {
			t.Fatal(err)
		}
		f, err := readBytes(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		want, err := f.Tensor("w")
		if err != nil {
			t.Fatal(err)
		}
		fl, err := f.Floats("w")
		if err != nil {
			t.Fatal(err)
		}
		if fl.Name != "w" || fl.DType != dtype || !slices.Equal(fl.Shape, []int{6, 5}) || fl.Len() != len(data) {
			t.Fatalf("%s: Floats = %q %s %v, %d values", dtype, fl.Name, fl.DType, fl.Shape, fl.Len())
		}
		for i, v := range want.Data {
			if got := fl.At(i); math.Float32bits(got) != math.Float32bits(v) {
				t.Fatalf("%s: At(%d) = %v, Tensor has %v", dtype, i, got, v)
			}
		}
	}
	// F64, written by hand: rounded to nearest as Tensor rounds it.
	var raw []byte
	for _, v := range []float64{1.0 / 3, -2.5e300, math.SmallestNonzeroFloat64} {
		raw = binary.LittleEndian.AppendUint64(raw, math.Float64bits(v))
	}
	f, err := readBytes(testutil.RawSafetensors(`{"d":{"dtype":"F64","shape":[3],"data_offsets":[0,24]},"i":{"dtype":"I32","shape":[0],"data_offsets":[24,24]}}`, raw))
	if err != nil {
		t.Fatal(err)
	}
	fl, err := f.Floats("d")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []float32{1.0 / 3, float32(math.Inf(-1)), 0} {
		if got := fl.At(i); got != want {
			t.Errorf("F64 At(%d) = %v, want %v", i, got, want)
		}
	}
	for name, want := range map[string]bool{"d": true, "i": false} {
		if info, _ := f.Info(name); info.IsFloat() != want {
			t.Errorf("%s (%s): IsFloat = %t", name, info.DType, !want)
		}
	}
	if _, err := f.Floats("i"); !errors.Is(err, safetensors.ErrTensor) || !strings.Contains(err.Error(), "I32") {
		t.Errorf("Floats of an I32 tensor: %v, want ErrTensor naming the dtype", err)
	}
	if _, err := f.Floats("nope"); !errors.Is(err, safetensors.ErrTensor) {
		t.Errorf("Floats of a missing tensor: %v, want ErrTensor", err)
	}
	if n := (safetensors.Floats{}).Len(); n != 0 {
		t.Errorf("zero Floats has Len %d", n)
	}
}
