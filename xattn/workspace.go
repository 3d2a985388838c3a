package xattn

import (
	"math"

	"github.com/xattn/xattn/blas"
)

// workspace is the scratch of one call: projected Q, K|V and the attention
// output O, the per-worker tiles, and the descriptors handed to the backend.
// Workspaces live in the layer's pool and grow to the largest shape seen.
type workspace struct {
	q, kv, o []float32
	scratch  []float32 // Threads tiles of att.ScratchLen()
	keyLen   []int32
	slopes   []float32 // the standard ALiBi slopes, when a Mask asks for them (setMask)
	att      blas.Attention
	gemms    []gemm
	chunks   []chunk
	batches  []blas.Batch // one per worker slot, so no descriptor escapes per call
	job      job
	bat      *batchScratch // ForwardBatch's, made on its first use

	// Per call.
	backend blas.Backend
	plan    *Plan
	threads int // goroutines of this call, the caller's included

	// Split keys (see splitKeys): one descriptor, output and statistics per
	// part of the keys, and the parts' key lengths.
	parts     []blas.Attention
	partO     []float32
	partStats []float32
	partLen   []int32

	// The fused path (see fusedRows): per worker slot, a block's Q and O and
	// its attention descriptor; the call's x, y and block rows.
	fq, fo []float32
	views  []blas.Attention
	fx, fy []float32
	fRows  int
	layer  *Layer

	// The absorbed form (see absorb.go): absorbed queries, attention
	// outputs and row statistics.
	aq, ao, astats []float32

	// Per phase.
	phase        int
	taskChunk    int
	itemsPerPart int
	scratchN     int
}

const (
	phaseGemm = iota
	phaseAttend
	phaseFused
)

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

// chunk is rows [r0, r1) and columns [c0, c1) of gemm g.
type chunk struct{ g, r0, r1, c0, c1 int }

func (l *Layer) getWorkspace() *workspace { return l.free.get() }

func (l *Layer) putWorkspace(ws *workspace) {
	// Drop every reference to caller memory before pooling: in the whole
	// capacity of the descriptor arrays, which a later phase may have
	// shortened.
	clear(ws.gemms[:cap(ws.gemms)])
	ws.gemms = ws.gemms[:0]
	ws.chunks = ws.chunks[:0]
	clear(ws.batches[:cap(ws.batches)])
	ws.att = blas.Attention{} // caller masks, cached keys and values
	clear(ws.parts[:cap(ws.parts)])
	ws.backend, ws.plan, ws.layer = nil, nil, nil
	clear(ws.views[:cap(ws.views)])
	ws.fx, ws.fy = nil, nil
	used, held := ws.sizes()
	l.free.put(ws, used, held)
}

