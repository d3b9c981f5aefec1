package tarfile

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/darc-dev/darc/internal/archivetest"
)

func TestCleanName(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr error
	}{
		{"x.tar", "x.tar", nil},
		// "./x", "/x" and "x" are one member.
		{"./x.tar", "x.tar", nil},
		{"/x.tar", "x.tar", nil},
		{"a//b/./c", "a/b/c", nil},
		// Climbing back down inside the root is fine.
		{"a/../b", "b", nil},
		{"../x", "", ErrInsecurePath},
		{"a/../../x", "", ErrInsecurePath},
		{"/../x", "", ErrInsecurePath},
		{"x\x00y", "", ErrInsecurePath},
		{".", "", ErrInsecurePath},
		{"", "", ErrInsecurePath},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := cleanName(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("cleanName(%q) error = %v, want %v", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("cleanName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func indexOf(t *testing.T, data []byte) *Index {
	t.Helper()
	ix, err := BuildIndex(bytes.NewReader(data), int64(len(data)), 0)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestResolve(t *testing.T) {
	reg := func(name, body string) archivetest.Entry {
		return archivetest.Entry{Name: name, Body: []byte(body)}
	}
	sym := func(name, target string) archivetest.Entry {
		return archivetest.Entry{Name: name, Type: tar.TypeSymlink, Linkname: target}
	}
	hard := func(name, target string) archivetest.Entry {
		return archivetest.Entry{Name: name, Type: tar.TypeLink, Linkname: target}
	}
	// A chain of n symlinks at the root: docker's walk takes a step per link, one for the
	// leading "/" and one for base.tar, and gives up past maxScopedSteps.
	chain := func(n int) ([]archivetest.Entry, string) {
		entries := []archivetest.Entry{reg("base.tar", "layer")}
		prev := "base.tar"
		for i := 0; i < n; i++ {
			l := fmt.Sprintf("l%d.tar", i)
			entries = append(entries, sym(l, prev))
			prev = l
		}
		return entries, prev
	}
	within, withinName := chain(maxScopedSteps - 1)
	tooLong, tooLongName := chain(maxScopedSteps)
	tests := []struct {
		name    string
		entries []archivetest.Entry
		lookup  string
		want    string // body
		wantErr error
	}{
		{"regular file", []archivetest.Entry{reg("a.tar", "A")}, "a.tar", "A", nil},
		{"dot-slash lookup of plain name", []archivetest.Entry{reg("a.tar", "A")}, "./a.tar", "A", nil},
		{"dot-slash member, plain lookup", []archivetest.Entry{reg("./a.tar", "A")}, "a.tar", "A", nil},
		// Docker's layout: a later image's layer.tar links to an earlier one.
		{"docker relative symlink", []archivetest.Entry{reg("v1/layer.tar", "L"), sym("v2/layer.tar", "../v1/layer.tar")}, "v2/layer.tar", "L", nil},
		{"symlink chain", []archivetest.Entry{reg("x.tar", "X"), sym("d/a", "../x.tar"), sym("e/b", "../d/a"), sym("c", "e/b")}, "c", "X", nil},
		{"symlink with dot-dot inside", []archivetest.Entry{reg("x.tar", "X"), sym("a/b", "c/../../x.tar")}, "a/b", "X", nil},
		{"hardlink", []archivetest.Entry{reg("x.tar", "X"), hard("y.tar", "x.tar")}, "y.tar", "X", nil},
		{"hardlink to symlink", []archivetest.Entry{reg("x.tar", "X"), sym("s", "x.tar"), hard("h", "./s")}, "h", "X", nil},
		// Extraction keeps the last member of a name.
		{"duplicate name: last wins", []archivetest.Entry{reg("a.tar", "old"), reg("a.tar", "new")}, "a.tar", "new", nil},
		{"long chain within bound", within, withinName, "layer", nil},
		{"chain too long", tooLong, tooLongName, "", ErrBadLink},
		{"symlink cycle", []archivetest.Entry{sym("a", "b"), sym("b", "a")}, "a", "", ErrBadLink},
		{"self link", []archivetest.Entry{sym("a", "a")}, "a", "", ErrBadLink},
		// Extraction happens in a chroot and docker resolves paths inside the root: a climb
		// above it stops there, an absolute target starts there.
		{"symlink climbing out", []archivetest.Entry{reg("x.tar", "X"), sym("a/b", "../../../x.tar")}, "a/b", "X", nil},
		{"absolute symlink", []archivetest.Entry{reg("x.tar", "X"), sym("a/b", "/x.tar")}, "a/b", "X", nil},
		{"hardlink climbing out", []archivetest.Entry{reg("x.tar", "X"), hard("a", "../x.tar")}, "a", "X", nil},
		{"symlink climbing out to nothing", []archivetest.Entry{sym("a", "../../etc/passwd")}, "a", "", ErrBadLink},
		{"absolute symlink to nothing", []archivetest.Entry{sym("a", "/etc/passwd")}, "a", "", ErrBadLink},
		// A parent directory that is a symlink is followed, when reading and when extracting.
		{"symlinked parent", []archivetest.Entry{reg("real/x.tar", "X"), sym("link", "/real")}, "link/x.tar", "X", nil},
		{"member written through a symlinked parent", []archivetest.Entry{{Name: "real/", Type: tar.TypeDir}, sym("link", "real"), reg("link/x.tar", "X")}, "real/x.tar", "X", nil},
		// A hard link holds what its target held when it was extracted.
		{"hardlink keeps the old content", []archivetest.Entry{reg("a", "old"), hard("h", "a"), reg("a", "new")}, "h", "old", nil},
		{"hardlink to a symlink resolves from its own place", []archivetest.Entry{sym("a/s", "x"), reg("a/x", "A"), reg("c/x", "C"), hard("c/h", "a/s")}, "c/h", "C", nil},
		// A file replacing a directory removes what was under it.
		{"file replaces a directory", []archivetest.Entry{reg("d/x", "X"), reg("d", "D")}, "d/x", "", ErrBadLink},
		{"directory recreated after a file", []archivetest.Entry{reg("d/x", "X"), reg("d", "D"), {Name: "d/", Type: tar.TypeDir}}, "d/x", "", ErrMemberNotFound},
		{"symlink replaces a directory", []archivetest.Entry{reg("d/x", "old"), reg("e/x", "E"), sym("d", "e")}, "d/x", "E", nil},
		{"manifest path with a missing directory and dot-dot", []archivetest.Entry{reg("x", "X"), sym("l", "nothere/../x")}, "l", "X", nil},
		{"dangling symlink", []archivetest.Entry{sym("a", "missing")}, "a", "", ErrBadLink},
		{"link to directory", []archivetest.Entry{{Name: "d/", Type: tar.TypeDir}, sym("a", "d")}, "a", "", ErrBadLink},
		{"missing member", []archivetest.Entry{reg("a", "A")}, "b", "", ErrMemberNotFound},
		{"insecure lookup", []archivetest.Entry{reg("a", "A")}, "../a", "", ErrInsecurePath},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix := indexOf(t, archivetest.Tar(tc.entries))
			sr, m, err := ix.Open(tc.lookup)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Open(%q) error = %v, want %v", tc.lookup, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(sr)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want || m.Size != int64(len(tc.want)) {
				t.Fatalf("Open(%q) = %q (size %d), want %q", tc.lookup, got, m.Size, tc.want)
			}
		})
	}
}

// TestIndexAnchorsClimbingNames: a name that climbs out of the root is extracted inside it
// (docker extracts in a chroot), so the index has it there, and lists the raw name.
func TestIndexAnchorsClimbingNames(t *testing.T) {
	ix := indexOf(t, archivetest.Tar([]archivetest.Entry{
		{Name: "../evil", Body: []byte("x")},
		{Name: "ok", Body: []byte("y")},
	}))
	if got := ix.Insecure(); len(got) != 1 || got[0] != "../evil" {
		t.Errorf("Insecure() = %q, want [../evil]", got)
	}
	if m, ok := ix.Lookup("evil"); !ok || m.Size != 1 {
		t.Errorf(`Lookup("evil") = %+v, %v; want the member "../evil"`, m, ok)
	}
	if len(ix.Members()) != 2 {
		t.Errorf("got %d members, want 2", len(ix.Members()))
	}
}

func TestIndexLimits(t *testing.T) {
	var entries []archivetest.Entry
	for i := 0; i < 10; i++ {
		entries = append(entries, archivetest.Entry{Name: strings.Repeat("m", i+1), Body: []byte("x")})
	}
	data := archivetest.Tar(entries)
	if _, err := BuildIndex(bytes.NewReader(data), int64(len(data)), 9); !errors.Is(err, ErrTooLarge) {
		t.Errorf("9-member limit on 10 members: got %v, want ErrTooLarge", err)
	}
	if _, err := BuildIndex(bytes.NewReader(data), int64(len(data)), 10); err != nil {
		t.Errorf("10-member limit on 10 members: %v", err)
	}
}

func TestNotATar(t *testing.T) {
	data := bytes.Repeat([]byte("this is not a tar file\n"), 100)
	_, err := BuildIndex(bytes.NewReader(data), int64(len(data)), 0)
	if !errors.Is(err, ErrNotDockerArchive) {
		t.Fatalf("got %v, want ErrNotDockerArchive", err)
	}
}

func TestDetectCompression(t *testing.T) {
	bzTar := archivetest.Tar([]archivetest.Entry{{Name: "BZh91AY&SYfile", Body: []byte("x")}})
	tests := []struct {
		name string
		head []byte
		want Compression
	}{
		// A tar whose first member's name is bzip2 magic is still a tar.
		{"tar with BZh member", bzTar, Uncompressed},
		{"plain tar", archivetest.Tar([]archivetest.Entry{{Name: "a", Body: []byte("x")}}), Uncompressed},
		{"gzip", []byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0}, Gzip},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0}, Zstd},
		// pzstd starts with a skippable frame (magic 0x184D2A50, little-endian, and a length).
		{"zstd skippable frame 0x184D2A50", []byte{0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2}, Zstd},
		{"zstd skippable frame 0x184D2A5F", []byte{0x5f, 0x2a, 0x4d, 0x18, 0, 0, 0, 0}, Zstd},
		// The magic without its length is not enough.
		{"skippable magic cut short", []byte{0x50, 0x2a, 0x4d, 0x18, 4}, Uncompressed},
		{"not a skippable magic", []byte{0x60, 0x2a, 0x4d, 0x18, 4, 0, 0, 0}, Uncompressed},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00, 0}, Xz},
		{"bzip2", []byte("BZh91AY&SY\x00\x00"), Bzip2},
		// "BZh" without the block magic is not bzip2.
		{"BZh text", []byte("BZh9 hello world"), Uncompressed},
		{"empty", nil, Uncompressed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := DetectCompression(tc.head); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// countingReaderAt records every byte range read.
type countingReaderAt struct {
	r     io.ReaderAt
	mu    sync.Mutex
	reads [][2]int64 // offset, length
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.mu.Lock()
	c.reads = append(c.reads, [2]int64{off, int64(n)})
	c.mu.Unlock()
	return n, err
}

// bytesIn returns how many bytes were read inside [start, end).
func (c *countingReaderAt) bytesIn(start, end int64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, r := range c.reads {
		lo, hi := max(r[0], start), min(r[0]+r[1], end)
		if hi > lo {
			n += hi - lo
		}
	}
	return n
}

func (c *countingReaderAt) reset() {
	c.mu.Lock()
	c.reads = nil
	c.mu.Unlock()
}

// TestNoRescans proves the index reads headers in one pass without reading member bodies
// (beyond one read-ahead window per member), and that reading a member afterwards reads its
// bytes exactly once and nothing else.
func TestNoRescans(t *testing.T) {
	const big = 4 << 20
	var entries []archivetest.Entry
	for i := 0; i < 5; i++ {
		body := bytes.Repeat([]byte{byte('a' + i)}, big)
		entries = append(entries, archivetest.Entry{Name: string(rune('a'+i)) + ".tar", Body: body})
	}
	data := archivetest.Tar(entries)
	cr := &countingReaderAt{r: bytes.NewReader(data)}
	ix, err := BuildIndex(cr, int64(len(data)), 0)
	if err != nil {
		t.Fatal(err)
	}
	total := cr.bytesIn(0, int64(len(data)))
	// Each member costs at most one read-ahead window: its header and, for the body, the last
	// byte archive/tar checks plus whatever follows in the same window.
	if limit := int64(len(entries)+1) * readAhead; total > limit {
		t.Errorf("indexing read %d bytes of a %d-byte archive; want at most %d", total, len(data), limit)
	}
	for _, m := range ix.Members() {
		if got := cr.bytesIn(m.Offset, m.Offset+m.Size-1); got > readAhead {
			t.Errorf("indexing read %d bytes of %q's body", got, m.Name)
		}
	}
	for _, m := range ix.Members() {
		cr.reset()
		sr, _, err := ix.Open(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, sr); err != nil {
			t.Fatal(err)
		}
		if got := cr.bytesIn(m.Offset, m.Offset+m.Size); got != m.Size {
			t.Errorf("reading %q read %d bytes of its body, want %d", m.Name, got, m.Size)
		}
		if got := cr.bytesIn(0, int64(len(data))); got != m.Size {
			t.Errorf("reading %q read %d bytes in all, want %d", m.Name, got, m.Size)
		}
	}
}

// TestClaimedSizePastEnd covers a header that claims far more data than the file holds.
func TestClaimedSizePastEnd(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "huge", Size: 1 << 62, Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(make([]byte, 1024)) // what follows is far less than claimed
	data := buf.Bytes()
	_, err := BuildIndex(bytes.NewReader(data), int64(len(data)), 0)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
}

// slowIndex is the reference the fast header path must agree with: every header decoded
// by archive/tar.
func slowIndex(t *testing.T, data []byte) []Member {
	t.Helper()
	var out []Member
	var pos int64
	tr := tar.NewReader(&countingPos{r: bytes.NewReader(data), pos: &pos})
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		name, _ := memberName(hdr.Name)
		if name == "" || hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		m := Member{Name: name, Type: hdr.Typeflag, Offset: pos, Size: hdr.Size, Linkname: hdr.Linkname}
		if m.Type == tar.TypeLink {
			m.Linkname, _ = memberName(hdr.Linkname)
		}
		if m.Type != tar.TypeReg {
			m.Size = 0
		}
		out = append(out, m)
	}
}

