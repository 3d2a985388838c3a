package blas

import (
	"math"

	"github.com/xattn/xattn/pure"
)

// Batch describes Count row-major products
//
//	C_i = Alpha·A_i·op(B_i) + Beta·C_i + 1·biasᵀ,   i = 0 … Count−1
//
// where A_i (M×K) starts at A[i*StrideA] with leading dimension LDA, B_i starts
// at B[i*StrideB] with leading dimension LDB and is K×N, or N×K with op(B) = Bᵀ
// when TransB, and C_i (M×N) starts at C[i*StrideC] with leading dimension LDC.
// Bias, if not nil, holds N values added to every row of every C_i; with
// Beta = 0, C is never read, so it may hold anything (NaN included) before.
//
// The C_i must not overlap each other, A or B. A head of a [T, Heads·HeadDim]
// matrix is a column block: LDA = Heads·HeadDim and StrideA = HeadDim.
//
// Packed, when not zero, is B as a backend's [Backend.Pack] returned it (or
// a view of it, [Packed.Cols]) for a single product (Count = 1) with TransB
// and LDB = K, N×K: a backend may read it instead of B. B must still be
// given; it is checked, and read by backends that do not read Packed's
// layout.
type Batch struct {
	Count, M, N, K            int
	TransB                    bool
	Alpha, Beta               float32
	A, B, C                   []float32
	LDA, LDB, LDC             int
	StrideA, StrideB, StrideC int
	Bias                      []float32
	Packed                    Packed
}

// Rows describes one call of the fused softmax row pass over an M×N block of
// scores S (leading dimension LDS): mask, running max, exponentiation in place
// and running sum, as documented on
// [github.com/xattn/xattn/pure.SoftmaxRows]. Bias and Keep are optional M×N views with
// leading dimensions LDBias and LDKeep (0 repeats their first row); Causal
// limits row r to its first clamp(Lim0+r, 0, N) columns; Window, when above
// 0, hides its columns below Lim0+r−Window; Slope, when not 0, adds the
// ALiBi term −Slope·(Lim0−1+r−j) to column j ([pure.RowMask]). Max, Sum and
// Corr have at least M elements.
type Rows struct {
	M, N           int
	S              []float32
	LDS            int
	Bias           []float32
	LDBias         int
	Keep           []bool
	LDKeep         int
	Causal         bool
	Lim0           int
	Window         int
	Slope          float32
	Max, Sum, Corr []float32
}

// rowMask is the structural mask of r.
func (r *Rows) rowMask() pure.RowMask {
	return pure.RowMask{Causal: r.Causal, Lim0: r.Lim0, Window: r.Window, Slope: r.Slope}
}

