package archive

import (
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// Blobs: whole, by range, checked as they are sent.

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
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "max-age=31536000")
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, d) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Accept-Ranges", "bytes")
	start, length := int64(0), b.Size
	status := http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" {
		s, l, ok, satisfiable := parseRange(rg, b.Size)
		switch {
		case ok && !satisfiable:
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", b.Size))
			writeError(w, r, http.StatusRequestedRangeNotSatisfiable, codeRangeInvalid, "requested range not satisfiable", map[string]string{"range": truncate(rg, 100)})
			return
		case ok:
			start, length, status = s, l, http.StatusPartialContent
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", s, s+l-1, b.Size))
		}
		// A Range header that is not one byte range is ignored, as RFC 9110 allows.
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
		reg.copyBlob(w, rp, b, start, length, status == http.StatusOK)
	}
}

// copyBlob sends length bytes of the blob from start. A whole blob (verify) is hashed as it
// goes: if it does not match its digest, or the archive cannot be read, the response is cut
// off (panic(http.ErrAbortHandler)), so the client sees a failed transfer, never a complete
// one with wrong bytes.
func (reg *registry) copyBlob(w http.ResponseWriter, rp *repo, b servedBlob, start, length int64, verify bool) {
	if !verify {
		// A range of a member stored as one run of the file (a plain tar's, not a bundle's
		// or a sparse one's) goes out by sendfile where the platform has it.
		if f, base, _ := b.Section.Outer(); base >= 0 {
			if file, ok := f.(*os.File); ok {
				sent, written, err := sendFileRange(w, file, base+start, length)
				if sent {
					if err == nil && written < length {
						// The file ended early: net/http would close the connection on the
						// short body anyway; say why.
						reg.log(fmt.Sprintf("repository %s: blob %s: archive %q ends %d bytes into a range of %d; response cut off", rp.name, b.Digest, b.e.a.path, written, length))
						panic(http.ErrAbortHandler)
					}
					return // on an error the response is short of its length: the client sees it
				}
			}
		}
	}
	bp := reg.bufs.Get().(*[]byte)
	defer reg.bufs.Put(bp)
	buf := *bp
	var hsh hash.Hash
	if verify {
		hsh = b.Digest.Algorithm().Hash()
	}
	for off := start; off < start+length; {
		n := int(min(int64(len(buf)), start+length-off))
		k, err := b.Section.ReadAt(buf[:n], off)
		if k < n {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			reg.log(fmt.Sprintf("repository %s: blob %s: reading archive %q: %v; response cut off", rp.name, b.Digest, b.e.a.path, err))
			panic(http.ErrAbortHandler)
		}
		off += int64(k)
		if hsh != nil {
			hsh.Write(buf[:k])
			if off == start+length {
				if got := digest.NewDigest(b.Digest.Algorithm(), hsh); got != b.Digest {
					// The last bytes are held back: the client must not get a whole blob.
					reg.log(fmt.Sprintf("repository %s: blob %s: %v: archive %q holds %s; response cut off", rp.name, b.Digest, ErrDigestMismatch, b.e.a.path, got))
					panic(http.ErrAbortHandler)
				}
			}
		}
		if _, err := w.Write(buf[:k]); err != nil {
			return // the client went away
		}
	}
}

// copyDecompressed sends length bytes from start of a layer served decompressed (an xz or
// bzip2 member), decompressing it from its beginning. A whole one is checked by the image
// source's verifier, which fails the read at its end on a mismatch: the response is then cut
// off before its last bytes, as copyBlob does.
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
