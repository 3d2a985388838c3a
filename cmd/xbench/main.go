// Command xbench benchmarks xattn's multi-head cross-attention layer on this
// CPU and says how fast it is and how close to the machine's limit.
//
//	go run ./cmd/xbench                      # the four presets, a table
//	go run ./cmd/xbench -preset serving      # the serving calls beside the plain ones
//	go run ./cmd/xbench -peaks               # the peak probes alone, at 1…cores threads
//	go run ./cmd/xbench -preset sd_unet64 -peers torch,ort
//	go run ./cmd/xbench -preset decoder -sweep threads=1,2 -plot threads.svg
//	go run ./cmd/xbench -sweep tk=64..4096 -preset sd_unet64 -o tk.json
//	go run ./cmd/xbench -rounds 5 -o new.json && go run ./cmd/xbench -compare old.json new.json
//	go run ./cmd/xbench -heatmap docs/heatmap.png
//
// The first word may name the job instead of its flag: xbench run […],
// xbench compare old.json new.json, xbench peaks, xbench serving […] and
// xbench heatmap [flags] out.png.
//
// # What it measures
//
// Each case (a preset, a shape given by flags, or a point of a sweep) is
// run on each backend asked for: a Layer with those weights, warm-up calls,
// then timed calls of Layer.ForwardInto into a preallocated output (a fixed
// count, or adaptively at least 3 and about a second's worth), in -rounds
// rounds over all cases. Every call's time is kept (samples_ms). It reports
// the median, min and max time, GFLOP/s by xattn.FLOPs over the median, Go
// heap allocations per call (counted in a separate pass), the process's peak
// resident memory during the case, %peak and %gemm. The header names the
// CPU, its caches and vector ISA, the Go version and GOMAXPROCS, OpenBLAS's
// config and core, and the OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE variables,
// which choose OpenBLAS's kernels when set.
//
// # Peaks
//
// %peak holds a row's work over its median against xbench's own peak probe
// of the ISA its products run, at the same thread count (see Peak): a
// register-only loop per vector ISA in amd64 assembly, independent of any
// BLAS (12 chains of VFMADD231PS zmm for AVX-512, ymm for AVX2, multiplies
// and adds for AVX, SSE and scalar code), 12 chains of VDPBF16PS zmm where
// the CPU has AVX512-BF16, and AMX BF16 tile products where the CPU and OS
// allow them (on Linux after arch_prctl's permission; a refusal is reported
// with its reason). A BF16 row is held against the loop of its kernel's
// instructions, a bf16 peer against the CPU's best bf16 loop. xattn's products run on its own
// AVX-512 kernel on AVX-512 CPUs, else on OpenBLAS's core; the pure
// backend's on gonum's SSE loops. A row the layer ran in its absorbed form
// is held to the absorbed form's work, not to what FLOPs counts; a %peak
// above 100% is reported as a bug. %gemm holds it against a large product
// in the kernel the row's backend runs (-peak-n). Outside amd64 there is
// no register probe, and no %peak.
//
// OpenBLAS's core is checked against the CPU: a fallback to kernels below
// what the CPU runs (Debian's OpenBLAS 0.3.21 picks SSE3 Prescott on
// Xeons it does not know) is a warning with the OPENBLAS_CORETYPE that
// fixes it.
//
// # Serving
//
// -preset serving (or decoder_step, kv_step, batch) measures the calls a
// server makes beside the plain calls they replace, and prints the
// speed-up: a decoder step against a Context projected once
// (ProjectContext, ForwardContext) and ForwardInto projecting it again; a
// decode step of Tq rows against a KVCache holding Tk (ForwardStep) and a
// causal ForwardInto over all Tk+Tq rows; -requests small requests in one
// ForwardBatch and one ForwardInto each. They are xattn's
// BenchmarkDecoderStep, BenchmarkSelfStep and BenchmarkForwardBatch.
//
// # Peers
//
// -peers torch,ort runs PyTorch and ONNX Runtime on the same weights and
// inputs, at the same thread count and repeat count, through the scripts in
// scripts/ (install them with scripts/peers-setup.sh), prints their times as
// ratios to xattn's, and checks that their outputs agree with xattn's to
// 1e-4·max(1, ‖y‖∞). A peer missing on the machine is reported absent.
//
// # Output
//
// -format table (default), json or csv; -o writes to a file. A CSV report
// keeps the environment and the probes as "# key: value" lines above its
// header, and leaves unmeasured values empty. -from prints a saved report.
// -compare reads two JSON (or CSV) reports and, per result, runs a
// Mann–Whitney U test over the two sets of timed calls: it calls a change
// slower or faster only when p < -alpha and the medians differ by more
// than -threshold, and it lists every difference of CPU, kernels,
// OpenBLAS core, GOMAXPROCS or environment variables between the files.
// -plot draws a sweep with gonum.org/v1/plot.
//
// # Attention heatmap
//
// -heatmap out.png measures nothing: it builds a small example layer whose
// attention pattern is known (24 queries over 32 keys, four heads that each
// attend to a Gaussian window of keys around the query's aligned position,
// shifted or widened per head; see heatmapExample), computes its attention
// probabilities with Layer.AttentionMap and draws one head's 24×32 map
// (-heatmap-head, or -1 for the mean over heads) of one batch element
// (-heatmap-batch; batch 1 has its keys padded to 24) as a heat map with
// query index down, key index across and a colour bar.
//
// xbench exits 0 on success, 1 when a run fails or an output disagrees, and
// 2 on a usage error.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/cpuid/v2"
	"github.com/xattn/xattn/blas"
)

