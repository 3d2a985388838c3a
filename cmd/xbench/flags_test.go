package main

import (
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, o *options)
		err   string // substring of the error; "" for none
	}{
		{name: "defaults", args: nil, check: func(t *testing.T, o *options) {
			if o.format != "table" || o.warmup != 2 || o.repeats != 0 || o.budget != time.Second ||
				o.backend != "" || o.threads != 0 || o.peakN != 1536 || o.python != "/usr/bin/python3" {
				t.Errorf("defaults: %+v", o)
			}
		}},
		{name: "presets", args: []string{"-preset", "sd_unet64, tiny"}, check: func(t *testing.T, o *options) {
			if !reflect.DeepEqual(o.presets, []string{"sd_unet64", "tiny"}) {
				t.Errorf("presets = %q", o.presets)
			}
		}},
		{name: "unknown preset", args: []string{"-preset", "gpt5"}, err: "unknown preset"},
		{name: "tile", args: []string{"-tile", "64,128"}, check: func(t *testing.T, o *options) {
			if o.tileQ != 64 || o.tileKV != 128 {
				t.Errorf("tile = %d,%d", o.tileQ, o.tileKV)
			}
		}},
		{name: "tile one number", args: []string{"-tile", "64"}, err: "-tile"},
		{name: "tile zero", args: []string{"-tile", "0,8"}, err: "-tile"},
		{name: "backend", args: []string{"-backend", "all"}, check: func(t *testing.T, o *options) {
			if o.backend != "all" {
				t.Errorf("backend = %q", o.backend)
			}
		}},
		{name: "bad backend", args: []string{"-backend", "mkl"}, err: "-backend"},
		{name: "serving group", args: []string{"-preset", "serving,tiny", "-rounds", "3", "-requests", "8", "-alpha", "0.01"},
			check: func(t *testing.T, o *options) {
				if !reflect.DeepEqual(o.presets, []string{"serving", "tiny"}) || o.rounds != 3 || o.requests != 8 || o.alpha != 0.01 || !o.fmaProbe {
					t.Errorf("options = %+v", o)
				}
			}},
		{name: "no register probe", args: []string{"-fma-probe=false"}, check: func(t *testing.T, o *options) {
			if o.fmaProbe {
				t.Error("-fma-probe=false ignored")
			}
		}},
		{name: "zero rounds", args: []string{"-rounds", "0"}, err: "-rounds=0"},
		{name: "zero requests", args: []string{"-requests", "0"}, err: "-requests=0"},
		{name: "alpha out of range", args: []string{"-alpha", "1.5"}, err: "-alpha=1.5"},
		{name: "negative peak-n", args: []string{"-peak-n", "-3"}, err: "-peak-n=-3"},
		{name: "negative threads", args: []string{"-threads", "-1"}, err: "-threads"},
		{name: "shape flags", args: []string{"-B", "3", "-tk", "99", "-dh", "32"}, check: func(t *testing.T, o *options) {
			want := map[string]int{"B": 3, "tk": 99, "dh": 32}
			if !reflect.DeepEqual(o.shape, want) {
				t.Errorf("shape = %v, want %v", o.shape, want)
			}
		}},
		{name: "zero shape", args: []string{"-tq", "0"}, err: "-tq=0"},
		{name: "format from -o", args: []string{"-o", "r.json"}, check: func(t *testing.T, o *options) {
			if o.format != "json" {
				t.Errorf("format = %q", o.format)
			}
		}},
		{name: "csv from -o", args: []string{"-o", "dir/r.CSV"}, check: func(t *testing.T, o *options) {
			if o.format != "csv" {
				t.Errorf("format = %q", o.format)
			}
		}},
		{name: "format wins over -o", args: []string{"-o", "r.json", "-format", "table"}, check: func(t *testing.T, o *options) {
			if o.format != "table" {
				t.Errorf("format = %q", o.format)
			}
		}},
		{name: "bad format", args: []string{"-format", "xml"}, err: "-format"},
		{name: "sweep list", args: []string{"-sweep", "threads=2,1,2"}, check: func(t *testing.T, o *options) {
			if o.sweep.key != "threads" || !reflect.DeepEqual(o.sweep.values, []int{1, 2}) {
				t.Errorf("sweep = %+v", o.sweep)
			}
		}},
		{name: "sweep range", args: []string{"-sweep", "tk=64..512,77"}, check: func(t *testing.T, o *options) {
			if o.sweep.key != "tk" || !reflect.DeepEqual(o.sweep.values, []int{64, 77, 128, 256, 512}) {
				t.Errorf("sweep = %+v", o.sweep)
			}
		}},
		{name: "sweep alias", args: []string{"-sweep", "B=1,4"}, check: func(t *testing.T, o *options) {
			if o.sweep.key != "batch" {
				t.Errorf("sweep = %+v", o.sweep)
			}
		}},
		{name: "sweep unknown", args: []string{"-sweep", "heads=1,2"}, err: "unknown variable"},
		{name: "sweep no =", args: []string{"-sweep", "threads"}, err: "key=values"},
		{name: "sweep bad value", args: []string{"-sweep", "tq=0"}, err: "bad value"},
		{name: "sweep bad range", args: []string{"-sweep", "tq=8..4"}, err: "bad range"},
		{name: "plot needs sweep", args: []string{"-plot", "a.svg"}, err: "-plot needs -sweep"},
		{name: "plot extension", args: []string{"-sweep", "tq=1,2", "-plot", "a.gif"}, err: ".svg"},
		{name: "plot", args: []string{"-sweep", "tq=1,2", "-plot", "a.png", "-plot-y", "ms"}, check: func(t *testing.T, o *options) {
			if o.plot != "a.png" || o.plotY != "ms" {
				t.Errorf("plot = %q %q", o.plot, o.plotY)
			}
		}},
		{name: "peers", args: []string{"-peers", "torch,ort"}, check: func(t *testing.T, o *options) {
			if !reflect.DeepEqual(o.peers, []string{"torch", "ort"}) {
				t.Errorf("peers = %q", o.peers)
			}
		}},
		{name: "unknown peer", args: []string{"-peers", "jax"}, err: "unknown peer"},
		{name: "compare positional", args: []string{"-compare", "a.json", "b.json"}, check: func(t *testing.T, o *options) {
			if !reflect.DeepEqual(o.compare, []string{"a.json", "b.json"}) {
				t.Errorf("compare = %q", o.compare)
			}
		}},
		{name: "compare comma", args: []string{"-compare", "a.json,b.json"}, check: func(t *testing.T, o *options) {
			if !reflect.DeepEqual(o.compare, []string{"a.json", "b.json"}) {
				t.Errorf("compare = %q", o.compare)
			}
		}},
		{name: "compare one file", args: []string{"-compare", "a.json"}, err: "two files"},
		{name: "stray argument", args: []string{"tiny"}, err: "unexpected arguments"},
		{name: "bad progress", args: []string{"-progress", "maybe"}, err: "-progress"},
		{name: "unknown flag", args: []string{"-fast"}, err: "not defined"},
	}
	for _, tc := range tests {
		t.Run("case="+strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			o, err := parseArgs(tc.args, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}

func TestBuildCases(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		names []string
		check func(t *testing.T, cs []benchCase)
		err   string
	}{
		{name: "default is every preset", names: []string{"sd_unet64", "decoder", "perceiver", "tiny"},
			check: func(t *testing.T, cs []benchCase) {
				c := cs[0]
				if c.shape.Batch != 2 || c.shape.Tq != 4096 || c.shape.Tk != 77 || c.cfg.QueryDim != 320 ||
					c.cfg.ContextDim != 768 || c.cfg.Heads != 8 || c.cfg.HeadDim != 40 || c.cfg.OutDim != 320 {
					t.Errorf("sd_unet64 = %+v", c)
				}
				if tiny := cs[3]; tiny.cfg.ContextDim != 512 || tiny.cfg.OutDim != 512 {
					t.Errorf("tiny defaults not filled: %+v", tiny.cfg)
				}
			}},
		{name: "shape flags alone", args: []string{"-tq", "7", "-dq", "32", "-heads", "2", "-dh", "16"}, names: []string{"custom"},
			check: func(t *testing.T, cs []benchCase) {
				c := cs[0]
				if c.shape.Tq != 7 || c.cfg.QueryDim != 32 || c.cfg.ContextDim != 32 || c.cfg.OutDim != 32 || c.cfg.Heads != 2 {
					t.Errorf("custom = %+v", c)
				}
			}},
		{name: "preset with shape flags", args: []string{"-preset", "sd_unet64", "-tk", "154", "-bias"}, names: []string{"sd_unet64*"},
			check: func(t *testing.T, cs []benchCase) {
				if cs[0].shape.Tk != 154 || cs[0].shape.Tq != 4096 || !cs[0].cfg.Bias {
					t.Errorf("case = %+v", cs[0])
				}
			}},
		{name: "sweep", args: []string{"-preset", "tiny,decoder", "-sweep", "batch=1,2,4", "-threads", "1"},
			names: []string{"tiny", "tiny", "tiny", "decoder", "decoder", "decoder"},
			check: func(t *testing.T, cs []benchCase) {
				for i, c := range cs {
					if want := []int{1, 2, 4}[i%3]; c.shape.Batch != want || c.value != want || c.sweep != "batch" || c.threads != 1 {
						t.Errorf("case %d = %+v", i, c)
					}
				}
			}},
		{name: "thread sweep", args: []string{"-preset", "tiny", "-sweep", "threads=1,3"}, names: []string{"tiny", "tiny"},
			check: func(t *testing.T, cs []benchCase) {
				if cs[0].threads != 1 || cs[1].threads != 3 {
					t.Errorf("threads = %d, %d", cs[0].threads, cs[1].threads)
				}
			}},
		{name: "invalid config", args: []string{"-preset", "tiny", "-heads", "3", "-dq", "0"}, err: "-dq=0"},
	}
	for _, tc := range tests {
		t.Run("case="+strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			o, err := parseArgs(tc.args, io.Discard)
			if err == nil {
				var cs []benchCase
				cs, err = buildCases(o)
				if err == nil {
					var names []string
					for _, c := range cs {
						names = append(names, c.name)
					}
					if !reflect.DeepEqual(names, tc.names) {
						t.Fatalf("cases %q, want %q", names, tc.names)
					}
					tc.check(t, cs)
				}
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCheckCase(t *testing.T) {
	good := benchCase{name: "x", cfg: presets[3].cfg, shape: presets[3].shape}
	if err := checkCase(good); err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.cfg.Heads = 0
	if err := checkCase(bad); err == nil {
		t.Error("Heads=0 accepted")
	}
	bad = good
	bad.shape.Tk = 0
	if err := checkCase(bad); err == nil {
		t.Error("Tk=0 accepted")
	}
}
