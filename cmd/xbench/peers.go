package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Peers are other implementations of the same layer, run by the scripts in
// scripts/ as separate processes:
//
//	torch  scripts/peer_torch.py run DIR, under Debian's /usr/bin/python3
//	torch-bf16  the same with bf16 tensors (peer_torch.py run-bf16 DIR)
//	ort    scripts/peer_ort.js run DIR, under Node with onnxruntime-node, on
//	       DIR/model.onnx exported by scripts/peer_torch.py export DIR
//
// xbench writes the problem into a temporary DIR: manifest.json and one raw
// little-endian float32 file per tensor (weights in nn.Linear's out×in
// layout, as xattn.Weights). A peer writes NAME.out.f32 (its y) and
// NAME.result.json (its timings: median, min and max ms over the same repeat
// count after the same warm-up, at the same thread count). A peer that
// cannot start here is reported absent, with the reason.

// manifest is DIR/manifest.json.
type manifest struct {
	Batch      int                       `json:"batch"`
	Tq         int                       `json:"tq"`
	Tk         int                       `json:"tk"`
	QueryDim   int                       `json:"query_dim"`
	ContextDim int                       `json:"context_dim"`
	Heads      int                       `json:"heads"`
	HeadDim    int                       `json:"head_dim"`
	OutDim     int                       `json:"out_dim"`
	Scale      float64                   `json:"scale"`
	Bias       bool                      `json:"bias"`
	Threads    int                       `json:"threads"`
	Warmup     int                       `json:"warmup"`
	Repeats    int                       `json:"repeats"`
	Tensors    map[string]manifestTensor `json:"tensors"`
}

// manifestTensor names a tensor's file and its row-major shape.
type manifestTensor struct {
	File  string `json:"file"`
	Shape []int  `json:"shape"`
}

// peerResult is DIR/NAME.result.json.
type peerResult struct {
	Peer     string    `json:"peer"`
	Version  string    `json:"version"`
	Threads  int       `json:"threads"`
	TimesMs  []float64 `json:"times_ms"`
	MedianMs float64   `json:"median_ms"`
	MinMs    float64   `json:"min_ms"`
	MaxMs    float64   `json:"max_ms"`
	Note     string    `json:"note"`
}

// peerSet runs the peers asked for, after checking once which can start.
type peerSet struct {
	o       *options
	scripts string
	absent  map[string]string // why a peer cannot run; absent key: it can
	version map[string]string
}

// newPeerSet finds the scripts and probes each peer in o.peers.
func newPeerSet(o *options) *peerSet {
	ps := &peerSet{o: o, absent: map[string]string{}, version: map[string]string{}}
	dir, err := findScripts(o.scripts)
	for _, name := range o.peers {
		if err != nil {
			ps.absent[name] = err.Error()
			continue
		}
		ps.scripts = dir
		var out []byte
		var perr error
		switch name {
		case "torch", "torch-bf16":
			out, _, perr = ps.command(context.Background(), nil, o.python, filepath.Join(dir, "peer_torch.py"), "probe")
		case "ort":
			out, _, perr = ps.command(context.Background(), nil, o.node, filepath.Join(dir, "peer_ort.js"), "probe")
		}
		if perr != nil {
			ps.absent[name] = perr.Error() + " (scripts/peers-setup.sh installs the peers)"
			continue
		}
		var v struct{ Version string }
		_ = json.Unmarshal(out, &v)
		ps.version[name] = v.Version
	}
	if _, ok := ps.version["ort"]; ok {
		// The ONNX graph is exported by torch.
		if _, ok := ps.version["torch"]; !ok {
			if _, _, err := ps.command(context.Background(), nil, o.python, filepath.Join(dir, "peer_torch.py"), "probe"); err != nil {
				delete(ps.version, "ort")
				ps.absent["ort"] = "needs torch to export the ONNX graph: " + err.Error()
			}
		}
	}
	return ps
}

