package xattn

import (
	"fmt"

	"github.com/xattn/xattn/blas"
)

// Request is one independent call of [Layer.ForwardBatch]: the arguments of
// [Layer.ForwardInto] (Y, X, Context, Shape, Mask), or of
// [Layer.ForwardContext] when Cached is set.
type Request struct {
	// Y receives the output, [Batch, Tq, OutDim].
	Y []float32
	// X is the queries' source, [Batch, Tq, QueryDim].
	X []float32
	// Context is the keys' and values' source, [Batch, Tk, ContextDim]; nil
	// means self-attention (keys and values from X), as for ForwardInto.
	Context []float32
	// Cached, if not nil, holds the keys and values projected already:
	// Context must then be nil, Shape.Batch equal Cached.Batch() and
	// Shape.Tk be 0 or Cached.Tk().
	Cached *Context
	Shape  Shape
	Mask   *Mask
}

// ForwardBatch computes many independent requests in one call, for servers
// that gather small requests: each gets the result of its own
// [Layer.ForwardInto] (or [Layer.ForwardContext]), to float32 rounding.
//
// The requests may differ in shape, route and mask. Their rows are stacked,
// so that each projection runs as one tall product over all of them, which
// reads the weights once instead of once per request; the attention core
// runs each request's (batch, head, query block) tasks over its own keys,
// and the outputs are copied back. The results are not promised to be bit
// for bit those of separate calls: the products run over other row counts,
// and OpenBLAS's rounding of a row can depend on them. With [WithRoPE] each
// request's queries and keys sit at the positions its own call would give
// them (keys from 0, queries per its Mask).
//
// Every request is checked before any is computed. An invalid one makes the
// call return an error that names its index ("request 3: …") and wraps
// [ErrShape] or [ErrMask]; no Y is written then. The Y slices must not
// overlap each other or any input. After the pool has warmed up to the
// requests' total size, ForwardBatch allocates nothing.
func (l *Layer) ForwardBatch(reqs []Request) error {
	if err := l.usable(); err != nil {
		return err
	}
	p := l.getPipeline()
	defer l.putPipeline(p)
	if p.ws.bat == nil {
		p.ws.bat = &batchScratch{}
	}
	bs := p.ws.bat
	pairs, err := bs.check(l, &p.ws, reqs)
	if err != nil {
		return err
	}
	if bs.rq == 0 {
		return nil
	}
	c := &l.cfg

	// Stack the inputs.
	bs.x = grow(bs.x, bs.rq*c.QueryDim)
	bs.ctx = grow(bs.ctx, bs.rk*c.ContextDim)
	for i := range reqs {
		r, br := &reqs[i], &bs.reqs[i]
		if br.rows == 0 {
			continue
		}
		copy(bs.x[br.rq*c.QueryDim:], r.X)
		switch {
		case r.Cached != nil:
		case r.Context == nil:
			copy(bs.ctx[br.rk*c.ContextDim:], r.X)
		default:
			copy(bs.ctx[br.rk*c.ContextDim:], r.Context)
		}
	}

	// One product for every query, one for every key and value, the
	// attention of each request over its own keys, one output product;
	// then each request's rows to its Y.
	bs.y = grow(bs.y, bs.rq*c.OutDim)
	p.run(l, &call{y: bs.y, x: bs.x, rows: bs.rq, xk: bs.ctx, xv: bs.ctx, kvRows: bs.rk, reqs: reqs, pairs: pairs})
	for i := range reqs {
		if br := &bs.reqs[i]; br.rows > 0 {
			copy(reqs[i].Y, bs.y[br.rq*c.OutDim:][:len(reqs[i].Y)])
		}
	}
	return nil
}

// batchScratch is the part of a workspace that ForwardBatch uses, made on
// its first use.
type batchScratch struct {
	x, ctx, y []float32 // stacked inputs and outputs
	reqs      []batchReq
	keyLen    []int32
	items     []batchItem
	rq, rk    int // stacked query and context rows
}

// batchReq is one request of a batch: its attention descriptor and where its
// rows are stacked.
type batchReq struct {
	att    blas.Attention
	rows   int // query rows, Batch·Tq; 0 means nothing to compute
	rq, rk int // first stacked query row and context row
	keyLen int // first of its key lengths in keyLen, or −1
}

