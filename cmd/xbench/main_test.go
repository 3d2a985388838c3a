package main

import (
	"bytes"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// small is a shape that runs in well under a millisecond on any backend.
var small = []string{"-B", "2", "-tq", "5", "-tk", "7", "-dq", "16", "-dc", "24", "-heads", "2", "-dh", "8",
	"-warmup", "1", "-repeats", "3", "-peak-n", "32", "-peak-rounds", "1", "-progress", "off"}

func TestXbenchJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := append([]string{"-backend", "all", "-format", "json", "-threads", "1"}, small...)
	if code := xbench(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, stdout.String())
	}
	if rep.Env.GoVersion == "" || rep.Env.GOMAXPROCS < 1 || len(rep.Peaks) == 0 {
		t.Errorf("env = %+v, peaks = %+v", rep.Env, rep.Peaks)
	}
	if len(rep.Results) == 0 || rep.Results[0].Agree != "ref" {
		t.Fatalf("results = %+v", rep.Results)
	}
	for _, r := range rep.Results {
		if r.Case != "custom" || r.State != stateOK || r.Repeats != 3 || r.Threads != 1 || r.PctPeak <= 0 ||
			(r.Agree != "ref" && r.Agree != "ok") {
			t.Errorf("%+v", r)
		}
	}
}

func TestXbenchSweepFiles(t *testing.T) {
	dir := t.TempDir()
	out, plot := filepath.Join(dir, "r.csv"), filepath.Join(dir, "p.svg")
	var stdout, stderr bytes.Buffer
	args := append([]string{"-sweep", "tk=4,8", "-o", out, "-plot", plot}, small...)
	if code := xbench(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "ms median") {
		t.Errorf("no table on stdout:\n%s", stdout.String())
	}
	rep, err := readReport(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2 || rep.Results[0].Tk != 4 || rep.Results[1].Value != 8 || rep.Results[1].Sweep != "tk" {
		t.Errorf("results = %+v", rep.Results)
	}
	// -from reads it back and plots it again.
	stdout.Reset()
	if code := xbench([]string{"-from", out, "-plot", filepath.Join(dir, "again.png")}, &stdout, &stderr); code != 0 {
		t.Fatalf("-from: exit %d: %s", code, stderr.String())
	}
}

func TestXbenchPeaks(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"-peaks", "-sweep", "threads=1,2", "-peak-n", "32", "-peak-rounds", "1", "-format", "json"}
	if code := xbench(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	count := map[int]int{}
	for _, p := range rep.Peaks {
		if p.GFLOPs <= 0 {
			t.Errorf("%+v", p)
		}
		count[p.Threads]++
	}
	if count[1] == 0 || count[1] != count[2] || len(rep.Results) != 0 {
		t.Errorf("probes per thread count %v, %d results", count, len(rep.Results))
	}
	if code := xbench([]string{"-peaks", "-peers", "torch"}, &stdout, &stderr); code != 2 {
		t.Errorf("-peaks -peers: exit %d", code)
	}
}

func TestSubcommands(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"run", "-preset", "tiny"}, []string{"-preset", "tiny"}},
		{[]string{"compare", "a.json", "b.json"}, []string{"-compare", "a.json", "b.json"}},
		{[]string{"peaks", "-threads", "2"}, []string{"-peaks", "-threads", "2"}},
		{[]string{"serving", "-rounds", "3"}, []string{"-preset", "serving", "-rounds", "3"}},
		{[]string{"heatmap", "-heatmap-head", "1", "m.png"}, []string{"-heatmap", "m.png", "-heatmap-head", "1"}},
	} {
		got := subcommands[tc.in[0]](tc.in[1:])
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%q → %q, want %q", tc.in, got, tc.want)
		}
		if _, err := parseArgs(got, io.Discard); err != nil {
			t.Errorf("%q: %v", tc.in, err)
		}
	}
}

func TestXbenchUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := xbench([]string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "-preset") {
		t.Errorf("-h: exit %d\n%s", code, stderr.String())
	}
	if code := xbench([]string{"-threads", "x"}, &stdout, &stderr); code != 2 {
		t.Errorf("bad flag: exit %d", code)
	}
}
