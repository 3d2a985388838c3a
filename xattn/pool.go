package xattn

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The worker pool. One process-wide set of goroutines helps every Layer: a
// forward pass splits a phase into items, runs items itself, and offers up
// to Threads−1 tickets to the pool. A helper that picks a ticket up while the
// phase is still open joins it and pulls items from the same counter; a
// ticket picked up after the caller has closed the phase is dropped. So a
// caller never waits for a helper that has not started, many callers at once
// share the pool's goroutines instead of multiplying them, and nothing is
// allocated per call.

// runner is the work of one phase: item i, run by the worker in scratch slot.
type runner interface {
	runItem(slot, item int)
}

// job is one phase of one call. It is owned by a workspace and reused.
type job struct {
	// state packs the phase generation (high 32 bits), a closed flag and
	// the number of helpers inside the phase.
	state atomic.Uint64
	next  atomic.Int64 // next item to run
	slots atomic.Int32 // next scratch slot to hand a helper
	n     int          // items in the phase
	body  runner
	done  chan struct{} // the last helper out of a closed phase signals
}

const (
	closedBit  = 1 << 31
	activeMask = closedBit - 1
)

type ticket struct {
	j   *job
	gen uint64
}

// The process-wide helper set grows to the largest number of helpers any
// call has asked for.
var (
	poolMu      sync.Mutex
	poolStarted atomic.Int64
	poolTickets = make(chan ticket, 1024)
)

// ensureHelpers starts helpers until at least n run.
func ensureHelpers(n int) {
	if poolStarted.Load() >= int64(n) {
		return
	}
	poolMu.Lock()
	defer poolMu.Unlock()
	for poolStarted.Load() < int64(n) {
		go helper(poolTickets)
		poolStarted.Add(1)
	}
}

func helper(tickets <-chan ticket) {
	for {
		t, ok := spinRecv(tickets)
		if !ok {
			return
		}
		t.j.join(t.gen)
	}
}

// spinWait is how long a helper that finished a phase, or a caller whose
// phase still has helpers inside, polls before it parks. A forward pass is
// a few phases in a row: a helper parked between them is only woken when
// the scheduler steals it onto an idle P, 50–100 µs later as measured here,
// which on a small call (the tiny shape: 0.3 ms in all) left the caller
// doing every phase alone. Polling costs at most this much CPU after each
// phase.
const spinWait = 50 * time.Microsecond

// spinRecv receives from tickets, polling for up to spinWait before it
// blocks; ok is false once tickets is closed.
func spinRecv(tickets <-chan ticket) (t ticket, ok bool) {
	var start time.Time
	for i := 0; ; i++ {
		select {
		case t, ok = <-tickets:
			return t, ok
		default:
		}
		if i == 0 {
			start = time.Now()
		} else if time.Since(start) > spinWait {
			break
		}
		runtime.Gosched()
	}
	t, ok = <-tickets
	return t, ok
}

// join runs items of j if its phase gen is still open.
func (j *job) join(gen uint64) {
	for {
		s := j.state.Load()
		if s>>32 != gen || s&closedBit != 0 {
			return
		}
		if j.state.CompareAndSwap(s, s+1) {
			break
		}
	}
	slot := int(j.slots.Add(1)) - 1
	j.work(slot)
	if s := j.state.Add(^uint64(0)); s&closedBit != 0 && s&activeMask == 0 {
		j.done <- struct{}{}
	}
}

// work pulls items until none is left.
func (j *job) work(slot int) {
	for {
		i := int(j.next.Add(1)) - 1
		if i >= j.n {
			return
		}
		j.body.runItem(slot, i)
	}
}

// run runs items 0 … n−1 of body on the caller and up to helpers pool
// goroutines, and returns when all are done and no helper is inside.
func (j *job) run(body runner, n, helpers int) {
	if n <= 0 {
		return
	}
	helpers = min(helpers, n-1)
	if helpers <= 0 {
		for i := 0; i < n; i++ {
			body.runItem(0, i)
		}
		return
	}
	if j.done == nil {
		j.done = make(chan struct{}, 1)
	}
	gen := (j.state.Load()>>32 + 1) & (1<<32 - 1)
	j.body, j.n = body, n
	j.next.Store(0)
	j.slots.Store(1) // slot 0 is the caller's
	j.state.Store(gen << 32)
	ensureHelpers(helpers)
	for range helpers {
		select {
		case poolTickets <- ticket{j, gen}:
		default: // queue full: the caller and the helpers already in do the work
		}
	}
	j.work(0)
	if s := j.state.Or(closedBit); s&activeMask != 0 {
		// The items are all taken; wait for the helpers still running
		// theirs, polling first (see spinWait).
		start := time.Now()
		for j.state.Load()&activeMask != 0 && time.Since(start) < spinWait {
			runtime.Gosched()
		}
		<-j.done
	}
	j.body = nil
}

// freeList holds the scratch of finished calls for the next ones. Unlike a
// sync.Pool it is not emptied by the garbage collector, so a service that
// allocates elsewhere still reuses its scratch; it holds at most as many
// items as calls ever ran at once on its owner.
type freeList[T any] struct {
	mu    sync.Mutex
	items []*T
}

// get returns a pooled item, or a new zero one.
func (f *freeList[T]) get() *T {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.items); n > 0 {
		x := f.items[n-1]
		f.items[n-1] = nil
		f.items = f.items[:n-1]
		return x
	}
	return new(T)
}

// put pools x, which the caller has cleared of references to caller memory.
func (f *freeList[T]) put(x *T) {
	f.mu.Lock()
	f.items = append(f.items, x)
	f.mu.Unlock()
}