// batchItem is tasks [t0, t1) of the attention of request r.
type batchItem struct{ r, t0, t1 int }

// check validates every request and lays out the batch: stacked rows, mask
// fields and key lengths, with ws's key-length buffer for scratch. It
// returns the (query row, key) pairs the batch attends.
func (bs *batchScratch) check(l *Layer, ws *workspace, reqs []Request) (float64, error) {
	c := &l.cfg
	bs.reqs = grow(bs.reqs, len(reqs))
	bs.keyLen = bs.keyLen[:0]
	bs.rq, bs.rk = 0, 0
	const maxRows = 1<<31 - 1 // rows of one product, a C int
	var total float64
	for i := range reqs {
		r, br := &reqs[i], &bs.reqs[i]
		*br = batchReq{keyLen: -1}
		s, err := l.checkRequest(r)
		if err == nil {
			err = l.finiteInputs(r.X, r.Context, r.Context, s)
		}
		if err != nil {
			return 0, fmt.Errorf("request %d: %w", i, err)
		}
		if err := checkRequestOverlap(reqs, i); err != nil {
			return 0, err
		}
		if s.Batch == 0 || s.Tq == 0 {
			continue
		}
		var a blas.Attention
		if err := ws.setMask(&a, r.Mask, s.Batch, c.Heads, s.Tq, s.Tk); err != nil {
			return 0, fmt.Errorf("request %d: %w", i, err)
		}
		br.att = blas.Attention{
			Batch: s.Batch, Tq: s.Tq, Tk: s.Tk,
			Causal: a.Causal, CausalOffset: a.CausalOffset,
			Keep: a.Keep, KeepStride: a.KeepStride,
			Bias: a.Bias, BiasStride: a.BiasStride,
			Window: a.Window, ALiBi: a.ALiBi, // ws.slopes depend on Heads alone: shared by the requests
		}
		if a.KeyLen != nil {
			br.keyLen = len(bs.keyLen)
			bs.keyLen = append(bs.keyLen, a.KeyLen...)
		}
		rk := s.Batch * s.Tk
		if r.Cached != nil {
			rk = 0
		}
		br.rows, br.rq, br.rk = s.Batch*s.Tq, bs.rq, bs.rk
		if br.rows > maxRows-bs.rq || rk > maxRows-bs.rk {
			return 0, fmt.Errorf("request %d: %w: the rows of requests 0 … %d overflow one product", i, ErrShape, i)
		}
		bs.rq += br.rows
		bs.rk += rk
		total += float64(s.Batch) * float64(s.Tq) * float64(s.Tk)
	}
	// The stacked inputs, projections and outputs.
	rq, rk := float64(bs.rq), float64(bs.rk)
	h := float64(c.Heads)
	need := rq*(float64(c.QueryDim+c.OutDim)+h*float64(c.HeadDim+c.ValueHeadDim)) +
		rk*float64(c.ContextDim+c.KVHeads*(c.HeadDim+c.ValueHeadDim))
	if err := checkMem("the batch's scratch", need); err != nil {
		return 0, err
	}
	return total, nil
}

// checkRequestOverlap returns an error wrapping ErrShape if the Y of request
// i overlaps its own inputs, or the Y or an input of an earlier request, or
// an earlier request's Y overlaps an input of request i.
func checkRequestOverlap(reqs []Request, i int) error {
	r := &reqs[i]
	if overlaps(r.Y, r.X) || overlaps(r.Y, r.Context) {
		return fmt.Errorf("request %d: %w: Y overlaps its own X or Context", i, ErrShape)
	}
	for j := range i {
		q := &reqs[j]
		switch {
		case overlaps(r.Y, q.Y):
			return fmt.Errorf("request %d: %w: Y overlaps request %d's Y", i, ErrShape, j)
		case overlaps(r.Y, q.X) || overlaps(r.Y, q.Context):
			return fmt.Errorf("request %d: %w: Y overlaps request %d's X or Context", i, ErrShape, j)
		case overlaps(q.Y, r.X) || overlaps(q.Y, r.Context):
			return fmt.Errorf("request %d: %w: X or Context overlaps request %d's Y", i, ErrShape, j)
		}
	}
	return nil
}

