package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/klauspost/cpuid/v2"
	"github.com/xattn/xattn/blas"
)

// Env describes the machine and the build a report was measured on.
type Env struct {
	Time           string   `json:"time"`
	CPU            string   `json:"cpu"`
	PhysicalCores  int      `json:"physical_cores"`
	LogicalCores   int      `json:"logical_cores"`
	ThreadsPerCore int      `json:"threads_per_core"`
	L1D            int      `json:"l1d_bytes"`
	L2             int      `json:"l2_bytes"`
	L3             int      `json:"l3_bytes"`
	BaseHz         int64    `json:"base_hz,omitempty"`
	X64Level       int      `json:"x64_level,omitempty"`
	ISA            []string `json:"isa"`

	GoVersion  string `json:"go_version"`
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Backends   string `json:"backends"`

	OpenBLAS OpenBLASEnv `json:"openblas"`
	// EnvVars holds the environment variables that change OpenBLAS's or the
	// peers' behaviour and were set.
	EnvVars map[string]string `json:"env_vars,omitempty"`

	RSSSource string `json:"rss_source"`
}

// OpenBLASEnv is [blas.Info] with the field names of the JSON report.
type OpenBLASEnv struct {
	Linked   bool   `json:"linked"`
	Config   string `json:"config,omitempty"`
	CoreName string `json:"core_name,omitempty"`
	Threads  int    `json:"threads,omitempty"`
	RowPass  string `json:"row_pass,omitempty"`
	Kernel   string `json:"kernel,omitempty"`
	Variant  string `json:"variant,omitempty"`
}

// openBLASEnv copies the fields of i that the report keeps.
func openBLASEnv(i blas.Info) OpenBLASEnv {
	return OpenBLASEnv{Linked: i.Linked, Config: i.Config, CoreName: i.CoreName, Threads: i.Threads, RowPass: i.RowPass, Kernel: i.Kernel, Variant: i.Variant}
}

// isaFlags are the CPU features worth printing for an SGEMM-bound program.
var isaFlags = []struct {
	id   cpuid.FeatureID
	name string
}{
	{cpuid.SSE4, "sse4.1"}, {cpuid.AVX, "avx"}, {cpuid.AVX2, "avx2"}, {cpuid.FMA3, "fma"},
	{cpuid.F16C, "f16c"}, {cpuid.AVX512F, "avx512f"}, {cpuid.AVX512DQ, "avx512dq"},
	{cpuid.AVX512BW, "avx512bw"}, {cpuid.AVX512VL, "avx512vl"}, {cpuid.AVX512VNNI, "avx512vnni"},
	{cpuid.AVX512BF16, "avx512bf16"}, {cpuid.AVX512FP16, "avx512fp16"}, {cpuid.AVXVNNI, "avxvnni"},
	{cpuid.AMXTILE, "amx-tile"}, {cpuid.AMXBF16, "amx-bf16"}, {cpuid.ASIMD, "asimd"}, {cpuid.SVE, "sve"},
}

