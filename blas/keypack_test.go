//go:build cgo && !purego

package blas

import (
	"slices"
	"testing"

	"github.com/xattn/xattn/internal/testutil"
)

// keyPackCases are the BF16 attention cases with keys, and two whose keys
// span several parts (Tk past packSpan, its last group short).
func keyPackCases() []attnCase {
	var cs []attnCase
	for _, tc := range attnBF16Cases(true) {
		if tc.tk > 0 {
			cs = append(cs, tc)
		}
	}
	return append(cs,
		attnCase{name: "parts", b: 2, h: 4, kvh: 2, tq: 40, tk: 2*packSpan + 77, dk: 40, dv: 72, qb: 32, kvb: 256, chunks: 2},
		attnCase{name: "parts-mqa-keylen", b: 3, h: 2, kvh: 1, tq: 3, tk: packSpan + 1, dk: 64, dv: 64, qb: 3, kvb: 512,
			keyLen: []int32{513, 40, 300}, chunks: 1})
}

// packInParts packs a's keys through kp into a NaN-filled buffer, the parts
// in reverse order, and returns the Packed and whether they were finite.
func packInParts(t *testing.T, be Backend, a *Attention) (Packed, bool) {
	t.Helper()
	kp, ok := be.(KeyPacker)
	if !ok {
		t.Fatalf("%s is no KeyPacker", Kernels(be))
	}
	n, _ := PackedKeysLen(be, a.Batch*a.KVHeads, a.Tk, a.DK, a.DV)
	buf := make([]float32, int(n))
	for i := range buf {
		buf[i] = nan32
	}
	parts := kp.KeyParts(a)
	if parts <= 0 {
		t.Fatalf("KeyParts = %d for Tk=%d", parts, a.Tk)
	}
	finite := true
	for i := parts - 1; i >= 0; i-- {
		finite = kp.PackKeysPart(a, buf, i) && finite
	}
	return kp.PackedKeysIn(a, buf, finite), finite
}

// TestKeyPacker: the keys and values a BF16 backend packs in parts into
// caller memory are those of Pack, bit for bit, and attending over them
// gives what attending over PackKeys' gives (which TestAttendBF16KV holds
// to packing each panel), for every BF16 kernel and case.
func TestKeyPacker(t *testing.T) {
	forBF16(t, func(t *testing.T, x *BF16) {
		be, err := WithBF16(openBLASBackend(), x.Kernel())
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range keyPackCases() {
			t.Run(tc.name, func(t *testing.T) {
				a, _, _ := tc.attention(uint64(tc.tk*7 + len(tc.name)))
				ref := x.Pack(a)
				p, finite := packInParts(t, be, a)
				if !finite {
					t.Fatal("finite values reported as not")
				}
				if !slices.Equal(p.kv.k, ref.k) || !slices.Equal(p.kv.v, ref.v) {
					t.Fatal("keys or values packed in parts differ from Pack's")
				}
				if p.N() != a.Tk || p.Count() != a.Batch*a.KVHeads || p.Bytes() != 2*(len(ref.k)+len(ref.v)) {
					t.Fatalf("N %d, Count %d, Bytes %d", p.N(), p.Count(), p.Bytes())
				}
				a.Stats = make([]float32, 2*a.Batch*a.Heads*a.Tq)
				scratch := make([]float32, be.ScratchLen(a))
				o0 := slices.Clone(a.O) // NaN where Attend must not write
				if !be.PackKeys(a) {    // the same task map: a window's tasks start on a panel where keys are packed
					t.Fatal("PackKeys packed nothing")
				}
				be.Attend(a, 0, a.Tasks(), scratch)
				want, wantStats := slices.Clone(a.O), slices.Clone(a.Stats)
				a.KT = p
				copy(a.O, o0)
				clear(a.Stats)
				be.Attend(a, 0, a.Tasks(), scratch)
				if d := testutil.BitDiff(a.O, want); d >= 0 {
					t.Fatalf("O[%d] = %v over keys packed in parts, %v over PackKeys'", d, a.O[d], want[d])
				}
				if d := testutil.BitDiff(a.Stats, wantStats); d >= 0 {
					t.Fatalf("Stats[%d] = %v over keys packed in parts, %v over PackKeys'", d, a.Stats[d], wantStats[d])
				}
			})
		}
	})
}

