//go:build linux

package benchwork

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	imgspecs "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/darc-dev/darc/internal/archivetest"
)

// Version names the workload. Change it whenever the generated content changes, so that a
// cache built by an older version is not used.
const Version = "v1"

// MiB is 2^20 bytes.
const MiB = 1 << 20

// layerSpec is one layer to generate.
type layerSpec struct {
	name    string
	seed    uint64
	size    int64 // bytes of file content; the tar is slightly larger
	profile profile
}

// imageSpec is one image of the layout: base layers and its own app layers.
type imageSpec struct {
	ref    string // the layout's ref name
	tag    string // the tag it gets in archives
	layers []int  // indexes into the layer list, base first
}

// spec is the workload: 3 base layers of a root file system (150, 60 and 20 MiB) shared by
// 12 images, each with 2 or 3 app layers of 1 to 40 MiB, about 1.2 GB of layer content in
// all.
func spec() ([]layerSpec, []imageSpec) {
	layers := []layerSpec{
		{name: "base-os", seed: 1, size: 150 * MiB, profile: profile{text: 0.65, binary: 0.25, asset: 0.10}},
		{name: "base-runtime", seed: 2, size: 60 * MiB, profile: profile{text: 0.55, binary: 0.35, asset: 0.10, root: "usr/local"}},
		{name: "base-tools", seed: 3, size: 20 * MiB, profile: profile{text: 0.70, binary: 0.25, asset: 0.05, root: "opt/tools"}},
	}
	var images []imageSpec
	for i := range 12 {
		root := fmt.Sprintf("opt/app-%02d", i)
		img := imageSpec{
			ref:    fmt.Sprintf("app-%02d", i),
			tag:    fmt.Sprintf("example.com/bench/app-%02d:1", i),
			layers: []int{0, 1, 2},
		}
		// Dependencies (libraries, mostly text and some jars), the application's own code and
		// assets, and for two images in three a small layer of configuration.
		apps := []layerSpec{
			{name: fmt.Sprintf("app-%02d-deps", i), size: int64(40-i%3) * MiB, profile: profile{text: 0.60, binary: 0.20, asset: 0.20, root: root + "/deps"}},
			{name: fmt.Sprintf("app-%02d-code", i), size: int64(30+(i*7)%11) * MiB, profile: profile{text: 0.70, binary: 0.20, asset: 0.10, root: root}},
		}
		if i%3 != 2 {
			apps = append(apps, layerSpec{name: fmt.Sprintf("app-%02d-conf", i), size: int64(1+(i*11)%15) * MiB, profile: profile{text: 0.9, binary: 0.05, asset: 0.05, root: root + "/etc"}})
		}
		for _, l := range apps {
			l.seed = uint64(100 + len(layers))
			img.layers = append(img.layers, len(layers))
			layers = append(layers, l)
		}
		images = append(images, img)
	}
	return layers, images
}

// Workload is the generated OCI image layout and what is known about it.
type Workload struct {
	// Dir is the cache directory holding the layout and the archives made from it.
	Dir string `json:"-"`
	// Layout is the OCI image layout directory (for oci:Layout:REF references).
	Layout string `json:"-"`
	// Images are the layout's images in order.
	Images []Image `json:"images"`
	// Layers are the unique layers, in the order the images first use them.
	Layers []Layer `json:"layers"`
	// Uncompressed and Compressed are the total sizes of the unique layers.
	Uncompressed int64 `json:"uncompressed"`
	Compressed   int64 `json:"compressed"`
}

// Image is one image of the workload.
type Image struct {
	Ref      string          `json:"ref"` // ref name in the layout
	Tag      string          `json:"tag"` // tag given to it in archives
	Manifest digest.Digest   `json:"manifest"`
	Config   digest.Digest   `json:"config"`
	Layers   []digest.Digest `json:"layers"` // compressed digests, base first
}

// Layer is one unique layer.
type Layer struct {
	Name             string        `json:"name"`
	Digest           digest.Digest `json:"digest"` // of the gzip blob
	DiffID           digest.Digest `json:"diffID"` // of the tar
	Size             int64         `json:"size"`
	UncompressedSize int64         `json:"uncompressedSize"`
}

