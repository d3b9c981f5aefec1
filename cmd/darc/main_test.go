package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCommand(&out, &errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

// TestLsJSON compares `darc ls --json` with expected.json for every fixture.
func TestLsJSON(t *testing.T) {
	data, err := os.ReadFile("../../testdata/archives/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var files []struct {
		File   string    `json:"file"`
		Images []lsEntry `json:"images"`
	}
	if err := json.Unmarshal(data, &files); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(f.File, func(t *testing.T) {
			out, _, err := run(t, "ls", "--json", filepath.Join("../../testdata/archives", f.File))
			if err != nil {
				t.Fatal(err)
			}
			var got []lsEntry
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(got, f.Images) {
				t.Errorf("got %+v\nwant %+v", got, f.Images)
			}
		})
	}
}

func TestInspectAndVerify(t *testing.T) {
	arc := "../../testdata/archives/docker20-save-multi.tar"
	out, _, err := run(t, "inspect", arc+":busybox-like:1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "docker.io/library/busybox-like:1") || !strings.Contains(out, "diffID:") {
		t.Errorf("inspect output lacks the tag or layers:\n%s", out)
	}
	if _, _, err := run(t, "inspect", arc); err == nil || !strings.Contains(err.Error(), "choose one of") {
		t.Errorf("inspect without selector on 3 images: got %v, want the list of choices", err)
	}
	if _, errOut, err := run(t, "verify", arc); err != nil || !strings.Contains(errOut, "3 image(s) verified") {
		t.Errorf("verify: %v, %q", err, errOut)
	}
}

// TestVerifyCorrupt flips one byte inside a layer: verify must fail with a digest error.
func TestVerifyCorrupt(t *testing.T) {
	data, err := os.ReadFile("../../testdata/archives/podman-save-m.tar")
	if err != nil {
		t.Fatal(err)
	}
	// The first member is a layer (<diffid>.tar); its data starts at 512.
	data[512+600] ^= 0xff
	p := filepath.Join(t.TempDir(), "bad.tar")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "verify", p)
	if !errors.Is(err, errProblems) {
		t.Fatalf("got %v, want problems", err)
	}
	if !strings.Contains(out, "digest mismatch") {
		t.Errorf("output lacks the mismatch:\n%s", out)
	}
}
