#include "textflag.h"

// Register-only loops for the peak probes (fma_amd64.go). Each iteration
// issues 12 independent arithmetic instructions into 12 accumulators from
// two constant registers, enough chains to cover the latency (4 cycles) of
// two units a cycle, and touches no memory.

// ZERO_ZMM zeroes the 12 zmm accumulators and the two operand registers
// of the AVX-512 loops.
#define ZERO_ZMM \
	VPXORD Z0, Z0, Z0 \
	VPXORD Z1, Z1, Z1 \
	VPXORD Z2, Z2, Z2 \
	VPXORD Z3, Z3, Z3 \
	VPXORD Z4, Z4, Z4 \
	VPXORD Z5, Z5, Z5 \
	VPXORD Z6, Z6, Z6 \
	VPXORD Z7, Z7, Z7 \
	VPXORD Z8, Z8, Z8 \
	VPXORD Z9, Z9, Z9 \
	VPXORD Z10, Z10, Z10 \
	VPXORD Z11, Z11, Z11 \
	VPXORD Z30, Z30, Z30 \
	VPXORD Z31, Z31, Z31

// func fmaAVX512(n int64)
TEXT ·fmaAVX512(SB), NOSPLIT, $0-8
	MOVQ n+0(FP), CX
	ZERO_ZMM
	TESTQ CX, CX
	JLE done512

loop512:
	VFMADD231PS Z30, Z31, Z0
	VFMADD231PS Z30, Z31, Z1
	VFMADD231PS Z30, Z31, Z2
	VFMADD231PS Z30, Z31, Z3
	VFMADD231PS Z30, Z31, Z4
	VFMADD231PS Z30, Z31, Z5
	VFMADD231PS Z30, Z31, Z6
	VFMADD231PS Z30, Z31, Z7
	VFMADD231PS Z30, Z31, Z8
	VFMADD231PS Z30, Z31, Z9
	VFMADD231PS Z30, Z31, Z10
	VFMADD231PS Z30, Z31, Z11
	DECQ CX
	JNZ  loop512

done512:
	VZEROUPPER
	RET

