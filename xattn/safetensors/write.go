package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Write writes tensors to w as a safetensors file, in the order
// given, with their data converted to dtype: "F32", "F16" or "BF16" (rounded
// to nearest, ties to even). metadata, if not empty, becomes the header's
// "__metadata__"; PyTorch loaders expect {"format": "pt"}. The header is
// padded with spaces to a multiple of 8 bytes, as the reference writer does.
//
// It returns an error wrapping [ErrTensor] for a name that is not valid
// UTF-8, repeated or "__metadata__", a shape whose size differs from
// len(Data), or a finite value that overflows F16 or BF16 to infinity; and
// the writer's error if a write fails.
func Write(w io.Writer, tensors []Tensor, dtype string, metadata map[string]string) error {
	esize := 0
	switch dtype {
	case "F32":
		esize = 4
	case "F16", "BF16":
		esize = 2
	default:
		return fmt.Errorf("%w: cannot write dtype %q (want F32, F16 or BF16)", ErrTensor, dtype)
	}
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(metadata[k]) {
				return fmt.Errorf("%w: metadata %q is not valid UTF-8", ErrTensor, k)
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
			return fmt.Errorf("%w: tensor name %q is reserved, repeated or not UTF-8", ErrTensor, t.Name)
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
			return fmt.Errorf("%w: tensor %q has shape %v and %d values", ErrTensor, t.Name, t.Shape, len(t.Data))
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
					return fmt.Errorf("%w: %s[%d] = %v overflows F16", ErrTensor, t.Name, i, v)
				}
				buf = le.AppendUint16(buf, h)
			case "BF16":
				h := f32toBF16(v)
				if h&0x7fff == 0x7f80 && !math.IsInf(float64(v), 0) {
					return fmt.Errorf("%w: %s[%d] = %v overflows BF16", ErrTensor, t.Name, i, v)
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

// mul returns a·b for a, b ≥ 0, and whether it fits an int.
func mul(a, b int) (int, bool) {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > math.MaxInt {
		return 0, false
	}
	return int(lo), true
}
