package xattn

import (
	"fmt"
	"sync/atomic"

	"github.com/xattn/xattn/blas"
)

// Context is a context whose keys and values a [Layer] has projected once,
// to serve any number of forward passes: the text embedding of a diffusion
// prompt over every denoising step, an encoder output over every decoder
// step. [Layer.ProjectContext] and [Layer.ProjectKV] make one;
// [Layer.ForwardContext] uses it.
//
// A Context belongs to the layer that projected it and is immutable: any
// number of goroutines may use it at once. It holds Batch·Tk·KVHeads·
// (HeadDim+ValueHeadDim) values, and on backends that pack keys (the
// OpenBLAS backend on AVX-512) the keys again, in the kernel's layout; in
// BF16 on the C core, the keys and values again rounded to bf16 and packed
// (2 bytes a value, keys in groups of 32 and head sizes padded to 32), so
// about 1.5× the float32 keys and values in all ([Context.Bytes]). The
// float32 ones stay because the BF16 core reads them: it packs from them
// the keys of a task whose key range starts off a 32-key group (a sliding
// window's, a key split's at a step off 32) and the values of a context
// with a non-finite value (never packed, for the non-finite rule).
type Context struct {
	layer     *Layer
	batch, tk int
	kv        []float32 // [batch, tk, nk+nv]: the keys, then the values of each row
	// kt holds the keys again as the backend's PackKeys laid them out, zero
	// when it reads them from kv (blas.Attention.KT).
	kt blas.Packed
}

// Batch returns the number of sequences of c (0 for a nil Context).
func (c *Context) Batch() int {
	if c == nil {
		return 0
	}
	return c.batch
}

// Tk returns the number of keys of each sequence of c (0 for a nil Context).
func (c *Context) Tk() int {
	if c == nil {
		return 0
	}
	return c.tk
}

// Bytes returns the memory c's keys and values take: the float32 ones and
// the packed ones (0 for a nil Context).
func (c *Context) Bytes() int {
	if c == nil {
		return 0
	}
	return 4*len(c.kv) + c.kt.Bytes()
}

// contextLen bounds, in float32 values, the memory of a projected context
// of batch×tk keys (see Context): the float32 keys and values, and what the
// backend's PackKeys makes of them (blas.PackedKeysLen; for a backend of
// another package, whose layout is unknown, as much as the keys and values
// again).
func (l *Layer) contextLen(batch, tk int) float64 {
	c := &l.cfg
	items := batch * c.KVHeads
	n := float64(items) * float64(tk) * float64(c.HeadDim+c.ValueHeadDim)
	packed, ok := blas.PackedKeysLen(l.backend, items, tk, c.HeadDim, c.ValueHeadDim)
	if !ok {
		packed = n
	}
	return n + packed
}

// ProjectContext projects the keys and values of context, [batch, tk,
// ContextDim] row-major, for [Layer.ForwardContext]. Like
// [Layer.ForwardInto], it needs a layer with ValueDim = ContextDim; use
// [Layer.ProjectKV] otherwise. The context is only read, and not kept.
//
// The projection runs the same products, split into the same row chunks, as
// the one inside ForwardInto, so it holds the same bits.
func (l *Layer) ProjectContext(context []float32, batch, tk int) (*Context, error) {
	if err := l.usable(); err != nil {
		return nil, err
	}
	c := &l.cfg
	if c.ValueDim != c.ContextDim {
		return nil, fmt.Errorf("%w: ValueDim=%d ≠ ContextDim=%d: pass keys and values to ProjectKV",
			ErrShape, c.ValueDim, c.ContextDim)
	}
	return l.project(context, context, batch, tk)
}

// ProjectKV is [Layer.ProjectContext] with keys and values projected from
// two sources, as in [Layer.ForwardQKV]: key is [batch, tk, ContextDim] and
// value [batch, tk, ValueDim]. Passing the same slice twice is
// ProjectContext.
func (l *Layer) ProjectKV(key, value []float32, batch, tk int) (*Context, error) {
	if err := l.usable(); err != nil {
		return nil, err
	}
	return l.project(key, value, batch, tk)
}

