package archivetest

// A cross-check against an independent implementation: containers/image's own docker-archive
// reader must accept what Build writes and read the same images from it.
//
// It accepts every layout with a manifest.json: ContainersImage, Docker24, Docker25, Crane,
// CraneLegacy and BuildKit, also whole-archive gzip/zstd/xz compression, gzip-compressed layer
// members, manifest.json first and "./" prefixes. It rejects Legacy (pre-1.10 Docker):
// it has no manifest.json, which containers/image requires ("FIXME? Do we need to deal with the
// legacy format?"). It would also reject CraneLegacy for a tag given without ":tag", since
// crane --format legacy writes it verbatim ("busybox") and List requires a tag.

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
)

func TestContainersImageReads(t *testing.T) {
	images := standardImages()
	tests := []struct {
		name string
		opts Options
	}{
		{"containers/image", Options{Layout: ContainersImage}},
		{"Docker 24", Options{Layout: Docker24}},
		{"Docker 25", Options{Layout: Docker25}},
		{"crane", Options{Layout: Crane}},
		{"crane zstd layers", Options{Layout: Crane, ZstdLayers: true}},
		{"crane legacy", Options{Layout: CraneLegacy}},
		{"BuildKit", Options{Layout: BuildKit}},
		{"gzip members", Options{Layout: Docker24, GzipMembers: true}},
		{"manifest first, ./ prefix", Options{Layout: ContainersImage, ManifestFirst: true, DotSlash: true}},
		{"gzip archive", Options{Layout: Docker25, Compression: "gzip"}},
		{"zstd archive", Options{Layout: Crane, Compression: "zstd"}},
		{"xz archive", Options{Layout: CraneLegacy, Compression: "xz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readWithContainersImage(t, build(t, images, tt.opts))
			want := Expect(images, tt.opts)
			if len(got) != len(want) {
				t.Fatalf("containers/image lists %d images, Expect %d", len(got), len(want))
			}
			for i := range want {
				if !equalStrings(got[i].Tags, want[i].Tags) || got[i].ID != want[i].ID || !equalDigests(got[i].DiffIDs, want[i].DiffIDs) {
					t.Errorf("image @%d:\n got %+v\nwant %+v", i, got[i], want[i])
				}
			}
		})
	}

	t.Run("Legacy is rejected", func(t *testing.T) {
		path := writeTemp(t, build(t, images, Options{Layout: Legacy}))
		r, err := archive.NewReader(&types.SystemContext{BigFilesTemporaryDir: t.TempDir()}, path)
		if err == nil {
			r.Close()
			t.Fatal("containers/image accepted an archive without manifest.json")
		}
		if !errors.Is(err, fs.ErrNotExist) { // "loading tar component "manifest.json": file does not exist"
			t.Errorf("error %v, want one wrapping fs.ErrNotExist", err)
		}
	})

	implicit := []Image{{Tags: []string{"example.com/implicit"}, Layers: [][]byte{Layer(9, 1, 10)}}}
	t.Run("crane appends :latest", func(t *testing.T) {
		got := readWithContainersImage(t, build(t, implicit, Options{Layout: Crane}))
		if len(got) != 1 || !equalStrings(got[0].Tags, []string{"example.com/implicit:latest"}) {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("crane legacy keeps a tagless name, which containers/image rejects", func(t *testing.T) {
		path := writeTemp(t, build(t, implicit, Options{Layout: CraneLegacy}))
		r, err := archive.NewReader(&types.SystemContext{BigFilesTemporaryDir: t.TempDir()}, path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.List(); err == nil {
			t.Errorf("List accepted RepoTags without a tag")
		}
	})
	t.Run("manifest.json over 1 MiB is rejected", func(t *testing.T) {
		if testing.Short() {
			t.Skip("writes a 30 MB archive")
		}
		f, err := os.Create(filepath.Join(t.TempDir(), "big.tar"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := BigArchive(f, 4000, 20000); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := archive.NewReader(&types.SystemContext{BigFilesTemporaryDir: t.TempDir()}, f.Name())
		if err == nil {
			r.Close()
			t.Fatal("containers/image read a manifest.json of more than 1 MiB")
		}
		t.Logf("as expected: %v", err)
	})
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "archive.tar")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// readWithContainersImage lists the archive with containers/image and, for each image, reads
// its manifest, config and every layer blob, checking their digests.
func readWithContainersImage(t *testing.T, data []byte) []ExpectedImage {
	t.Helper()
	ctx := context.Background()
	sys := &types.SystemContext{BigFilesTemporaryDir: t.TempDir()}
	r, err := archive.NewReader(sys, writeTemp(t, data))
	if err != nil {
		t.Fatalf("archive.NewReader: %v", err)
	}
	defer r.Close()
	groups, err := r.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var out []ExpectedImage
	for i, refs := range groups {
		x := ExpectedImage{Tags: []string{}}
		for _, ref := range refs {
			if named := ref.DockerReference(); named != nil {
				x.Tags = append(x.Tags, named.String())
			}
		}
		src, err := refs[0].NewImageSource(ctx, sys)
		if err != nil {
			t.Fatalf("image @%d: NewImageSource: %v", i, err)
		}
		mb, mt, err := src.GetManifest(ctx, nil)
		if err != nil {
			t.Fatalf("image @%d: GetManifest: %v", i, err)
		}
		if mt != manifest.DockerV2Schema2MediaType {
			t.Errorf("image @%d: manifest type %q", i, mt)
		}
		m, err := manifest.Schema2FromManifest(mb)
		if err != nil {
			t.Fatalf("image @%d: %v", i, err)
		}
		x.ID = m.ConfigDescriptor.Digest
		if got := blobDigest(t, ctx, src, m.ConfigInfo()); got != x.ID {
			t.Errorf("image @%d: config reads as %s, is %s", i, got, x.ID)
		}
		for _, l := range m.LayerInfos() {
			x.DiffIDs = append(x.DiffIDs, l.Digest)
			if got := blobDigest(t, ctx, src, l.BlobInfo); got != l.Digest {
				t.Errorf("image @%d: layer reads as %s, is %s", i, got, l.Digest)
			}
		}
		if err := src.Close(); err != nil {
			t.Errorf("image @%d: Close: %v", i, err)
		}
		out = append(out, x)
	}
	return out
}

func blobDigest(t *testing.T, ctx context.Context, src types.ImageSource, info types.BlobInfo) digest.Digest {
	t.Helper()
	rc, _, err := src.GetBlob(ctx, info, nil)
	if err != nil {
		t.Fatalf("GetBlob %s: %v", info.Digest, err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatalf("reading blob %s: %v", info.Digest, err)
	}
	return digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalDigests(a, b []digest.Digest) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestContainersImageEdgeCases records what containers/image v5.42 does with the edge cases,
// which shows what they test: it takes the first of duplicate members, follows only one
// symlink, reads a hard link as empty, and takes an archive starting with "BZh" for bzip2.
func TestContainersImageEdgeCases(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		data []byte
		ok   bool // containers/image reads the image correctly
	}{
		{"duplicate member", DuplicateMember(), false}, // takes the first (bogus) member
		{"symlink chain", SymlinkChain(), false},       // follows one link only
		{"hard link", HardlinkLayer(), false},          // reads 0 bytes
		{"manifest path with .. inside", ManifestDotDotInside(), true},
		{"BZh member name", BZhMember(), false}, // "bzip2 data invalid"
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := &types.SystemContext{BigFilesTemporaryDir: t.TempDir()}
			path := writeTemp(t, tt.data)
			err := func() error {
				r, err := archive.NewReader(sys, path)
				if err != nil {
					return err
				}
				defer r.Close()
				groups, err := r.List()
				if err != nil {
					return err
				}
				src, err := groups[0][0].NewImageSource(ctx, sys)
				if err != nil {
					return err
				}
				defer src.Close()
				rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: EdgeExpected().DiffIDs[0], Size: -1}, nil)
				if err != nil {
					return err
				}
				defer rc.Close()
				h := sha256.New()
				if _, err := io.Copy(h, rc); err != nil {
					return err
				}
				if d := digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)); d != EdgeExpected().DiffIDs[0] {
					return errors.New("layer digest mismatch")
				}
				return nil
			}()
			if (err == nil) != tt.ok {
				t.Errorf("containers/image: err = %v, want ok = %v", err, tt.ok)
			} else if err != nil {
				t.Logf("containers/image: %v", err)
			}
		})
	}
}
