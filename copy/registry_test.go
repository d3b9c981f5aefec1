package copy_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
	"golang.org/x/crypto/bcrypt"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/testtools"
	"github.com/darc-dev/darc/reference"
)

const fixtures = "../testdata/archives"

// original is an image pushed into the test registry by skopeo, which these tests take as
// the truth to compare with.
type original struct {
	repo     string // e.g. src/a
	tags     []string
	manifest digest.Digest
	config   digest.Digest
}

// pushOriginals starts a registry and pushes the podman fixture's three images with skopeo:
// A (two tags) and B share two layers, C shares one.
func pushOriginals(t *testing.T) (*testtools.Registry, []original) {
	t.Helper()
	skopeo := testtools.Require(t, "skopeo")
	reg := testtools.StartRegistry(t, "")
	fixture, err := filepath.Abs(filepath.Join(fixtures, "podman-save-m.tar"))
	if err != nil {
		t.Fatal(err)
	}
	origs := []original{
		{repo: "src/a", tags: []string{"1", "latest"}},
		{repo: "src/busybox-like", tags: []string{"1"}},
		{repo: "src/c", tags: []string{"v1"}},
	}
	ctx := context.Background()
	for i := range origs {
		o := &origs[i]
		for _, tag := range o.tags {
			if _, err := testtools.Run(ctx, skopeo, "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
				fmt.Sprintf("docker-archive:%s:@%d", fixture, i), fmt.Sprintf("docker://%s/%s:%s", reg.Addr, o.repo, tag)); err != nil {
				t.Fatal(err)
			}
		}
		o.manifest, o.config = remoteDigests(t, reg.Addr, o.repo, o.tags[0])
	}
	return reg, origs
}

func insecureSys() *types.SystemContext {
	return &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}
}

// remoteDigests reads a manifest from the registry: its digest and its config digest.
func remoteDigests(t *testing.T, addr, repo, tag string) (digest.Digest, digest.Digest) {
	t.Helper()
	ref, err := dcopy.ParseReference(fmt.Sprintf("docker://%s/%s:%s", addr, repo, tag))
	if err != nil {
		t.Fatal(err)
	}
	src, err := ref.NewImageSource(context.Background(), insecureSys())
	if err != nil {
		t.Fatalf("%s/%s:%s: %v", addr, repo, tag, err)
	}
	defer src.Close()
	mb, mt, err := src.GetManifest(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.FromBlob(mb, mt)
	if err != nil {
		t.Fatal(err)
	}
	md, err := manifest.Digest(mb)
	if err != nil {
		t.Fatal(err)
	}
	return md, m.ConfigInfo().Digest
}

func tagged(t *testing.T, s string) distref.NamedTagged {
	t.Helper()
	nt, err := reference.NormalizeTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return nt
}

// TestSaveLoadRegistry is the air-gap round trip against a real registry: save three images
// (sharing layers, one under two tags) from the registry into one archive, check the archive,
// load it into another namespace of the registry, and compare with what skopeo pushed.
func TestSaveLoadRegistry(t *testing.T) {
	reg, origs := pushOriginals(t)
	ctx := context.Background()
	for _, layout := range []archive.Layout{archive.LayoutDocker, archive.LayoutOCI} {
		t.Run(string(layout), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "bundle.tar")
			w, err := archive.Create(out, archive.WithLayout(layout))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			var sources []dcopy.Source
			for _, o := range origs {
				for _, tag := range o.tags {
					ref, err := dcopy.ParseReference(fmt.Sprintf("docker://%s/%s:%s", reg.Addr, o.repo, tag))
					if err != nil {
						t.Fatal(err)
					}
					sources = append(sources, dcopy.Source{Ref: ref})
				}
			}
			results, err := dcopy.Save(ctx, w, sources, dcopy.WithSystemContext(insecureSys()))
			if err != nil {
				t.Fatal(err)
			}
			if len(results) != len(sources) {
				t.Fatalf("got %d results, want %d", len(results), len(sources))
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}

			// The archive: one entry per image (A's two tags merged), configs as pushed.
			a, err := archive.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			imgs := a.Images()
			if len(imgs) != len(origs) {
				t.Fatalf("archive has %d images, want %d", len(imgs), len(origs))
			}
			for i, o := range origs {
				if imgs[i].ID != o.config {
					t.Errorf("@%d ID %s, want %s", i, imgs[i].ID, o.config)
				}
				var want []string
				for _, tag := range o.tags {
					want = append(want, fmt.Sprintf("%s/%s:%s", reg.Addr, o.repo, tag))
				}
				var got []string
				for _, tg := range imgs[i].Tags {
					got = append(got, tg.String())
				}
				if !slices.Equal(got, want) {
					t.Errorf("@%d tags %q, want %q", i, got, want)
				}
			}
			for _, p := range a.Verify(ctx, 2) {
				if !p.Warning {
					t.Errorf("verify: %v", p)
				}
			}

			// Load into a second namespace: docker://HOST/mirror-<layout>/<path of name>.
			prefix := "mirror-" + string(layout)
			dest, err := dcopy.ParseDestination(fmt.Sprintf("docker://%s/%s", reg.Addr, prefix))
			if err != nil {
				t.Fatal(err)
			}
			results, err = dcopy.Load(ctx, a, dest, nil, dcopy.WithSystemContext(insecureSys()))
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range origs {
				if results[i].ImageID != o.config {
					t.Errorf("load @%d: image %s, want %s", i, results[i].ImageID, o.config)
				}
				for _, tag := range o.tags {
					md, cfg := remoteDigests(t, reg.Addr, prefix+"/"+o.repo, tag)
					if cfg != o.config {
						t.Errorf("%s/%s:%s: config %s, want %s", prefix, o.repo, tag, cfg, o.config)
					}
					// The OCI layout keeps the registry's compressed blobs and manifest, so the
					// manifest digest survives the round trip.
					if layout == archive.LayoutOCI && md != o.manifest {
						t.Errorf("%s/%s:%s: manifest %s, want %s (preserved)", prefix, o.repo, tag, md, o.manifest)
					}
				}
			}
		})
	}
}

