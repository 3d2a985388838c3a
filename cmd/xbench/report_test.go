package main

import (
	"bytes"
	"encoding/csv"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sampleReport is a made-up report with every kind of row: an xattn
// reference, a second backend, a peer that ran, and an absent one.
func sampleReport() *Report {
	base := baseResult(benchCase{name: "sd_unet64", cfg: presets[0].cfg, shape: presets[0].shape}, "openblas", "xattn")
	ref := base
	ref.State, ref.Threads, ref.QBlock, ref.KVBlock, ref.ISA, ref.Plan = stateOK, 2, 80, 77, "avx512", "openblas threads=2 tile=80x256"
	ref.Warmup, ref.Repeats, ref.MedianMs, ref.MinMs, ref.MaxMs = 2, 3, 23.5, 20.7, 27.7
	ref.Rounds, ref.SamplesMs, ref.PeakISA = 1, []float64{20.7, 23.5, 27.7}, "avx512"
	ref.GFLOPs = ref.FLOPs / (ref.MedianMs * 1e6)
	ref.PeakRSSMiB, ref.PeakGFLOPs, ref.PctPeak, ref.GemmGFLOPs, ref.PctGemm = 63.25, 350, 52.4, 350, 52.4
	ref.Agree, ref.VsRef, ref.YNorm = "ref", 1, 0.25

	pure := ref
	pure.Impl, pure.ISA, pure.MedianMs, pure.AllocsPerOp, pure.BytesPerOp = "pure", "go/sse", 274, 0.5, 12
	pure.PeakISA, pure.SamplesMs = "sse", []float64{270, 274, 280}
	pure.Agree, pure.MaxAbsDiff, pure.Tol, pure.VsRef = "ok", 8.2e-8, 1e-4, 274/23.5

	torch := base
	torch.Impl, torch.Kind, torch.State, torch.Detail = "torch", "peer", stateOK, "torch 1.13, OpenMP"
	torch.Threads, torch.Repeats, torch.MedianMs, torch.MinMs, torch.MaxMs = 2, 40, 50, 43.5, 91.6
	torch.Agree, torch.MaxAbsDiff, torch.Tol, torch.VsRef = "ok", 6.3e-8, 1e-4, 50/23.5

	ort := base
	ort.Impl, ort.Kind, ort.State, ort.Detail = "ort", "peer", stateAbsent, "node not found"
	return &Report{
		Env: Env{Time: "2025-01-01T00:00:00Z", CPU: "Test CPU", PhysicalCores: 2, LogicalCores: 2, ThreadsPerCore: 1,
			L1D: 48 << 10, L2: 2 << 20, L3: -1, ISA: []string{"avx2", "fma"}, GoVersion: "go1.24", GOOS: "linux",
			GOARCH: "amd64", GOMAXPROCS: 2, Backends: "openblas,pure", RSSSource: "VmHWM",
			EnvVars: map[string]string{"OPENBLAS_CORETYPE": "Haswell"}},
		Peaks: []Peak{
			{Kind: kindFMA, ISA: "avx512", Precision: "fp32", Threads: 2, Rounds: 5, GFLOPs: 400, PerThread: 200,
				Method: "12 independent VFMADD231PS zmm chains, register-only"},
			{Kind: kindGemm, Backend: "openblas", Kernel: "xattn-avx512", Threads: 2, N: 1536, Rounds: 5, GFLOPs: 350, PerThread: 175,
				ISA: "avx512", Method: "1536³ product"}},
		ProbeSkipped: []string{"amx-bf16: arch_prctl refused"},
		Results:      []Result{ref, pure, torch, ort},
	}
}

func TestJSONRoundTrip(t *testing.T) {
	rep := sampleReport()
	path := filepath.Join(t.TempDir(), "r.json")
	if err := writeFile(path, rep, "json"); err != nil {
		t.Fatal(err)
	}
	got, err := readReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rep) {
		t.Errorf("JSON round trip changed the report:\n got %+v\nwant %+v", got, rep)
	}
}

func TestCSVRoundTrip(t *testing.T) {
	rep := sampleReport()
	rep.Env.OpenBLAS = OpenBLASEnv{Linked: true, Config: "OpenBLAS 0.3.21, x", CoreName: "Prescott", RowPass: "avx512", Kernel: "xattn-avx512"}
	var buf bytes.Buffer
	if err := writeCSV(&buf, rep); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	for _, want := range []string{
		"# env.cpu: \"Test CPU\"\n", "# env.gomaxprocs: 2\n", "# env.env_vars: {\"OPENBLAS_CORETYPE\":\"Haswell\"}\n",
		"\"core_name\":\"Prescott\"", "# peak: {\"kind\":\"fma\"", "# probe_skipped: \"amx-bf16: arch_prctl refused\"\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("CSV lacks %q:\n%s", want, text)
		}
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1+len(rep.Results) {
		t.Fatalf("%d CSV lines, want %d", len(lines), 1+len(rep.Results))
	}
	if !strings.HasPrefix(lines[0], "case,mode,requests,impl,kind,state,") {
		t.Errorf("header = %q", lines[0])
	}
	// Unmeasured values are empty, not 0: the absent peer's times and
	// probes, a peer's allocations; the xattn rows' zero allocations are
	// measured and written.
	col := func(line, name string) string {
		r, err := csv.NewReader(strings.NewReader(lines[0] + "\n" + line)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		i := slices.Index(r[0], name)
		if i < 0 {
			t.Fatalf("no column %s", name)
		}
		return r[1][i]
	}
	for _, tc := range []struct {
		row        int
		name, want string
	}{
		{3, "median_ms", ""}, {3, "pct_peak", ""}, {3, "gflops", ""}, {3, "repeats", ""},
		{2, "allocs_per_op", ""}, {2, "pct_peak", ""}, {2, "median_ms", "50"},
		{0, "allocs_per_op", "0"}, {0, "pct_peak", "52.4"}, {0, "samples_ms", "20.7 23.5 27.7"},
		{1, "allocs_per_op", "0.5"},
	} {
		if got := col(lines[1+tc.row], tc.name); got != tc.want {
			t.Errorf("row %d (%s) column %s = %q, want %q", tc.row, rep.Results[tc.row].Impl, tc.name, got, tc.want)
		}
	}
	got, err := readCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rep) {
		t.Errorf("CSV round trip changed the report:\n got %+v\nwant %+v", got, rep)
	}

	// Through a file, as -compare and -from read it.
	path := filepath.Join(t.TempDir(), "r.csv")
	if err := writeFile(path, rep, "csv"); err != nil {
		t.Fatal(err)
	}
	r2, err := readReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r2, rep) {
		t.Error("CSV file round trip changed the report")
	}
	// And -from prints the environment it kept.
	var out bytes.Buffer
	if err := writeTable(&out, r2); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "core Prescott (sse kernels)") || !strings.Contains(out.String(), "cpu       Test CPU") {
		t.Errorf("table of the CSV report lacks its environment:\n%s", out.String())
	}
}

