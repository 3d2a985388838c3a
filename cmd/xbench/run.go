package main

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"time"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// problem is one case's weights and inputs, shared by every backend and
// peer that runs it.
type problem struct {
	c      benchCase
	w      *xattn.Weights
	x, ctx []float32
	scale  float32 // the resolved Config.Scale, 1/√HeadDim
	seed   uint64
	// selfSeq holds B sequences of Tk+Tq rows of QueryDim features, the
	// self-attention input of the decode-step modes.
	selfSeq []float32
	// ref64 is the output computed in float64 (-ref64), or nil.
	ref64 []float64
}

// newProblem draws the weights (PyTorch's nn.Linear distribution) and inputs
// (uniform in [−1, 1]) of c from seed.
func newProblem(c benchCase, seed uint64) (*problem, error) {
	w, err := xattn.NewWeights(c.cfg, seed)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x78626e63)) // "xbnc"
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(2*rng.Float64() - 1)
		}
		return s
	}
	sh := c.shape
	p := &problem{c: c, w: w,
		x:     fill(sh.Batch * sh.Tq * c.cfg.QueryDim),
		ctx:   fill(sh.Batch * sh.Tk * contextDim(c.cfg)),
		scale: c.cfg.Scale,
		seed:  seed,
	}
	if c.mode == modeKVStep || c.mode == modeCausal {
		p.selfSeq = fill(sh.Batch * (sh.Tk + sh.Tq) * c.cfg.QueryDim)
	}
	if p.scale == 0 {
		p.scale = float32(1 / math.Sqrt(float64(c.cfg.HeadDim)))
	}
	return p, nil
}

// contextDim resolves the default of Config.ContextDim.
func contextDim(c xattn.Config) int {
	if c.ContextDim == 0 {
		return c.QueryDim
	}
	return c.ContextDim
}

// outDim resolves the default of Config.OutDim.
func outDim(c xattn.Config) int {
	if c.OutDim == 0 {
		return c.QueryDim
	}
	return c.OutDim
}

// baseResult fills the fields of a result that depend on the case only.
func baseResult(c benchCase, impl, kind string) Result {
	return Result{
		Case: c.name, Impl: impl, Kind: kind,
		Batch: c.shape.Batch, Tq: c.shape.Tq, Tk: c.shape.Tk,
		QueryDim: c.cfg.QueryDim, ContextDim: contextDim(c.cfg), Heads: c.cfg.Heads,
		HeadDim: c.cfg.HeadDim, OutDim: outDim(c.cfg), Bias: c.cfg.Bias,
		FLOPs: xattn.FLOPs(c.cfg, c.shape),
		Sweep: c.sweep, Value: c.value, Mode: c.mode,
	}
}

// maxRepeats bounds adaptive repeats, and the preallocated timing buffer.
const maxRepeats = 1000

