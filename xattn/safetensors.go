package xattn

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"

	"github.com/xattn/xattn/xattn/safetensors"
)

// This file loads and saves a layer's weights as safetensors files under the
// names PyTorch modules give them. The format itself (header, dtypes, bounds)
// is package [safetensors]; the names below are the ones package xattn has
// always exported for it, and keep working.

// MaxSafetensorsHeader is the largest header, in bytes, that
// [ReadSafetensors] accepts: 100 MB, the limit of the reference
// implementation. Real headers are a few kilobytes to a few megabytes. It is
// [safetensors.MaxHeader].
const MaxSafetensorsHeader = safetensors.MaxHeader

// TensorInfo describes one tensor of a safetensors file; see
// [safetensors.TensorInfo].
type TensorInfo = safetensors.TensorInfo

// Tensor is a named float32 tensor, row-major, as [SafetensorsFile.Tensor]
// returns it and [WriteSafetensors] takes it; see [safetensors.Tensor].
type Tensor = safetensors.Tensor

// SafetensorsFile is a validated safetensors file: a [safetensors.File],
// from which [SafetensorsFile.Weights] also loads a layer's weights. It
// does not own the reader: keep it open while the SafetensorsFile is in use,
// and close it yourself. Its methods are safe for concurrent use if the
// reader's ReadAt is (os.File's and bytes.Reader's are).
type SafetensorsFile struct {
	f *safetensors.File
}

// ReadSafetensors parses and validates the header of the safetensors file
// that r holds, of size bytes, as [safetensors.Read] does (which lists what
// a well-formed file must be). It reads the header only; the tensors are
// read when asked for. size must be the true size of the data behind r. It
// returns an error wrapping [ErrFormat] unless the file is well formed.
func ReadSafetensors(r io.ReaderAt, size int64) (*SafetensorsFile, error) {
	f, err := safetensors.Read(r, size)
	if err != nil {
		return nil, err
	}
	return &SafetensorsFile{f: f}, nil
}

// File returns the [safetensors.File] that f reads.
func (f *SafetensorsFile) File() *safetensors.File { return f.f }

// Names returns the names of the tensors in the order of the header.
func (f *SafetensorsFile) Names() []string { return f.f.Names() }

// Info describes the tensor called name, if the file has one.
func (f *SafetensorsFile) Info(name string) (TensorInfo, bool) { return f.f.Info(name) }

// Metadata returns a copy of the file's "__metadata__" (nil if it has
// none). PyTorch files written by the safetensors package hold
// {"format": "pt"}.
func (f *SafetensorsFile) Metadata() map[string]string { return f.f.Metadata() }

// Bytes returns the raw bytes of the tensor called name: Size bytes,
// little-endian, row-major, as the file stores them. It returns an error
// wrapping [ErrWeights] if there is no such tensor, and one wrapping
// [ErrFormat] if the reader fails.
func (f *SafetensorsFile) Bytes(name string) ([]byte, error) {
	b, err := f.f.Bytes(name)
	return b, weightsError(err)
}

// Tensor reads the tensor called name and converts it to float32. F32 is
// copied; F16 and BF16 convert exactly (every value of theirs is a float32);
// F64 rounds to nearest. It returns an error wrapping [ErrWeights] if there
// is no such tensor or it holds another dtype, and one wrapping [ErrFormat]
// if the reader fails.
func (f *SafetensorsFile) Tensor(name string) (Tensor, error) {
	t, err := f.f.Tensor(name)
	return t, weightsError(err)
}

// WriteSafetensors writes tensors to w as a safetensors file, in the order
// given, with their data converted to dtype: "F32", "F16" or "BF16" (rounded
// to nearest, ties to even), as [safetensors.Write] does. metadata, if not
// empty, becomes the header's "__metadata__"; PyTorch loaders expect
// {"format": "pt"}. The header is padded with spaces to a multiple of 8
// bytes, as the reference writer does.
//
// It returns an error wrapping [ErrWeights] for a name that is not valid
// UTF-8, repeated or "__metadata__", a shape whose size differs from
// len(Data), or a finite value that overflows F16 or BF16 to infinity; and
// the writer's error if a write fails.
func WriteSafetensors(w io.Writer, tensors []Tensor, dtype string, metadata map[string]string) error {
	return weightsError(safetensors.Write(w, tensors, dtype, metadata))
}

