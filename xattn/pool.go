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
// call has asked for; a helper that has had no ticket for helperIdle exits,
// so that a burst of calls with many threads does not leave its goroutines
// behind for the life of the process.
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

// helperIdle is how long a parked helper waits for a ticket before it
// exits. Starting a goroutine again costs about a microsecond; a service
// busy at least every few seconds keeps its helpers.
const helperIdle = 2 * time.Second

func helper(tickets <-chan ticket) {
	idle := time.NewTimer(helperIdle) // one per helper, reset at each park: nothing allocated per call
	idle.Stop()
	for {
		t, ok := spinRecv(tickets, idle)
		if !ok {
			poolMu.Lock()
			poolStarted.Add(-1)
			poolMu.Unlock()
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
// blocks for up to helperIdle on the timer idle; ok is false if none came.
func spinRecv(tickets <-chan ticket, idle *time.Timer) (t ticket, ok bool) {
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
	idle.Reset(helperIdle)
	select {
	case t = <-tickets:
		idle.Stop()
		return t, true
	case <-idle.C:
		return t, false
	}
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
//
// It does not keep what recent calls did not need: an item is pooled only
// while it holds at most retainBound of the most any call used in the last
// retainWindow to 2·retainWindow puts, and items pooled already are dropped
// (left to the garbage collector) when they exceed that. So after one huge
// call, 2·retainWindow ordinary ones release its scratch, while a steady
// stream of calls keeps and reuses theirs.
type freeList[T any] struct {
	mu    sync.Mutex
	items []pooled[T]
	puts  int    // puts in the current window
	need  [2]int // the most bytes a call used in the current window, and in the last
}

type pooled[T any] struct {
	x    *T
	held int // bytes
}

const (
	retainWindow = 32
	retainSlack  = 1 << 20 // bytes pooled whatever the recent calls needed
)

// retainBound is the most bytes an item may hold to stay pooled when the
// largest recent call used need bytes: twice that (a call that alternates
// between two paths holds the buffers of both), and a little more.
func retainBound(need int) int { return 2*need + retainSlack }

// get returns a pooled item, or a new zero one.
func (f *freeList[T]) get() *T {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.items); n > 0 {
		x := f.items[n-1].x
		f.items[n-1] = pooled[T]{}
		f.items = f.items[:n-1]
		return x
	}
	return new(T)
}

// put pools x, which the caller has cleared of references to caller memory,
// after a call that used used bytes of the held bytes x holds.
func (f *freeList[T]) put(x *T, used, held int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.need[0] = max(f.need[0], used)
	if f.puts++; f.puts == retainWindow {
		f.puts, f.need[1], f.need[0] = 0, f.need[0], 0
	}
	bound := retainBound(max(f.need[0], f.need[1]))
	n := 0
	for _, it := range f.items {
		if it.held <= bound {
			f.items[n] = it
			n++
		}
	}
	clear(f.items[n:])
	f.items = f.items[:n]
	if held <= bound {
		f.items = append(f.items, pooled[T]{x, held})
	}
}

// held returns the bytes the pooled items hold.
func (f *freeList[T]) held() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, it := range f.items {
		n += it.held
	}
	return n
}
