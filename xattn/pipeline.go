package xattn

import (
	"math"
	"sync/atomic"

	"github.com/xattn/xattn/blas"
)

// The pipeline of a call. Every entry point — ForwardInto (and ForwardQKV,
// ForwardSelfDoc), ForwardContext, ForwardStep, ForwardBatch, ProjectContext
// and ProjectKV — validates its arguments, describes what it asks in a call
// (what to project, which keys to attend over, where the output goes) and
// hands it to one builder, pipeline.run, which chooses the form from the
// call and the plan and runs its stages, each split over the call's
// threads:
//
//	project  the queries and the keys and values: one phase of products
//	append   (ForwardStep) the new keys and values appended to the KV cache
//	absorb   (absorbed form) the queries projected on through Wk
//	attend   the attention core: one descriptor, or one per request
//	         (ForwardBatch); the keys split over the workers when the
//	         tasks are few, and the parts merged
//	values   (absorbed form) the core's outputs projected through Wv
//	output   the output projection, straight into y
//
// The fused form runs the queries, the attention and the output of one block
// of query rows as one item in place of the three stages.

// form is how a call runs: phase by phase, fused by blocks of query rows,
// or absorbed (see absorb.go).
type form int

const (
	formPhased form = iota
	formFused
	formAbsorbed
)

// call is what an entry point asks of the pipeline.
type call struct {
	// y and x are the output and the queries' source, rows rows each; a nil
	// x asks for the projection of keys and values only.
	y, x []float32
	rows int
	// s is the shape of the call's one attention (Batch·Tq = rows); unused
	// with reqs.
	s Shape
	// xk and xv are the key and value sources to project, nil for none;
	// their projections go to kvOut, kvRows rows of nk+nv values, or, for a
	// nil kvOut, to the workspace's K|V.
	xk, xv []float32
	kvOut  []float32
	kvRows int
	// keys are the keys and values attended over; none (a nil kv) means
	// the projections in the workspace's K|V, s.Tk rows a batch.
	keys keys
	// cache, for a decoding step, gets kvOut appended before the attention.
	cache *KVCache
	// reqs are ForwardBatch's requests: each attends over its own keys with
	// its own descriptor (batchScratch.reqs).
	reqs []Request
	// pairs is the number of (query row, key) pairs attended, for the work
	// of the call.
	pairs float64
	// qOff, kOff and kPeriod place the rows for the layer's RoPE: query row
	// r at position qOff + r%s.Tq, projected key row r at kOff + r%kPeriod
	// (WithRoPE's rule). ForwardBatch's rows are placed by each request's
	// descriptor instead (rotate).
	qOff, kOff, kPeriod int
}

// pipeline is one call in flight: the state of its stages, the scratch it
// computes in, and the phase runner its workers share. It lives in the
// layer's pool with its workspace, so that a call allocates nothing.
type pipeline struct {
	ws  workspace
	job job

	// Per call.
	layer   *Layer
	backend blas.Backend
	plan    *Plan
	threads int            // goroutines of this call, the caller's included
	att     blas.Attention // the attention of the call: masks, keys, tiles

	// The backend's crew (crewOf), kept across calls, and the backend it
	// is of; crewed says whether this call's phases run on it.
	crew        blas.Crew
	crewBackend blas.Backend
	crewed      bool

	// The fused form (see fusedRows): the call's x, y and block rows.
	fx, fy []float32
	fRows  int

	// The rotate stage (RoPE).
	rot ropeJob

	// The key packing stage (packKeys): its packer, and whether a part
	// read a non-finite value.
	keyPacker blas.KeyPacker
	keysBad   atomic.Bool

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
	phaseRequests
	phaseRotate
	phasePackKeys
)

func (l *Layer) getPipeline() *pipeline { return l.free.get() }

func (l *Layer) putPipeline(p *pipeline) {
	// Drop every reference to caller memory before pooling.
	p.ws.release()
	p.att = blas.Attention{} // caller masks, cached keys and values
	p.layer, p.backend, p.plan = nil, nil, nil
	p.fx, p.fy = nil, nil
	used, held := p.ws.sizes()
	l.free.put(p, used, held)
}