// Dir is the cache directory: $DARC_BENCH_DIR, or darc-bench-<Version> in os.TempDir().
func Dir() string {
	if d := os.Getenv("DARC_BENCH_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "darc-bench-"+Version)
}

const summaryFile = "workload.json"

// Ensure returns the workload, generating it into Dir() first if it is not there. Other
// processes doing the same wait for it (a lock file serializes them). logf, if not nil,
// receives progress messages.
func Ensure(ctx context.Context, logf func(format string, args ...any)) (*Workload, error) {
	dir := Dir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lock(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if w, err := load(dir); err == nil {
		return w, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if logf != nil {
		logf("benchwork: generating the OCI layout (about 1.2 GB of layers, gzip) in %s", dir)
	}
	return generate(ctx, dir)
}

func load(dir string) (*Workload, error) {
	data, err := os.ReadFile(filepath.Join(dir, summaryFile))
	if err != nil {
		return nil, err
	}
	w := &Workload{}
	if err := json.Unmarshal(data, w); err != nil {
		return nil, fmt.Errorf("benchwork: %s: %w", summaryFile, err)
	}
	w.Dir, w.Layout = dir, filepath.Join(dir, "layout")
	return w, nil
}

// lock takes an exclusive lock on dir/lock, waiting for it.
func lock(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("benchwork: locking %s: %w", f.Name(), err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}

// generate writes the layout into dir/layout (through a temp directory renamed into place)
// and the summary file last.
func generate(ctx context.Context, dir string) (*Workload, error) {
	specs, images := spec()
	tmp := filepath.Join(dir, "layout.tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	blobs := filepath.Join(tmp, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	layers := make([]Layer, len(specs))
	voc := newVocabulary(42)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.NumCPU())
	// Largest first, so that the big base layer does not finish last alone.
	order := make([]int, len(specs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return int(specs[b].size - specs[a].size) })
	for _, i := range order {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			l, err := writeLayerBlob(blobs, specs[i], voc)
			if err != nil {
				return fmt.Errorf("benchwork: layer %s: %w", specs[i].name, err)
			}
			layers[i] = l
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	w := &Workload{Dir: dir, Layout: filepath.Join(dir, "layout"), Layers: layers}
	for _, l := range layers {
		w.Uncompressed += l.UncompressedSize
		w.Compressed += l.Size
	}
	index := imgspecv1.Index{Versioned: imgspecs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex}
	for _, is := range images {
		var diffIDs []digest.Digest
		man := imgspecv1.Manifest{Versioned: imgspecs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageManifest}
		img := Image{Ref: is.ref, Tag: is.tag}
		for _, li := range is.layers {
			l := layers[li]
			diffIDs = append(diffIDs, l.DiffID)
			man.Layers = append(man.Layers, imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageLayerGzip, Digest: l.Digest, Size: l.Size})
			img.Layers = append(img.Layers, l.Digest)
		}
		config := archivetest.GenerateConfig(diffIDs)
		cd, err := putBlob(blobs, config)
		if err != nil {
			return nil, err
		}
		man.Config = imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageConfig, Digest: cd, Size: int64(len(config))}
		mb, err := json.Marshal(man)
		if err != nil {
			return nil, err
		}
		md, err := putBlob(blobs, mb)
		if err != nil {
			return nil, err
		}
		img.Manifest, img.Config = md, cd
		w.Images = append(w.Images, img)
		index.Manifests = append(index.Manifests, imgspecv1.Descriptor{
			MediaType:   imgspecv1.MediaTypeImageManifest,
			Digest:      md,
			Size:        int64(len(mb)),
			Annotations: map[string]string{imgspecv1.AnnotationRefName: is.ref},
		})
	}
	ib, err := json.Marshal(index)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "index.json"), ib, 0o644); err != nil {
		return nil, err
	}
	lb, _ := json.Marshal(imgspecv1.ImageLayout{Version: imgspecv1.ImageLayoutVersion})
	if err := os.WriteFile(filepath.Join(tmp, imgspecv1.ImageLayoutFile), lb, 0o644); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(w.Layout); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, w.Layout); err != nil {
		return nil, err
	}
	sb, err := json.MarshalIndent(w, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, summaryFile), sb); err != nil {
		return nil, err
	}
	return w, nil
}

// writeLayerBlob generates one layer, gzip-compressed at the default level as registries
// serve layers, into blobs/<digest>, and returns its digests and sizes.
func writeLayerBlob(blobs string, s layerSpec, voc *vocabulary) (Layer, error) {
	f, err := os.CreateTemp(blobs, ".tmp-"+s.name+"-*")
	if err != nil {
		return Layer{}, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	comp := &hashCounter{h: sha256.New()}
	zw, err := gzip.NewWriterLevel(io.MultiWriter(bw, comp), gzip.DefaultCompression)
	if err != nil {
		return Layer{}, err
	}
	raw := &hashCounter{h: sha256.New()}
	gen := newGenerator(s.seed, voc)
	if err := gen.writeLayer(io.MultiWriter(zw, raw), s.size, s.profile); err != nil {
		return Layer{}, err
	}
	if err := zw.Close(); err != nil {
		return Layer{}, err
	}
	if err := bw.Flush(); err != nil {
		return Layer{}, err
	}
	if err := f.Close(); err != nil {
		return Layer{}, err
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(comp.h.Sum(nil)))
	if err := os.Rename(f.Name(), filepath.Join(blobs, d.Encoded())); err != nil {
		return Layer{}, err
	}
	ok = true
	return Layer{
		Name:             s.name,
		Digest:           d,
		DiffID:           digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(raw.h.Sum(nil))),
		Size:             comp.n,
		UncompressedSize: raw.n,
	}, nil
}

type hashCounter struct {
	h hash.Hash
	n int64
}

func (c *hashCounter) Write(p []byte) (int, error) {
	c.h.Write(p)
	c.n += int64(len(p))
	return len(p), nil
}

func putBlob(blobs string, data []byte) (digest.Digest, error) {
	d := digest.FromBytes(data)
	return d, os.WriteFile(filepath.Join(blobs, d.Encoded()), data, 0o644)
}

// writeFileAtomic writes data to a temp file beside path and renames it into place.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}
