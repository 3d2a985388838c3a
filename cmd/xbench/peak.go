package main

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/xattn/xattn/blas"
)

// Peak is one run of a peak probe at Threads goroutines, each locked to its
// own OS thread, all started together; GFLOPs is the work of all of them
// over the wall time of the slowest, best of Rounds after an untimed round.
//
// Kind "fma" is xbench's own register-only loop of one vector ISA
// (fma_amd64.s): independent chains of VFMADD231PS (avx512, avx2), of
// multiplies and adds (avx, sse, scalar, which have no FMA), or of AMX
// TDPBF16PS tile products (amx-bf16), touching no memory and no BLAS: the
// limit of the machine's arithmetic units for that ISA and precision. %peak
// holds a row against the probe of the ISA its kernels run.
//
// Kind "gemm" is one N×N×N product per thread through a backend, in the
// kernel the layer's products run: the packed AVX-512 kernel of the OpenBLAS
// backend where the backend packs weights (Backend.Pack), OpenBLAS's SGEMM
// otherwise, gonum's for the pure backend. %gemm holds a row against it.
type Peak struct {
	// Kind is "fma" or "gemm" (reports of older xbench versions have none:
	// gemm).
	Kind      string `json:"kind,omitempty"`
	ISA       string `json:"isa"`
	Precision string `json:"precision,omitempty"`
	// Backend and Kernel name what a gemm probe ran.
	Backend   string  `json:"backend,omitempty"`
	Kernel    string  `json:"kernel,omitempty"`
	Threads   int     `json:"threads"`
	N         int     `json:"n,omitempty"`
	Rounds    int     `json:"rounds"`
	GFLOPs    float64 `json:"gflops"`
	PerThread float64 `json:"gflops_per_thread"`
	Method    string  `json:"method"`
	// Runs counts the times the probe ran in the report (once, then after
	// each case that uses it); GFLOPs is the best of them.
	Runs int `json:"runs,omitempty"`
	// Machine marked the probe of %peak in reports of older versions.
	Machine bool `json:"machine,omitempty"`
}

// precBF16 is the Precision of the bf16 loops (bf16 products summed in
// fp32).
const precBF16 = "bf16→fp32"

// kindFMA and kindGemm are the values of Peak.Kind.
const (
	kindFMA  = "fma"
	kindGemm = "gemm"
)

// describe formats p for the report header.
func (p *Peak) describe() string {
	best := fmt.Sprintf("best of %d rounds", p.Rounds)
	if p.Runs > 1 {
		best += fmt.Sprintf(" in %d runs", p.Runs)
	}
	if p.Kind == kindFMA {
		return fmt.Sprintf("%-8s %-9s %d thread(s): %7.1f GFLOP/s (%.1f per thread), %s, %s",
			p.ISA, p.Precision, p.Threads, p.GFLOPs, p.PerThread, p.Method, best)
	}
	return fmt.Sprintf("%-8s %d thread(s): %7.1f GFLOP/s (%.1f per thread), %s, %s; the %%gemm reference of %s rows",
		p.Backend, p.Threads, p.GFLOPs, p.PerThread, p.Method, best, p.Backend)
}

// fmaKernel is a register-only loop: run(n) does n iterations of
// flopsPerIter floating-point operations.
type fmaKernel struct {
	isa, precision string
	flopsPerIter   float64
	run            func(n int64)
	what           string
}

// peakProbe runs and caches the peak probes of a run.
type peakProbe struct {
	gemmN, rounds int
	fmaOn         bool
	kernels       []fmaKernel
	skipped       []string
	probes        map[string]*Peak // by kind, ISA or backend, and threads
	order         []*Peak
	gemmThreads   map[int]bool
}

// newPeakProbe returns a probe of n³ GEMMs, best of at least rounds (n = 0
// turns the GEMM probe off), and of the register loops when fma.
func newPeakProbe(n, rounds int, fma bool) *peakProbe {
	pp := &peakProbe{gemmN: n, rounds: rounds, fmaOn: fma, probes: map[string]*Peak{}}
	if fma {
		pp.kernels, pp.skipped = fmaKernels()
	}
	return pp
}

