package blas

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/xattn/xattn/pure"
)

// BF16Packed is a k×n matrix B rounded to bf16 (as
// [github.com/xattn/xattn/pure.BF16Bits] rounds) in the packed layout of
// [github.com/xattn/xattn/pure.PackBF16], the right-hand side of
// [BF16Kernel.GemmBF16]: column panels of 16, each the B tiles of AMX's
// TDPBF16PS and the operands of VDPBF16PS in turn (rows 2p and 2p+1
// interleaved), k padded to a multiple of 32. It takes half the memory of
// the float32 matrix, plus the padding. A BF16Packed is immutable and safe to
// share; its zero value is the 0×0 matrix.
type BF16Packed struct {
	data []uint16
	k, n int
}

// K and N return the shape of p: B is K×N.
func (p BF16Packed) K() int { return p.k }
func (p BF16Packed) N() int { return p.n }

// Bytes returns the memory p takes: 2 bytes a value, padding included.
func (p BF16Packed) Bytes() int { return 2 * len(p.data) }

// BF16Panel is the width of the column panels of a [BF16Packed]: a view of
// columns that starts on a multiple of it costs nothing ([BF16Packed.Cols]).
const BF16Panel = pure.BF16Panel

// PackBF16 returns the row-major k×n matrix w (element (r, j) at w[r·n+j])
// rounded to bf16 and packed. It fails, naming the value, on a negative or
// too large size or a w shorter than k·n, before allocating.
func PackBF16(w []float32, k, n int) (BF16Packed, error) {
	return packBF16(w, k, n, false)
}

// PackBF16Trans is [PackBF16] for B given as its n×k transpose w (element
// (r, j) of B at w[j·k+r]: the [out, in] layout of a linear layer's
// weights, which [Backend.Pack] also takes), so that products compute
// C = A·wᵀ.
func PackBF16Trans(w []float32, n, k int) (BF16Packed, error) {
	return packBF16(w, k, n, true)
}

// PackBF16Func returns the k×n matrix whose element (r, j) is at(r, j),
// rounded to bf16 and packed, without a float32 copy of the matrix: for
// weights that load as bf16 or float16 (at converts one element; bf16 values
// pass the rounding unchanged). It fails as [PackBF16] does on the sizes.
func PackBF16Func(k, n int, at func(r, j int) float32) (BF16Packed, error) {
	switch {
	case k < 0 || k > maxC:
		return BF16Packed{}, fmt.Errorf("blas: PackBF16Func: k=%d out of range [0, %d]", k, maxC)
	case n < 0 || n > maxC:
		return BF16Packed{}, fmt.Errorf("blas: PackBF16Func: n=%d out of range [0, %d]", n, maxC)
	case at == nil:
		return BF16Packed{}, errors.New("blas: PackBF16Func: nil element function")
	}
	if k == 0 || n == 0 {
		return BF16Packed{k: k, n: n}, nil
	}
	kp := pure.BF16PaddedK(k)
	d := make([]uint16, pure.BF16PackedLen(k, n))
	for j := range n {
		panel := d[j/BF16Panel*kp*BF16Panel:]
		col := j % BF16Panel * 2
		for r := range k {
			panel[r/2*2*BF16Panel+col+r%2] = pure.BF16Bits(at(r, j))
		}
	}
	return BF16Packed{data: d, k: k, n: n}, nil
}

func packBF16(w []float32, k, n int, trans bool) (BF16Packed, error) {
	switch {
	case k < 0 || k > maxC:
		return BF16Packed{}, fmt.Errorf("blas: PackBF16: k=%d out of range [0, %d]", k, maxC)
	case n < 0 || n > maxC:
		return BF16Packed{}, fmt.Errorf("blas: PackBF16: n=%d out of range [0, %d]", n, maxC)
	case len(w) < k*n:
		return BF16Packed{}, fmt.Errorf("blas: PackBF16: len(w)=%d < k·n=%d·%d", len(w), k, n)
	}
	if k == 0 || n == 0 {
		return BF16Packed{k: k, n: n}, nil
	}
	d := make([]uint16, pure.BF16PackedLen(k, n))
	ld := n
	if trans {
		ld = k
	}
	pure.PackBF16(d, w, k, n, ld, trans)
	return BF16Packed{data: d, k: k, n: n}, nil
}