// weightsError returns an error of package safetensors that reports a bad
// request ([safetensors.ErrTensor]) as one of this package: wrapping
// [ErrWeights] (and still the original). Others pass unchanged: ErrFormat is
// the same value in both packages, and a writer's error is the writer's.
func weightsError(err error) error {
	if errors.Is(err, safetensors.ErrTensor) {
		return fmt.Errorf("%w: %w", ErrWeights, err)
	}
	return err
}

// Mapping names the parameters of a layer the way a PyTorch module does, so
// that its state_dict, saved as safetensors, loads as [Weights]. Every
// mapping stores a projection as nn.Linear does: weight [out, in] and bias
// [out], which is the layout of [Weights] itself, so nothing is transposed.
// With Config c, hq = c.Heads·c.HeadDim, hk = c.KVHeads·c.HeadDim and
// hv = c.KVHeads·c.ValueHeadDim:
//
//	Diffusers   diffusers' Attention (attn1, attn2 of a transformer block)
//	  to_q.weight [hq, QueryDim]     to_q.bias [hq]      biases only if c.Bias
//	  to_k.weight [hk, ContextDim]   to_k.bias [hk]
//	  to_v.weight [hv, ValueDim]     to_v.bias [hv]
//	  to_out.0.weight [OutDim, Heads·ValueHeadDim]   to_out.0.bias [OutDim]  (optional)
//
//	TorchMHA    torch.nn.MultiheadAttention
//	  in_proj_weight [hq+hk+hv, E]   in_proj_bias [hq+hk+hv]   if kdim = vdim = embed_dim
//	  q_proj_weight [hq, QueryDim]   in_proj_bias [hq+hk+hv]   otherwise
//	  k_proj_weight [hk, ContextDim]
//	  v_proj_weight [hv, ValueDim]
//	  out_proj.weight [OutDim, hq]   out_proj.bias [OutDim]    (optional)
//
//	Plain       q_proj, k_proj, v_proj, out_proj Linear layers (Hugging Face
//	            transformers' BART, Whisper, … attention blocks)
//	  q_proj.weight, q_proj.bias, k_proj.…, v_proj.…, out_proj.weight, out_proj.bias
//
// Biases of the query, key and value projections are present exactly when
// Config.Bias is set (in_proj_bias for TorchMHA), with one exception: Plain's
// k_proj.bias may be absent, as in Whisper, and is then zero. (A key bias b
// adds q·b to every score of query q alike, which the softmax cancels, so
// Whisper's layers compute the same with or without it.) The output bias may
// be absent (diffusers' out_bias=False, MultiheadAttention's bias=False), and
// is then zero. TorchMHA needs the shapes of a MultiheadAttention: QueryDim =
// Heads·HeadDim = Heads·ValueHeadDim = OutDim (embed_dim) and KVHeads = Heads;
// kdim and vdim are ContextDim and ValueDim. Its in_proj_weight form needs
// ContextDim = ValueDim = QueryDim, as in PyTorch.
//
// The scale of the scores is not stored in the file: all three modules use
// 1/√HeadDim, the default of Config.Scale.
type Mapping int

const (
	// Diffusers is diffusers' Attention: to_q, to_k, to_v, to_out.0.
	Diffusers Mapping = iota + 1
	// TorchMHA is torch.nn.MultiheadAttention: in_proj_weight (or
	// q_proj_weight, k_proj_weight, v_proj_weight), in_proj_bias, out_proj.
	TorchMHA
	// Plain is q_proj, k_proj, v_proj, out_proj, each with .weight and .bias.
	Plain
)

// String returns the mapping's name: "diffusers", "torch-mha" or "plain".
func (m Mapping) String() string {
	switch m {
	case Diffusers:
		return "diffusers"
	case TorchMHA:
		return "torch-mha"
	case Plain:
		return "plain"
	}
	return "Mapping(" + strconv.Itoa(int(m)) + ")"
}

