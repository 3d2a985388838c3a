package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// options is the parsed command line.
type options struct {
	presets []string
	// shape holds the free shape flags that were given, by flag name
	// (B, tq, tk, dq, dc, heads, dh, out).
	shape map[string]int
	bias  bool

	backend   string // openblas, pure, all, or "" for blas.Default()
	precision string // fp32, bf16 or all
	threads   int    // 0: the layer's default plan
	tileQ     int    // 0: the layer's default plan
	tileKV    int

	repeats int // 0: adaptive, see budget
	warmup  int // untimed calls before timing, at least
	// warmupTime is the least time spent in untimed calls before timing.
	warmupTime time.Duration
	budget     time.Duration // adaptive repeats stop after this much timing

	format string // table, json or csv
	out    string // file for the report, "" for stdout

	sweep *sweepSpec
	plot  string // file for the plot of a sweep
	plotY string // gflops or ms

	peers       []string
	python      string
	node        string
	scripts     string
	peerTimeout time.Duration

	from      string   // a saved report to print and plot instead of measuring
	compare   []string // old and new result files
	threshold float64  // relative change compare calls a regression

	peakN      int // side of the square GEMM of the %gemm probe; 0 skips it
	peakRounds int
	fmaProbe   bool // run the register-only peak probes of %peak
	peaksOnly  bool // run the peak probes alone, at 1…threads threads

	ref64  bool   // check every row against a float64 reference of the case
	inputs string // uniform or normal: how the weights and inputs are drawn

	rounds   int     // rounds over all cases; each case's samples span them
	requests int     // requests of the batch serving preset
	alpha    float64 // significance level of -compare's rank test

	progress string // auto, on or off
	seed     uint64

	heatmap      string // PNG of the example attention map; nothing is measured
	heatmapHead  int    // head of the map, -1 for the mean over heads
	heatmapBatch int    // batch element of the map
}

// sweepSpec is a -sweep flag: key is threads, tk, tq or batch.
type sweepSpec struct {
	key    string
	values []int
}

// shapeFlags are the free shape flags, in the order usage lists them.
var shapeFlags = []struct{ name, usage string }{
	{"B", "batch size"},
	{"tq", "query rows per sequence (Tq)"},
	{"tk", "keys per sequence (Tk)"},
	{"dq", "query features (QueryDim)"},
	{"dc", "context features (ContextDim)"},
	{"heads", "heads"},
	{"dh", "head size (HeadDim)"},
	{"out", "output features (OutDim)"},
}

// errHelp is returned for -h and -help: usage was printed, exit 0.
var errHelp = flag.ErrHelp

