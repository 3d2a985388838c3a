//go:build cgo && !purego

package blas

/*
#cgo noescape xattn_team_gemms
#cgo nocallback xattn_team_gemms
#cgo noescape xattn_team_attend
#cgo nocallback xattn_team_attend
#cgo nocallback xattn_team_new
#cgo nocallback xattn_team_free
#cgo nocallback xattn_team_threads

#include "shim.h"
*/
import "C"

import "runtime"

// crew is the OpenBLAS backend's Crew (team.c): one C team, and the task
// and chunk lists its phases read, grown to the largest phase and reused.
type crew struct {
	o      openBLAS
	t      *C.xattn_team
	gemms  [C.XATTN_TEAM_GEMMS]C.xattn_team_gemm
	chunks []C.xattn_team_chunk
	tasks  []C.xattn_task
}

// newCrew returns a crew for a variant whose products read packed operands
// and whose attention does not enter OpenBLAS (its token admits one caller
// per OpenBLAS thread, which C threads would bypass), else nil.
func (o openBLAS) newCrew() Crew {
	if !o.k.packs || o.k.blas {
		return nil
	}
	c := &crew{o: o, t: C.xattn_team_new()}
	runtime.AddCleanup(c, func(t *C.xattn_team) { C.xattn_team_free(t) }, c.t)
	return c
}

// CrewThreads returns how many threads the OpenBLAS backend's crews have
// started in this process (for tests and reports).
func CrewThreads() int { return int(C.xattn_team_threads()) }

func (c *crew) Products(gs []Batch, chunks []Chunk, threads int) bool {
	if len(gs) > len(c.gemms) || len(chunks) == 0 {
		return false
	}
	var a, b, out, bias [C.XATTN_TEAM_GEMMS]*C.float
	for i := range gs {
		g := &gs[i]
		pb := c.o.panels(g.Packed)
		if pb == nil || g.Count != 1 || !g.TransB || g.Alpha != 1 || g.Beta != 0 || g.K == 0 {
			return false
		}
		if !checkBatch(g) {
			return false
		}
		a[i], b[i], out[i], bias[i] = fptr(g.A), fptr(pb), fptr(g.C), fptr(g.Bias)
		c.gemms[i] = C.xattn_team_gemm{k: C.int(g.K), lda: C.int64_t(g.LDA), ldc: C.int64_t(g.LDC)}
	}
	if cap(c.chunks) < len(chunks) {
		c.chunks = make([]C.xattn_team_chunk, len(chunks))
	}
	cc := c.chunks[:len(chunks)]
	for i, ch := range chunks {
		if ch.G < 0 || ch.G >= len(gs) {
			panic(errChunk)
		}
		g := &gs[ch.G]
		if ch.R0 < 0 || ch.R0 >= ch.R1 || ch.R1 > g.M || ch.C0 < 0 || ch.C0 >= ch.C1 || ch.C1 > g.N {
			panic(errChunk)
		}
		v, ok := g.Packed.Cols(ch.C0, ch.C1-ch.C0)
		if !ok {
			return false
		}
		cc[i] = C.xattn_team_chunk{g: C.int(ch.G), r0: C.int(ch.R0), r1: C.int(ch.R1), c0: C.int(ch.C0), c1: C.int(ch.C1),
			b_off: C.int64_t(v.off - g.Packed.off)}
	}
	C.xattn_team_gemms(c.t, C.int(max(threads, 1)), c.o.k.c, &c.gemms[0],
		a[0], b[0], out[0], bias[0], a[1], b[1], out[1], bias[1], a[2], b[2], out[2], bias[2],
		&cc[0], C.int(len(cc)))
	return true
}

func (c *crew) Attend(a *Attention, chunk, threads int, scratch []float32) bool {
	n := a.Tasks()
	threads = max(threads, 1)
	sn := a.ScratchLen()
	if chunk <= 0 || n == 0 {
		return n == 0
	}
	if len(scratch) < threads*sn {
		panic(errScratch)
	}
	if !checkAttention(a, 0, n, scratch[:sn]) {
		return true
	}
	if cap(c.tasks) < n {
		c.tasks = make([]C.xattn_task, n)
	}
	ts := c.tasks[:n]
	for i := range ts {
		ts[i] = cTask(a.task(i))
	}
	p, kt := c.o.cAttention(a)
	C.xattn_team_attend(c.t, C.int(threads), c.o.k.c, &p, fptr(a.Q), fptr(a.K), fptr(a.V), fptr(a.O), bptr(a.Keep),
		fptr(a.Bias), fptr(a.ALiBi), fptr(kt), fptr(a.Stats), fptr(scratch), C.int64_t(sn),
		&ts[0], C.int(n), C.int(chunk))
	return true
}