// sizes returns the bytes of the buffers of ws that the call just finished
// used (their lengths) and those it holds (their capacities), and resets
// the lengths to 0, so that the next call's use is measured alone.
func (ws *workspace) sizes() (used, held int) {
	for _, f := range []*[]float32{&ws.q, &ws.kv, &ws.o, &ws.scratch, &ws.partO, &ws.partStats,
		&ws.fq, &ws.fo, &ws.aq, &ws.ao, &ws.astats} {
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

// run computes one validated call: projections, attention core, output
// projection, each phase split over the plan's threads.
func (ws *workspace) run(l *Layer, y, xq, xk, xv []float32, s Shape) {
	c := &l.cfg
	b, tq, tk := s.Batch, s.Tq, s.Tk
	ldkv := c.KVHeads * (c.HeadDim + c.ValueHeadDim)
	if l.Absorbs(s) {
		ws.runAbsorbed(l, y, xq, xk, xv, s)
		return
	}
	ws.begin(l, flops(c, s))

	// Phase 1: projections. Keys and values from one source are one GEMM
	// against [Wk; Wv], written side by side into kv.
	ws.kv = grow(ws.kv, b*tk*ldkv)
	ws.gemms = ws.gemms[:0]
	if q := ws.fusedRows(l, s); q > 0 {
		ws.addKV(l, xk, xv, ws.kv)
		ws.gemmPhase()
		ws.fused(l, y, xq, keys{kv: ws.kv, stride: tk * ldkv}, s, q)
		return
	}
	ws.addQ(l, xq, b*tq)
	ws.addKV(l, xk, xv, ws.kv)
	ws.gemmPhase()

	// Phase 2: the attention core over (batch, head, query block) tasks.
	ws.attend(l, keys{kv: ws.kv, stride: tk * ldkv}, s)

	// Phase 3: the output projection, straight into y.
	ws.output(l, y, b*tq)
}

// fusedRows returns the query rows of one item of the fused path, or 0 when
// the call runs phase by phase.
//
// The fused path runs the query projection, the attention core of every
// head and the output projection of one block of query rows as one item, on
// one worker: the block's Q and O stay in that core's cache instead of
// going out to memory between phases and coming back on another core (on
// Stable Diffusion's 8192 query rows, 20 MB written and read again per call,
// half of it across cores). It needs many blocks to share, and products whose
// rows do not depend on how they are chunked — the packed-weight kernel's —
// so that it computes exactly what the phases do.
func (ws *workspace) fusedRows(l *Layer, s Shape) int {
	if l.pq.IsZero() || l.po.IsZero() || s.Tk == 0 {
		return 0
	}
	p := &l.plan
	q := qBlock(p.QBlock, 1, s.Tq, 1, l.rowStep)
	if s.Batch*ceilDiv(s.Tq, q) < 4*p.Threads {
		return 0
	}
	return q
}

// keys are the projected keys and values of a call: rows of nk+nv values
// (keys, then values), batch b's from kv[b·stride]; kt, when not nil, holds
// the keys again as the backend's PackKeys laid them out (blas.Attention.KT).
type keys struct {
	kv     []float32
	stride int
	kt     blas.Packed
}

// fused runs the fused path over blocks of q query rows: item i is block
// i%⌈Tq/q⌉ of batch i/⌈Tq/q⌉. The mask fields of ws.att are set already.
func (ws *workspace) fused(l *Layer, y, x []float32, k keys, s Shape, q int) {
	c := &l.cfg
	a := ws.describe(l, k, s, q)
	ws.fq = grow(ws.fq, ws.threads*q*c.Heads*c.HeadDim)
	ws.fo = grow(ws.fo, ws.threads*q*c.Heads*c.ValueHeadDim)
	ws.views = grow(ws.views, ws.threads)
	ws.fx, ws.fy, ws.fRows = x, y, q
	ws.phase = phaseFused
	ws.job.run(ws, a.Batch*ceilDiv(a.Tq, q), ws.threads-1)
	ws.fx, ws.fy = nil, nil
}

// describe sets the fields of ws.att that the phased and the fused paths
// share — sizes, scale, the keys and values k, query blocks of q rows and the
// plan's key blocks — and grows the workers' scratch to its tiles. It
// returns &ws.att.
func (ws *workspace) describe(l *Layer, k keys, s Shape, q int) *blas.Attention {
	c := &l.cfg
	h, g, dk, dv := c.Heads, c.KVHeads, c.HeadDim, c.ValueHeadDim
	nk := g * dk
	ldkv := nk + g*dv
	a := &ws.att
	a.Batch, a.Heads, a.KVHeads, a.Tq, a.Tk, a.DK, a.DV = s.Batch, h, g, s.Tq, s.Tk, dk, dv
	a.Scale = c.Scale
	a.K, a.LDK, a.BatchK = k.kv, ldkv, k.stride
	a.V, a.LDV, a.BatchV = k.kv[min(nk, len(k.kv)):], ldkv, k.stride
	a.KT = k.kt
	ws.tiles(q, max(min(l.plan.KVBlock, s.Tk), 1))
	return a
}

// tiles sets the query and key blocks of ws.att and grows the workers'
// scratch to its tiles.
func (ws *workspace) tiles(q, kv int) {
	a := &ws.att
	a.QBlock, a.KVBlock = q, kv
	ws.scratchN = a.ScratchLen()
	ws.scratch = grow(ws.scratch, ws.threads*ws.scratchN)
}

// fusedItem runs item i of the fused path on worker slot.
func (ws *workspace) fusedItem(slot, i int) {
	l := ws.layer
	c := &l.cfg
	a := &ws.att
	q := ws.fRows
	nblk := ceilDiv(a.Tq, q)
	bi, q0 := i/nblk, i%nblk*q
	rows := min(q, a.Tq-q0)
	nq, hdv := a.Heads*a.DK, a.Heads*a.DV
	qb := ws.fq[slot*q*nq:][:rows*nq]
	ob := ws.fo[slot*q*hdv:][:rows*hdv]

	// The block's queries.
	g := l.queryGemm(ws.fx[(bi*a.Tq+q0)*c.QueryDim:], qb, rows)
	ws.product(slot, &g, chunk{r1: rows, c1: g.n})

	// Attention of every head over batch bi's keys, one task per head: the
	// call's descriptor narrowed to one batch and the block's rows.
	v := &ws.views[slot]
	*v = *a
	v.Batch, v.Tq = 1, rows
	v.Q, v.LDQ, v.BatchQ = qb, nq, rows*nq
	v.O, v.LDO, v.BatchO = ob, hdv, rows*hdv
	v.K, v.V = a.K[bi*a.BatchK:], a.V[bi*a.BatchV:]
	v.KT, _ = a.KT.Items(bi*a.KVHeads, a.KVHeads)
	if a.KeyLen != nil {
		v.KeyLen = a.KeyLen[bi : bi+1]
	}
	v.CausalOffset = a.CausalOffset + q0
	if a.Keep != nil {
		v.Keep = a.Keep[bi*a.KeepStride[0]+q0*a.KeepStride[2]:]
	}
	if a.Bias != nil {
		v.Bias = a.Bias[bi*a.BiasStride[0]+q0*a.BiasStride[2]:]
	}
	ws.backend.Attend(v, 0, v.Tasks(), ws.scratch[slot*ws.scratchN:][:ws.scratchN])

	// The block's outputs, straight into y.
	g = l.outputGemm(ob, ws.fy[(bi*a.Tq+q0)*c.OutDim:], rows)
	ws.product(slot, &g, chunk{r1: rows, c1: g.n})
}

// begin starts a call of work floating-point operations on l: it runs on the
// plan's threads, or on the caller alone below Plan.SerialFLOPs.
func (ws *workspace) begin(l *Layer, work float64) {
	ws.threads = l.plan.Threads
	if work < l.plan.SerialFLOPs {
		ws.threads = 1
	}
	ws.backend, ws.plan, ws.layer = l.backend, &l.plan, l
	ws.batches = grow(ws.batches, ws.threads)
}

// addQ adds to ws.gemms the query projection of the rows×QueryDim matrix x
// into ws.q.
func (ws *workspace) addQ(l *Layer, x []float32, rows int) {
	c := &l.cfg
	nq := c.Heads * c.HeadDim
	ws.q = grow(ws.q, rows*nq)
	ws.gemms = append(ws.gemms, l.queryGemm(x, ws.q, rows))
}

// queryGemm is the query projection of the rows rows of x into q.
func (l *Layer) queryGemm(x, q []float32, rows int) gemm {
	c := &l.cfg
	nq := c.Heads * c.HeadDim
	return gemm{a: x, m: rows, lda: c.QueryDim, k: c.QueryDim, n: nq, w: l.wq, bias: l.bq, packed: l.pq, c: q, ldc: nq}
}

// outputGemm is the output projection of the rows attention rows of o into y.
func (l *Layer) outputGemm(o, y []float32, rows int) gemm {
	c := &l.cfg
	hdv := c.Heads * c.ValueHeadDim
	return gemm{a: o, m: rows, lda: hdv, k: hdv, n: c.OutDim, w: l.wo, bias: l.bo, packed: l.po, c: y, ldc: c.OutDim}
}

// addKV adds to ws.gemms the key and value projections of xk and xv into kv,
// rows of nk+nv values (keys, then values), as many as kv holds; one GEMM
// against [Wk; Wv] when they are the same rows. An empty kv adds nothing.
func (ws *workspace) addKV(l *Layer, xk, xv, kv []float32) {
	if len(kv) == 0 {
		return
	}
	c := &l.cfg
	nk, nv := c.KVHeads*c.HeadDim, c.KVHeads*c.ValueHeadDim
	ldkv := nk + nv
	m := len(kv) / ldkv
	if l.wkv != nil && &xk[0] == &xv[0] {
		ws.gemms = append(ws.gemms, gemm{a: xk, m: m, lda: c.ContextDim, k: c.ContextDim, n: ldkv, w: l.wkv, bias: l.bkv, packed: l.pkv, c: kv, ldc: ldkv})
	} else {
		ws.gemms = append(ws.gemms,
			gemm{a: xk, m: m, lda: c.ContextDim, k: c.ContextDim, n: nk, w: l.wk, bias: l.bk, packed: l.pk, c: kv, ldc: ldkv},
			gemm{a: xv, m: m, lda: c.ValueDim, k: c.ValueDim, n: nv, w: l.wv, bias: l.bv, packed: l.pv, c: kv[nk:], ldc: ldkv})
	}
}

// attend runs the attention core of the s.Batch·s.Tq projected queries in
// ws.q over the s.Tk keys and values k, into ws.o. The mask fields of ws.att
// are set already.
func (ws *workspace) attend(l *Layer, k keys, s Shape) {
	c := &l.cfg
	p := &l.plan
	b, tq, tk := s.Batch, s.Tq, s.Tk
	h, dk, dv := c.Heads, c.HeadDim, c.ValueHeadDim
	nq := h * dk
	ws.o = grow(ws.o, b*tq*h*dv)
	a := ws.describe(l, k, s, qBlock(p.QBlock, b*h, tq, p.Threads, l.rowStep))
	a.Q, a.LDQ, a.BatchQ = ws.q, nq, tq*nq
	a.O, a.LDO, a.BatchO = ws.o, h*dv, tq*h*dv
	ws.runAttention(tk)
}

// runAttention runs the tasks of ws.att, with keys split (see splitKeys)
// when there are too few.
func (ws *workspace) runAttention(tk int) {
	a := &ws.att
	p := ws.plan
	tasks := a.Tasks()
	nparts := splitKeys(tasks, tk, a.KVBlock, p.Threads)
	ws.taskChunk = max(1, tasks*nparts/(8*ws.threads))
	if ws.threads == 1 {
		ws.taskChunk = tasks
	}
	ws.taskChunk = min(ws.taskChunk, tasks)
	ws.itemsPerPart = ceilDiv(tasks, ws.taskChunk)
	ws.phase = phaseAttend
	if nparts == 1 {
		ws.parts = ws.parts[:0]
		ws.job.run(ws, ws.itemsPerPart, ws.threads-1)
		return
	}
	ws.splitKeys(nparts)
	ws.job.run(ws, nparts*ws.itemsPerPart, ws.threads-1)
	ws.mergeParts()
}

// splitKeys returns into how many parts the keys of every attention row are
// split, each part a separate run of the core whose partial results are
// merged: 1 while the (batch, head, query block) tasks give each of the
// plan's threads two, else enough parts for that, of at least one key block
// each. Decoding (a few query rows of a few heads over a long context) needs
// it to use more than B·H cores. Like qBlock it depends on the plan only.
func splitKeys(tasks, tk, kvBlock, threads int) int {
	if tasks == 0 || tasks >= 2*threads {
		return 1
	}
	return max(1, min(ceilDiv(2*threads, tasks), tk/kvBlock))
}

// splitKeys sets ws.parts to n descriptors that each run ws.att over a range
// of whole key blocks, into their own output and statistics.
func (ws *workspace) splitKeys(n int) {
	a := &ws.att
	b, h, tq, tk := a.Batch, a.Heads, a.Tq, a.Tk
	oLen := (b-1)*a.BatchO + (tq-1)*a.LDO + h*a.DV // a part's O, as ws.att.O
	ws.parts = grow(ws.parts, n)
	ws.partO = grow(ws.partO, n*oLen)
	ws.partStats = grow(ws.partStats, n*2*b*h*tq)
	if a.KeyLen != nil {
		ws.partLen = grow(ws.partLen, n*b)
	}
	step := ceilDiv(ceilDiv(tk, n), a.KVBlock) * a.KVBlock
	for i := range ws.parts {
		k0 := min(i*step, tk)
		pa := &ws.parts[i]
		*pa = *a
		pa.Tk = min(step, tk-k0)
		pa.O = ws.partO[i*oLen:][:oLen]
		pa.Stats = ws.partStats[i*2*b*h*tq:][:2*b*h*tq]
		pa.CausalOffset = a.CausalOffset - k0
		if pa.Tk == 0 {
			pa.K, pa.V, pa.KT, pa.Keep, pa.Bias = nil, nil, blas.Packed{}, nil, nil
		} else {
			pa.K, pa.V = a.K[k0*a.LDK:], a.V[k0*a.LDV:]
			pa.KT, _ = a.KT.Cols(k0, pa.Tk) // zero where the layout has no view: K is read
			if a.Keep != nil {
				pa.Keep = a.Keep[k0:]
			}
			if a.Bias != nil {
				pa.Bias = a.Bias[k0:]
			}
		}
		if a.KeyLen != nil {
			pa.KeyLen = ws.partLen[i*b:][:b]
			for j, l := range a.KeyLen[:b] {
				pa.KeyLen[j] = int32(min(max(int(l)-k0, 0), pa.Tk))
			}
		}
	}
}

// mergeParts combines the parts' normalized outputs into ws.att.O: row i of
// head h is Σ_p w_p·O_p / Σ_p w_p with w_p = sum_p·e^(max_p − max), the
// exact softmax over all the keys. A row no part saw a key of is 0.
func (ws *workspace) mergeParts() {
	a := &ws.att
	for b := range a.Batch {
		for h := range a.Heads {
			for i := range a.Tq {
				si := 2 * ((b*a.Heads+h)*a.Tq + i)
				m := math.Inf(-1)
				for p := range ws.parts {
					m = max(m, float64(ws.parts[p].Stats[si]))
				}
				oi := b*a.BatchO + i*a.LDO + h*a.DV
				o := a.O[oi : oi+a.DV]
				clear(o)
				if math.IsInf(m, -1) {
					if a.Stats != nil {
						a.Stats[si], a.Stats[si+1] = float32(m), 0
					}
					continue
				}
				var den float64
				for p := range ws.parts {
					st := ws.parts[p].Stats[si:]
					den += float64(st[1]) * math.Exp(float64(st[0])-m)
				}
				if a.Stats != nil {
					a.Stats[si], a.Stats[si+1] = float32(m), float32(den)
				}
				for p := range ws.parts {
					st := ws.parts[p].Stats[si:]
					w := float32(float64(st[1]) * math.Exp(float64(st[0])-m) / den)
					if w == 0 {
						continue
					}
					for d, v := range ws.parts[p].O[oi : oi+a.DV] {
						o[d] += w * v
					}
				}
			}
		}
	}
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

// output runs the output projection of the rows attention rows in ws.o,
// straight into y.
func (ws *workspace) output(l *Layer, y []float32, rows int) {
	ws.gemms = append(ws.gemms[:0], l.outputGemm(ws.o, y, rows))
	ws.gemmPhase()
}

// gemmPhase splits every gemm of ws.gemms into row
// chunks, or into column chunks when it has too few rows to share, and runs
// them on the call's threads.
//
// The chunks depend on the rows and the plan's thread count only, never on
// whether this call runs serially: OpenBLAS's value for a row of a product
// depends on the chunk it is computed in (its M and its place there), so a
// product split the same way gives the same bits whatever else the call
// does. This is what makes projections cached by [Layer.ProjectContext]
// equal to fresh ones.
func (ws *workspace) gemmPhase() {
	parts := ws.plan.Threads
	rs, cs := ws.layer.rowStep, ws.layer.colStep
	ws.chunks = ws.chunks[:0]
	for gi := range ws.gemms {
		r, n := ws.gemms[gi].m, ws.gemms[gi].n
		rstep, cstep := r, n
		switch {
		case parts == 1:
		case r >= 32*parts:
			// A few chunks per worker, of whole row steps of the
			// kernel, let a worker that runs late (a busy machine) hand
			// its share to the others; below 48 rows a chunk's share of
			// reading the weights grows too large.
			rstep = ceilDiv(max(48, ceilDiv(r, chunksPerWorker*parts)), rs) * rs
		default:
			// Few rows: the weights are the traffic, so split them, by
			// whole column steps (what a packed matrix is cut in).
			cstep = ceilDiv(ceilDiv(n, cs), parts) * cs
		}
		for r0 := 0; r0 < r; r0 += rstep {
			for c0 := 0; c0 < n; c0 += cstep {
				ws.chunks = append(ws.chunks, chunk{gi, r0, min(r0+rstep, r), c0, min(c0+cstep, n)})
			}
		}
	}
	ws.phase = phaseGemm
	ws.job.run(ws, len(ws.chunks), ws.threads-1)
}

// chunksPerWorker is how many row chunks gemmPhase cuts a tall product in
// per thread of the plan.
const chunksPerWorker = 6

// product runs chunk ch of g on worker slot.
func (ws *workspace) product(slot int, g *gemm, ch chunk) {
	bt := &ws.batches[slot]
	n := ch.c1 - ch.c0
	*bt = blas.Batch{
		Count: 1, M: ch.r1 - ch.r0, N: n, K: g.k, TransB: true, Alpha: 1,
		A: g.a[ch.r0*g.lda:], LDA: g.lda,
		B: g.w[ch.c0*g.k:], LDB: g.k,
		C: g.c[ch.r0*g.ldc+ch.c0:], LDC: g.ldc,
	}
	if g.bias != nil {
		bt.Bias = g.bias[ch.c0:]
	}
	// Columns [c0, c1) start a column step (gemmPhase), where the packed
	// matrix has a view; without one the product reads B.
	bt.Packed, _ = g.packed.Cols(ch.c0, n)
	ws.backend.Sgemm(bt)
}

// runItem runs item i of the current phase on worker slot.
func (ws *workspace) runItem(slot, i int) {
	switch ws.phase {
	case phaseGemm:
		ch := ws.chunks[i]
		ws.product(slot, &ws.gemms[ch.g], ch)
	case phaseFused:
		ws.fusedItem(slot, i)
	case phaseAttend:
		a := &ws.att
		if len(ws.parts) > 0 {
			a = &ws.parts[i/ws.itemsPerPart]
			i %= ws.itemsPerPart
		}
		t0 := i * ws.taskChunk
		t1 := min(t0+ws.taskChunk, a.Tasks())
		ws.backend.Attend(a, t0, t1, ws.scratch[slot*ws.scratchN:][:ws.scratchN])
	}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
