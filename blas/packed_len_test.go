package blas

import "testing"

// TestPackedKeysLen checks that PackedKeysLen states the length of what
// PackKeys makes, on every backend, variant and BF16 kernel of this CPU,
// over key counts and depths off every panel and group size; and that a
// backend of another package is not guessed at.
func TestPackedKeysLen(t *testing.T) {
	bes := All()
	for _, be := range All() {
		for _, name := range BF16Kernels() {
			kn, err := BF16KernelNamed(name)
			if err != nil {
				continue
			}
			if b, err := WithBF16(be, kn); err == nil {
				bes = append(bes, b)
			}
		}
	}
	for _, be := range bes {
		for _, s := range []struct{ batch, kvh, tk, dk, dv int }{{1, 1, 1, 1, 1}, {2, 3, 65, 40, 72}, {1, 2, 31, 64, 8}, {3, 1, 130, 33, 0}} {
			ld := s.kvh * max(s.dk, s.dv)
			a := &Attention{Batch: s.batch, KVHeads: s.kvh, Tk: s.tk, DK: s.dk, DV: s.dv,
				K: make([]float32, s.batch*s.tk*ld), V: make([]float32, s.batch*s.tk*ld), LDK: ld, LDV: ld,
				BatchK: s.tk * ld, BatchV: s.tk * ld}
			n, ok := PackedKeysLen(be, s.batch*s.kvh, s.tk, s.dk, s.dv)
			if !ok {
				t.Fatalf("%s: PackedKeysLen not known", Kernels(be))
			}
			got := 0
			if be.PackKeys(a) {
				got = a.KT.Bytes()
			}
			if float64(got) != 4*n {
				t.Errorf("%s %+v: PackKeys made %d bytes, PackedKeysLen says %v floats", Kernels(be), s, got, n)
			}
		}
	}
	if _, ok := PackedKeysLen(struct{ Backend }{Default()}, 1, 1, 1, 1); ok {
		t.Errorf("PackedKeysLen knows a backend of another type")
	}
}
