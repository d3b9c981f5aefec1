package tarfile

import (
	"io"

	digest "github.com/opencontainers/go-digest"
)

// ProgressReader reads r and tells progress how many of blob's size bytes (-1: unknown)
// have been read, after every read that returned data. A nil progress gives r back.
func ProgressReader(r io.Reader, blob digest.Digest, size int64, progress func(blob digest.Digest, done, size int64)) io.Reader {
	if progress == nil {
		return r
	}
	return &progressReader{r: r, blob: blob, size: size, progress: progress}
}

type progressReader struct {
	r        io.Reader
	blob     digest.Digest
	done     int64
	size     int64
	progress func(digest.Digest, int64, int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.done += int64(n)
		p.progress(p.blob, p.done, p.size)
	}
	return n, err
}
