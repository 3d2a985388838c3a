package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxHeader is the largest header, in bytes, that [Read] accepts: 100 MB,
// the limit of the reference implementation. Real headers are a few
// kilobytes to a few megabytes.
const MaxHeader = 100_000_000

// maxRank is the largest number of dimensions a tensor may have. It bounds
// the memory a header of a given size can make the reader allocate.
const maxRank = 32

// Read parses and validates the header of the safetensors file
// that r holds, of size bytes. It reads the header only; the tensors are read
// when asked for. size must be the true size of the data behind r.
//
// It returns an error wrapping [ErrFormat] unless the file is well formed:
//
//   - the header size fits the file and is at most [MaxHeader];
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
func Read(r io.ReaderAt, size int64) (*File, error) {
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
	if n > MaxHeader {
		return nil, fmt.Errorf("%w: header of %d bytes exceeds the limit of %d", ErrFormat, n, MaxHeader)
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
func (f *File) info(i int) TensorInfo {
	e := &f.entries[i]
	return TensorInfo{DType: dtypes[e.dtype], Shape: f.shapes[e.shape : e.shape+e.rank : e.shape+e.rank],
		Offset: int64(e.begin), Size: int64(e.end - e.begin)}
}

// lookup returns the index of the tensor called name.
func (f *File) lookup(name string) (int, bool) {
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
func (f *File) tensorInfo(name string) (TensorInfo, bool) {
	i, ok := f.lookup(name)
	if !ok {
		return TensorInfo{}, false
	}
	return f.info(i), true
}

// parseHeader parses and validates the JSON header hdr of a file of size
// bytes whose byte buffer starts at dataStart.
func parseHeader(hdr io.Reader, dataStart, size int64) (*File, error) {
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
	f := &File{entries: entries, metadata: metadata, shapes: make([]int, len(p.shapes))}
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
