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

// TestBF16KeyViews checks the constraint of the views of a BF16 backend's
// packed keys and values: a view starts on a group of BF16KeyStep keys,
// not on a column step of Steps (16), and its Attend reads the packed keys
// and values from there, giving the bits of the unpacked call on the same
// keys.
func TestBF16KeyViews(t *testing.T) {
	be, err := WithBF16(Default(), BF16Default())
	if err != nil {
		t.Fatal(err)
	}
	if _, cols := be.Steps(); cols != BF16Panel || BF16KeyStep != 2*BF16Panel {
		t.Fatalf("Steps columns %d, BF16KeyStep %d, BF16Panel %d", cols, BF16KeyStep, BF16Panel)
	}
	a := &Attention{Batch: 1, KVHeads: 1, Tk: 96, DK: 8, DV: 8, K: make([]float32, 96*8), V: make([]float32, 96*8), LDK: 8, LDV: 8,
		BatchK: 96 * 8, BatchV: 96 * 8}
	for i := range a.K {
		a.K[i], a.V[i] = float32(i%13)-6, float32(i%7)-3
	}
	if !be.PackKeys(a) {
		t.Skipf("%s packs no keys (the Go core)", Kernels(be))
	}
	for _, j0 := range []int{0, 16, 32, 48, 64} {
		_, ok := a.KT.Cols(j0, 96-j0)
		if want := j0%BF16KeyStep == 0; ok != want {
			t.Errorf("Cols(%d, %d) of packed keys: %v, want %v", j0, 96-j0, ok, want)
		}
	}
	// The view at key 32, attended, equals the unpacked keys from key 32.
	q := make([]float32, 5*8)
	for i := range q {
		q[i] = float32(i%5) - 2
	}
	run := func(kt Packed) []float32 {
		b := *a
		b.Heads, b.Tq, b.Scale, b.QBlock, b.KVBlock = 1, 5, 0.3, 32, 32
		b.Q, b.LDQ, b.BatchQ = q, 8, 40
		b.O, b.LDO, b.BatchO = make([]float32, 40), 8, 40
		b.K, b.V, b.Tk, b.KT = a.K[32*8:], a.V[32*8:], 64, kt
		be.Attend(&b, 0, b.Tasks(), make([]float32, be.ScratchLen(&b)))
		return b.O
	}
	kt, _ := a.KT.Cols(32, 64)
	got, want := run(kt), run(Packed{})
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("O[%d] = %v through the packed view, %v unpacked", i, got[i], want[i])
		}
	}
}
