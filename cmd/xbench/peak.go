package main

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/xattn/xattn/blas"
)

// Peak is one run of the peak probe: Threads goroutines, each on its own OS
// thread, each computing one N×N×N SGEMM through Backend's Sgemm at the same
// time; GFLOPs is Threads·2N³ over the wall time of the slowest, best of
// Rounds after one untimed round.
//
// Go cannot emit FMA instructions of its own, so xbench does not time an
// FMA loop: with OpenBLAS compiled in, a large SGEMM through its kernels is
// the practical "achievable peak" of the machine (a few percent under the
// FMA units' limit), and it is the reference of %peak. Without OpenBLAS, the
// pure backend's SGEMM is the best the binary can do, and it is labelled so:
// it is not the machine's limit.
type Peak struct {
	Backend   string  `json:"backend"`
	Threads   int     `json:"threads"`
	N         int     `json:"n"`
	Rounds    int     `json:"rounds"`
	GFLOPs    float64 `json:"gflops"`
	PerThread float64 `json:"gflops_per_thread"`
	// ISA names the vector instructions of the kernels that ran.
	ISA string `json:"isa"`
	// Machine is true for the probe %peak is measured against.
	Machine bool   `json:"machine"`
	Method  string `json:"method"`
}

// describe formats p for the report header.
func (p *Peak) describe() string {
	role := "SGEMM reference of %gemm"
	if p.Machine {
		role = "the machine's peak for %peak"
	}
	return fmt.Sprintf("%-8s %d thread(s): %6.1f GFLOP/s (%.1f per thread), %s; %s",
		p.Backend, p.Threads, p.GFLOPs, p.PerThread, p.Method, role)
}

// peakProbe runs and caches the peak probes of a run.
type peakProbe struct {
	n, rounds int
	probes    map[string]*Peak // by backend name and thread count
	order     []*Peak
}

// newPeakProbe returns a probe of n³ SGEMMs, best of at least rounds; n = 0
// turns probing off.
func newPeakProbe(n, rounds int) *peakProbe {
	return &peakProbe{n: n, rounds: rounds, probes: map[string]*Peak{}}
}

// get returns the probe of be at threads, measuring it on first use, or nil
// if probing is off.
func (pp *peakProbe) get(be blas.Backend, threads int) *Peak {
	if pp == nil || pp.n <= 0 {
		return nil
	}
	k := fmt.Sprintf("%s/%d", be.Name(), threads)
	if p, ok := pp.probes[k]; ok {
		return p
	}
	n := pp.n
	if be.Name() == "pure" {
		n = min(n, 512) // gonum's SGEMM is an order of magnitude slower
	}
	p := measurePeak(be, threads, n, pp.rounds)
	p.Machine = be.Name() == blas.Default().Name()
	p.ISA, p.Method = kernelISA(be)
	p.Method = fmt.Sprintf("%d³ SGEMM per thread in parallel, best of %d, %s", n, p.Rounds, p.Method)
	if p.Machine {
		if be.Name() == "openblas" {
			p.Method += ": achievable peak"
		} else {
			p.Method += ": no OpenBLAS in this binary, so this is the best the binary reaches, not the FMA peak"
		}
	}
	pp.probes[k] = p
	pp.order = append(pp.order, p)
	return p
}

// machine returns the probe %peak is measured against at threads: the
// Default backend's.
func (pp *peakProbe) machine(threads int) *Peak {
	return pp.get(blas.Default(), threads)
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

// kernelISA says which vector instructions the SGEMM of be runs, and how
// we know.
func kernelISA(be blas.Backend) (isa, how string) {
	if be.Name() != "openblas" {
		return "sse", "gonum's Go SGEMM (SSE assembly for its inner loops)"
	}
	info := blas.OpenBLASInfo()
	core := info.CoreName
	switch c := strings.ToLower(core); {
	case strings.Contains(c, "skylakex"), strings.Contains(c, "cooperlake"), strings.Contains(c, "sapphire"),
		strings.Contains(c, "icelake"), strings.Contains(c, "zen4"), strings.Contains(c, "zen5"):
		isa = "avx512"
	case strings.Contains(c, "haswell"), strings.Contains(c, "zen"), strings.Contains(c, "skylake"),
		strings.Contains(c, "alderlake"):
		isa = "avx2"
	case strings.Contains(c, "sandy"):
		isa = "avx"
	default:
		isa = "?"
	}
	return isa, fmt.Sprintf("OpenBLAS %s kernels (%s)", core, isa)
}

// probeTime is how long the peak probe looks for its best round when
// rounds are quick.
const probeTime = time.Second

// measurePeak times threads concurrent n³ SGEMMs through be.
func measurePeak(be blas.Backend, threads, n, rounds int) *Peak {
	type work struct{ g blas.Batch }
	ws := make([]work, threads)
	for t := range ws {
		a := make([]float32, n*n)
		b := make([]float32, n*n)
		for i := range a {
			a[i] = float32(i%7-3) * 0.125
			b[i] = float32(i%5-2) * 0.25
		}
		ws[t].g = blas.Batch{Count: 1, M: n, N: n, K: n, Alpha: 1, Beta: 0,
			A: a, B: b, C: make([]float32, n*n), LDA: n, LDB: n, LDC: n}
	}
	round := func() time.Duration {
		var ready, done sync.WaitGroup
		start := make(chan struct{})
		ready.Add(threads)
		done.Add(threads)
		for t := range ws {
			go func(g *blas.Batch) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				ready.Done()
				<-start
				be.Sgemm(g)
				done.Done()
			}(&ws[t].g)
		}
		ready.Wait()
		t0 := time.Now()
		close(start)
		done.Wait()
		return time.Since(t0)
	}
	round() // warm-up: page faults, OpenBLAS's buffers
	// Best of at least rounds, and of more while less than probeTime has
	// been spent: on a shared machine a longer look finds a quiet moment.
	best := time.Duration(1<<63 - 1)
	var spent time.Duration
	done := 0
	for done < rounds || (spent < probeTime && done < 4*rounds) {
		d := round()
		best = min(best, d)
		spent += d
		done++
	}
	rounds = done
	flop := float64(threads) * 2 * float64(n) * float64(n) * float64(n)
	g := flop / best.Seconds() / 1e9
	return &Peak{Backend: be.Name(), Threads: threads, N: n, Rounds: rounds, GFLOPs: g, PerThread: g / float64(threads)}
}
