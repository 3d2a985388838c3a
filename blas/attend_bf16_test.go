//go:build cgo && !purego

package blas

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xattn/xattn/internal/testutil"
)

// bf16Kernel is a BF16 kernel on a row pass, or the reason it cannot run.
type bf16Kernel struct {
	name string
	x    *BF16
	skip string
}

// bf16Kernels returns every BF16 product kernel on the CPU's widest row
// pass, and the rounded one on the scalar row pass, with a reason for each
// the CPU lacks.
func bf16Kernels() []bf16Kernel {
	var ks []bf16Kernel
	best := openBLASBackend()
	for _, name := range []string{"amx", "avx512bf16", "rounded"} {
		x, err := newBF16Named(best, name)
		k := bf16Kernel{name: name, x: x}
		if err != nil {
			k.skip = err.Error()
		}
		ks = append(ks, k)
	}
	scalar, err := OpenBLASVariant("scalar")
	if err != nil {
		panic(err)
	}
	x, err := newBF16Named(scalar, "rounded-scalar")
	if err != nil {
		panic(err)
	}
	return append(ks, bf16Kernel{name: "rounded-scalar-rows", x: x})
}

// newBF16Named is NewBF16 with the kernel of that name.
func newBF16Named(be Backend, name string) (*BF16, error) {
	kn, err := BF16KernelNamed(name)
	if err != nil {
		return nil, err
	}
	return NewBF16(be, kn)
}

func forBF16(t *testing.T, f func(t *testing.T, x *BF16)) {
	for _, k := range bf16Kernels() {
		t.Run("bf16="+k.name, func(t *testing.T) {
			if k.skip != "" {
				t.Skip(k.skip)
			}
			f(t, k.x)
		})
	}
}

// attnBF16Cases are attnCases plus the head sizes and lengths of the BF16 issue.
func attnBF16Cases(short bool) []attnCase {
	cs := attnCases()
	cs = append(cs,
		attnCase{name: "d40", b: 1, h: 2, kvh: 1, tq: 77, tk: 77, dk: 40, dv: 40, qb: 64, kvb: 64, chunks: 2},
		attnCase{name: "d64-gqa", b: 2, h: 4, kvh: 2, tq: 130, tk: 130, dk: 64, dv: 64, qb: 128, kvb: 512, chunks: 3, hb: 2},
		attnCase{name: "d72-causal", b: 1, h: 2, kvh: 2, tq: 7, tk: 1031, dk: 72, dv: 72, qb: 32, kvb: 256, causal: true, off: 1024, chunks: 1},
		attnCase{name: "d80-keylen", b: 2, h: 3, kvh: 1, tq: 2, tk: 77, dk: 80, dv: 80, qb: 2, kvb: 32, keyLen: []int32{77, 30}, chunks: 1},
		attnCase{name: "d128-bias", b: 1, h: 2, kvh: 1, tq: 1031, tk: 7, dk: 128, dv: 128, qb: 96, kvb: 64, bias: "full", chunks: 2},
		attnCase{name: "d160-keep", b: 1, h: 1, kvh: 1, tq: 1, tk: 1031, dk: 160, dv: 160, qb: 1, kvb: 512, keep: "row", chunks: 1},
		attnCase{name: "dv40-dk64-causal", b: 2, h: 2, kvh: 1, tq: 130, tk: 130, dk: 64, dv: 40, qb: 64, kvb: 128, causal: true, chunks: 2},
		attnCase{name: "mqa-everything", b: 2, h: 4, kvh: 1, tq: 77, tk: 130, dk: 64, dv: 72, qb: 40, kvb: 96, hb: 2,
			keyLen: []int32{130, 61}, causal: true, off: 60, keep: "full", bias: "batch", chunks: 2},
		// Structural masks on panels the fused row pass would take
		// (no bias or keep): a window edge inside a 32-row block, a window
		// without a causal cut, ALiBi alone, bottom-right causal.
		attnCase{name: "d64-window", b: 1, h: 2, kvh: 1, tq: 130, tk: 130, dk: 64, dv: 64, qb: 64, kvb: 64, causal: true, window: 40, chunks: 2},
		attnCase{name: "d40-window-nocausal", b: 2, h: 2, kvh: 2, tq: 77, tk: 200, dk: 40, dv: 40, qb: 32, kvb: 96, off: 60, window: 50, chunks: 1},
		attnCase{name: "d64-alibi", b: 1, h: 3, kvh: 1, tq: 70, tk: 150, dk: 64, dv: 48, qb: 64, kvb: 64, alibi: true, chunks: 2},
		attnCase{name: "d72-lowerright-alibi-window", b: 2, h: 2, kvh: 1, tq: 33, tk: 300, dk: 72, dv: 72, qb: 32, kvb: 128,
			causal: true, off: 267, window: 100, alibi: true, keyLen: []int32{300, 150}, chunks: 2},
	)
	if !short {
		cs = append(cs, attnCase{name: "d64-1031", b: 1, h: 2, kvh: 1, tq: 1031, tk: 1031, dk: 64, dv: 64, qb: 256, kvb: 512, chunks: 2})
	}
	return cs
}