// allFMA measures every register loop at threads (once per thread count).
func (pp *peakProbe) allFMA(threads int) {
	if pp == nil {
		return
	}
	for _, k := range pp.kernels {
		pp.fma(k.isa, threads)
	}
}

// fma returns the register-loop probe of isa at threads, measuring it on
// first use, or nil if the CPU has no such loop or probing is off.
func (pp *peakProbe) fma(isa string, threads int) *Peak {
	if pp == nil || !pp.fmaOn || threads < 1 {
		return nil
	}
	key := fmt.Sprintf("fma/%s/%d", isa, threads)
	if p, ok := pp.probes[key]; ok {
		return p
	}
	for _, k := range pp.kernels {
		if k.isa == isa {
			p := measureFMA(k, threads, pp.rounds)
			pp.probes[key] = p
			pp.order = append(pp.order, p)
			return p
		}
	}
	return nil
}

// bestISAs names the fastest register loop of this CPU in each precision,
// "" where it has none: what a peer's own kernels may use at best.
type bestISAs struct {
	FP32, BF16 string
}

// best is the fastest register loop of each precision (the kernels are
// listed best first), none if probing is off.
func (pp *peakProbe) best() bestISAs {
	var b bestISAs
	if pp == nil {
		return b
	}
	for _, k := range pp.kernels {
		switch {
		case k.precision == "fp32" && b.FP32 == "":
			b.FP32 = k.isa
		case k.precision == precBF16 && b.BF16 == "":
			b.BF16 = k.isa
		}
	}
	return b
}

// gemm returns the GEMM probe of be at threads, measuring it on first use,
// or nil if it is off.
func (pp *peakProbe) gemm(be blas.Backend, threads int) *Peak {
	if pp == nil || pp.gemmN <= 0 || threads < 1 {
		return nil
	}
	key := fmt.Sprintf("gemm/%s/%d", be.Name(), threads)
	if p, ok := pp.probes[key]; ok {
		return p
	}
	n := pp.gemmN
	if be.Name() == "pure" {
		n = min(n, 512) // gonum's SGEMM is an order of magnitude slower
	}
	p := measureGemm(be, threads, n, pp.rounds)
	pp.probes[key] = p
	pp.order = append(pp.order, p)
	return p
}

// again measures the register probe of isa, and the GEMM probe of be
// when be is not nil, at threads once more, and keeps the better reading of
// each: the machine's limit does not change during a run, and a probe that
// ran while other work shared the cores reads low. A probe measured for
// the first time is not repeated.
func (pp *peakProbe) again(isa string, be blas.Backend, threads int) {
	if pp == nil || threads < 1 {
		return
	}
	keep := func(p, q *Peak) {
		runs, rounds := p.Runs+1, p.Rounds+q.Rounds
		if q.GFLOPs > p.GFLOPs {
			*p = *q
		}
		p.Runs, p.Rounds = runs, rounds
	}
	if p := pp.probes[fmt.Sprintf("fma/%s/%d", isa, threads)]; p != nil && pp.fmaOn {
		for _, k := range pp.kernels {
			if k.isa == isa {
				keep(p, measureFMA(k, threads, pp.rounds))
			}
		}
	} else {
		pp.fma(isa, threads)
	}
	if be == nil || pp.gemmN <= 0 {
		return
	}
	if p := pp.probes[fmt.Sprintf("gemm/%s/%d", be.Name(), threads)]; p != nil {
		keep(p, measureGemm(be, threads, p.N, pp.rounds))
	} else {
		pp.gemm(be, threads)
	}
}

// list returns every probe measured, in order.
func (pp *peakProbe) list() []Peak {
	if pp == nil {
		return nil
	}
	out := make([]Peak, len(pp.order))
	for i, p := range pp.order {
		out[i] = *p
	}
	return out
}

