package archive

import (
	"io"
	"os"

	"github.com/darc-dev/darc/internal/tarfile"
)

// NeedsSpool reports whether Open would copy the archive at path to a temp file before
// reading it: "-" (standard input), a pipe or other file that is not a regular one, and a
// compressed file other than a seekable .tar.zst (which Open reads in place, decompressing
// only the frames it needs). copy.LoadStream loads such an input in one pass instead, without a temp
// file; an uncompressed regular file is best opened in place with Open.
func NeedsSpool(path string) (bool, error) {
	if path == "-" {
		return true, nil
	}
	// Stat before opening: opening a FIFO waits for a writer, and reading it would consume
	// the archive.
	st, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	if !st.Mode().IsRegular() {
		return true, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return false, err
	}
	switch tarfile.DetectCompression(head[:n]) {
	case tarfile.Uncompressed:
		return false, nil
	case tarfile.Zstd:
		return !tarfile.IsBundle(f, st.Size()), nil
	}
	return true, nil
}
