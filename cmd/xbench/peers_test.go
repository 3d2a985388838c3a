package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/xattn/xattn/xattn"
)

func TestWriteProblem(t *testing.T) {
	c := benchCase{name: "small", cfg: xattn.Config{QueryDim: 6, ContextDim: 4, Heads: 2, HeadDim: 3, Bias: true},
		shape: xattn.Shape{Batch: 2, Tq: 3, Tk: 5}}
	p, err := newProblem(c, 7)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeProblem(dir, p, 2, 1, 9); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.Batch != 2 || m.Tq != 3 || m.Tk != 5 || m.QueryDim != 6 || m.ContextDim != 4 || m.OutDim != 6 ||
		m.Heads != 2 || m.HeadDim != 3 || !m.Bias || m.Threads != 2 || m.Warmup != 1 || m.Repeats != 9 ||
		float32(m.Scale) != float32(1/1.7320508075688772) {
		t.Errorf("manifest = %+v", m)
	}
	for name, want := range map[string][]float32{
		"x": p.x, "context": p.ctx, "wq": p.w.Q, "wk": p.w.K, "wv": p.w.V, "wo": p.w.Out,
		"bo": p.w.OutBias, "bq": p.w.QBias, "bk": p.w.KBias, "bv": p.w.VBias,
	} {
		tm, ok := m.Tensors[name]
		if !ok {
			t.Errorf("no tensor %s", name)
			continue
		}
		n := 1
		for _, d := range tm.Shape {
			n *= d
		}
		got, err := readF32(filepath.Join(dir, tm.File))
		if err != nil || n != len(want) || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: shape %v, %d values read, err %v", name, tm.Shape, len(got), err)
		}
	}
	if want := []int{6, 6}; !reflect.DeepEqual(m.Tensors["wo"].Shape, want) {
		t.Errorf("wo shape %v, want out×in %v", m.Tensors["wo"].Shape, want)
	}
	os.WriteFile(filepath.Join(dir, "odd.f32"), []byte{1, 2, 3}, 0o644)
	if _, err := readF32(filepath.Join(dir, "odd.f32")); err == nil {
		t.Error("3-byte float32 file accepted")
	}
}

// TestPeerResult reads a peer's files as a peer script writes them.
func TestPeerResult(t *testing.T) {
	dir := t.TempDir()
	ref := []float32{1, 2, 3}
	writeF32(filepath.Join(dir, "torch.out.f32"), []float32{1, 2, 3.00001})
	os.WriteFile(filepath.Join(dir, "torch.result.json"),
		[]byte(`{"peer":"torch","version":"1.13","threads":2,"times_ms":[3,1,2],"median_ms":2,"min_ms":1,"max_ms":3,"note":"n"}`), 0o644)
	var r Result
	if _, err := readPeer(dir, "torch", &r, ref); err != nil {
		t.Fatal(err)
	}
	if r.MedianMs != 2 || r.MinMs != 1 || r.MaxMs != 3 || r.Repeats != 3 || r.Threads != 2 || r.Agree != "ok" || r.Detail != "n" {
		t.Errorf("result = %+v", r)
	}
	os.WriteFile(filepath.Join(dir, "ort.result.json"), []byte(`{"peer":"ort","times_ms":[]}`), 0o644)
	if _, err := readPeer(dir, "ort", &r, ref); err == nil {
		t.Error("a result without timings accepted")
	}
}

// TestAbsentPeers runs xbench with peers that cannot start: they are
// reported absent, with the reason, and the run still succeeds.
func TestAbsentPeers(t *testing.T) {
	o := &options{peers: []string{"torch", "ort"}, python: "/nonexistent/python3", node: "/nonexistent/node",
		peerTimeout: time.Minute}
	ps := newPeerSet(o)
	for _, name := range o.peers {
		if ps.absent[name] == "" {
			t.Errorf("%s not absent", name)
		}
	}
	c := benchCase{name: "small", cfg: xattn.Config{QueryDim: 4, Heads: 1, HeadDim: 4}, shape: xattn.Shape{Batch: 1, Tq: 2, Tk: 2}}
	p, err := newProblem(c, 1)
	if err != nil {
		t.Fatal(err)
	}
	res := ps.run(p, 1, 1, 3, make([]float32, 8), 1, nil)
	if len(res) != 2 {
		t.Fatalf("%d results", len(res))
	}
	for _, r := range res {
		if r.State != stateAbsent || r.Detail == "" || r.Kind != "peer" || r.MedianMs != 0 {
			t.Errorf("%s: %+v", r.Impl, r)
		}
	}
	if _, err := findScripts(t.TempDir()); err == nil {
		t.Error("findScripts accepted a folder without the scripts")
	}
}
