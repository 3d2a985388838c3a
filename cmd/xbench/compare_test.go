package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompareReports(t *testing.T) {
	old := sampleReport()
	new := sampleReport()
	new.Results[0].MedianMs = old.Results[0].MedianMs * 1.5 // openblas: slower
	new.Results[1].MedianMs = old.Results[1].MedianMs / 2   // pure: faster
	new.Results[2].MedianMs = old.Results[2].MedianMs * 1.01
	new.Results[3].Threads = 4 // ort: a different point, so only in one file each

	rows := compareReports(old, new, 0.05)
	got := map[string]string{}
	for _, r := range rows {
		x := r.new
		if x == nil {
			x = r.old
		}
		got[x.Impl+"/"+r.verdict] = ""
	}
	for _, want := range []string{"openblas/slower", "pure/faster", "torch/same", "ort/only new", "ort/only old"} {
		if _, ok := got[want]; !ok {
			t.Errorf("no row %q in %v", want, got)
		}
	}
	for _, r := range rows {
		if r.new != nil && r.new.Impl == "openblas" && (r.ratio < 1.49 || r.ratio > 1.51) {
			t.Errorf("openblas ratio = %v, want 1.5", r.ratio)
		}
	}

	var buf bytes.Buffer
	writeCompare(&buf, "old.json", "new.json", rows, 0.05)
	out := buf.String()
	for _, want := range []string{"new/old", "1.500", "0.500", "slower", "faster", "only new",
		"geometric mean of new/old time over 3 results: 0.912; 1 slower by more than 5%"} {
		if !strings.Contains(out, want) {
			t.Errorf("compare output lacks %q:\n%s", want, out)
		}
	}
}

func TestCompareCommand(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.csv")
	old := sampleReport()
	new := sampleReport()
	new.Results[0].MedianMs *= 2
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