// project validates and runs ProjectContext and ProjectKV.
func (l *Layer) project(key, value []float32, batch, tk int) (*Context, error) {
	c := &l.cfg
	if err := l.checkShape(Shape{Batch: batch, Tk: tk}); err != nil {
		return nil, err
	}
	if err := checkLen("key input", key, batch, tk, c.ContextDim); err != nil {
		return nil, err
	}
	if err := checkLen("value input", value, batch, tk, c.ValueDim); err != nil {
		return nil, err
	}
	if err := l.finiteInputs(nil, key, value, Shape{Batch: batch, Tk: tk}); err != nil {
		return nil, err
	}
	ldkv := c.KVHeads * (c.HeadDim + c.ValueHeadDim)
	n, ok := mul3(batch, tk, ldkv)
	if !ok {
		return nil, fmt.Errorf("%w: projected context [%d, %d, %d] overflows", ErrShape, batch, tk, ldkv)
	}
	// The keys and values, and the packed ones where the backend packs them.
	if err := checkMem("the projected context", l.contextLen(batch, tk)); err != nil {
		return nil, err
	}
	ctx := &Context{layer: l, batch: batch, tk: tk, kv: make([]float32, n)}
	if n == 0 {
		return ctx, nil
	}
	p := l.getPipeline()
	defer l.putPipeline(p)
	p.run(l, &call{xk: key, xv: value, kvOut: ctx.kv, kvRows: batch * tk, kPeriod: tk})
	// Pack the keys once for the attention core, where the backend would
	// otherwise pack every key block of every call (the AVX-512 kernel),
	// and the values too for one that packs them (BF16).
	nk := c.KVHeads * c.HeadDim
	a := blas.Attention{Batch: batch, KVHeads: c.KVHeads, Tk: tk, DK: c.HeadDim, DV: c.ValueHeadDim,
		K: ctx.kv, LDK: ldkv, BatchK: tk * ldkv, V: ctx.kv[nk:], LDV: ldkv, BatchV: tk * ldkv}
	if l.backend.PackKeys(&a) {
		ctx.kt = a.KT
	}
	return ctx, nil
}

// ForwardContext computes y = Layer(x, context) like [Layer.ForwardInto],
// with the keys and values of the context projected already in ctx: the
// shape is {ctx.Batch(), tq, ctx.Tk()}, x holds Batch·tq·QueryDim values and
// y Batch·tq·OutDim. m is as for ForwardInto, over ctx.Tk() keys.
//
// The result equals ForwardInto's on the context ctx was projected from, bit
// for bit, when ForwardInto projects that context too: the same products
// run over the same row chunks, and the same attention core over keys and
// values in the same layout. A call whose shape ForwardInto runs in the
// absorbed form (few query rows over many context rows, see [WithAbsorb])
// agrees to float32 rounding only; a layer built WithAbsorb(false) always
// projects. ctx must come from
// this layer (not from another one with the same shapes), or the call
// returns an error wrapping [ErrShape].
//
// y must not overlap x or ctx. After the pool has warmed up to the shape,
// ForwardContext allocates nothing; it is safe for concurrent use, with the
// same ctx or others.
func (l *Layer) ForwardContext(y, x []float32, ctx *Context, tq int, m *Mask) error {
	if err := l.usable(); err != nil {
		return err
	}
	c := &l.cfg
	if ctx == nil {
		return fmt.Errorf("%w: nil *Context", ErrShape)
	}
	if ctx.layer != l {
		return fmt.Errorf("%w: the Context was projected by another layer", ErrShape)
	}
	s := Shape{Batch: ctx.batch, Tq: tq, Tk: ctx.tk}
	if err := l.checkShape(s); err != nil {
		return err
	}
	if err := checkLen("y", y, s.Batch, tq, c.OutDim); err != nil {
		return err
	}
	if err := checkLen("query input", x, s.Batch, tq, c.QueryDim); err != nil {
		return err
	}
	if err := checkOverlap("y", y, "query input", x); err != nil {
		return err
	}
	if err := l.finiteInputs(x, nil, nil, s); err != nil {
		return err
	}
	if s.Batch == 0 || tq == 0 {
		return nil
	}
	p := l.getPipeline()
	defer l.putPipeline(p)
	if err := p.ws.setMask(&p.att, m, s.Batch, c.Heads, tq, s.Tk); err != nil {
		return err
	}
	ldkv := c.KVHeads * (c.HeadDim + c.ValueHeadDim)
	p.run(l, &call{y: y, x: x, rows: s.Batch * tq, s: s, keys: keys{kv: ctx.kv, stride: s.Tk * ldkv, kt: ctx.kt},
		qOff:  p.att.CausalOffset, // RoPE: the queries where the mask places them (WithRoPE)
		pairs: visiblePairs(&p.att, Shape{Batch: s.Batch, Tq: tq, Tk: s.Tk})})
	return nil
}

