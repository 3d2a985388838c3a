package xattn

import (
	"errors"
	"os"
	"testing"

	"github.com/xattn/xattn/blas"
)

// skipForcedBF16Missing skips a test that makes BF16 layers with
// WithPrecision(BF16) when XATTN_BF16 forces a kernel this CPU lacks
// (scripts/test.sh runs the BF16 tests under each kernel in turn; New then
// refuses, as it should), logging the reason. A name that is no kernel
// is not skipped: New's error fails the test.
func skipForcedBF16Missing(t testing.TB) {
	t.Helper()
	env := os.Getenv("XATTN_BF16")
	if env == "" {
		return
	}
	if _, err := blas.BF16KernelNamed(env); errors.Is(err, blas.ErrUnsupported) {
		t.Skipf("XATTN_BF16=%s: %v", env, err)
	}
}
