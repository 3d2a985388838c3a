package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress draws a one-line progress bar on a terminal: units done out of
// total, elapsed time and what runs now. It stays silent for the first
// delay, so short runs print nothing, and it is drawn only from the
// goroutine that runs the benchmark (never during a timed call: tick is
// called between calls).
type progress struct {
	w           io.Writer
	on          bool
	total, done int
	label       string
	start, last time.Time
	delay       time.Duration
	drawn       bool
}

// newProgress returns a progress bar on w for total units. mode is auto
// (draw when w is a terminal), on or off.
func newProgress(w io.Writer, mode string, total int) *progress {
	on := mode == "on"
	if mode == "auto" {
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				on = true
			}
		}
	}
	return &progress{w: w, on: on, total: max(total, 1), start: time.Now(), delay: 2 * time.Second}
}

// begin names the unit that starts now.
func (p *progress) begin(label string) {
	if p == nil {
		return
	}
	p.label = label
	p.tick()
}

// end counts the current unit done.
func (p *progress) end() {
	if p == nil {
		return
	}
	p.done++
	p.tick()
}

// tick redraws the bar if it is due: at most ten times a second, and only
// once the run has lasted longer than the delay.
func (p *progress) tick() {
	if p == nil || !p.on {
		return
	}
	now := time.Now()
	if now.Sub(p.start) < p.delay || now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	const width = 24
	fill := width * min(p.done, p.total) / p.total
	bar := strings.Repeat("#", fill) + strings.Repeat("-", width-fill)
	fmt.Fprintf(p.w, "\r\x1b[K[%s] %d/%d %5.1fs  %s", bar, p.done, p.total, now.Sub(p.start).Seconds(), p.label)
	p.drawn = true
}

// finish erases the bar.
func (p *progress) finish() {
	if p == nil || !p.drawn {
		return
	}
	fmt.Fprint(p.w, "\r\x1b[K")
	p.drawn = false
}