// TestKeyPackerNonFinite: a non-finite value in one part makes the values
// unusable (finite false, PackedKeysIn without values), and the attention
// over the keys still keeps the non-finite rule.
func TestKeyPackerNonFinite(t *testing.T) {
	forBF16(t, func(t *testing.T, x *BF16) {
		be, _ := WithBF16(openBLASBackend(), x.Kernel())
		tc := attnCase{name: "nf", b: 2, h: 2, kvh: 1, tq: 5, tk: packSpan + 70, dk: 8, dv: 8, qb: 5, kvb: 64, chunks: 1,
			keyLen: []int32{packSpan + 70, 40}}
		a, owned, _ := tc.attention(9)
		a.V[a.BatchV+(packSpan+50)*a.LDV+3] = nan32 // batch 1, beyond its key length: reaches nothing
		p, finite := packInParts(t, be, a)
		if finite || p.kv.v != nil || p.kv.k == nil {
			t.Fatalf("finite %v, values packed %v, keys packed %v", finite, p.kv.v != nil, p.kv.k != nil)
		}
		a.KT = p
		be.Attend(a, 0, a.Tasks(), make([]float32, be.ScratchLen(a)))
		for i, v := range a.O {
			if owned[i] && v != v {
				t.Fatalf("O[%d] = NaN from a value beyond the key length", i)
			}
		}
	})
}

// TestKeyPackerErrors: a short buffer or a part out of range panics with
// its message; a backend that reads keys as they are has no parts; packing
// allocates nothing.
func TestKeyPackerErrors(t *testing.T) {
	forBF16(t, func(t *testing.T, x *BF16) {
		be, _ := WithBF16(openBLASBackend(), x.Kernel())
		kp := be.(KeyPacker)
		tc := attnCase{name: "e", b: 1, h: 2, kvh: 2, tq: 5, tk: 70, dk: 16, dv: 16, qb: 5, kvb: 64, chunks: 1}
		a, _, _ := tc.attention(3)
		n, _ := PackedKeysLen(be, a.Batch*a.KVHeads, a.Tk, a.DK, a.DV)
		buf := make([]float32, int(n))
		mustPanic(t, errKeysBuf, func() { kp.PackKeysPart(a, buf[:len(buf)-1], 0) })
		mustPanic(t, errKeyPart, func() { kp.PackKeysPart(a, buf, kp.KeyParts(a)) })
		mustPanic(t, errKeyPart, func() { kp.PackKeysPart(a, buf, -1) })
		mustPanic(t, errShortK, func() { b := *a; b.K = b.K[:5]; kp.PackKeysPart(&b, buf, 0) })
		if allocs := testing.AllocsPerRun(5, func() {
			kp.PackKeysPart(a, buf, 0)
			a.KT = kp.PackedKeysIn(a, buf, true)
		}); allocs != 0 {
			t.Errorf("%v allocations a packing", allocs)
		}
		empty := *a
		empty.Tk = 0
		if p := kp.KeyParts(&empty); p != 0 {
			t.Errorf("KeyParts = %d without keys", p)
		}
	})
	pb, _ := WithBF16(Pure(), BF16Kernel{})
	if p := pb.(KeyPacker).KeyParts(&Attention{Batch: 1, Heads: 1, KVHeads: 1, Tq: 1, Tk: 5, DK: 4, DV: 4}); p != 0 {
		t.Errorf("the Go core's KeyParts = %d, want 0", p)
	}
}

