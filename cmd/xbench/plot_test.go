package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sweepReport is a made-up sweep of tk over two implementations.
func sweepReport() *Report {
	rep := &Report{Peaks: []Peak{{Backend: "openblas", Threads: 2, N: 1536, GFLOPs: 350, Machine: true}}}
	for i, tk := range []int{64, 128, 256, 512} {
		for _, impl := range []string{"openblas", "torch"} {
			r := baseResult(benchCase{name: "sd_unet64", cfg: presets[0].cfg, shape: presets[0].shape, sweep: "tk", value: tk}, impl, "xattn")
			if impl == "torch" {
				r.Kind = "peer"
			}
			r.State, r.Threads, r.MedianMs, r.GFLOPs = stateOK, 2, float64(10+i), float64(100+10*i)
			rep.Results = append(rep.Results, r)
		}
	}
	return rep
}

func TestSweepSeries(t *testing.T) {
	s := sweepSeries(sweepReport().Results, "gflops")
	if len(s) != 2 || s[0].name != "xattn openblas" || s[1].name != "torch" || len(s[0].xy) != 4 {
		t.Fatalf("series = %+v", s)
	}
	if s[0].xy[3].X != 512 || s[0].xy[3].Y != 130 {
		t.Errorf("last point = %+v", s[0].xy[3])
	}
	if ms := sweepSeries(sweepReport().Results, "ms"); ms[0].xy[0].Y != 10 {
		t.Errorf("ms series = %+v", ms[0])
	}
}

func TestWritePlot(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"sweep.svg", "sweep.png"} {
		for _, metric := range []string{"gflops", "ms"} {
			path := filepath.Join(dir, metric+"-"+name)
			if err := writePlot(path, sweepReport(), metric); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil || len(data) < 1000 {
				t.Fatalf("%s: %d bytes, %v", path, len(data), err)
			}
			if strings.HasSuffix(name, ".png") && !bytes.HasPrefix(data, []byte("\x89PNG")) {
				t.Errorf("%s is not a PNG", path)
			}
			if strings.HasSuffix(name, ".svg") {
				svg := string(data)
				for _, want := range []string{"<svg", "Tk: keys per sequence", "xattn openblas", "torch"} {
					if !strings.Contains(svg, want) {
						t.Errorf("%s lacks %q", path, want)
					}
				}
				want := "GFLOP/s (xattn.FLOPs / median time)"
				if metric == "ms" {
					want = "median time per call (ms)"
				}
				if !strings.Contains(svg, want) {
					t.Errorf("%s lacks the axis label %q", path, want)
				}
				if metric == "gflops" && !strings.Contains(svg, "measured peak") {
					t.Errorf("%s lacks the peak line", path)
				}
			}
		}
	}
	if err := writePlot(filepath.Join(dir, "empty.svg"), &Report{}, "gflops"); err == nil {
		t.Error("empty sweep plotted")
	}
}
