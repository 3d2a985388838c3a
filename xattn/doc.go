// Package xattn implements multi-head cross-attention on the CPU: queries
// from one sequence attend over keys and values from another, as in Stable
// Diffusion's UNet (image queries, text context), Transformer decoders
// (target queries, encoder output) and Perceiver IO (a small latent array
// reading a huge input). Self-attention is the case context = x.
//
// # Layout
//
// Everything is float32 and row-major. For a call of [Shape] {Batch, Tq, Tk}:
//
//	x        [Batch, Tq, QueryDim]     queries' source
//	context  [Batch, Tk, ContextDim]   keys' (and values') source
//	y        [Batch, Tq, OutDim]       output, Tq rows like x
//
// Weights use PyTorch's nn.Linear layout ([out, in]); see [Weights].
//
// # Algorithm
//
// The projections are GEMMs over all Batch·T rows, split by rows across the
// layer's workers; keys and values from one source are one GEMM against the
// stacked [Wk; Wv]. Heads are column blocks of the projected matrices, passed
// to the kernels by stride and never copied. The attention core runs tasks of
// (batch, head, block of queries); each walks the keys block by block with
// online softmax — scores of one tile, a fused mask/max/exp/sum row pass,
// rescaling of the partial output only when the maximum moves, and O += P·V —
// so the Tq×Tk score matrix never exists, and the scratch of a worker is one
// tile. The output projection writes straight into y.
//
// When a call has many blocks of query rows (Stable Diffusion's 4096 latent
// pixels) and the backend packs its weights, each worker instead runs the
// query projection, the attention of every head and the output projection
// of one block, so the block's Q and O never leave its cache; when it has
// too few tasks for the workers (decoding), the keys of each row are split
// over them and the partial softmaxes merged exactly.
//
// When few query rows meet many context rows (a decoder reading a long
// encoder output), the layer may instead run the absorbed form: the key and
// value weights move to the queries' side, Q_h·(C·Wk_gᵀ)ᵀ = (Q_h·Wk_g)·Cᵀ
// and P_h·(C·Wv_gᵀ) = (P_h·C)·Wv_gᵀ, so the context is never projected and
// the attention core reads its raw rows, once for all heads. It does less
// work by about the ratio of Heads·Tq to the key/value width, and is the
// same function to float32 rounding; [Layer.Absorbs] says when a shape runs
// that way, [WithAbsorb] forbids it.
//
// # Serving
//
// [Layer.ProjectContext] projects a context once for any number of
// [Layer.ForwardContext] calls (a diffusion prompt, an encoder output),
// bit-identical to [Layer.ForwardInto] where that projects the context too
// (see [WithAbsorb]); [KVCache] and [Layer.ForwardStep]
// decode self-attention one step at a time; [Layer.ForwardBatch] runs many
// small independent requests as one call; [Layer.AttentionMap] returns the
// attention probabilities for inspection. [FiLM] is feature-wise linear
// modulation, the linear-cost alternative to cross-attention, with the same
// conventions.
//
// # Backends and build tags
//
// The arithmetic runs on a [blas.Backend]: OpenBLAS through cgo by default,
// or the portable Go kernels of package pure with -tags purego or
// CGO_ENABLED=0 (the only backend then). [WithBackend] picks one per Layer;
// both give the same results to float32 rounding. On AVX-512 CPUs the
// OpenBLAS backend runs the layer's products on its own kernel, against
// weights it packs once in [New], where OpenBLAS would repack them on every
// call.
//
// # Concurrency
//
// A [Layer] is immutable after [New] and safe for concurrent use. One forward
// pass uses up to Plan.Threads goroutines: the caller's and helpers from one
// process-wide pool shared by every Layer, so many concurrent callers do not
// multiply threads. Scratch comes from a per-Layer pool: once warm, a stream
// of [Layer.ForwardInto] calls allocates nothing. A [KVCache] serves one
// step at a time: a step that finds another under way on the same cache
// returns an error wrapping [ErrBusy] and changes nothing.
//
// # Memory
//
// A call keeps no reference to the caller's buffers once it returns. The
// pool drops a workspace that holds more than twice what the largest of the
// last 32 to 64 calls used (plus 1 MiB), so one huge call does not pin its
// scratch for the layer's lifetime, and the pool's helpers exit after 2 s
// without work. Every call checks its buffers against its Shape before it
// allocates anything, and a legal request larger than the machine's memory
// (or the address-space limit) is an error wrapping [ErrShape] that says how
// much it needs. An output that overlaps an input is such an error too; the
// methods of a nil or zero [Layer], [FiLM], [Context] or [KVCache] return
// errors (wrapping [ErrConfig] or [ErrShape]) or zero values, never panic.
//
// # Non-finite inputs
//
// A NaN or an infinity in x or the context is not an error (unless the
// layer is built [WithFiniteCheck], which rejects it with [ErrNonFinite]).
// It reaches exactly the outputs it takes part in, the same on every
// backend, kernel and path (fused, phased, split keys, absorbed, Context,
// KVCache, ForwardBatch, AttentionMap):
//
//   - A non-finite value in a query row makes that row's y NaN, unless the
//     row sees no key at all (then it is the output bias, as every fully
//     masked row).
//   - A non-finite value in a context row makes NaN (or, for an infinite
//     value alone, ±Inf) the y row of every query that sees that key in
//     some head, and nothing else.
//   - A visible score that is not finite (NaN, +Inf or −Inf, which only a
//     non-finite or overflowing input makes) turns its query's attention
//     row, in that head, to NaN; through the output projection the whole y
//     row is NaN.
//   - A masked key — past its KeyLen, above the causal diagonal, Keep false
//     or bias −Inf — never changes any output, whatever its keys and values
//     hold: the mask decides, never the score, and a masked value row is
//     left out of P·V instead of being multiplied by 0 (0·NaN = NaN).
//   - [Layer.AttentionMap] gives a reached row NaN on the keys it sees and 0
//     on the keys it does not.
//
// PyTorch and ONNX Runtime also propagate NaN, by plain IEEE arithmetic,
// and differ in three places: a masked key's NaN value row still reaches
// the output there (0·NaN = NaN in the product), a visible score of −Inf
// only gets probability 0 (here it is NaN: it comes from a non-finite
// input), and a row with no visible key is NaN in their math path (here it
// is the output bias, as in their flash kernels).
//
// # Errors
//
// Every problem caused by caller data — lengths, shapes, masks, configs,
// weights — is an error wrapping [ErrShape], [ErrMask], [ErrConfig] or
// [ErrWeights], never a panic; with [WithFiniteCheck], a NaN or ±Inf input
// is [ErrNonFinite]. Fully masked query rows give zeros, never NaN (see
// [Mask]).
package xattn
