package xattn

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
)

// RoPE describes rotary position embeddings (RoFormer; Llama, Mistral,
// Qwen, GPT-NeoX, GPT-J): the query and key heads are rotated by their
// absolute positions after the projections (biases included) and before the
// scores, so that a score depends on the distance between its query and key.
// For a head x of HeadDim values at position p, pair k = 0 … Dims/2−1 of
// the first Dims values is rotated by the angle p·Base^(−2k/Dims):
//
//	(a, b) ← (a·cos θ − b·sin θ, b·cos θ + a·sin θ)
//
// with a, b = x[k], x[k+Dims/2] (half-split, HF Llama's rotate_half and
// GPT-NeoX's) or x[2k], x[2k+1] (Interleaved: GPT-J, RoFormer, Meta's
// complex-number Llama). Values past Dims are not rotated (GPT-NeoX's
// rotary_pct, Phi's partial_rotary_factor).
type RoPE struct {
	// Base of the frequencies; 0 means 10000.
	Base float64
	// Dims is the number of rotated values of a head, even; 0 means HeadDim
	// (HeadDim−1 when HeadDim is odd).
	Dims int
	// Interleaved pairs adjacent values instead of the two halves.
	Interleaved bool
}

// WithRoPE rotates the queries and keys of the layer by their positions
// ([RoPE]).
//
// Keys sit at 0 … Tk−1 of their sequence: in [Layer.ForwardInto],
// ForwardQKV, ForwardSelfDoc, [Layer.ForwardBatch] (each request on its own)
// and the attention maps, and in [Layer.ProjectContext] and ProjectKV, whose
// [Context] holds rotated keys. Queries sit where the call's mask places
// them: at Tk − Tq + i when the Mask has CausalLowerRight (Window and ALiBi,
// which it aligns the same way, included) — a chunked prefill, with x the
// last Tq of Tk tokens and the context all of them, then equals the last Tq
// rows of causal self-attention over the Tk tokens — and at i otherwise.
// With Tq = Tk both rules agree; with Tq > Tk under CausalLowerRight the
// first Tq − Tk queries sit at negative positions, where they see no key.
// [Layer.ForwardContext] follows the same rule over its Context's Tk keys.
// In [Layer.ForwardStep] the new queries and keys sit at their cache
// positions KVCache.Len()+i (what CausalLowerRight places them at anyway),
// and the cache holds rotated keys. In Hugging Face's terms: position_ids =
// arange(Tk−Tq, Tk) for the queries of a bottom-right call, arange(Tq)
// otherwise, arange(Tk) for the keys. Positions that follow another rule
// (left padding, packed sequences) need the caller's own rotation and
// [Attention].
//
// The angles of positions [0, N) are computed once per layer and shared by
// its calls: N doubles (from 64) as calls need more, up to 1<<16 positions
// or 16 MiB; a call that needs positions past that, or negative ones,
// computes its own in its workspace. The rotation runs over the call's
// threads. The absorbed and fused forms are not used with it (the rotation
// sits between the projection and the scores); [NewAttention] and
// [NewFiLM] return an error wrapping [ErrConfig]. Base must be positive and
// finite (or 0), Dims even, at most HeadDim (New checks), or New returns
// an error wrapping ErrConfig.
func WithRoPE(r RoPE) Option {
	return func(s *settings) error {
		if r.Base < 0 || math.IsNaN(r.Base) || math.IsInf(r.Base, 0) {
			return fmt.Errorf("%w: RoPE Base=%v must be positive and finite", ErrConfig, r.Base)
		}
		if r.Dims < 0 || r.Dims%2 != 0 {
			return fmt.Errorf("%w: RoPE Dims=%d must be even and not negative", ErrConfig, r.Dims)
		}
		if r.Base == 0 {
			r.Base = 10000
		}
		s.rope = &r
		return nil
	}
}

