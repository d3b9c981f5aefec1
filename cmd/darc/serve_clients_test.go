package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/testtools"
	"github.com/darc-dev/darc/reference"
)

// servedImage is what a pull of one served tag must give, from the archive itself.
type servedImage struct {
	repo, tag string
	top       digest.Digest   // the manifest (or index) digest the tag serves
	id        digest.Digest   // the config digest of the image (linux/amd64 of an index)
	layers    []digest.Digest // layer blob digests
	diffIDs   []digest.Digest
}

func (s servedImage) ref(addr string) string { return addr + "/" + s.repo + ":" + s.tag }

// servedImages lists what `darc serve` serves for the archives at paths, first archive
// first, each NAME:TAG once, as ReadableArchive.Inspect (`darc inspect`) describes it.
func servedImages(t *testing.T, paths ...string) []servedImage {
	t.Helper()
	var out []servedImage
	seen := map[string]bool{}
	for _, p := range paths {
		a, err := archive.Open(p, archive.WithTempDir(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range a.Images() {
			for _, tag := range img.Tags {
				key := distref.Path(tag) + ":" + tag.Tag()
				if seen[key] {
					continue
				}
				seen[key] = true
				d, err := a.Inspect(reference.TagSelector(tag))
				if err != nil {
					t.Fatal(err)
				}
				s := servedImage{repo: distref.Path(tag), tag: tag.Tag(), top: digest.FromBytes(d.Manifest), id: d.ID}
				if img.List != nil {
					s.top = img.List.Digest
				}
				for _, l := range d.Layers {
					s.layers = append(s.layers, l.Digest)
					s.diffIDs = append(s.diffIDs, l.DiffID)
				}
				out = append(out, s)
			}
		}
		a.Close()
	}
	return out
}

// writeServeBundle writes the images of the fixture podman-save-m.tar as a seekable
// .tar.zst, which darc serve reads in place.
func writeServeBundle(t *testing.T) string {
	t.Helper()
	in, err := archive.Open(fixture("podman-save-m.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	path := filepath.Join(t.TempDir(), "bundle.tar.zst")
	w, err := archive.Create(path, archive.WithCompression(archive.CompressZstd, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := dcopy.Merge(context.Background(), w, []*archive.ReadableArchive{in}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return path
}

func diffIDsOfConfig(t *testing.T, cfg []byte) []digest.Digest {
	t.Helper()
	var c struct {
		RootFS struct {
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	return c.RootFS.DiffIDs
}

// TestServeSkopeoPodman serves a seekable bundle and a multi-platform archive (containerd's
// exporter) with `darc serve` and pulls every tag with skopeo (inspect, and copy to an OCI
// layout) and podman: the digests they see are the archive's.
func TestServeSkopeoPodman(t *testing.T) {
	if testing.Short() {
		t.Skip("runs skopeo and podman")
	}
	skopeo := testtools.Require(t, "skopeo")
	bundle, multi := writeServeBundle(t), fixture("ctr/all-platforms.tar")
	want := servedImages(t, bundle, multi)
	p := startServe(t, bundle, multi)
	ctx := context.Background()
	t.Run("skopeo", func(t *testing.T) {
		for _, w := range want {
			ref := "docker://" + w.ref(p.addr)
			raw, err := testtools.Run(ctx, skopeo, "--insecure-policy", "inspect", "--tls-verify=false", "--raw", ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := digest.FromBytes(raw); got != w.top {
				t.Errorf("%s: manifest %s, want %s", ref, got, w.top)
			}
			cfg, err := testtools.Run(ctx, skopeo, "--insecure-policy", "inspect", "--tls-verify=false", "--override-os", "linux", "--override-arch", "amd64", "--config", "--raw", ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := digest.FromBytes(cfg); got != w.id {
				t.Errorf("%s: config %s, want %s", ref, got, w.id)
			}
			var insp struct{ Layers []digest.Digest }
			out, err := testtools.Run(ctx, skopeo, "--insecure-policy", "inspect", "--tls-verify=false", "--override-os", "linux", "--override-arch", "amd64", ref)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(out, &insp); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(insp.Layers, w.layers) {
				t.Errorf("%s: layers %v, want %v", ref, insp.Layers, w.layers)
			}
			// Without --dest-oci-accept-uncompressed-layers skopeo gzips the uncompressed
			// layers of a docker-archive on the way into an OCI layout: new digests.
			dir := filepath.Join(t.TempDir(), "layout")
			if _, err := testtools.Run(ctx, skopeo, "--insecure-policy", "copy", "-q", "--src-tls-verify=false", "--dest-oci-accept-uncompressed-layers", "--override-os", "linux", "--override-arch", "amd64", ref, "oci:"+dir+":img"); err != nil {
				t.Fatalf("skopeo copy %s: %v", ref, err)
			}
			id, layers := ociLayoutImage(t, dir)
			if id != w.id || !slices.Equal(layers, w.layers) {
				t.Errorf("%s: copied config %s layers %v, want %s %v", ref, id, layers, w.id, w.layers)
			}
		}
	})
	t.Run("podman", func(t *testing.T) {
		pm := testtools.NewPodman(t)
		for _, w := range want {
			pm.Run(t, "pull", "-q", "--tls-verify=false", w.ref(p.addr))
			var insp []struct {
				ID     string `json:"Id"`
				RootFS struct{ Layers []digest.Digest }
			}
			if err := json.Unmarshal(pm.Run(t, "image", "inspect", w.ref(p.addr)), &insp); err != nil {
				t.Fatal(err)
			}
			if len(insp) != 1 || "sha256:"+insp[0].ID != w.id.String() || !slices.Equal(insp[0].RootFS.Layers, w.diffIDs) {
				t.Errorf("podman pull %s: %+v, want ID %s diffIDs %v", w.ref(p.addr), insp, w.id, w.diffIDs)
			}
		}
	})
	if status, stderr := p.stop(t, syscall.SIGTERM); status != 143 {
		t.Errorf("exit status %d, want 143\n%s", status, stderr)
	}
}

// ociLayoutImage reads the one image of an OCI layout: its config digest and layer digests.
func ociLayoutImage(t *testing.T, dir string) (digest.Digest, []digest.Digest) {
	t.Helper()
	readJSON := func(path string, v any) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatal(err)
		}
	}
	var idx struct {
		Manifests []struct{ Digest digest.Digest }
	}
	readJSON(filepath.Join(dir, "index.json"), &idx)
	if len(idx.Manifests) != 1 {
		t.Fatalf("index.json lists %d manifests", len(idx.Manifests))
	}
	var m struct {
		Config struct{ Digest digest.Digest }
		Layers []struct{ Digest digest.Digest }
	}
	readJSON(filepath.Join(dir, "blobs", "sha256", idx.Manifests[0].Digest.Encoded()), &m)
	var layers []digest.Digest
	for _, l := range m.Layers {
		layers = append(layers, l.Digest)
	}
	return m.Config.Digest, layers
}

// TestServeDockerContainerd pulls every served tag with docker 20.10 (started with the
// server as an insecure registry) and with containerd 1.6's ctr --plain-http; both daemons
// are started here and stopped by their PIDs.
func TestServeDockerContainerd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dockerd and containerd")
	}
	bundle, multi := writeServeBundle(t), fixture("ctr/all-platforms.tar")
	want := servedImages(t, bundle, multi)
	p := startServe(t, "--verbose", bundle, multi)
	t.Run("docker", func(t *testing.T) {
		d := testtools.StartDockerd(t, "--insecure-registry", p.addr)
		for _, w := range want {
			d.Run(t, "pull", "-q", w.ref(p.addr))
			var insp []struct {
				ID          string `json:"Id"`
				RepoDigests []string
				RootFS      struct{ Layers []digest.Digest }
			}
			if err := json.Unmarshal(d.Run(t, "image", "inspect", w.ref(p.addr)), &insp); err != nil {
				t.Fatal(err)
			}
			if len(insp) != 1 || insp[0].ID != w.id.String() || !slices.Equal(insp[0].RootFS.Layers, w.diffIDs) {
				t.Errorf("docker pull %s: %+v, want ID %s diffIDs %v", w.ref(p.addr), insp, w.id, w.diffIDs)
			} else if repoDigest := p.addr + "/" + w.repo + "@" + w.top.String(); !slices.Contains(insp[0].RepoDigests, repoDigest) {
				t.Errorf("docker pull %s: repo digests %v, want %s", w.ref(p.addr), insp[0].RepoDigests, repoDigest)
			}
		}
		// docker's own short form of an official image: HOST/busybox-like for library/busybox-like.
		short := p.addr + "/busybox-like:1"
		d.Run(t, "pull", "-q", short)
		if out := d.Run(t, "image", "inspect", "--format", "{{.Id}}", short); !strings.HasPrefix(string(out), "sha256:") {
			t.Errorf("docker pull %s: %s", short, out)
		}
	})
	t.Run("containerd", func(t *testing.T) {
		c := testtools.StartContainerd(t)
		for _, w := range want {
			c.Run(t, "-n", "darc", "images", "pull", "--plain-http", "--platform", "linux/amd64", w.ref(p.addr))
			out := c.Run(t, "-n", "darc", "images", "ls")
			if !strings.Contains(string(out), w.ref(p.addr)) || !strings.Contains(string(out), w.top.String()) {
				t.Errorf("ctr images ls lacks %s at %s:\n%s", w.ref(p.addr), w.top, out)
			}
			content := string(c.Run(t, "-n", "darc", "content", "ls", "-q"))
			for _, d := range append([]digest.Digest{w.id}, w.layers...) {
				if !strings.Contains(content, d.String()) {
					t.Errorf("ctr pull %s: blob %s not in the content store", w.ref(p.addr), d)
				}
			}
		}
	})
	if status, stderr := p.stop(t, syscall.SIGTERM); status != 143 {
		t.Errorf("exit status %d, want 143\n%s", status, stderr)
	} else if aborted := strings.Count(stderr, " aborted "); aborted > 0 {
		t.Errorf("%d responses cut off:\n%s", aborted, stderr)
	}
}