// func fmaAVX2(n int64)
TEXT ·fmaAVX2(SB), NOSPLIT, $0-8
	MOVQ n+0(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15
	TESTQ CX, CX
	JLE done256

loop256:
	VFMADD231PS Y14, Y15, Y0
	VFMADD231PS Y14, Y15, Y1
	VFMADD231PS Y14, Y15, Y2
	VFMADD231PS Y14, Y15, Y3
	VFMADD231PS Y14, Y15, Y4
	VFMADD231PS Y14, Y15, Y5
	VFMADD231PS Y14, Y15, Y6
	VFMADD231PS Y14, Y15, Y7
	VFMADD231PS Y14, Y15, Y8
	VFMADD231PS Y14, Y15, Y9
	VFMADD231PS Y14, Y15, Y10
	VFMADD231PS Y14, Y15, Y11
	DECQ CX
	JNZ  loop256

done256:
	VZEROUPPER
	RET

// func mulAddAVX(n int64): as mulAddSSE with 8 lanes (VMULPS, VADDPS ymm),
// what AVX without FMA (Sandy Bridge) issues.
TEXT ·mulAddAVX(SB), NOSPLIT, $0-8
	MOVQ n+0(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15
	TESTQ CX, CX
	JLE doneAVX

loopAVX:
	VMULPS Y14, Y0, Y0
	VADDPS Y15, Y6, Y6
	VMULPS Y14, Y1, Y1
	VADDPS Y15, Y7, Y7
	VMULPS Y14, Y2, Y2
	VADDPS Y15, Y8, Y8
	VMULPS Y14, Y3, Y3
	VADDPS Y15, Y9, Y9
	VMULPS Y14, Y4, Y4
	VADDPS Y15, Y10, Y10
	VMULPS Y14, Y5, Y5
	VADDPS Y15, Y11, Y11
	DECQ CX
	JNZ  loopAVX

doneAVX:
	VZEROUPPER
	RET

// func mulAddSSE(n int64): 6 MULPS and 6 ADDPS chains of 4 lanes, the
// instructions gonum's SSE loops issue (no FMA).
TEXT ·mulAddSSE(SB), NOSPLIT, $0-8
	MOVQ n+0(FP), CX
	XORPS X0, X0
	XORPS X1, X1
	XORPS X2, X2
	XORPS X3, X3
	XORPS X4, X4
	XORPS X5, X5
	XORPS X6, X6
	XORPS X7, X7
	XORPS X8, X8
	XORPS X9, X9
	XORPS X10, X10
	XORPS X11, X11
	XORPS X14, X14
	XORPS X15, X15
	TESTQ CX, CX
	JLE doneSSE

loopSSE:
	MULPS X14, X0
	ADDPS X15, X6
	MULPS X14, X1
	ADDPS X15, X7
	MULPS X14, X2
	ADDPS X15, X8
	MULPS X14, X3
	ADDPS X15, X9
	MULPS X14, X4
	ADDPS X15, X10
	MULPS X14, X5
	ADDPS X15, X11
	DECQ CX
	JNZ  loopSSE

doneSSE:
	RET

// func mulAddScalar(n int64): as mulAddSSE on one lane (MULSS, ADDSS).
TEXT ·mulAddScalar(SB), NOSPLIT, $0-8
	MOVQ n+0(FP), CX
	XORPS X0, X0
	XORPS X1, X1
	XORPS X2, X2
	XORPS X3, X3
	XORPS X4, X4
	XORPS X5, X5
	XORPS X6, X6
	XORPS X7, X7
	XORPS X8, X8
	XORPS X9, X9
	XORPS X10, X10
	XORPS X11, X11
	XORPS X14, X14
	XORPS X15, X15
	TESTQ CX, CX
	JLE doneScalar

loopScalar:
	MULSS X14, X0
	ADDSS X15, X6
	MULSS X14, X1
	ADDSS X15, X7
	MULSS X14, X2
	ADDSS X15, X8
	MULSS X14, X3
	ADDSS X15, X9
	MULSS X14, X4
	ADDSS X15, X10
	MULSS X14, X5
	ADDSS X15, X11
	DECQ CX
	JNZ  loopScalar

doneScalar:
	RET

// func dpbf16AVX512(n int64): fmaAVX512 with VDPBF16PS (AVX512-BF16) in
// place of the FMA: 12 independent zmm chains, each instruction 16 lanes of
// two bf16 products summed into an fp32 accumulator (64 FLOPs). The
// instructions are BYTE-encoded (the Go assembler has no AVX512-BF16);
// bytes from GNU as, objdump-checked:
//
//	62 92 0e 40 52 c7    vdpbf16ps %zmm31,%zmm30,%zmm0   (…cf, d7, … ff for zmm1…7)
//	62 12 0e 40 52 c7    vdpbf16ps %zmm31,%zmm30,%zmm8   (…cf, d7, df for zmm9…11)
TEXT ·dpbf16AVX512(SB), NOSPLIT, $0-8
	MOVQ n+0(FP), CX
	ZERO_ZMM
	TESTQ CX, CX
	JLE doneBF16

loopBF16:
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xc7
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xcf
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xd7
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xdf
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xe7
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xef
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xf7
	BYTE $0x62; BYTE $0x92; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xff
	BYTE $0x62; BYTE $0x12; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xc7
	BYTE $0x62; BYTE $0x12; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xcf
	BYTE $0x62; BYTE $0x12; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xd7
	BYTE $0x62; BYTE $0x12; BYTE $0x0e; BYTE $0x40; BYTE $0x52; BYTE $0xdf
	DECQ CX
	JNZ  loopBF16

doneBF16:
	VZEROUPPER
	RET

// func amxBF16(n int64, cfg *byte, tiles *byte)
//
// Loads the tile configuration cfg (64 bytes, palette 1, eight tiles of
// 16 rows × 64 bytes), the tiles tmm4…tmm7 from tiles (16 rows of 64 bytes,
// stride 64), zeroes the accumulators tmm0…tmm3, runs n iterations of four
// independent TDPBF16PS (tmm0 += tmm4·tmm6, tmm1 += tmm4·tmm7,
// tmm2 += tmm5·tmm6, tmm3 += tmm5·tmm7: each 16×16 from 16×32 by 32×16
// bf16), and releases the tiles. The instructions are BYTE-encoded (the Go
// assembler has no AMX); bytes from GNU as, objdump-checked:
//
//	c4 e2 78 49 00        ldtilecfg (%rax)
//	c4 e2 7b 4b 24 08     tileloadd (%rax,%rcx,1),%tmm4   (…2c, 34, 3c for tmm5…7)
//	c4 e2 7b 49 c0        tilezero %tmm0                  (…c8, d0, d8 for tmm1…3)
//	c4 e2 4a 5c c4        tdpbf16ps %tmm6,%tmm4,%tmm0
//	c4 e2 42 5c cc        tdpbf16ps %tmm7,%tmm4,%tmm1
//	c4 e2 4a 5c d5        tdpbf16ps %tmm6,%tmm5,%tmm2
//	c4 e2 42 5c dd        tdpbf16ps %tmm7,%tmm5,%tmm3
//	c4 e2 78 49 c0        tilerelease
TEXT ·amxBF16(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), DX
	MOVQ cfg+8(FP), AX
	BYTE $0xc4; BYTE $0xe2; BYTE $0x78; BYTE $0x49; BYTE $0x00
	MOVQ tiles+16(FP), AX
	MOVQ $64, CX
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $0x24; BYTE $0x08
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $0x2c; BYTE $0x08
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $0x34; BYTE $0x08
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x4b; BYTE $0x3c; BYTE $0x08
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xc0
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xc8
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xd0
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xd8
	TESTQ DX, DX
	JLE doneAMX

loopAMX:
	BYTE $0xc4; BYTE $0xe2; BYTE $0x4a; BYTE $0x5c; BYTE $0xc4
	BYTE $0xc4; BYTE $0xe2; BYTE $0x42; BYTE $0x5c; BYTE $0xcc
	BYTE $0xc4; BYTE $0xe2; BYTE $0x4a; BYTE $0x5c; BYTE $0xd5
	BYTE $0xc4; BYTE $0xe2; BYTE $0x42; BYTE $0x5c; BYTE $0xdd
	DECQ DX
	JNZ  loopAMX

doneAMX:
	BYTE $0xc4; BYTE $0xe2; BYTE $0x78; BYTE $0x49; BYTE $0xc0
	RET

// func xgetbv0() (eax, edx uint32)
TEXT ·xgetbv0(SB), NOSPLIT, $0-8
	MOVL $0, CX
	BYTE $0x0f; BYTE $0x01; BYTE $0xd0
	MOVL AX, eax+0(FP)
	MOVL DX, edx+4(FP)
	RET