func TestReadCSVColumns(t *testing.T) {
	// Unknown columns and comments are ignored and missing ones stay zero;
	// an empty number is 0.
	got, err := readCSV(strings.NewReader("# a note\n# other: 1\nimpl,extra,median_ms,pct_peak\nort,x,1.5,\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Results) != 1 || got.Results[0].Impl != "ort" || got.Results[0].MedianMs != 1.5 || got.Results[0].Case != "" ||
		got.Env.Time != "" {
		t.Errorf("got %+v", got)
	}
	if _, err := readCSV(strings.NewReader("median_ms\nfast\n")); err == nil || !strings.Contains(err.Error(), "median_ms") {
		t.Errorf("bad number: err = %v", err)
	}
	if _, err := readCSV(strings.NewReader("# env.cpu: not json\nimpl\n")); err == nil || !strings.Contains(err.Error(), "env.cpu") {
		t.Errorf("bad comment: err = %v", err)
	}
	if _, err := readCSV(strings.NewReader("")); err == nil {
		t.Error("empty CSV accepted")
	}
}

func TestReadReportErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := readReport(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file accepted")
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{not json"), 0o644)
	if _, err := readReport(bad); err == nil {
		t.Error("bad JSON accepted")
	}
}

func TestTable(t *testing.T) {
	var buf bytes.Buffer
	if err := writeReport(&buf, sampleReport(), "table"); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"cpu       Test CPU: 2 cores", "L1d 48 KiB, L2 2 MiB, L3 ?",
		"OPENBLAS_CORETYPE=Haswell", "chooses OpenBLAS's kernels",
		"not in this binary", // the sample's OpenBLAS info is zero
		"peak      avx512   fp32      2 thread(s):   400.0 GFLOP/s (200.0 per thread)",
		"          no probe: amx-bf16: arch_prctl refused",
		"gemm      openblas 2 thread(s):   350.0 GFLOP/s",
		"xattn on openblas rows against the avx512 fp32 loop",
		"B=2 Tq=4096 Tk=77  320,768→320  8 heads × 40  4.31        0.25",
		"ms median", "GFLOP/s", "%peak", "allocs/op", "peak RSS", "×xattn",
		"80x77", "23.5", "20.7", "27.7", "52%", "63 MiB", "ref", "ok 8.2e-08", "2.13",
		"sd_unet64 ort: absent: node not found",
		"GFLOP/s = xattn.FLOPs / median",
		"GOMAXPROCS=2 does not exceed the layer's 2 threads", "GOMAXPROCS=3 is faster",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "MISMATCH") || strings.Contains(out, "BUG") {
		t.Error("table reports a mismatch or a bug")
	}

	rep := sampleReport()
	rep.Results[2].Agree, rep.Results[2].MaxAbsDiff = "FAIL", 0.5
	buf.Reset()
	writeTable(&buf, rep)
	if !strings.Contains(buf.String(), "OUTPUT MISMATCH: sd_unet64 torch") {
		t.Errorf("no mismatch line:\n%s", buf.String())
	}
	// A %peak above 100% is a bug of xbench's, and says so.
	rep.Results[0].PctPeak = 130
	buf.Reset()
	writeTable(&buf, rep)
	if !strings.Contains(buf.String(), "BUG: sd_unet64 openblas at 130% of its ISA's peak") {
		t.Errorf("no bug line:\n%s", buf.String())
	}
}

func TestFormatters(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{fmtMs(1234.5), "1234"}, {fmtMs(12.34), "12.3"}, {fmtMs(1.234), "1.23"}, {fmtMs(0.1234), "0.123"},
		{fmtPct(0), "-"}, {fmtPct(51.6), "52%"}, {fmtMiB(0), "-"}, {fmtMiB(63.4), "63 MiB"},
		{fmtRatio(0), "-"}, {fmtRatio(2.125), "2.12"},
		{fmtBytes(-1), "?"}, {fmtBytes(48 << 10), "48 KiB"}, {fmtBytes(2 << 20), "2 MiB"}, {fmtBytes(3 << 19), "1.5 MiB"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
