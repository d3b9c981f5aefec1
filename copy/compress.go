package copy

import (
	"io"
	"sync"

	"github.com/klauspost/pgzip"
	"go.podman.io/image/v5/pkg/compression"
	compressiontypes "go.podman.io/image/v5/pkg/compression/types"
)

// This file is the one place where darc decides, as containers/image's copy.Image would,
// what happens to a layer's compression on its way to a destination that wants compressed
// layers (an OCI layout, a registry), and compresses it. Load (reuse.go), which compresses
// each shared layer once and offers it to copy.Image as a substitute, and LoadStream
// (stream.go), which compresses layers as the stream passes, both go through it, so their
// blobs are the ones copy.Image would make: pgzip at the requested level (gzip is what
// containers/image uses when no format is asked for).

// blobOp is what happens to a layer's blob on its way to a destination.
type blobOp int

const (
	opPreserveUncompressed blobOp = iota
	opPreserveCompressed
	opCompress   // an uncompressed layer, compressed for the destination
	opRecompress // compressed in another format than the one requested
)

// planLayer decides what copy.Image does to a blob stored in format (compressed false: not
// compressed) when the destination wants compressed layers (destCompress) and requested (nil:
// none) was asked for: it returns the operation and the algorithm the blob is compressed
// with at the destination (nil: none).
func planLayer(format compressiontypes.Algorithm, compressed, destCompress bool, requested *compressiontypes.Algorithm) (blobOp, *compressiontypes.Algorithm) {
	switch {
	case destCompress && !compressed:
		if requested == nil {
			return opCompress, &compression.Gzip
		}
		return opCompress, requested
	case destCompress && compressed && requested != nil &&
		requested.Name() != format.Name() && requested.Name() != format.BaseVariantName():
		return opRecompress, requested
	case compressed:
		return opPreserveCompressed, &format
	}
	return opPreserveUncompressed, nil
}

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

// compressing returns a reader of src compressed with alg at level (nil: the default), made
// by a goroutine as it is read, and a function to call once the reader is no longer read: it
// stops the compressor and waits until it is done with src.
func (g *gzipWriters) compressing(src io.Reader, alg compressiontypes.Algorithm, level *int) (io.Reader, func()) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = pw.CloseWithError(g.compressAs(pw, src, alg, level))
	}()
	return pr, func() {
		_ = pr.Close()
		<-done
	}
}

// compressAs writes src compressed with alg at level (nil: the default) to dest: gzip with a
// reused writer, any other algorithm with containers/image's compressor.
func (g *gzipWriters) compressAs(dest io.Writer, src io.Reader, alg compressiontypes.Algorithm, level *int) error {
	if alg.Name() == compressiontypes.GzipAlgorithmName {
		return g.compress(dest, src, level)
	}
	c, err := compression.CompressStreamWithMetadata(dest, map[string]string{}, alg, level)
	if err != nil {
		return err
	}
	return copyAndClose(c, src, make([]byte, 1<<20))
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
