package blas

import (
	"fmt"

	"github.com/xattn/xattn/pure"
)

// WithBF16 returns be computing in BF16 with the kernel kn: a backend of
// the same name whose products with packed weights and whose attention core
// round their operands to bf16 (as [github.com/xattn/xattn/pure.BF16Bits]
// rounds) and accumulate in float32:
//
//   - Pack returns the weights rounded to bf16 in the pair-interleaved
//     panels of [BF16Packed] (half the memory of float32), and Sgemm runs a
//     product whose Batch.Packed is such a matrix on kn ([BF16Kernel.GemmBF16]:
//     A rounded on its way in, float32 outputs). B may then be nil: the
//     float32 weights need not be kept. A product without packed B runs on
//     be in float32.
//   - Attend runs the BF16 attention core: Q and K rounded for Q·Kᵀ, FP32
//     scores, softmax statistics and exponentials, the probabilities
//     rounded for P·V with V rounded; float32 outputs. On an OpenBLAS be
//     with a kernel other than pure it is [BF16] (C, AMX or AVX512-BF16
//     where the CPU has them); otherwise the same roundings in Go with
//     float32 arithmetic. Its scratch is the backend's ScratchLen,
//     longer than [Attention.ScratchLen].
//   - Steps are the BF16 layout's: rows in the 32 of the core's and AMX
//     kernel's blocks, columns of packed weights in panels of [BF16Panel].
//     The keys and values of PackKeys have views at groups of
//     [BF16KeyStep] = 32 keys only ([Packed.Cols]).
//
// The pure backend runs the pure kernel whatever kn is, so that it stays
// pure Go. Every kernel computes the same function (the same roundings, the
// sums in another order). Kernels names the kernel: "…,bf16=amx".
func WithBF16(be Backend, kn BF16Kernel) (Backend, error) {
	switch be.(type) {
	case pureBackend:
		return bf16Backend{base: be, kn: BF16Kernel{bf16Pure}}, nil
	case bf16Backend:
		return nil, fmt.Errorf("blas: WithBF16: backend %s computes in BF16 already", Kernels(be))
	}
	b := bf16Backend{base: be, kn: kn}
	if kn.id != bf16Pure {
		core, err := NewBF16(be, kn)
		if err != nil {
			return nil, fmt.Errorf("blas: WithBF16: %w", err)
		}
		b.core = core
	}
	return b, nil
}

// BF16KernelOf returns the BF16 kernel of a backend made by [WithBF16], and
// false for any other backend.
func BF16KernelOf(be Backend) (BF16Kernel, bool) {
	b, ok := be.(bf16Backend)
	return b.kn, ok
}

// bf16Backend is a backend of WithBF16.
type bf16Backend struct {
	base Backend
	kn   BF16Kernel
	core *BF16 // nil: the Go core (attendRounded)
}

func (b bf16Backend) Name() string { return b.base.Name() }

func (b bf16Backend) kernels() string { return Kernels(b.base) + ",bf16=" + b.kn.Name() }

// Pack returns w rounded to bf16 and packed (layoutBF16).
func (b bf16Backend) Pack(w []float32, n, k int) Packed {
	checkPack(w, n, k)
	if n == 0 || k == 0 {
		return Packed{}
	}
	bf, err := PackBF16Trans(w, n, k)
	if err != nil {
		panic("blas: " + err.Error()) // checkPack checked the sizes
	}
	return bf16Weights(bf)
}

// PackFunc is [Backend.Pack] for the n×k matrix w given one element at a
// time, at(r, c) = w[r·k+c], on a backend whose packed weights replace w
// (a BF16 backend of [WithBF16]): it returns what be.Pack(w, n, k) would,
// the same bits, without a float32 copy of w (for weights that load as bf16
// or float16), and true. Every other backend's products read w itself, so
// there it returns the zero Packed and false without calling at. It panics
// on a negative or too large size or a nil at, as Pack does on its sizes.
func PackFunc(be Backend, n, k int, at func(r, c int) float32) (Packed, bool) {
	if _, ok := be.(bf16Backend); !ok {
		return Packed{}, false
	}
	switch {
	case n < 0 || k < 0:
		panic(errDim)
	case n > maxC || k > maxC:
		panic(errTooLarge)
	case at == nil:
		panic("blas: PackFunc: nil element function")
	}
	if n == 0 || k == 0 {
		return Packed{}, true
	}
	bf, err := PackBF16Func(k, n, func(r, j int) float32 { return at(j, r) })
	if err != nil {
		panic("blas: " + err.Error()) // checkPack checked the sizes
	}
	return bf16Weights(bf), true
}

// bf16Weights wraps packed bf16 weights as a Packed (layoutBF16).
func bf16Weights(bf BF16Packed) Packed {
	return Packed{layout: layoutBF16, bf: bf, n: bf.n, k: bf.k, items: 1, panel: BF16Panel}
}

// Steps returns the BF16 cut: blocks of bf16Rows rows, panels of BF16Panel columns.
func (bf16Backend) Steps() (rows, cols int) { return bf16Rows, BF16Panel }

const errBF16Batch = "blas: a product with bf16 packed B takes one item, TransB and LDB = K"