// Attention describes the attention core of a multi-head layer over a batch:
// for every batch b, query head h and query row i,
//
//	O[b,i,h,:] = Σ_j softmax_j(Scale·Q[b,i,h,:]·K[b,j,g,:] + bias[b,h,i,j]) · V[b,j,g,:]
//
// over the keys j that are not masked, with g = h / (Heads/KVHeads) the key and
// value head shared by query head h. A row with no unmasked key gets O = 0.
//
// Element d of head h in row i of batch b lives at
//
//	Q[b*BatchQ + i*LDQ + h*DK + d]   (Tq rows, d < DK)
//	K[b*BatchK + j*LDK + g*DK + d]   (Tk rows, d < DK)
//	V[b*BatchV + j*LDV + g*DV + d]   (Tk rows, d < DV)
//	O[b*BatchO + i*LDO + h*DV + d]   (Tq rows, d < DV)
//
// so heads are column blocks of row-major matrices and are never copied. Masks
// combine: key j is seen by query i of batch b and head h only if
//
//	j < KeyLen[b]                      (when KeyLen != nil)
//	j ≤ i + CausalOffset               (when Causal)
//	j > i + CausalOffset − Window      (when Window > 0)
//	Keep[b*KeepStride[0] + h*KeepStride[1] + i*KeepStride[2] + j]   (when Keep != nil)
//
// and Bias, laid out as Keep, is added to the scaled scores when not nil. A
// zero stride broadcasts that dimension. ALiBi, when not nil, holds one
// slope per query head (at least Heads values): −ALiBi[h]·(i + CausalOffset
// − j) is added to the scaled score too, computed on the fly. So query i
// sits at key position i + CausalOffset for the causal limit, the window
// and ALiBi alike; no part is ever stored as a Tq×Tk array, and key blocks
// that a window hides from every row of a task are skipped.
//
// Non-finite values follow one rule on every backend and variant: the mask
// alone decides what a row sees (a bias of −Inf masks), so a masked key's
// rows of K and V, whatever they hold, change no output; a visible score
// that is not finite makes the row's output NaN (Stats NaN, NaN); a
// non-finite value V[b,j,g,d] reaches O[b,i,h,d] of every row that sees key
// j, as in a product, probability 0 included (0·NaN = NaN).
//
// The work is split in Tasks() tasks, one per (b, block of HeadBlock heads,
// block of QBlock query rows); the query block is the fastest-moving index,
// so consecutive tasks share K and V. Each task walks the keys in blocks of
// KVBlock with online softmax, so no Tq×Tk matrix is ever formed. O must not
// overlap Q, K or V.
type Attention struct {
	Batch, Heads, KVHeads, Tq, Tk, DK, DV int

	Scale float32

	Q, K, V, O             []float32
	LDQ, LDK, LDV, LDO     int
	BatchQ, BatchK, BatchV int
	BatchO                 int

	KeyLen       []int32
	Causal       bool
	CausalOffset int
	Keep         []bool
	KeepStride   [3]int
	Bias         []float32
	BiasStride   [3]int
	Window       int
	ALiBi        []float32

	QBlock, KVBlock int

	// HeadBlock, when above 1, is the number of query heads of one task:
	// heads that share their key/value head (it divides Heads/KVHeads),
	// whose task walks the keys once for all of them, so that each key
	// block is read, and repacked, once. 0 means 1.
	HeadBlock int

	// KT, when not zero, holds the keys of K again, as the backend's
	// PackKeys laid them out for its kernel: a caller that attends over the
	// same keys many times (a cached context) packs them once. Its item
	// b·KVHeads+g holds the Tk keys (at least) of head g of batch b. K must
	// still be given: backends that do not read KT's layout read K.
	KT Packed

	// Stats, when not nil, receives the softmax statistics of every query
	// row the tasks compute: the largest masked, scaled score m and the sum
	// of e^(score−m) over the row's keys, at Stats[2·((b·Heads+h)·Tq+i)]
	// and the element after it. A row with no visible key gets −Inf and 0.
	// They let a caller that splits the keys of a row over several calls
	// merge the normalized partial outputs exactly.
	Stats []float32
}

// Tasks returns the number of (batch, head, query block) tasks of a.
func (a *Attention) Tasks() int {
	if a.QBlock <= 0 {
		return 0
	}
	return a.Batch * ceilDiv(a.Heads, a.headBlock()) * ceilDiv(a.Tq, a.QBlock)
}

// headBlock is HeadBlock, at least 1.
func (a *Attention) headBlock() int { return max(a.HeadBlock, 1) }

// ScratchLen returns the number of float32 scratch values one worker needs
// for [Backend.Attend] on a: the scores of a query block of every head of a
// task against a key block, the running maximum, sum and correction of each
// of its rows, and room for a key block and a value block repacked by a
// backend that packs. Package blas lays the parts out, one layout for every
// backend and variant; each starts on a multiple of 16 values, so that the
// blocks of a 64-byte aligned buffer stay aligned for the vector loads.
func (a *Attention) ScratchLen() int { return a.scratch().len }

// maxPanel is the widest column panel of a backend's packed layout (the
// AVX-512 kernel's 64), for which the scratch holds a packed key block and
// value block.
const maxPanel = 64

// scratchLayout is where the parts of one worker's scratch start, for
// every backend and variant: the one definition both sides of the cgo
// crossing use (xattn_attend reads it from xattn_attention).
type scratchLayout struct {
	// scores holds S, the scores of a query block of every head of a task
	// against a key block: row i of head j at scores + (i·nh + j)·ldS
	// when the task's heads are stacked, else head j's block at scores +
	// j·QBlock·ldS. ldS is KVBlock rounded up to 16 values (64 bytes), so
	// that rows start aligned for the vector loads.
	scores, ldS int
	// stats holds the running maximum, sum and correction of each row of
	// each head of a task: row r of head j at stats + j·QBlock + r, then
	// QBlock·HeadBlock further for the sum and as far again for the
	// correction.
	stats int
	// keys holds a key block repacked for a backend that packs: DK rows of
	// KVBlock keys, rounded up to whole panels.
	keys int
	// values holds a value block repacked in panels of ldV rows (KVBlock
	// rounded up to 16), DV rounded up to whole panels; or a row-major
	// copy of one (a careful rerun, see attend.c), or other per-key scratch
	// (the pure backend's).
	values, ldV int
	// len is the whole scratch. Each part starts, and len ends, on a
	// multiple of 16 values, so that the parts of a 64-byte aligned buffer
	// stay aligned.
	len int
}

