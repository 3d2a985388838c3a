package blas

// Packed is a matrix, or a list of matrices of one shape (its items), laid
// out by a backend for its products: the right-hand side w of C = A·wᵀ,
// given n×k row-major to [Backend.Pack] (a layer's weights), or the keys of
// an attention, laid out by [Backend.PackKeys]. Column j of C reads row j of
// w: N is the columns of the product, K its depth.
//
// The layout is the backend's: a caller takes sizes and views ([Packed.Cols], [Packed.Items])
// and hands them back to the backend that made them, in [Batch.Packed] and
// [Attention.KT]; it never computes an offset. A backend reads only the
// layouts it knows and reads B (or K) as it is otherwise, so a Packed of
// another backend costs speed, never correctness. A Packed is never written
// after it is made: it is safe to share, and views share its memory.
//
// The zero Packed means "not packed".
type Packed struct {
	layout layout
	f32    []float32 // the values, for the float32 layouts
	off    int       // where item 0's first panel starts in f32
	n, k   int       // the shape of each item
	items  int
	stride int        // values from one item to the next
	panel  int        // columns of a panel
	bf     BF16Packed // the values of layoutBF16
	kv     BF16KV     // the keys and values of layoutBF16KV (a value: a Packed made in caller memory allocates nothing)
	col    int        // the first key of a layoutBF16KV view (Cols)
}

// layout names the arrangement of a Packed's values. A backend with another
// layout (bf16 pairs, say) adds a value here and the fields its values need.
type layout uint8

const (
	// layoutNone is the zero Packed.
	layoutNone layout = iota
	// layoutPanels is float32 column panels: the columns [j, j+panel) of
	// row p of item i, for j a multiple of panel, are the panel values at
	// f32[off + i·stride + (j/panel)·panel·k + p·panel …], the columns past
	// n zero.
	layoutPanels
	// layoutBF16 is a matrix rounded to bf16 in the pair-interleaved
	// panels of [BF16Packed], in bf: the weights of a BF16 backend
	// ([WithBF16]), which its products read in place of B.
	layoutBF16
	// layoutBF16KV is the keys and values of an attention rounded to bf16
	// and packed for the BF16 core ([BF16.Pack]), in kv: a BF16 backend's
	// PackKeys. Views start on whole batches (Items) and on multiples of
	// 32 keys (Cols).
	layoutBF16KV
)

// IsZero reports whether p is the zero Packed: nothing packed.
func (p Packed) IsZero() bool { return p.layout == layoutNone }

// N returns the columns of the products p is the right-hand side of (the
// rows of the w given to Pack, the keys of PackKeys).
func (p Packed) N() int { return p.n }

// K returns the depth of the products p is the right-hand side of.
func (p Packed) K() int { return p.k }

// Count returns the number of matrices p holds: 1 for packed weights,
// Batch·KVHeads for packed keys.
func (p Packed) Count() int { return p.items }

// Bytes returns the memory p's values take, padding included; views of one
// matrix share it.
func (p Packed) Bytes() int {
	switch {
	case p.items == 0:
		return 0
	case p.layout == layoutBF16:
		return p.bf.Bytes()
	case p.layout == layoutBF16KV:
		return p.kv.bytes()
	}
	return 4 * ((p.items-1)*p.stride + ceilDiv(p.n, p.panel)*p.panel*p.k)
}

// BF16KeyStep is the key step of the views of a BF16 backend's packed keys
// and values ([Packed.Cols]): the BF16 core's key panels start on groups of
// 32 keys, twice the column step of its packed weights ([BF16Panel], what
// [Backend.Steps] reports). A caller that splits keys keeps the packed view
// where its split points are multiples of it.
const BF16KeyStep = bf16Rows

// Cols returns the view of columns [j0, j0+n) of every item of p, and
// whether the layout has one: j0 must start a column step of the backend
// ([Backend.Steps]) for packed weights and FP32 packed keys, and a group of
// [BF16KeyStep] keys for the keys and values a BF16 backend's PackKeys
// packed (a step of Steps' columns is not enough there), and 0 < n ≤ N−j0.
// Otherwise it returns the zero Packed and false, and the caller's
// products read their B as it is (an attention its K and V: the same
// values, slower).
func (p Packed) Cols(j0, n int) (Packed, bool) {
	if p.layout == layoutBF16 && p.items == 1 {
		bf, err := p.bf.Cols(j0, n)
		if err != nil || n <= 0 {
			return Packed{}, false
		}
		v := p
		v.bf, v.n = bf, n
		return v, true
	}
	if p.layout == layoutBF16KV {
		if j0 < 0 || j0%BF16KeyStep != 0 || n <= 0 || n > p.n-j0 {
			return Packed{}, false
		}
		v := p
		v.col += j0
		v.n = n
		return v, true
	}
	if p.layout != layoutPanels || j0 < 0 || n <= 0 || n > p.n-j0 || j0%p.panel != 0 {
		return Packed{}, false
	}
	v := p
	v.off += j0 / p.panel * p.panel * p.k
	v.n = n
	return v, true
}

// Items returns the view of items [i0, i0+n) of p, and whether there are
// such items (0 < n ≤ Count−i0); otherwise the zero Packed and false.
func (p Packed) Items(i0, n int) (Packed, bool) {
	if p.layout == layoutBF16 {
		if i0 == 0 && n == p.items {
			return p, true
		}
		return Packed{}, false
	}
	if p.layout == layoutBF16KV {
		g := p.kv.heads()
		if i0 < 0 || n <= 0 || n > p.items-i0 || i0%g != 0 || n%g != 0 {
			return Packed{}, false
		}
		v := p
		v.off += i0
		v.items = n
		return v, true
	}
	if p.layout == layoutNone || i0 < 0 || n <= 0 || n > p.items-i0 {
		return Packed{}, false
	}
	v := p
	v.off += i0 * p.stride
	v.items = n
	return v, true
}

// panels returns the float32 values of item 0 from p's first panel on, for
// a backend that reads layoutPanels with panels of width panel, or nil when
// p is another layout (or none).
func (p Packed) panels(panel int) []float32 {
	if p.layout != layoutPanels || p.panel != panel {
		return nil
	}
	return p.f32[p.off:]
}

// newPanels returns a zeroed Packed of items n×k matrices in column panels
// of width panel, each item stride values after the one before it.
func newPanels(items, n, k, panel int) Packed {
	stride := ceilDiv(n, panel) * panel * k
	return Packed{layout: layoutPanels, f32: make([]float32, items*stride), n: n, k: k,
		items: items, stride: stride, panel: panel}
}

// PackedKeysLen returns the length, in float32 values (4 bytes each), of
// the keys (and, for a BF16 backend, values) that be.PackKeys makes for
// items = Batch·KVHeads heads of tk keys of depth dk and values of depth
// dv: 0 where be packs none. ok is false for a backend outside this
// package, whose layout it cannot know.
func PackedKeysLen(be Backend, items, tk, dk, dv int) (n float64, ok bool) {
	if s, isOurs := be.(interface {
		packedKeysLen(items, tk, dk, dv int) float64
	}); isOurs {
		return s.packedKeysLen(items, tk, dk, dv), true
	}
	return 0, false
}

// panelsLen is the number of values of an n×k matrix in column panels of
// width panel.
func panelsLen(n, k, panel int) int { return ceilDiv(n, panel) * panel * k }