// attendBF16 runs a through x in chunks calls, each with its own NaN-filled scratch.
func attendBF16(x *BF16, a *Attention, pk *BF16KV, chunks int) {
	tasks := a.Tasks()
	for c := range chunks {
		scratch := make([]float32, a.ScratchLenBF16())
		for i := range scratch {
			scratch[i] = nan32
		}
		x.Attend(a, pk, c*tasks/chunks, (c+1)*tasks/chunks, scratch)
	}
}

// roundedCopy returns a copy of a with Q, K and V rounded to bf16 as
// testutil.Round16Ref64 rounds (subnormals flushed to zero, as the core
// reads them).
func roundedCopy(a *Attention) *Attention {
	r := *a
	round := func(s []float32) []float32 {
		out := make([]float32, len(s))
		for i, v := range s {
			out[i] = testutil.RoundBF16Flush(v)
		}
		return out
	}
	r.Q, r.K, r.V = round(a.Q), round(a.K), round(a.V)
	return &r
}

func TestAttendBF16(t *testing.T) {
	forBF16(t, func(t *testing.T, x *BF16) {
		for _, tc := range attnBF16Cases(testing.Short()) {
			t.Run(tc.name, func(t *testing.T) { testAttendBF16(t, x, tc) })
		}
	})
}

// testAttendBF16 holds x's output on tc against the float64 reference of
// the unrounded operands (the bound 2e-2·max(1, ‖ref‖∞)) and of the
// operands rounded to bf16 (what is left is P's rounding: 4e-3·max(1,
// ‖V‖∞)), checks that no input changed, no byte outside the heads was
// written, rows that see no key are exactly 0, and the statistics.
func testAttendBF16(t *testing.T, x *BF16, tc attnCase) {
	a, owned, checkO := tc.attention(uint64(len(tc.name)*7919 + tc.tk))
	var in snapshot
	in.floats(a.Q, a.K, a.V, a.Bias)
	in.bools(a.Keep)
	in.ints(a.KeyLen)
	var pk *BF16KV
	if tc.packKeys {
		pk = x.Pack(a)
	}
	want, wantStats := attentionRef64(a)
	wantR, _ := attentionRef64(roundedCopy(a))
	a.Stats = make([]float32, len(wantStats))
	for i := range a.Stats {
		a.Stats[i] = nan32
	}
	attendBF16(x, a, pk, tc.chunks)
	in.check(t)
	if !checkO() {
		t.Fatal("guard band around O overwritten")
	}
	refMax, vmax := 0.0, 0.0
	for _, w := range want {
		refMax = max(refMax, math.Abs(w))
	}
	for _, v := range a.V {
		vmax = max(vmax, math.Abs(float64(v)))
	}
	tol, tolR := 2e-2*max(1, refMax), 4e-3*max(1, vmax)
	worst, worstR := 0.0, 0.0
	for i, got := range a.O {
		switch {
		case !owned[i]:
			if !testutil.IsGuard(got) {
				t.Fatalf("O[%d] = %v outside the heads, want it untouched", i, got)
			}
		case want[i] == 0 && wantR[i] == 0:
			if got != 0 {
				t.Fatalf("O[%d] = %v, want exactly 0", i, got)
			}
		default:
			d, dr := math.Abs(float64(got)-want[i]), math.Abs(float64(got)-wantR[i])
			if !(d <= tol) {
				t.Fatalf("O[%d] = %v, want %v ± %g (the unrounded reference)", i, got, want[i], tol)
			}
			if !(dr <= tolR) {
				t.Fatalf("O[%d] = %v, want %v ± %g (the reference on bf16 operands)", i, got, wantR[i], tolR)
			}
			worst, worstR = max(worst, d), max(worstR, dr)
		}
	}
	t.Logf("worst error %.3g (unrounded reference), %.3g (rounded operands)", worst, worstR)
	// Statistics: the maximum to bf16 rounding of the scores, the sum to
	// bf16 rounding of the scores (the exponent of each term moves by the
	// score's error).
	checkStats(t, a.Stats, wantStats, 2e-2, 4e-2)
}

