package blas

import (
	"errors"
	"strings"
	"testing"
)

// TestBF16KernelNamedErrors checks the errors of BF16KernelNamed: an
// unknown name is "unknown" and lists the names; a known kernel this binary
// or CPU cannot run (every C kernel without cgo; here, those bf16Avail
// refuses) is "not available on this CPU" with the reason, wrapping
// ErrUnsupported, and never "unknown".
func TestBF16KernelNamedErrors(t *testing.T) {
	_, err := BF16KernelNamed("tpu")
	if !errors.Is(err, errBF16Kernel) || errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), `"tpu"`) ||
		!strings.Contains(err.Error(), "amx") {
		t.Errorf(`BF16KernelNamed("tpu"): %v, want unknown, naming it and the kernels`, err)
	}
	checked := 0
	for id, name := range bf16Names {
		reason := bf16Avail(id)
		// The error of an unavailable kernel, made directly where the CPU
		// runs it, so that every machine checks the message.
		err := error(&bf16Unavailable{name, errors.New("the CPU lacks it")})
		if reason != nil {
			_, err = BF16KernelNamed(name)
			checked++
		}
		want := "blas: BF16 kernel \"" + name + "\" not available on this CPU: "
		if !errors.Is(err, ErrUnsupported) || errors.Is(err, errBF16Kernel) || !strings.HasPrefix(err.Error(), want) ||
			strings.Contains(err.Error(), "unknown") || reason != nil && !strings.HasSuffix(err.Error(), reason.Error()) {
			t.Errorf("kernel %s (%v): error %v, want %q and the reason, wrapping ErrUnsupported", name, reason, err, want)
		}
	}
	t.Logf("%d kernels this binary or CPU cannot run", checked)
}