// probeTime bounds the time one probe spends looking for its best round.
const probeTime = 300 * time.Millisecond

// inParallel runs body on threads goroutines, each locked to its own OS
// thread, released together, and returns the wall time until the last
// finished.
func inParallel(threads int, body func(t int)) time.Duration {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(threads)
	done.Add(threads)
	for t := range threads {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			ready.Done()
			<-start
			body(t)
			done.Done()
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	done.Wait()
	return time.Since(t0)
}

// bestOf runs round once untimed, then at least rounds times and more while
// less than probeTime was spent (at most 4·rounds): on a shared machine a
// longer look finds a quiet moment. It returns the best time and the count.
func bestOf(rounds int, round func() time.Duration) (time.Duration, int) {
	round()
	best := time.Duration(1<<63 - 1)
	var spent time.Duration
	done := 0
	for done < rounds || (spent < probeTime && done < 4*rounds) {
		d := round()
		best = min(best, d)
		spent += d
		done++
	}
	return best, done
}

// measureFMA times k on threads threads at once. Its iteration count is
// set so that one round takes about 20 ms.
func measureFMA(k fmaKernel, threads, rounds int) *Peak {
	n := int64(1 << 12)
	for {
		t0 := time.Now()
		k.run(n)
		if d := time.Since(t0); d > 2*time.Millisecond || n > 1<<40 {
			n = max(int64(float64(n)*float64(20*time.Millisecond)/float64(d)), 1)
			break
		}
		n *= 4
	}
	best, done := bestOf(rounds, func() time.Duration {
		return inParallel(threads, func(int) { k.run(n) })
	})
	g := float64(threads) * float64(n) * k.flopsPerIter / best.Seconds() / 1e9
	return &Peak{Kind: kindFMA, ISA: k.isa, Precision: k.precision, Threads: threads, Rounds: done, Runs: 1,
		GFLOPs: g, PerThread: g / float64(threads), Method: k.what + ", register-only"}
}

// measureGemm times threads concurrent n³ products through be, in the form
// the layer's projections take: C = A·Wᵀ against W packed by be.Pack when
// be packs (the kernel the layer's products then run), else its SGEMM.
func measureGemm(be blas.Backend, threads, n, rounds int) *Peak {
	gs := make([]blas.Batch, threads)
	var packed bool
	for t := range gs {
		a := make([]float32, n*n)
		b := make([]float32, n*n)
		for i := range a {
			a[i] = float32(i%7-3) * 0.125
			b[i] = float32(i%5-2) * 0.25
		}
		gs[t] = blas.Batch{Count: 1, M: n, N: n, K: n, TransB: true, Alpha: 1, Beta: 0,
			A: a, B: b, C: make([]float32, n*n), LDA: n, LDB: n, LDC: n, Packed: be.Pack(b, n, n)}
		packed = !gs[t].Packed.IsZero()
	}
	best, done := bestOf(rounds, func() time.Duration {
		return inParallel(threads, func(t int) { be.Sgemm(&gs[t]) })
	})
	flop := float64(threads) * 2 * float64(n) * float64(n) * float64(n)
	g := flop / best.Seconds() / 1e9
	p := &Peak{Kind: kindGemm, Backend: be.Name(), Threads: threads, N: n, Rounds: done, Runs: 1, GFLOPs: g, PerThread: g / float64(threads)}
	p.ISA, p.Kernel = gemmKernel(be, packed)
	p.Method = fmt.Sprintf("%d³ product C = A·Bᵀ per thread in parallel on %s", n, p.Kernel)
	return p
}

// gemmKernel names the kernel a product through be runs and its ISA.
func gemmKernel(be blas.Backend, packed bool) (isa, kernel string) {
	if be.Name() == "pure" {
		return "sse", "gonum's Go SGEMM (SSE assembly inner loops)"
	}
	if packed {
		return "avx512", "xattn-avx512 (the backend's packed AVX-512 kernel)"
	}
	core := blas.OpenBLASInfo().CoreName
	return coreISA(core), "OpenBLAS " + core
}
