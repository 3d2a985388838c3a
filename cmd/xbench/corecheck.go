package main

import (
	"fmt"
	"slices"
	"strings"
)

// OpenBLAS core names (openblas_get_corename of a DYNAMIC_ARCH build, as
// OPENBLAS_CORETYPE takes them) by the vector ISA of their SGEMM kernels.
var coreISAs = map[string][]string{
	"avx512": {"skylakex", "cooperlake", "sapphirerapids"},
	"avx2":   {"haswell", "zen", "excavator", "skylake", "alderlake"},
	"avx":    {"sandybridge", "bulldozer", "piledriver", "steamroller"},
	"sse": {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "barcelona", "opteron",
		"opteron_sse3", "nano", "katmai", "coppermine", "northwood", "banias", "athlon", "bobcat"},
}

// isaRank orders the ISAs: a higher one runs the kernels of a lower one.
var isaRank = map[string]int{"scalar": 0, "sse": 1, "avx": 2, "avx2": 3, "avx512": 4}

// coreISA returns the vector ISA of OpenBLAS core core's kernels, or "?"
// for a name this table does not know.
func coreISA(core string) string {
	c := strings.ToLower(strings.TrimSpace(core))
	for isa, names := range coreISAs {
		if slices.Contains(names, c) {
			return isa
		}
	}
	return "?"
}

// cpuISA returns the best vector ISA of a CPU described by its feature
// names (Env.ISA, where the OS check of AVX and AVX-512 is included).
func cpuISA(features []string) string {
	has := func(f string) bool { return slices.Contains(features, f) }
	switch {
	case has("avx512f"):
		return "avx512"
	case has("avx2") && has("fma"):
		return "avx2"
	case has("avx"):
		return "avx"
	case has("sse4.1"):
		return "sse"
	}
	return "?"
}

// fixCore is the OPENBLAS_CORETYPE that selects OpenBLAS's best kernels
// for a CPU of each ISA.
var fixCore = map[string]string{"avx512": "SkylakeX", "avx2": "Haswell", "avx": "Sandybridge"}

// coreCheck is the verdict on OpenBLAS's core for a CPU: Level is "" (the
// core matches the CPU, or nothing is known), "note" (a lesser mismatch:
// AVX2 kernels on an AVX-512 CPU, about half the speed of the SkylakeX
// ones, or a core this table does not know) or "warning" (a fallback to
// kernels of an older ISA than AVX2 on an AVX2 or AVX-512 CPU, or AVX
// kernels under an AVX2 one; or a forced core above the CPU, which faults).
// Fix is the setting that picks the right kernels.
type coreCheck struct {
	Level, Text, Fix string
}

// checkCore judges OpenBLAS's core core on a CPU with features; forced is
// the OPENBLAS_CORETYPE that chose it, "" when OpenBLAS chose for itself.
// It is pure, so tests drive it with made-up pairs.
func checkCore(features []string, core, forced string) coreCheck {
	if core == "" {
		return coreCheck{}
	}
	have, kern := cpuISA(features), coreISA(core)
	if have == "?" {
		return coreCheck{}
	}
	fix := "OPENBLAS_CORETYPE=" + fixCore[have]
	if fixCore[have] == "" {
		fix = "unset OPENBLAS_CORETYPE"
	}
	if kern == "?" {
		return coreCheck{Level: "note", Text: fmt.Sprintf("OpenBLAS core %s is not one xbench knows; its kernels' ISA is unknown (this CPU: %s)", core, have)}
	}
	switch d := isaRank[have] - isaRank[kern]; {
	case d < 0:
		return coreCheck{Level: "warning", Fix: fix,
			Text: fmt.Sprintf("OpenBLAS core %s uses %s kernels, which this CPU (%s) lacks", core, kern, have)}
	case d == 0:
		return coreCheck{}
	case kern == "avx2" && have == "avx512":
		return coreCheck{Level: "note", Fix: fix,
			Text: fmt.Sprintf("OpenBLAS runs its %s (AVX2) kernels on this AVX-512 CPU, about half the speed of its AVX-512 ones", core)}
	default:
		why := "an OpenBLAS too old to know this CPU model"
		if forced != "" {
			why = "OPENBLAS_CORETYPE=" + forced + " chose them"
		}
		return coreCheck{Level: "warning", Fix: fix,
			Text: fmt.Sprintf("OpenBLAS runs its %s (%s) kernels, a fallback, on this %s CPU (%s): a fraction of the CPU's speed", core, strings.ToUpper(kern), strings.ToUpper(have), why)}
	}
}

// String is the verdict as a report line, "" when there is nothing to say.
func (c coreCheck) String() string {
	if c.Level == "" {
		return ""
	}
	s := strings.ToUpper(c.Level) + ": " + c.Text
	if c.Fix != "" {
		s += "; set " + c.Fix + " to fix"
	}
	return s
}
