package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/xattn/xattn/blas"
	"github.com/xattn/xattn/xattn"
)

// TestServingPresets runs -preset serving on small shapes: every serving
// call beside its plain call, on every backend, outputs agreeing across
// backends, and the speed-up of each serving call set.
func TestServingPresets(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"-preset", "serving", "-backend", "all", "-format", "json", "-threads", "1", "-requests", "3",
		"-B", "2", "-tq", "3", "-tk", "9", "-dq", "16", "-dc", "16", "-heads", "2", "-dh", "8",
		"-warmup", "1", "-repeats", "3", "-rounds", "2", "-peak-n", "0", "-fma-probe=false", "-progress", "off"}
	if code := xbench(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	modes := map[string]int{}
	for _, r := range rep.Results {
		modes[r.Mode]++
		if r.State != stateOK || r.Rounds != 2 || r.Repeats != 6 || len(r.SamplesMs) != 6 || r.FLOPs <= 0 ||
			(r.Agree != "ref" && r.Agree != "ok") {
			t.Errorf("%s %s: %+v", r.displayCase(), r.Impl, r)
		}
		if _, serving := servingPairs[r.Mode]; serving != (r.Speedup > 0) || (serving && r.PlainMs <= 0) {
			t.Errorf("%s %s: speed-up %v over %v ms", r.displayCase(), r.Impl, r.Speedup, r.PlainMs)
		}
		if (r.Mode == modeBatch || r.Mode == modeSeparate) != (r.Requests == 3) {
			t.Errorf("%s: %d requests", r.displayCase(), r.Requests)
		}
	}
	for _, m := range []string{modeCached, modeRecompute, modeKVStep, modeCausal, modeBatch, modeSeparate} {
		if modes[m] != len(blas.All()) {
			t.Errorf("mode %s: %d results, want one per backend", m, modes[m])
		}
	}
	var table bytes.Buffer
	writeTable(&table, &rep)
	for _, want := range []string{"serving: each serving call beside", "ForwardContext (Context projected once)",
		"ForwardStep (KVCache of Tk)", "one ForwardBatch", "decoder_step*/cached", "batch*/batch×3"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

// TestServingOutputs checks that each serving call computes what the plain
// call it replaces does: a decode step the last rows of the causal
// forward, a cached step and a batch the same y.
func TestServingOutputs(t *testing.T) {
	o := &options{warmup: 0, repeats: 1, budget: time.Second}
	for _, pair := range []struct {
		p          preset
		serve, pln string
	}{
		{servingPresets[0], modeCached, modeRecompute},
		{servingPresets[1], modeKVStep, modeCausal},
		{servingPresets[2], modeBatch, modeSeparate},
	} {
		cfg := pair.p.cfg
		cfg.QueryDim, cfg.Heads, cfg.HeadDim = 16, 2, 8
		if cfg.ContextDim != 0 {
			cfg.ContextDim = 12
		}
		sh := xattn.Shape{Batch: 2, Tq: 3, Tk: 7}
		var ys [2][]float32
		for i, m := range []string{pair.serve, pair.pln} {
			c := benchCase{name: pair.p.name, cfg: cfg, shape: sh, threads: 1, mode: m, requests: 4}
			p, err := newProblem(c, 1)
			if err != nil {
				t.Fatal(err)
			}
			r, y, err := benchLayer(p, blas.Default(), o, nil)
			if err != nil || r.State != stateOK {
				t.Fatalf("%s: %v %+v", m, err, r)
			}
			ys[i] = y
		}
		if d, tol, ok := agreement(ys[1], ys[0]); !ok || len(ys[0]) == 0 {
			t.Errorf("%s: %s differs from %s by %g > %g (%d values)", pair.p.name, pair.serve, pair.pln, d, tol, len(ys[0]))
		}
	}
}

func TestAbsorbedWork(t *testing.T) {
	// The decoder: B=8, Tq=32, Tk=1500, dims 512, 8 heads of 64, by hand:
	// 2·8·32·(512·512 + 8·(64·512 + 1500·1024 + 512·64) + 512·512), the
	// work xbench holds its absorbed rows against (Layer.WorkFLOPs).
	c, sh := presets[1].cfg, presets[1].shape
	w, err := xattn.NewWeights(c, 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := xattn.New(c, w)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Absorbs(sh) {
		t.Fatalf("the decoder preset %+v is not absorbed", sh)
	}
	want := 2.0 * 8 * 32 * (512*512 + 8*(64*512+1500*1024+512*64) + 512*512)
	if got := l.WorkFLOPs(sh); got != want {
		t.Errorf("WorkFLOPs = %v, want %v", got, want)
	}
	if full := xattn.FLOPs(c, sh); !(want < full) {
		t.Errorf("absorbed %v not below the projected form's %v", want, full)
	}
}
