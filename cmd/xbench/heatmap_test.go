package main

import (
	"bytes"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xattn/xattn/blas"
)

// decodePNG reads the PNG at path and returns it with its count of distinct
// colours.
func decodePNG(t *testing.T, path string) (image.Image, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	colors := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			colors[[4]uint32{r, g, bl, a}] = true
		}
	}
	return img, len(colors)
}

func TestXbenchHeatmap(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		nil,
		{"-heatmap-head", "-1", "-heatmap-batch", "1"},
		{"-heatmap-head", "3", "-backend", "pure"},
	} {
		path := filepath.Join(dir, strings.Join(append([]string{"map"}, args...), "_")+".png")
		var stdout, stderr bytes.Buffer
		if code := xbench(append([]string{"-heatmap", path}, args...), &stdout, &stderr); code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), "wrote "+path) || stdout.Len() != 0 {
			t.Errorf("%q: stdout %q, stderr %q", args, stdout.String(), stderr.String())
		}
		img, n := decodePNG(t, path)
		if b := img.Bounds(); b.Dx() != 1152 || b.Dy() != 864 {
			t.Errorf("%q: %v, want 1152×864 (8×6 in at 144 dpi)", args, b)
		}
		if n < 30 {
			t.Errorf("%q: only %d colours: no heat map drawn?", args, n)
		}
	}
}

func TestXbenchHeatmapUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-heatmap", "m.svg"},
		{"-heatmap", "m.png", "-heatmap-head", "4"},
		{"-heatmap", "m.png", "-heatmap-head", "-2"},
		{"-heatmap", "m.png", "-heatmap-batch", "2"},
		{"-heatmap", "m.png", "-sweep", "tk=4,8"},
		{"-heatmap", "m.png", "-o", "r.json"},
	} {
		var stdout, stderr bytes.Buffer
		if code := xbench(args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "-heatmap") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a -heatmap message", args, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := xbench([]string{"-heatmap", filepath.Join(t.TempDir(), "no", "such", "dir.png")}, &stdout, &stderr); code != 1 {
		t.Errorf("unwritable path: exit %d, want 1", code)
	}
}

// TestHeatmapExample checks that the example shows what its documentation
// promises: in every head, query i attends most to key
// clamp(round(u_i − δ_h), 0, KeyLen−1), padded keys get 0 and rows sum to 1.
func TestHeatmapExample(t *testing.T) {
	for _, be := range blas.All() {
		for b := range heatmapBatch {
			for h := -1; h < len(heatmapHeads); h++ {
				p, title, err := heatmapMap(be, h, b)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(title, "batch") || (h >= 0 && !strings.Contains(title, heatmapHeads[h].what)) {
					t.Errorf("title %q", title)
				}
				for i := range heatmapTq {
					row := p[i*heatmapTk:][:heatmapTk]
					best, sum := 0, 0.0
					for j, v := range row {
						sum += float64(v)
						if v > row[best] {
							best = j
						}
						if j >= heatmapKeyLen[b] && v != 0 {
							t.Errorf("%s b=%d h=%d: padded key %d has %g", be.Name(), b, h, j, v)
						}
					}
					if math.Abs(sum-1) > 1e-5 {
						t.Errorf("%s b=%d h=%d row %d sums to %v", be.Name(), b, h, i, sum)
					}
					if h < 0 {
						continue
					}
					u := float64(i) * (heatmapTk - 1) / (heatmapTq - 1)
					want := min(max(int(math.Round(u-heatmapHeads[h].shift)), 0), heatmapKeyLen[b]-1)
					if best != want {
						t.Errorf("%s b=%d h=%d: query %d attends key %d most, want %d", be.Name(), b, h, i, best, want)
					}
				}
			}
		}
	}
}

func TestWriteHeatmap(t *testing.T) {
	dir := t.TempDir()
	// An all-zero map (every query masked) still draws, on a 0…1 scale.
	path := filepath.Join(dir, "zero.png")
	if err := writeHeatmap(path, make([]float32, 3*5), 3, 5, "zero"); err != nil {
		t.Fatal(err)
	}
	decodePNG(t, path)
	if err := writeHeatmap(filepath.Join(dir, "bad.png"), make([]float32, 14), 3, 5, "bad"); err == nil {
		t.Error("14 values drawn as 3×5")
	}
}