func main() {
	os.Exit(xbench(os.Args[1:], os.Stdout, os.Stderr))
}

// subcommands map the first word of a command line to the flags it stands
// for: "xbench compare a b" is "xbench -compare a b", and so on; every flag
// still works with or without them.
var subcommands = map[string]func(rest []string) []string{
	"run":     func(rest []string) []string { return rest },
	"compare": func(rest []string) []string { return append([]string{"-compare"}, rest...) },
	"peaks":   func(rest []string) []string { return append([]string{"-peaks"}, rest...) },
	"serving": func(rest []string) []string { return append([]string{"-preset", servingGroup}, rest...) },
	"heatmap": func(rest []string) []string {
		// xbench heatmap [flags] out.png: the last argument is the file.
		if n := len(rest); n > 0 && !strings.HasPrefix(rest[n-1], "-") {
			return append([]string{"-heatmap", rest[n-1]}, rest[:n-1]...)
		}
		return append([]string{"-heatmap", "heatmap.png"}, rest...)
	},
}

// xbench runs the command with args and returns its exit status.
func xbench(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if sub, ok := subcommands[args[0]]; ok {
			args = sub(args[1:])
		}
	}
	o, err := parseArgs(args, stderr)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "xbench:", err)
		return 2
	}
	if o.heatmap != "" {
		if err := runHeatmap(o, stderr); err != nil {
			fmt.Fprintln(stderr, "xbench:", err)
			return 1
		}
		return 0
	}
	if o.peaksOnly {
		return runPeaks(o, stdout, stderr)
	}
	if o.compare != nil {
		if err := runCompare(o, stdout); err != nil {
			fmt.Fprintln(stderr, "xbench:", err)
			return 1
		}
		return 0
	}
	var rep *Report
	failed := false
	if o.from != "" {
		if rep, err = readReport(o.from); err != nil {
			fmt.Fprintln(stderr, "xbench:", err)
			return 1
		}
	} else {
		cases, err := buildCases(o)
		if err != nil {
			fmt.Fprintln(stderr, "xbench:", err)
			return 2
		}
		backends, err := pickBackends(o.backend, o.precision)
		if err != nil {
			fmt.Fprintln(stderr, "xbench:", err)
			return 2
		}
		rep, failed = measure(o, cases, backends, stderr)
	}

	if o.out != "" {
		if err := writeFile(o.out, rep, o.format); err != nil {
			fmt.Fprintln(stderr, "xbench:", err)
			return 1
		}
		fmt.Fprintf(stderr, "xbench: wrote %s\n", o.out)
		if err := writeTable(stdout, rep); err != nil {
			return 1
		}
	} else if err := writeReport(stdout, rep, o.format); err != nil {
		fmt.Fprintln(stderr, "xbench:", err)
		return 1
	}
	if o.plot != "" {
		if err := writePlot(o.plot, rep, o.plotY); err != nil {
			fmt.Fprintln(stderr, "xbench:", err)
			return 1
		}
		fmt.Fprintf(stderr, "xbench: wrote %s\n", o.plot)
	}
	if failed {
		return 1
	}
	return 0
}

