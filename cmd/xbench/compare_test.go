package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// shifted returns n samples around ms, spread ±5%, deterministic.
func shifted(ms float64, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = ms * (0.95 + 0.1*float64((i*7)%n)/float64(n))
	}
	return s
}

// withSamples sets r's samples and their summary.
func withSamples(r *Result, s []float64) {
	r.SamplesMs = s
	r.summarize()
}

func TestCompareReports(t *testing.T) {
	old := sampleReport()
	new := sampleReport()
	withSamples(&old.Results[0], shifted(20, 12))
	withSamples(&new.Results[0], shifted(30, 12)) // openblas: clearly slower
	withSamples(&old.Results[1], shifted(270, 12))
	withSamples(&new.Results[1], shifted(135, 12)) // pure: clearly faster
	withSamples(&old.Results[2], shifted(50, 12))
	withSamples(&new.Results[2], shifted(50, 12)) // torch: the same samples
	new.Results[3].Threads = 4                    // ort: a different point, so only in one file each

	rows := compareReports(old, new, 0.05, 0.05)
	got := map[string]compareRow{}
	for _, r := range rows {
		x := r.new
		if x == nil {
			x = r.old
		}
		got[x.Impl+"/"+r.verdict] = r
	}
	for _, want := range []string{"openblas/slower", "pure/faster", "torch/~", "ort/only new", "ort/only old"} {
		if _, ok := got[want]; !ok {
			t.Errorf("no row %q in %v", want, got)
		}
	}
	if r := got["openblas/slower"]; r.ratio < 1.45 || r.ratio > 1.55 || r.p < 0 || r.p >= 0.001 {
		t.Errorf("openblas: ratio %v, p %v; want 1.5, p < 0.001", r.ratio, r.p)
	}
	if r := got["torch/~"]; r.p < 0.5 {
		t.Errorf("equal samples: p = %v", r.p)
	}

	var buf bytes.Buffer
	writeCompare(&buf, "old.json", "new.json", old, new, rows, 0.05, 0.05)
	out := buf.String()
	for _, want := range []string{"new/old", "1.500", "0.500", "slower", "faster", "only new", "12+12", "Mann–Whitney",
		"1 slower and 1 faster by more than 5% (p < 0.05)"} {
		if !strings.Contains(out, want) {
			t.Errorf("compare output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ENVIRONMENTS DIFFER") {
		t.Errorf("same environment flagged:\n%s", out)
	}
}

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		name    string
		a, b    []float64
		verdict string
	}{
		{"equal samples", shifted(10, 8), shifted(10, 8), verdictNoise},
		{"all tied", []float64{1, 1, 1, 1, 1}, []float64{1, 1, 1, 1, 1}, verdictNoise},
		{"clearly shifted up", shifted(10, 8), shifted(13, 8), verdictSlower},
		{"clearly shifted down", shifted(10, 8), shifted(7, 8), verdictFaster},
		{"shifted within the threshold", shifted(10, 200), shifted(10.15, 200), verdictSame},
		// The case: a single median each and a wide spread tell
		// nothing.
		{"one sample each", []float64{0.15}, []float64{0.88}, verdictFew},
		{"three each, apart", []float64{1, 1.1, 1.2}, []float64{2, 2.1, 2.2}, verdictFew},
		{"overlapping spread", []float64{0.15, 0.3, 0.5, 0.88, 0.2, 0.4}, []float64{0.2, 0.35, 0.6, 0.8, 0.25, 0.45}, verdictNoise},
		{"no samples", nil, shifted(10, 8), verdictNoSampl},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ratio := median(tc.b) / median(tc.a)
			if len(tc.a) == 0 {
				ratio = 1
			}
			p, v := judge(tc.a, tc.b, ratio, 0.02, 0.05)
			if v != tc.verdict {
				t.Errorf("verdict %q (p=%v, ratio %v), want %q", v, p, ratio, tc.verdict)
			}
		})
	}
	if p := minP(3, 3); p < 0.099 || p > 0.101 {
		t.Errorf("minP(3,3) = %v, want 2/20", p)
	}
}

// median of s (tests only).
func median(s []float64) float64 {
	r := Result{SamplesMs: s}
	r.summarize()
	return r.MedianMs
}

func TestEnvDiff(t *testing.T) {
	a := sampleReport().Env
	b := sampleReport().Env
	if d := envDiff(&a, &b); len(d) != 0 {
		t.Errorf("same environments differ: %q", d)
	}
	b.OpenBLAS.CoreName, b.GOMAXPROCS = "Prescott", 3
	b.EnvVars = map[string]string{"OPENBLAS_CORETYPE": "Prescott", "GODEBUG": "x=1"}
	b.CPU = "Other CPU"
	d := strings.Join(envDiff(&a, &b), "\n")
	for _, want := range []string{"cpu: Test CPU → Other CPU", "GOMAXPROCS: 2 → 3", "openblas core: (none) → Prescott",
		"OPENBLAS_CORETYPE: Haswell → Prescott", "GODEBUG: (unset) → x=1"} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
	var none Env
	if d := envDiff(&none, &b); len(d) != 1 || !strings.Contains(d[0], "old file records no environment") {
		t.Errorf("no environment: %q", d)
	}
	// -compare prints them.
	old, new := sampleReport(), sampleReport()
	new.Env = b
	var buf bytes.Buffer
	writeCompare(&buf, "o", "n", old, new, compareReports(old, new, 0.05, 0.05), 0.05, 0.05)
	if !strings.Contains(buf.String(), "THE ENVIRONMENTS DIFFER") || !strings.Contains(buf.String(), "OPENBLAS_CORETYPE: Haswell → Prescott") {
		t.Errorf("compare output:\n%s", buf.String())
	}
}

func TestCompareCommand(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.csv")
	old := sampleReport()
	new := sampleReport()
	withSamples(&old.Results[0], shifted(20, 10))
	withSamples(&new.Results[0], shifted(40, 10))
	if err := writeFile(a, old, "json"); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(b, new, "csv"); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := xbench([]string{"-compare", a, b}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "2.000") || !strings.Contains(stdout.String(), "slower") {
		t.Errorf("output:\n%s", stdout.String())
	}
	if code := xbench([]string{"-compare", a, filepath.Join(dir, "none.json")}, &stdout, &stderr); code != 1 {
		t.Errorf("missing file: exit %d", code)
	}
}