// Cols returns columns j0 … j0+w−1 of p as a packed matrix of its own,
// sharing p's memory (its padding columns hold the next columns of p,
// which products ignore): j0 must be a multiple of [BF16Panel] (a head block of
// a projection whose heads are whole panels), w ≥ 0 and j0+w ≤ N.
func (p BF16Packed) Cols(j0, w int) (BF16Packed, error) {
	switch {
	case j0 < 0 || j0%BF16Panel != 0:
		return BF16Packed{}, fmt.Errorf("blas: BF16Packed.Cols: j0=%d is not a non-negative multiple of %d", j0, BF16Panel)
	case w < 0 || j0+w > p.n:
		return BF16Packed{}, fmt.Errorf("blas: BF16Packed.Cols: columns [%d, %d+%d) outside the %d columns", j0, j0, w, p.n)
	}
	if w == 0 || p.k == 0 {
		return BF16Packed{k: p.k, n: w}, nil
	}
	kp := pure.BF16PaddedK(p.k)
	end := ceilDiv(j0+w, BF16Panel) * BF16Panel * kp
	return BF16Packed{data: p.data[j0*kp : end : end], k: p.k, n: w}, nil
}

// The BF16 kernels, from the narrowest: the names [BF16KernelNamed] takes.
// A CPU that runs one kernel runs every one before it.
const (
	bf16Pure          = iota // package pure's GemmBF16, in Go
	bf16RoundedScalar        // C: rounded operands, float32 arithmetic
	bf16Rounded              // the same C compiled for AVX-512 F
	bf16AVX512BF16           // VDPBF16PS
	bf16AMX                  // TDPBF16PS
)

var bf16Names = [...]string{"pure", "rounded-scalar", "rounded", "avx512bf16", "amx"}

// BF16Kernel is one implementation of the BF16 product. Every kernel
// computes the same function (bf16 operands, exact products, float32 sums);
// they differ in the order of the sums, and in speed:
//
//	amx             AMX tiles (TDPBF16PS), on CPUs with AMX-TILE, AMX-BF16
//	                and AVX512-BF16, once Linux grants the tile data
//	avx512bf16      VDPBF16PS (Intel Cooper Lake, Sapphire Rapids; AMD Zen 4)
//	rounded         rounded operands and float32 fused multiply-adds, in C
//	                for AVX-512 F
//	rounded-scalar  the same C, compiled for any CPU
//	pure            the same in Go ([github.com/xattn/xattn/pure.GemmBF16]),
//	                in every binary
//
// The same choice picks the product kernel of the BF16 attention core
// ([NewBF16]), where both rounded kernels run one portable C kernel. The
// zero value is pure.
type BF16Kernel struct{ id int }

// Name returns the kernel's name, for reports and [BF16KernelNamed].
func (k BF16Kernel) Name() string { return bf16Names[k.id] }

// BF16Kernels returns the names of the BF16 kernels this binary and CPU
// run, the fastest first.
func BF16Kernels() []string {
	var names []string
	for id := len(bf16Names) - 1; id >= 0; id-- {
		if bf16Avail(id) == nil {
			names = append(names, bf16Names[id])
		}
	}
	return names
}

// BF16Missing returns, for each BF16 kernel this binary or CPU cannot run,
// "name: reason" (an AMX permission refusal included), for reports.
func BF16Missing() []string {
	var out []string
	for id := len(bf16Names) - 1; id >= 0; id-- {
		if err := bf16Avail(id); err != nil {
			out = append(out, bf16Names[id]+": "+err.Error())
		}
	}
	return out
}

// errBF16Kernel is wrapped by the errors of [BF16KernelNamed].
var errBF16Kernel = errors.New("blas: unknown BF16 kernel")

// bf16Unavailable is the error of a known kernel this binary or CPU cannot
// run: it wraps ErrUnsupported and the reason.
type bf16Unavailable struct {
	name   string
	reason error
}

func (e *bf16Unavailable) Error() string {
	return fmt.Sprintf("blas: BF16 kernel %q not available on this CPU: %v", e.name, e.reason)
}

func (e *bf16Unavailable) Unwrap() []error { return []error{ErrUnsupported, e.reason} }

// BF16KernelNamed returns the kernel name (one of [BF16Kernels]; "" or
// "best" is the fastest). It fails, naming it, on an unknown name, and on
// a kernel this binary or CPU cannot run with "not available on this CPU"
// and the reason (an error wrapping [ErrUnsupported]).
func BF16KernelNamed(name string) (BF16Kernel, error) {
	if name == "" || name == "best" {
		return bf16Best(), nil
	}
	id := slices.Index(bf16Names[:], name)
	if id < 0 {
		return BF16Kernel{}, fmt.Errorf("%w %q: want one of %s", errBF16Kernel, name, strings.Join(bf16Names[:], ", "))
	}
	if err := bf16Avail(id); err != nil {
		return BF16Kernel{}, &bf16Unavailable{name, err}
	}
	return BF16Kernel{id}, nil
}

