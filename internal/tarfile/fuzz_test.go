package tarfile

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/reference"
)

// The fuzz targets below check properties, not only the absence of panics. Their seed
// corpus is every fixture in testdata/archives (as written by real tools), small generated
// archives in every layout and the hostile edge cases of archivetest, plus the regression
// seeds kept in testdata/fuzz/<target>/.
//
// Run one for longer with, for example:
//
//	go test -tags containers_image_openpgp -run '^$' -fuzz '^FuzzIndex$' -fuzztime 5m ./internal/tarfile/

// seedArchives returns archives to seed the fuzz targets with: every fixture (compressed ones
// only when compressed is set), every archivetest layout of two small images and the
// archivetest edge cases. Sizes are kept small so that mutations stay fast.
func seedArchives(tb testing.TB, compressed bool) [][]byte {
	tb.Helper()
	out, err := archivetest.SeedArchives("../../testdata/archives", compressed)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// tarMember is what archive/tar says about one member, in the index's terms.
type tarMember struct {
	Member
	insecure bool
}

// archiveTarMembers reads data with archive/tar alone, as the reference the index must agree
// with. It returns the members read before archive/tar stopped, and the error it stopped with
// (nil for a clean end of archive).
func archiveTarMembers(data []byte) ([]tarMember, error) {
	var out []tarMember
	cr := &countingPos{r: bytes.NewReader(data), pos: new(int64)}
	tr := tar.NewReader(cr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // extraction skips them
		}
		m := Member{Type: hdr.Typeflag, Offset: *cr.pos, Size: hdr.Size, Linkname: hdr.Linkname}
		// Extraction anchors every name at the root: a climb above it stops there.
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		climbed := escapes(hdr.Name)
		if climbed {
			out = append(out, tarMember{Member: Member{Name: hdr.Name}, insecure: true})
		}
		if name == "" {
			continue // the root: extraction skips it
		}
		m.Name = name
		if m.Type == tar.TypeLink {
			m.Linkname = strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/")
		}
		if m.Type != tar.TypeReg {
			m.Size = 0
		}
		out = append(out, tarMember{Member: m})
	}
}

// FuzzIndex checks the member index on arbitrary bytes: BuildIndex either fails or returns
// members that lie inside the input and read back exactly their recorded size, and every
// name either resolves to a readable regular file or fails with a link or path error. It
// also compares the index with archive/tar's reading of the same bytes: where archive/tar
// reads the whole archive, the index must succeed and agree member for member (names,
// types, offsets, sizes, link names); where archive/tar stops with an error, an index that
// succeeded must be one whose end (padding, end-of-archive blocks) is cut off, and agree on
// every member.
func FuzzIndex(f *testing.F) {
	for _, s := range seedArchives(f, false) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkIndex(t, data) })
}

// checkIndex is FuzzIndex's property for one input. It returns BuildIndex's error.
func checkIndex(t *testing.T, data []byte) error {
	t.Helper()
	size := int64(len(data))
	ix, err := BuildIndex(bytes.NewReader(data), size, 0)
	want, tarErr := archiveTarMembers(data)
	if err != nil {
		if tarErr == nil {
			t.Fatalf("BuildIndex failed (%v) where archive/tar reads %d members without error", err, len(want))
		}
		if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrInsecurePath) {
			t.Fatalf("BuildIndex without limits: unexpected error %v", err)
		}
		return err
	}
	checkIndexReads(t, ix, data)

	// Compare with archive/tar. The index keeps insecure names apart from its members, so
	// the two lists are compared separately.
	var wantSecure, got []Member
	var wantInsecure []string
	for _, m := range want {
		if m.insecure {
			wantInsecure = append(wantInsecure, m.Name)
		} else {
			wantSecure = append(wantSecure, m.Member)
		}
	}
	for _, m := range ix.Members() {
		m.HeaderOffset = 0
		got = append(got, m)
	}
	insecure := ix.Insecure()
	if tarErr == nil {
		if len(got) != len(wantSecure) || len(insecure) != len(wantInsecure) {
			t.Fatalf("index has %d members and %d insecure names, archive/tar %d and %d", len(got), len(insecure), len(wantSecure), len(wantInsecure))
		}
	} else {
		// archive/tar stopped with an error where the index did not. The only leniency
		// allowed is at the very end: the last member's padding or the end-of-archive
		// blocks cut off, which archive/tar reports as io.ErrUnexpectedEOF after having
		// returned every member.
		if !errors.Is(tarErr, io.ErrUnexpectedEOF) || len(got) != len(wantSecure) || len(insecure) != len(wantInsecure) {
			t.Fatalf("index has %d members and %d insecure names; archive/tar read %d and %d, then failed: %v", len(got), len(insecure), len(wantSecure), len(wantInsecure), tarErr)
		}
	}
	for i, w := range wantSecure {
		if got[i] != w {
			t.Fatalf("member %d: index %+v, archive/tar %+v (archive/tar error: %v)", i, got[i], w, tarErr)
		}
	}
	for i, w := range wantInsecure {
		if insecure[i] != w {
			t.Fatalf("insecure name %d: index %q, archive/tar %q", i, insecure[i], w)
		}
	}
	return nil
}

