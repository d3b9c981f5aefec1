package copy

import (
	"io"
	"sync"

	"github.com/klauspost/pgzip"
)

// gzipWriters keeps the gzip writers of finished layers for the next ones. containers/image
// makes a new pgzip writer per layer, and each comes with its own pool of megabyte buffers
// that lives until the garbage collector gets round to it: over a dozen layers that held
// more than 50 MB. A reused writer (Reset) writes the same bytes as a new one at the same
// level, which is what containers/image's gzip compressor is: pgzip at the requested level.
type gzipWriters struct {
	mu   sync.Mutex
	free []*gzipWriter
}

type gzipWriter struct {
	w     *pgzip.Writer
	level int
	buf   []byte
}

// compress writes src gzip-compressed at level (nil: the default) to dest.
func (g *gzipWriters) compress(dest io.Writer, src io.Reader, level *int) error {
	gz, err := g.get(dest, level)
	if err != nil {
		return err
	}
	defer g.put(gz)
	return copyAndClose(gz.w, src, gz.buf)
}

func (g *gzipWriters) get(dest io.Writer, level *int) (*gzipWriter, error) {
	lvl := pgzip.DefaultCompression
	if level != nil {
		lvl = *level
	}
	g.mu.Lock()
	for i, gz := range g.free {
		if gz.level == lvl {
			g.free = append(g.free[:i], g.free[i+1:]...)
			g.mu.Unlock()
			gz.w.Reset(dest)
			return gz, nil
		}
	}
	g.mu.Unlock()
	w, err := pgzip.NewWriterLevel(dest, lvl)
	if err != nil {
		return nil, err
	}
	return &gzipWriter{w: w, level: lvl, buf: make([]byte, 1<<20)}, nil
}

func (g *gzipWriters) put(gz *gzipWriter) {
	g.mu.Lock()
	g.free = append(g.free, gz)
	g.mu.Unlock()
}

func copyAndClose(c io.WriteCloser, src io.Reader, buf []byte) error {
	if _, err := io.CopyBuffer(c, src, buf); err != nil {
		_ = c.Close()
		return err
	}
	return c.Close()
}