// rope is a layer's rotation: the frequency of each pair, for a head of
// dims rotated values, and the table of cos θ, sin θ its calls share.
type rope struct {
	freq        []float64 // Base^(−2k/Dims), k < Dims/2
	dims        int
	interleaved bool

	// tab is the shared table of positions [0, tab.n), immutable once
	// published; mu serializes its growth. maxPos caps it: a call that
	// needs a position outside [0, maxPos) fills a table of its own.
	tab    atomic.Pointer[ropeTable]
	mu     sync.Mutex
	maxPos int
}

// ropeTable is cos θ, sin θ of positions [0, n) and every pair: entry
// p·dims + 2k, +1 (see rope.fill).
type ropeTable struct {
	n  int
	cs []float32
}

// ropeTableBytes and ropeTablePositions bound a layer's shared table: 1<<16
// positions, and 16 MiB (32768 positions of 128 rotated values).
const (
	ropeTableBytes     = 16 << 20
	ropeTablePositions = 1 << 16
	ropeTableMin       = 64 // positions of a first table
)

// newRoPE resolves r for heads of dh values.
func newRoPE(r *RoPE, dh int) (*rope, error) {
	if r == nil {
		return nil, nil
	}
	d := r.Dims
	if d == 0 {
		d = dh - dh%2
	}
	if d > dh {
		return nil, fmt.Errorf("%w: RoPE Dims=%d exceeds HeadDim=%d", ErrConfig, r.Dims, dh)
	}
	rp := &rope{freq: make([]float64, d/2), dims: d, interleaved: r.Interleaved}
	for k := range rp.freq {
		rp.freq[k] = math.Pow(r.Base, -2*float64(k)/float64(d))
	}
	rp.maxPos = ropeTablePositions
	if d > 0 {
		rp.maxPos = min(rp.maxPos, ropeTableBytes/(4*d))
	}
	return rp, nil
}

// ropeRows are rows to rotate: rows of heads heads of dh values at stride
// ld, row r at position off + r%period. item0 is the first item of the
// rotate stage that rotates them (ropeJob).
type ropeRows struct {
	x           []float32
	rows, ld    int
	heads       int
	period, off int
	item0       int
}

// fill fills t with cos θ, sin θ of positions [p0, p1) and every pair:
// entry (p−p0)·dims + 2k, +1.
func (rp *rope) fill(t []float32, p0, p1 int) {
	d := rp.dims
	for p := p0; p < p1; p++ {
		row := t[(p-p0)*d:][:d]
		for k, f := range rp.freq {
			s, c := math.Sincos(float64(p) * f)
			row[2*k], row[2*k+1] = float32(c), float32(s)
		}
	}
}

// cosSin returns a table of positions [p0, p1) and the position of its first
// entry: the layer's shared table, grown if it is too short, while [p0, p1)
// lies in [0, maxPos); else a table of the call's own positions in *scratch
// (grown).
func (rp *rope) cosSin(scratch *[]float32, p0, p1 int) ([]float32, int) {
	if p0 >= 0 && p1 <= rp.maxPos {
		t := rp.tab.Load()
		if t == nil || t.n < p1 {
			t = rp.grow(p1)
		}
		return t.cs, 0
	}
	*scratch = grow(*scratch, (p1-p0)*rp.dims)
	rp.fill(*scratch, p0, p1)
	return *scratch, p0
}

// grow publishes a shared table of at least positions [0, p1), p1 ≤ maxPos:
// the old one's size doubled until it holds them (at most maxPos), its
// entries copied and the new ones computed.
func (rp *rope) grow(p1 int) *ropeTable {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	old := rp.tab.Load()
	if old != nil && old.n >= p1 {
		return old // grown by another call meanwhile
	}
	n, from := ropeTableMin, 0
	if old != nil {
		n, from = old.n, old.n
	}
	for n < p1 {
		n *= 2
	}
	n = min(n, rp.maxPos)
	t := &ropeTable{n: n, cs: make([]float32, n*rp.dims)}
	if old != nil {
		copy(t.cs, old.cs)
	}
	rp.fill(t.cs[from*rp.dims:], from, n)
	rp.tab.Store(t)
	return t
}

