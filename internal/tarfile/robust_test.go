package tarfile

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/darc-dev/darc/internal/archivetest"
)

// headerBlock returns a ustar header for a regular file of size bytes, edited by edit
// before its checksum is computed (so that only the edited field is wrong).
func headerBlock(name string, size int, edit func(b []byte)) []byte {
	b := make([]byte, blockSize)
	copy(b[0:], name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], "00000000000\x00")
	b[156] = tar.TypeReg
	copy(b[257:], "ustar\x0000")
	copy(b[329:], "0000000\x00")
	copy(b[337:], "0000000\x00")
	if edit != nil {
		edit(b)
	}
	if string(b[148:156]) == "\x00\x00\x00\x00\x00\x00\x00\x00" {
		copy(b[148:], "        ")
		var sum int
		for _, c := range b {
			sum += int(c)
		}
		copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	}
	return b
}

// tarOf puts a valid first member, then the given header (with size bytes of data), then the
// end-of-archive blocks.
func tarOf(hdr []byte, size int) []byte {
	first := archivetest.Tar([]archivetest.Entry{{Name: "first", Body: []byte("1")}})
	out := append(bytes.Clone(first[:len(first)-1024]), hdr...)
	out = append(out, make([]byte, (size+blockSize-1)/blockSize*blockSize)...)
	return append(out, make([]byte, 1024)...)
}

// TestFastHeaderAgreesWithArchiveTar covers the headers on which the fast path once disagreed
// with archive/tar (FuzzIndex found the first): a field the index does not use but archive/tar
// refuses, a signed checksum, and a GNU header whose atime field archive/tar reads as a name
// prefix; and a link header read by archive/tar. Each is checked with FuzzIndex's property and
// for its expected outcome.
func TestFastHeaderAgreesWithArchiveTar(t *testing.T) {
	tests := []struct {
		name     string
		hdr      []byte
		wantErr  error  // nil: indexes
		wantName string // the second member's name when it indexes
	}{
		{"plain", headerBlock("x.tar", 3, nil), nil, "x.tar"},
		{"devmajor not octal", headerBlock("x.tar", 3, func(b []byte) { copy(b[329:], "0000900\x00") }), tar.ErrHeader, ""},
		{"mode not octal", headerBlock("x.tar", 3, func(b []byte) { copy(b[100:], "00006x4\x00") }), tar.ErrHeader, ""},
		{"mtime not octal", headerBlock("x.tar", 3, func(b []byte) { copy(b[136:], "0000000009\x00\x00") }), tar.ErrHeader, ""},
		{"uid with a sign", headerBlock("x.tar", 3, func(b []byte) { copy(b[108:], "+000000\x00") }), tar.ErrHeader, ""},
		// v7 headers have no devmajor field: what lies there does not matter.
		{"v7 with junk where devmajor would be", headerBlock("x.tar", 3, func(b []byte) {
			copy(b[257:], "\x00\x00\x00\x00\x00\x00\x00\x00")
			copy(b[329:], "junkjunk")
		}), nil, "x.tar"},
		{"checksum with a plus sign", func() []byte {
			b := headerBlock("x.tar", 3, nil)
			sum := strings.TrimLeft(strings.TrimRight(string(b[148:155]), "\x00 "), "0")
			copy(b[148:156], fmt.Sprintf("+%06s\x00", sum))
			return b
		}(), tar.ErrHeader, ""},
		// GNU tar's atime and ctime: archive/tar reads them and, if they do not parse, takes
		// the area as a ustar name prefix (for archives of Go before 1.8).
		{"GNU header with a text atime", headerBlock("x.tar", 3, func(b []byte) {
			copy(b[257:], "ustar  \x00")
			copy(b[345:], "dir")
		}), nil, "dir/x.tar"},
		{"GNU header with an octal atime", headerBlock("x.tar", 3, func(b []byte) {
			copy(b[257:], "ustar  \x00")
			copy(b[345:], "00000000001\x00")
		}), nil, "x.tar"},
		// A symlink's size field is not data: archive/tar ignores it, and so must the index
		// when archive/tar reads the header for it (here because of a field archive/tar cuts
		// at a NUL). FuzzIndex found this one too.
		{"symlink with a size field, read by archive/tar", headerBlock("l", 1<<30, func(b []byte) {
			b[156] = tar.TypeSymlink
			copy(b[116:], "0\x00000000")
		}), nil, "l"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			size := 3
			if tc.hdr[156] == tar.TypeSymlink {
				size = 0 // no data follows, whatever the size field says
			}
			data := tarOf(tc.hdr, size)
			err := checkIndex(t, data)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ix, _ := BuildIndex(bytes.NewReader(data), int64(len(data)), 0)
			if got := ix.Members()[1].Name; got != tc.wantName {
				t.Fatalf("second member %q, want %q", got, tc.wantName)
			}
		})
	}
}

// TestSpoolErrors: a compressed input whose data is corrupt or cut short is
// ErrNotDockerArchive (and, cut short, still io.ErrUnexpectedEOF), while an input that cannot
// be read keeps its own error.
func TestSpoolErrors(t *testing.T) {
	gz := archivetest.GzipBytes(bytes.Repeat([]byte("darc"), 10_000))
	corrupt := bytes.Clone(gz)
	corrupt[len(corrupt)/2] ^= 0xff
	errRead := errors.New("device on fire")
	tests := []struct {
		name    string
		in      io.Reader
		want    []error
		notWant error
	}{
		{"cut short", bytes.NewReader(gz[:len(gz)/2]), []error{ErrNotDockerArchive, io.ErrUnexpectedEOF}, nil},
		{"corrupt", bytes.NewReader(corrupt), []error{ErrNotDockerArchive}, nil},
		{"read error", io.MultiReader(bytes.NewReader(gz[:100]), iotest.ErrReader(errRead)), []error{errRead}, ErrNotDockerArchive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := spoolInput(tc.in, t.TempDir(), 0)
			if sp != nil {
				sp.f.Close()
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("got %v, want %v", err, w)
				}
			}
			if tc.notWant != nil && errors.Is(err, tc.notWant) {
				t.Errorf("got %v, which should not be %v", err, tc.notWant)
			}
		})
	}
}
