package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/reference"
)

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "a.tar")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGeneratedLayouts builds the same images in every layout real tools write (and the
// variants hand-made archives have), opens each, and checks images, tags, IDs, diffIDs and
// stored sizes against what the generator says, then verifies and copies every image.
func TestGeneratedLayouts(t *testing.T) {
	variants := archivetest.Variants()
	ctx := context.Background()
	pc := policyContext(t)
	for _, v := range variants {
		t.Run(v.Name, func(t *testing.T) {
			images := archivetest.SharedImages()
			data, err := archivetest.BuildBytes(images, v.Opts)
			if err != nil {
				t.Skipf("generator does not support this variant: %v", err)
			}
			want := archivetest.Expect(images, v.Opts)
			if v.Opts.Layout == archivetest.Legacy {
				// A legacy archive has no image order of its own: the reader lists tagged
				// images by tag, then untagged ones.
				slices.SortStableFunc(want, func(a, b archivetest.ExpectedImage) int {
					if (len(a.Tags) == 0) != (len(b.Tags) == 0) {
						return len(b.Tags) - len(a.Tags)
					}
					return strings.Compare(strings.Join(a.Tags, ","), strings.Join(b.Tags, ","))
				})
			}
			a, err := archive.Open(writeTemp(t, data), archive.WithTempDir(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			got := a.Images()
			if len(got) != len(want) {
				t.Fatalf("got %d images, want %d", len(got), len(want))
			}
			for i, w := range want {
				d, err := a.Inspect(mustIndex(t, i))
				if err != nil {
					t.Fatalf("inspect @%d: %v", i, err)
				}
				var tags []string
				for _, tg := range d.Tags {
					tags = append(tags, tg.String())
				}
				if !slices.Equal(tags, w.Tags) && !(len(tags) == 0 && len(w.Tags) == 0) {
					t.Errorf("@%d tags %q, want %q", i, tags, w.Tags)
				}
				// The generator leaves ID empty where the reader computes it (legacy).
				if w.ID != "" && d.ID != w.ID {
					t.Errorf("@%d ID %s, want %s", i, d.ID, w.ID)
				}
				var diffIDs []digest.Digest
				for _, l := range d.Layers {
					diffIDs = append(diffIDs, l.DiffID)
				}
				if !slices.Equal(diffIDs, w.DiffIDs) {
					t.Errorf("@%d diffIDs %v, want %v", i, diffIDs, w.DiffIDs)
				}
				var sizes []int64
				for _, l := range got[i].Layers {
					sizes = append(sizes, l.Size)
				}
				if !slices.Equal(sizes, w.Sizes) {
					t.Errorf("@%d stored sizes %v, want %v", i, sizes, w.Sizes)
				}
			}
			for _, p := range a.Verify(ctx, 2) {
				if !p.Warning {
					t.Errorf("verify: %v", p)
				}
			}
			dir := t.TempDir()
			for i, src := range a.References() {
				dst, err := layout.NewReference(dir, "i"+string(rune('0'+i)))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := copy.Image(ctx, pc, dst, src, &copy.Options{}); err != nil {
					t.Fatalf("copy @%d: %v", i, err)
				}
			}
		})
	}
}

func mustIndex(t *testing.T, i int) reference.Selector {
	t.Helper()
	s, err := reference.IndexSelector(i)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOwnManifestPreserved checks that for Docker 25+ archives the image source serves the
// manifest stored in the archive's OCI layout byte for byte.
func TestOwnManifestPreserved(t *testing.T) {
	images := archivetest.SharedImages()
	data, err := archivetest.BuildBytes(images, archivetest.Options{Layout: archivetest.Docker25})
	if err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(writeTemp(t, data))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for i := range images {
		d, err := a.Inspect(mustIndex(t, i))
		if err != nil {
			t.Fatal(err)
		}
		if !d.OwnManifest {
			t.Fatalf("@%d: manifest was built, want the archive's own", i)
		}
		md := digest.FromBytes(d.Manifest)
		blob := "blobs/sha256/" + md.Encoded()
		if !bytes.Contains(data, []byte(blob)) {
			t.Errorf("@%d: served manifest %s is not a blob of the archive", i, md)
		}
	}
}

// TestEdgeArchives opens the hand-made edge cases and checks each gives the right image or
// the right error.
func TestEdgeArchives(t *testing.T) {
	want := archivetest.EdgeExpected()
	tests := []struct {
		name    string
		data    []byte
		wantErr error // nil: the edge image must read back correctly
	}{
		{"symlink chain", archivetest.SymlinkChain(), nil},
		{"hardlink layer", archivetest.HardlinkLayer(), nil},
		{"duplicate member, last wins", archivetest.DuplicateMember(), nil},
		{"manifest path with .. inside the root", archivetest.ManifestDotDotInside(), nil},
		{"tar with BZh member name", archivetest.BZhMember(), nil},
		{"escaping symlink", archivetest.EscapingSymlink(), archive.ErrBadLink},
		{"symlink cycle", archivetest.SymlinkCycle(), archive.ErrBadLink},
		{"long chain", archivetest.LongChain(40), nil},
		{"too long a chain", archivetest.LongChain(85), archive.ErrBadLink},
		{"manifest path leaving the root", archivetest.ManifestDotDot(), archive.ErrInsecurePath},
		{"absolute manifest path", archivetest.ManifestAbsolute(), nil},
		{"not a tar", archivetest.NotATar(), archive.ErrNotDockerArchive},
		{"container export", archivetest.ExportedFS(), archive.ErrNotDockerArchive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := openAndRead(t, tc.data, want)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("got %v, want the image", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// openAndRead opens data, checks the only image against want and reads every blob.
func openAndRead(t *testing.T, data []byte, want archivetest.ExpectedImage) error {
	t.Helper()
	a, err := archive.Open(writeTemp(t, data))
	if err != nil {
		return err
	}
	defer a.Close()
	d, err := a.Inspect(reference.Selector{})
	if err != nil {
		return err
	}
	if d.ID != want.ID {
		t.Errorf("ID %s, want %s", d.ID, want.ID)
	}
	ctx := context.Background()
	ref, err := a.Reference(reference.Selector{})
	if err != nil {
		return err
	}
	src, err := ref.NewImageSource(ctx, nil)
	if err != nil {
		return err
	}
	defer src.Close()
	for i, l := range d.Layers {
		if l.DiffID != want.DiffIDs[i] {
			t.Errorf("layer %d diffID %s, want %s", i, l.DiffID, want.DiffIDs[i])
		}
		rc, size, err := src.GetBlob(ctx, blobInfo(l.Digest, l.Size), nil)
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
		if size >= 0 && n != size {
			t.Errorf("layer %d: read %d bytes, GetBlob said %d", i, n, size)
		}
	}
	return nil
}

func blobInfo(d digest.Digest, size int64) types.BlobInfo {
	return types.BlobInfo{Digest: d, Size: size}
}

// withoutMembers rewrites a tar without the named members.
func withoutMembers(t *testing.T, data []byte, drop ...string) []byte {
	t.Helper()
	var out bytes.Buffer
	tr := tar.NewReader(bytes.NewReader(data))
	tw := tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(drop, strings.TrimPrefix(hdr.Name, "./")) {
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestOCIOnlyArchive reads an OCI layout archive without manifest.json (what BuildKit's OCI
// exporter writes): one image per index.json entry, named by its annotations.
func TestOCIOnlyArchive(t *testing.T) {
	images := archivetest.SharedImages()
	data, err := archivetest.BuildBytes(images, archivetest.Options{Layout: archivetest.Docker25})
	if err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(writeTemp(t, withoutMembers(t, data, "manifest.json", "repositories")))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var got []string
	for _, img := range a.Images() {
		for _, tg := range img.Tags {
			got = append(got, tg.String())
		}
		if len(img.Problems) > 0 {
			t.Errorf("@%d: %v", img.Index, img.Problems)
		}
	}
	want := []string{"example.com/app/one:1", "example.com/app/one:latest", "docker.io/library/busybox:latest"}
	if !slices.Equal(got, want) {
		t.Errorf("tags %q, want %q", got, want)
	}
	for _, p := range a.Verify(context.Background(), 2) {
		if !p.Warning {
			t.Errorf("verify: %v", p)
		}
	}
}