// param is one tensor of a mapping: its name and the [rows, cols] shape it
// must have (cols 0 for a vector), and the part of Weights it holds (the
// caller splits TorchMHA's packed in_proj tensors, whose part is partNone).
type param struct {
	name       string
	rows, cols int
	required   bool
	part       weightPartID
}

// weightPartID names a part of [Weights].
type weightPartID int

const (
	partNone weightPartID = iota
	partQ
	partK
	partV
	partOut
	partQBias
	partKBias
	partVBias
	partOutBias
	numParts
)

// part returns the field of w that part i names.
func (w *Weights) part(i weightPartID) *[]float32 {
	return [numParts]*[]float32{nil, &w.Q, &w.K, &w.V, &w.Out, &w.QBias, &w.KBias, &w.VBias, &w.OutBias}[i]
}

// params lists the tensors of mapping m for the resolved Config c, with
// names relative to the prefix. For TorchMHA, the packed in_proj tensors are
// described with part partNone; the caller splits them.
func (m Mapping) params(c Config) ([]param, error) {
	hq, hk, hv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.KVHeads*c.ValueHeadDim
	ho := c.Heads * c.ValueHeadDim
	var q, k, v, o string
	switch m {
	case Diffusers:
		q, k, v, o = "to_q.", "to_k.", "to_v.", "to_out.0."
	case Plain:
		q, k, v, o = "q_proj.", "k_proj.", "v_proj.", "out_proj."
	case TorchMHA:
		e := c.QueryDim
		if hq != e || ho != e || c.OutDim != e || c.KVHeads != c.Heads {
			return nil, fmt.Errorf("%w: TorchMHA needs QueryDim = Heads·HeadDim = Heads·ValueHeadDim = OutDim and KVHeads = Heads; have %v",
				ErrConfig, c)
		}
		ps := []param{
			{"out_proj.weight", c.OutDim, ho, true, partOut},
			{"out_proj.bias", c.OutDim, 0, false, partOutBias},
		}
		if c.Bias {
			ps = append(ps, param{"in_proj_bias", hq + hk + hv, 0, true, partNone})
		}
		return ps, nil
	default:
		return nil, fmt.Errorf("%w: unknown Mapping %d", ErrConfig, int(m))
	}
	ps := []param{
		{q + "weight", hq, c.QueryDim, true, partQ},
		{k + "weight", hk, c.ContextDim, true, partK},
		{v + "weight", hv, c.ValueDim, true, partV},
		{o + "weight", c.OutDim, ho, true, partOut},
		{o + "bias", c.OutDim, 0, false, partOutBias},
	}
	if c.Bias {
		ps = append(ps,
			param{q + "bias", hq, 0, true, partQBias},
			// Plain's k_proj.bias may be absent, as in Whisper (see Mapping).
			param{k + "bias", hk, 0, m != Plain, partKBias},
			param{v + "bias", hv, 0, true, partVBias})
	}
	return ps, nil
}

// normPrefix returns prefix with a trailing dot, unless it is empty.
func normPrefix(prefix string) string {
	if prefix != "" && prefix[len(prefix)-1] != '.' {
		prefix += "."
	}
	return prefix
}

// LoadWeights reads the weights of a layer with Config cfg from the
// safetensors file that r holds (size bytes), under the names of mapping m
// (see [Mapping]) preceded by prefix: with prefix
// "down_blocks.0.attentions.0.transformer_blocks.0.attn2", the query weight
// of [Diffusers] is "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.weight".
// A prefix that does not end in "." gets one. Tensors may be F32, F16, BF16
// or F64; they convert to float32 (see [SafetensorsFile.Tensor]).
//
// The file may hold other tensors, but none whose name starts with the
// prefix other than those of the mapping: an unexpected tensor there (a bias
// when cfg.Bias is false, diffusers' norm_q, MultiheadAttention's bias_k) is
// an error, since the layer would compute something other than the module.
// With an empty prefix, the file must hold the layer's tensors only.
//
// Errors wrap [ErrFormat] for a malformed file (see [ReadSafetensors]),
// [ErrConfig] for an invalid cfg or m, and [ErrWeights] for a missing,
// unexpected or misshapen tensor, a non-float dtype, or NaN or infinite
// values.
func LoadWeights(r io.ReaderAt, size int64, cfg Config, m Mapping, prefix string) (*Weights, error) {
	f, err := ReadSafetensors(r, size)
	if err != nil {
		return nil, err
	}
	return f.Weights(cfg, m, prefix)
}

