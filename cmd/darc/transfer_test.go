package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/darc-dev/darc/internal/archivetest"
)

const fixtureDir = "../../testdata/archives"

func fixture(name string) string { return filepath.Join(fixtureDir, name) }

// lsTags lists an archive with `darc ls --json` and returns each image's tags.
func lsTags(t *testing.T, path string) [][]string {
	t.Helper()
	out, _, err := run(t, "ls", "--json", path)
	if err != nil {
		t.Fatal(err)
	}
	var entries []lsEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatal(err)
	}
	var tags [][]string
	for _, e := range entries {
		tags = append(tags, e.Tags)
	}
	return tags
}

func TestSaveMergeLoadCp(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub.tar")
	// Filtering: two images of one archive into a new one, in the order given.
	if _, errOut, err := run(t, "save", "-q", "-o", sub, "docker-archive:"+fixture("podman-save-m.tar")+":@2", "docker-archive:"+fixture("podman-save-m.tar")+":example.com/darc/a:1"); err != nil {
		t.Fatalf("save: %v\n%s", err, errOut)
	}
	got := lsTags(t, sub)
	if len(got) != 2 || got[0][0] != "localhost/c:v1" || len(got[1]) != 2 {
		t.Errorf("saved archive lists %q", got)
	}
	// An existing output is refused without --overwrite and left alone.
	before, _ := os.ReadFile(sub)
	if _, _, err := run(t, "save", "-q", "-o", sub, "docker-archive:"+fixture("skopeo-copy.tar")); err == nil || !strings.Contains(err.Error(), "--overwrite") {
		t.Errorf("save over an existing file: got %v, want a hint to use --overwrite", err)
	}
	if after, _ := os.ReadFile(sub); string(after) != string(before) {
		t.Error("a refused save changed the existing file")
	}

	merged := filepath.Join(dir, "merged.tar")
	out, errOut, err := run(t, "merge", "-q", "--json", "--layout", "oci", "-o", merged, fixture("podman-save-m.tar"), fixture("crane-pull-zstd.tar"))
	if err != nil {
		t.Fatalf("merge: %v\n%s", err, errOut)
	}
	var results []resultJSON
	if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) != 5 {
		t.Fatalf("merge --json: %v, %d results\n%s", err, len(results), out)
	}
	// The same image from both inputs is one entry with the tags of both.
	if got := lsTags(t, merged); len(got) != 3 || len(got[0]) != 3 {
		t.Errorf("merged archive lists %q", got)
	}
	if _, errOut, err := run(t, "verify", merged); err != nil {
		t.Errorf("verify merged: %v\n%s", err, errOut)
	}

	layout := filepath.Join(dir, "layout")
	if _, errOut, err := run(t, "load", "-q", merged, "oci:"+layout); err != nil {
		t.Fatalf("load: %v\n%s", err, errOut)
	}
	index, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"example.com/darc/a:1", "localhost/c:v1", "127.0.0.1:5124/darc/c:zstd"} {
		if !strings.Contains(string(index), `"`+name+`"`) {
			t.Errorf("layout index lacks ref %q", name)
		}
	}

	one := filepath.Join(dir, "one.tar")
	if _, errOut, err := run(t, "cp", "-q", "oci:"+layout+":localhost/c:v1", "docker-archive:"+one+":example.com/copied:1"); err != nil {
		t.Fatalf("cp: %v\n%s", err, errOut)
	}
	if got := lsTags(t, one); len(got) != 1 || got[0][0] != "example.com/copied:1" {
		t.Errorf("cp result lists %q", got)
	}
}

func TestSourceDateEpoch(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	a := filepath.Join(dir, "a.tar")
	if _, _, err := run(t, "save", "-q", "-o", a, "docker-archive:"+fixture("skopeo-copy.tar")); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	// mtime field of the first header, octal.
	if mtime := strings.Trim(string(data[136:148]), "\x00 "); mtime != "14524770400" {
		t.Errorf("first member mtime %q, want 14524770400 (1700000000 in octal)", mtime)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, _, err := run(t, "save", "-q", "-o", filepath.Join(dir, "b.tar"), "docker-archive:"+fixture("skopeo-copy.tar")); err == nil {
		t.Error("a malformed SOURCE_DATE_EPOCH was accepted")
	}
}

// TestMain lets a test run the command in a child process (to send it signals).
func TestMain(m *testing.M) {
	if os.Getenv("DARC_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestInterruptLeavesNothing interrupts `darc merge` of a large archive with SIGINT: the
// command fails, and neither the output nor a temp file is left in the output directory.
func TestInterruptLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a large archive")
	}
	dir := t.TempDir()
	big := filepath.Join(dir, "big.tar")
	layers := [][]byte{archivetest.Layer(1, 64, 1<<20), archivetest.Layer(2, 64, 1<<20)}
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := archivetest.Build(f, []archivetest.Image{{Tags: []string{"example.com/big:1"}, Layers: layers}}, archivetest.Options{}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	outDir := t.TempDir()
	cmd := exec.Command(os.Args[0], "merge", "-q", "-o", filepath.Join(outDir, "out.tar"), big, big)
	cmd.Env = append(os.Environ(), "DARC_TEST_MAIN=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the temp output exists, then interrupt.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if entries, _ := os.ReadDir(outDir); len(entries) > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	err = cmd.Wait()
	if err == nil {
		t.Skip("the merge finished before the interrupt arrived")
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr %q does not say it was interrupted", stderr.String())
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
		t.Errorf("after the interrupt the output directory holds %v", entries)
	}
}

// TestMergeAutoLayout: inputs with compressed layers give an OCI-layout archive that keeps
// them as stored; plain inputs give the docker layout.
func TestMergeAutoLayout(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"crane-pull-multi.tar", "gzip"},
		{"podman-save-m.tar", "none"},
	} {
		out := filepath.Join(dir, tc.in)
		if _, errOut, err := run(t, "merge", "-q", "-o", out, fixture(tc.in)); err != nil {
			t.Fatalf("merge %s: %v\n%s", tc.in, err, errOut)
		}
		js, _, err := run(t, "inspect", "--json", out+":@0")
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Layers []struct{ Compression string }
		}
		if err := json.Unmarshal([]byte(js), &d); err != nil {
			t.Fatal(err)
		}
		if len(d.Layers) == 0 || d.Layers[0].Compression != tc.want {
			t.Errorf("merge of %s stores layers as %+v, want %s", tc.in, d.Layers, tc.want)
		}
	}
}

// TestLsStdin lists a zstd-compressed archive piped to standard input.
func TestLsStdin(t *testing.T) {
	in, err := os.Open(fixture("podman-save-m.tar.zst"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	cmd := exec.Command(os.Args[0], "ls", "--json", "-")
	cmd.Env = append(os.Environ(), "DARC_TEST_MAIN=1")
	cmd.Stdin = in
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var entries []lsEntry
	if err := json.Unmarshal(out, &entries); err != nil || len(entries) != 3 {
		t.Fatalf("ls - printed %s (%v)", out, err)
	}
}