type countingPos struct {
	r   *bytes.Reader
	pos *int64
}

func (c *countingPos) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.pos += int64(n)
	return n, err
}

// TestFastHeadersMatchArchiveTar compares the index with archive/tar's reading of the same
// bytes, over ustar names with a prefix, PAX and GNU long names and links, v7 headers and
// every fixture.
func TestFastHeadersMatchArchiveTar(t *testing.T) {
	long := strings.Repeat("d/", 60) + "layer.tar"
	mk := func(format tar.Format, names ...string) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for i, n := range names {
			body := bytes.Repeat([]byte{byte(i)}, 700*i)
			hdr := &tar.Header{Name: n, Mode: 0o444, Size: int64(len(body)), Typeflag: tar.TypeReg, Format: format}
			if err := tw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write(body); err != nil {
				t.Fatal(err)
			}
		}
		target := long
		if format == tar.FormatUSTAR {
			target = "a.tar"
		}
		if err := tw.WriteHeader(&tar.Header{Name: "link-" + names[0], Linkname: target, Typeflag: tar.TypeSymlink, Format: format}); err != nil {
			t.Fatal(err)
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	cases := map[string][]byte{
		"ustar":        mk(tar.FormatUSTAR, "a.tar", "b/c.json", strings.Repeat("p", 120)+"/x"),
		"pax":          mk(tar.FormatPAX, "a.tar", long, "ünïcode"),
		"gnu":          mk(tar.FormatGNU, "a.tar", long),
		"pax midway":   mk(tar.FormatUnknown, "a.tar", "b.tar", long, "c.tar"),
		"no trailer":   mk(tar.FormatUSTAR, "a.tar")[:512*4],
		"hostile tree": archivetest.Tar([]archivetest.Entry{{Name: "./x", Body: []byte("1")}, {Name: "../y"}, {Name: "/z", Body: []byte("22")}}),
	}
	fixtures, _ := filepath.Glob("../../testdata/archives/*.tar")
	for _, f := range fixtures {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cases[f] = data
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			want := slowIndex(t, data)
			got := indexOf(t, data).Members()
			if len(got) != len(want) {
				t.Fatalf("got %d members, want %d", len(got), len(want))
			}
			for i := range got {
				g := got[i]
				g.HeaderOffset = 0
				if g != want[i] {
					t.Errorf("member %d: got %+v, want %+v", i, g, want[i])
				}
			}
		})
	}
}

