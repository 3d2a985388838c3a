package blas

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The row passes and GEMM kernels a variant of the OpenBLAS backend
// combines, in the order of the XATTN_ROWS_* and XATTN_GEMM_* constants of
// shim.h (TestVariantNames holds them to it), each wider one after the
// narrower: a CPU that runs one runs every one before it.
var (
	rowNames  = [...]string{"scalar", "avx2", "avx512"}
	gemmNames = [...]string{"openblas", "avx512"}
)

// choice is a row pass and a GEMM kernel, indices into rowNames and
// gemmNames.
type choice struct{ rows, gemm int }

// String returns the canonical spelling of v, "rows=…,gemm=…", which
// parseVariant reads back.
func (v choice) String() string {
	return "rows=" + rowNames[v.rows] + ",gemm=" + gemmNames[v.gemm]
}

// The errors of [OpenBLASVariant] and [CheckEnv] wrap one of these.
var (
	// ErrVariant is a variant name that names no variant.
	ErrVariant = errors.New("blas: unknown kernel variant")
	// ErrUnsupported is a variant this CPU, or this build, cannot run.
	ErrUnsupported = errors.New("blas: kernel variant not supported here")
)

// parseVariant reads the variant named by spec for a CPU whose widest
// variant is best:
//
//	""  or "best"  best
//	"avx512"       rows=avx512,gemm=avx512: the own AVX-512 kernels throughout
//	"openblas"     best's row pass, products on OpenBLAS
//	"avx2"         rows=avx2,gemm=openblas: the path of CPUs without AVX-512
//	"scalar"       rows=scalar,gemm=openblas
//	"rows=R,gemm=G" a row pass (scalar, avx2, avx512) and a GEMM kernel
//	               (openblas, avx512) apart; either may be left out for best's
//
// It fails on anything else, and on a variant wider than best in either part.
func parseVariant(spec string, best choice) (choice, error) {
	v := best
	switch spec {
	case "", "best":
	case "avx512":
		v = choice{2, 1}
	case "openblas":
		v.gemm = 0
	case "avx2":
		v = choice{1, 0}
	case "scalar":
		v = choice{0, 0}
	default:
		for f := range strings.SplitSeq(spec, ",") {
			key, val, _ := strings.Cut(f, "=")
			var names []string
			var dst *int
			switch key {
			case "rows":
				names, dst = rowNames[:], &v.rows
			case "gemm":
				names, dst = gemmNames[:], &v.gemm
			default:
				return choice{}, fmt.Errorf("%w %q: want avx512, openblas, avx2, scalar or rows=…,gemm=…", ErrVariant, spec)
			}
			i := slices.Index(names, val)
			if i < 0 {
				return choice{}, fmt.Errorf("%w %q: %s=%q is none of %s", ErrVariant, spec, key, val, strings.Join(names, ", "))
			}
			*dst = i
		}
	}
	if v.rows > best.rows {
		return choice{}, fmt.Errorf("%w: %q: this CPU lacks the %s row pass", ErrUnsupported, spec, rowNames[v.rows])
	}
	if v.gemm > best.gemm {
		return choice{}, fmt.Errorf("%w: %q: this CPU lacks the %s GEMM kernel", ErrUnsupported, spec, gemmNames[v.gemm])
	}
	return v, nil
}

// namedVariants returns the short names parseVariant knows that best runs,
// best first, each naming a different variant.
func namedVariants(best choice) []string {
	var names []string
	var seen []choice
	for _, name := range []string{"best", "avx512", "openblas", "avx2", "scalar"} {
		v, err := parseVariant(name, best)
		if err != nil || slices.Index(seen, v) >= 0 {
			continue
		}
		seen = append(seen, v)
		if name == "best" {
			name = v.short()
		}
		names = append(names, name)
	}
	return names
}

// short returns the short name of v if it has one, else its String.
func (v choice) short() string {
	switch v {
	case choice{2, 1}:
		return "avx512"
	case choice{1, 0}:
		return "avx2"
	case choice{0, 0}:
		return "scalar"
	}
	return v.String()
}