// benchLayer measures the call of p's mode (a plain ForwardInto, or a
// serving call; see servingCall) on be: o.warmup untimed calls, then timed
// calls into preallocated outputs (o.repeats of them, or adaptively at least
// 3 and until o.budget is spent), then a separate pass that counts heap
// allocations per call. It returns the result and the output of the last
// call.
func benchLayer(p *problem, be blas.Backend, o *options, prog *progress) (Result, []float32, error) {
	c := p.c
	r := baseResult(c, implName(be), "xattn")
	opts := []xattn.Option{xattn.WithBackend(be)}
	if c.threads > 0 {
		opts = append(opts, xattn.WithThreads(c.threads))
	}
	if o.tileQ > 0 {
		opts = append(opts, xattn.WithTile(o.tileQ, o.tileKV))
	}
	debug.FreeOSMemory() // drop the previous case's garbage before measuring the peak
	resetPeakRSS()
	l, err := xattn.New(c.cfg, p.w, opts...)
	if err != nil {
		return r, nil, err
	}
	plan := l.Plan()
	r.Threads, r.QBlock, r.KVBlock, r.ISA, r.Plan = plan.Threads, plan.QBlock, plan.KVBlock, plan.ISA, l.String()
	if kn, ok := blas.BF16KernelOf(be); ok {
		r.ISA = "bf16-" + kn.Name() // the peak it is held against: peakISA
	} else if be.Name() == "pure" {
		// Plan.ISA is what the CPU offers; the pure kernels are Go with
		// gonum's SSE assembly whatever it says.
		r.ISA = "go/sse"
	}
	// The plan's tiles are clamped to the real lengths when a call runs.
	r.QBlock, r.KVBlock = min(r.QBlock, c.shape.Tq), min(r.KVBlock, c.shape.Tk)
	call, out, err := servingCall(l, p, &r)
	if err != nil {
		return r, nil, err
	}
	limit := maxRepeats
	if o.repeats > 0 {
		limit = min(o.repeats, maxRepeats)
	}
	times := make([]time.Duration, limit)
	// No collection of earlier garbage inside the timed calls; and none
	// just before them either: the collection's workers run on every core,
	// and the threads of the call are placed anew after it (measured here,
	// tiny then ran at 0.3 ms for a few calls, its two threads on one core).
	runtime.GC()

	// Warm up by count and by time: a call of a fraction of a millisecond
	// finds, after the previous case (or a peer's process), its weights out
	// of the caches and the cores it ran on asleep; measured here, tiny's
	// first calls took 0.4–0.7 ms where 0.15 ms is usual, and two warm-up
	// calls left them in the median of nine.
	warm, warmed := 0, time.Duration(0)
	for ; warm < o.warmup || warmed < o.warmupTime; warm++ {
		t0 := time.Now()
		if err := call(); err != nil {
			return r, nil, err
		}
		warmed += time.Since(t0)
		if warm < o.warmup {
			prog.tick()
		}
	}

	var spent time.Duration
	n := 0
	for n < limit {
		t0 := time.Now()
		err := call()
		d := time.Since(t0)
		if err != nil {
			return r, nil, err
		}
		times[n] = d
		n++
		spent += d
		prog.tick() // outside the timed call
		if o.repeats == 0 && n >= 3 && spent >= o.budget {
			break
		}
	}
	times = times[:n]
	r.Warmup, r.Repeats, r.Rounds = warm, n, 1
	r.SamplesMs = make([]float64, n)
	for i, d := range times {
		r.SamplesMs[i] = float64(d) / 1e6
	}
	r.summarize()

	// Allocations per call, counted apart from the timed loop so that the
	// progress bar's own allocations stay out: ~200 ms worth of calls.
	k := int(min(max(200/r.MedianMs, 1), 20))
	allocs, bytes := heapAllocs()
	for range k {
		if err := call(); err != nil {
			return r, nil, err
		}
	}
	a2, b2 := heapAllocs()
	r.AllocsPerOp = float64(a2-allocs) / float64(k)
	r.BytesPerOp = float64(b2-bytes) / float64(k)
	r.PeakRSSMiB = float64(peakRSS()) / (1 << 20)
	r.State = stateOK
	return r, out(), nil
}

// summarize sets the median, min, max and GFLOP/s of r from its samples.
func (r *Result) summarize() {
	ts := make([]time.Duration, len(r.SamplesMs))
	for i, ms := range r.SamplesMs {
		ts[i] = time.Duration(ms * 1e6)
	}
	r.MedianMs, r.MinMs, r.MaxMs = summarize(ts)
	if r.MedianMs > 0 {
		r.GFLOPs = r.FLOPs / (r.MedianMs * 1e6)
	}
}

// addRound adds the samples of another round of the same case to r.
func (r *Result) addRound(x *Result) {
	r.SamplesMs = append(r.SamplesMs, x.SamplesMs...)
	r.Repeats += x.Repeats
	r.Rounds++
	r.AllocsPerOp = max(r.AllocsPerOp, x.AllocsPerOp)
	r.BytesPerOp = max(r.BytesPerOp, x.BytesPerOp)
	r.PeakRSSMiB = max(r.PeakRSSMiB, x.PeakRSSMiB)
	r.summarize()
}

