package blas

import (
	"os"
	"testing"
)

// TestRequireOpenBLAS fails when XATTN_REQUIRE_OPENBLAS=1 and the binary has
// no OpenBLAS backend, so that a build-tag or cgo mistake cannot leave only
// the fallback under test. scripts/test.sh sets the variable for cgo runs.
func TestRequireOpenBLAS(t *testing.T) {
	name := Default().Name()
	t.Logf("default backend: %s; OpenBLAS: %+v", name, OpenBLASInfo())
	if os.Getenv("XATTN_REQUIRE_OPENBLAS") == "1" && name != "openblas" {
		t.Fatalf("XATTN_REQUIRE_OPENBLAS=1 but Default() is %q", name)
	}
}
