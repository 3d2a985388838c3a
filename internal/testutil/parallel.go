package testutil

import (
	"runtime"
	"sync"
	"testing"
)

// Parallel runs n goroutines at once and fails t (t.Error) with every error
// one returns. setup(g), called in the caller's goroutine, where it may call
// t.Fatal, prepares goroutine g and returns what it runs.
func Parallel(t testing.TB, n int, setup func(g int) func() error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range n {
		run := setup(g)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Spin starts n goroutines that yield to the scheduler in a loop, so that
// the goroutines of a concurrency test are preempted and moved between
// threads, and returns the function that stops them.
func Spin(n int) (stop func()) {
	done := make(chan struct{})
	for range n {
		go func() {
			for {
				select {
				case <-done:
					return
				default:
					runtime.Gosched()
				}
			}
		}()
	}
	return func() { close(done) }
}
