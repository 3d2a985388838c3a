package xattn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file reads and writes the safetensors format
// (https://github.com/huggingface/safetensors):
//
//	8 bytes      N, little-endian uint64: the size of the header
//	N bytes      header: a UTF-8 JSON object
//	             {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, …,
//	              "__metadata__": {"key": "value", …}}   (optional, strings only)
//	rest         the byte buffer; tensor "name" is bytes begin … end−1 of it,
//	             little-endian, row-major
//
// The reader is our own rather than a library: the Go packages for the format
// (github.com/nlpodyssey/safetensors and its forks) need the whole file in
// memory as one []byte, and decode the header into a map, which keeps the last
// of two tensors with the same name instead of rejecting the file. This one
// reads the header through an io.ReaderAt, reads a tensor only when asked, and
// checks everything the format promises before it allocates anything sized by
// the file's own claims.

// MaxSafetensorsHeader is the largest header, in bytes, that
// [ReadSafetensors] accepts: 100 MB, the limit of the reference
// implementation. Real headers are a few kilobytes to a few megabytes.
const MaxSafetensorsHeader = 100_000_000

// maxRank is the largest number of dimensions a tensor may have. It bounds
// the memory a header of a given size can make the reader allocate.
const maxRank = 32

// dtypeSize gives the size in bytes of one element of every dtype the format
// defines with a whole number of bytes. Others (the sub-byte F4 and F6
// formats, and anything unknown) make a file malformed for this reader.
var dtypeSize = map[string]int{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// dtypes lists the keys of dtypeSize, so that a header entry holds its
// dtype as an index.
var dtypes = func() []string {
	d := make([]string, 0, len(dtypeSize))
	for k := range dtypeSize {
		d = append(d, k)
	}
	slices.Sort(d)
	return d
}()

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
		n *= d // cannot overflow: ReadSafetensors checked it
	}
	return n
}

// SafetensorsFile is a validated safetensors file: its header, parsed and
// checked, and the reader it came from, from which [SafetensorsFile.Tensor]
// reads the data of one tensor at a time. A SafetensorsFile does not own the
// reader: keep it open while the SafetensorsFile is in use, and close it
// yourself. Its methods are safe for concurrent use if the reader's ReadAt
// is (os.File's and bytes.Reader's are).
//
// It holds about 50 bytes per tensor besides its name, never the header's
// text: the largest header, 92 MB of 1.4 million one-byte tensors, leaves
// 102 MB held, and its parse grows the heap by about 3 times the file.
type SafetensorsFile struct {
	r        io.ReaderAt
	entries  []headerEntry // in file order
	byName   []int32       // entries sorted by name
	shapes   []int         // the entries' shapes, one after another
	metadata map[string]string
}

// ReadSafetensors parses and validates the header of the safetensors file
// that r holds, of size bytes. It reads the header only; the tensors are read
// when asked for. size must be the true size of the data behind r.
//
// It returns an error wrapping [ErrFormat] unless the file is well formed:
//
//   - the header size fits the file and is at most [MaxSafetensorsHeader];
//   - the header is valid UTF-8 and one JSON object (trailing whitespace
//     allowed, as the reference writer pads with spaces), with no repeated
//     key at any level;
//   - every entry other than "__metadata__" has exactly the keys dtype,
//     shape and data_offsets; dtype is a known whole-byte type; shape holds
//     at most 32 non-negative integers whose product, times the element
//     size, does not overflow and equals end − begin; data_offsets are two
//     non-negative integers with begin ≤ end;
//   - the tensors, ordered by offset, tile the byte buffer exactly: no
//     overlap, no gap, nothing after the last one (as the reference
//     implementation requires);
//   - "__metadata__", if present, maps strings to strings.
//
// No allocation depends on a size the file claims before that size has been
// checked against the real size of the file.
func ReadSafetensors(r io.ReaderAt, size int64) (*SafetensorsFile, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil io.ReaderAt", ErrFormat)
	}
	if size < 8 {
		return nil, fmt.Errorf("%w: %d bytes is too short for the 8-byte header size", ErrFormat, size)
	}
	var head [8]byte
	if err := readFull(r, head[:], 0); err != nil {
		return nil, fmt.Errorf("%w: reading the header size: %w", ErrFormat, err)
	}
	n := binary.LittleEndian.Uint64(head[:])
	if n > MaxSafetensorsHeader {
		return nil, fmt.Errorf("%w: header of %d bytes exceeds the limit of %d", ErrFormat, n, MaxSafetensorsHeader)
	}
	if n > uint64(size-8) {
		return nil, fmt.Errorf("%w: header of %d bytes does not fit a file of %d bytes", ErrFormat, n, size)
	}
	// The header streams through the parser: what it keeps is a few dozen
	// bytes per tensor, never the header's text.
	hdr := bufio.NewReaderSize(io.NewSectionReader(r, 8, int64(n)), int(min(n, 64<<10)+16))
	f, err := parseHeader(hdr, 8+int64(n), size)
	if err != nil {
		return nil, err
	}
	f.r = r
	return f, nil
}

