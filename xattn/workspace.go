package xattn

import (
	"github.com/xattn/xattn/blas"
)

// workspace is the scratch of one call, and nothing else: projected Q, K|V
// and the attention output O, the per-worker tiles, the buffers of the
// split keys, the fused and absorbed forms and ForwardBatch, and the arrays
// the descriptors handed to the backend live in (so that none escapes per
// call). What a call is doing is its pipeline's. Workspaces live in the
// layer's pool, with their pipelines, and grow to the largest shape seen.
type workspace struct {
	q, kv, o []float32
	scratch  []float32 // Threads tiles of the attention's ScratchLen()
	keys     []float32 // the call's keys and values as the backend packs them (packKeys)
	keyLen   []int32
	slopes   []float32 // the standard ALiBi slopes, when a Mask asks for them (setMask)
	rope     []float32 // a RoPE table of a call's positions, past the shared one (rope.cosSin)
	gemms    []gemm
	chunks   []blas.Chunk // of gemms
	batches  []blas.Batch // one per worker slot
	crewed   []blas.Batch // gemms as a crew reads them (crewProducts)
	bat      *batchScratch

	// Split keys (see splitKeys): one descriptor, output and statistics per
	// part of the keys, and the parts' key lengths.
	parts     []blas.Attention
	partO     []float32
	partStats []float32
	partLen   []int32

	// The fused form (see fusedRows): per worker slot, a block's Q and O
	// and its attention descriptor.
	fq, fo []float32
	views  []blas.Attention

	// The absorbed form (see absorb.go): absorbed queries, attention
	// outputs and row statistics.
	aq, ao, astats []float32
}

// gemm is one projection C = A·Wᵀ + bias of m×n from k features; packed
// is W as the backend's Pack returned it (zero if it does not pack).
type gemm struct {
	a            []float32
	m, lda, k, n int
	w, bias      []float32
	packed       blas.Packed
	c            []float32
	ldc          int
}

// release drops every reference to caller memory before pooling: in the
// whole capacity of the descriptor arrays, which a later phase may have
// shortened.
func (ws *workspace) release() {
	clear(ws.gemms[:cap(ws.gemms)])
	ws.gemms = ws.gemms[:0]
	ws.chunks = ws.chunks[:0]
	clear(ws.batches[:cap(ws.batches)])
	clear(ws.crewed[:cap(ws.crewed)])
	ws.crewed = ws.crewed[:0]
	clear(ws.parts[:cap(ws.parts)])
	clear(ws.views[:cap(ws.views)])
	if ws.bat != nil {
		ws.bat.release()
	}
}

// sizes returns the bytes of the buffers of ws that the call just finished
// used (their lengths) and those it holds (their capacities), and resets
// the lengths to 0, so that the next call's use is measured alone.
func (ws *workspace) sizes() (used, held int) {
	for _, f := range []*[]float32{&ws.q, &ws.kv, &ws.o, &ws.scratch, &ws.partO, &ws.partStats,
		&ws.fq, &ws.fo, &ws.aq, &ws.ao, &ws.astats, &ws.slopes, &ws.rope, &ws.keys} {
		used, held = used+4*len(*f), held+4*cap(*f)
		*f = (*f)[:0]
	}
	for _, f := range []*[]int32{&ws.keyLen, &ws.partLen} {
		used, held = used+4*len(*f), held+4*cap(*f)
		*f = (*f)[:0]
	}
	if bs := ws.bat; bs != nil {
		for _, f := range []*[]float32{&bs.x, &bs.ctx, &bs.y} {
			used, held = used+4*len(*f), held+4*cap(*f)
			*f = (*f)[:0]
		}
	}
	return used, held
}

// grow returns s resliced to n, reallocated only if its capacity is short.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// qBlock returns the query rows of one attention task for bh (batch, head)
// pairs of tq rows: the plan's q, lowered until every one of the plan's
// threads gets two tasks where the rows allow it, then evened out over the
// blocks and rounded up to whole row steps of the backend (the strips its
// kernel computes). Like the chunks of gemmPhase it depends on the plan and
// the backend, never on the call's threads.
func qBlock(q, bh, tq, threads, step int) int {
	q = max(min(q, tq), 1)
	for q > step && bh*ceilDiv(tq, q) < 2*threads {
		q = ceilDiv(q, 2)
	}
	return min(tq, ceilDiv(ceilDiv(tq, ceilDiv(tq, q)), step)*step)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