// form returns the form call c runs in: absorbed where it projects its own
// context and Absorbs says so, fused where it attends once over keys it does
// not append to and fusedRows allows, else phased.
func (p *pipeline) form(c *call) form {
	l := p.layer
	if c.x == nil || c.cache != nil || c.reqs != nil || l.rope != nil {
		return formPhased
	}
	if c.xk != nil && l.Absorbs(c.s) {
		return formAbsorbed
	}
	if l.fusedRows(c.s) > 0 {
		return formFused
	}
	return formPhased
}

// run computes the validated call c on l: the stages its form takes. The
// mask fields of p.att are set already.
func (p *pipeline) run(l *Layer, c *call) {
	cfg := &l.cfg
	p.layer = l
	f := p.form(c)
	w := work(cfg, float64(c.rows), float64(c.kvRows), c.pairs)
	if f == formAbsorbed {
		w = absorbedFLOPs(cfg, c.s)
	}
	p.begin(l, w)
	// A call runs its phases on the crew where the crew can run all but
	// split keys: not where Go helpers run the fused blocks, the RoPE
	// rotation or ForwardBatch's requests, since the threads of one pool
	// poll while the other's work (measured: ForwardBatch 6% slower with
	// its projections on the crew and its requests on Go helpers).
	p.crewed = f != formFused && l.rope == nil && c.reqs == nil
	if c.xk != nil && f != formAbsorbed && c.kvOut == nil {
		ldkv := cfg.KVHeads * (cfg.HeadDim + cfg.ValueHeadDim)
		p.ws.kv = grow(p.ws.kv, c.kvRows*ldkv)
		c.kvOut = p.ws.kv
		if c.keys.kv == nil {
			c.keys = keys{kv: p.ws.kv, stride: c.s.Tk * ldkv}
		}
	}

	// Project: queries (the fused form's go block by block) and keys and
	// values from one source as one product against [Wk; Wv].
	p.ws.gemms = p.ws.gemms[:0]
	if c.x != nil && f != formFused {
		p.addQ(c.x, c.rows)
	}
	if c.xk != nil && f != formAbsorbed {
		p.addKV(c.xk, c.xv, c.kvOut)
	}
	p.gemmPhase()
	if l.rope != nil {
		p.rotate(c)
	}
	if c.cache != nil {
		c.keys = c.cache.append(c.kvOut)
	}
	if c.x == nil {
		return
	}

	// Attend, or run the fused blocks.
	switch {
	case f == formFused:
		p.fused(c.y, c.x, c.keys, c.s, l.fusedRows(c.s))
		return
	case f == formAbsorbed:
		p.absorbQueries(c.s)
		p.attendAbsorbed(c)
		p.absorbValues(c.s)
	case c.reqs != nil:
		p.attendRequests(c.reqs)
	default:
		p.attend(c.keys, c.s)
	}

	// Output: the output projection, straight into y.
	p.output(c.y, c.rows)
}

// rotate applies the layer's RoPE to the call's projected queries and keys
// (see call; ForwardBatch's, request by request), before they are attended
// over or appended to a cache: rows split over the call's threads.
func (p *pipeline) rotate(c *call) {
	l := p.layer
	cfg := &l.cfg
	nq, ldkv := cfg.Heads*cfg.HeadDim, cfg.KVHeads*(cfg.HeadDim+cfg.ValueHeadDim)
	j := &p.rot
	j.segs = j.segs[:0]
	switch {
	case c.reqs != nil:
		bs := p.ws.bat
		for i := range c.reqs {
			br := &bs.reqs[i]
			if br.rows == 0 {
				continue
			}
			a := &br.att
			j.segs = append(j.segs, ropeRows{x: p.ws.q[br.rq*nq:], rows: br.rows, ld: nq, heads: cfg.Heads, period: a.Tq, off: a.CausalOffset})
			if c.reqs[i].Cached == nil && a.Tk > 0 {
				j.segs = append(j.segs, ropeRows{x: c.kvOut[br.rk*ldkv:], rows: a.Batch * a.Tk, ld: ldkv, heads: cfg.KVHeads, period: a.Tk})
			}
		}
	default:
		if c.x != nil && c.rows > 0 {
			j.segs = append(j.segs, ropeRows{x: p.ws.q, rows: c.rows, ld: nq, heads: cfg.Heads, period: c.s.Tq, off: c.qOff})
		}
		if c.xk != nil && c.kvRows > 0 {
			j.segs = append(j.segs, ropeRows{x: c.kvOut, rows: c.kvRows, ld: ldkv, heads: cfg.KVHeads, period: c.kPeriod, off: c.kOff})
		}
	}
	if n := j.plan(l.rope, &p.ws.rope, p.threads); n > 0 {
		p.phase = phaseRotate
		p.job.run(p, n, p.threads-1)
	}
	j.done()
}

