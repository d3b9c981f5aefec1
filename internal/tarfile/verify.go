package tarfile

import (
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
	check *diffIDCheck // nil unless the decompressed stream is checked too
	err   error        // sticky
}

func newVerifier(src io.ReadCloser, want digest.Digest, size int64, label string, stored Compression, diffID digest.Digest) *verifier {
	v := &verifier{src: src, h: sha256.New(), want: want, size: size, label: label}
	if diffID != "" && stored != Uncompressed {
		v.check = startDiffIDCheck(stored, diffID)
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

// diffIDCheck decompresses a copy of a compressed stream in a goroutine and hashes the
// result, to check it against a diffID. It always drains its input, so writes never block
// for good even when the decompressor stops early.
type diffIDCheck struct {
	pw     *io.PipeWriter
	done   chan error
	diffID digest.Digest
}

var errCheckAborted = errors.New("archive: check aborted")

func startDiffIDCheck(c Compression, diffID digest.Digest) *diffIDCheck {
	pr, pw := io.Pipe()
	dc := &diffIDCheck{pw: pw, done: make(chan error, 1), diffID: diffID}
	go func() {
		dc.done <- decompressedDigestIs(pr, c, diffID)
		_, _ = io.Copy(io.Discard, pr)
	}()
	return dc
}

// decompressedDigestIs checks that r, decompressed with c, hashes to want.
func decompressedDigestIs(r io.Reader, c Compression, want digest.Digest) error {
	got, err := decompressedDigest(r, c)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%w: uncompressed content is %s, the config's diffID is %s", ErrDigestMismatch, got, want)
	}
	return nil
}

// decompressedDigest returns the sha256 digest of r decompressed with c. Data that does not
// decompress is ErrDigestMismatch: it cannot match any diffID.
func decompressedDigest(r io.Reader, c Compression) (digest.Digest, error) {
	dec, closeDec, err := Decompress(r, c)
	if err != nil {
		return "", fmt.Errorf("%w: layer is not valid %s data: %w", ErrDigestMismatch, c, err)
	}
	defer closeDec()
	h := sha256.New()
	if _, err := io.Copy(h, dec); err != nil {
		if errors.Is(err, errCheckAborted) {
			return "", err
		}
		return "", fmt.Errorf("%w: decompressing %s layer: %w", ErrDigestMismatch, c, err)
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

func (dc *diffIDCheck) write(p []byte) {
	// The goroutine drains the pipe until it is closed, so this cannot block for good.
	_, _ = dc.pw.Write(p)
}

func (dc *diffIDCheck) finish() error {
	_ = dc.pw.Close()
	return <-dc.done
}

func (dc *diffIDCheck) abort() {
	_ = dc.pw.CloseWithError(errCheckAborted)
	<-dc.done
}