// TestBF16KernelsAgree holds the AMX and AVX512-BF16 kernels to the
// rounded one on the same row pass: the same roundings, another
// summation order. A score that moves by an ulp can flip a probability's
// bf16 rounding, so a few outputs move by up to 2^-9 of a probability's
// share; every output stays within 5e-4 (3.7e-5 seen), 99% within 1e-5.
func TestBF16KernelsAgree(t *testing.T) {
	ref, err := newBF16Named(openBLASBackend(), "rounded")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"amx", "avx512bf16"} {
		t.Run("bf16="+name, func(t *testing.T) {
			x, err := newBF16Named(openBLASBackend(), name)
			if err != nil {
				t.Skip(err)
			}
			for _, tc := range attnBF16Cases(true) {
				t.Run(tc.name, func(t *testing.T) {
					a, owned, _ := tc.attention(uint64(len(tc.name)*13 + tc.tk))
					attendBF16(ref, a, nil, 1)
					want := slices.Clone(a.O)
					attendBF16(x, a, nil, tc.chunks)
					n, far, worst := 0, 0, 0.0
					for i, o := range owned {
						if !o {
							continue
						}
						d := math.Abs(float64(a.O[i] - want[i]))
						if want[i] == 0 && a.O[i] != 0 || !(d <= 5e-4) {
							t.Fatalf("O[%d] = %v, want %v ± 5e-4 (the rounded kernel)", i, a.O[i], want[i])
						}
						n++
						if d > 1e-5 {
							far++
						}
						worst = max(worst, d)
					}
					if far > n/100 {
						t.Fatalf("%d of %d outputs differ from the rounded kernel's by more than 1e-5", far, n)
					}
					t.Logf("worst difference %.3g, %d of %d over 1e-5", worst, far, n)
				})
			}
		})
	}
}

// TestAttendBF16KV holds Attend on keys and values packed by Pack to
// the same call packing per panel, bit for bit, across the cases with
// panels of several sizes and masks.
func TestAttendBF16KV(t *testing.T) {
	forBF16(t, func(t *testing.T, x *BF16) {
		for _, tc := range attnBF16Cases(true) {
			if tc.tk == 0 {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				a, _, _ := tc.attention(uint64(len(tc.name)*3 + tc.tk))
				a.Stats = make([]float32, 2*a.Batch*a.Heads*a.Tq)
				attendBF16(x, a, nil, 1)
				want, wantStats := slices.Clone(a.O), slices.Clone(a.Stats)
				pk := x.Pack(a)
				if (pk.v == nil) != (a.DV > 0 && false) && a.DV > 0 {
					t.Fatal("Pack left finite values unpacked")
				}
				attendBF16(x, a, pk, tc.chunks)
				if d := testutil.BitDiff(a.O, want); d >= 0 {
					t.Fatalf("O[%d] = %v with packed keys and values, %v without", d, a.O[d], want[d])
				}
				if d := testutil.BitDiff(a.Stats, wantStats); d >= 0 {
					t.Fatalf("Stats[%d] = %v with packed keys and values, %v without", d, a.Stats[d], wantStats[d])
				}
			})
		}
	})
}