// scratch returns the layout of a worker's scratch for a.
func (a *Attention) scratch() scratchLayout {
	hq := a.QBlock * a.headBlock() // query rows of a task
	ld := ceilDiv(a.KVBlock, 16) * 16
	var l scratchLayout
	l.ldS, l.ldV = ld, ld
	l.stats = hq * ld
	l.keys = ceilDiv(l.stats+3*hq, 16) * 16
	l.values = l.keys + a.DK*ceilDiv(a.KVBlock, maxPanel)*maxPanel
	l.len = l.values + ceilDiv(a.DV, maxPanel)*maxPanel*ld
	return l
}

// task is one task of an Attention: batch b, its query heads [h0, h0+nh)
// (which share one key/value head) and query rows [q0, q0+mq), and the
// keys [lo, hi) that any of its rows can see at all, which its walk over
// the keys is cut to.
type task struct{ b, h0, nh, q0, mq, lo, hi int }

// task returns task t of a: the one definition of the task map and of the
// keys a task sees, for every backend (the OpenBLAS one hands them to C).
// The query block is the fastest-moving index, then the head block, then
// the batch. The key length and the causal diagonal end the keys early; a
// window starts them late: at the first row's first visible key, rounded
// down to a panel when the keys are packed (KT), so that packed key blocks
// stay on their panels.
func (a *Attention) task(t int) task {
	hb := a.headBlock()
	nqb := ceilDiv(a.Tq, a.QBlock)
	nhb := ceilDiv(a.Heads, hb)
	bh := t / nqb
	k := task{b: bh / nhb, h0: bh % nhb * hb, q0: t % nqb * a.QBlock}
	k.nh = min(hb, a.Heads-k.h0)
	k.mq = min(a.QBlock, a.Tq-k.q0)
	k.hi = a.Tk
	if a.KeyLen != nil {
		k.hi = min(k.hi, max(int(a.KeyLen[k.b]), 0))
	}
	if a.Causal {
		k.hi = min(k.hi, max(k.q0+k.mq+a.CausalOffset, 0))
	}
	if a.Window > 0 {
		lo := k.q0 + a.CausalOffset - a.Window + 1
		if !a.KT.IsZero() {
			lo -= ((lo % maxPanel) + maxPanel) % maxPanel
		}
		k.lo = min(max(lo, 0), k.hi)
	}
	return k
}

// rowMask returns the structural row mask of head h for a key block
// starting at key k0 of a task whose rows start at q0.
func (a *Attention) rowMask(h, q0, k0 int) pure.RowMask {
	m := pure.RowMask{Causal: a.Causal, Lim0: q0 + a.CausalOffset + 1 - k0, Window: a.Window}
	if a.ALiBi != nil {
		m.Slope = a.ALiBi[h]
	}
	return m
}