// TestExtractionFailures: members docker's extraction fails on make the index record the
// failure (docker then loads nothing), and members it handles do not.
func TestExtractionFailures(t *testing.T) {
	reg := func(name string) archivetest.Entry { return archivetest.Entry{Name: name, Body: []byte("x")} }
	tests := []struct {
		name    string
		entries []archivetest.Entry
		wantErr error // nil: extraction succeeds
	}{
		{"plain", []archivetest.Entry{reg("a"), reg("b/c")}, nil},
		{"member under a regular file", []archivetest.Entry{reg("a"), reg("a/b")}, ErrNotExtractable},
		{"member under a dangling symlink", []archivetest.Entry{{Name: "l", Type: tar.TypeSymlink, Linkname: "x"}, reg("l/b")}, ErrNotExtractable},
		{"hard link to nothing", []archivetest.Entry{{Name: "h", Type: tar.TypeLink, Linkname: "x"}}, ErrBadLink},
		{"hard link to itself", []archivetest.Entry{reg("h"), {Name: "h", Type: tar.TypeLink, Linkname: "h"}}, ErrBadLink},
		{"contiguous file", []archivetest.Entry{{Name: "c", Type: tar.TypeCont}}, ErrNotExtractable},
		{"root entries skipped", []archivetest.Entry{{Name: "./", Type: tar.TypeDir}, reg("."), reg("a")}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix := indexOf(t, archivetest.Tar(tc.entries))
			if tc.wantErr == nil && ix.extractErr != nil {
				t.Fatalf("extraction fails: %v", ix.extractErr)
			}
			if !errors.Is(ix.extractErr, tc.wantErr) {
				t.Fatalf("extraction error %v, want %v", ix.extractErr, tc.wantErr)
			}
		})
	}
}