// readFull fills b from r at off. io.ReaderAt may report io.EOF with a full
// read that ends at the end of the input; that is success here.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	if len(b) == 0 {
		return nil
	}
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// headerEntry is a tensor as the header gives it: its dimensions are
// shapes[shape : shape+rank] of the parser (uint64, unchecked) and then of
// the file (int); begin and end count from the start of the byte buffer
// until the file is validated, from the start of the file after.
type headerEntry struct {
	name        string
	begin, end  uint64
	shape, rank int32
	dtype       uint8 // in dtypes
}

// info returns the TensorInfo of entry i, its shape a view of f.shapes.
func (f *SafetensorsFile) info(i int) TensorInfo {
	e := &f.entries[i]
	return TensorInfo{DType: dtypes[e.dtype], Shape: f.shapes[e.shape : e.shape+e.rank : e.shape+e.rank],
		Offset: int64(e.begin), Size: int64(e.end - e.begin)}
}

// lookup returns the index of the tensor called name.
func (f *SafetensorsFile) lookup(name string) (int, bool) {
	i, ok := slices.BinarySearchFunc(f.byName, name, func(e int32, name string) int {
		return strings.Compare(f.entries[e].name, name)
	})
	if !ok {
		return -1, false
	}
	return int(f.byName[i]), true
}

// tensorInfo returns the TensorInfo of the tensor called name, its shape a
// view of f.shapes.
func (f *SafetensorsFile) tensorInfo(name string) (TensorInfo, bool) {
	i, ok := f.lookup(name)
	if !ok {
		return TensorInfo{}, false
	}
	return f.info(i), true
}

// parseHeader parses and validates the JSON header hdr of a file of size
// bytes whose byte buffer starts at dataStart.
func parseHeader(hdr io.Reader, dataStart, size int64) (*SafetensorsFile, error) {
	u := &utf8Reader{r: hdr}
	p := &jsonParser{dec: json.NewDecoder(u)}
	p.dec.UseNumber()
	var (
		entries     []headerEntry
		metadata    map[string]string
		hasMetadata bool
	)
	err := p.object(func(key string) error {
		if key == "__metadata__" {
			if hasMetadata {
				return fmt.Errorf("key %q appears twice", key)
			}
			hasMetadata = true
			m, err := p.metadata()
			metadata = m
			return err
		}
		e, err := p.tensor()
		if err != nil {
			return fmt.Errorf("tensor %q: %w", key, err)
		}
		e.name = key
		entries = append(entries, e)
		return nil
	})
	if err == nil {
		// Only whitespace may follow the object.
		if _, e := p.dec.Token(); e != io.EOF {
			err = errors.New("data after the header's JSON object")
		}
	}
	if u.err != nil { // the header as the parser saw it ends at the error
		err = u.err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrFormat, err)
	}
	if len(entries) > math.MaxInt32 || len(p.shapes) > math.MaxInt32 {
		return nil, fmt.Errorf("%w: header of %d tensors", ErrFormat, len(entries))
	}
	entries = slices.Clip(entries)
	f := &SafetensorsFile{entries: entries, metadata: metadata, shapes: make([]int, len(p.shapes))}
	// No name twice: sorted by name, equal names are neighbours.
	f.byName = make([]int32, len(entries))
	for i := range f.byName {
		f.byName[i] = int32(i)
	}
	slices.SortFunc(f.byName, func(a, b int32) int { return strings.Compare(entries[a].name, entries[b].name) })
	for i := 1; i < len(f.byName); i++ {
		if name := entries[f.byName[i]].name; name == entries[f.byName[i-1]].name {
			return nil, fmt.Errorf("%w: header: key %q appears twice", ErrFormat, name)
		}
	}

	dataLen := uint64(size - dataStart)
	for i := range entries {
		e := &entries[i]
		esize := dtypeSize[dtypes[e.dtype]]
		shape := p.shapes[e.shape : e.shape+e.rank]
		if e.begin > e.end {
			return nil, fmt.Errorf("%w: tensor %q has data_offsets [%d, %d] that end before they begin",
				ErrFormat, e.name, e.begin, e.end)
		}
		if e.end > dataLen {
			return nil, fmt.Errorf("%w: tensor %q has data_offsets [%d, %d] beyond the %d-byte buffer",
				ErrFormat, e.name, e.begin, e.end, dataLen)
		}
		// The product of the dimensions, zeros counted as ones, must fit an
		// int64 even when a zero makes the tensor empty.
		nbytes, full := uint64(esize), uint64(esize)
		for j, d := range shape {
			hi, lo := bits.Mul64(full, max(d, 1))
			if hi != 0 || lo > math.MaxInt64 {
				return nil, fmt.Errorf("%w: tensor %q: shape %v overflows", ErrFormat, e.name, shape)
			}
			full, nbytes = lo, nbytes*d // nbytes ≤ full
			f.shapes[int(e.shape)+j] = int(d)
		}
		if nbytes != e.end-e.begin {
			return nil, fmt.Errorf("%w: tensor %q: %s%v needs %d bytes, data_offsets [%d, %d] give %d",
				ErrFormat, e.name, dtypes[e.dtype], shape, nbytes, e.begin, e.end, e.end-e.begin)
		}
	}
	// The tensors must tile the buffer: sorted by offset, each starts where
	// the previous one ended, and the last one ends at the end of the file.
	byOffset := make([]int32, len(entries))
	for i := range byOffset {
		byOffset[i] = int32(i)
	}
	slices.SortFunc(byOffset, func(a, b int32) int {
		if c := cmpUint(entries[a].begin, entries[b].begin); c != 0 {
			return c
		}
		return cmpUint(entries[a].end, entries[b].end)
	})
	var at uint64
	for _, i := range byOffset {
		e := &entries[i]
		if e.begin != at {
			if e.begin < at {
				return nil, fmt.Errorf("%w: tensor %q (bytes %d–%d) overlaps the tensor before it, which ends at %d",
					ErrFormat, e.name, e.begin, e.end, at)
			}
			return nil, fmt.Errorf("%w: bytes %d–%d of the buffer belong to no tensor", ErrFormat, at, e.begin)
		}
		at = e.end
	}
	if at != dataLen {
		return nil, fmt.Errorf("%w: the tensors cover %d bytes of a %d-byte buffer", ErrFormat, at, dataLen)
	}
	for i := range entries {
		entries[i].begin += uint64(dataStart)
		entries[i].end += uint64(dataStart)
	}
	return f, nil
}

