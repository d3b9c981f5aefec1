package archive

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"

	digest "github.com/opencontainers/go-digest"
)

// Blobs: whole or by range, each checked against its digest before it is first sent.

func (reg *registry) blob(w http.ResponseWriter, r *http.Request, rp *repo, ref string) {
	d, err := digest.Parse(ref)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, codeDigestInvalid, "provided digest did not match uploaded content", map[string]string{"digest": ref})
		return
	}
	reg.index(rp)
	b, ok := rp.blobs[d]
	if !ok {
		writeError(w, r, http.StatusNotFound, codeBlobUnknown, "blob unknown to registry", map[string]string{"digest": ref})
		return
	}
	if reg.changed(w, r, b.e.a) {
		return
	}
	h := w.Header()
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, d) {
		setBlobHeaders(h, d)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	start, length, status, ok := blobRange(w, r, b.Size)
	if !ok {
		return
	}
	if b.Section != nil {
		// A GET reads the blob the first time; a HEAD only learns what an earlier GET found.
		if err := reg.check(b, r.Method == http.MethodGet); err != nil {
			reg.log(fmt.Sprintf("repository %s: blob %s: %v; not serving it", rp.name, b.Digest, err))
			writeError(w, r, http.StatusInternalServerError, codeUnknown, "the archive's copy of the blob cannot be read or does not match its digest", map[string]string{"digest": d.String()})
			return
		}
	}
	setBlobHeaders(h, d)
	h.Set("Accept-Ranges", "bytes")
	if status == http.StatusPartialContent {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, b.Size))
	}
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	switch {
	case b.Data != nil:
		_, _ = w.Write(b.Data[start : start+length])
	case b.Decompressed:
		reg.copyDecompressed(w, rp, b, start, length)
	default:
		reg.copyBlob(w, rp, b, start, length)
	}
}

// blobRange is the part of a blob of size bytes a request asks for: all of it (200), or the
// one byte range of its Range header (206). An unsatisfiable range is answered 416 here (ok
// false); a Range header that is not one byte range is ignored, as RFC 9110 allows.
func blobRange(w http.ResponseWriter, r *http.Request, size int64) (start, length int64, status int, ok bool) {
	rg := r.Header.Get("Range")
	if rg == "" {
		return 0, size, http.StatusOK, true
	}
	s, l, valid, satisfiable := parseRange(rg, size)
	switch {
	case valid && !satisfiable:
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		writeError(w, r, http.StatusRequestedRangeNotSatisfiable, codeRangeInvalid, "requested range not satisfiable", map[string]string{"range": truncate(rg, 100)})
		return 0, 0, 0, false
	case valid:
		return s, l, http.StatusPartialContent, true
	}
	return 0, size, http.StatusOK, true
}

func setBlobHeaders(h http.Header, d digest.Digest) {
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "max-age=31536000")
}

// digestCheck records whether one stored blob was found to match its digest (ok), or not
// (mismatch); its mutex makes requests for the blob wait for the one reading it.
type digestCheck struct {
	mu       sync.Mutex
	ok       bool
	mismatch error
}

// check reads a blob stored in the archive and hashes it, the first time any part of it is
// to be sent (a later request waits for that reading); with read false it only reports a
// mismatch found before. Once it matched, it is sent as stored without hashing it again, by
// sendfile where it can be: the archive's file has not changed since, or changed answers 500
// first. A mismatch is remembered, for the same reason; a read error is not (the next request
// reads again).
func (reg *registry) check(b servedBlob, read bool) error {
	v, _ := reg.checks.LoadOrStore(b.Section, &digestCheck{})
	c := v.(*digestCheck)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ok || c.mismatch != nil || !read {
		return c.mismatch
	}
	bp := reg.bufs.Get().(*[]byte)
	defer reg.bufs.Put(bp)
	h := b.Digest.Algorithm().Hash()
	n, err := io.CopyBuffer(h, io.NewSectionReader(b.Section, 0, b.Size), *bp)
	switch {
	case err != nil:
		return fmt.Errorf("reading archive %q: %w", b.e.a.path, err)
	case n != b.Size:
		return fmt.Errorf("reading archive %q: %w", b.e.a.path, io.ErrUnexpectedEOF)
	}
	if got := digest.NewDigest(b.Digest.Algorithm(), h); got != b.Digest {
		c.mismatch = fmt.Errorf("%w: archive %q holds %s", ErrDigestMismatch, b.e.a.path, got)
		return c.mismatch
	}
	c.ok = true
	return nil
}

