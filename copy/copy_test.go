package copy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspecs "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/testtools"
)

// TestSharedBlobUploadedOnce loads an archive whose images share layers into a registry, each
// image in its own repository: every blob must be uploaded once; other repositories get it by
// cross-repository mount.
func TestSharedBlobUploadedOnce(t *testing.T) {
	reg := testtools.StartRegistry(t, "")
	a, err := archive.Open(filepath.Join(fixtures, "podman-save-m.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dest, err := dcopy.ParseDestination("docker://" + reg.Addr + "/once")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dcopy.Load(context.Background(), a, dest, nil, dcopy.WithSystemContext(insecureSys()), dcopy.WithParallel(3)); err != nil {
		t.Fatal(err)
	}
	uploads, mounts := reg.BlobUploads(t)
	if len(uploads) == 0 {
		t.Fatal("the registry log shows no blob upload; cannot check")
	}
	for d, n := range uploads {
		if n != 1 {
			t.Errorf("blob %s uploaded %d times, want once", d, n)
		}
	}
	// base1 is in all three images and base2 in two: three mounts instead of uploads.
	total := 0
	for d, n := range mounts {
		total += n
		if uploads[d] != 1 {
			t.Errorf("blob %s mounted but never uploaded", d)
		}
	}
	if total != 3 {
		t.Errorf("%d cross-repository mounts, want 3", total)
	}
}

// TestSaveKeepsGoingAfterAFailure saves three sources, the middle one missing: the others are
// saved, the error names the failing one, and the archive can be committed with the rest.
func TestSaveKeepsGoingAfterAFailure(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "out.tar")
	w, err := archive.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var sources []dcopy.Source
	for _, s := range []string{
		"docker-archive:" + filepath.Join(fixtures, "podman-save-m.tar") + ":@0",
		"oci:" + filepath.Join(t.TempDir(), "no-such-layout") + ":x",
		"docker-archive:" + filepath.Join(fixtures, "podman-save-m.tar") + ":@2",
	} {
		ref, err := dcopy.ParseReference(s)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, dcopy.Source{Ref: ref})
	}
	results, err := dcopy.Save(ctx, w, sources)
	if err == nil {
		t.Fatal("Save with a missing source succeeded")
	}
	if results[0].Err != nil || results[2].Err != nil || results[1].Err == nil {
		t.Fatalf("results: %+v", results)
	}
	if err := w.Commit(); err != nil {
		t.Fatalf("committing the images that succeeded: %v", err)
	}
	a, err := archive.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if n := len(a.Images()); n != 2 {
		t.Errorf("archive holds %d images, want 2", n)
	}
}