// findScripts returns the folder holding peer_torch.py: dir if given, else
// scripts/ in the working directory or the nearest parent that has one.
func findScripts(dir string) (string, error) {
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "peer_torch.py")); err != nil {
			return "", fmt.Errorf("-scripts %s: %w", dir, err)
		}
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "scripts", "peer_torch.py")); err == nil {
			return filepath.Join(d, "scripts"), nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("no scripts/peer_torch.py in the working directory or its parents (give -scripts)")
		}
	}
}

// command runs a peer command with the time limit of a peer run and
// returns its standard output and peak resident set in bytes (0 if
// unknown), or an error quoting the end of its standard error.
func (ps *peerSet) command(ctx context.Context, env []string, name string, args ...string) ([]byte, int64, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, 0, fmt.Errorf("%s not found", name)
	}
	ctx, cancel := context.WithTimeout(ctx, ps.o.peerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("%s timed out after %v", filepath.Base(args[0]), ps.o.peerTimeout)
		}
		return nil, 0, fmt.Errorf("%s %s: %v: %s", filepath.Base(args[0]), strings.Join(args[1:2], ""), err, lastLine(stderr.String()))
	}
	return stdout.Bytes(), childPeakRSS(cmd.ProcessState), nil
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// run runs every peer on p at threads, with the warm-up and repeat counts
// of the reference, and compares their outputs with ref.
func (ps *peerSet) run(p *problem, threads, warmup, repeats int, ref []float32, refMs float64, prog *progress) []Result {
	var out []Result
	dir, err := os.MkdirTemp("", "xbench-peers-")
	if err == nil {
		defer os.RemoveAll(dir)
		err = writeProblem(dir, p, threads, warmup, repeats)
	}
	exported := false
	var exportErr error
	for _, name := range ps.o.peers {
		r := baseResult(p.c, name, "peer")
		r.Threads, r.Warmup, r.Repeats = threads, warmup, repeats
		if why, ok := ps.absent[name]; ok {
			r.State, r.Detail = stateAbsent, why
			out = append(out, r)
			prog.end()
			continue
		}
		prog.begin(fmt.Sprintf("%s %s threads=%d", p.c.name, name, threads))
		if err != nil {
			r.State, r.Detail = stateError, err.Error()
			out = append(out, r)
			prog.end()
			continue
		}
		// The peers use as many threads as xattn; OpenBLAS and OpenMP
		// inside torch are told too, so that no pool runs wider.
		env := []string{"OMP_NUM_THREADS=" + strconv.Itoa(threads), "OPENBLAS_NUM_THREADS=" + strconv.Itoa(threads),
			"MKL_NUM_THREADS=" + strconv.Itoa(threads)}
		var rerr error
		var rss int64
		switch name {
		case "torch":
			_, rss, rerr = ps.command(context.Background(), env, ps.o.python, filepath.Join(ps.scripts, "peer_torch.py"), "run", dir)
		case "torch-bf16":
			// The same layer with bf16 weights and activations: held to
			// the BF16 bound (setAgreement).
			r.ISA = "bf16-torch"
			_, rss, rerr = ps.command(context.Background(), env, ps.o.python, filepath.Join(ps.scripts, "peer_torch.py"), "run-bf16", dir)
		case "ort":
			if !exported {
				_, _, exportErr = ps.command(context.Background(), env, ps.o.python, filepath.Join(ps.scripts, "peer_torch.py"), "export", dir)
				exported = true
			}
			rerr = exportErr
			if rerr == nil {
				_, rss, rerr = ps.command(context.Background(), env, ps.o.node, filepath.Join(ps.scripts, "peer_ort.js"), "run", dir)
			}
		}
		if rerr == nil {
			var y []float32
			y, rerr = readPeer(dir, name, &r, ref)
			setRef64(&r, p, y)
		}
		if rerr != nil {
			r.State, r.Detail = stateError, rerr.Error()
		} else {
			r.State = stateOK
			r.PeakRSSMiB = float64(rss) / (1 << 20)
			r.GFLOPs = r.FLOPs / (r.MedianMs * 1e6)
			if refMs > 0 {
				r.VsRef = r.MedianMs / refMs
			}
		}
		out = append(out, r)
		prog.end()
	}
	return out
}

