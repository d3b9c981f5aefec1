package tarfile

import (
	"errors"
	"fmt"
	"io"
	"os"
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

// OpenFile opens the archive at path ("-" is standard input). An uncompressed regular file is
// indexed in place; a compressed file or a non-seekable one (a pipe, a FIFO) is spooled once
// to an unlinked temp file. The returned Reader owns the file: Close releases it.
func OpenFile(path string, o OpenOptions) (*Reader, error) {
	if path == "-" {
		return OpenStream("-", os.Stdin, o)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	succeeded := false
	defer func() {
		if !succeeded {
			_ = f.Close()
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		r, err := OpenStream(path, f, o)
		if err != nil {
			return nil, err
		}
		_ = f.Close() // the spool file holds everything now
		succeeded = true
		return r, nil
	}
	head := make([]byte, 512)
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("archive %q: %w", path, err)
	}
	c := DetectCompression(head[:n])
	if c == Zstd {
		r, err := openBundle(path, f, st.Size(), o)
		if err != nil || r != nil {
			succeeded = err == nil
			if r != nil {
				r.source = &Source{File: f, Size: st.Size(), ModTime: st.ModTime()}
			}
			return r, err
		}
	}
	if c != Uncompressed {
		r, err := OpenStream(path, io.NewSectionReader(f, 0, st.Size()), o)
		if err != nil {
			return nil, err
		}
		_ = f.Close()
		succeeded = true
		return r, nil
	}
	r, err := newReader(path, f, st.Size(), o.Limits)
	if err != nil {
		return nil, err
	}
	r.closer = f
	r.source = &Source{File: f, Size: st.Size(), ModTime: st.ModTime()}
	succeeded = true
	return r, nil
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
