package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/darc-dev/darc/internal/archivetest"
)

// multiArchive writes a Docker 25+-shaped archive of one image whose manifest list has
// linux/amd64 (manifest.json's) and linux/arm64/v8 complete and linux/arm/v7 manifest only.
func multiArchive(t *testing.T) (string, []byte, archivetest.MultiPlatformImage) {
	t.Helper()
	data, img := archivetest.MultiPlatformArchive(archivetest.MultiPlatform{
		Platforms: []imgspecv1.Platform{
			{OS: "linux", Architecture: "amd64"},
			{OS: "linux", Architecture: "arm64", Variant: "v8"},
			{OS: "linux", Architecture: "arm", Variant: "v7"},
		},
		Hold:    []int{archivetest.HoldComplete, archivetest.HoldComplete, archivetest.HoldManifest},
		Default: 0, Attestation: true,
	})
	path := filepath.Join(t.TempDir(), "multi.tar")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data, img
}

// ociConfigs returns the config digests of the manifests an OCI layout's index.json names.
func ociConfigs(t *testing.T, dir string) []string {
	t.Helper()
	var idx imgspecv1.Index
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	var out []string
	for _, d := range idx.Manifests {
		var m imgspecv1.Manifest
		readJSON(t, filepath.Join(dir, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()), &m)
		out = append(out, m.Config.Digest.String())
	}
	return out
}

// TestPlatformCLI: ls and verify say what the archive holds of each platform; load
// --platform delivers the platform asked for, from a file or a stream, or fails naming what
// is there.
func TestPlatformCLI(t *testing.T) {
	path, data, img := multiArchive(t)
	t.Run("ls", func(t *testing.T) {
		out, errOut, err := run(t, "ls", path)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		if !strings.Contains(out, "PLATFORMS") || !strings.Contains(out, "linux/amd64, linux/arm64/v8, linux/arm/v7 (manifest only)") {
			t.Errorf("ls does not list the platforms:\n%s", out)
		}
		out, _, err = run(t, "ls", "--json", path)
		var got []lsEntry
		if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got) != 1 {
			t.Fatalf("ls --json: %v\n%s", err, out)
		}
		e := got[0]
		if e.ID != img.IDs[0].String() || e.List != img.Index.String() || len(e.Platforms) != 3 ||
			e.Platforms[1] != (lsPlatform{Platform: "linux/arm64/v8", Manifest: img.Manifests[1].String(), Complete: true, State: "complete"}) ||
			e.Platforms[2].Complete || e.Platforms[2].State != "manifest only" {
			t.Errorf("ls --json: %+v", e)
		}
	})
	t.Run("verify", func(t *testing.T) {
		out, errOut, err := run(t, "verify", path)
		if err != nil {
			t.Fatalf("%v\n%s%s", err, out, errOut)
		}
		if !strings.Contains(out, "note: image @0: manifest list "+img.Index.String()+": linux/amd64, linux/arm64/v8, linux/arm/v7 (manifest only)") {
			t.Errorf("verify does not note the incomplete platform:\n%s", out)
		}
	})
	t.Run("load arm64 from the file", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "layout")
		if _, errOut, err := run(t, "load", "-q", "--platform", "linux/arm64", path, "oci:"+dir); err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		if got := ociConfigs(t, dir); len(got) != 1 || got[0] != img.IDs[1].String() {
			t.Errorf("loaded %v, want the arm64 image %s", got, img.IDs[1])
		}
	})
	t.Run("load arm64 from a stream", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "layout")
		_, errOut, err := runIn(t, bytes.NewReader(data), "load", "-q", "--platform", "linux/arm64", "-", "oci:"+dir)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		if !strings.Contains(errOut, "spooling the archive instead") {
			t.Errorf("no note that the stream is spooled:\n%s", errOut)
		}
		if got := ociConfigs(t, dir); len(got) != 1 || got[0] != img.IDs[1].String() {
			t.Errorf("loaded %v, want the arm64 image %s", got, img.IDs[1])
		}
	})
	t.Run("load a platform held in part", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "layout")
		_, errOut, err := run(t, "load", "-q", "--platform", "linux/arm/v7", path, "oci:"+dir)
		if err == nil || !strings.Contains(err.Error(), "linux/arm/v7 requested, the archive holds linux/amd64, linux/arm64/v8, linux/arm/v7 (manifest only)") {
			t.Errorf("got %v, want a failure naming what the archive holds:\n%s", err, errOut)
		}
	})
}

// TestInspectPlatform: inspect shows an image's manifest list and, with --platform, another
// platform of it; a platform the archive holds in part is an error.
func TestInspectPlatform(t *testing.T) {
	path, _, img := multiArchive(t)
	out, errOut, err := run(t, "inspect", path)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	for _, want := range []string{"ID:        " + img.IDs[0].String(), "List:      " + img.Index.String(), "Platforms: linux/amd64, linux/arm64/v8, linux/arm/v7 (manifest only)"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
	out, errOut, err = run(t, "inspect", "--json", "--platform", "linux/arm64", path)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var d struct {
		ID           string       `json:"id"`
		Architecture string       `json:"architecture"`
		List         string       `json:"index_digest"`
		Platforms    []lsPlatform `json:"platforms"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	if d.ID != img.IDs[1].String() || d.Architecture != "arm64" || d.List != img.Index.String() || len(d.Platforms) != 3 {
		t.Errorf("inspect --platform linux/arm64: %+v", d)
	}
	if _, _, err := run(t, "inspect", "--platform", "linux/arm/v7", path); err == nil || !strings.Contains(err.Error(), "linux/arm/v7 (manifest only)") {
		t.Errorf("inspect --platform linux/arm/v7: got %v, want an error naming what the archive holds", err)
	}
}
