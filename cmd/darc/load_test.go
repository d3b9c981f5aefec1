package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func runIn(t *testing.T, stdin io.Reader, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCommand(&out, &errOut)
	cmd.SetIn(stdin)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

// TestLoadStreamCLI loads a zstd-compressed archive from standard input into an OCI layout in
// a single pass, with TMPDIR pointing nowhere (a temp file would fail), and compares the
// summary with --spool's and with loading the plain archive from its path.
func TestLoadStreamCLI(t *testing.T) {
	plain := "../../testdata/archives/podman-save-m.tar"
	zst, err := os.ReadFile(plain + ".zst")
	if err != nil {
		t.Fatal(err)
	}
	load := func(stdin io.Reader, args ...string) []resultJSON {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "layout")
		args = append([]string{"load", "--quiet", "--json"}, args...)
		args[len(args)-1] = "oci:" + dir
		out, errOut, err := runIn(t, stdin, args...)
		if err != nil {
			t.Fatalf("darc %v: %v\n%s", args, err, errOut)
		}
		var res []resultJSON
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		for i := range res {
			res[i].Source, res[i].Destinations = "", nil
		}
		return res
	}
	want := load(nil, plain, "DEST")
	spooled := load(bytes.NewReader(zst), "--spool", "-", "DEST")

	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "does-not-exist"))
	streamed := load(bytes.NewReader(zst), "-", "DEST")
	fromFile := load(nil, plain+".zst", "DEST")
	for name, got := range map[string][]resultJSON{"--spool": spooled, "stdin": streamed, "compressed file": fromFile} {
		if len(got) != len(want) {
			t.Fatalf("%s: %d results, want %d", name, len(got), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.Manifest != w.Manifest || g.ID != w.ID || g.Error != w.Error || g.Index != w.Index {
				t.Errorf("%s @%d: %+v, want %+v", name, i, g, w)
			}
		}
	}
	// --spool needs the temp directory.
	if _, _, err := runIn(t, bytes.NewReader(zst), "load", "--quiet", "--spool", "-", "oci:"+t.TempDir()); err == nil {
		t.Error("--spool worked without a temp directory")
	}
}