// checkRequest validates the route and lengths of r and returns its shape,
// with Tk filled in for self-attention and cached contexts.
func (l *Layer) checkRequest(r *Request) (Shape, error) {
	c := &l.cfg
	s := r.Shape
	switch {
	case r.Cached != nil:
		if r.Context != nil {
			return s, fmt.Errorf("%w: both Context and Cached are set", ErrShape)
		}
		if r.Cached.layer != l {
			return s, fmt.Errorf("%w: the Cached Context was projected by another layer", ErrShape)
		}
		if s.Batch != r.Cached.batch || (s.Tk != 0 && s.Tk != r.Cached.tk) {
			return s, fmt.Errorf("%w: Shape Batch=%d, Tk=%d, but the Cached Context is %d×%d",
				ErrShape, s.Batch, s.Tk, r.Cached.batch, r.Cached.tk)
		}
		s.Tk = r.Cached.tk
	case r.Context == nil:
		if c.ContextDim != c.QueryDim || c.ValueDim != c.QueryDim {
			return s, fmt.Errorf("%w: nil Context means self-attention, but QueryDim=%d, ContextDim=%d, ValueDim=%d differ",
				ErrShape, c.QueryDim, c.ContextDim, c.ValueDim)
		}
		if s.Tk != 0 && s.Tk != s.Tq {
			return s, fmt.Errorf("%w: self-attention with Tq=%d but Tk=%d", ErrShape, s.Tq, s.Tk)
		}
		s.Tk = s.Tq
	default:
		if c.ValueDim != c.ContextDim {
			return s, fmt.Errorf("%w: ValueDim=%d ≠ ContextDim=%d: project keys and values with ProjectKV and pass them as Cached",
				ErrShape, c.ValueDim, c.ContextDim)
		}
	}
	if err := l.checkShape(s); err != nil {
		return s, err
	}
	if err := checkLen("Y", r.Y, s.Batch, s.Tq, c.OutDim); err != nil {
		return s, err
	}
	if err := checkLen("X", r.X, s.Batch, s.Tq, c.QueryDim); err != nil {
		return s, err
	}
	if r.Cached == nil && r.Context != nil {
		if err := checkLen("Context", r.Context, s.Batch, s.Tk, c.ContextDim); err != nil {
			return s, err
		}
	}
	return s, nil
}

// attendRequests runs the attention core of every request of a
// ForwardBatch: their descriptors point into the stacked projections (or a
// Cached context), and their tasks are the items of one phase.
func (p *pipeline) attendRequests(reqs []Request) {
	l := p.layer
	c := &l.cfg
	ws := &p.ws
	bs := ws.bat
	h, dv := c.Heads, c.ValueHeadDim
	nq, ldkv := h*c.HeadDim, c.KVHeads*(c.HeadDim+dv)
	ws.o = grow(ws.o, bs.rq*h*dv)
	tasks := 0
	p.scratchN = 0
	for i := range reqs {
		br := &bs.reqs[i]
		if br.rows == 0 {
			continue
		}
		a := &br.att
		s := Shape{Batch: a.Batch, Tq: a.Tq, Tk: a.Tk}
		k := keys{kv: ws.kv[br.rk*ldkv:], stride: s.Tk * ldkv}
		if r := reqs[i].Cached; r != nil {
			k.kv = r.kv
		}
		// The tiles of a separate call.
		l.describe(a, k, ws.q[br.rq*nq:], ws.o[br.rq*h*dv:], s, l.queryBlock(s))
		if br.keyLen >= 0 {
			a.KeyLen = bs.keyLen[br.keyLen:][:a.Batch]
		}
		p.scratchN = max(p.scratchN, p.backend.ScratchLen(a))
		tasks += a.Tasks()
	}
	ws.scratch = grow(ws.scratch, p.threads*p.scratchN)
	chunk := tasks
	if p.threads > 1 {
		chunk = max(1, tasks/(4*p.threads))
	}
	bs.items = bs.items[:0]
	for i := range reqs {
		br := &bs.reqs[i]
		if br.rows == 0 {
			continue
		}
		n := br.att.Tasks()
		for t0 := 0; t0 < n; t0 += chunk {
			bs.items = append(bs.items, batchItem{i, t0, min(t0+chunk, n)})
		}
	}
	p.phase = phaseRequests
	p.job.run(p, len(bs.items), p.threads-1)
}

// release drops every reference to caller memory before the workspace goes
// back to the pool.
func (bs *batchScratch) release() {
	clear(bs.reqs[:cap(bs.reqs)])
}
