package safetensors_test

import (
	"bufio"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/xattn/xattn/xattn/safetensors"
)

// TestReadSafetensorsMemory reads a legal header near the size limit made of
// 1.4 million one-byte tensors (92 MB): the reader must need memory in
// proportion to the file, not a multiple of it (it peaked at 770 MB of
// resident memory): the parsed file holds at most 1.5 times the file's
// size, and the heap grows by at most 4 times it while parsing (the JSON
// decoder's garbage, collected at GOGC=100).
func TestReadSafetensorsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("parses a 92 MB header")
	}
	const n = 1_400_000
	path := filepath.Join(t.TempDir(), "tiny.safetensors")
	size := writeTinyTensors(t, path, n)
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()

	runtime.GC()
	var before, after, parsed runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	f, err := safetensors.Read(fh, size)
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&parsed)
	live := int64(parsed.HeapAlloc) - int64(before.HeapAlloc)
	grown := int64(after.HeapSys) - int64(before.HeapSys)
	t.Logf("%d MB file of %d tensors: parsed in %v, holds %d MB, heap grew by %d MB, %d MB allocated in all",
		size>>20, len(f.Names()), elapsed, live>>20, grown>>20, (after.TotalAlloc-before.TotalAlloc)>>20)
	if live > size*3/2 {
		t.Errorf("the parsed file holds %d MB for a %d MB file", live>>20, size>>20)
	}
	if grown > 4*size {
		t.Errorf("the heap grew by %d MB to parse a %d MB file", grown>>20, size>>20)
	}
	if info, ok := f.Info("t1234567"); !ok || info.Size != 1 || info.Offset != size-n+1234567 {
		t.Errorf("Info(t1234567) = %+v, %v", info, ok)
	}
	runtime.KeepAlive(f)
}

// writeTinyTensors writes a safetensors file of n one-byte U8 tensors to
// path and returns its size.
func writeTinyTensors(t *testing.T, path string, n int) int64 {
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	entry := func(b []byte, i int) []byte {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `"t`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `":{"dtype":"U8","shape":[1],"data_offsets":[`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(i+1), 10)
		return append(b, "]}"...)
	}
	var hlen int64 = 2 // {}
	var buf []byte
	for i := range n {
		hlen += int64(len(entry(buf[:0], i)))
	}
	w := bufio.NewWriter(fh)
	w.Write(binary.LittleEndian.AppendUint64(nil, uint64(hlen)))
	w.WriteByte('{')
	for i := range n {
		buf = entry(buf[:0], i)
		w.Write(buf)
	}
	w.WriteByte('}')
	w.Write(make([]byte, n))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return 8 + hlen + int64(n)
}