// coreBackend is a Backend whose Attend is x's, for the tests of Backend.Attend.
type coreBackend struct {
	Backend
	x *BF16
}

func (b coreBackend) Attend(a *Attention, t0, t1 int, _ []float32) {
	scratch := make([]float32, a.ScratchLenBF16())
	for i := range scratch {
		scratch[i] = nan32
	}
	b.x.Attend(a, nil, t0, t1, scratch)
}

func (coreBackend) PackKeys(*Attention) bool { return false }

// TestAttendBF16NonFinite is TestAttendNonFinite on the BF16 core: the
// same rule, the same cases.
func TestAttendBF16NonFinite(t *testing.T) {
	var cases []attnCase
	for _, tc := range attnBF16Cases(true) {
		if tc.tk > 0 && tc.dk > 0 && tc.dv > 0 {
			cases = append(cases, tc)
		}
	}
	forBF16(t, func(t *testing.T, x *BF16) {
		be := coreBackend{Backend: openBLASBackend(), x: x}
		for _, tc := range cases {
			for _, what := range []string{"key", "value", "query", "value-underflow"} {
				for _, bad := range []float32{nan32, float32(math.Inf(1))} {
					t.Run(fmt.Sprintf("%s/%s=%v", tc.name, what, bad), func(t *testing.T) {
						testAttendNonFinite(t, be, tc, what, bad)
					})
				}
			}
		}
	})
}

// TestAttendBF16KV values with a non-finite element are left unpacked, and the rule still holds.
func TestBF16PackNonFinite(t *testing.T) {
	forBF16(t, func(t *testing.T, x *BF16) {
		tc := attnCase{name: "nf", b: 1, h: 2, kvh: 1, tq: 5, tk: 70, dk: 8, dv: 8, qb: 5, kvb: 32, chunks: 1, keyLen: []int32{40}}
		a, _, _ := tc.attention(5)
		a.V[50*a.LDV+3] = nan32 // beyond the key length: reaches nothing
		pk := x.Pack(a)
		if pk.v != nil {
			t.Fatal("Pack packed values with a NaN")
		}
		attendBF16(x, a, pk, 1)
		for i := range a.Tq {
			for d := range a.Heads * a.DV {
				if v := a.O[i*a.LDO+d]; v != v {
					t.Fatalf("O[%d,%d] = NaN from a value beyond the key length", i, d)
				}
			}
		}
	})
}

func TestBF16CoreRound(t *testing.T) {
	xs := []float32{0, 1, -1, 1.00390625, 1.0078125, 1.01171875, 3.1415927, 65504, 1e38, 3.4e38, 3.39e38,
		float32(math.Inf(1)), float32(math.Inf(-1)), 0x1p-126, 0x1p-127, -0x1p-140, 1.1754942e-38, 0x1.fffffep127}
	rng := newRand(9)
	for range 1000 {
		xs = append(xs, math.Float32frombits(rng.Uint32()))
	}
	got := make([]float32, len(xs))
	roundBF16(got, xs)
	for i, x := range xs {
		if x != x {
			if got[i] == got[i] {
				t.Fatalf("round(NaN) = %v", got[i])
			}
			continue
		}
		want := testutil.RoundBF16Flush(x) // subnormals flush, as the dot products read them
		if math.Float32bits(got[i])&0x7fffffff != math.Float32bits(want)&0x7fffffff || (want != 0 && got[i] != want) {
			t.Fatalf("round(%g) = %g, want %g", x, got[i], want)
		}
	}
}

func TestBF16ScratchLen(t *testing.T) {
	for _, tc := range attnBF16Cases(false) {
		a, _, _ := tc.attention(1)
		if a.ScratchLenBF16() < a.ScratchLen() {
			t.Fatalf("%s: ScratchLenBF16 %d < ScratchLen %d", tc.name, a.ScratchLenBF16(), a.ScratchLen())
		}
	}
}

func TestAttendBF16Allocs(t *testing.T) {
	forBF16(t, func(t *testing.T, x *BF16) {
		tc := attnBF16Cases(true)[len(attnCases())+1]
		a, _, _ := tc.attention(3)
		scratch := make([]float32, a.ScratchLenBF16())
		pk := x.Pack(a)
		for _, p := range []*BF16KV{nil, pk} {
			if n := testing.AllocsPerRun(5, func() { x.Attend(a, p, 0, a.Tasks(), scratch) }); n != 0 {
				t.Fatalf("%v allocations per Attend", n)
			}
		}
	})
}

