package safetensors_test

import (
	"bytes"
	"errors"
	"fmt"
	"log"

	"github.com/xattn/xattn/xattn/safetensors"
)

// Write tensors as BF16 and read them back: the header first, then one
// tensor at a time.
func Example() {
	var buf bytes.Buffer
	ts := []safetensors.Tensor{
		{Name: "w", Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6.01}},
		{Name: "b", Shape: []int{2}, Data: []float32{-0.5, 0.25}},
	}
	if err := safetensors.Write(&buf, ts, "BF16", map[string]string{"format": "pt"}); err != nil {
		log.Fatal(err)
	}
	f, err := safetensors.Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		t, err := f.Tensor(name)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(name, info.DType, info.Shape, info.Size, t.Data)
	}
	fmt.Println(f.Metadata())
	_, err = f.Tensor("missing")
	fmt.Println(errors.Is(err, safetensors.ErrTensor))
	_, err = safetensors.Read(bytes.NewReader(buf.Bytes()[:20]), 20)
	fmt.Println(errors.Is(err, safetensors.ErrFormat))
	// Output:
	// w BF16 [2 3] 12 [1 2 3 4 5 6]
	// b BF16 [2] 4 [-0.5 0.25]
	// map[format:pt]
	// true
	// true
}
