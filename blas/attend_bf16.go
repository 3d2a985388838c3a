//go:build cgo && !purego

package blas

/*
#cgo noescape xattn_attend_bf16
#cgo nocallback xattn_attend_bf16
#cgo noescape xattn_pack_bf16
#cgo nocallback xattn_pack_bf16
#cgo noescape xattn_amx_probe
#cgo nocallback xattn_amx_probe
#cgo noescape xattn_round_bf16
#cgo nocallback xattn_round_bf16

#include "attend_bf16.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// BF16 is the BF16 attention core of an OpenBLAS backend: blas.Attention's
// whole contract (GQA, every mask kind, Stats, the non-finite rule) with Q
// and K rounded to bf16 (as [github.com/xattn/xattn/pure.BF16Bits] rounds:
// nearest even, subnormals flushed to zero) for Q·Kᵀ, FP32 scores, the
// FP32 softmax statistics and exponentials, the probabilities rounded to
// bf16 for P·V with V in bf16, FP32 accumulation and outputs. Head sizes
// of any width are padded to 32 internally. It runs the product kernel of
// one [BF16Kernel] (the rounded ones share one portable C kernel): every
// kernel computes the same roundings; they differ in summation order only.
// Safe for concurrent use.
type BF16 struct {
	k  *kernels // the row pass (and its table) of the backend
	kn BF16Kernel
}

// NewBF16 returns the BF16 core on the row pass of be, an OpenBLAS
// backend, with the product kernel of kn (one this CPU runs: see
// [BF16KernelNamed] and [BF16Default]). It fails, naming them, on a
// backend that is not OpenBLAS or the pure kernel, which has no C core.
func NewBF16(be Backend, kn BF16Kernel) (*BF16, error) {
	o, ok := be.(openBLAS)
	if !ok || o.k == nil {
		return nil, fmt.Errorf("blas: the BF16 core runs on an OpenBLAS backend, not %q", be.Name())
	}
	if kn.id == bf16Pure {
		return nil, fmt.Errorf("blas: the BF16 core has no %q kernel on an OpenBLAS backend", kn.Name())
	}
	return &BF16{k: o.k, kn: kn}, nil
}

// Kernel returns the BF16 kernel of x.
func (x *BF16) Kernel() BF16Kernel { return x.kn }

// BF16KV holds the keys and values of an [Attention] rounded to bf16
// and packed for the BF16 core's products, made once by [BF16.Pack] for
// keys and values attended to many times (a cached context), then read by
// [BF16.Attend] in place of packing each key panel of each task. Read
// only; safe to share.
type BF16KV struct {
	k, v                         []uint16
	kBatch, kHead, vBatch, vHead int
	batch, kvHeads, tk, dk, dv   int
}

// packedLen is the length, in float32 values (two bf16 each), of what Pack
// makes for items heads of tk keys of depth dk and values of depth dv: keys
// in groups of 32, depths padded to 32 (bf16Head).
func (*BF16) packedLen(items, tk, dk, dv int) float64 {
	return float64(items) * float64(bf16Head(tk, dk)+bf16Head(tk, dv)) / 2
}

// bf16Head is the bf16 values Pack holds for one head of tk keys (or
// values) of depth d: keys in groups of 32, the depth padded to 32.
func bf16Head(tk, d int) int { return ceilDiv(tk, 32) * 32 * ceilDiv(d, 32) * 32 }

// Pack returns K and V of a (over Batch, KVHeads, Tk, DK and DV) rounded
// and packed for [BF16.Attend]; values with a non-finite element are left
// unpacked (Attend then packs them per panel, to keep the non-finite rule).
func (x *BF16) Pack(a *Attention) *BF16KV {
	x.checkPack(a)
	pk := new(BF16KV)
	x.layoutKV(a, pk, nil)
	finite := true
	for i := range x.keyParts(a) {
		finite = x.packPart(a, pk, i) && finite
	}
	if !finite {
		pk.dropValues()
	}
	return pk
}

// checkPack panics, with the messages of Attend, where a's keys and values
// cannot be packed: negative or huge sizes, K or V too short.
func (x *BF16) checkPack(a *Attention) {
	if a.Batch < 0 || a.KVHeads < 0 || a.Tk < 0 || a.DK < 0 || a.DV < 0 {
		panic(errDim)
	}
	if a.Batch > maxC || a.KVHeads > maxC || a.Tk > maxC || a.DK > maxC || a.DV > maxC || a.LDK > maxC || a.LDV > maxC {
		panic(errTooLarge)
	}
	if a.Batch == 0 || a.KVHeads == 0 || a.Tk == 0 {
		return
	}
	if a.DK > 0 && (a.LDK < a.KVHeads*a.DK || a.BatchK < 0 || need(a.Batch, a.BatchK, a.Tk, a.LDK, a.KVHeads*a.DK) > len(a.K)) {
		panic(errShortK)
	}
	if a.DV > 0 && (a.LDV < a.KVHeads*a.DV || a.BatchV < 0 || need(a.Batch, a.BatchV, a.Tk, a.LDV, a.KVHeads*a.DV) > len(a.V)) {
		panic(errShortV)
	}
}

// layoutKV sets pk to the shape of a's packed keys and values, held in
// buf (bf16 values, two to a float32, keys first) or, where buf is nil, in
// new memory.
func (x *BF16) layoutKV(a *Attention, pk *BF16KV, buf []uint16) {
	*pk = BF16KV{batch: a.Batch, kvHeads: a.KVHeads, tk: a.Tk, dk: a.DK, dv: a.DV}
	if a.Batch == 0 || a.KVHeads == 0 || a.Tk == 0 {
		return
	}
	take := func(n int) []uint16 {
		if buf == nil {
			return make([]uint16, n)
		}
		s := buf[:n:n]
		buf = buf[n:]
		return s
	}
	if a.DK > 0 {
		pk.kHead = bf16Head(a.Tk, a.DK)
		pk.kBatch = a.KVHeads * pk.kHead
		pk.k = take(a.Batch * pk.kBatch)
	}
	if a.DV > 0 {
		pk.vHead = bf16Head(a.Tk, a.DV)
		pk.vBatch = a.KVHeads * pk.vHead
		pk.v = take(a.Batch * pk.vBatch)
	}
}

// dropValues leaves pk's values unpacked (a value was not finite).
func (pk *BF16KV) dropValues() { pk.v, pk.vBatch, pk.vHead = nil, 0, 0 }

// packSpan is the keys a part of the packing takes, of every key/value
// head of one batch: enough for a part to be worth a thread's start, few
// enough for a long sequence to split over many threads.
const packSpan = 512

// keyParts is the parts packPart packs a's keys and values in: each
// batch's keys in spans of packSpan.
func (x *BF16) keyParts(a *Attention) int {
	if a.Batch <= 0 || a.KVHeads <= 0 || a.Tk <= 0 || (a.DK <= 0 && a.DV <= 0) {
		return 0
	}
	return a.Batch * ceilDiv(a.Tk, packSpan)
}

// packPart packs part i of keyParts(a) into pk (laid out by layoutKV) and
// reports whether its values were finite.
func (x *BF16) packPart(a *Attention, pk *BF16KV, i int) bool {
	per := ceilDiv(a.Tk, packSpan)
	b, j0 := i/per, i%per*packSpan
	return x.packRange(a, pk, b, j0, min(j0+packSpan, a.Tk))
}

// packKeysSpan packs keys [j0, j1) of a, of a.Tk keys so far, into buf
// laid out for capacity keys, from the start of j0's group of bf16Rows
// keys (KeyAppender.PackKeysSpan), and reports whether their values were
// finite.
func (x *BF16) packKeysSpan(a *Attention, capacity, j0, j1 int, buf []float32) bool {
	if j0 < 0 || j0 > j1 || j1 > a.Tk || a.Tk > capacity {
		panic(fmt.Sprintf("blas: PackKeysSpan: keys [%d, %d) of %d, capacity %d", j0, j1, a.Tk, capacity))
	}
	c := *a
	c.Tk = capacity
	var pk BF16KV
	x.layoutKV(&c, &pk, x.keysBuf(&c, buf))
	if j0 == j1 {
		return true
	}
	finite := true
	for b := range a.Batch {
		finite = x.packRange(a, &pk, b, j0/bf16Rows*bf16Rows, j1) && finite
	}
	return finite
}

// packRange packs keys [j0, j1) of batch b of a, j0 a multiple of
// bf16Rows, into pk as groups of bf16Rows keys (the last one's keys past
// a.Tk zero), and reports whether their values were finite.
func (x *BF16) packRange(a *Attention, pk *BF16KV, b, j0, j1 int) bool {
	var kp, vp *C.uint16_t
	var k, v *C.float
	if pk.k != nil {
		kp, k = u16ptr(pk.k[b*pk.kBatch:]), fptr(a.K[b*a.BatchK:])
	}
	if pk.v != nil {
		vp, v = u16ptr(pk.v[b*pk.vBatch:]), fptr(a.V[b*a.BatchV:])
	}
	return C.xattn_pack_bf16(bf16C[x.kn.id], C.int(a.Tk), C.int(j0), C.int(j1), C.int(a.KVHeads), C.int(a.DK),
		C.int(a.DV), k, C.int64_t(a.LDK), v, C.int64_t(a.LDV), kp, C.int64_t(pk.kHead), vp, C.int64_t(pk.vHead)) != 0
}

func u16ptr(s []uint16) *C.uint16_t {
	if len(s) == 0 {
		return nil
	}
	return (*C.uint16_t)(unsafe.Pointer(&s[0]))
}

const errBF16KV = "blas: BF16KV was packed for another shape than the Attention's"

// Attend runs tasks [t0, t1) of a in BF16, using scratch, of length at
// least a.ScratchLenBF16(), as its working memory; pk, if not nil, holds
// a's keys and values packed by [BF16.Pack] (a.KT is not read). It checks
// a as [Backend.Attend] does and panics with the same messages.
func (x *BF16) Attend(a *Attention, pk *BF16KV, t0, t1 int, scratch []float32) {
	if !checkAttention(a, t0, t1, scratch) {
		return
	}
	if len(scratch) < a.ScratchLenBF16() {
		panic(errScratch)
	}
	var cp C.xattn_bf16_packed
	var cpp *C.xattn_bf16_packed
	if pk != nil {
		if pk.batch != a.Batch || pk.kvHeads != a.KVHeads || pk.tk != a.Tk || pk.dk != a.DK || pk.dv != a.DV {
			panic(errBF16KV)
		}
		cp = C.xattn_bf16_packed{k: u16ptr(pk.k), v: u16ptr(pk.v),
			k_batch: C.int64_t(pk.kBatch), k_head: C.int64_t(pk.kHead), v_batch: C.int64_t(pk.vBatch), v_head: C.int64_t(pk.vHead)}
		cpp = &cp
	}
	p := cAttentionInts(a)
	lay := a.bf16Scratch()
	l := C.xattn_bf16_layout{lds: C.int64_t(lay.lds), ldp: C.int64_t(lay.ldp), s: C.int64_t(lay.s), p: C.int64_t(lay.p),
		kp: C.int64_t(lay.kp), vp: C.int64_t(lay.vp), q: C.int64_t(lay.q), o: C.int64_t(lay.o), st: C.int64_t(lay.st)}
	var tasks [attendTasks]C.xattn_task // on the stack: xattn_attend_bf16 does not keep it
	for t := t0; t < t1; {
		n := fillTasks(a, t, t1, &tasks)
		C.xattn_attend_bf16(x.k.c, bf16C[x.kn.id], &p, &l, fptr(a.Q), fptr(a.K), fptr(a.V), fptr(a.O),
			bptr(a.Keep), fptr(a.Bias), fptr(a.ALiBi), cpp, fptr(a.Stats), fptr(scratch), &tasks[0], C.int(n))
		t += n
	}
}

// amxProbe runs n steps of four independent TDPBF16PS chains on loaded
// tiles, 4·16·16·32·2 flops a step (xbench's AMX probe): for benchmarks
// on a CPU whose AMX kernel is usable.
func amxProbe(n int64) { C.xattn_amx_probe(C.int64_t(n)) }

// roundBF16 sets dst[i] to src[i] rounded as the core rounds its operands.
func roundBF16(dst, src []float32) {
	n := min(len(dst), len(src))
	if n > 0 {
		C.xattn_round_bf16(C.int(n), fptr(src), fptr(dst))
	}
}

// bytes is the memory kv's values take.
func (kv *BF16KV) bytes() int { return 2 * (len(kv.k) + len(kv.v)) }

// heads is the key/value heads of a batch of kv: its items per batch.
func (kv *BF16KV) heads() int { return kv.kvHeads }

// packKeys returns the keys and values of a packed by x (Pack) as a
// Packed of layoutBF16KV: a BF16 backend's PackKeys.
func (x *BF16) packKeys(a *Attention) Packed {
	return Packed{layout: layoutBF16KV, kv: *x.Pack(a), n: a.Tk, k: a.DK, items: a.Batch * a.KVHeads}
}

// attendKT runs Attend with a.KT's keys and values where a.KT is of
// layoutBF16KV (a view of them: whole batches from item off, keys from
// col), else packing each panel.
func (x *BF16) attendKT(a *Attention, t0, t1 int, scratch []float32) {
	p := a.KT
	if p.layout != layoutBF16KV {
		x.Attend(a, nil, t0, t1, scratch)
		return
	}
	kv := p.kv // the view, on the stack
	b0 := p.off / kv.kvHeads
	kv.batch, kv.tk = p.items/kv.kvHeads, p.n
	if kv.k != nil {
		kv.k = kv.k[b0*kv.kBatch+p.col*ceilDiv(kv.dk, bf16Rows)*bf16Rows:]
	}
	if kv.v != nil {
		kv.v = kv.v[b0*kv.vBatch+p.col*ceilDiv(kv.dv, bf16Rows)*bf16Rows:]
	}
	x.Attend(a, &kv, t0, t1, scratch)
}

// packKeysPart packs part i of keyParts(a) into buf as packKeysIn lays
// it out, and reports whether its values were finite.
func (x *BF16) packKeysPart(a *Attention, buf []float32, i int) bool {
	if i < 0 || i >= x.keyParts(a) {
		panic(errKeyPart)
	}
	var pk BF16KV
	x.layoutKV(a, &pk, x.keysBuf(a, buf))
	return x.packPart(a, &pk, i)
}

// packKeysIn returns the keys and values packed in buf by every part of
// packKeysPart as a Packed of layoutBF16KV, its values left out unless
// finite.
func (x *BF16) packKeysIn(a *Attention, buf []float32, finite bool) Packed {
	var pk BF16KV
	x.layoutKV(a, &pk, x.keysBuf(a, buf))
	if !finite {
		pk.dropValues()
	}
	return Packed{layout: layoutBF16KV, kv: pk, n: a.Tk, k: a.DK, items: a.Batch * a.KVHeads}
}

// keysBuf checks a for packing and returns buf as the bf16 values of its
// packed keys and values, panicking where buf is shorter than packedLen.
func (x *BF16) keysBuf(a *Attention, buf []float32) []uint16 {
	x.checkPack(a)
	n := x.packedLen(a.Batch*a.KVHeads, a.Tk, a.DK, a.DV)
	if float64(len(buf)) < n {
		panic(errKeysBuf)
	}
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&buf[0])), 2*int(n))
}
