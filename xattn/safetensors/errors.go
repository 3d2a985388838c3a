package safetensors

import "errors"

// Sentinel errors. Every error returned by this package, other than a
// writer's own, wraps exactly one of them; test with [errors.Is].
var (
	// ErrFormat reports a malformed safetensors file (see [Read]), or a
	// reader that fails. Package xattn's ErrFormat is this same value.
	ErrFormat = errors.New("xattn: malformed safetensors file")
	// ErrTensor reports a request that the file or the tensors cannot
	// satisfy: a tensor the file lacks, one whose dtype does not convert to
	// float32, or tensors that [Write] cannot write.
	ErrTensor = errors.New("safetensors: invalid tensor request")
)