// readPeer reads a peer's timings and output into r, checks the output
// against ref, and returns it.
func readPeer(dir, name string, r *Result, ref []float32) ([]float32, error) {
	data, err := os.ReadFile(filepath.Join(dir, name+".result.json"))
	if err != nil {
		return nil, err
	}
	var pr peerResult
	if err := json.Unmarshal(data, &pr); err != nil {
		return nil, fmt.Errorf("%s.result.json: %w", name, err)
	}
	if pr.MedianMs <= 0 || len(pr.TimesMs) == 0 {
		return nil, fmt.Errorf("%s.result.json has no timings", name)
	}
	r.MedianMs, r.MinMs, r.MaxMs = pr.MedianMs, pr.MinMs, pr.MaxMs
	r.Repeats, r.Rounds, r.SamplesMs = len(pr.TimesMs), 1, pr.TimesMs
	if pr.Threads > 0 {
		r.Threads = pr.Threads
	}
	r.Detail = pr.Note
	y, err := readF32(filepath.Join(dir, name+".out.f32"))
	if err != nil {
		return nil, err
	}
	setAgreement(r, ref, y)
	return y, nil
}

// writeProblem writes the manifest and the tensors of p into dir.
func writeProblem(dir string, p *problem, threads, warmup, repeats int) error {
	c := p.c
	hd := c.cfg.Heads * c.cfg.HeadDim
	dq, dc, do := c.cfg.QueryDim, contextDim(c.cfg), outDim(c.cfg)
	m := manifest{
		Batch: c.shape.Batch, Tq: c.shape.Tq, Tk: c.shape.Tk,
		QueryDim: dq, ContextDim: dc, Heads: c.cfg.Heads, HeadDim: c.cfg.HeadDim, OutDim: do,
		Scale: float64(p.scale), Bias: c.cfg.Bias,
		Threads: threads, Warmup: warmup, Repeats: repeats,
		Tensors: map[string]manifestTensor{},
	}
	tensors := []struct {
		name  string
		data  []float32
		shape []int
	}{
		{"x", p.x, []int{c.shape.Batch, c.shape.Tq, dq}},
		{"context", p.ctx, []int{c.shape.Batch, c.shape.Tk, dc}},
		{"wq", p.w.Q, []int{hd, dq}},
		{"wk", p.w.K, []int{hd, dc}},
		{"wv", p.w.V, []int{hd, dc}},
		{"wo", p.w.Out, []int{do, hd}},
		{"bo", p.w.OutBias, []int{do}},
	}
	if c.cfg.Bias {
		tensors = append(tensors, []struct {
			name  string
			data  []float32
			shape []int
		}{
			{"bq", p.w.QBias, []int{hd}}, {"bk", p.w.KBias, []int{hd}}, {"bv", p.w.VBias, []int{hd}},
		}...)
	}
	for _, t := range tensors {
		n := 1
		for _, d := range t.shape {
			n *= d
		}
		if n != len(t.data) {
			return fmt.Errorf("peer tensor %s: %d values for shape %v", t.name, len(t.data), t.shape)
		}
		f := t.name + ".f32"
		if err := writeF32(filepath.Join(dir, f), t.data); err != nil {
			return err
		}
		m.Tensors[t.name] = manifestTensor{File: f, Shape: t.shape}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "manifest.json"), data, 0o644)
}

// writeF32 writes s as raw little-endian float32.
func writeF32(path string, s []float32) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	var b [4]byte
	for _, v := range s {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
		w.Write(b[:])
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readF32 reads a raw little-endian float32 file.
func readF32(path string) ([]float32, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data)%4 != 0 {
		return nil, fmt.Errorf("%s: %d bytes is not a float32 array", filepath.Base(path), len(data))
	}
	s := make([]float32, len(data)/4)
	for i := range s {
		s[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return s, nil
}