// KVCache holds the projected keys and values of the positions a
// self-attention layer has seen so far, for incremental decoding with
// [Layer.ForwardStep]: each step projects only its new positions, appends
// them, and attends over everything cached.
//
// A KVCache has a fixed capacity, chosen at [Layer.NewKVCache], and never
// grows: its memory, Batch·Cap·KVHeads·(HeadDim+ValueHeadDim) values, is
// allocated once, steps allocate nothing, and a step that does not fit is an
// error that leaves the cache as it was. A BF16 layer's cache on the C core
// holds the keys and values again rounded to bf16 and packed for the core
// (half as much again, head sizes padded to 32), each step packing the
// positions it appends, so that steps read the packed ones. [KVCache.Reset] empties it for the
// next sequence, [KVCache.Truncate] drops the last positions.
//
// A KVCache belongs to the layer that made it. It is not for concurrent
// use: a step writes it. Give each decoding stream its own. A step that
// finds another step of the same cache under way returns an error wrapping
// [ErrBusy] and changes nothing, so that misuse never corrupts the cache.
type KVCache struct {
	busy          atomic.Bool // a step is running
	layer         *Layer
	batch, cap, n int
	ldkv          int       // nk+nv, the values of one position
	stride        int       // cap·ldkv, the values of one sequence
	kv            []float32 // [batch, cap, ldkv]: the keys, then the values of each position
	// packed holds the keys and values again as the backend packs them
	// for its attention core, laid out for cap positions and packed as
	// steps append them (blas.KeyAppender: a BF16 layer on the C core),
	// nil where the backend reads kv as it is. kt views it; ktKeys is
	// its keys alone, for a cache whose values from position bad on
	// hold a non-finite value (bad = cap: none), which the core packs
	// per panel from kv (the non-finite rule).
	packed     []float32
	kt, ktKeys blas.Packed
	bad        int
}

