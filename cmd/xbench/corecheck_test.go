package main

import (
	"strings"
	"testing"
)

// Feature lists as collectEnv writes them.
var (
	cpuAVX512 = []string{"sse4.1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl"}
	cpuAVX2   = []string{"sse4.1", "avx", "avx2", "fma", "f16c"}
	cpuAVX    = []string{"sse4.1", "avx"}
	cpuSSE    = []string{"sse4.1"}
)

func TestCheckCore(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features []string
		core     string
		level    string
		fix      string
	}{
		{"model 207 Xeon, Debian's 0.3.21 unset", cpuAVX512, "Prescott", "warning", "OPENBLAS_CORETYPE=SkylakeX"},
		{"AVX-512 CPU, Core2 fallback", cpuAVX512, "Core2", "warning", "OPENBLAS_CORETYPE=SkylakeX"},
		{"AVX-512 CPU, Sandybridge", cpuAVX512, "Sandybridge", "warning", "OPENBLAS_CORETYPE=SkylakeX"},
		{"AVX-512 CPU, its own kernels", cpuAVX512, "SkylakeX", "", ""},
		{"AVX-512 CPU, Cooperlake", cpuAVX512, "Cooperlake", "", ""},
		{"AVX-512 CPU forced to Haswell", cpuAVX512, "Haswell", "note", "OPENBLAS_CORETYPE=SkylakeX"},
		{"Zen 4 on an OpenBLAS that says Zen", cpuAVX512, "Zen", "note", "OPENBLAS_CORETYPE=SkylakeX"},
		{"AVX2 CPU, Prescott fallback", cpuAVX2, "Prescott", "warning", "OPENBLAS_CORETYPE=Haswell"},
		{"AVX2 CPU, Nehalem fallback", cpuAVX2, "Nehalem", "warning", "OPENBLAS_CORETYPE=Haswell"},
		{"AVX2 CPU, AVX kernels", cpuAVX2, "Sandybridge", "warning", "OPENBLAS_CORETYPE=Haswell"},
		{"AVX2 CPU, Haswell", cpuAVX2, "Haswell", "", ""},
		{"Zen 2, Zen", cpuAVX2, "Zen", "", ""},
		{"AVX2 CPU forced to SkylakeX", cpuAVX2, "SkylakeX", "warning", "OPENBLAS_CORETYPE=Haswell"},
		{"Sandy Bridge, Core2", cpuAVX, "Core2", "warning", "OPENBLAS_CORETYPE=Sandybridge"},
		{"SSE CPU, Prescott", cpuSSE, "Prescott", "", ""},
		{"SSE CPU forced to Haswell", cpuSSE, "Haswell", "warning", "unset OPENBLAS_CORETYPE"},
		{"unknown core name", cpuAVX512, "Frobnicator", "note", ""},
		{"lower case core name", cpuAVX512, "prescott", "warning", "OPENBLAS_CORETYPE=SkylakeX"},
		{"no OpenBLAS", cpuAVX512, "", "", ""},
		{"unknown CPU", nil, "Prescott", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := checkCore(tc.features, tc.core, "")
			if c.Level != tc.level || c.Fix != tc.fix {
				t.Fatalf("checkCore = %+v, want level %q fix %q", c, tc.level, tc.fix)
			}
			s := c.String()
			if (s == "") != (tc.level == "") || (tc.fix != "" && !strings.Contains(s, tc.fix)) ||
				(tc.level != "" && !strings.HasPrefix(s, strings.ToUpper(tc.level)+": ")) {
				t.Errorf("line %q", s)
			}
		})
	}
}

func TestCheckCoreForced(t *testing.T) {
	auto := checkCore(cpuAVX512, "Prescott", "").String()
	forced := checkCore(cpuAVX512, "Prescott", "Prescott").String()
	if !strings.Contains(auto, "too old to know this CPU model") || !strings.Contains(forced, "OPENBLAS_CORETYPE=Prescott chose them") {
		t.Errorf("auto: %q\nforced: %q", auto, forced)
	}
}

func TestCoreAndCPUISA(t *testing.T) {
	for core, want := range map[string]string{"SkylakeX": "avx512", "SapphireRapids": "avx512", "Haswell": "avx2",
		"Zen": "avx2", "Sandybridge": "avx", "Prescott": "sse", "Nehalem": "sse", "Atom": "sse", " Core2 ": "sse", "": "?", "x": "?"} {
		if got := coreISA(core); got != want {
			t.Errorf("coreISA(%q) = %q, want %q", core, got, want)
		}
	}
	for _, tc := range []struct {
		f    []string
		want string
	}{{cpuAVX512, "avx512"}, {cpuAVX2, "avx2"}, {[]string{"avx", "avx2"}, "avx"}, {cpuAVX, "avx"}, {cpuSSE, "sse"}, {nil, "?"}} {
		if got := cpuISA(tc.f); got != tc.want {
			t.Errorf("cpuISA(%q) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestPeakISA(t *testing.T) {
	xa := OpenBLASEnv{Linked: true, CoreName: "Prescott", Kernel: "xattn-avx512"}
	ob := func(core string) OpenBLASEnv { return OpenBLASEnv{Linked: true, CoreName: core, Kernel: "openblas"} }
	for _, tc := range []struct {
		name string
		r    Result
		ob   OpenBLASEnv
		want string
	}{
		{"AVX-512 CPU: the backend's own kernel whatever the core", Result{Kind: "xattn", Impl: "openblas"}, xa, "avx512"},
		{"AVX2 CPU on Haswell", Result{Kind: "xattn", Impl: "openblas"}, ob("Haswell"), "avx2"},
		{"AVX2 CPU on a Prescott fallback", Result{Kind: "xattn", Impl: "openblas"}, ob("Prescott"), "sse"},
		{"unknown core", Result{Kind: "xattn", Impl: "openblas"}, ob("Frob"), "avx2"},
		{"pure", Result{Kind: "xattn", Impl: "pure"}, xa, "sse"},
		{"peer", Result{Kind: "peer", Impl: "torch"}, xa, "avx2"},
		{"bf16 peer", Result{Kind: "peer", Impl: "torch-bf16", ISA: "bf16-torch"}, xa, "avx512bf16"},
		{"amx", Result{Kind: "xattn", Impl: "openblas-bf16", ISA: "bf16-amx"}, xa, "amx-bf16"},
		{"avx512bf16", Result{Kind: "xattn", Impl: "openblas-bf16", ISA: "bf16-avx512bf16"}, xa, "avx512bf16"},
		{"rounded", Result{Kind: "xattn", Impl: "openblas-bf16", ISA: "bf16-rounded"}, xa, "avx512"},
		{"rounded-scalar", Result{Kind: "xattn", Impl: "openblas-bf16", ISA: "bf16-rounded-scalar"}, xa, "sse"},
		{"bf16 on pure", Result{Kind: "xattn", Impl: "pure-bf16", ISA: "bf16-pure"}, xa, "scalar"},
	} {
		if got := peakISA(&tc.r, tc.ob, bestISAs{FP32: "avx2", BF16: "avx512bf16"}); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	// A bf16 peer on a CPU with no bf16 loop: the best fp32 one.
	if got := peakISA(&Result{Kind: "peer", ISA: "bf16-torch"}, xa, bestISAs{FP32: "avx2"}); got != "avx2" {
		t.Errorf("bf16 peer, no bf16 loop: %q, want avx2", got)
	}
}