// errNotUTF8 reports a header that is not valid UTF-8.
var errNotUTF8 = errors.New("header is not valid UTF-8")

// utf8Reader passes on the bytes of r, and fails with errNotUTF8 (also kept
// in err, since the JSON parser may report its own error instead) at the
// first that are not valid UTF-8.
type utf8Reader struct {
	r     io.Reader
	carry [utf8.UTFMax - 1]byte // the start of a rune cut by the last read
	nc    int
	err   error
}

func (u *utf8Reader) Read(b []byte) (int, error) {
	if u.err != nil {
		return 0, u.err
	}
	if len(b) < utf8.UTFMax {
		return 0, io.ErrShortBuffer
	}
	n := copy(b, u.carry[:u.nc])
	m, err := u.r.Read(b[n:])
	n += m
	end := n
	if err == nil {
		// Hold back a rune cut at the end of b.
		for k := 1; k < utf8.UTFMax && k <= n; k++ {
			if utf8.RuneStart(b[n-k]) {
				if !utf8.FullRune(b[n-k : n]) {
					end = n - k
				}
				break
			}
		}
	}
	if !utf8.Valid(b[:end]) {
		u.err = errNotUTF8
		return 0, u.err
	}
	u.nc = copy(u.carry[:], b[end:n])
	return end, err
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// jsonParser reads the header's JSON token by token, so that it can reject
// repeated keys and unknown fields, which encoding/json's decoding into maps
// and structs silently accepts.
type jsonParser struct {
	dec    *json.Decoder
	shapes []uint64 // the dimensions of every tensor parsed, one after another
}

// delim consumes the delimiter want.
func (p *jsonParser) delim(want json.Delim) error {
	t, err := p.dec.Token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return fmt.Errorf("found %v where %q was expected", t, string(want))
	}
	return nil
}

// object consumes a JSON object, calling field for each key with the
// decoder positioned before its value; field must consume the value.
func (p *jsonParser) object(field func(key string) error) error {
	if err := p.delim('{'); err != nil {
		return err
	}
	for p.dec.More() {
		t, err := p.dec.Token()
		if err != nil {
			return err
		}
		key, ok := t.(string)
		if !ok {
			return fmt.Errorf("found %v where a key was expected", t)
		}
		if err := field(key); err != nil {
			return err
		}
	}
	return p.delim('}')
}

// str consumes a string.
func (p *jsonParser) str() (string, error) {
	t, err := p.dec.Token()
	if err != nil {
		return "", err
	}
	s, ok := t.(string)
	if !ok {
		return "", fmt.Errorf("found %v where a string was expected", t)
	}
	return s, nil
}

// uints consumes an array of at most max non-negative integers and appends
// them to v.
func (p *jsonParser) uints(v []uint64, max int) ([]uint64, error) {
	if err := p.delim('['); err != nil {
		return nil, err
	}
	n := len(v)
	for p.dec.More() {
		if len(v)-n == max {
			return nil, fmt.Errorf("more than %d values", max)
		}
		t, err := p.dec.Token()
		if err != nil {
			return nil, err
		}
		num, ok := t.(json.Number)
		if !ok {
			return nil, fmt.Errorf("found %v where an integer was expected", t)
		}
		u, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s is not a non-negative 64-bit integer", num)
		}
		v = append(v, u)
	}
	return v, p.delim(']')
}