// copyBlob sends length bytes of a checked blob from start: by sendfile for a member
// stored as one run of a file (a plain tar's, not a bundle's or a sparse one's) where the
// platform has it, else through a buffer. If the archive cannot be read the response is cut
// off (panic(http.ErrAbortHandler)), so the client sees a failed transfer.
func (reg *registry) copyBlob(w http.ResponseWriter, rp *repo, b servedBlob, start, length int64) {
	short := func(err error) {
		reg.log(fmt.Sprintf("repository %s: blob %s: reading archive %q: %v; response cut off", rp.name, b.Digest, b.e.a.path, err))
		panic(http.ErrAbortHandler)
	}
	if f, base, _ := b.Section.Outer(); base >= 0 {
		if file, ok := f.(*os.File); ok {
			sent, written, err := sendFileRange(w, file, base+start, length)
			if sent {
				if err == nil && written < length {
					// net/http would close the connection on the short body anyway; say why.
					short(io.ErrUnexpectedEOF)
				}
				return // on an error the response is short of its length: the client sees it
			}
		}
	}
	bp := reg.bufs.Get().(*[]byte)
	defer reg.bufs.Put(bp)
	buf := *bp
	for off := start; off < start+length; {
		n := int(min(int64(len(buf)), start+length-off))
		k, err := b.Section.ReadAt(buf[:n], off)
		if k < n {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			short(err)
		}
		off += int64(k)
		if _, err := w.Write(buf[:k]); err != nil {
			return // the client went away
		}
	}
}

// copyDecompressed sends length bytes from start of a layer served decompressed (an xz or
// bzip2 member), decompressing it from its beginning. A whole one is checked by the image
// source's verifier as it goes out, which fails the read at its end on a mismatch: the
// response is then cut off before its last bytes (panic(http.ErrAbortHandler)), so the client
// never gets a complete wrong blob.
func (reg *registry) copyDecompressed(w http.ResponseWriter, rp *repo, b servedBlob, start, length int64) {
	fail := func(err error) {
		reg.log(fmt.Sprintf("repository %s: blob %s: %v; response cut off", rp.name, b.Digest, err))
		panic(http.ErrAbortHandler)
	}
	rc, err := b.Open()
	if err != nil {
		fail(err)
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, start); err != nil {
		fail(err)
	}
	bp := reg.bufs.Get().(*[]byte)
	defer reg.bufs.Put(bp)
	buf := *bp
	whole := start == 0 && length == b.Size
	for sent := int64(0); sent < length; {
		k, err := io.ReadFull(rc, buf[:min(int64(len(buf)), length-sent)])
		if err != nil {
			fail(err)
		}
		sent += int64(k)
		if whole && sent == length {
			// The verifier reports a mismatch at the end of the stream, which must come
			// before the last bytes go out.
			var one [1]byte
			if n, err := rc.Read(one[:]); n != 0 || err != io.EOF {
				if err == nil || err == io.EOF {
					err = fmt.Errorf("%w: more than %d bytes", ErrSizeMismatch, b.Size)
				}
				fail(err)
			}
		}
		if _, err := w.Write(buf[:k]); err != nil {
			return
		}
	}
}

// maxRangeHeader bounds the Range header looked at; a longer one is ignored.
const maxRangeHeader = 200

// parseRange reads a Range header of one byte range against a blob of size bytes. ok is
// false for anything else (several ranges, another unit, garbage), which the caller ignores;
// satisfiable is false for a range that starts at or after the end (or a suffix of 0 bytes).
func parseRange(h string, size int64) (start, length int64, ok, satisfiable bool) {
	if len(h) > maxRangeHeader {
		return 0, 0, false, false
	}
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	digits := func(s string) bool {
		return s != "" && strings.Trim(s, "0123456789") == ""
	}
	if first == "" { // suffix: the last N bytes
		if !digits(last) {
			return 0, 0, false, false
		}
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil {
			n = size // more than any blob: the whole of it
		}
		if n == 0 || size == 0 {
			return 0, 0, true, false
		}
		n = min(n, size)
		return size - n, n, true, true
	}
	if !digits(first) || (last != "" && !digits(last)) {
		return 0, 0, false, false
	}
	s, err := strconv.ParseInt(first, 10, 64)
	if err != nil || s >= size {
		return 0, 0, true, false // beyond int64 is beyond the blob too
	}
	e := size - 1
	if last != "" {
		l, err := strconv.ParseInt(last, 10, 64)
		if err == nil && l < e {
			e = l
		}
		if e < s {
			return 0, 0, false, false // last before first: not a valid range, ignored
		}
	}
	return s, e - s + 1, true, true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