// rotate rotates the heads of rows [r0, r1) of x in place, with the table
// t of positions from p0 on (cosSin).
func (rp *rope) rotate(x *ropeRows, dh int, t []float32, p0, r0, r1 int) {
	half := rp.dims / 2
	for r := r0; r < r1; r++ {
		cs := t[(x.off+r%x.period-p0)*rp.dims:][:rp.dims]
		row := x.x[r*x.ld:]
		for h := range x.heads {
			v := row[h*dh : h*dh+rp.dims]
			if rp.interleaved {
				for k := range half {
					c, s := cs[2*k], cs[2*k+1]
					a, b := v[2*k], v[2*k+1]
					v[2*k], v[2*k+1] = a*c-b*s, b*c+a*s
				}
				continue
			}
			lo, hi := v[:half], v[half:]
			for k := range half {
				c, s := cs[2*k], cs[2*k+1]
				a, b := lo[k], hi[k]
				lo[k], hi[k] = a*c-b*s, b*c+a*s
			}
		}
	}
}

// rotateAll rotates every row of the segments segs on the calling
// goroutine, with a table in *scratch where the shared one does not serve.
func (rp *rope) rotateAll(segs []ropeRows, dh int, scratch *[]float32) {
	p0, p1 := ropeSpan(segs)
	if p1 <= p0 || rp.dims == 0 {
		return
	}
	t, tp := rp.cosSin(scratch, p0, p1)
	for i := range segs {
		rp.rotate(&segs[i], dh, t, tp, 0, segs[i].rows)
	}
}

// ropeSpan returns the positions [p0, p1) the rows of segs sit at; p1 ≤ p0
// when they have none.
func ropeSpan(segs []ropeRows) (p0, p1 int) {
	p0, p1 = math.MaxInt, math.MinInt
	for i := range segs {
		if s := &segs[i]; s.rows > 0 {
			p0, p1 = min(p0, s.off), max(p1, s.off+min(s.period, s.rows))
		}
	}
	return p0, p1
}

// ropeJob is the rotate stage of a call in flight: the row segments it
// rotates, the table, and the rows of one item.
type ropeJob struct {
	segs  []ropeRows
	t     []float32
	tp    int // position of t's first entry
	chunk int // rows of an item
}

// item rotates the rows of item i of the stage: chunk rows of one segment.
func (j *ropeJob) item(rp *rope, dh, i int) {
	// The last segment whose first item is at most i (an empty one shares
	// its item0 with the next).
	lo, hi := 0, len(j.segs)
	for hi-lo > 1 {
		if m := (lo + hi) / 2; j.segs[m].item0 > i {
			hi = m
		} else {
			lo = m
		}
	}
	s := &j.segs[lo]
	r0 := (i - s.item0) * j.chunk
	rp.rotate(s, dh, j.t, j.tp, r0, min(r0+j.chunk, s.rows))
}

// plan sets the table and the items of the segments for threads workers
// and returns the number of items; 0 for nothing to rotate.
func (j *ropeJob) plan(rp *rope, scratch *[]float32, threads int) int {
	p0, p1 := ropeSpan(j.segs)
	if p1 <= p0 || rp.dims == 0 {
		return 0
	}
	j.t, j.tp = rp.cosSin(scratch, p0, p1)
	rows := 0
	for i := range j.segs {
		rows += j.segs[i].rows
	}
	j.chunk = rows
	if threads > 1 {
		j.chunk = max(1, ceilDiv(rows, 4*threads))
	}
	n := 0
	for i := range j.segs {
		j.segs[i].item0 = n
		n += ceilDiv(j.segs[i].rows, j.chunk)
	}
	return n
}

// done drops the stage's references to the call's rows.
func (j *ropeJob) done() {
	clear(j.segs)
	j.segs, j.t = j.segs[:0], nil
}