// metadata consumes the "__metadata__" object of strings.
func (p *jsonParser) metadata() (map[string]string, error) {
	m := map[string]string{}
	err := p.object(func(key string) error {
		if _, dup := m[key]; dup {
			return fmt.Errorf("__metadata__ key %q appears twice", key)
		}
		v, err := p.str()
		if err != nil {
			return fmt.Errorf("__metadata__ %q: %w", key, err)
		}
		m[key] = v
		return nil
	})
	return m, err
}

// tensor consumes one tensor entry; its shape goes to p.shapes.
func (p *jsonParser) tensor() (headerEntry, error) {
	var e headerEntry
	var has [3]bool
	var off [2]uint64
	err := p.object(func(key string) error {
		var err error
		var i int
		switch key {
		case "dtype":
			i = 0
			var d string
			if d, err = p.str(); err == nil {
				i, ok := slices.BinarySearch(dtypes, d)
				if !ok {
					return fmt.Errorf("unknown dtype %q", d)
				}
				e.dtype = uint8(i)
			}
		case "shape":
			i = 1
			if has[1] {
				break // reported below, before the shape is parsed twice
			}
			n := len(p.shapes)
			p.shapes, err = p.uints(p.shapes, maxRank)
			e.shape, e.rank = int32(min(n, math.MaxInt32)), int32(len(p.shapes)-n)
		case "data_offsets":
			i = 2
			var o []uint64
			o, err = p.uints(off[:0], 2)
			if err == nil && len(o) != 2 {
				err = fmt.Errorf("%d values, want 2", len(o))
			}
			if err == nil {
				e.begin, e.end = o[0], o[1]
			}
		default:
			return fmt.Errorf("unknown field %q", key)
		}
		if has[i] {
			return fmt.Errorf("field %q appears twice", key)
		}
		has[i] = true
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return e, err
	}
	for i, name := range []string{"dtype", "shape", "data_offsets"} {
		if !has[i] {
			return e, fmt.Errorf("field %q is missing", name)
		}
	}
	return e, nil
}

// Names returns the names of the tensors in the order of the header.
func (f *SafetensorsFile) Names() []string {
	names := make([]string, len(f.entries))
	for i := range f.entries {
		names[i] = f.entries[i].name
	}
	return names
}

// Info describes the tensor called name, if the file has one.
func (f *SafetensorsFile) Info(name string) (TensorInfo, bool) {
	t, ok := f.tensorInfo(name)
	t.Shape = slices.Clone(t.Shape)
	return t, ok
}

// Metadata returns a copy of the file's "__metadata__" (nil if it has
// none). PyTorch files written by the safetensors package hold
// {"format": "pt"}.
func (f *SafetensorsFile) Metadata() map[string]string {
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
// wrapping [ErrWeights] if there is no such tensor, and one wrapping
// [ErrFormat] if the reader fails.
func (f *SafetensorsFile) Bytes(name string) ([]byte, error) {
	t, ok := f.tensorInfo(name)
	if !ok {
		return nil, fmt.Errorf("%w: no tensor %q in the file", ErrWeights, name)
	}
	b := make([]byte, t.Size) // checked against the file size
	if err := readFull(f.r, b, t.Offset); err != nil {
		return nil, fmt.Errorf("%w: reading tensor %q: %w", ErrFormat, name, err)
	}
	return b, nil
}

// Tensor is a named float32 tensor, row-major, as [SafetensorsFile.Tensor]
// returns it and [WriteSafetensors] takes it.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// Tensor reads the tensor called name and converts it to float32. F32 is
// copied; F16 and BF16 convert exactly (every value of theirs is a float32);
// F64 rounds to nearest. It returns an error wrapping [ErrWeights] if there
// is no such tensor or it holds another dtype, and one wrapping [ErrFormat]
// if the reader fails.
func (f *SafetensorsFile) Tensor(name string) (Tensor, error) {
	t, ok := f.tensorInfo(name)
	if !ok {
		return Tensor{}, fmt.Errorf("%w: no tensor %q in the file", ErrWeights, name)
	}
	switch t.DType {
	case "F32", "F16", "BF16", "F64":
	default:
		return Tensor{}, fmt.Errorf("%w: tensor %q has dtype %s, want F32, F16, BF16 or F64", ErrWeights, name, t.DType)
	}
	b, err := f.Bytes(name)
	if err != nil {
		return Tensor{}, err
	}
	out := Tensor{Name: name, Shape: slices.Clone(t.Shape), Data: make([]float32, t.Len())}
	decodeFloats(out.Data, b, t.DType)
	return out, nil
}

// decodeFloats converts the little-endian values b of the given dtype to dst.
func decodeFloats(dst []float32, b []byte, dtype string) {
	le := binary.LittleEndian
	switch dtype {
	case "F32":
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
	case "F16":
		for i := range dst {
			dst[i] = f16to32(le.Uint16(b[2*i:]))
		}
	case "BF16":
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(le.Uint16(b[2*i:])) << 16)
		}
	case "F64":
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(b[8*i:])))
		}
	}
}

