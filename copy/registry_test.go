package copy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
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
	"github.com/darc-dev/darc/internal/archivetest"
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
	mb, m := remoteManifest(t, addr, repo, tag)
	md, err := manifest.Digest(mb)
	if err != nil {
		t.Fatal(err)
	}
	return md, m.ConfigInfo().Digest
}

// remoteManifest reads a manifest from the registry, as stored and parsed.
func remoteManifest(t *testing.T, addr, repo, tag string) ([]byte, manifest.Manifest) {
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
	return mb, m
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

// TestLoadStreamMountsFromStaging checks, from the registry's own access log, what LoadStream
// into a registry promises and what bic.go exists for: two images sharing a layer, streamed
// into a fresh registry, get every layer uploaded exactly once, to the staging repository,
// and every image's repository gets its layers by cross-repository mounts that trace back to
// that upload. (containers/image mounts from the location its cache saw last: the shared
// layer may come to the second image's repository from the first's, which got it from the
// staging repository.)
func TestLoadStreamMountsFromStaging(t *testing.T) {
	reg := testtools.StartRegistry(t, "")
	shared := archivetest.Layer(11, 2, 3000)
	images := []archivetest.Image{
		{Tags: []string{"example.com/mnt/one:1"}, Layers: [][]byte{shared, archivetest.Layer(12, 1, 2000)}},
		{Tags: []string{"example.com/mnt/two:1"}, Layers: [][]byte{shared, archivetest.Layer(13, 1, 2000)}},
	}
	data, err := archivetest.BuildBytes(images, archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	results, err := dcopy.LoadStream(context.Background(), bytes.NewReader(data), mustDest(t, "docker://"+reg.Addr+"/ns"), nil, dcopy.WithSystemContext(insecureSys()))
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("%d results, want 2", len(results))
	}
	staging := "ns/" + dcopy.DefaultStagingRepository

	// The layers each repository's manifest lists.
	repos := []string{"ns/mnt/one", "ns/mnt/two"}
	want := map[string][]string{} // repository: its layers' digests, sorted
	layers := map[string]bool{}
	for _, repo := range repos {
		for _, l := range remoteLayers(t, reg.Addr, repo, "1") {
			want[repo] = append(want[repo], l.String())
			layers[l.String()] = true
		}
		slices.Sort(want[repo])
		if len(want[repo]) != 2 {
			t.Fatalf("%s: %d layers, want 2", repo, len(want[repo]))
		}
	}
	if len(layers) != 3 {
		t.Fatalf("%d distinct layers in the two manifests, want 3 (one shared)", len(layers))
	}

	uploads, mounts := reg.BlobUploads(t)
	for d, n := range uploads {
		if n != 1 {
			t.Errorf("blob %s uploaded %d times, want once", d, n)
		}
	}
	// Where each layer is, from the log: its upload, then mounts from a repository holding it.
	holders := map[string]map[string]bool{} // digest: repositories
	events := registryBlobEvents(t, reg)
	for _, e := range events {
		if e.from == "" && layers[e.digest] {
			if e.repo != staging {
				t.Errorf("layer %s uploaded to %s, want %s", e.digest, e.repo, staging)
			}
			holders[e.digest] = map[string]bool{e.repo: true}
		}
	}
	// Order-independent: the log is written as requests finish, which for requests running
	// side by side need not be the order they were served in.
	for changed := true; changed; {
		changed = false
		for _, e := range events {
			if e.from != "" && holders[e.digest][e.from] && !holders[e.digest][e.repo] {
				holders[e.digest][e.repo], changed = true, true
			}
		}
	}
	got := map[string][]string{} // repository: digests mounted into it
	nMounts := 0
	for _, e := range events {
		if e.from == "" {
			continue
		}
		nMounts++
		if !holders[e.digest][e.from] {
			t.Errorf("%s mounted into %s from %s, which never got it from %s", e.digest, e.repo, e.from, staging)
		}
		got[e.repo] = append(got[e.repo], e.digest)
	}
	for _, repo := range repos {
		slices.Sort(got[repo])
		if !slices.Equal(got[repo], want[repo]) {
			t.Errorf("%s: mounted %q, want its layers %q", repo, got[repo], want[repo])
		}
	}
	if len(got) != len(repos) {
		t.Errorf("mounts into %d repositories, want %d: %q", len(got), len(repos), got)
	}
	total := 0
	for _, n := range mounts {
		total += n
	}
	if total != nMounts || total != 4 {
		t.Errorf("%d mounts counted, %d listed; want 4 (two layers into each repository)", total, nMounts)
	}
}

// remoteLayers reads a manifest from the registry and returns its layers' digests.
func remoteLayers(t *testing.T, addr, repo, tag string) []digest.Digest {
	t.Helper()
	_, m := remoteManifest(t, addr, repo, tag)
	var out []digest.Digest
	for _, l := range m.LayerInfos() {
		out = append(out, l.Digest)
	}
	return out
}

// blobEvent is a blob the registry received into a repository: an upload (from empty), or a
// cross-repository mount from another repository.
type blobEvent struct{ repo, digest, from string }

// registryBlobEvents lists, from the registry's access log, the blobs it received and into
// which repository: the completed uploads ("PUT /v2/REPO/blobs/uploads/ID?…digest=D") and the
// cross-repository mounts ("POST /v2/REPO/blobs/uploads/?mount=D&from=FROM"), both answered
// 201 Created. (A registry that does not mount answers 202 and starts an upload instead.)
// Registry.BlobUploads counts the same requests by digest; this keeps their repositories.
func registryBlobEvents(t *testing.T, reg *testtools.Registry) []blobEvent {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(reg.Dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []blobEvent
	for _, line := range strings.Split(string(data), "\n") {
		_, req, ok := strings.Cut(line, "] \"")
		if !ok {
			continue
		}
		method, req, _ := strings.Cut(req, " ")
		uri, rest, ok := strings.Cut(req, " HTTP/")
		if !ok || !strings.Contains(rest, "\" 201 ") || (method != "PUT" && method != "POST") {
			continue
		}
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatalf("registry log: %q: %v", line, err)
		}
		repo, _, ok := strings.Cut(strings.TrimPrefix(u.Path, "/v2/"), "/blobs/uploads/")
		if !ok {
			continue
		}
		q := u.Query()
		switch {
		case method == "PUT" && q.Get("digest") != "":
			out = append(out, blobEvent{repo: repo, digest: q.Get("digest")})
		case method == "POST" && q.Get("mount") != "" && q.Get("from") != "":
			out = append(out, blobEvent{repo: repo, digest: q.Get("mount"), from: q.Get("from")})
		}
	}
	return out
}
