package xattn

import (
	"testing"

	"github.com/xattn/xattn/blas"
)

// TestContextBytes checks the memory a projected Context reports and the
// bound its memory check uses: a Context holds its float32 keys and values
// and the packed ones (FP32 keys in panels on a backend that packs them;
// in BF16 on the C core the keys and values in bf16, padded to 32 keys and
// depths of 32, half a float a value); the bound is at least that, and
// equal where nothing is padded.
func TestContextBytes(t *testing.T) {
	type tc struct {
		name string
		opts []Option
	}
	cases := []tc{{"fp32", nil}, {"fp32-pure", []Option{WithBackend(blas.Pure())}}}
	for _, kn := range blas.BF16Kernels() {
		k, err := blas.BF16KernelNamed(kn)
		if err != nil {
			t.Fatal(err)
		}
		be, err := blas.WithBF16(blas.Default(), k)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, tc{"bf16=" + kn, []Option{WithBackend(be)}})
	}
	for _, c := range cases {
		for _, shape := range []struct{ heads, dk, batch, tk int }{{2, 32, 2, 64}, {3, 40, 1, 77}} {
			cfg := Config{QueryDim: shape.heads * shape.dk, Heads: shape.heads, HeadDim: shape.dk}
			w, err := NewWeights(cfg, 1)
			if err != nil {
				t.Fatal(err)
			}
			l, err := New(cfg, w, c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			x := make([]float32, shape.batch*shape.tk*cfg.QueryDim)
			for i := range x {
				x[i] = float32(i%7) - 3
			}
			ctx, err := l.ProjectContext(x, shape.batch, shape.tk)
			if err != nil {
				t.Fatal(err)
			}
			items := shape.batch * shape.heads
			f32 := 4 * items * shape.tk * 2 * shape.dk
			r32 := func(n int) int { return (n + 31) / 32 * 32 }
			want := f32
			switch {
			case l.plan.Precision == BF16 && !ctx.kt.IsZero(): // the C core's packed keys and values
				want += 2 * items * r32(shape.tk) * 2 * r32(shape.dk)
			case !ctx.kt.IsZero(): // FP32 key panels
				want += ctx.kt.Bytes()
				if ctx.kt.Bytes() < 4*items*shape.tk*shape.dk {
					t.Errorf("%s: packed keys of %d bytes, below the keys' %d", c.name, ctx.kt.Bytes(), 4*items*shape.tk*shape.dk)
				}
			}
			got, bound := ctx.Bytes(), 4*l.contextLen(shape.batch, shape.tk)
			if got != want || bound < float64(got) {
				t.Errorf("%s %+v: Context.Bytes() = %d, want %d (float32 K|V %d), memory check bound %v",
					c.name, shape, got, want, f32, bound)
			}
			if shape.tk%64 == 0 && shape.dk%32 == 0 && !ctx.kt.IsZero() && bound != float64(got) {
				t.Errorf("%s %+v: bound %v, want the exact %d with nothing padded", c.name, shape, bound, got)
			}
			t.Logf("%s %+v: %d bytes (float32 K|V %d, ×%.2f), bound %v", c.name, shape, got, f32, float64(got)/float64(f32), bound)
		}
	}
}