// NewKVCache returns an empty cache for batch sequences of up to capacity
// positions each. The layer must be able to run self-attention: ContextDim =
// ValueDim = QueryDim, or the error wraps [ErrShape].
func (l *Layer) NewKVCache(batch, capacity int) (*KVCache, error) {
	if err := l.usable(); err != nil {
		return nil, err
	}
	c := &l.cfg
	if c.ContextDim != c.QueryDim || c.ValueDim != c.QueryDim {
		return nil, fmt.Errorf("%w: a KV cache is for self-attention, but QueryDim=%d, ContextDim=%d, ValueDim=%d differ",
			ErrShape, c.QueryDim, c.ContextDim, c.ValueDim)
	}
	if err := l.checkShape(Shape{Batch: batch, Tk: capacity}); err != nil {
		return nil, err
	}
	ldkv := c.KVHeads * (c.HeadDim + c.ValueHeadDim)
	n, ok := mul3(batch, capacity, ldkv)
	if !ok {
		return nil, fmt.Errorf("%w: KV cache [%d, %d, %d] overflows", ErrShape, batch, capacity, ldkv)
	}
	kv := &KVCache{layer: l, batch: batch, cap: capacity, ldkv: ldkv, stride: capacity * ldkv, bad: capacity}
	ap, _ := l.backend.(blas.KeyAppender)
	var packed float64
	if ap != nil && n > 0 {
		a := kv.attention(capacity)
		if ap.KeyParts(&a) > 0 {
			packed, _ = blas.PackedKeysLen(l.backend, batch*c.KVHeads, capacity, c.HeadDim, c.ValueHeadDim)
		}
	}
	if err := checkMem(fmt.Sprintf("a KV cache of [%d, %d, %d]", batch, capacity, ldkv), float64(n)+packed); err != nil {
		return nil, err
	}
	kv.kv = make([]float32, n)
	if packed > 0 {
		kv.packed = make([]float32, int(packed))
		a := kv.attention(capacity)
		kv.kt = ap.PackedKeysIn(&a, kv.packed, true)
		kv.ktKeys = ap.PackedKeysIn(&a, kv.packed, false)
	}
	return kv, nil
}

// attention describes the cache's first tk positions as the keys and
// values of an attention (the fields blas.KeyPacker reads).
func (kv *KVCache) attention(tk int) blas.Attention {
	c := &kv.layer.cfg
	nk := c.KVHeads * c.HeadDim
	return blas.Attention{Batch: kv.batch, KVHeads: c.KVHeads, Tk: tk, DK: c.HeadDim, DV: c.ValueHeadDim,
		K: kv.kv, LDK: kv.ldkv, BatchK: kv.stride, V: kv.kv[min(nk, len(kv.kv)):], LDV: kv.ldkv, BatchV: kv.stride}
}

// Len returns the number of positions cached, the same for every sequence
// (0 for a nil cache).
func (kv *KVCache) Len() int {
	if kv == nil {
		return 0
	}
	return kv.n
}

// Cap returns the number of positions the cache can hold (0 for a nil
// cache).
func (kv *KVCache) Cap() int {
	if kv == nil {
		return 0
	}
	return kv.cap
}

// Batch returns the number of sequences of the cache (0 for a nil cache).
func (kv *KVCache) Batch() int {
	if kv == nil {
		return 0
	}
	return kv.batch
}

// Reset empties the cache, keeping its memory; on a nil cache it does
// nothing. Like Truncate, it must not run during a step.
func (kv *KVCache) Reset() {
	if kv != nil {
		kv.n, kv.bad = 0, kv.cap
	}
}

// Truncate keeps the first n positions of every sequence and forgets the
// rest, as after rejected speculative tokens; n must be in [0, Len()], or
// the error wraps [ErrShape] and the cache is unchanged. During a step it
// returns an error wrapping [ErrBusy].
func (kv *KVCache) Truncate(n int) error {
	if kv == nil {
		return fmt.Errorf("%w: Truncate(%d) of a nil *KVCache", ErrShape, n)
	}
	if !kv.busy.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: Truncate(%d) during a ForwardStep", ErrBusy, n)
	}
	defer kv.busy.Store(false)
	if n < 0 || n > kv.n {
		return fmt.Errorf("%w: Truncate(%d) of a KV cache holding %d positions", ErrShape, n, kv.n)
	}
	kv.n = n
	if kv.bad >= n {
		kv.bad = kv.cap
	}
	return nil
}