// TestAttendBF16Concurrent runs many goroutines on one BF16 core and one
// packed K/V, each on its own output, with goroutines that keep the
// scheduler preempting (the AMX tile state must survive signals and
// thread switches), and holds each to the single-goroutine result bit for
// bit.
func TestAttendBF16Concurrent(t *testing.T) {
	forBF16(t, func(t *testing.T, x *BF16) {
		tc := attnCase{name: "conc", b: 2, h: 4, kvh: 2, tq: 70, tk: 600, dk: 64, dv: 40, qb: 32, kvb: 256, chunks: 1,
			causal: true, off: 500, keyLen: []int32{600, 300}}
		a, _, _ := tc.attention(11)
		pk := x.Pack(a)
		orig := slices.Clone(a.O)
		attendBF16(x, a, pk, 1)
		want := slices.Clone(a.O)
		defer testutil.Spin(2)()
		testutil.Parallel(t, 8, func(g int) func() error {
			b := *a
			b.O = slices.Clone(orig)
			scratch := make([]float32, a.ScratchLenBF16())
			return func() error {
				for it := range 20 {
					var p *BF16KV
					if it%2 == 0 {
						p = pk
					}
					x.Attend(&b, p, 0, b.Tasks(), scratch)
					if d := testutil.BitDiff(b.O, want); d >= 0 {
						return fmt.Errorf("goroutine %d, run %d: O[%d] = %v, want %v", g, it, d, b.O[d], want[d])
					}
				}
				return nil
			}
		})
	})
}

func TestAttendBF16Errors(t *testing.T) {
	if _, err := NewBF16(Pure(), BF16Default()); err == nil || !strings.Contains(err.Error(), "pure") {
		t.Fatalf("NewBF16(Pure()) = %v, want an error naming the backend", err)
	}
	if _, err := NewBF16(openBLASBackend(), BF16Kernel{}); err == nil || !strings.Contains(err.Error(), "pure") {
		t.Fatalf("NewBF16(pure kernel) = %v, want an error naming the kernel", err)
	}
	t.Logf("BF16 kernels here: %v (missing: %v)", BF16Kernels(), BF16Missing())
	x, err := newBF16Named(openBLASBackend(), "rounded")
	if err != nil {
		t.Fatal(err)
	}
	tc := attnBF16Cases(true)[len(attnCases())]
	a, _, _ := tc.attention(1)
	mustPanic(t, errScratch, func() { x.Attend(a, nil, 0, a.Tasks(), make([]float32, a.ScratchLenBF16()-1)) })
	mustPanic(t, errShortQ, func() { b := *a; b.Q = b.Q[:10]; x.Attend(&b, nil, 0, a.Tasks(), make([]float32, a.ScratchLenBF16())) })
	mustPanic(t, errTasks, func() { x.Attend(a, nil, 0, a.Tasks()+1, make([]float32, a.ScratchLenBF16())) })
	pk := x.Pack(a)
	mustPanic(t, errBF16KV, func() { b := *a; b.Tk--; x.Attend(&b, pk, 0, a.Tasks(), make([]float32, b.ScratchLenBF16())) })
	mustPanic(t, errShortK, func() { b := *a; b.K = b.K[:5]; x.Pack(&b) })
}

// amxPeak returns the AMX tile peak of this thread in GFLOP/s: the best
// of 5 runs of amxProbe (four independent TDPBF16PS chains, about 5 ms).
func amxPeak() float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const n = 1 << 18
	best := 0.0
	for range 5 {
		t := time.Now()
		amxProbe(n)
		best = max(best, 4*16*16*32*2*float64(n)/float64(time.Since(t).Nanoseconds()))
	}
	return best
}

