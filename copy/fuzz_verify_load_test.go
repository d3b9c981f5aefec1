package copy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/reference"
)

// FuzzVerifyLoad states the promise verify makes: for any input, if darc verify finds no
// error, then loading the archive into an OCI layout succeeds, from the file and in a single
// pass from a stream, and every loaded image is the one inspect described: its config lists
// the diffIDs inspect reported, and every layer blob decompresses to the bytes of its diffID.
// (The OCI layout holds containers/image's conversion of a Docker config and compresses
// uncompressed layers, so diffIDs are what survive a load unchanged.)
func FuzzVerifyLoad(f *testing.F) {
	seeds, err := archivetest.SeedArchives("../testdata/archives", false)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range seeds {
		if len(s) <= 1<<20 {
			f.Add(s)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "in.tar")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		want, ok := verifiedImages(path)
		if !ok {
			return
		}
		var names []dcopy.Option
		for i := range want {
			names = append(names, dcopy.WithNames(i, tagged(t, fmt.Sprintf("fuzz.test/image%d:t", i))))
		}
		sys := dcopy.WithSystemContext(&types.SystemContext{BlobInfoCacheDir: t.TempDir()})
		opts := append(names, sys, dcopy.WithParallel(1))

		fromFile := filepath.Join(dir, "file")
		a, err := archive.Open(path)
		if err != nil {
			t.Fatalf("verify passed, but the archive does not open again: %v", err)
		}
		_, err = dcopy.Load(context.Background(), a, ociDest(t, fromFile), nil, opts...)
		a.Close()
		if err != nil {
			t.Fatalf("verify passed, but load fails: %v", err)
		}
		checkLoaded(t, fromFile, want)

		fromStream := filepath.Join(dir, "stream")
		if _, err := dcopy.LoadStream(context.Background(), bytes.NewReader(data), ociDest(t, fromStream), nil, opts...); err != nil {
			t.Fatalf("verify passed, but load from a stream fails: %v", err)
		}
		checkLoaded(t, fromStream, want)
	})
}

// verifiedImages opens and verifies the archive at path and returns the diffIDs inspect
// reports for each image; ok is false when the archive does not open or verify finds an error.
func verifiedImages(path string) (diffIDs [][]digest.Digest, ok bool) {
	a, err := archive.Open(path)
	if err != nil {
		return nil, false
	}
	defer a.Close()
	for _, p := range a.Verify(context.Background(), 1) {
		if !p.Warning {
			return nil, false
		}
	}
	for _, img := range a.Images() {
		sel, err := reference.IndexSelector(img.Index)
		if err != nil {
			return nil, false
		}
		d, err := a.Inspect(sel)
		if err != nil {
			return nil, false // verify passed: the property check below reports this
		}
		var ids []digest.Digest
		for _, l := range d.Layers {
			ids = append(ids, l.DiffID)
		}
		diffIDs = append(diffIDs, ids)
	}
	return diffIDs, true
}

func ociDest(t *testing.T, dir string) dcopy.Destination {
	t.Helper()
	dest, err := dcopy.ParseDestination("oci:" + dir)
	if err != nil {
		t.Fatal(err)
	}
	return dest
}

// checkLoaded checks that the OCI layout at dir holds image i under fuzz.test/image<i>:t with
// exactly the diffIDs want[i], each layer blob decompressing to its diffID.
func checkLoaded(t *testing.T, dir string, want [][]digest.Digest) {
	t.Helper()
	blob := func(d digest.Digest) string { return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded()) }
	var idx imgspecv1.Index
	readJSONFile(t, filepath.Join(dir, "index.json"), &idx)
	byName := map[string]imgspecv1.Descriptor{}
	for _, d := range idx.Manifests {
		byName[d.Annotations[imgspecv1.AnnotationRefName]] = d
	}
	for i, diffIDs := range want {
		d, ok := byName[fmt.Sprintf("fuzz.test/image%d:t", i)]
		if !ok {
			t.Fatalf("image @%d is not in the layout: %v", i, idx.Manifests)
		}
		var m imgspecv1.Manifest
		readJSONFile(t, blob(d.Digest), &m)
		var cfg imgspecv1.Image
		readJSONFile(t, blob(m.Config.Digest), &cfg)
		if !slices.Equal(cfg.RootFS.DiffIDs, diffIDs) || len(m.Layers) != len(diffIDs) {
			t.Fatalf("image @%d: loaded config lists diffIDs %v and %d layers, inspect reported %v", i, cfg.RootFS.DiffIDs, len(m.Layers), diffIDs)
		}
		for j, l := range m.Layers {
			if got := decompressedDigest(t, blob(l.Digest)); got != diffIDs[j] {
				t.Fatalf("image @%d layer %d: loaded blob decompresses to %s, inspect reported diffID %s", i, j, got, diffIDs[j])
			}
		}
	}
}

func decompressedDigest(t *testing.T, path string) digest.Digest {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := compression.AutoDecompress(f)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d, err := digest.FromReader(r)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func readJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