func bf16Best() BF16Kernel {
	for id := len(bf16Names) - 1; id > 0; id-- {
		if bf16Avail(id) == nil {
			return BF16Kernel{id}
		}
	}
	return BF16Kernel{bf16Pure}
}

var (
	bf16EnvOnce sync.Once
	bf16Env     BF16Kernel
	bf16EnvErr  error
)

// BF16Default returns the BF16 kernel the environment variable XATTN_BF16
// names (amx, avx512bf16, rounded, rounded-scalar or pure; read once per
// process), or the fastest one this CPU runs when it is unset. A name that
// is unknown or that this CPU cannot run gives the fastest kernel too, and
// the reason in [BF16DefaultNote].
func BF16Default() BF16Kernel {
	bf16EnvOnce.Do(func() {
		bf16Env, bf16EnvErr = BF16KernelNamed(os.Getenv("XATTN_BF16"))
		if bf16EnvErr != nil {
			bf16Env = bf16Best()
		}
	})
	return bf16Env
}

// BF16DefaultNote returns why [BF16Default] ignored XATTN_BF16, or "".
func BF16DefaultNote() string {
	BF16Default()
	if bf16EnvErr == nil {
		return ""
	}
	return "XATTN_BF16 ignored: " + bf16EnvErr.Error()
}

// GemmBF16 computes
//
//	C = alpha·bf16(A)·B + beta·C (+ 1·biasᵀ when bias != nil)
//
// for row-major A (m×k, leading dimension lda), whose elements are rounded to
// bf16 on the way in, the packed k×n matrix B, and row-major C (m×n,
// leading dimension ldc), with the products of bf16 values (exact) summed
// in float32: the float64 product of the rounded operands, to float32
// accumulation (the reference is bf16GemmRef64 in the tests). With beta = 0,
// C is not read. C must not overlap A. The call runs on the calling
// goroutine, allocates nothing, and may run concurrently with any other; a
// caller that wants threads splits the rows of A and C, or the columns (a
// [BF16Packed.Cols] view with c[j0:] and bias[j0:]).
//
// It fails, naming the offending value, on sizes that do not match b, short
// leading dimensions or slices, before touching C.
func (kn BF16Kernel) GemmBF16(m, n, k int, alpha float32, a []float32, lda int, b BF16Packed, beta float32, c []float32, ldc int, bias []float32) error {
	switch {
	case m < 0 || m > maxC:
		return fmt.Errorf("blas: GemmBF16: m=%d out of range [0, %d]", m, maxC)
	case n != b.n:
		return fmt.Errorf("blas: GemmBF16: n=%d but B has %d columns", n, b.n)
	case k != b.k:
		return fmt.Errorf("blas: GemmBF16: k=%d but B has %d rows", k, b.k)
	case lda < max(1, k) || lda > maxC:
		return fmt.Errorf("blas: GemmBF16: lda=%d, want k=%d ≤ lda ≤ %d", lda, k, maxC)
	case ldc < max(1, n) || ldc > maxC:
		return fmt.Errorf("blas: GemmBF16: ldc=%d, want n=%d ≤ ldc ≤ %d", ldc, n, maxC)
	case m == 0 || n == 0:
		return nil
	case k > 0 && len(a) < (m-1)*lda+k:
		return fmt.Errorf("blas: GemmBF16: len(a)=%d < (m−1)·lda+k=%d", len(a), (m-1)*lda+k)
	case len(c) < (m-1)*ldc+n:
		return fmt.Errorf("blas: GemmBF16: len(c)=%d < (m−1)·ldc+n=%d", len(c), (m-1)*ldc+n)
	case bias != nil && len(bias) < n:
		return fmt.Errorf("blas: GemmBF16: len(bias)=%d < n=%d", len(bias), n)
	case k > 0 && len(b.data) < pure.BF16PackedLen(k, n):
		return fmt.Errorf("blas: GemmBF16: B holds %d values, want %d", len(b.data), pure.BF16PackedLen(k, n))
	}
	if k == 0 {
		for i := range m {
			ci := c[i*ldc : i*ldc+n]
			for j := range ci {
				v := float32(0)
				if beta != 0 {
					v = beta * ci[j]
				}
				if bias != nil {
					v += bias[j]
				}
				ci[j] = v
			}
		}
		return nil
	}
	if kn.id == bf16Pure {
		pure.GemmBF16(m, n, k, alpha, a, lda, b.data, beta, c, ldc, bias)
		return nil
	}
	bf16Gemm(kn.id, m, n, k, alpha, a, lda, b.data, beta, c, ldc, bias)
	return nil
}
