package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/darc-dev/darc/internal/archivetest"
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

// splitSourceArchive writes an archive of three images with 7 MiB random layers, so that a
// zstd copy cut at 8M has several parts.
func splitSourceArchive(t *testing.T) string {
	t.Helper()
	var images []archivetest.Image
	for i, tag := range []string{"example.com/s/a:1", "example.com/s/b:1", "example.com/s/c:1"} {
		images = append(images, archivetest.Image{Tags: []string{tag}, Layers: [][]byte{archivetest.Layer(int64(i+1), 1, 7<<20)}})
	}
	path := filepath.Join(t.TempDir(), "source.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := archivetest.Build(f, images, archivetest.Options{Layout: archivetest.ContainersImage}); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSaveSplit: --split-size (here merge's; save shares it) writes OUT.000, OUT.001, … of at most the size; ls, verify
// and load read the set given its first part, OUT itself or a quoted pattern, and name the
// first part when given another.
func TestSaveSplit(t *testing.T) {
	src := splitSourceArchive(t)
	wantLs, _, err := run(t, "ls", "--json", src)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "b.tar.zst")
	if _, errOut, err := run(t, "merge", "-q", "-o", out, "--split-size", "8M", src); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	parts, _ := filepath.Glob(out + ".*")
	if len(parts) < 3 {
		t.Fatalf("parts %q; want at least 3", parts)
	}
	for _, p := range parts {
		if st, err := os.Stat(p); err != nil || st.Size() > 8<<20 {
			t.Errorf("%s: %v, %d bytes; want at most 8 MiB", p, err, st.Size())
		}
	}
	for _, arg := range []string{parts[0], out, out + ".*"} {
		gotLs, errOut, err := run(t, "ls", "--json", arg)
		if err != nil || errOut != "" {
			t.Fatalf("ls %s: %v\n%s", arg, err, errOut)
		}
		if !sameImages(t, gotLs, wantLs) {
			t.Errorf("ls %s:\n%s\nwant\n%s", arg, gotLs, wantLs)
		}
	}
	if stdout, _, err := run(t, "verify", "-q", parts[0]); err != nil {
		t.Errorf("verify: %v\n%s", err, stdout)
	}
	if _, errOut, err := run(t, "load", "-q", out, "oci:"+filepath.Join(t.TempDir(), "layout"), "@1"); err != nil {
		t.Errorf("load @1: %v\n%s", err, errOut)
	}
	if _, _, err := run(t, "ls", parts[1]); err == nil || !strings.Contains(err.Error(), "give its first part") {
		t.Errorf("ls of the second part: %v; want an error naming the first", err)
	}
	_, _, err = run(t, "save", "-q", "-o", out, "--split-size", "8M", "docker-archive:"+src+":@0")
	if err == nil || !strings.Contains(err.Error(), out+".000 already exists") {
		t.Errorf("save over the set: %v; want an error naming %s.000", err, out)
	}
}

// TestSplitFlagErrors: a --split-size that cannot apply is an error before anything is
// written.
func TestSplitFlagErrors(t *testing.T) {
	podmanFixture := fixture("podman-save-m.tar")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--split-size", "8M", "-o", "b.tar"}, "only a zstd archive is split"},
		{[]string{"--split-size", "8M", "-o", "b.tar.gz"}, "only a zstd archive is split"},
		{[]string{"--split-size", "1M", "-o", "b.tar.zst"}, "at least 8M"},
		{[]string{"--split-size", "lots", "-o", "b.tar.zst"}, `--split-size "lots"`},
		{[]string{"--split-size", "8M", "--compress", "zstd", "-o", "-"}, "standard output cannot be split"},
	} {
		dir := t.TempDir()
		args := append([]string{"save", "-q"}, tc.args...)
		if last := args[len(args)-1]; last != "-" {
			args[len(args)-1] = filepath.Join(dir, last)
		}
		_, _, err := run(t, append(args, "docker-archive:"+podmanFixture+":@0")...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("save %q: %v; want an error saying %q", tc.args, err, tc.want)
		}
		if names, _ := os.ReadDir(dir); len(names) > 0 {
			t.Errorf("save %q left %d files", tc.args, len(names))
		}
	}
}

// Sizes are read as split(1) reads them.
func TestParseSplitSize(t *testing.T) {
	for in, want := range map[string]int64{"8M": 8 << 20, "4G": 4 << 30, "4GiB": 4 << 30, "4GB": 4e9, "4.7GB": 4.7e9, "700MB": 700e6, "9000000": 9e6} {
		if got, err := parseSplitSize(in); err != nil || got != want {
			t.Errorf("%s: %d, %v; want %d", in, got, err, want)
		}
	}
}