// begin starts a call of work floating-point operations on l: it runs on the
// plan's threads, or on the caller alone below Plan.SerialFLOPs.
func (p *pipeline) begin(l *Layer, work float64) {
	p.threads = l.plan.Threads
	if work < l.plan.SerialFLOPs {
		p.threads = 1
	}
	p.backend, p.plan, p.layer = l.backend, &l.plan, l
	p.crewed = true // run narrows it
	p.ws.batches = grow(p.ws.batches, p.threads)
}

// fusedRows returns the query rows of one item of the fused form of a call
// of shape s, or 0 when the call runs phase by phase.
//
// The fused form runs the query projection, the attention core of every
// head and the output projection of one block of query rows as one item, on
// one worker: the block's Q and O stay in that core's cache instead of
// going out to memory between phases and coming back on another core (on
// Stable Diffusion's 8192 query rows, 20 MB written and read again per call,
// half of it across cores). It needs many blocks to share, and products whose
// rows do not depend on how they are chunked — the packed-weight kernel's —
// so that it computes exactly what the phases do.
func (l *Layer) fusedRows(s Shape) int {
	if l.pq.IsZero() || l.po.IsZero() || s.Tk == 0 || l.rope != nil {
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
// (keys, then values), batch b's from kv[b·stride]; kt, when not zero, holds
// the keys again as the backend's PackKeys laid them out (blas.Attention.KT).
type keys struct {
	kv     []float32
	stride int
	kt     blas.Packed
}

// fused runs the fused form over blocks of q query rows: item i is block
// i%⌈Tq/q⌉ of batch i/⌈Tq/q⌉.
func (p *pipeline) fused(y, x []float32, k keys, s Shape, q int) {
	c := &p.layer.cfg
	a := &p.att
	p.layer.describe(a, k, nil, nil, s, q) // Q and O: each item's block
	p.tiles(a.QBlock, a.KVBlock)
	p.packKeys() // every block of a batch reads its keys
	p.ws.fq = grow(p.ws.fq, p.threads*q*c.Heads*c.HeadDim)
	p.ws.fo = grow(p.ws.fo, p.threads*q*c.Heads*c.ValueHeadDim)
	p.ws.views = grow(p.ws.views, p.threads)
	p.fx, p.fy, p.fRows = x, y, q
	p.phase = phaseFused
	p.job.run(p, a.Batch*ceilDiv(a.Tq, q), p.threads-1)
	p.fx, p.fy = nil, nil
}

// operands are the projected queries, keys and values of an attention core
// and its output, each with a row stride and a batch stride: row i of batch
// b of Q starts at q[b·bq + i·ldq] and holds Heads·HeadDim values (head h's
// from h·HeadDim on); K and V hold KVHeads heads over Tk rows a batch, O
// Heads·ValueHeadDim values over Tq rows. kt is zero or the keys packed as
// blas.Attention.KT.
type operands struct {
	q, k, v, o         []float32
	ldq, ldk, ldv, ldo int
	bq, bk, bv, bo     int
	kt                 blas.Packed
}

// operands returns the pipeline's layout of an attention of shape s over
// the projected keys and values k: queries q and outputs o dense rows of
// Heads·HeadDim and Heads·ValueHeadDim values, Tq rows a batch.
func (l *Layer) operands(k keys, q, o []float32, s Shape) operands {
	c := &l.cfg
	h, g, dk, dv := c.Heads, c.KVHeads, c.HeadDim, c.ValueHeadDim
	nk := g * dk
	ldkv := nk + g*dv
	return operands{
		q: q, ldq: h * dk, bq: s.Tq * h * dk,
		k: k.kv, ldk: ldkv, bk: k.stride,
		v: k.kv[min(nk, len(k.kv)):], ldv: ldkv, bv: k.stride,
		o: o, ldo: h * dv, bo: s.Tq * h * dv,
		kt: k.kt,
	}
}

// describe sets every field of a but the masks for an attention of shape s
// over the projected keys and values k: sizes and scale, the keys and
// values, the queries q and outputs o (rows of Heads·HeadDim and
// Heads·ValueHeadDim values, Tq rows a batch), query blocks of qb rows and
// the plan's key blocks.
func (l *Layer) describe(a *blas.Attention, k keys, q, o []float32, s Shape, qb int) {
	op := l.operands(k, q, o, s)
	l.describeOperands(a, &op, s, qb)
}

// describeOperands is describe over the operands op, in any layout.
func (l *Layer) describeOperands(a *blas.Attention, op *operands, s Shape, qb int) {
	c := &l.cfg
	a.Batch, a.Heads, a.KVHeads, a.Tq, a.Tk, a.DK, a.DV = s.Batch, c.Heads, c.KVHeads, s.Tq, s.Tk, c.HeadDim, c.ValueHeadDim
	a.Scale = c.Scale
	a.K, a.LDK, a.BatchK = op.k, op.ldk, op.bk
	a.V, a.LDV, a.BatchV = op.v, op.ldv, op.bv
	a.KT = op.kt
	a.Q, a.LDQ, a.BatchQ = op.q, op.ldq, op.bq
	a.O, a.LDO, a.BatchO = op.o, op.ldo, op.bo
	a.QBlock, a.KVBlock = qb, max(min(l.plan.KVBlock, s.Tk), 1)
}

// tiles sets the query and key blocks of p.att and grows the workers'
// scratch to its tiles.
func (p *pipeline) tiles(q, kv int) {
	a := &p.att
	a.QBlock, a.KVBlock = q, kv
	p.scratchN = p.backend.ScratchLen(a)
	p.ws.scratch = grow(p.ws.scratch, p.threads*p.scratchN)
}

// fusedItem runs item i of the fused form on worker slot.
func (p *pipeline) fusedItem(slot, i int) {
	l := p.layer
	c := &l.cfg
	a := &p.att
	q := p.fRows
	nblk := ceilDiv(a.Tq, q)
	bi, q0 := i/nblk, i%nblk*q
	rows := min(q, a.Tq-q0)
	nq, hdv := a.Heads*a.DK, a.Heads*a.DV
	qb := p.ws.fq[slot*q*nq:][:rows*nq]
	ob := p.ws.fo[slot*q*hdv:][:rows*hdv]

	// The block's queries.
	g := l.queryGemm(p.fx[(bi*a.Tq+q0)*c.QueryDim:], qb, rows)
	p.product(slot, &g, blas.Chunk{R1: rows, C1: g.n})

	// Attention of every head over batch bi's keys, one task per head: the
	// call's descriptor narrowed to one batch and the block's rows.
	v := &p.ws.views[slot]
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
	p.backend.Attend(v, 0, v.Tasks(), p.ws.scratch[slot*p.scratchN:][:p.scratchN])

	// The block's outputs, straight into y.
	g = l.outputGemm(ob, p.fy[(bi*a.Tq+q0)*c.OutDim:], rows)
	p.product(slot, &g, blas.Chunk{R1: rows, C1: g.n})
}

// addQ adds to the phase's products the query projection of the
// rows×QueryDim matrix x into the workspace's Q.
func (p *pipeline) addQ(x []float32, rows int) {
	c := &p.layer.cfg
	nq := c.Heads * c.HeadDim
	p.ws.q = grow(p.ws.q, rows*nq)
	p.ws.gemms = append(p.ws.gemms, p.layer.queryGemm(x, p.ws.q, rows))
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

// addKV adds to the phase's products the key and value projections of xk
// and xv into kv, rows of nk+nv values (keys, then values), as many as kv
// holds; one GEMM against [Wk; Wv] when they are the same rows (in BF16
// against the packed pkv alone: its float32 weights are gone). An empty kv
// adds nothing.
func (p *pipeline) addKV(xk, xv, kv []float32) {
	if len(kv) == 0 {
		return
	}
	l := p.layer
	c := &l.cfg
	nk, nv := c.KVHeads*c.HeadDim, c.KVHeads*c.ValueHeadDim
	ldkv := nk + nv
	m := len(kv) / ldkv
	if (l.wkv != nil || !l.pkv.IsZero()) && &xk[0] == &xv[0] {
		p.ws.gemms = append(p.ws.gemms, gemm{a: xk, m: m, lda: c.ContextDim, k: c.ContextDim, n: ldkv, w: l.wkv, bias: l.bkv, packed: l.pkv, c: kv, ldc: ldkv})
	} else {
		p.ws.gemms = append(p.ws.gemms,
			gemm{a: xk, m: m, lda: c.ContextDim, k: c.ContextDim, n: nk, w: l.wk, bias: l.bk, packed: l.pk, c: kv, ldc: ldkv},
			gemm{a: xv, m: m, lda: c.ValueDim, k: c.ValueDim, n: nv, w: l.wv, bias: l.bv, packed: l.pv, c: kv[nk:], ldc: ldkv})
	}
}

// attend runs the attention core of the s.Batch·s.Tq projected queries in
// the workspace's Q over the s.Tk keys and values k, into its O.
func (p *pipeline) attend(k keys, s Shape) {
	l := p.layer
	c := &l.cfg
	p.ws.o = grow(p.ws.o, s.Batch*s.Tq*c.Heads*c.ValueHeadDim)
	op := l.operands(k, p.ws.q, p.ws.o, s)
	p.attendCore(&op, s)
}

// attendCore runs the attention core of shape s over the operands op with
// the mask fields of p.att, split over the call's threads: the attend stage
// of every pipeline that is not fused, absorbed or batched, and all of
// [Attention.ForwardInto], so that the layer and the public core cannot
// drift.
func (p *pipeline) attendCore(op *operands, s Shape) {
	l := p.layer
	a := &p.att
	l.describeOperands(a, op, s, l.queryBlock(s))
	p.tiles(a.QBlock, a.KVBlock)
	p.packKeys()
	p.runAttention(s.Tk)
}

// packKeys packs the keys and values of p.att once for the call, into the
// workspace, its parts on the call's threads, and hands them to the tasks
// as KT, where the backend packs them into caller memory (blas.KeyPacker)
// and some key is read by more than one task (several query blocks, or
// heads in several tasks, over one key/value head): otherwise each task
// packs the panels it reads, and a key read by n tasks is packed n times,
// each time from a row of K read again from memory (measured on perceiver
// in BF16, 16 tasks over 8 heads, one thread: the per-task packers took
// 40% of the layer's time, the packing once a call 20%).
func (p *pipeline) packKeys() {
	a := &p.att
	kp, ok := p.backend.(blas.KeyPacker)
	if !ok || !a.KT.IsZero() || a.Tasks() <= a.Batch*a.KVHeads {
		return
	}
	n := kp.KeyParts(a)
	if n == 0 {
		return
	}
	ln, _ := blas.PackedKeysLen(p.backend, a.Batch*a.KVHeads, a.Tk, a.DK, a.DV)
	p.ws.keys = grow(p.ws.keys, int(ln))
	p.keyPacker = kp
	p.keysBad.Store(false)
	p.phase = phasePackKeys
	p.job.run(p, n, p.threads-1)
	p.keyPacker = nil
	a.KT = kp.PackedKeysIn(a, p.ws.keys, !p.keysBad.Load())
}

// queryBlock is the query block of an attention of shape s, as qBlock
// chooses it from the plan and the backend's row step.
func (l *Layer) queryBlock(s Shape) int {
	p := &l.plan
	return qBlock(p.QBlock, s.Batch*l.cfg.Heads, s.Tq, p.Threads, l.rowStep)
}

// runAttention runs the tasks of p.att, with keys split (see splitKeys)
// when there are too few.
func (p *pipeline) runAttention(tk int) {
	a := &p.att
	tasks := a.Tasks()
	lo, hi := keySpan(a, tk)
	nparts := splitKeys(tasks, hi-lo, a.KVBlock, p.plan.Threads)
	p.taskChunk = max(1, tasks*nparts/(8*p.threads))
	if p.threads == 1 {
		p.taskChunk = tasks
	}
	p.taskChunk = min(p.taskChunk, tasks)
	p.itemsPerPart = ceilDiv(tasks, p.taskChunk)
	p.phase = phaseAttend
	if nparts == 1 {
		p.ws.parts = p.ws.parts[:0]
		if cr := p.crewOf(); cr != nil && cr.Attend(a, p.taskChunk, p.threads, p.ws.scratch) {
			return
		}
		p.job.run(p, p.itemsPerPart, p.threads-1)
		return
	}
	p.splitKeys(nparts, lo, hi)
	p.job.run(p, nparts*p.itemsPerPart, p.threads-1)
	p.mergeParts()
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

// keySpan returns the keys [lo, hi) of the tk keys of a that some query
// sees by the structural mask: a window hides the keys before the first
// query's window (lo, rounded down to a key block), the causal limit those
// after the last query's position. Split keys cut this span alone, so a
// windowed decoding step splits its window, not the whole cache.
func keySpan(a *blas.Attention, tk int) (lo, hi int) {
	hi = tk
	if a.Causal {
		hi = min(hi, max(a.Tq+a.CausalOffset, 0))
	}
	if a.Window > 0 {
		lo = max(a.CausalOffset-a.Window+1, 0) / a.KVBlock * a.KVBlock
	}
	return min(lo, hi), hi
}

// splitKeys sets the workspace's parts to n descriptors that each run p.att
// over a range of whole key blocks of the keys [lo, hi), into their own
// output and statistics; no query sees a key outside them (keySpan).
func (p *pipeline) splitKeys(n, lo, hi int) {
	a := &p.att
	ws := &p.ws
	b, h, tq := a.Batch, a.Heads, a.Tq
	oLen := (b-1)*a.BatchO + (tq-1)*a.LDO + h*a.DV // a part's O, as p.att.O
	ws.parts = grow(ws.parts, n)
	ws.partO = grow(ws.partO, n*oLen)
	ws.partStats = grow(ws.partStats, n*2*b*h*tq)
	if a.KeyLen != nil {
		ws.partLen = grow(ws.partLen, n*b)
	}
	step := ceilDiv(ceilDiv(hi-lo, n), a.KVBlock) * a.KVBlock
	for i := range ws.parts {
		k0 := min(lo+i*step, hi)
		pa := &ws.parts[i]
		*pa = *a
		pa.Tk = min(step, hi-k0)
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

// mergeParts combines the parts' normalized outputs into p.att.O: row i of
// head h is Σ_p w_p·O_p / Σ_p w_p with w_p = sum_p·e^(max_p − max), the
// exact softmax over all the keys. A row no part saw a key of is 0.
func (p *pipeline) mergeParts() {
	a := &p.att
	parts := p.ws.parts
	for b := range a.Batch {
		for h := range a.Heads {
			for i := range a.Tq {
				si := 2 * ((b*a.Heads+h)*a.Tq + i)
				m := math.Inf(-1)
				for p := range parts {
					m = max(m, float64(parts[p].Stats[si]))
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
				for p := range parts {
					st := parts[p].Stats[si:]
					den += float64(st[1]) * math.Exp(float64(st[0])-m)
				}
				if a.Stats != nil {
					a.Stats[si], a.Stats[si+1] = float32(m), float32(den)
				}
				for p := range parts {
					st := parts[p].Stats[si:]
					w := float32(float64(st[1]) * math.Exp(float64(st[0])-m) / den)
					if w == 0 {
						continue
					}
					for d, v := range parts[p].O[oi : oi+a.DV] {
						o[d] += w * v
					}
				}
			}
		}
	}
}

// output runs the output projection of the rows attention rows in the
// workspace's O, straight into y.
func (p *pipeline) output(y []float32, rows int) {
	p.ws.gemms = append(p.ws.gemms[:0], p.layer.outputGemm(p.ws.o, y, rows))
	p.gemmPhase()
}

// gemmPhase splits every product of the phase (the workspace's gemms) into
// row chunks, or into column chunks when it has too few rows to share, and
// runs them on the call's threads.
//
// The chunks depend on the rows and the plan's thread count only, never on
// whether this call runs serially: OpenBLAS's value for a row of a product
// depends on the chunk it is computed in (its M and its place there), so a
// product split the same way gives the same bits whatever else the call
// does. This is what makes projections cached by [Layer.ProjectContext]
// equal to fresh ones.
func (p *pipeline) gemmPhase() {
	parts := p.plan.Threads
	rs, cs := p.layer.rowStep, p.layer.colStep
	ws := &p.ws
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
				ws.chunks = append(ws.chunks, blas.Chunk{G: gi, R0: r0, R1: min(r0+rstep, r), C0: c0, C1: min(c0+cstep, n)})
			}
		}
	}
	if p.crewProducts() {
		return
	}
	p.phase = phaseGemm
	p.job.run(p, len(ws.chunks), p.threads-1)
}

// crewProducts runs the phase's chunks on the backend's crew, where the
// call has helpers to give and the crew takes the products (see
// blas.Crew), and reports whether it did.
func (p *pipeline) crewProducts() bool {
	cr := p.crewOf()
	if cr == nil {
		return false
	}
	ws := &p.ws
	ws.crewed = ws.crewed[:0]
	for i := range ws.gemms {
		g := &ws.gemms[i]
		ws.crewed = append(ws.crewed, g.batch(blas.Chunk{R1: g.m, C1: g.n}))
	}
	return cr.Products(ws.crewed, ws.chunks, p.threads) // release drops ws.crewed's references
}

// crewOf returns the crew of the call's backend when the call runs on more
// than one thread, on the crew (run), and the backend has one, else nil. The pipeline keeps it
// (a pipeline runs one call at a time, on one layer's backend).
func (p *pipeline) crewOf() blas.Crew {
	if p.threads <= 1 || !p.crewed {
		return nil
	}
	if p.crewBackend != p.backend {
		p.crew, p.crewBackend = blas.CrewOf(p.backend), p.backend
	}
	return p.crew
}

// chunksPerWorker is how many row chunks gemmPhase cuts a tall product in
// per thread of the plan.
const chunksPerWorker = 6

// product runs chunk ch of g on worker slot.
func (p *pipeline) product(slot int, g *gemm, ch blas.Chunk) {
	bt := &p.ws.batches[slot]
	*bt = g.batch(ch)
	p.backend.Sgemm(bt)
}

// batch is chunk ch of g as one product (the whole of g for
// Chunk{R1: g.m, C1: g.n}).
func (g *gemm) batch(ch blas.Chunk) blas.Batch {
	n := ch.C1 - ch.C0
	bt := blas.Batch{
		Count: 1, M: ch.R1 - ch.R0, N: n, K: g.k, TransB: true, Alpha: 1,
		A: g.a[ch.R0*g.lda:], LDA: g.lda, LDB: g.k,
		C: g.c[ch.R0*g.ldc+ch.C0:], LDC: g.ldc,
	}
	if g.w != nil { // nil in BF16, whose products read the packed weights only
		bt.B = g.w[ch.C0*g.k:]
	}
	if g.bias != nil {
		bt.Bias = g.bias[ch.C0:]
	}
	// Columns [c0, c1) start a column step (gemmPhase), where the packed
	// matrix has a view; without one the product reads B.
	bt.Packed, _ = g.packed.Cols(ch.C0, n)
	return bt
}

// runItem runs item i of the current phase on worker slot.
func (p *pipeline) runItem(slot, i int) {
	switch p.phase {
	case phaseGemm:
		ch := p.ws.chunks[i]
		p.product(slot, &p.ws.gemms[ch.G], ch)
	case phaseFused:
		p.fusedItem(slot, i)
	case phaseAttend:
		a := &p.att
		if len(p.ws.parts) > 0 {
			a = &p.ws.parts[i/p.itemsPerPart]
			i %= p.itemsPerPart
		}
		t0 := i * p.taskChunk
		t1 := min(t0+p.taskChunk, a.Tasks())
		p.backend.Attend(a, t0, t1, p.ws.scratch[slot*p.scratchN:][:p.scratchN])
	case phaseRotate:
		p.rot.item(p.layer.rope, p.layer.cfg.HeadDim, i)
	case phasePackKeys:
		if !p.keyPacker.PackKeysPart(&p.att, p.ws.keys, i) {
			p.keysBad.Store(true)
		}
	case phaseRequests:
		bs := p.ws.bat
		it := bs.items[i]
		p.backend.Attend(&bs.reqs[it.r].att, it.t0, it.t1, p.ws.scratch[slot*p.scratchN:][:p.scratchN])
	}
}