// envVarNames are the variables reported when set. OPENBLAS_CORETYPE and
// OPENBLAS_L2_SIZE force OpenBLAS's kernel choice and blocking.
var envVarNames = []string{"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "GOMAXPROCS", "GODEBUG"}

// collectEnv describes this machine and binary.
func collectEnv() Env {
	c := &cpuid.CPU
	e := Env{
		Time:           time.Now().UTC().Format(time.RFC3339),
		CPU:            strings.TrimSpace(c.BrandName),
		PhysicalCores:  c.PhysicalCores,
		LogicalCores:   c.LogicalCores,
		ThreadsPerCore: c.ThreadsPerCore,
		L1D:            c.Cache.L1D,
		L2:             c.Cache.L2,
		L3:             c.Cache.L3,
		BaseHz:         c.Hz,
		X64Level:       c.X64Level(),
		GoVersion:      runtime.Version(),
		GOOS:           runtime.GOOS,
		GOARCH:         runtime.GOARCH,
		GOMAXPROCS:     runtime.GOMAXPROCS(0),
		OpenBLAS:       openBLASEnv(blas.OpenBLASInfo()),
		RSSSource:      rssSource,
	}
	if e.CPU == "" {
		e.CPU = "unknown CPU"
	}
	for _, f := range isaFlags {
		if c.Supports(f.id) {
			e.ISA = append(e.ISA, f.name)
		}
	}
	var names []string
	for _, b := range blas.All() {
		names = append(names, b.Name())
	}
	e.Backends = strings.Join(names, ",")
	for _, k := range envVarNames {
		if v, ok := os.LookupEnv(k); ok {
			if e.EnvVars == nil {
				e.EnvVars = map[string]string{}
			}
			e.EnvVars[k] = v
		}
	}
	return e
}

// writeHeader prints the machine, the build, OpenBLAS's core and its check,
// and the peak probes.
func writeHeader(w io.Writer, e *Env, peaks []Peak, skipped []string) {
	if e.Time == "" {
		fmt.Fprintln(w, "xbench  (no machine description in this file)")
		return
	}
	fmt.Fprintf(w, "xbench  %s\n", e.Time)
	fmt.Fprintf(w, "cpu       %s: %d cores, %d logical CPUs (%d per core); L1d %s, L2 %s, L3 %s",
		e.CPU, e.PhysicalCores, e.LogicalCores, e.ThreadsPerCore, fmtBytes(e.L1D), fmtBytes(e.L2), fmtBytes(e.L3))
	if e.BaseHz > 0 {
		fmt.Fprintf(w, "; base %.2f GHz", float64(e.BaseHz)/1e9)
	}
	fmt.Fprintln(w)
	lvl := ""
	if e.X64Level > 0 {
		lvl = fmt.Sprintf(" (x86-64-v%d)", e.X64Level)
	}
	fmt.Fprintf(w, "isa       %s%s\n", strings.Join(e.ISA, " "), lvl)
	fmt.Fprintf(w, "go        %s %s/%s, GOMAXPROCS=%d, backends: %s\n", e.GoVersion, e.GOOS, e.GOARCH, e.GOMAXPROCS, e.Backends)
	check := checkCore(e.ISA, e.OpenBLAS.CoreName, e.EnvVars["OPENBLAS_CORETYPE"])
	if e.OpenBLAS.Linked {
		core := e.OpenBLAS.CoreName
		if isa := coreISA(core); isa != "?" {
			core += " (" + isa + " kernels)"
		}
		products := e.OpenBLAS.Kernel
		switch {
		case products == "xattn-avx512":
			products += ", the backend's own AVX-512 kernel, whatever OpenBLAS's core"
		case check.Level == "warning":
			products += " " + e.OpenBLAS.CoreName + ": a FALLBACK core (see below)"
		}
		fmt.Fprintf(w, "openblas  %s; core %s; row pass %s; layer products on %s; variant %s\n",
			e.OpenBLAS.Config, core, e.OpenBLAS.RowPass, products, e.OpenBLAS.Variant)
		if s := check.String(); s != "" {
			fmt.Fprintf(w, "          %s\n", s)
		}
	} else {
		fmt.Fprintln(w, "openblas  not in this binary (built with CGO_ENABLED=0 or -tags purego)")
	}
	for _, k := range envVarNames {
		if v, ok := e.EnvVars[k]; ok {
			fmt.Fprintf(w, "env       %s=%s", k, v)
			if k == "OPENBLAS_CORETYPE" || k == "OPENBLAS_L2_SIZE" {
				fmt.Fprint(w, "  (chooses OpenBLAS's kernels or blocking instead of its own detection)")
			}
			fmt.Fprintln(w)
		}
	}
	lead := "peak      "
	for _, p := range peaks {
		if p.Kind == kindFMA {
			fmt.Fprintf(w, "%s%s\n", lead, p.describe())
			lead = "          "
		}
	}
	for _, s := range skipped {
		fmt.Fprintf(w, "%sno probe: %s\n", lead, s)
		lead = "          "
	}
	if lead == "peak      " {
		fmt.Fprintln(w, "peak      no register probe in this report (-fma-probe=false, or an older xbench)")
	}
	lead = "gemm      "
	for _, p := range peaks {
		if p.Kind != kindFMA {
			fmt.Fprintf(w, "%s%s\n", lead, p.describe())
			lead = "          "
		}
	}
	if lead == "gemm      " {
		fmt.Fprintln(w, "gemm      not measured (-peak-n 0)")
	}
}

// fmtBytes formats a cache size; cpuid reports an unknown one as -1.
func fmtBytes(n int) string {
	switch {
	case n <= 0:
		return "?"
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}
