package safetensors

import (
	"fmt"
	"io"
	"slices"
)

// TensorInfo describes one tensor of a safetensors file.
type TensorInfo struct {
	// DType is the element type as the file spells it: "F32", "F16",
	// "BF16", "F64", "I64", "BOOL", …
	DType string
	// Shape is the size of each dimension, outermost first; a scalar has
	// none. The data is row-major.
	Shape []int
	// Offset and Size locate the tensor's bytes in the file (Offset counts
	// from the start of the file, not of the byte buffer).
	Offset, Size int64
}

// Len returns the number of elements of the tensor.
func (t TensorInfo) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= d // cannot overflow: Read checked it
	}
	return n
}

// File is a validated safetensors file: its header, parsed and
// checked, and the reader it came from, from which [File.Tensor]
// reads the data of one tensor at a time. A File does not own the
// reader: keep it open while the File is in use, and close it
// yourself. Its methods are safe for concurrent use if the reader's ReadAt
// is (os.File's and bytes.Reader's are).
//
// It holds about 50 bytes per tensor besides its name, never the header's
// text: the largest header, 92 MB of 1.4 million one-byte tensors, leaves
// 102 MB held, and its parse grows the heap by about 3 times the file.
type File struct {
	r        io.ReaderAt
	entries  []headerEntry // in file order
	byName   []int32       // entries sorted by name
	shapes   []int         // the entries' shapes, one after another
	metadata map[string]string
}

// Names returns the names of the tensors in the order of the header.
func (f *File) Names() []string {
	names := make([]string, len(f.entries))
	for i := range f.entries {
		names[i] = f.entries[i].name
	}
	return names
}

// Info describes the tensor called name, if the file has one.
func (f *File) Info(name string) (TensorInfo, bool) {
	t, ok := f.tensorInfo(name)
	t.Shape = slices.Clone(t.Shape)
	return t, ok
}

// Metadata returns a copy of the file's "__metadata__" (nil if it has
// none). PyTorch files written by the safetensors package hold
// {"format": "pt"}.
func (f *File) Metadata() map[string]string {
	if f.metadata == nil {
		return nil
	}
	m := make(map[string]string, len(f.metadata))
	for k, v := range f.metadata {
		m[k] = v
	}
	return m
}

// Bytes returns the raw bytes of the tensor called name: Size bytes,
// little-endian, row-major, as the file stores them. It returns an error
// wrapping [ErrTensor] if there is no such tensor, and one wrapping
// [ErrFormat] if the reader fails.
func (f *File) Bytes(name string) ([]byte, error) {
	t, ok := f.tensorInfo(name)
	if !ok {
		return nil, fmt.Errorf("%w: no tensor %q in the file", ErrTensor, name)
	}
	b := make([]byte, t.Size) // checked against the file size
	if err := readFull(f.r, b, t.Offset); err != nil {
		return nil, fmt.Errorf("%w: reading tensor %q: %w", ErrFormat, name, err)
	}
	return b, nil
}

// Tensor is a named float32 tensor, row-major, as [File.Tensor]
// returns it and [Write] takes it.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// IsFloat reports whether t holds floats that [File.Tensor] and
// [File.Floats] convert to float32: F32, F16, BF16 or F64.
func (t TensorInfo) IsFloat() bool {
	switch t.DType {
	case "F32", "F16", "BF16", "F64":
		return true
	}
	return false
}

// Floats is the data of a float tensor as the file stores it (F32, F16,
// BF16 or F64), read from the file once and converted to float32 one
// element at a time ([Floats.At]): for a caller that lays the values out in
// a form of its own, such as bf16 weights packed for a product, without a
// float32 copy of the whole tensor. It holds the file's bytes: for a BF16 or
// F16 tensor half the memory of the float32 one.
type Floats struct {
	Name  string
	Shape []int
	DType string
	b     []byte
}

// Len returns the number of elements of t.
func (t Floats) Len() int {
	if size := dtypeSize[t.DType]; size > 0 {
		return len(t.b) / size
	}
	return 0 // the zero Floats
}

// At returns element i of t (row-major, 0 ≤ i < Len) converted to float32
// as [File.Tensor] converts it: F32, F16 and BF16 exactly, F64 rounded to
// nearest. It panics if i is out of range, as a slice index does.
func (t Floats) At(i int) float32 { return decodeFloat(t.b, t.DType, i) }

// Floats reads the tensor called name for [Floats.At]. It returns an error
// wrapping [ErrTensor] if there is no such tensor or it holds a dtype other
// than F32, F16, BF16 or F64, and one wrapping [ErrFormat] if the reader
// fails.
func (f *File) Floats(name string) (Floats, error) {
	t, ok := f.tensorInfo(name)
	if !ok {
		return Floats{}, fmt.Errorf("%w: no tensor %q in the file", ErrTensor, name)
	}
	if !t.IsFloat() {
		return Floats{}, fmt.Errorf("%w: tensor %q has dtype %s, want F32, F16, BF16 or F64", ErrTensor, name, t.DType)
	}
	b, err := f.Bytes(name)
	if err != nil {
		return Floats{}, err
	}
	return Floats{Name: name, Shape: slices.Clone(t.Shape), DType: t.DType, b: b}, nil
}

// Tensor reads the tensor called name and converts it to float32. F32 is
// copied; F16 and BF16 convert exactly (every value of theirs is a float32);
// F64 rounds to nearest. It returns an error wrapping [ErrTensor] if there
// is no such tensor or it holds another dtype, and one wrapping [ErrFormat]
// if the reader fails.
func (f *File) Tensor(name string) (Tensor, error) {
	t, ok := f.tensorInfo(name)
	if !ok {
		return Tensor{}, fmt.Errorf("%w: no tensor %q in the file", ErrTensor, name)
	}
	fl, err := f.Floats(name)
	if err != nil {
		return Tensor{}, err
	}
	out := Tensor{Name: name, Shape: fl.Shape, Data: make([]float32, t.Len())}
	decodeFloats(out.Data, fl.b, t.DType)
	return out, nil
}
