package main

import (
	"fmt"
	"unsafe"

	"github.com/klauspost/cpuid/v2"

	"github.com/xattn/xattn/blas"
)

// The register-only loops of fma_amd64.s: n iterations each.
//
//go:noescape
func fmaAVX512(n int64)

//go:noescape
func fmaAVX2(n int64)

//go:noescape
func mulAddAVX(n int64)

//go:noescape
func mulAddSSE(n int64)

//go:noescape
func mulAddScalar(n int64)

//go:noescape
func dpbf16AVX512(n int64)

//go:noescape
func amxBF16(n int64, cfg, tiles *byte)

func xgetbv0() (eax, edx uint32)

// fmaKernels returns the register-only loops this CPU and OS can run, best
// first, and a line for each one left out saying why. cpuid's AVX512F and
// AVX2 flags include the OS check (XCR0 enables the ZMM/YMM state); AMX is
// checked here: the tile bits of XCR0, then the Linux permission request.
func fmaKernels() (ks []fmaKernel, skipped []string) {
	c := &cpuid.CPU
	if c.Supports(cpuid.AMXTILE, cpuid.AMXBF16) {
		if err := amxUsable(); err != nil {
			skipped = append(skipped, "amx-bf16: "+err.Error())
		} else {
			ks = append(ks, amxKernel())
		}
	}
	if c.Supports(cpuid.AVX512F, cpuid.AVX512BF16) {
		ks = append(ks, fmaKernel{isa: "avx512bf16", precision: precBF16, flopsPerIter: 12 * 16 * 2 * 2, run: dpbf16AVX512,
			what: "12 independent VDPBF16PS zmm chains"})
	} else {
		skipped = append(skipped, "avx512bf16: the CPU or OS has no AVX512-BF16")
	}
	if c.Supports(cpuid.AVX512F) {
		ks = append(ks, fmaKernel{isa: "avx512", precision: "fp32", flopsPerIter: 12 * 16 * 2, run: fmaAVX512,
			what: "12 independent VFMADD231PS zmm chains"})
	} else {
		skipped = append(skipped, "avx512: the CPU or OS has no AVX-512F")
	}
	if c.Supports(cpuid.AVX2, cpuid.FMA3) {
		ks = append(ks, fmaKernel{isa: "avx2", precision: "fp32", flopsPerIter: 12 * 8 * 2, run: fmaAVX2,
			what: "12 independent VFMADD231PS ymm chains"})
	} else {
		skipped = append(skipped, "avx2: the CPU or OS has no AVX2 with FMA")
	}
	if c.Supports(cpuid.AVX) {
		ks = append(ks, fmaKernel{isa: "avx", precision: "fp32", flopsPerIter: 12 * 8, run: mulAddAVX,
			what: "6 VMULPS + 6 VADDPS ymm chains (AVX without FMA)"})
	} else {
		skipped = append(skipped, "avx: the CPU or OS has no AVX")
	}
	ks = append(ks,
		fmaKernel{isa: "sse", precision: "fp32", flopsPerIter: 12 * 4, run: mulAddSSE,
			what: "6 MULPS + 6 ADDPS xmm chains (SSE has no FMA)"},
		fmaKernel{isa: "scalar", precision: "fp32", flopsPerIter: 12, run: mulAddScalar,
			what: "6 MULSS + 6 ADDSS chains"})
	return ks, skipped
}

// amxUsable reports why the AMX tiles cannot be used, or nil: the OS must
// have enabled the tile state in XCR0 (bits 17, XTILECFG, and 18,
// XTILEDATA), and on Linux granted this process the tile data.
func amxUsable() error {
	if !cpuid.CPU.Supports(cpuid.OSXSAVE) {
		return fmt.Errorf("the OS has not enabled XSAVE")
	}
	if eax, _ := xgetbv0(); eax&(3<<17) != 3<<17 {
		return fmt.Errorf("the OS has not enabled the tile state (XCR0=%#x)", eax)
	}
	return blas.RequestAMX()
}

// amxKernel is the AMX BF16 loop: four independent 16×16×32 TDPBF16PS a
// iteration, 2·16·16·32 FLOPs each (a bf16 multiply and an fp32 add per
// pair), on tiles loaded once with small bf16 values.
func amxKernel() fmaKernel {
	var cfg [64]byte
	cfg[0] = 1 // palette 1
	for t := range 8 {
		cfg[16+2*t] = 64 // colsb: 64 bytes a row
		cfg[48+t] = 16   // rows
	}
	tiles := make([]uint16, 16*32)
	for i := range tiles {
		tiles[i] = 0x3a80 + uint16(i%7) // bf16 ≈ 1e-3: the sums stay finite
	}
	return fmaKernel{isa: "amx-bf16", precision: precBF16, flopsPerIter: 4 * 2 * 16 * 16 * 32,
		what: "4 independent TDPBF16PS tile chains, 16×16×32",
		run: func(n int64) {
			amxBF16(n, &cfg[0], (*byte)(unsafe.Pointer(&tiles[0])))
		}}
}
