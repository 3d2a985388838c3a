package main

import (
	"fmt"
	"strings"

	"github.com/xattn/xattn/xattn"
)

// preset is a named workload: a layer configuration and the shape of one
// call.
type preset struct {
	name  string
	cfg   xattn.Config
	shape xattn.Shape
	about string
	// modes, for a serving preset: the serving call and the plain call it
	// replaces (see servingCall), measured as two cases.
	modes []string
}

// presets are the real workloads xbench knows by name, in the order a
// default run measures them.
var presets = []preset{
	{
		name:  "sd_unet64",
		cfg:   xattn.Config{QueryDim: 320, ContextDim: 768, Heads: 8, HeadDim: 40},
		shape: xattn.Shape{Batch: 2, Tq: 4096, Tk: 77},
		about: "Stable Diffusion 1.x UNet, 64×64 latent, text cross-attention",
	},
	{
		name:  "decoder",
		cfg:   xattn.Config{QueryDim: 512, ContextDim: 512, Heads: 8, HeadDim: 64},
		shape: xattn.Shape{Batch: 8, Tq: 32, Tk: 1500},
		about: "Whisper-base decoder over a 30 s encoder output",
	},
	{
		name:  "perceiver",
		cfg:   xattn.Config{QueryDim: 512, ContextDim: 256, Heads: 8, HeadDim: 64},
		shape: xattn.Shape{Batch: 1, Tq: 256, Tk: 16384},
		about: "Perceiver latents reading a long input array",
	},
	{
		name:  "tiny",
		cfg:   xattn.Config{QueryDim: 512, Heads: 8, HeadDim: 64},
		shape: xattn.Shape{Batch: 1, Tq: 10, Tk: 20},
		about: "a call too small to split: fixed costs",
	},
}

// servingPresets are the serving workloads, measured when named (or all
// of them with -preset serving), each as the serving call beside the plain
// call it replaces. They are the benchmarks the README's serving numbers
// come from (xattn's BenchmarkDecoderStep, BenchmarkSelfStep and
// BenchmarkForwardBatch).
var servingPresets = []preset{
	{
		name:  "decoder_step",
		cfg:   xattn.Config{QueryDim: 512, ContextDim: 512, Heads: 8, HeadDim: 64},
		shape: xattn.Shape{Batch: 8, Tq: 32, Tk: 1500},
		about: "decoder step over an encoder output projected once (ProjectContext, ForwardContext) beside ForwardInto projecting it every step",
		modes: []string{modeCached, modeRecompute},
	},
	{
		name:  "kv_step",
		cfg:   xattn.Config{QueryDim: 512, Heads: 8, HeadDim: 64},
		shape: xattn.Shape{Batch: 8, Tq: 1, Tk: 1024},
		about: "self-attention decode step of Tq rows against a KVCache holding Tk (ForwardStep) beside a causal ForwardInto over all Tk+Tq rows",
		modes: []string{modeKVStep, modeCausal},
	},
	{
		name:  "batch",
		cfg:   xattn.Config{QueryDim: 512, Heads: 8, HeadDim: 64},
		shape: xattn.Shape{Batch: 1, Tq: 10, Tk: 20},
		about: "-requests small requests of the tiny shape in one ForwardBatch beside one ForwardInto each",
		modes: []string{modeBatch, modeSeparate},
	},
}

// servingGroup is the -preset name of all the serving presets.
const servingGroup = "serving"

// customBase is the starting point of a free shape given by flags alone,
// without -preset.
var customBase = preset{
	name:  "custom",
	cfg:   xattn.Config{QueryDim: 512, Heads: 8, HeadDim: 64},
	shape: xattn.Shape{Batch: 1, Tq: 128, Tk: 128},
	about: "shape from flags",
}

// findPreset returns the preset called name.
func findPreset(name string) (preset, bool) {
	for _, p := range append(presets[:len(presets):len(presets)], servingPresets...) {
		if p.name == name {
			return p, true
		}
	}
	return preset{}, false
}