// LoadWeightsFile is [LoadWeights] for the file at path. An error opening
// the file is returned as os.Open gives it (an *fs.PathError).
func LoadWeightsFile(path string, cfg Config, m Mapping, prefix string) (*Weights, error) {
	var w *Weights
	err := withFile(path, func(r io.ReaderAt, size int64) (err error) {
		w, err = LoadWeights(r, size, cfg, m, prefix)
		return err
	})
	return w, err
}

// Weights reads the weights of a layer from f; see [LoadWeights]. Use it to
// load several layers from one file without parsing its header again.
func (f *SafetensorsFile) Weights(cfg Config, m Mapping, prefix string) (*Weights, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	parts, err := f.parts(c, m, prefix)
	if err != nil {
		return nil, err
	}
	w := &Weights{}
	r := tensorReader{f: f.f}
	for i := partQ; i < numParts; i++ {
		if *w.part(i), err = r.float32s(parts[i]); err != nil {
			return nil, err
		}
	}
	if w.OutBias == nil {
		w.OutBias = make([]float32, c.OutDim)
	}
	if c.Bias && w.KBias == nil {
		w.KBias = make([]float32, c.KVHeads*c.HeadDim)
	}
	if err := w.check(c); err != nil {
		return nil, err
	}
	return w, nil
}

// Layer returns the layer that [New](cfg, w, opts...) makes of the weights
// w of mapping m under prefix in f (see [LoadWeights]). For a BF16 layer
// ([WithPrecision](BF16), or a BF16 backend) it makes no float32 copy of
// the weight matrices: it reads the layer's tensors as the file stores them
// (2 bytes a value for BF16 and F16), and rounds and packs them from there,
// one value at a time; the layer is New's, bit for bit. For an FP32 layer it is New
// of [SafetensorsFile.Weights], without New's copy. The biases are float32
// in every layer.
//
// Errors are those of LoadWeights and New; the options are checked before
// the file is read.
func (f *SafetensorsFile) Layer(cfg Config, m Mapping, prefix string, opts ...Option) (*Layer, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	l, err := newLayer(c, opts)
	if err != nil {
		return nil, err
	}
	if l.plan.Precision != BF16 {
		w, err := f.Weights(cfg, m, prefix)
		if err != nil {
			return nil, err
		}
		l.setFP32(w, true)
		return l, nil
	}
	parts, err := f.parts(c, m, prefix)
	if err != nil {
		return nil, err
	}
	r := tensorReader{f: f.f}
	var lw layerWeights
	for _, b := range [...]struct {
		dst *[]float32
		id  weightPartID
	}{{&lw.qBias, partQBias}, {&lw.kBias, partKBias}, {&lw.vBias, partVBias}, {&lw.outBias, partOutBias}} {
		if *b.dst, err = r.float32s(parts[b.id]); err != nil {
			return nil, err
		}
	}
	if c.Bias && lw.kBias == nil {
		lw.kBias = make([]float32, c.KVHeads*c.HeadDim)
	}
	hq, hk, hv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.KVHeads*c.ValueHeadDim
	mat := func(id weightPartID, rows, cols int) (weightMat, error) {
		at, err := r.at(parts[id])
		return weightMat{rows: rows, cols: cols, at: at}, err
	}
	if lw.q, err = mat(partQ, hq, c.QueryDim); err != nil {
		return nil, err
	}
	if lw.k, err = mat(partK, hk, c.ContextDim); err != nil {
		return nil, err
	}
	if lw.v, err = mat(partV, hv, c.ValueDim); err != nil {
		return nil, err
	}
	if lw.out, err = mat(partOut, c.OutDim, c.Heads*c.ValueHeadDim); err != nil {
		return nil, err
	}
	if err := lw.check(); err != nil {
		return nil, err
	}
	l.packBF16(lw)
	return l, nil
}