// f16to32 converts an IEEE 754 binary16 value to float32, exactly.
func f16to32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // ±Inf, NaN (payload kept)
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0: // normal: rebias the exponent from 15 to 127
		return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
	default: // ±0 and subnormals: man·2⁻²⁴, exact in float32
		return math.Float32frombits(sign | math.Float32bits(float32(man)*(1.0/(1<<24))))
	}
}

// f32to16 rounds a float32 to the nearest binary16, ties to even. Values
// beyond the binary16 range become ±Inf; NaN stays NaN (quiet).
func f32to16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00 | uint16(man>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	switch {
	case e >= 0x1f:
		return sign | 0x7c00
	case e <= 0: // a binary16 subnormal, or zero
		if e < -10 {
			return sign // below half the smallest subnormal
		}
		return sign | uint16(roundShift(man|0x800000, uint(14-e)))
	}
	// A carry out of the mantissa moves to the exponent, and past the
	// largest exponent to Inf, which is the correct rounding.
	return sign | uint16(uint32(e)<<10+roundShift(man, 13))
}

// roundShift returns m >> shift rounded to nearest, ties to even; 1 ≤ shift ≤ 31.
func roundShift(m uint32, shift uint) uint32 {
	q := m >> shift
	rem := m & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || rem == half && q&1 == 1 {
		q++
	}
	return q
}

