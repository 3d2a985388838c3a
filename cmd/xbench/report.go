package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Report is everything one xbench run measured; it is what -format json
// writes and what -compare reads.
type Report struct {
	Env   Env    `json:"env"`
	Peaks []Peak `json:"peaks,omitempty"`
	// ProbeSkipped says, per register loop left out, why (the CPU or OS
	// lacks it, or the OS refused the AMX tiles).
	ProbeSkipped []string `json:"probe_skipped,omitempty"`
	Results      []Result `json:"results"`
}

// Result is one implementation on one case: an xattn backend (Kind "xattn")
// or a peer (Kind "peer").
type Result struct {
	Case string `json:"case"`
	Impl string `json:"impl"` // openblas, pure, torch, ort
	Kind string `json:"kind"` // xattn or peer
	// Mode is the call of a serving case (see servingCall), "" for
	// ForwardInto; Requests the request count of a batch mode.
	Mode     string `json:"mode,omitempty"`
	Requests int    `json:"requests,omitempty"`
	State    string `json:"state"`
	// Detail says why a peer is absent or failed, or what it runs.
	Detail string `json:"detail,omitempty"`

	Batch      int  `json:"batch"`
	Tq         int  `json:"tq"`
	Tk         int  `json:"tk"`
	QueryDim   int  `json:"query_dim"`
	ContextDim int  `json:"context_dim"`
	Heads      int  `json:"heads"`
	HeadDim    int  `json:"head_dim"`
	OutDim     int  `json:"out_dim"`
	Bias       bool `json:"bias"`

	// Threads is the worker count; QBlock, KVBlock and ISA the rest of the
	// layer's plan (peers have none).
	Threads int `json:"threads"`
	QBlock  int `json:"q_block,omitempty"`
	// Absorbed: the layer ran the case in its absorbed form
	// (xattn.Layer.Absorbs), which does less work than FLOPs counts.
	Absorbed bool   `json:"absorbed,omitempty"`
	KVBlock  int    `json:"kv_block,omitempty"`
	ISA      string `json:"isa,omitempty"`
	Plan     string `json:"plan,omitempty"`

	Warmup int `json:"warmup"`
	// Repeats is the count of timed calls over all Rounds, SamplesMs
	// their times.
	Repeats   int       `json:"repeats"`
	Rounds    int       `json:"rounds,omitempty"`
	SamplesMs []float64 `json:"samples_ms,omitempty"`
	MedianMs  float64   `json:"median_ms"`
	MinMs     float64   `json:"min_ms"`
	MaxMs     float64   `json:"max_ms"`
	// FLOPs is xattn.FLOPs of the case (of a serving call: the work it
	// computes, see servingCall); GFLOPs is FLOPs over the median.
	// WorkFLOPs, when set, is the smaller work the layer did (the absorbed
	// form: xattn.Layer.WorkFLOPs); %peak and %gemm use it.
	FLOPs     float64 `json:"flops"`
	GFLOPs    float64 `json:"gflops"`
	WorkFLOPs float64 `json:"work_flops,omitempty"`

	// AllocsPerOp and BytesPerOp are the Go heap allocations of one call
	// (xattn only); PeakRSSMiB is the process's peak resident memory while
	// the case ran (for a peer: its own process).
	AllocsPerOp float64 `json:"allocs_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	PeakRSSMiB  float64 `json:"peak_rss_mib"`

	// PeakGFLOPs is the register-loop peak at Threads of PeakISA, the ISA
	// of the kernels that run the row's products (see peakISA), and
	// PctPeak = 100·work/median/PeakGFLOPs. GemmGFLOPs and PctGemm are the
	// same against the GEMM probe of the result's own backend.
	PeakISA    string  `json:"peak_isa,omitempty"`
	PeakGFLOPs float64 `json:"peak_gflops,omitempty"`
	PctPeak    float64 `json:"pct_peak,omitempty"`
	GemmGFLOPs float64 `json:"gemm_gflops,omitempty"`
	PctGemm    float64 `json:"pct_gemm,omitempty"`

	// VsRef is MedianMs over the reference's (the first xattn backend of
	// the case): above 1 is slower than xattn.
	VsRef float64 `json:"vs_ref,omitempty"`
	// Agree compares the output with the reference's: "ref", "ok" or
	// "FAIL"; MaxAbsDiff is max|Δ| and Tol the bound
	// 1e-4·max(1, ‖ref‖∞).
	Agree      string  `json:"agree,omitempty"`
	MaxAbsDiff float64 `json:"max_abs_diff,omitempty"`
	Tol        float64 `json:"tol,omitempty"`
	// YNorm is ‖y‖∞ of the reference's output (reference rows only).
	YNorm float64 `json:"y_norm,omitempty"`
	// Ref64Err is max|y − ref| / max(1, ‖ref‖∞) against the float64
	// reference of the FP32 layer's function (-ref64).
	Ref64Err float64 `json:"ref64_err,omitempty"`
	// Speedup, on a serving result, is the median time of the plain call
	// it replaces (PlainMs) over its own: above 1 the serving call is
	// faster.
	Speedup float64 `json:"speedup,omitempty"`
	PlainMs float64 `json:"plain_ms,omitempty"`

	Sweep string `json:"sweep,omitempty"`
	Value int    `json:"value,omitempty"`
}

// Result states.
const (
	stateOK     = "ok"
	stateAbsent = "absent"
	stateError  = "error"
)

// key identifies a result across reports, for -compare.
func (r *Result) key() string {
	return fmt.Sprintf("%s|%s|%s|B=%d,Tq=%d,Tk=%d,%d/%d/%d,h=%dx%d,bias=%t,n=%d|threads=%d|%s=%d",
		r.Case, r.Mode, r.Impl, r.Batch, r.Tq, r.Tk, r.QueryDim, r.ContextDim, r.OutDim, r.Heads, r.HeadDim, r.Bias,
		r.Requests, r.Threads, r.Sweep, r.Value)
}

// displayCase is the case's name, with its mode for a serving case.
func (r *Result) displayCase() string {
	if r.Mode == "" {
		return r.Case
	}
	if r.Requests > 0 {
		return fmt.Sprintf("%s/%s×%d", r.Case, r.Mode, r.Requests)
	}
	return r.Case + "/" + r.Mode
}

// shapeString describes the case's shape in one short line.
func (r *Result) shapeString() string {
	b := ""
	if r.Bias {
		b = " +bias"
	}
	return fmt.Sprintf("B=%d Tq=%d Tk=%d  %d,%d→%d  %d heads × %d%s",
		r.Batch, r.Tq, r.Tk, r.QueryDim, r.ContextDim, r.OutDim, r.Heads, r.HeadDim, b)
}

// writeReport writes rep in format to w.
func writeReport(w io.Writer, rep *Report, format string) error {
	switch format {
	case "json":
		return writeJSON(w, rep)
	case "csv":
		return writeCSV(w, rep)
	default:
		return writeTable(w, rep)
	}
}

// writeJSON writes rep as indented JSON.
func writeJSON(w io.Writer, rep *Report) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(rep)
}

// readReport reads a report written as JSON, or the results of one written
// as CSV (by the file's extension, or its first byte).
func readReport(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(filepath.Ext(path), ".csv") || (len(data) > 0 && data[0] != '{') {
		rep, err := readCSV(strings.NewReader(string(data)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return rep, nil
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &rep, nil
}

// csvColumn is one column of the CSV format: its header, and how to format
// and parse it.
type csvColumn struct {
	name string
	get  func(*Result) string
	set  func(*Result, string) error
}

// strCol, intCol, floatCol and boolCol make the CSV column name of a
// Result field that f points to. An int or float column is written empty
// where when(r) is false (a value that was not measured, rather than 0);
// an empty value reads back as 0.
func strCol(name string, f func(*Result) *string) csvColumn {
	return csvColumn{name,
		func(r *Result) string { return *f(r) },
		func(r *Result, s string) error { *f(r) = s; return nil }}
}

func intCol(name string, when func(*Result) bool, f func(*Result) *int) csvColumn {
	return csvColumn{name,
		func(r *Result) string {
			if when != nil && !when(r) {
				return ""
			}
			return strconv.Itoa(*f(r))
		},
		func(r *Result, s string) (err error) {
			if s == "" {
				*f(r) = 0
				return nil
			}
			*f(r), err = strconv.Atoi(s)
			return err
		}}
}

func floatCol(name string, when func(*Result) bool, f func(*Result) *float64) csvColumn {
	return csvColumn{name,
		func(r *Result) string {
			if when != nil && !when(r) {
				return ""
			}
			return strconv.FormatFloat(*f(r), 'g', -1, 64)
		},
		func(r *Result, s string) (err error) {
			if s == "" {
				*f(r) = 0
				return nil
			}
			*f(r), err = strconv.ParseFloat(s, 64)
			return err
		}}
}

func boolCol(name string, f func(*Result) *bool) csvColumn {
	return csvColumn{name,
		func(r *Result) string { return strconv.FormatBool(*f(r)) },
		func(r *Result, s string) (err error) { *f(r), err = strconv.ParseBool(s); return err }}
}

// measured holds for the values of a result that ran; xattnOnly for those
// xbench measures on its own layer only (heap allocations).
func measured(r *Result) bool  { return r.State == stateOK }
func xattnOnly(r *Result) bool { return r.State == stateOK && r.Kind == "xattn" }

// opt is an optional float column: empty when zero, which these fields hold
// only when nothing was measured (no probe, no reference, no peer output).
func opt(name string, f func(*Result) *float64) csvColumn {
	return floatCol(name, func(r *Result) bool { return *f(r) != 0 }, f)
}

// optInt is opt for an int field.
func optInt(name string, f func(*Result) *int) csvColumn {
	return intCol(name, func(r *Result) bool { return *f(r) != 0 }, f)
}

// csvColumns are the columns of the CSV format, one per Result field, named
// as in the JSON format. samples_ms holds the timed calls' times separated
// by spaces.
var csvColumns = []csvColumn{
	strCol("case", func(r *Result) *string { return &r.Case }),
	strCol("mode", func(r *Result) *string { return &r.Mode }),
	optInt("requests", func(r *Result) *int { return &r.Requests }),
	strCol("impl", func(r *Result) *string { return &r.Impl }),
	strCol("kind", func(r *Result) *string { return &r.Kind }),
	strCol("state", func(r *Result) *string { return &r.State }),
	strCol("detail", func(r *Result) *string { return &r.Detail }),
	intCol("batch", nil, func(r *Result) *int { return &r.Batch }),
	intCol("tq", nil, func(r *Result) *int { return &r.Tq }),
	intCol("tk", nil, func(r *Result) *int { return &r.Tk }),
	intCol("query_dim", nil, func(r *Result) *int { return &r.QueryDim }),
	intCol("context_dim", nil, func(r *Result) *int { return &r.ContextDim }),
	intCol("heads", nil, func(r *Result) *int { return &r.Heads }),
	intCol("head_dim", nil, func(r *Result) *int { return &r.HeadDim }),
	intCol("out_dim", nil, func(r *Result) *int { return &r.OutDim }),
	boolCol("bias", func(r *Result) *bool { return &r.Bias }),
	intCol("threads", nil, func(r *Result) *int { return &r.Threads }),
	optInt("q_block", func(r *Result) *int { return &r.QBlock }),
	optInt("kv_block", func(r *Result) *int { return &r.KVBlock }),
	boolCol("absorbed", func(r *Result) *bool { return &r.Absorbed }),
	strCol("isa", func(r *Result) *string { return &r.ISA }),
	strCol("plan", func(r *Result) *string { return &r.Plan }),
	intCol("warmup", measured, func(r *Result) *int { return &r.Warmup }),
	intCol("repeats", measured, func(r *Result) *int { return &r.Repeats }),
	optInt("rounds", func(r *Result) *int { return &r.Rounds }),
	floatCol("median_ms", measured, func(r *Result) *float64 { return &r.MedianMs }),
	floatCol("min_ms", measured, func(r *Result) *float64 { return &r.MinMs }),
	floatCol("max_ms", measured, func(r *Result) *float64 { return &r.MaxMs }),
	floatCol("flops", nil, func(r *Result) *float64 { return &r.FLOPs }),
	opt("work_flops", func(r *Result) *float64 { return &r.WorkFLOPs }),
	floatCol("gflops", measured, func(r *Result) *float64 { return &r.GFLOPs }),
	floatCol("allocs_per_op", xattnOnly, func(r *Result) *float64 { return &r.AllocsPerOp }),
	floatCol("bytes_per_op", xattnOnly, func(r *Result) *float64 { return &r.BytesPerOp }),
	opt("peak_rss_mib", func(r *Result) *float64 { return &r.PeakRSSMiB }),
	strCol("peak_isa", func(r *Result) *string { return &r.PeakISA }),
	opt("peak_gflops", func(r *Result) *float64 { return &r.PeakGFLOPs }),
	opt("pct_peak", func(r *Result) *float64 { return &r.PctPeak }),
	opt("gemm_gflops", func(r *Result) *float64 { return &r.GemmGFLOPs }),
	opt("pct_gemm", func(r *Result) *float64 { return &r.PctGemm }),
	opt("vs_ref", func(r *Result) *float64 { return &r.VsRef }),
	strCol("agree", func(r *Result) *string { return &r.Agree }),
	floatCol("max_abs_diff", func(r *Result) bool { return r.Agree != "" && r.Agree != "ref" },
		func(r *Result) *float64 { return &r.MaxAbsDiff }),
	opt("tol", func(r *Result) *float64 { return &r.Tol }),
	opt("y_norm", func(r *Result) *float64 { return &r.YNorm }),
	opt("ref64_err", func(r *Result) *float64 { return &r.Ref64Err }),
	opt("speedup", func(r *Result) *float64 { return &r.Speedup }),
	opt("plain_ms", func(r *Result) *float64 { return &r.PlainMs }),
	strCol("sweep", func(r *Result) *string { return &r.Sweep }),
	optInt("value", func(r *Result) *int { return &r.Value }),
	{"samples_ms",
		func(r *Result) string {
			f := make([]string, len(r.SamplesMs))
			for i, v := range r.SamplesMs {
				f[i] = strconv.FormatFloat(v, 'g', -1, 64)
			}
			return strings.Join(f, " ")
		},
		func(r *Result, s string) error {
			r.SamplesMs = nil
			for _, f := range strings.Fields(s) {
				v, err := strconv.ParseFloat(f, 64)
				if err != nil {
					return err
				}
				r.SamplesMs = append(r.SamplesMs, v)
			}
			return nil
		}},
}

// CSV header comments: before the header line, one "# env.KEY: VALUE" line
// per field of the report's Env (VALUE in JSON, KEY its JSON name), one
// "# peak: {…}" line per peak probe and one "# probe_skipped: "…"" line per
// probe left out, so that a CSV report keeps the machine it was measured on.
const (
	csvEnvPrefix  = "env."
	csvPeakKey    = "peak"
	csvSkippedKey = "probe_skipped"
)

// writeCSV writes the header comments, one header line and one line per
// result.
func writeCSV(w io.Writer, rep *Report) error {
	env, err := json.Marshal(rep.Env)
	if err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(env, &fields); err != nil {
		return err
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "# %s%s: %s\n", csvEnvPrefix, k, fields[k])
	}
	for _, p := range rep.Peaks {
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "# %s: %s\n", csvPeakKey, b)
	}
	for _, s := range rep.ProbeSkipped {
		b, _ := json.Marshal(s)
		fmt.Fprintf(w, "# %s: %s\n", csvSkippedKey, b)
	}
	cw := csv.NewWriter(w)
	row := make([]string, len(csvColumns))
	for i, c := range csvColumns {
		row[i] = c.name
	}
	if err := cw.Write(row); err != nil {
		return err
	}
	for i := range rep.Results {
		for j, c := range csvColumns {
			row[j] = c.get(&rep.Results[i])
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// readCSV reads what writeCSV wrote: the header comments, then the rows.
// Columns are matched by header name; unknown columns and comment keys are
// ignored, missing ones stay zero. A file without comments (an older
// xbench's) gives a report with no Env.
func readCSV(r io.Reader) (*Report, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	rep := &Report{}
	text := string(data)
	env := map[string]json.RawMessage{}
	line := 0
	for strings.HasPrefix(text, "#") {
		line++
		var c string
		c, text, _ = strings.Cut(text, "\n")
		key, val, ok := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(c, "#"), " "), ": ")
		if !ok {
			continue // a comment of another kind
		}
		val = strings.TrimSpace(val)
		var err error
		switch {
		case strings.HasPrefix(key, csvEnvPrefix):
			if !json.Valid([]byte(val)) {
				err = errors.New("not JSON")
			}
			env[strings.TrimPrefix(key, csvEnvPrefix)] = json.RawMessage(val)
		case key == csvPeakKey:
			var p Peak
			if err = json.Unmarshal([]byte(val), &p); err == nil {
				rep.Peaks = append(rep.Peaks, p)
			}
		case key == csvSkippedKey:
			var s string
			if err = json.Unmarshal([]byte(val), &s); err == nil {
				rep.ProbeSkipped = append(rep.ProbeSkipped, s)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("line %d, comment %s: %w", line, key, err)
		}
	}
	if len(env) > 0 {
		b, _ := json.Marshal(env)
		if err := json.Unmarshal(b, &rep.Env); err != nil {
			return nil, fmt.Errorf("environment comments: %w", err)
		}
	}
	rows, err := csv.NewReader(strings.NewReader(text)).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("no CSV header")
	}
	cols := map[string]csvColumn{}
	for _, c := range csvColumns {
		cols[c.name] = c
	}
	for n, row := range rows[1:] {
		var r Result
		for i, name := range rows[0] {
			c, ok := cols[name]
			if !ok || i >= len(row) {
				continue
			}
			if err := c.set(&r, row[i]); err != nil {
				return nil, fmt.Errorf("line %d, column %s: %w", line+n+2, name, err)
			}
		}
		rep.Results = append(rep.Results, r)
	}
	return rep, nil
}

// writeTable writes the human-readable report: the machine, the peak
// probes, one row per result, and the notes that say how to read them.
func writeTable(w io.Writer, rep *Report) error {
	writeHeader(w, &rep.Env, rep.Peaks, rep.ProbeSkipped)
	// Cases, once each, with their shape and work.
	fmt.Fprintln(w)
	seen := map[string]bool{}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tshape\tGFLOP/call\t‖y‖∞\t")
	for i := range rep.Results {
		r := &rep.Results[i]
		k := r.Case + "|" + r.shapeString()
		if seen[k] {
			continue
		}
		seen[k] = true
		norm := "-"
		for j := i; j < len(rep.Results); j++ {
			if x := &rep.Results[j]; x.YNorm > 0 && x.Case+"|"+x.shapeString() == k {
				norm = fmt.Sprintf("%.3g", x.YNorm)
				break
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%.3g\t%s\t\n", r.Case, r.shapeString(), r.FLOPs/1e9, norm)
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	sweep := ""
	for _, r := range rep.Results {
		if r.Sweep != "" && r.Sweep != "threads" { // threads has its column
			sweep = r.Sweep
		}
	}
	head := "case\t"
	if sweep != "" {
		head += sweep + "\t"
	}
	head += "impl\tthreads\ttile\tisa\tms median\tmin\tmax\treps\tGFLOP/s\t%peak\t%gemm\tallocs/op\tpeak RSS\t×xattn\toutput\t"
	fmt.Fprintln(tw, head)
	var notes []string
	for i := range rep.Results {
		r := &rep.Results[i]
		row := r.displayCase() + "\t"
		if sweep != "" {
			row += strconv.Itoa(r.Value) + "\t"
		}
		row += r.Impl + "\t" + strconv.Itoa(r.Threads) + "\t"
		if r.State != stateOK {
			row += "-\t-\t" + r.State + "\t\t\t\t\t\t\t\t\t\t\t\t"
			fmt.Fprintln(tw, row)
			notes = append(notes, fmt.Sprintf("%s %s: %s: %s", r.Case, r.Impl, r.State, r.Detail))
			continue
		}
		tile := "-"
		if r.QBlock > 0 {
			tile = fmt.Sprintf("%dx%d", r.QBlock, r.KVBlock)
		}
		if r.Absorbed {
			tile = "absorbed"
		}
		isa := r.ISA
		if isa == "" {
			isa = "-"
		}
		allocs := "-"
		if r.Kind == "xattn" {
			allocs = fmt.Sprintf("%.3g", r.AllocsPerOp)
		}
		row += fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%d\t%.4g\t%s\t%s\t%s\t%s\t%s\t%s\t",
			tile, isa, fmtMs(r.MedianMs), fmtMs(r.MinMs), fmtMs(r.MaxMs), r.Repeats, r.GFLOPs,
			fmtPct(r.PctPeak), fmtPct(r.PctGemm), allocs, fmtMiB(r.PeakRSSMiB), fmtRatio(r.VsRef), fmtAgree(r))
		fmt.Fprintln(tw, row)
	}
	tw.Flush()

	fmt.Fprintln(w)
	fmt.Fprintln(w, "ms: median, min and max of the timed calls (reps) after warm-up; each call is ForwardInto on preallocated buffers, or a serving call (below).")
	fmt.Fprintln(w, "GFLOP/s = xattn.FLOPs / median; FLOPs = 2·B·(Tq·Dq·H·dh + 2·Tk·Dc·H·dh + Tq·H·dh·Do) + 4·B·H·Tq·Tk·dh (exponentials not counted).")
	writePeakNote(w, rep)
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Kind == "xattn" && r.Impl == "openblas" && r.State == stateOK && rep.Env.GOMAXPROCS > 0 && r.Threads >= rep.Env.GOMAXPROCS {
			fmt.Fprintf(w, "GOMAXPROCS=%d does not exceed the layer's %d threads: a long cgo call then loses its P to another OS thread and pays a switch on return; GOMAXPROCS=%d is faster (see xattn.WithThreads).\n",
				rep.Env.GOMAXPROCS, r.Threads, r.Threads+1)
			break
		}
	}
	for i := range rep.Results {
		if r := &rep.Results[i]; r.Absorbed && r.WorkFLOPs > 0 {
			fmt.Fprintf(w, "absorbed: the layer moved its key and value projections to the queries' side (xattn.WithAbsorb): %s does %.3g GFLOP a call where FLOPs counts %.3g; GFLOP/s divides FLOPs, %%peak and %%gemm the work done (%.4g GFLOP/s).\n",
				r.displayCase(), r.WorkFLOPs/1e9, r.FLOPs/1e9, r.workGFLOPs())
		}
	}
	fmt.Fprintln(w, "×xattn: median time over the first xattn backend's (above 1 is slower than xattn). output: max|Δ| against that backend's y, bound 1e-4·max(1,‖y‖∞), or 2e-2·max(1,‖y‖∞) for a BF16 row (isa bf16-…); f64 (-ref64): max|y−ref|/max(1,‖ref‖∞) against the case computed in float64.")
	if rep.Env.RSSSource != "" {
		fmt.Fprintf(w, "peak RSS: %s.\n", rep.Env.RSSSource)
	}
	writeServing(w, rep.Results)
	for i := range rep.Results {
		if r := &rep.Results[i]; r.PctPeak > 100 {
			fmt.Fprintf(w, "BUG: %s %s at %.0f%% of its ISA's peak: the register probe or the work count is wrong; please report it with this output.\n",
				r.displayCase(), r.Impl, r.PctPeak)
		}
	}
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	for i := range rep.Results {
		if r := &rep.Results[i]; r.Agree == "FAIL" {
			fmt.Fprintf(w, "OUTPUT MISMATCH: %s %s differs from xattn by %.3g > %.3g\n", r.Case, r.Impl, r.MaxAbsDiff, r.Tol)
		}
	}
	return nil
}

// writePeakNote says what %peak and %gemm hold each kind of row against.
func writePeakNote(w io.Writer, rep *Report) {
	isas := map[string][]string{}
	var order []string
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.PeakISA == "" {
			continue
		}
		k := r.Impl
		if r.Kind == "xattn" {
			k = "xattn on " + r.Impl
		}
		if _, ok := isas[r.PeakISA]; !ok {
			order = append(order, r.PeakISA)
		}
		if !slices.Contains(isas[r.PeakISA], k) {
			isas[r.PeakISA] = append(isas[r.PeakISA], k)
		}
	}
	var parts []string
	for _, isa := range order {
		kind := "fp32"
		switch isa {
		case "amx-bf16":
			kind = "bf16 tile"
		case "avx512bf16":
			kind = "bf16 dot-product"
		}
		parts = append(parts, fmt.Sprintf("%s rows against the %s %s loop", strings.Join(isas[isa], ", "), isa, kind))
	}
	io.WriteString(w, "%peak: the work of the call over its median, against xbench's register-only probe (peak above) of the ISA the row's products run, at the row's thread count")
	if len(parts) > 0 {
		fmt.Fprintf(w, ": %s", strings.Join(parts, "; "))
	}
	io.WriteString(w, ". The products of xattn on openblas run on the backend's AVX-512 kernel on AVX-512 CPUs, else on OpenBLAS's core; the pure backend's on gonum's SSE loops (multiply and add, no FMA); a peer's kernels are unknown to xbench, so it is held against the CPU's best loop of its precision (bf16 peers: the best bf16 loop).\n")
	io.WriteString(w, "%gemm: against a large product in the kernel the row's backend runs its products on (gemm above).\n")
}

// writeServing prints each serving call beside the plain call it
// replaces.
func writeServing(w io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	any := false
	for i := range rs {
		s := &rs[i]
		if s.Speedup <= 0 {
			continue
		}
		if !any {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "serving: each serving call beside the plain call it replaces, same layer and inputs")
			fmt.Fprintln(tw, "case\timpl\tthreads\tserving call\tms\tplain call\tms\tspeed-up\t")
			any = true
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%.2f×\t\n", s.Case, s.Impl, s.Threads,
			servingCallName[s.Mode], fmtMs(s.MedianMs), servingCallName[servingPairs[s.Mode]], fmtMs(s.PlainMs), s.Speedup)
	}
	tw.Flush()
}

// servingCallName describes the call of each serving mode.
var servingCallName = map[string]string{
	modeCached:    "ForwardContext (Context projected once)",
	modeRecompute: "ForwardInto (projects the context)",
	modeKVStep:    "ForwardStep (KVCache of Tk)",
	modeCausal:    "causal ForwardInto over Tk+Tq",
	modeBatch:     "one ForwardBatch",
	modeSeparate:  "a ForwardInto per request",
}

// fmtMs formats milliseconds with about three significant digits.
func fmtMs(ms float64) string {
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f", ms)
	case ms >= 1:
		return fmt.Sprintf("%.2f", ms)
	default:
		return fmt.Sprintf("%.3f", ms)
	}
}

// fmtPct formats a percentage, "-" when unknown.
func fmtPct(p float64) string {
	if p <= 0 || math.IsNaN(p) {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", p)
}

// fmtMiB formats a memory size in MiB, "-" when unknown.
func fmtMiB(m float64) string {
	if m <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", m)
}

// fmtRatio formats a time ratio, "-" when unknown.
func fmtRatio(x float64) string {
	if x <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", x)
}

// fmtAgree formats the output check of r: "ref", or the verdict and max|Δ|.
func fmtAgree(r *Result) string {
	s := "-"
	switch r.Agree {
	case "":
	case "ref":
		s = "ref"
	default:
		s = fmt.Sprintf("%s %.1e", r.Agree, r.MaxAbsDiff)
	}
	switch {
	case r.Ref64Err < 0:
		s += " f64 NaN"
	case r.Ref64Err > 0:
		s += fmt.Sprintf(" f64 %.1e", r.Ref64Err)
	}
	return s
}