// BenchmarkAttendBF16 times the attention core on one goroutine at the
// shapes of three presets (the Perceiver's latents over 16384 inputs,
// Stable Diffusion's UNet cross-attention over 77 tokens, a decoder's 32
// rows over 1500 encoder frames), in BF16 with every kernel the CPU has,
// and in FP32 (the default variant) beside it, and reports GFLOP/s of the
// two products, 4·B·H·Tq·Tk·dh. perceiver-bias adds a zero bias row: the
// masked panels' path. The AMX runs also report the tile peak measured
// just before on the same thread (amxPeak, xbench's probe: peak-GFLOP/s)
// and the share of it reached (%peak).
//
//	go test ./blas -run '^$' -bench 'AttendBF16/shape=perceiver/kernel=amx'
func BenchmarkAttendBF16(b *testing.B) {
	type shape struct {
		name                string
		batch, h, tq, tk, d int
		bias                bool // a zero bias row: the masked path (BF16: the unfused row pass)
	}
	kvb := 512 // the BF16 key panel; XATTN_BENCH_KVB overrides it (to compare panels)
	if v, err := strconv.Atoi(os.Getenv("XATTN_BENCH_KVB")); err == nil && v > 0 {
		kvb = v
	}
	for _, sh := range []shape{{"perceiver", 1, 8, 256, 16384, 64, false}, {"perceiver-bias", 1, 8, 256, 16384, 64, true},
		{"sd_unet", 2, 8, 4096, 77, 40, false}, {"decoder", 8, 8, 32, 1500, 64, false}} {
		for _, k := range append(bf16Kernels()[:3], bf16Kernel{name: "fp32"}) {
			for _, packed := range []bool{false, true} {
				if packed && k.name == "fp32" {
					continue
				}
				b.Run(fmt.Sprintf("shape=%s/kernel=%s/packed=%v", sh.name, k.name, packed), func(b *testing.B) {
					if k.skip != "" {
						b.Skip(k.skip)
					}
					ld := sh.h * sh.d
					a := &Attention{Batch: sh.batch, Heads: sh.h, KVHeads: sh.h, Tq: sh.tq, Tk: sh.tk, DK: sh.d, DV: sh.d,
						Scale: 1 / float32(math.Sqrt(float64(sh.d))), LDQ: ld, LDK: ld, LDV: ld, LDO: ld,
						BatchQ: sh.tq * ld, BatchK: sh.tk * ld, BatchV: sh.tk * ld, BatchO: sh.tq * ld}
					a.Q = make([]float32, sh.batch*sh.tq*ld)
					a.K = make([]float32, sh.batch*sh.tk*ld)
					a.V = make([]float32, sh.batch*sh.tk*ld)
					a.O = make([]float32, sh.batch*sh.tq*ld)
					testutil.Fill(newRand(1), a.Q, -1, 1)
					testutil.Fill(newRand(2), a.K, -1, 1)
					testutil.Fill(newRand(3), a.V, -1, 1)
					if sh.bias {
						a.Bias = make([]float32, sh.tk)
					}
					var run func()
					if k.x == nil {
						// xattn's tiling for this L2 (tune: 256 and 256 for dh 64).
						a.QBlock, a.KVBlock = min(256, sh.tq), min(256, sh.tk)
						be := openBLASBackend()
						scratch := make([]float32, a.ScratchLen())
						run = func() { be.Attend(a, 0, a.Tasks(), scratch) }
					} else {
						a.QBlock, a.KVBlock = min(256, sh.tq), min(kvb, sh.tk)
						scratch := make([]float32, a.ScratchLenBF16())
						var pk *BF16KV
						if packed {
							pk = k.x.Pack(a)
						}
						run = func() { k.x.Attend(a, pk, 0, a.Tasks(), scratch) }
					}
					run()
					b.ReportAllocs()
					for b.Loop() {
						run()
					}
					flops := 4 * float64(sh.batch*sh.h*sh.tq*sh.tk*sh.d)
					gflops := flops * float64(b.N) / float64(b.Elapsed().Nanoseconds())
					b.ReportMetric(gflops, "GFLOP/s")
					if k.name == "amx" {
						peak := amxPeak()
						b.ReportMetric(peak, "peak-GFLOP/s")
						b.ReportMetric(100*gflops/peak, "%peak")
					}
				})
			}
		}
	}
}