// LoadLayer is [SafetensorsFile.Layer] for the safetensors file that r
// holds, of size bytes.
func LoadLayer(r io.ReaderAt, size int64, cfg Config, m Mapping, prefix string, opts ...Option) (*Layer, error) {
	f, err := ReadSafetensors(r, size)
	if err != nil {
		return nil, err
	}
	return f.Layer(cfg, m, prefix, opts...)
}

// LoadLayerFile is [LoadLayer] for the file at path. An error opening the
// file is returned as os.Open gives it (an *fs.PathError).
func LoadLayerFile(path string, cfg Config, m Mapping, prefix string, opts ...Option) (*Layer, error) {
	var l *Layer
	err := withFile(path, func(r io.ReaderAt, size int64) (err error) {
		l, err = LoadLayer(r, size, cfg, m, prefix, opts...)
		return err
	})
	return l, err
}

// withFile calls use with the file at path open, and its size.
func withFile(path string, use func(r io.ReaderAt, size int64) error) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return err
	}
	return use(fh, st.Size())
}

// fileTensor is n values of a tensor of a file, from element off on: one
// part of a layer's weights (SafetensorsFile.parts). The zero fileTensor is
// a part the file lacks.
type fileTensor struct {
	name   string
	off, n int
}

// tensorReader reads the tensors of fileTensors from f, each tensor once
// (TorchMHA's in_proj tensors hold three parts).
type tensorReader struct {
	f    *safetensors.File
	read map[string]safetensors.Floats
}

// at returns the function that gives value i of t, nil for a part the
// file lacks.
func (r *tensorReader) at(t fileTensor) (func(i int) float32, error) {
	if t.name == "" {
		return nil, nil
	}
	fl, ok := r.read[t.name]
	if !ok {
		var err error
		if fl, err = r.f.Floats(t.name); err != nil {
			return nil, weightsError(err)
		}
		if r.read == nil {
			r.read = map[string]safetensors.Floats{}
		}
		r.read[t.name] = fl
	}
	return func(i int) float32 { return fl.At(t.off + i) }, nil
}

// float32s returns the values of t as float32, nil for a part the file
// lacks.
func (r *tensorReader) float32s(t fileTensor) ([]float32, error) {
	at, err := r.at(t)
	if at == nil || err != nil {
		return nil, err
	}
	v := make([]float32, t.n)
	for i := range v {
		v[i] = at(i)
	}
	return v, nil
}

// parts finds the tensors of the weights of mapping m under prefix in f,
// for the resolved Config c, and checks their names, shapes and dtypes
// (see [LoadWeights]); it reads no tensor.
func (f *SafetensorsFile) parts(c Config, m Mapping, prefix string) ([numParts]fileTensor, error) {
	var parts [numParts]fileTensor
	ps, err := m.params(c)
	if err != nil {
		return parts, err
	}
	prefix = normPrefix(prefix)
	used := map[string]bool{}
	load := func(p param) (fileTensor, error) {
		name := prefix + p.name
		info, ok := f.f.Info(name)
		if !ok {
			if p.required {
				return fileTensor{}, fmt.Errorf("%w: %s weights need tensor %q, which the file lacks", ErrWeights, m, name)
			}
			return fileTensor{}, nil
		}
		used[name] = true
		want := []int{p.rows, p.cols}
		if p.cols == 0 {
			want = want[:1]
		}
		if !slices.Equal(info.Shape, want) {
			return fileTensor{}, fmt.Errorf("%w: tensor %q has shape %v, want %v for %v", ErrWeights, name, info.Shape, want, c)
		}
		if !info.IsFloat() {
			return fileTensor{}, fmt.Errorf("%w: tensor %q has dtype %s, want F32, F16, BF16 or F64", ErrWeights, name, info.DType)
		}
		return fileTensor{name: name, n: info.Len()}, nil
	}
	// split sets the parts in order from consecutive values of t, n[i]
	// values each.
	split := func(t fileTensor, order []weightPartID, n ...int) {
		for i, id := range order {
			parts[id] = fileTensor{name: t.name, off: t.off, n: n[i]}
			t.off += n[i]
		}
	}
	hq, hk, hv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.KVHeads*c.ValueHeadDim
	if m == TorchMHA {
		if _, packed := f.f.Info(prefix + "in_proj_weight"); packed {
			if c.ContextDim != c.QueryDim || c.ValueDim != c.QueryDim {
				return parts, fmt.Errorf("%w: in_proj_weight needs QueryDim = ContextDim = ValueDim; have %v", ErrWeights, c)
			}
			all, err := load(param{name: "in_proj_weight", rows: hq + hk + hv, cols: c.QueryDim, required: true})
			if err != nil {
				return parts, err
			}
			d := c.QueryDim
			split(all, []weightPartID{partQ, partK, partV}, hq*d, hk*d, hv*d)
		} else {
			ps = append(ps,
				param{"q_proj_weight", hq, c.QueryDim, true, partQ},
				param{"k_proj_weight", hk, c.ContextDim, true, partK},
				param{"v_proj_weight", hv, c.ValueDim, true, partV})
		}
	}
	for _, p := range ps {
		t, err := load(p)
		if err != nil {
			return parts, err
		}
		if p.part != partNone {
			parts[p.part] = t
		} else if t.n != 0 { // TorchMHA's in_proj_bias
			split(t, []weightPartID{partQBias, partKBias, partVBias}, hq, hk, hv)
		}
	}
	for _, name := range f.f.Names() {
		if len(name) >= len(prefix) && name[:len(prefix)] == prefix && !used[name] {
			return parts, fmt.Errorf("%w: tensor %q is not part of %s weights for %v", ErrWeights, name, m, c)
		}
	}
	return parts, nil
}