// Backend computes the products and row passes of a layer. Both
// implementations compute the same function to float32 rounding; they differ
// in speed and in what they link against. Every method panics with a "blas: "
// message on a malformed argument (a programmer error: package xattn checks
// caller data before it gets here), and runs on the calling goroutine only.
type Backend interface {
	// Name is "openblas" or "pure".
	Name() string
	// Sgemm computes the products of g.
	Sgemm(g *Batch)
	// Pack returns the n×k row-major matrix w, the right-hand side of
	// products C = A·wᵀ (TransB), rearranged for this backend's Sgemm to
	// read as Batch.Packed, or the zero Packed if the backend reads w as it
	// is. It is for a matrix used in many products, such as a layer's
	// weights: the result is new memory, never written to after, safe to
	// share, of at most twice the values of w (where its layout would pad
	// more, the backend returns the zero Packed).
	Pack(w []float32, n, k int) Packed
	// Steps returns the row and column counts this backend's products are
	// best cut in: a caller that splits a product, or the query rows of
	// an attention, over workers cuts it in multiples of rows (the rows a
	// kernel computes at once), and the columns of a packed matrix at
	// multiples of cols, where [Packed.Cols] has views. Both are positive.
	Steps() (rows, cols int)
	// SoftmaxRows runs the fused softmax row pass described by r.
	SoftmaxRows(r *Rows)
	// ScaleRows multiplies row i of the m×n matrix c (leading dimension ldc)
	// by f[i]; a factor of 0 stores exact zeros whatever the row held.
	ScaleRows(m, n int, c []float32, ldc int, f []float32)
	// Attend runs tasks [t0, t1) of a, using scratch, of length at least
	// ScratchLen(a), as its working memory.
	Attend(a *Attention, t0, t1 int, scratch []float32)
	// ScratchLen returns the float32 scratch values one worker needs for
	// Attend on a: a.ScratchLen() for the FP32 backends, more for a BF16
	// one ([WithBF16]).
	ScratchLen(a *Attention) int
	// PackKeys sets a.KT to a new copy of the keys of a (K, LDK, BatchK
	// over Batch, KVHeads, Tk and DK; and the values, V, LDV, BatchV and
	// DV, for a BF16 backend) in the layout this backend's Attend reads
	// fastest, and reports whether it did; it leaves a alone and
	// returns false when the backend reads K as it is. The copy's columns
	// are keys: a.KT.Cols(k0, n) is keys [k0, k0+n) where k0 starts a
	// column step.
	PackKeys(a *Attention) bool
}

// KeyPacker is a [Backend] that makes the keys (and values) of its
// PackKeys in caller memory, in parts that may run at once on several
// threads: a caller whose tasks read the same keys many times (many query
// blocks or heads over one context) packs them once a call, allocating
// nothing, instead of each task packing the panels it reads.
type KeyPacker interface {
	// KeyParts returns the parts PackKeysPart packs the keys of a in: 0
	// where this backend reads K as it is (a.KT then stays zero).
	KeyParts(a *Attention) int
	// PackKeysPart packs part i, 0 ≤ i < KeyParts(a), of the keys of a
	// into buf, of at least the PackedKeysLen of a's Batch·KVHeads, Tk,
	// DK and DV, and reports whether the values it read were all finite.
	// Parts write disjoint parts of buf.
	PackKeysPart(a *Attention, buf []float32, i int) bool
	// PackedKeysIn returns, once every part is packed, what PackKeys would
	// have set a.KT to, its values in buf; finite says whether every part
	// reported finite values (where not, the values are packed per panel
	// by Attend, to keep the non-finite rule).
	PackedKeysIn(a *Attention, buf []float32, finite bool) Packed
}

// KeyAppender is a [KeyPacker] whose packed keys and values can be made a
// span at a time in caller memory laid out for more keys than there are
// yet: a KV cache packs the keys of each step as it appends them, and its
// attention reads the packed keys of every step before (a view
// Cols(0, Tk) of them).
type KeyAppender interface {
	KeyPacker
	// PackKeysSpan packs keys [j0, j1) of a, whose a.Tk keys are those
	// there so far (0 ≤ j0 ≤ j1 ≤ a.Tk ≤ capacity; K and V hold capacity
	// keys a batch), into buf laid out as PackKeysPart lays out capacity
	// keys (PackedKeysIn of a with Tk = capacity), and reports whether the
	// values it read were all finite. It packs from the start of j0's group
	// of [BF16KeyStep] keys, and zeroes the group's keys past a.Tk. Where
	// KeyParts(a) is 0 there is nothing to pack, and it panics.
	PackKeysSpan(a *Attention, capacity, j0, j1 int, buf []float32) bool
}

// Kernels names the kernels be runs: "pure" for [Pure], the variant for an
// OpenBLAS backend ("rows=avx512,gemm=avx512", which [OpenBLASVariant]
// reads), and Name for a backend of another package.
func Kernels(be Backend) string {
	if k, ok := be.(interface{ kernels() string }); ok {
		return k.kernels()
	}
	return be.Name()
}

// Default returns the fastest backend compiled into this binary: OpenBLAS when
// built with cgo and without the purego tag, else [Pure].
func Default() Backend {
	if haveOpenBLAS {
		return openBLASBackend()
	}
	return Pure()
}

// All returns every backend compiled into this binary, [Default] first.
func All() []Backend {
	if haveOpenBLAS {
		return []Backend{openBLASBackend(), Pure()}
	}
	return []Backend{Pure()}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

var negInf = float32(math.Inf(-1))