// workGFLOPs is the work r's call did (WorkFLOPs where the layer did less
// than FLOPs counts) over its median time.
func (r *Result) workGFLOPs() float64 {
	if r.MedianMs <= 0 {
		return 0
	}
	w := r.FLOPs
	if r.WorkFLOPs > 0 {
		w = r.WorkFLOPs
	}
	return w / (r.MedianMs * 1e6)
}

// summarize returns the median, minimum and maximum of ts in milliseconds.
func summarize(ts []time.Duration) (median, lo, hi float64) {
	if len(ts) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ts)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	n := len(s)
	median = ms(s[n/2])
	if n%2 == 0 {
		median = (ms(s[n/2-1]) + ms(s[n/2])) / 2
	}
	return median, ms(s[0]), ms(s[n-1])
}

// heapAllocs returns the cumulative count and bytes of heap allocations.
func heapAllocs() (objects, bytes uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		objects = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		bytes = s[1].Value.Uint64()
	}
	return objects, bytes
}

// agreement compares got with the reference output: max|Δ| and the bound
// 1e-4·max(1, ‖ref‖∞). The layer's outputs are sums of products rounded to
// float32 in orders that differ between implementations; their errors
// relative to ‖y‖∞ stay orders of magnitude under 1e-4 for these sizes, so a
// wrong result (a swapped head, a missing scale) fails it clearly. A NaN or
// a length mismatch fails.
func agreement(ref, got []float32) (diff, tol float64, ok bool) {
	tol = 1e-4 * math.Max(1, maxAbs(ref))
	if len(ref) != len(got) {
		return math.Inf(1), tol, false
	}
	for i, v := range got {
		d := math.Abs(float64(v) - float64(ref[i]))
		if math.IsNaN(d) {
			return math.NaN(), tol, false
		}
		diff = math.Max(diff, d)
	}
	return diff, tol, diff <= tol
}

// maxAbs returns ‖y‖∞.
func maxAbs(y []float32) float64 {
	m := 0.0
	for _, v := range y {
		m = math.Max(m, math.Abs(float64(v)))
	}
	return m
}

// setAgreement records in r how out compares with the reference output.
func setAgreement(r *Result, ref, out []float32) {
	d, tol, ok := agreement(ref, out)
	if strings.HasPrefix(r.ISA, "bf16-") {
		// BF16 against an FP32 reference: the bound of the BF16 precision.
		tol = 2e-2 * math.Max(1, maxAbs(ref))
		ok = d <= tol
	}
	r.MaxAbsDiff, r.Tol = d, tol
	r.Agree = "ok"
	if !ok {
		r.Agree = "FAIL"
	}
	if math.IsNaN(d) || math.IsInf(d, 0) { // not representable in JSON
		r.MaxAbsDiff = -1
		r.Detail = "output has NaN or the wrong length"
	}
}

// pickBackends returns the backends -backend names, in the precisions
// -precision names: each FP32 backend, then the same in BF16
// (blas.WithBF16 with blas.BF16Default's kernel).
func pickBackends(name, precision string) ([]blas.Backend, error) {
	bes, err := namedBackends(name)
	if err != nil || precision == "fp32" {
		return bes, err
	}
	if note := blas.BF16DefaultNote(); note != "" {
		return nil, errors.New(note)
	}
	var out []blas.Backend
	if precision == "all" {
		out = append(out, bes...)
	}
	for _, be := range bes {
		b, err := blas.WithBF16(be, blas.BF16Default())
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// implName is the Impl of a result on be: its name, with "-bf16" for a
// BF16 backend.
func implName(be blas.Backend) string {
	if _, ok := blas.BF16KernelOf(be); ok {
		return be.Name() + "-bf16"
	}
	return be.Name()
}

// namedBackends returns the FP32 backends -backend names.
func namedBackends(name string) ([]blas.Backend, error) {
	switch name {
	case "":
		return []blas.Backend{blas.Default()}, nil
	case "all":
		return blas.All(), nil
	}
	for _, b := range blas.All() {
		if b.Name() == name {
			return []blas.Backend{b}, nil
		}
	}
	return nil, fmt.Errorf("-backend=%s: not in this binary (built with CGO_ENABLED=0 or -tags purego?); have %s",
		name, collectEnv().Backends)
}
