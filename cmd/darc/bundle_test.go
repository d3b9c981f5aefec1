package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/darc-dev/darc/internal/tarfile"
)

// TestSaveCompressed: save and merge compress by OUT's suffix or --compress, and what they
// write lists, inspects, verifies and loads like the plain archive.
func TestSaveCompressed(t *testing.T) {
	podmanFixture := fixture("podman-save-m.tar")
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.tar")
	srcs := []string{"docker-archive:" + podmanFixture + ":@0", "docker-archive:" + podmanFixture + ":@1"}
	if _, errOut, err := run(t, append([]string{"save", "-q", "-o", plain}, srcs...)...); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	wantLs, _, err := run(t, "ls", "--json", plain)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string // after save -q -o OUT
		out  string
		want tarfile.Compression
	}{
		{"zstd by suffix", nil, "b.tar.zst", tarfile.Zstd},
		{"gzip by suffix", nil, "b.tgz", tarfile.Gzip},
		{"zstd by flag, level 9", []string{"--compress", "zstd", "--compress-level", "9"}, "b.bundle", tarfile.Zstd},
		{"none by flag despite the suffix", []string{"--compress", "none"}, "b.tar.gz", tarfile.Uncompressed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), tc.out)
			args := append([]string{"save", "-q", "-o", out}, tc.args...)
			if _, errOut, err := run(t, append(args, srcs...)...); err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			head := make([]byte, 512)
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := f.Read(head)
			f.Close()
			if got := tarfile.DetectCompression(head[:n]); got != tc.want {
				t.Errorf("written %s, want %s", got, tc.want)
			}
			gotLs, errOut, err := run(t, "ls", "--json", out)
			if err != nil || errOut != "" {
				t.Fatalf("ls: %v\n%s", err, errOut)
			}
			if !sameImages(t, gotLs, wantLs) {
				t.Errorf("ls:\n%s\nwant\n%s", gotLs, wantLs)
			}
			if stdout, _, err := run(t, "verify", "-q", out); err != nil {
				t.Errorf("verify: %v\n%s", err, stdout)
			}
			if _, errOut, err := run(t, "verify", out+":busybox-like:1"); err != nil || !strings.Contains(errOut, "1 image(s) verified") {
				t.Errorf("verify of one image: %v\n%s", err, errOut)
			}
			dest := "oci:" + filepath.Join(t.TempDir(), "layout")
			if _, errOut, err := run(t, "load", "-q", out, dest, "@1"); err != nil {
				t.Errorf("load @1: %v\n%s", err, errOut)
			}
		})
	}
}

// sameImages compares two ls --json outputs by tags and IDs.
func sameImages(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y []lsEntry
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil || len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i].ID != y[i].ID || strings.Join(x[i].Tags, ",") != strings.Join(y[i].Tags, ",") {
			return false
		}
	}
	return true
}

// TestCompressFlagErrors: a bad --compress or --compress-level is an error before anything
// is written.
func TestCompressFlagErrors(t *testing.T) {
	podmanFixture := fixture("podman-save-m.tar")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--compress", "xz", "-o", "b.tar"}, `unknown compression "xz"`},
		{[]string{"--compress-level", "25", "-o", "b.tar.zst"}, "zstd level 25: expected 1 to 19"},
		{[]string{"--compress-level", "12", "-o", "b.tar.gz"}, "gzip level 12: expected 1 to 9"},
		{[]string{"--compress-level", "3", "-o", "b.tar"}, "--compress-level 3: the archive is not compressed"},
	} {
		dir := t.TempDir()
		args := append([]string{"save", "-q"}, tc.args...)
		args[len(args)-1] = filepath.Join(dir, args[len(args)-1])
		_, _, err := run(t, append(args, "docker-archive:"+podmanFixture+":@0")...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("save %q: %v; want an error saying %q", tc.args, err, tc.want)
		}
		if names, _ := os.ReadDir(dir); len(names) > 0 {
			t.Errorf("save %q left %d files", tc.args, len(names))
		}
	}
}
