package xattn

import "github.com/xattn/xattn/blas"

// workspace is the scratch of one call: projected Q, K|V and the attention
// output O, the per-worker tiles, and the descriptors handed to the backend.
// Workspaces live in the layer's pool and grow to the largest shape seen.
type workspace struct {
	q, kv, o []float32
	scratch  []float32 // Threads tiles of att.ScratchLen()
	keyLen   []int32
	att      blas.Attention
	gemms    []gemm
	chunks   []chunk
	batches  []blas.Batch // one per worker slot, so no descriptor escapes per call
	job      job

	// Per phase.
	backend   blas.Backend
	phase     int
	taskChunk int
	scratchN  int
}

const (
	phaseGemm = iota
	phaseAttend
)

// gemm is one projection C = A·Wᵀ + bias of rows×n from k features.
type gemm struct {
	a         []float32
	lda, k, n int
	w, bias   []float32
	c         []float32
	ldc       int
}

// chunk is rows [r0, r1) of gemm g.
type chunk struct{ g, r0, r1 int }

func (l *Layer) getWorkspace() *workspace {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.free); n > 0 {
		ws := l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
		return ws
	}
	return &workspace{}
}

func (l *Layer) putWorkspace(ws *workspace) {
	// Drop every reference to caller memory before pooling.
	clear(ws.gemms)
	ws.gemms = ws.gemms[:0]
	ws.chunks = ws.chunks[:0]
	clear(ws.batches)
	ws.att.Keep, ws.att.Bias, ws.att.KeyLen = nil, nil, nil
	ws.backend = nil
	l.mu.Lock()
	l.free = append(l.free, ws)
	l.mu.Unlock()
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
	p := &l.plan
	b, tq, tk := s.Batch, s.Tq, s.Tk
	h, g, dk, dv := c.Heads, c.KVHeads, c.HeadDim, c.ValueHeadDim
	nq, nk, nv := h*dk, g*dk, g*dv
	ldkv := nk + nv

	threads := p.Threads
	if flops(c, s) < p.SerialFLOPs {
		threads = 1
	}
	helpers := threads - 1
	ws.backend = l.backend
	ws.batches = grow(ws.batches, threads)

	ws.q = grow(ws.q, b*tq*nq)
	ws.kv = grow(ws.kv, b*tk*ldkv)
	ws.o = grow(ws.o, b*tq*h*dv)

	// Phase 1: projections. Keys and values from one source are one GEMM
	// against [Wk; Wv], written side by side into kv.
	ws.gemms = append(ws.gemms[:0], gemm{a: xq, lda: c.QueryDim, k: c.QueryDim, n: nq, w: l.wq, bias: l.bq, c: ws.q, ldc: nq})
	if tk > 0 {
		if l.wkv != nil && &xk[0] == &xv[0] {
			ws.gemms = append(ws.gemms, gemm{a: xk, lda: c.ContextDim, k: c.ContextDim, n: ldkv, w: l.wkv, bias: l.bkv, c: ws.kv, ldc: ldkv})
		} else {
			ws.gemms = append(ws.gemms,
				gemm{a: xk, lda: c.ContextDim, k: c.ContextDim, n: nk, w: l.wk, bias: l.bk, c: ws.kv, ldc: ldkv},
				gemm{a: xv, lda: c.ValueDim, k: c.ValueDim, n: nv, w: l.wv, bias: l.bv, c: ws.kv[nk:], ldc: ldkv})
		}
	}
	ws.gemmPhase([]int{b * tq, b * tk, b * tk}, threads, helpers)

	// Phase 2: the attention core over (batch, head, query block) tasks.
	a := &ws.att
	a.Batch, a.Heads, a.KVHeads, a.Tq, a.Tk, a.DK, a.DV = b, h, g, tq, tk, dk, dv
	a.Scale = c.Scale
	a.Q, a.LDQ, a.BatchQ = ws.q, nq, tq*nq
	a.K, a.LDK, a.BatchK = ws.kv, ldkv, tk*ldkv
	a.V, a.LDV, a.BatchV = ws.kv[min(nk, len(ws.kv)):], ldkv, tk*ldkv
	a.O, a.LDO, a.BatchO = ws.o, h*dv, tq*h*dv
	a.QBlock = min(p.QBlock, tq)
	a.KVBlock = max(min(p.KVBlock, tk), 1)
	ws.scratchN = a.ScratchLen()
	ws.scratch = grow(ws.scratch, threads*ws.scratchN)
	tasks := a.Tasks()
	ws.taskChunk = max(1, tasks/(4*threads))
	if threads == 1 {
		ws.taskChunk = tasks
	}
	ws.phase = phaseAttend
	ws.job.run(ws, ceilDiv(tasks, ws.taskChunk), helpers)

	// Phase 3: the output projection, straight into y.
	ws.gemms = append(ws.gemms[:0], gemm{a: ws.o, lda: h * dv, k: h * dv, n: c.OutDim, w: l.wo, bias: l.bo, c: y, ldc: c.OutDim})
	ws.gemmPhase([]int{b * tq}, threads, helpers)
}

// gemmPhase splits every gemm of ws.gemms (rows[i] rows each) into row chunks
// and runs them on threads workers.
func (ws *workspace) gemmPhase(rows []int, threads, helpers int) {
	ws.chunks = ws.chunks[:0]
	for gi := range ws.gemms {
		r := rows[gi]
		step := r
		if threads > 1 {
			// Two chunks per worker balance the load; below 32 rows a
			// chunk's share of packing the weights grows too large.
			step = max(32, ceilDiv(r, 2*threads))
		}
		for r0 := 0; r0 < r; r0 += step {
			ws.chunks = append(ws.chunks, chunk{gi, r0, min(r0+step, r)})
		}
	}
	ws.phase = phaseGemm
	ws.job.run(ws, len(ws.chunks), helpers)
}

// runItem runs item i of the current phase on worker slot.
func (ws *workspace) runItem(slot, i int) {
	switch ws.phase {
	case phaseGemm:
		ch := ws.chunks[i]
		g := &ws.gemms[ch.g]
		bt := &ws.batches[slot]
		*bt = blas.Batch{
			Count: 1, M: ch.r1 - ch.r0, N: g.n, K: g.k, TransB: true, Alpha: 1,
			A: g.a[ch.r0*g.lda:], LDA: g.lda,
			B: g.w, LDB: g.k,
			C: g.c[ch.r0*g.ldc:], LDC: g.ldc,
			Bias: g.bias,
		}
		ws.backend.Sgemm(bt)
	case phaseAttend:
		t0 := i * ws.taskChunk
		t1 := min(t0+ws.taskChunk, ws.att.Tasks())
		ws.backend.Attend(&ws.att, t0, t1, ws.scratch[slot*ws.scratchN:][:ws.scratchN])
	}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