// Sgemm runs a product whose Packed is bf16 on the kernel, any other on the
// base backend.
func (b bf16Backend) Sgemm(g *Batch) {
	if g.Packed.layout != layoutBF16 {
		b.base.Sgemm(g)
		return
	}
	if g.Count != 1 || !g.TransB || g.LDB != g.K {
		panic(errBF16Batch)
	}
	if g.B != nil && len(g.B) < g.N*g.K {
		panic(errShortB)
	}
	if err := b.kn.GemmBF16(g.M, g.N, g.K, g.Alpha, g.A, g.LDA, g.Packed.bf, g.Beta, g.C, g.LDC, g.Bias); err != nil {
		panic(err.Error())
	}
}

func (b bf16Backend) SoftmaxRows(r *Rows) { b.base.SoftmaxRows(r) }

func (b bf16Backend) ScaleRows(m, n int, c []float32, ldc int, f []float32) {
	b.base.ScaleRows(m, n, c, ldc, f)
}

// PackKeys sets a.KT to the keys and values of a rounded to bf16 and
// packed for the C core ([BF16.Pack]), which Attend then reads in place of
// packing each key panel of each task; it returns false for the Go core,
// which reads K and V as they are.
func (b bf16Backend) PackKeys(a *Attention) bool {
	if b.core == nil || a.Batch <= 0 || a.KVHeads <= 0 || a.Tk <= 0 {
		return false
	}
	a.KT = b.core.packKeys(a)
	return true
}

// KeyParts returns the parts the C core packs a's keys and values in (each
// batch's in spans of keys), 0 for the Go core, which reads them as they
// are.
func (b bf16Backend) KeyParts(a *Attention) int {
	if b.core == nil {
		return 0
	}
	return b.core.keyParts(a)
}

// PackKeysSpan packs keys [j0, j1) of a for the C core into buf, laid out
// for capacity keys.
func (b bf16Backend) PackKeysSpan(a *Attention, capacity, j0, j1 int, buf []float32) bool {
	if b.core == nil {
		panic(errKeyPart)
	}
	return b.core.packKeysSpan(a, capacity, j0, j1, buf)
}

// PackKeysPart packs part i of a's keys and values for the C core into buf.
func (b bf16Backend) PackKeysPart(a *Attention, buf []float32, i int) bool {
	if b.core == nil {
		panic(errKeyPart)
	}
	return b.core.packKeysPart(a, buf, i)
}

// PackedKeysIn returns the keys and values packed in buf as PackKeys sets
// a.KT.
func (b bf16Backend) PackedKeysIn(a *Attention, buf []float32, finite bool) Packed {
	if b.core == nil {
		return Packed{}
	}
	return b.core.packKeysIn(a, buf, finite)
}

func (b bf16Backend) packedKeysLen(items, tk, dk, dv int) float64 {
	if b.core == nil {
		return 0
	}
	return b.core.packedLen(items, tk, dk, dv)
}

// ScratchLen returns the BF16 core's scratch length: a.ScratchLenBF16() for
// the C core, more than a.ScratchLen() for the Go one.
func (b bf16Backend) ScratchLen(a *Attention) int {
	if b.core != nil {
		return a.ScratchLenBF16()
	}
	return a.roundedScratch().len
}

// Attend runs tasks [t0, t1) of a on the BF16 core, using scratch of at
// least b.ScratchLen(a) values.
func (b bf16Backend) Attend(a *Attention, t0, t1 int, scratch []float32) {
	if b.core != nil {
		b.core.attendKT(a, t0, t1, scratch)
		return
	}
	if !checkAttention(a, t0, t1, scratch) {
		return
	}
	if len(scratch) < a.roundedScratch().len {
		panic(errScratch)
	}
	for t := t0; t < t1; t++ {
		k := a.task(t)
		for h := k.h0; h < k.h0+k.nh; h++ {
			attendRounded(a, &k, h, scratch)
		}
	}
}

// roundedLayout is the scratch of the Go BF16 core: a.scratch()'s, then
// the rounded queries of a head's block (QBlock×DK), and the rounded keys
// (KVBlock×DK) and values (KVBlock×DV) of a key block.
type roundedLayout struct {
	q, k, v, len int
}

func (a *Attention) roundedScratch() roundedLayout {
	var l roundedLayout
	l.q = a.scratch().len
	l.k = l.q + ceilDiv(a.QBlock*a.DK, 16)*16
	l.v = l.k + ceilDiv(a.KVBlock*a.DK, 16)*16
	l.len = l.v + ceilDiv(a.KVBlock*a.DV, 16)*16
	return l
}

// roundInto sets the rows×cols matrix dst (leading dimension cols) to src
// (leading dimension lds) rounded to bf16.
func roundInto(dst, src []float32, rows, cols, lds int) {
	for r := range rows {
		d, s := dst[r*cols:][:cols], src[r*lds:][:cols]
		for j, x := range s {
			d[j] = pure.RoundBF16(x)
		}
	}
}

// attendRounded runs head h of task k as attendHead does, on operands
// rounded to bf16: Q, each key block and value block rounded into the
// scratch, the probabilities rounded in place after the row pass. The
// products of bf16 values are exact in float32, so this is the function
// of the C core (sums in another order).
func attendRounded(a *Attention, k *task, h int, scratch []float32) {
	attendHeadAs(a, k, h, scratch, true)
}