// parseArgs parses the command line. Usage and errors go to stderr.
func parseArgs(args []string, stderr io.Writer) (*options, error) {
	o := &options{shape: map[string]int{}}
	fs := flag.NewFlagSet("xbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var presetList, tile, sweep, peers, compare string
	fs.StringVar(&presetList, "preset", "", "comma-separated presets: "+presetNames()+" (default: all, or none with shape flags)")
	shapeVals := map[string]*int{}
	for _, f := range shapeFlags {
		shapeVals[f.name] = fs.Int(f.name, 0, f.usage+"; overrides the preset")
	}
	fs.BoolVar(&o.bias, "bias", false, "give the Q, K and V projections biases (the output projection always has one)")
	fs.StringVar(&o.backend, "backend", "", "openblas, pure or all (default: openblas when built in, else pure)")
	fs.StringVar(&o.precision, "precision", "fp32", "fp32, bf16 or all: the layer's precision (bf16: the BF16 kernel blas.BF16Default picks, XATTN_BF16 forces one)")
	fs.IntVar(&o.threads, "threads", 0, "worker threads of the layer, and of the peers and peak probe (default: the layer's plan)")
	fs.StringVar(&tile, "tile", "", "attention tile `q,kv`: query rows by keys (default: the layer's plan)")
	fs.IntVar(&o.repeats, "repeats", 0, "timed calls per case (default: adaptive, at least 3 and until -budget)")
	fs.IntVar(&o.warmup, "warmup", 2, "untimed calls before timing, at least (see -warmup-time)")
	fs.DurationVar(&o.warmupTime, "warmup-time", 100*time.Millisecond,
		"untimed calls go on until this much time is spent in them, after -warmup calls (0: -warmup calls alone); the peers make as many untimed calls as the xattn row did")
	fs.DurationVar(&o.budget, "budget", time.Second, "time spent in timed calls per case when -repeats is 0")
	fs.StringVar(&o.format, "format", "", "table, json or csv (default: from the -o extension, else table)")
	fs.StringVar(&o.out, "o", "", "write the report to this file instead of stdout (a table still goes to stdout)")
	fs.StringVar(&sweep, "sweep", "", "sweep one variable: threads=1,2 | tk=… | tq=… | batch=…; lo..hi doubles from lo to hi")
	fs.StringVar(&o.plot, "plot", "", "write a plot of the sweep to this .svg, .png or .pdf file")
	fs.StringVar(&o.plotY, "plot-y", "gflops", "what the plot shows: gflops or ms")
	fs.StringVar(&peers, "peers", "", "comma-separated peers to run beside xattn: torch, torch-bf16 (bf16 tensors), ort")
	fs.StringVar(&o.python, "python", "/usr/bin/python3", "interpreter with torch for the torch peer (Debian's python3-torch)")
	fs.StringVar(&o.node, "node", "node", "Node.js for the ort peer")
	fs.StringVar(&o.scripts, "scripts", "", "folder of peer_torch.py and peer_ort.js (default: scripts/ of the repository around the working directory)")
	fs.DurationVar(&o.peerTimeout, "peer-timeout", 10*time.Minute, "time limit of one peer run")
	fs.StringVar(&compare, "compare", "", "compare two result files: -compare old.json new.json (or old.json,new.json)")
	fs.StringVar(&o.from, "from", "", "print (and with -plot, plot) a saved JSON or CSV report instead of measuring")
	fs.Float64Var(&o.threshold, "threshold", 0.05, "relative time change that -compare reports as slower or faster")
	fs.IntVar(&o.peakN, "peak-n", 1536, "side n of the n³ product the %gemm probe runs per thread in the layer's kernel; 0 skips it")
	fs.IntVar(&o.peakRounds, "peak-rounds", 5, "timed rounds of each peak probe (best is kept)")
	fs.BoolVar(&o.fmaProbe, "fma-probe", true, "run the register-only FMA (and AMX) loops that %peak holds rows against")
	fs.BoolVar(&o.peaksOnly, "peaks", false, "measure nothing but the peak probes, at 1, 2, … up to -threads threads (default: the physical cores), or at the -sweep threads=… values")
	fs.IntVar(&o.rounds, "rounds", 1, "measure every case this many times, in rounds over all cases; the samples of all rounds are kept")
	fs.IntVar(&o.requests, "requests", 64, "requests of the batch serving preset")
	fs.Float64Var(&o.alpha, "alpha", 0.05, "-compare calls a difference only when the rank test's p-value is below this")
	fs.StringVar(&o.progress, "progress", "auto", "progress bar on stderr: auto (when a terminal), on or off")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the weights and inputs")
	fs.BoolVar(&o.ref64, "ref64", false, "compute each case's output in float64 (the FP32 layer's function, on all CPUs: seconds for the large presets) and report every row's max|y−ref|/max(1,‖ref‖∞) as f64 in its output column")
	fs.StringVar(&o.inputs, "inputs", "uniform", "uniform: weights as PyTorch's nn.Linear draws them and inputs in [−1, 1]; normal: inputs N(0,1) and weights N(0,1)/√fan-in")
	fs.StringVar(&o.heatmap, "heatmap", "", "instead of measuring, write the attention map of a small example layer (see the package doc) to this .png file")
	fs.IntVar(&o.heatmapHead, "heatmap-head", 0, fmt.Sprintf("head of the -heatmap, 0…%d, or -1 for the mean over heads", len(heatmapHeads)-1))
	fs.IntVar(&o.heatmapBatch, "heatmap-batch", 0, fmt.Sprintf("batch element of the -heatmap, 0…%d (batch 1 has its keys padded)", heatmapBatch-1))
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: xbench [run] [flags]\n       xbench compare old.json new.json   (-compare)\n"+
			"       xbench peaks [flags]              (-peaks)\n       xbench serving [flags]            (-preset serving)\n"+
			"       xbench heatmap [flags] out.png    (-heatmap)\n\n"+
			"Benchmarks xattn's cross-attention layer on this CPU.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	rest := fs.Args()
	fs.Visit(func(f *flag.Flag) {
		if v, ok := shapeVals[f.Name]; ok {
			o.shape[f.Name] = *v
		}
	})
	for name, v := range o.shape {
		if v < 1 {
			return nil, fmt.Errorf("-%s=%d: must be positive", name, v)
		}
	}
	o.presets = splitList(presetList)
	for _, p := range o.presets {
		if _, ok := findPreset(p); !ok && p != servingGroup {
			return nil, fmt.Errorf("-preset: unknown preset %q (have %s)", p, presetNames())
		}
	}
	o.peers = splitList(peers)
	for _, p := range o.peers {
		if p != "torch" && p != "torch-bf16" && p != "ort" {
			return nil, fmt.Errorf("-peers: unknown peer %q (have torch, torch-bf16, ort)", p)
		}
	}
	switch o.backend {
	case "", "openblas", "pure", "all":
	default:
		return nil, fmt.Errorf("-backend=%q: want openblas, pure or all", o.backend)
	}
	switch o.precision {
	case "fp32", "bf16", "all":
	default:
		return nil, fmt.Errorf("-precision=%q: want fp32, bf16 or all", o.precision)
	}
	if o.threads < 0 {
		return nil, fmt.Errorf("-threads=%d: must be positive", o.threads)
	}
	if tile != "" {
		v, err := parseInts(tile)
		if err != nil || len(v) != 2 || v[0] < 1 || v[1] < 1 {
			return nil, fmt.Errorf("-tile=%q: want two positive sizes q,kv", tile)
		}
		o.tileQ, o.tileKV = v[0], v[1]
	}
	if o.repeats < 0 || o.warmup < 0 || o.warmupTime < 0 {
		return nil, errors.New("-repeats, -warmup and -warmup-time must not be negative")
	}
	if o.inputs != "uniform" && o.inputs != "normal" {
		return nil, fmt.Errorf("-inputs=%q: want uniform or normal", o.inputs)
	}
	if o.budget <= 0 {
		return nil, fmt.Errorf("-budget=%v: must be positive", o.budget)
	}
	if o.format == "" {
		switch strings.ToLower(filepath.Ext(o.out)) {
		case ".json":
			o.format = "json"
		case ".csv":
			o.format = "csv"
		default:
			o.format = "table"
		}
	}
	switch o.format {
	case "table", "json", "csv":
	default:
		return nil, fmt.Errorf("-format=%q: want table, json or csv", o.format)
	}
	if sweep != "" {
		s, err := parseSweep(sweep)
		if err != nil {
			return nil, err
		}
		o.sweep = s
	}
	if o.plot != "" {
		if o.sweep == nil && o.from == "" {
			return nil, errors.New("-plot needs -sweep")
		}
		switch strings.ToLower(filepath.Ext(o.plot)) {
		case ".svg", ".png", ".pdf":
		default:
			return nil, fmt.Errorf("-plot=%q: want a .svg, .png or .pdf file", o.plot)
		}
	}
	if o.plotY != "gflops" && o.plotY != "ms" {
		return nil, fmt.Errorf("-plot-y=%q: want gflops or ms", o.plotY)
	}
	if o.peakN < 0 {
		return nil, fmt.Errorf("-peak-n=%d: must not be negative", o.peakN)
	}
	if o.peakRounds < 1 {
		return nil, fmt.Errorf("-peak-rounds=%d: must be positive", o.peakRounds)
	}
	if o.rounds < 1 {
		return nil, fmt.Errorf("-rounds=%d: must be positive", o.rounds)
	}
	if o.requests < 1 {
		return nil, fmt.Errorf("-requests=%d: must be positive", o.requests)
	}
	if !(o.alpha > 0 && o.alpha < 1) {
		return nil, fmt.Errorf("-alpha=%v: want a level between 0 and 1", o.alpha)
	}
	switch o.progress {
	case "auto", "on", "off":
	default:
		return nil, fmt.Errorf("-progress=%q: want auto, on or off", o.progress)
	}
	if compare != "" {
		o.compare = splitList(compare)
		if len(o.compare) == 1 && len(rest) == 1 {
			o.compare = append(o.compare, rest[0])
			rest = nil
		}
		if len(o.compare) != 2 {
			return nil, errors.New("-compare needs two files: -compare old.json new.json")
		}
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", rest)
	}
	if o.peaksOnly && (o.sweep != nil && o.sweep.key != "threads" || o.compare != nil || o.from != "" || o.peers != nil || o.heatmap != "") {
		return nil, errors.New("-peaks runs the probes alone: drop -compare, -from, -peers, -heatmap and sweeps other than threads")
	}
	if err := o.checkHeatmap(); err != nil {
		return nil, err
	}
	return o, nil
}

// checkHeatmap checks the -heatmap flags: the map is drawn alone, so the
// flags of a measurement or a report do not go with it.
func (o *options) checkHeatmap() error {
	if o.heatmap == "" {
		return nil
	}
	if !strings.EqualFold(filepath.Ext(o.heatmap), ".png") {
		return fmt.Errorf("-heatmap=%q: want a .png file", o.heatmap)
	}
	if o.heatmapHead < -1 || o.heatmapHead >= len(heatmapHeads) {
		return fmt.Errorf("-heatmap-head=%d: want 0…%d, or -1 for the mean", o.heatmapHead, len(heatmapHeads)-1)
	}
	if o.heatmapBatch < 0 || o.heatmapBatch >= heatmapBatch {
		return fmt.Errorf("-heatmap-batch=%d: want 0…%d", o.heatmapBatch, heatmapBatch-1)
	}
	if o.compare != nil || o.from != "" || o.sweep != nil || o.plot != "" || o.peers != nil || o.out != "" {
		return errors.New("-heatmap draws the example map alone: drop -compare, -from, -sweep, -plot, -peers and -o")
	}
	return nil
}

// shapeSet reports whether any free shape flag was given.
func (o *options) shapeSet() bool { return len(o.shape) > 0 }

// applyShape overrides the shape of c with the free shape flags given.
func (o *options) applyShape(c *benchCase) {
	for name, v := range o.shape {
		switch name {
		case "B":
			c.shape.Batch = v
		case "tq":
			c.shape.Tq = v
		case "tk":
			c.shape.Tk = v
		case "dq":
			c.cfg.QueryDim = v
		case "dc":
			c.cfg.ContextDim = v
		case "heads":
			c.cfg.Heads = v
		case "dh":
			c.cfg.HeadDim = v
		case "out":
			c.cfg.OutDim = v
		}
	}
	c.cfg.Bias = o.bias
}

// parseSweep parses "key=v1,v2,…" where a value may be a doubling range
// lo..hi (lo, 2lo, 4lo, … up to hi).
func parseSweep(s string) (*sweepSpec, error) {
	key, list, ok := strings.Cut(s, "=")
	if !ok {
		return nil, fmt.Errorf("-sweep=%q: want key=values, like threads=1,2", s)
	}
	key = strings.ToLower(strings.TrimSpace(key))
	switch key {
	case "threads", "tk", "tq", "batch":
	case "b":
		key = "batch"
	default:
		return nil, fmt.Errorf("-sweep: unknown variable %q (have threads, tk, tq, batch)", key)
	}
	var vals []int
	for _, f := range splitList(list) {
		if lo, hi, ok := strings.Cut(f, ".."); ok {
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || a < 1 || b < a {
				return nil, fmt.Errorf("-sweep: bad range %q", f)
			}
			for v := a; v <= b; v *= 2 {
				vals = append(vals, v)
			}
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("-sweep: bad value %q", f)
		}
		vals = append(vals, v)
	}
	if len(vals) == 0 {
		return nil, fmt.Errorf("-sweep=%q: no values", s)
	}
	sort.Ints(vals)
	uniq := vals[:1]
	for _, v := range vals[1:] {
		if v != uniq[len(uniq)-1] {
			uniq = append(uniq, v)
		}
	}
	return &sweepSpec{key: key, values: uniq}, nil
}

// splitList splits a comma-separated list, dropping empty items and spaces.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseInts parses a comma-separated list of integers.
func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		v, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