// presetNames lists the names of the presets, comma-separated.
func presetNames() string {
	var s []string
	for _, p := range presets {
		s = append(s, p.name)
	}
	for _, p := range servingPresets {
		s = append(s, p.name)
	}
	return strings.Join(append(s, servingGroup), ",")
}

// benchCase is one measured point: a shape, and the thread count (0: the
// layer's default plan). Sweep names the swept variable and Value its value
// here, if the case belongs to a sweep.
type benchCase struct {
	name    string
	cfg     xattn.Config
	shape   xattn.Shape
	threads int
	sweep   string
	value   int
	// mode is the call a serving case times ("" for ForwardInto), and
	// requests the request count of a batch mode.
	mode     string
	requests int
}

// buildCases expands the presets and shape flags of o, and its sweep, into
// the list of cases to measure.
func buildCases(o *options) ([]benchCase, error) {
	var bases []preset
	names := o.presets
	if len(names) == 0 && !o.shapeSet() {
		for _, p := range presets {
			names = append(names, p.name)
		}
	}
	for _, n := range names {
		if n == servingGroup {
			bases = append(bases, servingPresets...)
			continue
		}
		p, ok := findPreset(n)
		if !ok {
			return nil, fmt.Errorf("unknown preset %q (have %s)", n, presetNames())
		}
		bases = append(bases, p)
	}
	if len(bases) == 0 {
		bases = []preset{customBase}
	}
	var cases []benchCase
	for _, p := range bases {
		c := benchCase{name: p.name, cfg: p.cfg, shape: p.shape, threads: o.threads, requests: o.requests}
		o.applyShape(&c)
		if len(bases) == 1 && o.shapeSet() && len(o.presets) == 0 {
			c.name = "custom"
		} else if o.shapeSet() {
			c.name += "*" // a preset with flags changing its shape
		}
		if c.cfg.ContextDim == 0 {
			c.cfg.ContextDim = c.cfg.QueryDim
		}
		if c.cfg.OutDim == 0 {
			c.cfg.OutDim = c.cfg.QueryDim
		}
		modes := p.modes
		if modes == nil {
			modes = []string{""}
		}
		for _, m := range modes {
			c := c
			c.mode = m
			sweep, err := o.sweepCases(c)
			if err != nil {
				return nil, err
			}
			cases = append(cases, sweep...)
		}
	}
	return cases, nil
}

// sweepCases expands c into the points of o's sweep, or returns it alone.
func (o *options) sweepCases(c benchCase) ([]benchCase, error) {
	if o.sweep == nil {
		if err := checkCase(c); err != nil {
			return nil, err
		}
		return []benchCase{c}, nil
	}
	var cases []benchCase
	for _, v := range o.sweep.values {
		s := c
		s.sweep, s.value = o.sweep.key, v
		switch o.sweep.key {
		case "threads":
			s.threads = v
		case "tk":
			s.shape.Tk = v
		case "tq":
			s.shape.Tq = v
		case "batch":
			s.shape.Batch = v
		}
		if err := checkCase(s); err != nil {
			return nil, err
		}
		cases = append(cases, s)
	}
	return cases, nil
}

// checkCase rejects a shape xbench cannot measure. xattn has no exported
// validation of a Config, but FLOPs is 0 exactly for an invalid one, and
// Config.String says why.
func checkCase(c benchCase) error {
	if xattn.FLOPs(c.cfg, xattn.Shape{Batch: 1, Tq: 1, Tk: 1}) == 0 {
		return fmt.Errorf("%s: %s", c.name, c.cfg)
	}
	if c.shape.Batch < 1 || c.shape.Tq < 1 || c.shape.Tk < 1 {
		return fmt.Errorf("%s: B=%d Tq=%d Tk=%d must be positive", c.name, c.shape.Batch, c.shape.Tq, c.shape.Tk)
	}
	return nil
}
