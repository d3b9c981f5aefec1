//go:build linux

package benchwork

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"

	imgspecs "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"
)

// MultiLayoutName is the OCI layout of the workload's images as 3-platform indexes.
const MultiLayoutName = "multi-layout"

// multiPlatforms are the platforms of each index: the workload's own image (linux/amd64,
// its manifest and config as they are) first, then two variants.
var multiPlatforms = []imgspecv1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64", Variant: "v8"},
	{OS: "linux", Architecture: "arm", Variant: "v7"},
}

// MultiLayout returns the path of an OCI layout holding each workload image as an OCI index
// of 3 platforms (linux/amd64, linux/arm64/v8, linux/arm/v7), under the image's ref name,
// making it if needed. The variants share the image's layers and differ in their configs
// (architecture, variant), so a save of the indexes moves the same layer bytes as a save of
// the images: what it measures is the cost of the lists (3 manifests and configs per image,
// a blob reached from 3 manifests read once). Layer blobs are hard links to the layout's.
func (w *Workload) MultiLayout(ctx context.Context) (string, error) {
	return w.derived(ctx, MultiLayoutName, w.writeMultiLayout)
}

// MultiSourceRef is the oci: reference to image i's index in the layout MultiLayout made.
func (w *Workload) MultiSourceRef(dir string, i int) (types.ImageReference, error) {
	return layout.NewReference(dir, w.Images[i].Ref)
}

func (w *Workload) writeMultiLayout(path string) error {
	tmp := path + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	blobs := filepath.Join(tmp, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	src := filepath.Join(w.Layout, "blobs", "sha256")
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Link(filepath.Join(src, e.Name()), filepath.Join(blobs, e.Name())); err != nil {
			return err
		}
	}
	top := imgspecv1.Index{Versioned: imgspecs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex}
	for _, img := range w.Images {
		desc, err := w.writeIndex(blobs, img)
		if err != nil {
			return err
		}
		desc.Annotations = map[string]string{imgspecv1.AnnotationRefName: img.Ref}
		top.Manifests = append(top.Manifests, desc)
	}
	if err := writeJSON(filepath.Join(tmp, "index.json"), top); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(tmp, imgspecv1.ImageLayoutFile), imgspecv1.ImageLayout{Version: imgspecv1.ImageLayoutVersion}); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeIndex writes img's variants and its index into blobs and describes the index.
func (w *Workload) writeIndex(blobs string, img Image) (imgspecv1.Descriptor, error) {
	var man imgspecv1.Manifest
	if err := readJSON(filepath.Join(blobs, img.Manifest.Encoded()), &man); err != nil {
		return imgspecv1.Descriptor{}, err
	}
	var cfg map[string]any
	if err := readJSON(filepath.Join(blobs, img.Config.Encoded()), &cfg); err != nil {
		return imgspecv1.Descriptor{}, err
	}
	own, err := os.Stat(filepath.Join(blobs, img.Manifest.Encoded()))
	if err != nil {
		return imgspecv1.Descriptor{}, err
	}
	index := imgspecv1.Index{Versioned: imgspecs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex}
	index.Manifests = append(index.Manifests, imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageManifest, Digest: img.Manifest, Size: own.Size(), Platform: &multiPlatforms[0]})
	for _, p := range multiPlatforms[1:] {
		cfg["architecture"], cfg["os"] = p.Architecture, p.OS
		if p.Variant != "" {
			cfg["variant"] = p.Variant
		}
		cb, err := json.Marshal(cfg)
		if err != nil {
			return imgspecv1.Descriptor{}, err
		}
		cd, err := putBlob(blobs, cb)
		if err != nil {
			return imgspecv1.Descriptor{}, err
		}
		man.Config = imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageConfig, Digest: cd, Size: int64(len(cb))}
		mb, err := json.Marshal(man)
		if err != nil {
			return imgspecv1.Descriptor{}, err
		}
		md, err := putBlob(blobs, mb)
		if err != nil {
			return imgspecv1.Descriptor{}, err
		}
		index.Manifests = append(index.Manifests, imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageManifest, Digest: md, Size: int64(len(mb)), Platform: &p})
	}
	ib, err := json.Marshal(index)
	if err != nil {
		return imgspecv1.Descriptor{}, err
	}
	id, err := putBlob(blobs, ib)
	return imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageIndex, Digest: id, Size: int64(len(ib))}, err
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
