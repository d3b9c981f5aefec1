package tarfile

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/darc-dev/darc/internal/zstdseek"
)

// OpenOptions configure OpenFile and OpenStream.
type OpenOptions struct {
	Limits Limits
	// TempDir is where a stream or compressed input is spooled; "" means os.TempDir(),
	// which honours TMPDIR.
	TempDir string
	// Warn, if set, is told what the reader works around: a seekable bundle whose seek
	// table is unusable, read as a plain stream instead.
	Warn func(string)
}

// OpenFile opens the archive at path ("-" is standard input), or the split archive it names
// (see SplitParts). An uncompressed regular file, and a seekable zstd bundle, are read in
// place; another compressed file, or one that is not regular (a pipe, a FIFO), is spooled
// once to an unlinked temp file. The returned Reader owns the files: Close releases them.
func OpenFile(path string, o OpenOptions) (*Reader, error) {
	if path == "-" {
		return OpenStream("-", os.Stdin, o)
	}
	parts, err := SplitParts(path)
	if err != nil {
		return nil, err
	}
	if parts != nil {
		pf, err := openPartFiles(parts)
		if err != nil {
			return nil, fmt.Errorf("archive %q: %w", path, err)
		}
		r, err := openInPlace(path, pf, pf.sizes(), pf, o)
		if err != nil {
			return nil, fmt.Errorf("%w (read as the %d parts %s to %s: is one missing?)", err, len(parts), parts[0], parts[len(parts)-1])
		}
		if r.closer == pf {
			r.sources = pf.sources()
		}
		return r, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		r, err := OpenStream(path, f, o)
		_ = f.Close() // the spool file holds everything now
		return r, err
	}
	r, err := openInPlace(path, f, []int64{st.Size()}, f, o)
	if err == nil && r.closer == f {
		r.sources = []Source{{File: f, Info: st}}
	}
	return r, err
}

// openInPlace opens the archive in ra, parts of the given sizes one after another, reading
// it in place when it is uncompressed or a seekable bundle, and spooling it otherwise. The
// Reader owns closer; on failure, or once spooled, it is closed.
func openInPlace(name string, ra io.ReaderAt, sizes []int64, closer io.Closer, o OpenOptions) (*Reader, error) {
	var size int64
	for _, s := range sizes {
		size += s
	}
	head := make([]byte, 512)
	n, rerr := ra.ReadAt(head, 0)
	if rerr != nil && rerr != io.EOF {
		_ = closer.Close()
		return nil, fmt.Errorf("archive %q: %w", name, rerr)
	}
	var r *Reader
	var err error
	switch DetectCompression(head[:n]) {
	case Uncompressed:
		r, err = newReader(name, ra, size, o.Limits)
	case Zstd:
		r, err = openBundle(name, ra, sizes, o)
	}
	if err != nil {
		_ = closer.Close()
		return nil, err
	}
	if r != nil {
		r.closer = closer
		return r, nil
	}
	r, err = OpenStream(name, io.NewSectionReader(ra, 0, size), o)
	_ = closer.Close() // the spool file holds everything now, or nothing is open
	return r, err
}

// OpenStream reads an archive from a stream, decompressing it when its magic bytes say so,
// into an unlinked temp file in o.TempDir, and opens that. name is used in messages. Only
// the tar is spooled, and the input is read no further than trailLimit bytes past its end
// (see Trailer): a writer into a pipe that sends more than that finds it closed.
func OpenStream(name string, in io.Reader, o OpenOptions) (*Reader, error) {
	limits := o.Limits.WithDefaults()
	sp, err := spoolInput(in, o.TempDir, limits.MaxSpoolSize)
	if err != nil {
		return nil, fmt.Errorf("archive %q: %w", name, err)
	}
	r, err := newReader(name, sp.f, sp.size, limits)
	if err != nil {
		_ = sp.f.Close()
		return nil, err
	}
	r.closer, r.trail = sp.f, &sp.trail
	return r, nil
}

// Close releases the archive's file. It is safe to call more than once.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	c := r.closer
	r.closer = nil
	if err := c.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}

// NeedsSpool reports whether OpenFile would copy the archive at path to a temp file before
// reading it: "-" (standard input), a file that is not a regular one (a pipe, a FIFO), and a
// compressed one other than a seekable zstd bundle. A split archive is judged as its parts
// concatenated.
func NeedsSpool(path string) (bool, error) {
	if path == "-" {
		return true, nil
	}
	parts, err := SplitParts(path)
	if err != nil {
		return false, err
	}
	if parts == nil {
		// Stat before opening: opening a FIFO waits for a writer, and reading it would
		// consume the archive.
		st, err := os.Stat(path)
		if err != nil {
			return false, err
		}
		if !st.Mode().IsRegular() {
			return true, nil
		}
		parts = []string{path}
	}
	pf, err := openPartFiles(parts)
	if err != nil {
		return false, err
	}
	defer pf.Close()
	head := make([]byte, 512)
	n, err := pf.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return false, err
	}
	switch DetectCompression(head[:n]) {
	case Uncompressed:
		return false, nil
	case Zstd:
		_, err := zstdseek.OpenParts(pf, pf.sizes())
		return err != nil, nil
	}
	return true, nil
}
