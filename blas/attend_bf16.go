//go:build cgo && !purego

package blas

/*
#cgo noescape xattn_attend_bf16
#cgo nocallback xattn_attend_bf16
#cgo noescape xattn_pack_bf16
#cgo nocallback xattn_pack_bf16
#cgo noescape xattn_round_bf16
#cgo nocallback xattn_round_bf16
#cgo noescape xattn_bf16_scratch
#cgo nocallback xattn_bf16_scratch

#include "attend_bf16.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/klauspost/cpuid/v2"
)

// bf16Names are the product kernels of the BF16 attention core, in the
// order of shim's XATTN_BF16_* constants, each wider one after the
// narrower.
var bf16Names = [...]string{"rounded", "avx512bf16", "amx"}

// amxPermission asks the operating system, once per process, for the AMX
// tile data state, and reports a refusal; set on Linux.
var amxPermission = func() error { return errors.New("no AMX tile data permission request on this system") }

var (
	bf16Once   sync.Once
	bf16Best   int    // the widest kernel this CPU and OS run
	bf16Reason string // why a wider one is out, for reports
)

// bf16CPU finds, once, the widest BF16 kernel the CPU runs: the only place
// the BF16 core looks at the CPU. AMX needs the tile data permission.
func bf16CPU() (int, string) {
	bf16Once.Do(func() {
		bf16Best = int(C.XATTN_BF16_ROUNDED)
		avx := cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512DQ, cpuid.AVX512BW, cpuid.AVX512VL, cpuid.AVX2, cpuid.FMA3,
			cpuid.AVX512BF16)
		if !avx {
			bf16Reason = "the CPU lacks AVX512-BF16"
			return
		}
		bf16Best = int(C.XATTN_BF16_AVX512BF16)
		if !cpuid.CPU.Supports(cpuid.AMXTILE, cpuid.AMXBF16) {
			bf16Reason = "the CPU lacks AMX-BF16"
			return
		}
		if err := amxPermission(); err != nil {
			bf16Reason = "AMX refused: " + err.Error()
			return
		}
		bf16Best = int(C.XATTN_BF16_AMX)
	})
	return bf16Best, bf16Reason
}

// BF16 is the BF16 attention core of an OpenBLAS backend: blas.Attention's
// whole contract (GQA, every mask kind, Stats, the non-finite rule) with Q
// and K rounded to bf16 (round to nearest even, subnormals flushed to
// zero) for Q·Kᵀ, FP32 scores, the FP32 softmax statistics and
// exponentials, the probabilities rounded to bf16 for P·V with V in bf16,
// FP32 accumulation and outputs. Head sizes of any width are padded to 32
// internally. It runs one product kernel, [BF16Kernels]: every kernel
// computes the same roundings; they differ in summation order only. Safe
// for concurrent use.
type BF16 struct {
	k    *kernels // the row pass (and its table) of the backend
	kind int
}

// BF16Kernels returns the names of the BF16 product kernels this CPU runs,
// widest first: "amx" (TDPBF16PS), "avx512bf16" (VDPBF16PS), "rounded"
// (the same bf16 operands, FP32 FMAs in portable C, everywhere).
func BF16Kernels() []string {
	best, _ := bf16CPU()
	names := slices.Clone(bf16Names[:best+1])
	slices.Reverse(names)
	return names
}

// NewBF16 returns the BF16 core on the row pass of be, an OpenBLAS
// backend, with the product kernel name: one of [BF16Kernels], or "" or
// "best" for the environment variable XATTN_BF16 when it names one the
// CPU runs (read once), else the CPU's widest. It fails, naming the
// kernel, on an unknown name, one the CPU (or the OS: AMX's tile data
// permission) cannot run, or a backend that is not OpenBLAS.
func NewBF16(be Backend, name string) (*BF16, error) {
	o, ok := be.(openBLAS)
	if !ok || o.k == nil {
		return nil, fmt.Errorf("blas: the BF16 core runs on an OpenBLAS backend, not %q", be.Name())
	}
	best, reason := bf16CPU()
	kind := best
	if name == "" || name == "best" {
		if i := slices.Index(bf16Names[:], bf16Env()); i >= 0 && i <= best {
			kind = i
		}
	} else {
		kind = slices.Index(bf16Names[:], name)
		if kind < 0 {
			return nil, fmt.Errorf("blas: unknown BF16 kernel %q: want one of %s", name, strings.Join(bf16Names[:], ", "))
		}
		if kind > best {
			return nil, fmt.Errorf("blas: BF16 kernel %q cannot run here: %s", name, reason)
		}
	}
	return &BF16{k: o.k, kind: kind}, nil
}

var bf16EnvOnce = sync.OnceValue(func() string { return os.Getenv("XATTN_BF16") })

func bf16Env() string { return bf16EnvOnce() }

// Kernel names the product kernel of x.
func (x *BF16) Kernel() string { return bf16Names[x.kind] }

// BF16Packed holds the keys and values of an [Attention] rounded to bf16
// and packed for the BF16 core's products, made once by [BF16.Pack] for
// keys and values attended to many times (a cached context), then read by
// [BF16.Attend] in place of packing each key panel of each task. Read
// only; safe to share.
type BF16Packed struct {
	k, v                         []uint16
	kBatch, kHead, vBatch, vHead int
	batch, kvHeads, tk, dk, dv   int
}

// Pack returns K and V of a (over Batch, KVHeads, Tk, DK and DV) rounded
// and packed for [BF16.Attend]; values with a non-finite element are left
// unpacked (Attend then packs them per panel, to keep the non-finite rule).
func (x *BF16) Pack(a *Attention) *BF16Packed {
	if a.Batch < 0 || a.KVHeads < 0 || a.Tk < 0 || a.DK < 0 || a.DV < 0 {
		panic(errDim)
	}
	if a.Batch > maxC || a.KVHeads > maxC || a.Tk > maxC || a.DK > maxC || a.DV > maxC || a.LDK > maxC || a.LDV > maxC {
		panic(errTooLarge)
	}
	tkp := ceilDiv(a.Tk, 32) * 32
	pk := &BF16Packed{batch: a.Batch, kvHeads: a.KVHeads, tk: a.Tk, dk: a.DK, dv: a.DV}
	if a.Batch == 0 || a.KVHeads == 0 || a.Tk == 0 {
		return pk
	}
	if a.DK > 0 {
		if a.LDK < a.KVHeads*a.DK || a.BatchK < 0 || need(a.Batch, a.BatchK, a.Tk, a.LDK, a.KVHeads*a.DK) > len(a.K) {
			panic(errShortK)
		}
		pk.kHead = tkp * ceilDiv(a.DK, 32) * 32
		pk.kBatch = a.KVHeads * pk.kHead
		pk.k = make([]uint16, a.Batch*pk.kBatch)
	}
	if a.DV > 0 {
		if a.LDV < a.KVHeads*a.DV || a.BatchV < 0 || need(a.Batch, a.BatchV, a.Tk, a.LDV, a.KVHeads*a.DV) > len(a.V) {
			panic(errShortV)
		}
		pk.vHead = tkp * ceilDiv(a.DV, 32) * 32
		pk.vBatch = a.KVHeads * pk.vHead
		pk.v = make([]uint16, a.Batch*pk.vBatch)
	}
	finite := true
	for b := range a.Batch {
		for g := range a.KVHeads {
			var kp, vp *C.uint16_t
			var k, v *C.float
			if pk.k != nil {
				kp, k = u16ptr(pk.k[b*pk.kBatch+g*pk.kHead:]), fptr(a.K[b*a.BatchK+g*a.DK:])
			}
			if pk.v != nil {
				vp, v = u16ptr(pk.v[b*pk.vBatch+g*pk.vHead:]), fptr(a.V[b*a.BatchV+g*a.DV:])
			}
			if C.xattn_pack_bf16(C.int(a.Tk), C.int(a.DK), C.int(a.DV), k, C.int64_t(a.LDK), v, C.int64_t(a.LDV), kp, vp) == 0 {
				finite = false
			}
		}
	}
	if !finite {
		pk.v, pk.vBatch, pk.vHead = nil, 0, 0
	}
	return pk
}

func u16ptr(s []uint16) *C.uint16_t {
	if len(s) == 0 {
		return nil
	}
	return (*C.uint16_t)(unsafe.Pointer(&s[0]))
}

const errBF16Packed = "blas: BF16Packed was packed for another shape than the Attention's"

// Attend runs tasks [t0, t1) of a in BF16, using scratch, of length at
// least a.ScratchLenBF16(), as its working memory; pk, if not nil, holds
// a's keys and values packed by [BF16.Pack] (a.KT is not read). It checks
// a as [Backend.Attend] does and panics with the same messages.
func (x *BF16) Attend(a *Attention, pk *BF16Packed, t0, t1 int, scratch []float32) {
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
			panic(errBF16Packed)
		}
		cp = C.xattn_bf16_packed{k: u16ptr(pk.k), v: u16ptr(pk.v),
			k_batch: C.int64_t(pk.kBatch), k_head: C.int64_t(pk.kHead), v_batch: C.int64_t(pk.vBatch), v_head: C.int64_t(pk.vHead)}
		cpp = &cp
	}
	p := cAttention(a)
	var keyLen *C.int32_t
	if len(a.KeyLen) > 0 {
		keyLen = (*C.int32_t)(unsafe.Pointer(&a.KeyLen[0]))
	}
	C.xattn_attend_bf16(x.k.c, C.int(x.kind), &p, fptr(a.Q), fptr(a.K), fptr(a.V), fptr(a.O), keyLen,
		bptr(a.Keep), fptr(a.Bias), cpp, fptr(a.Stats), fptr(scratch), C.int64_t(t0), C.int64_t(t1))
}

// cAttention is the plain-integer part of a for C.
func cAttention(a *Attention) C.xattn_attention {
	p := C.xattn_attention{
		batch: C.int(a.Batch), heads: C.int(a.Heads), kv_heads: C.int(a.KVHeads),
		tq: C.int(a.Tq), tk: C.int(a.Tk), dk: C.int(a.DK), dv: C.int(a.DV),
		scale: C.float(a.Scale),
		ldq:   C.int(a.LDQ), ldk: C.int(a.LDK), ldv: C.int(a.LDV), ldo: C.int(a.LDO),
		batch_q: C.int64_t(a.BatchQ), batch_k: C.int64_t(a.BatchK),
		batch_v: C.int64_t(a.BatchV), batch_o: C.int64_t(a.BatchO),
		causal: cbool(a.Causal), causal_offset: C.int64_t(a.CausalOffset),
		q_block: C.int(a.QBlock), kv_block: C.int(a.KVBlock), head_block: C.int(a.headBlock()),
	}
	for i := range 3 {
		p.keep_stride[i] = C.int64_t(a.KeepStride[i])
		p.bias_stride[i] = C.int64_t(a.BiasStride[i])
	}
	return p
}

// roundBF16 sets dst[i] to src[i] rounded as the core rounds its operands.
func roundBF16(dst, src []float32) {
	n := min(len(dst), len(src))
	if n > 0 {
		C.xattn_round_bf16(C.int(n), fptr(src), fptr(dst))
	}
}

// scratchLenC is the C side's length of the scratch, for tests to hold ScratchLenBF16 to.
func scratchLenC(a *Attention) int {
	p := cAttention(a)
	var l C.xattn_bf16_layout
	C.xattn_bf16_scratch(&p, &l)
	return int(l.len)
}