// TestProgressNeverBlocks loads an archive of many images while the progress consumer is stuck
// on its first event, with more events than the 1,024-event channel that used to carry them
// held: every image must still be copied, Load must then wait for the consumer (it is never called after Load returns), and
// once released the consumer must see each image start once and finish once, in that order.
// The waits are bounded so that a copy stalled behind the consumer fails the test instead of
// hanging it; the bound is a deadlock detector, not a speed requirement.
func TestProgressNeverBlocks(t *testing.T) {
	const images = 260 // five events each that are never dropped: start, two layers, config, done
	const bound = 60 * time.Second
	path := filepath.Join(t.TempDir(), "many.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archivetest.BigArchive(f, images, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	out := t.TempDir() // dir: wants the directory to exist
	dest, err := dcopy.ParseDestination("dir:" + out)
	if err != nil {
		t.Fatal(err)
	}

	release := make(chan struct{})
	var mu sync.Mutex
	var events []dcopy.Event
	stuck := func(e dcopy.Event) {
		<-release
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}
	type loaded struct {
		results []dcopy.Result
		err     error
	}
	finished := make(chan loaded, 1)
	go func() {
		results, err := dcopy.Load(context.Background(), a, dest, nil, dcopy.WithProgress(stuck))
		finished <- loaded{results, err}
	}()

	// Every image is written (dir: puts its manifest last) while the consumer is stuck.
	deadline := time.Now().Add(bound)
	for written := 0; ; time.Sleep(20 * time.Millisecond) {
		for written < images {
			if _, err := os.Stat(filepath.Join(out, fmt.Sprint(written), "manifest.json")); err != nil {
				break
			}
			written++
		}
		if written == images {
			break
		}
		select {
		case l := <-finished:
			t.Fatalf("Load returned (err %v) before its stuck consumer got the events", l.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, images up to %d of %d written: the copy waits for the progress consumer", bound, written, images)
		}
	}
	select {
	case l := <-finished:
		t.Fatalf("Load returned (err %v) before its stuck consumer got the events", l.err)
	default:
	}
	close(release)
	var l loaded
	select {
	case l = <-finished:
	case <-time.After(bound):
		t.Fatalf("Load did not return within %v of releasing its consumer", bound)
	}
	if l.err != nil {
		t.Fatal(l.err)
	}
	if len(l.results) != images {
		t.Fatalf("%d results, want %d", len(l.results), images)
	}

	mu.Lock()
	defer mu.Unlock()
	checkImageEvents(t, events, images)
}

// checkImageEvents checks that each of images images has exactly one ImageStarted, then
// exactly one ImageDone, with its blob events between them, and no failure or skip; and that
// more than 1,024 events were delivered that may never be dropped (the old fixed buffer).
func checkImageEvents(t *testing.T, events []dcopy.Event, images int) {
	t.Helper()
	const (
		notStarted = iota
		running
		finished
	)
	state := make([]int, images)
	kept := 0
	for n, e := range events {
		if e.Image < 0 || e.Image >= images {
			t.Fatalf("event %d: %+v: image out of range", n, e)
		}
		if e.Kind != dcopy.BlobProgress {
			kept++
		}
		switch st := &state[e.Image]; e.Kind {
		case dcopy.ImageStarted:
			if *st != notStarted {
				t.Errorf("event %d: image %d started again", n, e.Image)
			}
			*st = running
		case dcopy.BlobProgress, dcopy.BlobDone:
			if *st != running {
				t.Errorf("event %d: blob event of image %d outside its start and end", n, e.Image)
			}
		case dcopy.ImageDone:
			if *st != running {
				t.Errorf("event %d: image %d done without a start, or twice", n, e.Image)
			}
			*st = finished
		default:
			t.Errorf("event %d: image %d: unexpected %+v", n, e.Image, e)
		}
	}
	for i, st := range state {
		if st != finished {
			t.Errorf("image %d: never reported done", i)
		}
	}
	t.Logf("%d events, %d of them never dropped", len(events), kept)
	if kept <= 1024 {
		t.Errorf("only %d start, blob-done and done events: the test no longer outgrows a 1,024-event buffer", kept)
	}
}

// writeMultiPlatformLayout writes an OCI layout whose ref "multi" is an image index of two
// single-layer images, linux/amd64 and linux/arm64, and returns their config digests.
func writeMultiPlatformLayout(t *testing.T, dir string) map[string]digest.Digest {
	t.Helper()
	put := func(data []byte) imgspecv1.Descriptor {
		d := digest.FromBytes(data)
		p := filepath.Join(dir, "blobs", "sha256", d.Encoded())
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return imgspecv1.Descriptor{Digest: d, Size: int64(len(data))}
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	configs := map[string]digest.Digest{}
	var manifests []imgspecv1.Descriptor
	for i, arch := range []string{"amd64", "arm64"} {
		layer := archivetest.Layer(int64(40+i), 1, 100)
		ld := put(layer)
		ld.MediaType = imgspecv1.MediaTypeImageLayer
		cfg := mustJSON(imgspecv1.Image{Platform: imgspecv1.Platform{OS: "linux", Architecture: arch},
			RootFS: imgspecv1.RootFS{Type: "layers", DiffIDs: []digest.Digest{ld.Digest}}})
		cd := put(cfg)
		cd.MediaType = imgspecv1.MediaTypeImageConfig
		configs[arch] = cd.Digest
		md := put(mustJSON(imgspecv1.Manifest{Versioned: imgspecs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageManifest,
			Config: cd, Layers: []imgspecv1.Descriptor{ld}}))
		md.MediaType = imgspecv1.MediaTypeImageManifest
		md.Platform = &imgspecv1.Platform{OS: "linux", Architecture: arch}
		manifests = append(manifests, md)
	}
	id := put(mustJSON(imgspecv1.Index{Versioned: imgspecs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex, Manifests: manifests}))
	id.MediaType = imgspecv1.MediaTypeImageIndex
	id.Annotations = map[string]string{imgspecv1.AnnotationRefName: "multi"}
	top := imgspecv1.Index{Versioned: imgspecs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex, Manifests: []imgspecv1.Descriptor{id}}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), mustJSON(top), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return configs
}

// TestPlatformChoice saves from a multi-platform source: the host's platform by default
// (amd64 here), another with WithPlatform.
func TestPlatformChoice(t *testing.T) {
	layout := t.TempDir()
	configs := writeMultiPlatformLayout(t, layout)
	src, err := dcopy.ParseReference("oci:" + layout + ":multi")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts []dcopy.Option
		want digest.Digest
	}{
		{"host default", nil, configs["amd64"]},
		{"linux/arm64", []dcopy.Option{dcopy.WithPlatform(dcopy.Platform{OS: "linux", Architecture: "arm64"})}, configs["arm64"]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := archive.Create(filepath.Join(t.TempDir(), "out.tar"))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			results, err := dcopy.Save(context.Background(), w, []dcopy.Source{{Ref: src, Tags: nil}}, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if results[0].ImageID != tc.want {
				t.Errorf("saved %s, want %s", results[0].ImageID, tc.want)
			}
		})
	}
}

// TestParseDestination covers the destination syntax and its errors.
func TestParseDestination(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"docker://127.0.0.1:5000", "docker://127.0.0.1:5000", false},
		{"docker://mirror.local:5000/team/", "docker://mirror.local:5000/team", false},
		{"oci:./layout", "oci:./layout", false},
		{"dir:/tmp/x", "dir:/tmp/x", false},
		// A load destination takes names from the images, not from the string.
		{"oci:./layout:name", "", true},
		{"docker:127.0.0.1:5000", "", true},
		{"docker://", "", true},
		{"docker://host:5000/UPPER", "", true},
		{"docker-archive:x.tar", "", true},
		{"nowhere", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			d, err := dcopy.ParseDestination(tc.in)
			if tc.wantErr {
				if !errors.Is(err, dcopy.ErrInvalidDestination) {
					t.Fatalf("got %v, want ErrInvalidDestination", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(d); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestLoadOCIKeepsEveryRef loads many images into one OCI layout with high parallelism:
// every tag must be in index.json afterwards.
func TestLoadOCIKeepsEveryRef(t *testing.T) {
	var imgs []archivetest.Image
	var want []string
	for i := 0; i < 8; i++ {
		tag := fmt.Sprintf("example.com/many/img%d:1", i)
		imgs = append(imgs, archivetest.Image{Tags: []string{tag}, Layers: [][]byte{archivetest.Layer(int64(100+i), 1, 200)}})
		want = append(want, tag)
	}
	data, err := archivetest.BuildBytes(imgs, archivetest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "many.tar")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	layout := filepath.Join(t.TempDir(), "layout")
	dest, err := dcopy.ParseDestination("oci:" + layout)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dcopy.Load(context.Background(), a, dest, nil, dcopy.WithParallel(8)); err != nil {
		t.Fatal(err)
	}
	var index imgspecv1.Index
	data, err = os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, d := range index.Manifests {
		got[d.Annotations[imgspecv1.AnnotationRefName]] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("index.json lacks %q (has %d refs)", w, len(index.Manifests))
		}
	}
}