// measure runs every case on every backend, then the peers, and returns the
// report and whether anything failed (an error, or outputs that disagree).
func measure(o *options, cases []benchCase, backends []blas.Backend, stderr io.Writer) (*Report, bool) {
	rep := &Report{Env: collectEnv()}
	probe := newPeakProbe(o.peakN, o.peakRounds, o.fmaProbe)
	rep.ProbeSkipped = probe.skipped
	var peers *peerSet
	if len(o.peers) > 0 {
		peers = newPeerSet(o)
	}
	prog := newProgress(stderr, o.progress, len(cases)*(o.rounds*len(backends)+len(o.peers)))
	defer prog.finish()
	failed := false
	probs := make([]*problem, len(cases))
	for i, c := range cases {
		p, err := newProblem(c, o.seed)
		if err != nil {
			fmt.Fprintf(stderr, "xbench: %s: %v\n", c.name, err)
			failed = true
			continue
		}
		if o.inputs == "normal" {
			normalProblem(p)
		}
		if o.ref64 && c.mode == "" {
			prog.begin(c.name + " float64 reference")
			p.ref64 = reference64(p)
			prog.end()
		}
		probs[i] = p
	}
	// Rounds: every case on every backend once per round, so that each
	// case's samples span the whole run rather than one moment of it.
	type slot struct {
		r Result
		y []float32
	}
	slots := make([][]slot, len(cases))
	for round := range o.rounds {
		for i, p := range probs {
			if p == nil {
				continue
			}
			if round == 0 {
				slots[i] = make([]slot, len(backends))
			}
			for j, be := range backends {
				s := &slots[i][j]
				if round > 0 && s.r.State != stateOK {
					continue
				}
				prog.begin(fmt.Sprintf("%s %s", p.c.name, be.Name()))
				r, y, err := benchLayer(p, be, o, prog)
				switch {
				case err != nil:
					r.State, r.Detail = stateError, err.Error()
					s.r, s.y = r, nil
				case round == 0:
					s.r, s.y = r, y
				default:
					s.r.addRound(&r)
					s.y = y
				}
				prog.end()
			}
		}
	}
	for i, p := range probs {
		if p == nil {
			continue
		}
		c := p.c
		var ref *Result
		var refY []float32
		for j, be := range backends {
			r, y := slots[i][j].r, slots[i][j].y
			if r.State == stateError {
				failed = true
			} else {
				// The probes again after each case, the best reading
				// kept: on a shared machine a probe that ran while
				// others were busy reads low, never high.
				prog.begin("peak probes")
				probe.allFMA(r.Threads)
				probe.again(peakISA(&r, rep.Env.OpenBLAS, probe.best()), be, r.Threads)
				prog.end()
				setRef64(&r, p, y)
				if ref == nil {
					r.Agree, r.VsRef, r.YNorm = "ref", 1, maxAbs(y)
				} else {
					setAgreement(&r, refY, y)
					r.VsRef = r.MedianMs / ref.MedianMs
					failed = failed || r.Agree == "FAIL"
				}
			}
			rep.Results = append(rep.Results, r)
			if ref == nil && r.State == stateOK {
				ref, refY = &r, y // a copy: rep.Results may move as it grows
			}
		}
		if peers == nil || c.mode != "" {
			continue
		}
		if ref == nil {
			fmt.Fprintf(stderr, "xbench: %s: no xattn result to run the peers against\n", c.name)
			continue
		}
		threads, warmup, repeats, refMs := ref.Threads, ref.Warmup, ref.Repeats, ref.MedianMs
		for _, r := range peers.run(p, threads, warmup, repeats, refY, refMs, prog) {
			if r.State == stateOK {
				probe.allFMA(r.Threads)
				probe.again(peakISA(&r, rep.Env.OpenBLAS, probe.best()), nil, r.Threads)
				failed = failed || r.Agree == "FAIL"
			} else if r.State == stateError {
				failed = true
			}
			rep.Results = append(rep.Results, r)
		}
	}
	setSpeedups(rep.Results)
	for i := range rep.Results {
		if r := &rep.Results[i]; r.State == stateOK {
			setPeak(r, probe, &rep.Env)
		}
	}
	rep.Peaks = probe.list()
	return rep, failed
}

