// Package safetensors reads and writes the safetensors file format
// (https://github.com/huggingface/safetensors):
//
//	8 bytes      N, little-endian uint64: the size of the header
//	N bytes      header: a UTF-8 JSON object
//	             {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, …,
//	              "__metadata__": {"key": "value", …}}   (optional, strings only)
//	rest         the byte buffer; tensor "name" is bytes begin … end−1 of it,
//	             little-endian, row-major
//
// It is the format only: [Read] parses and validates a header and returns a
// [File], whose [File.Tensor] reads one tensor at a time as float32 (from
// F32, F16, BF16 or F64) and [File.Bytes] any tensor's raw bytes; [Write]
// writes float32 tensors as F32, F16 or BF16. The names a PyTorch module
// gives a layer's parameters, and loading them as a layer's weights, belong
// to package xattn (its Mapping and LoadWeights).
//
// The reader is our own rather than a library: the Go packages for the format
// (github.com/nlpodyssey/safetensors and its forks) need the whole file in
// memory as one []byte, and decode the header into a map, which keeps the last
// of two tensors with the same name instead of rejecting the file. This one
// reads the header through an io.ReaderAt, reads a tensor only when asked, and
// checks everything the format promises before it allocates anything sized by
// the file's own claims.
//
// # Errors
//
// A malformed file, or a reader that fails, gives an error wrapping
// [ErrFormat]; a request the file or the tensors cannot satisfy (a name the
// file lacks, a dtype that does not convert, tensors that cannot be written)
// one wrapping [ErrTensor]. Test with [errors.Is].
package safetensors