// BenchmarkKeyPack times packing the keys and values of perceiver's
// attention (16384 keys of 8 heads × 64, K|V rows of 4 KiB as the layer's
// projection writes them) in parts on one thread, in ns a value.
func BenchmarkKeyPack(b *testing.B) {
	be, err := WithBF16(openBLASBackend(), BF16Default())
	if err != nil {
		b.Skip(err)
	}
	kp, ok := be.(KeyPacker)
	if !ok || kp.KeyParts(&Attention{Batch: 1, Heads: 1, KVHeads: 1, Tq: 1, Tk: 1, DK: 1, DV: 1}) == 0 {
		b.Skip("no C core")
	}
	const tk, h, d = 16384, 8, 64
	kv := make([]float32, tk*2*h*d)
	testutil.Fill(newRand(1), kv, -1, 1)
	a := &Attention{Batch: 1, Heads: h, KVHeads: h, Tq: 1, Tk: tk, DK: d, DV: d, K: kv, V: kv[h*d:], LDK: 2 * h * d, LDV: 2 * h * d,
		BatchK: tk * 2 * h * d, BatchV: tk * 2 * h * d, QBlock: 1, KVBlock: 512}
	n, _ := PackedKeysLen(be, h, tk, d, d)
	buf := make([]float32, int(n))
	parts := kp.KeyParts(a)
	for b.Loop() {
		for i := range parts {
			kp.PackKeysPart(a, buf, i)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(2*tk*h*d), "ns/value")
}

// TestKeyAppender packs a's keys a span at a time, as a KV cache appends
// them, into a NaN-filled buffer laid out for all of them: after every
// span, attending over the view of the keys so far gives the bits of
// attending over PackKeys of those keys (so the group a span starts in is
// packed again, and its keys past the span zeroed), and at the end the
// buffer holds Pack's keys and values.
func TestKeyAppender(t *testing.T) {
	forBF16(t, func(t *testing.T, x *BF16) {
		be, err := WithBF16(openBLASBackend(), x.Kernel())
		if err != nil {
			t.Fatal(err)
		}
		ap := be.(KeyAppender)
		for _, tc := range []attnCase{
			{name: "gqa", b: 2, h: 4, kvh: 2, tq: 5, tk: packSpan + 77, dk: 40, dv: 72, qb: 5, kvb: 256, chunks: 1},
			{name: "step", b: 1, h: 2, kvh: 1, tq: 1, tk: 100, dk: 64, dv: 64, qb: 1, kvb: 64, chunks: 1},
			{name: "odd", b: 3, h: 3, kvh: 3, tq: 2, tk: 70, dk: 8, dv: 12, qb: 2, kvb: 32, chunks: 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				full, _, _ := tc.attention(uint64(tc.tk))
				n, _ := PackedKeysLen(be, full.Batch*full.KVHeads, full.Tk, full.DK, full.DV)
				buf := make([]float32, int(n))
				for i := range buf {
					buf[i] = nan32
				}
				scratch := make([]float32, be.ScratchLen(full))
				o0 := slices.Clone(full.O)
				for j0, i := 0, 0; j0 < full.Tk; i++ {
					j1 := min(j0+[]int{1, 5, 37, 1, 30, 64, 2}[i%7], full.Tk)
					a := *full
					a.Tk = j1
					if !ap.PackKeysSpan(&a, full.Tk, j0, j1, buf) {
						t.Fatal("finite values reported as not")
					}
					c := *full
					kt, ok := ap.PackedKeysIn(&c, buf, true).Cols(0, j1)
					if !ok {
						t.Fatalf("no view of keys [0, %d)", j1)
					}
					run := func(kt Packed) []float32 {
						a.KT = kt
						copy(a.O, o0)
						be.Attend(&a, 0, a.Tasks(), scratch)
						return slices.Clone(a.O)
					}
					got := run(kt)
					a.KT = Packed{}
					if !be.PackKeys(&a) {
						t.Fatal("PackKeys packed nothing")
					}
					if d := testutil.BitDiff(got, run(a.KT)); d >= 0 {
						t.Fatalf("keys [0, %d) appended up to %d: O[%d] differs from attending over PackKeys'", j1, j0, d)
					}
					j0 = j1
				}
				ref := x.Pack(full)
				p := ap.PackedKeysIn(full, buf, true)
				if !slices.Equal(p.kv.k, ref.k) || !slices.Equal(p.kv.v, ref.v) {
					t.Fatal("keys or values packed a span at a time differ from Pack's")
				}
				mustPanic(t, "blas: PackKeysSpan: keys [5, 4) of 10, capacity 70", func() {
					a := *full
					a.Tk = 10
					ap.PackKeysSpan(&a, 70, 5, 4, buf)
				})
			})
		}
	})
}