// Tensors returns the parameters in w under the names of mapping m preceded
// by prefix (see [LoadWeights]), ready for [WriteSafetensors]. The data
// slices are w's own, not copies, except where TorchMHA packs in_proj_weight
// and in_proj_bias. The output bias is always included, except for
// TorchMHA when cfg.Bias is false and the output bias is zero, since a
// MultiheadAttention with bias=False has none.
func (w *Weights) Tensors(cfg Config, m Mapping, prefix string) ([]Tensor, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if err := w.check(c); err != nil {
		return nil, err
	}
	prefix = normPrefix(prefix)
	ps, err := m.params(c)
	if err != nil {
		return nil, err
	}
	var ts []Tensor
	add := func(name string, rows, cols int, data []float32) {
		shape := []int{rows, cols}
		if cols == 0 {
			shape = shape[:1]
		}
		ts = append(ts, Tensor{Name: prefix + name, Shape: shape, Data: data})
	}
	if m == TorchMHA {
		hq, hk, hv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.KVHeads*c.ValueHeadDim
		if c.ContextDim == c.QueryDim && c.ValueDim == c.QueryDim {
			add("in_proj_weight", hq+hk+hv, c.QueryDim, slices.Concat(w.Q, w.K, w.V))
		} else {
			add("q_proj_weight", hq, c.QueryDim, w.Q)
			add("k_proj_weight", hk, c.ContextDim, w.K)
			add("v_proj_weight", hv, c.ValueDim, w.V)
		}
	}
	for _, p := range ps {
		if p.part == partNone {
			add(p.name, p.rows, 0, slices.Concat(w.QBias, w.KBias, w.VBias))
			continue
		}
		if m == TorchMHA && p.name == "out_proj.bias" && !c.Bias && !slices.ContainsFunc(w.OutBias, func(v float32) bool { return v != 0 }) {
			continue
		}
		data := *w.part(p.part)
		if data == nil { // a nil OutBias, the only part check lets be nil here
			data = make([]float32, p.rows)
		}
		add(p.name, p.rows, p.cols, data)
	}
	return ts, nil
}

// Save writes w to wr as a float32 safetensors file under the names of
// mapping m preceded by prefix (see [LoadWeights] and [Weights.Tensors]),
// with the metadata {"format": "pt"} that PyTorch loaders expect.
// [LoadWeights] with the same arguments reads it back exactly. For F16 or
// BF16 files, pass [Weights.Tensors] to [WriteSafetensors].
func (w *Weights) Save(wr io.Writer, cfg Config, m Mapping, prefix string) error {
	ts, err := w.Tensors(cfg, m, prefix)
	if err != nil {
		return err
	}
	return WriteSafetensors(wr, ts, "F32", map[string]string{"format": "pt"})
}
