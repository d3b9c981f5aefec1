package zstdseek_test

import (
	"bytes"
	"fmt"
	"log"

	"github.com/darc-dev/darc/internal/zstdseek"
)

func Example() {
	var out bytes.Buffer
	w, err := zstdseek.NewWriter(&out, zstdseek.WriterOptions{FrameSize: 8})
	if err != nil {
		log.Fatal(err)
	}
	// Frames of 8 bytes: "hello, s", "eekable ", "world".
	if _, err := w.Write([]byte("hello, seekable world")); err != nil {
		log.Fatal(err)
	}
	// A frame of its own, with a seek table entry of size 0.
	if err := w.WriteSkippable([]byte(`{"note":"meta"}`)); err != nil {
		log.Fatal(err)
	}
	// Close writes the seek table.
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	r, err := zstdseek.Open(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if err != nil {
		log.Fatal(err)
	}
	p := make([]byte, 8)
	n, err := r.ReadAt(p, 7) // decompresses the second and third frames only
	fmt.Printf("%d frames, %d bytes; at 7: %q %v\n", r.Frames(), r.Size(), p[:n], err)
	meta, err := r.Skippable()
	fmt.Printf("%q %v\n", meta, err)
	// Output:
	// 4 frames, 21 bytes; at 7: "seekable" <nil>
	// ["{\"note\":\"meta\"}"] <nil>
}
