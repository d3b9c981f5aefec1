package archive_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/directory"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/reference"
)

const fixtureDir = "../testdata/archives"

// expectedImage is one image of testdata/archives/expected.json, computed from the tar
// contents when the fixtures were made (scripts/fixtures-expected.py).
type expectedImage struct {
	Index  int      `json:"index"`
	Tags   []string `json:"tags"`
	ID     string   `json:"id"`
	Layers int      `json:"layers"`
	Size   int64    `json:"size"`
}

type expectedFile struct {
	File   string          `json:"file"`
	Images []expectedImage `json:"images"`
}

func loadExpected(t *testing.T) []expectedFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var files []expectedFile
	if err := json.Unmarshal(data, &files); err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("expected.json lists no fixture")
	}
	return files
}

func listing(a *archive.ReadableArchive) []expectedImage {
	var got []expectedImage
	for _, img := range a.Images() {
		e := expectedImage{Index: img.Index, Tags: []string{}, ID: img.ID.String(), Layers: len(img.Layers), Size: img.Size()}
		for _, t := range img.Tags {
			e.Tags = append(e.Tags, t.String())
		}
		got = append(got, e)
	}
	return got
}

// TestFixturesList opens every real-tool fixture (plain and whole-archive compressed) and
// compares the listing with expected.json.
func TestFixturesList(t *testing.T) {
	for _, f := range loadExpected(t) {
		t.Run(f.File, func(t *testing.T) {
			a, err := archive.Open(filepath.Join(fixtureDir, f.File), archive.WithTempDir(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			got := listing(a)
			if !slices.EqualFunc(got, f.Images, func(a, b expectedImage) bool {
				return a.Index == b.Index && a.ID == b.ID && a.Layers == b.Layers && a.Size == b.Size && slices.Equal(a.Tags, b.Tags)
			}) {
				t.Errorf("listing differs\n got: %+v\nwant: %+v", got, f.Images)
			}
		})
	}
}

// TestFixturesVerify checks every fixture verifies without errors, which reads and hashes
// every layer (decompressing compressed ones) and config.
func TestFixturesVerify(t *testing.T) {
	for _, f := range loadExpected(t) {
		t.Run(f.File, func(t *testing.T) {
			a, err := archive.Open(filepath.Join(fixtureDir, f.File), archive.WithTempDir(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			for _, p := range a.Verify(context.Background(), 2) {
				if !p.Warning {
					t.Errorf("verify: %v", p)
				}
			}
		})
	}
}

func policyContext(t *testing.T) *signature.PolicyContext {
	t.Helper()
	pc, err := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Destroy() })
	return pc
}

// TestCopyEveryImage copies every image of every fixture with containers/image's copy.Image
// into an OCI layout and a dir: destination, then checks the destination has the image's
// config (by ID) and the same number of layers.
func TestCopyEveryImage(t *testing.T) {
	ctx := context.Background()
	pc := policyContext(t)
	for _, f := range loadExpected(t) {
		t.Run(f.File, func(t *testing.T) {
			a, err := archive.Open(filepath.Join(fixtureDir, f.File), archive.WithTempDir(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			refs := a.References()
			if len(refs) != len(f.Images) {
				t.Fatalf("got %d references, want %d", len(refs), len(f.Images))
			}
			ociDir := t.TempDir()
			for i, src := range refs {
				want := f.Images[i]
				ociRef, err := layout.NewReference(ociDir, "img"+string(rune('a'+i)))
				if err != nil {
					t.Fatal(err)
				}
				dirRef, err := directory.NewReference(filepath.Join(t.TempDir(), "dir"))
				if err != nil {
					t.Fatal(err)
				}
				for _, dst := range []types.ImageReference{ociRef, dirRef} {
					if _, err := copy.Image(ctx, pc, dst, src, &copy.Options{}); err != nil {
						t.Fatalf("copy @%d to %s: %v", i, dst.Transport().Name(), err)
					}
					checkCopied(t, ctx, dst, want)
				}
			}
		})
	}
}

// checkCopied reads the image back from dst and compares config digest and layer count.
func checkCopied(t *testing.T, ctx context.Context, dst types.ImageReference, want expectedImage) {
	t.Helper()
	src, err := dst.NewImageSource(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	raw, mt, err := src.GetManifest(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.FromBlob(raw, mt)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.ConfigInfo().Digest.String(); got != want.ID {
		t.Errorf("%s: config %s, want %s", dst.Transport().Name(), got, want.ID)
	}
	if got := len(m.LayerInfos()); got != want.Layers {
		t.Errorf("%s: %d layers, want %d", dst.Transport().Name(), got, want.Layers)
	}
}

// TestSelectors picks images of a real multi-image archive by tag (short and full), index,
// full ID and ID prefix, and checks errors for no selector, unknown tags and bad indexes.
func TestSelectors(t *testing.T) {
	a, err := archive.Open(filepath.Join(fixtureDir, "docker20-save-multi.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	imgs := a.Images()
	if len(imgs) != 3 {
		t.Fatalf("got %d images, want 3", len(imgs))
	}
	tests := []struct {
		name    string
		sel     string
		want    int
		wantErr error
	}{
		// Docker writes "busybox-like:1"; the full name must match.
		{"full name of shortened tag", "docker.io/library/busybox-like:1", 1, nil},
		{"short name", "busybox-like:1", 1, nil},
		{"second tag of an image", "example.com/darc/a:latest", 0, nil},
		// A name without a tag means :latest.
		{"implicit latest", "example.com/darc/a", 0, nil},
		{"index", "@2", 2, nil},
		{"full ID", "@" + imgs[2].ID.String(), 2, nil},
		{"ID prefix", "@" + imgs[1].ID.Encoded()[:12], 1, nil},
		{"unknown tag", "example.com/nope:1", 0, archive.ErrImageNotFound},
		{"index out of range", "@3", 0, archive.ErrImageNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := reference.ParseSelector(tc.sel)
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.Select(sel)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Index != tc.want {
				t.Errorf("got @%d, want @%d", got.Index, tc.want)
			}
		})
	}
	t.Run("no selector with several images", func(t *testing.T) {
		_, err := a.Select(reference.Selector{})
		if !errors.Is(err, archive.ErrAmbiguous) {
			t.Fatalf("got %v, want ErrAmbiguous", err)
		}
	})
}

// TestStringReferenceCopy goes through the string syntax: a reference parsed from
// "docker-archive:PATH:NAME:TAG" opens the archive itself and copies like a handle does.
func TestStringReferenceCopy(t *testing.T) {
	ctx := context.Background()
	src, err := archive.ParseReference("docker-archive:" + filepath.Join(fixtureDir, "podman-save-m.tar") + ":localhost/c:v1")
	if err != nil {
		t.Fatal(err)
	}
	dst, err := layout.NewReference(t.TempDir(), "c")
	if err != nil {
		t.Fatal(err)
	}
	manifestBytes, err := copy.Image(ctx, policyContext(t), dst, src, &copy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.FromBlob(manifestBytes, manifest.GuessMIMEType(manifestBytes))
	if err != nil {
		t.Fatal(err)
	}
	want := digest.Digest("sha256:b2aca20d3f23c5c9c5a53aacde19bdc729a3d6ca31dd5188239f76604bf0f7d0")
	if got := m.ConfigInfo().Digest; got != want {
		t.Errorf("config %s, want %s", got, want)
	}
}
