package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/darc-dev/darc/internal/archivetest"
)

// BenchmarkLsBig runs `darc ls` in-process on a 10,000-image, 100,000-member archive (about
// 100 MB): opening, indexing, reading and hashing every config (the image IDs are the
// configs' content digests) and printing the table. Run it with
//
//	go test -tags containers_image_openpgp -run '^$' -bench LsBig -benchtime 5x ./cmd/darc/
func BenchmarkLsBig(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big.tar")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := archivetest.BigArchive(f, 10_000, 100_000); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		var out, errOut bytes.Buffer
		cmd := newRootCommand(&out, &errOut)
		cmd.SetArgs([]string{"ls", path})
		if err := cmd.Execute(); err != nil {
			b.Fatalf("%v: %s", err, errOut.String())
		}
	}
}
