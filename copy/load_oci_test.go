package copy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	distref "github.com/distribution/reference"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/archivetest"
)

// TestLoadOCISharedLayers loads several images that share a base layer into one OCI layout
// with the default parallelism. Every tag must end up in index.json (containers/image's oci:
// destination rewrites index.json from the state it read when it was created, so concurrent
// copies into one layout lose entries), the shared layer must be compressed and read from
// the archive once, by the first image only, and every image must read back with its layers'
// diffIDs.
func TestLoadOCISharedLayers(t *testing.T) {
	ctx := context.Background()
	base := archivetest.Layer(1, 4, 256<<10) // 1 MiB
	var imgs []archivetest.Image
	for i := range 5 {
		imgs = append(imgs, archivetest.Image{
			Tags:   []string{fmt.Sprintf("example.com/load/img%d:1", i)},
			Layers: [][]byte{base, archivetest.Layer(int64(10+i), 1, 16<<10)},
		})
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "in.tar")
	data, err := archivetest.BuildBytes(imgs, archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	layout := filepath.Join(dir, "layout")
	dest, err := dcopy.ParseDestination("oci:" + layout)
	if err != nil {
		t.Fatal(err)
	}
	sys := &types.SystemContext{BlobInfoCacheDir: t.TempDir()}
	results, err := dcopy.Load(ctx, a, dest, nil, dcopy.WithSystemContext(sys))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		own := int64(len(imgs[i].Layers[1]))
		if i == 0 && r.Bytes < int64(len(base))+own {
			t.Errorf("image 0 counts %d bytes read from the archive, less than its two layers", r.Bytes)
		}
		if i > 0 && (r.Bytes >= int64(len(base)) || r.Bytes < own) {
			t.Errorf("image %d read %d bytes from the archive: the shared %d-byte layer was read again, or its own %d-byte one not counted", i, r.Bytes, len(base), own)
		}
	}

	idx, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index imgspecv1.Index
	if err := json.Unmarshal(idx, &index); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range index.Manifests {
		names = append(names, d.Annotations[imgspecv1.AnnotationRefName])
	}
	for i, img := range imgs {
		if !slices.Contains(names, img.Tags[0]) {
			t.Errorf("index.json lacks %s: has %q", img.Tags[0], names)
			continue
		}
		ref, err := ocilayout.NewReference(layout, img.Tags[0])
		if err != nil {
			t.Fatal(err)
		}
		// Copying into a docker-layout archive decompresses every layer and checks it
		// against the config's diffIDs.
		out, err := archive.Create(filepath.Join(dir, fmt.Sprintf("check%d.tar", i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dcopy.Save(ctx, out, []dcopy.Source{{Ref: ref, Tags: []distref.NamedTagged{}}}, dcopy.WithSystemContext(sys)); err != nil {
			t.Errorf("reading back %s: %v", img.Tags[0], err)
		}
		_ = out.Close()
		src, err := ref.NewImage(ctx, sys)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range src.LayerInfos() {
			if l.MediaType != imgspecv1.MediaTypeImageLayerGzip {
				t.Errorf("%s: layer %s has media type %q, want %q", img.Tags[0], l.Digest, l.MediaType, imgspecv1.MediaTypeImageLayerGzip)
			}
		}
		_ = src.Close()
	}
}