// f32toBF16 rounds a float32 to the nearest bfloat16, ties to even; NaN
// stays NaN (quiet).
func f32toBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// WriteSafetensors writes tensors to w as a safetensors file, in the order
// given, with their data converted to dtype: "F32", "F16" or "BF16" (rounded
// to nearest, ties to even). metadata, if not empty, becomes the header's
// "__metadata__"; PyTorch loaders expect {"format": "pt"}. The header is
// padded with spaces to a multiple of 8 bytes, as the reference writer does.
//
// It returns an error wrapping [ErrWeights] for a name that is not valid
// UTF-8, repeated or "__metadata__", a shape whose size differs from
// len(Data), or a finite value that overflows F16 or BF16 to infinity; and
// the writer's error if a write fails.
func WriteSafetensors(w io.Writer, tensors []Tensor, dtype string, metadata map[string]string) error {
	esize := 0
	switch dtype {
	case "F32":
		esize = 4
	case "F16", "BF16":
		esize = 2
	default:
		return fmt.Errorf("%w: cannot write dtype %q (want F32, F16 or BF16)", ErrWeights, dtype)
	}
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(metadata[k]) {
				return fmt.Errorf("%w: metadata %q is not valid UTF-8", ErrWeights, k)
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		hdr.WriteString(`"__metadata__":{`)
		for i, k := range keys {
			if i > 0 {
				hdr.WriteByte(',')
			}
			writeJSONString(&hdr, k)
			hdr.WriteByte(':')
			writeJSONString(&hdr, metadata[k])
		}
		hdr.WriteByte('}')
	}
	seen := make(map[string]bool, len(tensors))
	var off uint64
	for i, t := range tensors {
		if t.Name == "__metadata__" || !utf8.ValidString(t.Name) || seen[t.Name] {
			return fmt.Errorf("%w: tensor name %q is reserved, repeated or not UTF-8", ErrWeights, t.Name)
		}
		seen[t.Name] = true
		n := 1
		for _, d := range t.Shape {
			var ok bool
			if n, ok = mul(n, max(d, 0)); !ok || d < 0 {
				n = -1
				break
			}
		}
		if n != len(t.Data) || len(t.Shape) > maxRank {
			return fmt.Errorf("%w: tensor %q has shape %v and %d values", ErrWeights, t.Name, t.Shape, len(t.Data))
		}
		if len(metadata) > 0 || i > 0 {
			hdr.WriteByte(',')
		}
		writeJSONString(&hdr, t.Name)
		hdr.WriteString(`:{"dtype":"` + dtype + `","shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				hdr.WriteByte(',')
			}
			hdr.WriteString(strconv.Itoa(d))
		}
		end := off + uint64(n)*uint64(esize)
		fmt.Fprintf(&hdr, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	hdr.WriteByte('}')
	for hdr.Len()%8 != 0 {
		hdr.WriteByte(' ')
	}
	var head [8]byte
	binary.LittleEndian.PutUint64(head[:], uint64(hdr.Len()))
	if _, err := w.Write(head[:]); err != nil {
		return err
	}
	if _, err := w.Write(hdr.Bytes()); err != nil {
		return err
	}
	// The data goes out in chunks of a fixed buffer.
	buf := make([]byte, 0, 64<<10)
	le := binary.LittleEndian
	for _, t := range tensors {
		for i, v := range t.Data {
			if len(buf)+4 > cap(buf) {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
			switch dtype {
			case "F32":
				buf = le.AppendUint32(buf, math.Float32bits(v))
				continue
			case "F16":
				h := f32to16(v)
				if h&0x7fff == 0x7c00 && !math.IsInf(float64(v), 0) {
					return fmt.Errorf("%w: %s[%d] = %v overflows F16", ErrWeights, t.Name, i, v)
				}
				buf = le.AppendUint16(buf, h)
			case "BF16":
				h := f32toBF16(v)
				if h&0x7fff == 0x7f80 && !math.IsInf(float64(v), 0) {
					return fmt.Errorf("%w: %s[%d] = %v overflows BF16", ErrWeights, t.Name, i, v)
				}
				buf = le.AppendUint16(buf, h)
			}
		}
	}
	if len(buf) > 0 {
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// writeJSONString writes s as a JSON string. s must be valid UTF-8.
func writeJSONString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s) // cannot fail on a string
	b.Write(q)
}

// Mapping names the parameters of a layer the way a PyTorch module does, so
// that its state_dict, saved as safetensors, loads as [Weights]. Every
// mapping stores a projection as nn.Linear does: weight [out, in] and bias
// [out], which is the layout of [Weights] itself, so nothing is transposed.
// With Config c, hq = c.Heads·c.HeadDim, hk = c.KVHeads·c.HeadDim and
// hv = c.KVHeads·c.ValueHeadDim:
//
//	Diffusers   diffusers' Attention (attn1, attn2 of a transformer block)
//	  to_q.weight [hq, QueryDim]     to_q.bias [hq]      biases only if c.Bias
//	  to_k.weight [hk, ContextDim]   to_k.bias [hk]
//	  to_v.weight [hv, ValueDim]     to_v.bias [hv]
//	  to_out.0.weight [OutDim, Heads·ValueHeadDim]   to_out.0.bias [OutDim]  (optional)
//
//	TorchMHA    torch.nn.MultiheadAttention
//	  in_proj_weight [hq+hk+hv, E]   in_proj_bias [hq+hk+hv]   if kdim = vdim = embed_dim
//	  q_proj_weight [hq, QueryDim]   in_proj_bias [hq+hk+hv]   otherwise
//	  k_proj_weight [hk, ContextDim]
//	  v_proj_weight [hv, ValueDim]
//	  out_proj.weight [OutDim, hq]   out_proj.bias [OutDim]    (optional)
//
//	Plain       q_proj, k_proj, v_proj, out_proj Linear layers (Hugging Face
//	            transformers' BART, Whisper, … attention blocks)
//	  q_proj.weight, q_proj.bias, k_proj.…, v_proj.…, out_proj.weight, out_proj.bias
//
// Biases of the query, key and value projections are present exactly when
// Config.Bias is set (in_proj_bias for TorchMHA), with one exception: Plain's
// k_proj.bias may be absent, as in Whisper, and is then zero. (A key bias b
// adds q·b to every score of query q alike, which the softmax cancels, so
// Whisper's layers compute the same with or without it.) The output bias may
// be absent (diffusers' out_bias=False, MultiheadAttention's bias=False), and
// is then zero. TorchMHA needs the shapes of a MultiheadAttention: QueryDim =
// Heads·HeadDim = Heads·ValueHeadDim = OutDim (embed_dim) and KVHeads = Heads;
// kdim and vdim are ContextDim and ValueDim. Its in_proj_weight form needs
// ContextDim = ValueDim = QueryDim, as in PyTorch.
//
// The scale of the scores is not stored in the file: all three modules use
// 1/√HeadDim, the default of Config.Scale.
type Mapping int

const (
	// Diffusers is diffusers' Attention: to_q, to_k, to_v, to_out.0.
	Diffusers Mapping = iota + 1
	// TorchMHA is torch.nn.MultiheadAttention: in_proj_weight (or
	// q_proj_weight, k_proj_weight, v_proj_weight), in_proj_bias, out_proj.
	TorchMHA
	// Plain is q_proj, k_proj, v_proj, out_proj, each with .weight and .bias.
	Plain
)

// String returns the mapping's name: "diffusers", "torch-mha" or "plain".
func (m Mapping) String() string {
	switch m {
	case Diffusers:
		return "diffusers"
	case TorchMHA:
		return "torch-mha"
	case Plain:
		return "plain"
	}
	return "Mapping(" + strconv.Itoa(int(m)) + ")"
}

// param is one tensor of a mapping: its name and the [rows, cols] shape it
// must have (cols 0 for a vector). dst receives it when loading; data is
// written when saving.
type param struct {
	name       string
	rows, cols int
	required   bool
	dst        *[]float32
}

// params lists the tensors of mapping m for the resolved Config c, with
// names relative to the prefix. For TorchMHA, the packed in_proj tensors are
// described with dst nil; the caller splits them.
func (m Mapping) params(c Config, w *Weights) ([]param, error) {
	hq, hk, hv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.KVHeads*c.ValueHeadDim
	ho := c.Heads * c.ValueHeadDim
	var q, k, v, o string
	switch m {
	case Diffusers:
		q, k, v, o = "to_q.", "to_k.", "to_v.", "to_out.0."
	case Plain:
		q, k, v, o = "q_proj.", "k_proj.", "v_proj.", "out_proj."
	case TorchMHA:
		e := c.QueryDim
		if hq != e || ho != e || c.OutDim != e || c.KVHeads != c.Heads {
			return nil, fmt.Errorf("%w: TorchMHA needs QueryDim = Heads·HeadDim = Heads·ValueHeadDim = OutDim and KVHeads = Heads; have %v",
				ErrConfig, c)
		}
		ps := []param{
			{"out_proj.weight", c.OutDim, ho, true, &w.Out},
			{"out_proj.bias", c.OutDim, 0, false, &w.OutBias},
		}
		if c.Bias {
			ps = append(ps, param{"in_proj_bias", hq + hk + hv, 0, true, nil})
		}
		return ps, nil
	default:
		return nil, fmt.Errorf("%w: unknown Mapping %d", ErrConfig, int(m))
	}
	ps := []param{
		{q + "weight", hq, c.QueryDim, true, &w.Q},
		{k + "weight", hk, c.ContextDim, true, &w.K},
		{v + "weight", hv, c.ValueDim, true, &w.V},
		{o + "weight", c.OutDim, ho, true, &w.Out},
		{o + "bias", c.OutDim, 0, false, &w.OutBias},
	}
	if c.Bias {
		ps = append(ps,
			param{q + "bias", hq, 0, true, &w.QBias},
			// Plain's k_proj.bias may be absent, as in Whisper (see Mapping).
			param{k + "bias", hk, 0, m != Plain, &w.KBias},
			param{v + "bias", hv, 0, true, &w.VBias})
	}
	return ps, nil
}

// normPrefix returns prefix with a trailing dot, unless it is empty.
func normPrefix(prefix string) string {
	if prefix != "" && prefix[len(prefix)-1] != '.' {
		prefix += "."
	}
	return prefix
}

// LoadWeights reads the weights of a layer with Config cfg from the
// safetensors file that r holds (size bytes), under the names of mapping m
// (see [Mapping]) preceded by prefix: with prefix
// "down_blocks.0.attentions.0.transformer_blocks.0.attn2", the query weight
// of [Diffusers] is "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.weight".
// A prefix that does not end in "." gets one. Tensors may be F32, F16, BF16
// or F64; they convert to float32 (see [SafetensorsFile.Tensor]).
//
// The file may hold other tensors, but none whose name starts with the
// prefix other than those of the mapping: an unexpected tensor there (a bias
// when cfg.Bias is false, diffusers' norm_q, MultiheadAttention's bias_k) is
// an error, since the layer would compute something other than the module.
// With an empty prefix, the file must hold the layer's tensors only.
//
// Errors wrap [ErrFormat] for a malformed file (see [ReadSafetensors]),
// [ErrConfig] for an invalid cfg or m, and [ErrWeights] for a missing,
// unexpected or misshapen tensor, a non-float dtype, or NaN or infinite
// values.
func LoadWeights(r io.ReaderAt, size int64, cfg Config, m Mapping, prefix string) (*Weights, error) {
	f, err := ReadSafetensors(r, size)
	if err != nil {
		return nil, err
	}
	return f.Weights(cfg, m, prefix)
}

// LoadWeightsFile is [LoadWeights] for the file at path. An error opening
// the file is returned as os.Open gives it (an *fs.PathError).
func LoadWeightsFile(path string, cfg Config, m Mapping, prefix string) (*Weights, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	return LoadWeights(fh, st.Size(), cfg, m, prefix)
}

// Weights reads the weights of a layer from f; see [LoadWeights]. Use it to
// load several layers from one file without parsing its header again.
func (f *SafetensorsFile) Weights(cfg Config, m Mapping, prefix string) (*Weights, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	w := &Weights{}
	ps, err := m.params(c, w)
	if err != nil {
		return nil, err
	}
	prefix = normPrefix(prefix)
	used := map[string]bool{}
	load := func(p param) ([]float32, error) {
		name := prefix + p.name
		info, ok := f.tensorInfo(name)
		if !ok {
			if p.required {
				return nil, fmt.Errorf("%w: %s weights need tensor %q, which the file lacks", ErrWeights, m, name)
			}
			return nil, nil
		}
		used[name] = true
		want := []int{p.rows, p.cols}
		if p.cols == 0 {
			want = want[:1]
		}
		if !slices.Equal(info.Shape, want) {
			return nil, fmt.Errorf("%w: tensor %q has shape %v, want %v for %v", ErrWeights, name, info.Shape, want, c)
		}
		t, err := f.Tensor(name)
		return t.Data, err
	}
	if m == TorchMHA {
		hq, hk, hv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.KVHeads*c.ValueHeadDim
		if _, packed := f.lookup(prefix + "in_proj_weight"); packed {
			if c.ContextDim != c.QueryDim || c.ValueDim != c.QueryDim {
				return nil, fmt.Errorf("%w: in_proj_weight needs QueryDim = ContextDim = ValueDim; have %v", ErrWeights, c)
			}
			all, err := load(param{name: "in_proj_weight", rows: hq + hk + hv, cols: c.QueryDim, required: true})
			if err != nil {
				return nil, err
			}
			d := c.QueryDim
			w.Q, w.K, w.V = all[:hq*d:hq*d], all[hq*d:(hq+hk)*d:(hq+hk)*d], all[(hq+hk)*d:]
		} else {
			ps = append(ps,
				param{"q_proj_weight", hq, c.QueryDim, true, &w.Q},
				param{"k_proj_weight", hk, c.ContextDim, true, &w.K},
				param{"v_proj_weight", hv, c.ValueDim, true, &w.V})
		}
	}
	for _, p := range ps {
		data, err := load(p)
		if err != nil {
			return nil, err
		}
		if p.dst != nil {
			*p.dst = data
		} else if data != nil { // TorchMHA's in_proj_bias
			hq, hk := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
			w.QBias, w.KBias, w.VBias = data[:hq:hq], data[hq:hq+hk:hq+hk], data[hq+hk:]
		}
	}
	if w.OutBias == nil {
		w.OutBias = make([]float32, c.OutDim)
	}
	if c.Bias && w.KBias == nil {
		w.KBias = make([]float32, c.KVHeads*c.HeadDim)
	}
	for i := range f.entries {
		name := f.entries[i].name
		if len(name) >= len(prefix) && name[:len(prefix)] == prefix && !used[name] {
			return nil, fmt.Errorf("%w: tensor %q is not part of %s weights for %v", ErrWeights, name, m, c)
		}
	}
	if err := w.check(c); err != nil {
		return nil, err
	}
	return w, nil
}

// Tensors returns the parameters in w under the names of mapping m preceded
// by prefix (see [LoadWeights]), ready for [WriteSafetensors]. The data
// slices are w's own, not copies, except where TorchMHA packs in_proj_weight
// and in_proj_bias. The output bias is always included, except for
// TorchMHA when cfg.Bias is false and the output bias is zero, since a
// MultiheadAttention with bias=False has none.
func (w *Weights) Tensors(cfg Config, m Mapping, prefix string) ([]Tensor, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if err := w.check(c); err != nil {
		return nil, err
	}
	prefix = normPrefix(prefix)
	src := *w // params reads through the pointers, never writes
	ps, err := m.params(c, &src)
	if err != nil {
		return nil, err
	}
	var ts []Tensor
	add := func(name string, rows, cols int, data []float32) {
		shape := []int{rows, cols}
		if cols == 0 {
			shape = shape[:1]
		}
		ts = append(ts, Tensor{Name: prefix + name, Shape: shape, Data: data})
	}
	if m == TorchMHA {
		hq, hk, hv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.KVHeads*c.ValueHeadDim
		if c.ContextDim == c.QueryDim && c.ValueDim == c.QueryDim {
			add("in_proj_weight", hq+hk+hv, c.QueryDim, slices.Concat(w.Q, w.K, w.V))
		} else {
			add("q_proj_weight", hq, c.QueryDim, w.Q)
			add("k_proj_weight", hk, c.ContextDim, w.K)
			add("v_proj_weight", hv, c.ValueDim, w.V)
		}
	}
	for _, p := range ps {
		if p.dst == nil {
			add(p.name, p.rows, 0, slices.Concat(w.QBias, w.KBias, w.VBias))
			continue
		}
		if m == TorchMHA && p.name == "out_proj.bias" && !c.Bias && !slices.ContainsFunc(w.OutBias, func(v float32) bool { return v != 0 }) {
			continue
		}
		data := *p.dst
		if data == nil { // a nil OutBias, the only part check lets be nil here
			data = make([]float32, p.rows)
		}
		add(p.name, p.rows, p.cols, data)
	}
	return ts, nil
}

// Save writes w to wr as a float32 safetensors file under the names of
// mapping m preceded by prefix (see [LoadWeights] and [Weights.Tensors]),
// with the metadata {"format": "pt"} that PyTorch loaders expect.
// [LoadWeights] with the same arguments reads it back exactly. For F16 or
// BF16 files, pass [Weights.Tensors] to [WriteSafetensors].
func (w *Weights) Save(wr io.Writer, cfg Config, m Mapping, prefix string) error {
	ts, err := w.Tensors(cfg, m, prefix)
	if err != nil {
		return err
	}
	return WriteSafetensors(wr, ts, "F32", map[string]string{"format": "pt"})
}
