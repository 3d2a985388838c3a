package xattn

import (
	"errors"

	"github.com/xattn/xattn/xattn/safetensors"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them, with the offending values in the message; test with [errors.Is].
var (
	// ErrConfig reports an invalid Config or Option.
	ErrConfig = errors.New("xattn: invalid configuration")
	// ErrWeights reports weights whose sizes do not fit the Config, or that
	// hold NaN or infinite values.
	ErrWeights = errors.New("xattn: invalid weights")
	// ErrShape reports inputs or outputs whose lengths do not match the
	// Shape and the Config.
	ErrShape = errors.New("xattn: shape mismatch")
	// ErrMask reports a Mask that does not fit the Shape, or holds values it
	// must not (NaN or +Inf bias, key lengths out of range).
	ErrMask = errors.New("xattn: invalid mask")
	// ErrFormat reports a malformed safetensors file (see [ReadSafetensors]).
	// It is [safetensors.ErrFormat], which package safetensors returns.
	ErrFormat = safetensors.ErrFormat
	// ErrBusy reports a [KVCache] that another [Layer.ForwardStep] is
	// using: a cache serves one decoding stream, one step at a time.
	ErrBusy = errors.New("xattn: KV cache in use by another step")
	// ErrNonFinite reports an input that holds a NaN or an infinity, from a
	// layer built [WithFiniteCheck]. Without that option non-finite inputs
	// are not errors: they follow the rule of the package doc ("Non-finite
	// inputs").
	ErrNonFinite = errors.New("xattn: non-finite input")
)