// checkIndexReads checks that every member lies inside data and reads back exactly its size,
// and that Lookup and Open agree with the members.
func checkIndexReads(t *testing.T, ix *Index, data []byte) {
	t.Helper()
	size := int64(len(data))
	for i, m := range ix.Members() {
		sparse := ix.sparse[m.Offset] != nil
		if m.Offset < 0 || m.Size < 0 || m.Offset > size || (!sparse && m.Size > size-m.Offset) {
			t.Fatalf("member %d %q: offset %d size %d outside the %d-byte input", i, m.Name, m.Offset, m.Size, size)
		}
		if m.Type != tar.TypeReg && m.Size != 0 {
			t.Fatalf("member %d %q: type %q with size %d", i, m.Name, m.Type, m.Size)
		}
		if _, err := cleanName(m.Name); err != nil {
			t.Fatalf("member %d: name %q is not clean: %v", i, m.Name, err)
		}
		n, err := io.Copy(io.Discard, ix.section(m))
		if err != nil || n != m.Size {
			t.Fatalf("member %d %q: read %d bytes (%v), recorded size %d", i, m.Name, n, err, m.Size)
		}
		// Without links or replaced names, every name holds its last member.
		if last, ok := ix.Lookup(m.Name); ix.root == nil && (!ok || last.Name != m.Name) {
			t.Fatalf("member %d %q: Lookup = %+v, %v", i, m.Name, last, ok)
		}
		sr, res, err := ix.Open(m.Name)
		if err != nil {
			if !errors.Is(err, ErrBadLink) && !errors.Is(err, ErrInsecurePath) && !errors.Is(err, ErrMemberNotFound) {
				t.Fatalf("Open(%q): error %v is not a link or path error", m.Name, err)
			}
			continue
		}
		if res.Type != tar.TypeReg {
			t.Fatalf("Open(%q) resolved to a member of type %q", m.Name, res.Type)
		}
		got, err := io.ReadAll(sr)
		if err != nil || int64(len(got)) != res.Size || (ix.sparse[res.Offset] == nil && !bytes.Equal(got, data[res.Offset:res.Offset+res.Size])) {
			t.Fatalf("Open(%q): read %d bytes (%v), want %d", m.Name, len(got), err, res.Size)
		}
	}
}

// knownError reports whether err is one of the errors a reader may return for bad input: its
// own sentinels, io.ErrUnexpectedEOF for truncation, and archive/tar's tar.ErrHeader for a
// corrupt header after the first (a bad first header is ErrNotDockerArchive).
func knownError(err error) bool {
	for _, want := range []error{ErrNotDockerArchive, ErrTooLarge, ErrInsecurePath, ErrBadLink, ErrMemberNotFound,
		ErrDigestMismatch, ErrSizeMismatch, ErrInvalidManifest, ErrImageNotFound, ErrAmbiguous, io.ErrUnexpectedEOF, tar.ErrHeader} {
		if errors.Is(err, want) {
			return true
		}
	}
	return false
}

// fuzzLimits keep a fuzzed input from spooling or reading much: the inputs are small, so
// anything close to these is a decompression bomb.
var fuzzLimits = Limits{MaxSpoolSize: 64 << 20, MaxManifestSize: 1 << 20, MaxConfigSize: 1 << 20}

// FuzzOpenVerify opens arbitrary bytes as an archive (through the spool file when they look
// compressed) and, when that works, selects every image by its index and reads every blob of
// every image with full verification. Every failure must be one of the reader's errors (or
// io.ErrUnexpectedEOF); Select must return the image at each index; a blob that reads
// without error has exactly the size and digest the image claims for it; and the spool
// directory is empty after Close.
func FuzzOpenVerify(f *testing.F) {
	for _, s := range seedArchives(f, true) {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		var r *Reader
		var err error
		if DetectCompression(data) == Uncompressed {
			r, err = newReader("fuzz", bytes.NewReader(data), int64(len(data)), fuzzLimits)
		} else {
			r, err = OpenStream("fuzz", bytes.NewReader(data), OpenOptions{Limits: fuzzLimits, TempDir: dir})
		}
		if err != nil {
			if !knownError(err) {
				t.Fatalf("open: unclassified error %v", err)
			}
			checkEmptyDir(t, dir)
			return
		}
		defer func() {
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			checkEmptyDir(t, dir)
		}()
		if len(r.Images()) == 0 {
			t.Fatal("opened an archive with no image")
		}
		for i, img := range r.Images() {
			sel, err := reference.IndexSelector(i)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Select(sel)
			if err != nil || got != img {
				t.Fatalf("Select(@%d) = %v, %v; want image %d", i, got, err, i)
			}
			for _, err := range readImage(img) {
				if !knownError(err) {
					t.Fatalf("image @%d: unclassified error %v", i, err)
				}
			}
		}
	})
}

// readImage resolves img and reads each of its blobs with full verification, checking that a
// blob read without error has the claimed size and digest. It returns the errors met.
func readImage(img *Image) []error {
	res, err := img.Resolve()
	if err != nil {
		return []error{err}
	}
	ds := []digest.Digest{img.ID}
	for _, l := range res.Layers {
		ds = append(ds, l.Digest)
	}
	var errs []error
	for _, d := range ds {
		rc, size, err := img.OpenBlob(d, true)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		h := d.Algorithm().Digester()
		n, err := io.Copy(h.Hash(), rc)
		_ = rc.Close()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if size >= 0 && n != size {
			panic(fmt.Sprintf("blob %s: read %d bytes without error, size is %d", d, n, size))
		}
		if h.Digest() != d {
			panic(fmt.Sprintf("blob %s: read without error, content is %s", d, h.Digest()))
		}
	}
	return errs
}

func checkEmptyDir(t *testing.T, dir string) {
	t.Helper()
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("spool directory holds %d entries", len(left))
	}
}