// TestLoadUntaggedSkipped loads an archive with an untagged image into a registry: the
// tagged one is pushed, the untagged one is reported and skipped unless named.
func TestLoadUntaggedSkipped(t *testing.T) {
	reg := testtools.StartRegistry(t, "")
	ctx := context.Background()
	a, err := archive.Open(filepath.Join(fixtures, "podman-save-m-untagged.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dest, err := dcopy.ParseDestination("docker://" + reg.Addr + "/team")
	if err != nil {
		t.Fatal(err)
	}
	results, err := dcopy.Load(ctx, a, dest, nil, dcopy.WithSystemContext(insecureSys()))
	if err != nil {
		t.Fatal(err)
	}
	if !results[0].Skipped || !errors.Is(results[0].Err, dcopy.ErrUntagged) {
		t.Errorf("untagged @0: got %+v, want skipped with ErrUntagged", results[0])
	}
	if results[1].Err != nil || len(results[1].Destinations) != 1 || !strings.HasSuffix(results[1].Destinations[0], "/team/c:v1") {
		t.Errorf("tagged @1: got %+v, want pushed to .../team/c:v1", results[1])
	}
	// Named, the untagged image goes in too.
	results, err = dcopy.Load(ctx, a, dest, []reference.Selector{mustIndex(t, 0)}, dcopy.WithSystemContext(insecureSys()),
		dcopy.WithNames(0, tagged(t, "example.com/x/untagged:v1")))
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0].Skipped || !strings.HasSuffix(results[0].Destinations[0], "/team/x/untagged:v1") {
		t.Errorf("named @0: got %+v", results)
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

// TestRegistryAuth pushes into a registry that requires a password: good credentials work,
// bad ones fail with an error that says so.
func TestRegistryAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("darc:"+string(hash)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := testtools.StartRegistry(t, htpasswd)
	ctx := context.Background()
	a, err := archive.Open(filepath.Join(fixtures, "skopeo-copy.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dest, err := dcopy.ParseDestination("docker://" + reg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	sys := func(user, pass string) *types.SystemContext {
		s := insecureSys()
		s.DockerAuthConfig = &types.DockerAuthConfig{Username: user, Password: pass}
		s.AuthFilePath = filepath.Join(t.TempDir(), "auth.json") // ignore the machine's auth files
		return s
	}
	_, err = dcopy.Load(ctx, a, dest, nil, dcopy.WithSystemContext(sys("darc", "wrong")))
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authentication required") {
		t.Fatalf("bad password: got %v, want an authentication error", err)
	}
	results, err := dcopy.Load(ctx, a, dest, nil, dcopy.WithSystemContext(sys("darc", "s3cret")))
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || !strings.HasSuffix(results[0].Destinations[0], "/darc/a:1") {
		t.Errorf("got %+v", results)
	}
}