// ForwardStep runs one decoding step of a self-attention layer: x holds the
// tq new positions of each sequence, [Batch, tq, QueryDim] with the cache's
// Batch, and y gets their outputs, [Batch, tq, OutDim]. The step projects
// the keys and values of x, appends them to kv, and lets the query at
// position p = kv.Len()+i (i < tq) attend over the cached positions 0 … p:
// the causal mask is implied. Steps of one position each, or of several (a
// prompt at once, then one token at a time), give a sequence the same
// outputs as one causal [Layer.ForwardInto] over it, to float32 rounding:
// not bit for bit, since the products run over other row counts.
//
// m applies on top of the causal mask, over Tk = kv.Len()+tq keys: KeyLen,
// Keep and Bias as in [Mask], with Keep and Bias rows for the tq new
// queries; m.Causal and m.CausalLowerRight change nothing; m.Window and
// m.ALiBi count from each query's cache position p = kv.Len()+i.
//
// A step that would exceed the capacity returns an error wrapping
// [ErrShape], like any shape error; on error the cache is unchanged. After
// the pool has warmed up to the shape, ForwardStep allocates nothing.
func (l *Layer) ForwardStep(y, x []float32, kv *KVCache, tq int, m *Mask) error {
	if err := l.usable(); err != nil {
		return err
	}
	c := &l.cfg
	if kv == nil {
		return fmt.Errorf("%w: nil *KVCache", ErrShape)
	}
	if kv.layer != l {
		return fmt.Errorf("%w: the KVCache was made by another layer", ErrShape)
	}
	if !kv.busy.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: another ForwardStep is using this KVCache", ErrBusy)
	}
	defer kv.busy.Store(false)
	if tq < 0 {
		return fmt.Errorf("%w: negative step Tq=%d", ErrShape, tq)
	}
	if tq > kv.cap-kv.n {
		return fmt.Errorf("%w: a step of %d positions does not fit a KV cache holding %d of %d",
			ErrShape, tq, kv.n, kv.cap)
	}
	b, tk := kv.batch, kv.n+tq
	if err := checkLen("y", y, b, tq, c.OutDim); err != nil {
		return err
	}
	if err := checkLen("query input", x, b, tq, c.QueryDim); err != nil {
		return err
	}
	if err := checkOverlap("y", y, "query input", x); err != nil {
		return err
	}
	if err := l.finiteInputs(x, nil, nil, Shape{Batch: b, Tq: tq}); err != nil {
		return err
	}
	if b == 0 || tq == 0 {
		return nil
	}
	p := l.getPipeline()
	defer l.putPipeline(p)
	if err := p.ws.setMask(&p.att, m, b, c.Heads, tq, tk); err != nil {
		return err
	}
	p.att.Causal, p.att.CausalOffset = true, kv.n
	// Project the step's queries, keys and values, append the keys and
	// values to the cache, attend over everything cached.
	rows := b * tq
	p.run(l, &call{y: y, x: x, rows: rows, s: Shape{Batch: b, Tq: tq, Tk: tk}, xk: x, xv: x, kvRows: rows,
		qOff: kv.n, kOff: kv.n, kPeriod: tq,
		keys: keys{kv: kv.kv, stride: kv.stride}, cache: kv, pairs: visiblePairs(&p.att, Shape{Batch: b, Tq: tq, Tk: tk})})
	return nil
}

// append appends the projected keys and values of a step, tq positions of
// each sequence (kv holds Batch·tq rows), to the cache, packs them where
// the cache holds packed keys, and returns the keys of the step's
// attention: every position cached.
func (kv *KVCache) append(rows []float32) keys {
	n := len(rows) / kv.batch
	for i := range kv.batch {
		copy(kv.kv[i*kv.stride+kv.n*kv.ldkv:][:n], rows[i*n:][:n])
	}
	n0 := kv.n
	kv.n += n / kv.ldkv
	k := keys{kv: kv.kv, stride: kv.stride}
	if kv.packed == nil {
		return k
	}
	a := kv.attention(kv.n)
	if !kv.layer.backend.(blas.KeyAppender).PackKeysSpan(&a, kv.cap, n0, kv.n, kv.packed) {
		kv.bad = min(kv.bad, n0/blas.BF16KeyStep*blas.BF16KeyStep) // the span packed from its group's start
	}
	pk := kv.kt
	if kv.bad < kv.n {
		pk = kv.ktKeys
	}
	k.kt, _ = pk.Cols(0, kv.n)
	return k
}
