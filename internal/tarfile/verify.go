package tarfile

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	digest "github.com/opencontainers/go-digest"
)

func newBytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// verifier hashes what passes through it and, at the end of the stream, returns a
// mismatch error instead of io.EOF, so no consumer ever sees a clean end of bad data.
type verifier struct {
	src   io.ReadCloser
	h     hash.Hash
	want  digest.Digest
	size  int64 // -1: unknown
	n     int64
	label string
	check *layerCheck // nil unless the (decompressed) stream is checked too
	err   error       // sticky
}

// newVerifier checks src against want and size. For a layer (layer set), the uncompressed
// stream is also read with archive/tar to its end, as docker applies a layer: when stored is
// Uncompressed always, for a compressed blob when it is decompressed anyway, to check it
// against diffID (given only then).
func newVerifier(src io.ReadCloser, want digest.Digest, size int64, label string, stored Compression, diffID digest.Digest, layer bool) *verifier {
	v := &verifier{src: src, h: sha256.New(), want: want, size: size, label: label}
	switch {
	case stored != Uncompressed && diffID != "":
		v.check = startLayerCheck(stored, diffID, layer)
	case stored == Uncompressed && layer:
		v.check = startLayerCheck(Uncompressed, "", true)
	}
	return v
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.src.Read(p)
	if n > 0 {
		v.h.Write(p[:n])
		v.n += int64(n)
		if v.check != nil {
			v.check.write(p[:n])
		}
	}
	switch {
	case err == io.EOF:
		if ferr := v.finish(); ferr != nil {
			v.err = ferr
			return n, ferr
		}
		v.err = io.EOF
	case err != nil:
		v.err = fmt.Errorf("%s: %w", v.label, err)
		return n, v.err
	case v.size >= 0 && v.n > v.size:
		v.err = fmt.Errorf("%s: %w: more than the %d bytes declared", v.label, ErrSizeMismatch, v.size)
		return n, v.err
	}
	return n, err
}

func (v *verifier) finish() error {
	if v.size >= 0 && v.n != v.size {
		return fmt.Errorf("%s: %w: read %d bytes, expected %d", v.label, io.ErrUnexpectedEOF, v.n, v.size)
	}
	if got := digest.NewDigest(digest.SHA256, v.h); got != v.want {
		v.abortCheck()
		return fmt.Errorf("%s: %w: content is %s, expected %s", v.label, ErrDigestMismatch, got, v.want)
	}
	if v.check != nil {
		c := v.check
		v.check = nil
		if err := c.finish(); err != nil {
			return fmt.Errorf("%s: %w", v.label, err)
		}
	}
	return nil
}

func (v *verifier) abortCheck() {
	if v.check != nil {
		v.check.abort()
		v.check = nil
	}
}

func (v *verifier) Close() error {
	v.abortCheck()
	if v.err == nil {
		v.err = errors.New("archive: read after close")
	}
	return v.src.Close()
}

// layerCheck reads a copy of a layer blob's stream on a goroutine: it decompresses it, checks
// it against a diffID and reads it as a tar (see checkLayer). It always drains its input, so
// writes never block for good even when the decompressor stops early.
type layerCheck struct {
	pw   *io.PipeWriter
	done chan error
}

var errCheckAborted = errors.New("archive: check aborted")

func startLayerCheck(c Compression, diffID digest.Digest, tarToo bool) *layerCheck {
	pr, pw := io.Pipe()
	dc := &layerCheck{pw: pw, done: make(chan error, 1)}
	go func() {
		dc.done <- checkLayer(pr, c, diffID, tarToo)
		_, _ = io.Copy(io.Discard, pr)
	}()
	return dc
}

// checkLayer reads a layer blob r stored with compression c: decompressed, it must hash to
// diffID (unless empty) and, with tarToo, read as a tar.
func checkLayer(r io.Reader, c Compression, diffID digest.Digest, tarToo bool) error {
	got, tarErr, err := readLayer(r, c, diffID != "", tarToo)
	if err != nil {
		return err
	}
	if diffID != "" && got != diffID {
		return fmt.Errorf("%w: uncompressed content is %s, the config's diffID is %s", ErrDigestMismatch, got, diffID)
	}
	return tarErr
}

// readLayer reads a layer blob r stored with compression c to its end, decompressing it: with
// hash set it returns the digest of the uncompressed stream (its diffID), with tarToo the
// error that makes that stream not a tar (wrapping ErrInvalidLayer). Docker applies a layer
// with archive/tar, so a stream archive/tar cannot read to its end-of-archive (or to a clean
// end between members) is a layer docker load fails on; bytes after the end-of-archive are
// read (they count in the diffID) but not judged, as docker discards them. err is set when
// the blob does not decompress: ErrDigestMismatch, as such data cannot match any diffID.
func readLayer(r io.Reader, c Compression, hash, tarToo bool) (diffID digest.Digest, tarErr, err error) {
	dec, closeDec, err := Decompress(r, c)
	if err != nil {
		return "", nil, fmt.Errorf("%w: layer is not valid %s data: %w", ErrDigestMismatch, c, err)
	}
	defer closeDec()
	src := &firstError{r: dec}
	var in io.Reader = src
	h := sha256.New()
	if hash {
		in = io.TeeReader(src, h)
	}
	if tarToo {
		tarErr = readTar(in)
	}
	_, err = io.Copy(io.Discard, in)
	if err == nil {
		err = src.err
	}
	switch {
	case errors.Is(err, errCheckAborted):
		return "", nil, err
	case err != nil && c != Uncompressed:
		return "", nil, fmt.Errorf("%w: decompressing %s layer: %w", ErrDigestMismatch, c, err)
	case err != nil:
		return "", nil, err
	}
	if hash {
		diffID = digest.NewDigest(digest.SHA256, h)
	}
	return diffID, tarErr, nil
}

// readTar reads r with archive/tar up to its end-of-archive; an error wraps ErrInvalidLayer.
func readTar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		_, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: not a tar: %w", ErrInvalidLayer, err)
		}
	}
}

// firstError passes r through and remembers its first error other than io.EOF, so that a
// reader of it can tell a failing source from data it does not like.
type firstError struct {
	r   io.Reader
	err error
}

func (f *firstError) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && err != io.EOF && f.err == nil {
		f.err = err
	}
	return n, err
}

func (dc *layerCheck) write(p []byte) {
	// The goroutine drains the pipe until it is closed, so this cannot block for good.
	_, _ = dc.pw.Write(p)
}

func (dc *layerCheck) finish() error {
	_ = dc.pw.Close()
	return <-dc.done
}

func (dc *layerCheck) abort() {
	_ = dc.pw.CloseWithError(errCheckAborted)
	<-dc.done
}