// setPeak sets the %peak of r against the register-loop probe of the ISA
// its products run (see peakISA), and the %gemm of an xattn result against
// the GEMM probe of its backend, both as measured so far.
func setPeak(r *Result, probe *peakProbe, env *Env) {
	r.PeakISA = peakISA(r, env.OpenBLAS, probe.best())
	if pk := probe.fma(r.PeakISA, r.Threads); pk != nil {
		r.PeakGFLOPs, r.PctPeak = pk.GFLOPs, 100*r.workGFLOPs()/pk.GFLOPs
	}
	if r.Kind != "xattn" {
		return
	}
	for _, be := range blas.All() {
		if be.Name() == r.Impl {
			if pk := probe.gemm(be, r.Threads); pk != nil {
				r.GemmGFLOPs, r.PctGemm = pk.GFLOPs, 100*r.workGFLOPs()/pk.GFLOPs
			}
		}
	}
}

// peakISA is the ISA of the kernels that run the products of r, whose
// register-loop peak %peak holds it against: xattn's AVX-512 kernel on
// AVX-512 CPUs (blas.Info.Kernel "xattn-avx512"), else the ISA of
// OpenBLAS's core; for a BF16 row the loop of its kernel's instructions
// (AMX's tile loop for the amx kernel, the VDPBF16PS loop for avx512bf16,
// the fp32 loop of the code of the kernels that round and multiply in
// fp32: avx512 for rounded, sse for rounded-scalar, scalar for pure);
// SSE for the pure backend (gonum's SGEMM multiplies and adds with SSE);
// for a peer, whose kernels xbench cannot see, the CPU's best loop of the
// peer's precision (bf16 peers: the best bf16 loop, else the best fp32).
func peakISA(r *Result, ob OpenBLASEnv, best bestISAs) string {
	bf16 := strings.HasPrefix(r.ISA, "bf16-")
	switch {
	case r.Kind == "peer" && bf16 && best.BF16 != "":
		return best.BF16
	case r.Kind == "peer":
		return best.FP32
	case r.ISA == "bf16-amx":
		return "amx-bf16" // the tile loop's peak
	case r.ISA == "bf16-avx512bf16":
		return "avx512bf16" // the VDPBF16PS loop's
	case r.ISA == "bf16-rounded":
		return "avx512" // rounded operands, fp32 FMAs in AVX-512 C
	case r.ISA == "bf16-rounded-scalar":
		return "sse" // the same C for any x86-64: at best SSE
	case r.ISA == "bf16-pure":
		return "scalar" // Go's scalar multiplies and adds
	case r.Impl == "pure":
		return "sse"
	case r.Impl == "openblas" && ob.Kernel == "xattn-avx512":
		return "avx512"
	case r.Impl == "openblas":
		if isa := coreISA(ob.CoreName); isa != "?" {
			return isa
		}
	}
	return best.FP32
}

// runPeaks is xbench -peaks: the probes alone at each thread count, as a
// header (or a JSON or CSV report with no results).
func runPeaks(o *options, stdout, stderr io.Writer) int {
	var threads []int
	switch {
	case o.sweep != nil:
		threads = o.sweep.values
	default:
		n := o.threads
		if n == 0 {
			n = max(cpuid.CPU.PhysicalCores, 1)
		}
		for t := 1; t <= n; t++ {
			threads = append(threads, t)
		}
	}
	rep := &Report{Env: collectEnv()}
	probe := newPeakProbe(o.peakN, o.peakRounds, o.fmaProbe)
	rep.ProbeSkipped = probe.skipped
	be := blas.Default()
	for _, t := range threads {
		probe.allFMA(t)
		probe.gemm(be, t)
	}
	rep.Peaks = probe.list()
	write := func(w io.Writer) error {
		if o.format == "table" {
			writeHeader(w, &rep.Env, rep.Peaks, rep.ProbeSkipped)
			return nil
		}
		return writeReport(w, rep, o.format)
	}
	if o.out != "" {
		if err := writeFile(o.out, rep, o.format); err != nil {
			fmt.Fprintln(stderr, "xbench:", err)
			return 1
		}
		writeHeader(stdout, &rep.Env, rep.Peaks, rep.ProbeSkipped)
		return 0
	}
	if err := write(stdout); err != nil {
		fmt.Fprintln(stderr, "xbench:", err)
		return 1
	}
	return 0
}

// writeFile writes rep to path in format.
func writeFile(path string, rep *Report, format string) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeReport(f, rep, format); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
