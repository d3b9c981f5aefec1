package copy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
	"golang.org/x/crypto/bcrypt"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/testtools"
	"github.com/darc-dev/darc/reference"
)

// countingReader counts the bytes read through it and how often Read was called after EOF.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// layoutImage is one ref of an OCI layout: its manifest and config digests.
type layoutImage struct {
	manifest, config digest.Digest
}

// readLayout lists an OCI layout's refs.
func readLayout(t *testing.T, dir string) map[string]layoutImage {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx imgspecv1.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	out := map[string]layoutImage{}
	for _, d := range idx.Manifests {
		name := d.Annotations[imgspecv1.AnnotationRefName]
		mb, err := os.ReadFile(filepath.Join(dir, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()))
		if err != nil {
			t.Fatal(err)
		}
		m, err := manifest.FromBlob(mb, manifest.GuessMIMEType(mb))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range append(m.LayerInfos(), manifest.LayerInfo{BlobInfo: m.ConfigInfo()}) {
			if _, err := os.Stat(filepath.Join(dir, "blobs", l.Digest.Algorithm().String(), l.Digest.Encoded())); err != nil {
				t.Errorf("ref %q: blob %s: %v", name, l.Digest, err)
			}
		}
		out[name] = layoutImage{manifest: d.Digest, config: m.ConfigInfo().Digest}
	}
	return out
}

// loadBoth loads an archive into two OCI layouts, with Load (opened from a file, spooled if
// compressed) and with LoadStream (read from memory), and returns both results.
func loadBoth(t *testing.T, data []byte, sels []reference.Selector, opts ...dcopy.Option) (load, stream []dcopy.Result, loadDir, streamDir string, loadErr, streamErr error) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "in.tar")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(path, archive.WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	loadDir, streamDir = filepath.Join(t.TempDir(), "load"), filepath.Join(t.TempDir(), "stream")
	ld, err := dcopy.ParseDestination("oci:" + loadDir)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := dcopy.ParseDestination("oci:" + streamDir)
	if err != nil {
		t.Fatal(err)
	}
	load, loadErr = dcopy.Load(ctx, a, ld, sels, opts...)
	in := &countingReader{r: bytes.NewReader(data)}
	stream, streamErr = dcopy.LoadStream(ctx, in, sd, sels, append(opts, dcopy.WithSourceName(path))...)
	if in.n != int64(len(data)) {
		t.Errorf("LoadStream read %d bytes of %d", in.n, len(data))
	}
	return load, stream, loadDir, streamDir, loadErr, streamErr
}

// compareLoads checks that LoadStream wrote what Load wrote: the same refs with the same
// manifest and config digests, and the same results.
func compareLoads(t *testing.T, load, stream []dcopy.Result, loadDir, streamDir string) {
	t.Helper()
	if len(load) != len(stream) {
		t.Fatalf("LoadStream gave %d results, Load %d", len(stream), len(load))
	}
	for i, l := range load {
		s := stream[i]
		strip := func(ds []string, dir string) []string {
			var out []string
			for _, d := range ds {
				out = append(out, strings.Replace(d, dir, "DIR", 1))
			}
			return out
		}
		if s.Index != l.Index || s.Manifest != l.Manifest || s.ImageID != l.ImageID || s.Skipped != l.Skipped ||
			!slices.Equal(s.Tags, l.Tags) || !slices.Equal(strip(s.Destinations, streamDir), strip(l.Destinations, loadDir)) ||
			(s.Err == nil) != (l.Err == nil) {
			t.Errorf("result %d:\nLoadStream %+v\n      Load %+v", i, s, l)
		}
	}
	if _, err := os.Stat(filepath.Join(loadDir, "index.json")); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(streamDir, "index.json")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("LoadStream wrote index.json, Load did not")
		}
		return
	}
	want, got := readLayout(t, loadDir), readLayout(t, streamDir)
	if len(want) == 0 {
		t.Fatal("Load wrote no image")
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("ref %q: LoadStream wrote %+v, Load %+v", name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("ref %q: written by LoadStream only", name)
		}
	}
}

// TestLoadStreamMatchesLoad loads every generated layout (and the variants hand-made
// archives have, and whole-archive compression) into an OCI layout both ways. LoadStream must
// read its input exactly once and write the same manifests, byte for byte (so the same
// digests), and the same configs as Load.
func TestLoadStreamMatchesLoad(t *testing.T) {
	for _, v := range archivetest.Variants() {
		t.Run(v.Name, func(t *testing.T) {
			data, err := archivetest.BuildBytes(archivetest.SharedImages(), v.Opts)
			if err != nil {
				t.Skipf("generator does not support this variant: %v", err)
			}
			load, stream, ld, sd, lerr, serr := loadBoth(t, data, nil)
			if (lerr == nil) != (serr == nil) {
				t.Fatalf("LoadStream error %v, Load error %v", serr, lerr)
			}
			compareLoads(t, load, stream, ld, sd)
			skipped := 0
			for _, r := range stream {
				if r.Skipped {
					skipped++
				}
			}
			if skipped != 1 {
				t.Errorf("%d images skipped, want the untagged one: %+v", skipped, stream)
			}
		})
	}
}

// TestLoadStreamEdgeCases: links to members that come later, hardlinks and a name stored
// twice (the last wins, as extraction does) load as with Load.
func TestLoadStreamEdgeCases(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"symlink chain before its target", archivetest.SymlinkChain()},
		{"hardlink", archivetest.HardlinkLayer()},
		{"duplicate member", archivetest.DuplicateMember()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			load, stream, ld, sd, lerr, serr := loadBoth(t, tc.data, nil)
			if lerr != nil || serr != nil {
				t.Fatalf("Load: %v; LoadStream: %v", lerr, serr)
			}
			compareLoads(t, load, stream, ld, sd)
		})
	}
}

// TestLoadStreamFixtures loads the archives real tools wrote, plain and compressed.
func TestLoadStreamFixtures(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(fixtures, "*.tar*"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			// Name the untagged images, so that every image is loaded.
			var opts []dcopy.Option
			a, err := archive.Open(p, archive.WithTempDir(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			for _, img := range a.Images() {
				if len(img.Tags) == 0 {
					opts = append(opts, dcopy.WithNames(img.Index, tagged(t, fmt.Sprintf("example.com/untagged:%d", img.Index))))
				}
			}
			a.Close()
			load, stream, ld, sd, lerr, serr := loadBoth(t, data, nil, opts...)
			if lerr != nil || serr != nil {
				t.Fatalf("Load: %v; LoadStream: %v", lerr, serr)
			}
			compareLoads(t, load, stream, ld, sd)
		})
	}
}

// TestLoadStreamUncompressedLayers: with OCIAcceptUncompressedLayers nothing is recompressed,
// so a Docker 25 archive's own manifests arrive unchanged (the image digests are preserved),
// as with Load.
func TestLoadStreamUncompressedLayers(t *testing.T) {
	data, err := archivetest.BuildBytes(archivetest.SharedImages(), archivetest.Options{Layout: archivetest.Docker25, Compression: "zstd"})
	if err != nil {
		t.Fatal(err)
	}
	sys := &types.SystemContext{OCIAcceptUncompressedLayers: true}
	load, stream, ld, sd, lerr, serr := loadBoth(t, data, nil, dcopy.WithSystemContext(sys))
	if lerr != nil || serr != nil {
		t.Fatalf("Load: %v; LoadStream: %v", lerr, serr)
	}
	compareLoads(t, load, stream, ld, sd)
	a, err := archive.OpenStream(bytes.NewReader(data), archive.WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, r := range stream {
		if r.Skipped {
			continue
		}
		d, err := a.Inspect(mustIndex(t, r.Index))
		if err != nil {
			t.Fatal(err)
		}
		if !d.OwnManifest || digest.FromBytes(d.Manifest) != r.Manifest {
			t.Errorf("@%d: wrote manifest %s, the archive's own is %s (own: %v)", r.Index, r.Manifest, digest.FromBytes(d.Manifest), d.OwnManifest)
		}
	}
}

// TestLoadStreamSelectors: selectors and names pick the same images as with Load.
func TestLoadStreamSelectors(t *testing.T) {
	data, err := archivetest.BuildBytes(archivetest.SharedImages(), archivetest.Options{Layout: archivetest.Docker24})
	if err != nil {
		t.Fatal(err)
	}
	sels := []reference.Selector{mustIndex(t, 2), mustSelector(t, "busybox"), mustIndex(t, 1)}
	load, stream, ld, sd, lerr, serr := loadBoth(t, data, sels, dcopy.WithNames(2, tagged(t, "example.com/named:v1")))
	if lerr != nil || serr != nil {
		t.Fatalf("Load: %v; LoadStream: %v", lerr, serr)
	}
	if len(stream) != 2 || stream[0].Index != 2 || stream[1].Index != 1 || stream[0].Skipped {
		t.Errorf("got %+v, want @2 (named) and @1", stream)
	}
	compareLoads(t, load, stream, ld, sd)
	_, err = dcopy.LoadStream(context.Background(), bytes.NewReader(data), mustDest(t, "oci:"+t.TempDir()), []reference.Selector{mustSelector(t, "nothere")})
	if !errors.Is(err, archive.ErrImageNotFound) {
		t.Errorf("unknown tag: got %v, want ErrImageNotFound", err)
	}
}

func mustSelector(t *testing.T, s string) reference.Selector {
	t.Helper()
	sel, err := reference.ParseSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func mustDest(t *testing.T, s string) dcopy.Destination {
	t.Helper()
	d, err := dcopy.ParseDestination(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestLoadStreamCorruptLayer: an image whose layer does not match its diffID fails with
// ErrDigestMismatch; the other images are loaded.
func TestLoadStreamCorruptLayer(t *testing.T) {
	good := archivetest.Layer(7, 2, 3000)
	bad := archivetest.Layer(8, 2, 3000)
	for _, layout := range []archivetest.Layout{archivetest.ContainersImage, archivetest.Crane} {
		t.Run(layout.String(), func(t *testing.T) {
			data, err := archivetest.BuildBytes([]archivetest.Image{
				{Tags: []string{"example.com/good:1"}, Layers: [][]byte{good}},
				{Tags: []string{"example.com/bad:1"}, Layers: [][]byte{bad}},
			}, archivetest.Options{Layout: layout})
			if err != nil {
				t.Fatal(err)
			}
			corrupt(t, data, bad)
			dir := t.TempDir()
			results, err := dcopy.LoadStream(context.Background(), bytes.NewReader(data), mustDest(t, "oci:"+dir), nil)
			if !errors.Is(err, archive.ErrDigestMismatch) {
				t.Fatalf("got %v, want ErrDigestMismatch", err)
			}
			var good, bad dcopy.Result
			for _, r := range results {
				if slices.Contains(r.Tags, "example.com/good:1") {
					good = r
				} else {
					bad = r
				}
			}
			if good.Err != nil || len(good.Destinations) != 1 {
				t.Errorf("good image: %+v", good)
			}
			if !errors.Is(bad.Err, archive.ErrDigestMismatch) || len(bad.Destinations) != 0 {
				t.Errorf("bad image: %+v", bad)
			}
			refs := readLayout(t, dir)
			if _, ok := refs["example.com/bad:1"]; ok || len(refs) != 1 {
				t.Errorf("layout refs %v, want only the good image", refs)
			}
		})
	}
}

// corrupt flips a byte of layer's content wherever the archive stores it: as is, or inside a
// gzip stream (where flipping a byte breaks the stream or its checksum).
func corrupt(t *testing.T, data, layer []byte) {
	t.Helper()
	if i := bytes.Index(data, layer[512:600]); i >= 0 {
		data[i+10] ^= 0xff
		return
	}
	gz := archivetest.GzipBytes(layer)
	if i := bytes.Index(data, gz); i >= 0 {
		data[i+len(gz)/2] ^= 0xff
		return
	}
	t.Fatal("layer not found in the archive")
}

// TestLoadStreamNoTempFiles loads a compressed archive with TMPDIR pointing at a directory
// that does not exist: any temp file would fail. Load, which spools compressed input, fails
// there; LoadStream does not.
func TestLoadStreamNoTempFiles(t *testing.T) {
	data, err := archivetest.BuildBytes(archivetest.SharedImages(), archivetest.Options{Layout: archivetest.ContainersImage, Compression: "zstd"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "does-not-exist"))
	if _, err := archive.OpenStream(bytes.NewReader(data)); err == nil {
		t.Fatal("spooling worked without a temp directory; the test proves nothing")
	}
	dir := filepath.Join(t.TempDir(), "layout")
	in := &countingReader{r: bytes.NewReader(data)}
	results, err := dcopy.LoadStream(context.Background(), in, mustDest(t, "oci:"+dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	if in.n != int64(len(data)) {
		t.Errorf("read %d bytes of %d", in.n, len(data))
	}
	if got := readLayout(t, dir); len(got) != 3 {
		t.Errorf("layout has %d refs, want 3: %v", len(got), got)
	}
	if len(results) != 3 || results[0].Err != nil || results[1].Err != nil || !results[2].Skipped {
		t.Errorf("results %+v", results)
	}
}

// TestLoadStreamLimits: past the memory budget the load fails with ErrTooLarge (nothing is
// spooled instead); dir: destinations are refused.
func TestLoadStreamLimits(t *testing.T) {
	data, err := archivetest.BuildBytes(archivetest.SharedImages(), archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	_, err = dcopy.LoadStream(context.Background(), bytes.NewReader(data), mustDest(t, "oci:"+t.TempDir()), nil, dcopy.WithStreamMemory(2000))
	if !errors.Is(err, archive.ErrTooLarge) {
		t.Errorf("memory budget: got %v, want ErrTooLarge", err)
	}
	_, err = dcopy.LoadStream(context.Background(), bytes.NewReader(data), mustDest(t, "dir:"+t.TempDir()), nil)
	if !errors.Is(err, dcopy.ErrStreamUnsupported) {
		t.Errorf("dir: got %v, want ErrStreamUnsupported", err)
	}
}

// TestLoadStreamRegistry loads the podman fixture into a real registry both ways — Load from
// the file, LoadStream from its zstd-compressed copy — and compares every tag's manifest and
// config digests. Layers go to a staging repository once and are mounted into each image's
// repository.
func TestLoadStreamRegistry(t *testing.T) {
	reg := testtools.StartRegistry(t, "")
	ctx := context.Background()
	for _, fixture := range []struct{ plain, compressed string }{
		{"podman-save-m.tar", "podman-save-m.tar.zst"},
		{"docker20-save-multi.tar", "docker20-save-multi.tar.xz"},
		{"crane-pull-multi.tar", "crane-pull-multi.tar.bz2"},
	} {
		t.Run(fixture.compressed, func(t *testing.T) {
			a, err := archive.Open(filepath.Join(fixtures, fixture.plain))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			ns := strings.NewReplacer(".", "-").Replace(fixture.plain)
			loadNS, streamNS := "load-"+ns, "stream-"+ns
			load, err := dcopy.Load(ctx, a, mustDest(t, "docker://"+reg.Addr+"/"+loadNS), nil, dcopy.WithSystemContext(insecureSys()))
			if err != nil {
				t.Fatal(err)
			}
			compressed, err := os.ReadFile(filepath.Join(fixtures, fixture.compressed))
			if err != nil {
				t.Fatal(err)
			}
			in := &countingReader{r: bytes.NewReader(compressed)}
			stream, err := dcopy.LoadStream(ctx, in, mustDest(t, "docker://"+reg.Addr+"/"+streamNS), nil, dcopy.WithSystemContext(insecureSys()))
			if err != nil {
				t.Fatal(err)
			}
			if in.n != int64(len(compressed)) {
				t.Errorf("read %d bytes of %d", in.n, len(compressed))
			}
			if len(stream) != len(load) {
				t.Fatalf("%d results, want %d", len(stream), len(load))
			}
			for i, l := range load {
				s := stream[i]
				if s.Manifest != l.Manifest || s.ImageID != l.ImageID || len(s.Destinations) != len(l.Destinations) {
					t.Errorf("@%d: LoadStream %+v, Load %+v", i, s, l)
				}
				for j, d := range l.Destinations {
					repoTag := strings.TrimPrefix(d, "docker://"+reg.Addr+"/")
					repo, tag, _ := strings.Cut(repoTag, ":")
					lm, lc := remoteDigests(t, reg.Addr, repo, tag)
					sm, sc := remoteDigests(t, reg.Addr, strings.Replace(repo, loadNS, streamNS, 1), tag)
					if sm != lm || sc != lc {
						t.Errorf("@%d %s: LoadStream wrote manifest %s config %s, Load %s %s", i, repoTag, sm, sc, lm, lc)
					}
					if want := strings.Replace(d, loadNS, streamNS, 1); s.Destinations[j] != want {
						t.Errorf("@%d: destination %q, want %q", i, s.Destinations[j], want)
					}
				}
			}
		})
	}
}

// TestLoadStreamRegistryRepos: an image named into two repositories gets its layers mounted
// into both, and a shared layer into every image's repository, with the manifests Load writes.
func TestLoadStreamRegistryRepos(t *testing.T) {
	reg := testtools.StartRegistry(t, "")
	ctx := context.Background()
	path := filepath.Join(fixtures, "podman-save-m.tar")
	names := []dcopy.Option{dcopy.WithSystemContext(insecureSys()),
		dcopy.WithNames(0, tagged(t, "example.com/p/one:1"), tagged(t, "example.com/q/two:1")),
		dcopy.WithNames(1, tagged(t, "example.com/r/three:1"))}
	a, err := archive.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	load, err := dcopy.Load(ctx, a, mustDest(t, "docker://"+reg.Addr+"/load"), nil, names...)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stream, err := dcopy.LoadStream(ctx, f, mustDest(t, "docker://"+reg.Addr+"/stream"), nil, names...)
	if err != nil {
		t.Fatal(err)
	}
	for _, repo := range []string{"p/one", "q/two", "r/three"} {
		lm, lc := remoteDigests(t, reg.Addr, "load/"+repo, "1")
		sm, sc := remoteDigests(t, reg.Addr, "stream/"+repo, "1")
		if sm != lm || sc != lc {
			t.Errorf("%s: LoadStream wrote manifest %s config %s, Load %s %s", repo, sm, sc, lm, lc)
		}
	}
	if len(stream) != len(load) || stream[0].Manifest != load[0].Manifest {
		t.Errorf("results: LoadStream %+v, Load %+v", stream, load)
	}
}

// TestLoadStreamRegistryAuth: with a password-protected registry, good credentials work
// (uploads to the staging repository and mounts included) and bad ones stop the load at the
// first upload with an error that says so.
func TestLoadStreamRegistryAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("darc:"+string(hash)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := testtools.StartRegistry(t, htpasswd)
	// Layers of a few MiB each, so that reading stops well before the end.
	var images []archivetest.Image
	for i := range 3 {
		images = append(images, archivetest.Image{Tags: []string{fmt.Sprintf("example.com/auth/img%d:1", i)}, Layers: [][]byte{archivetest.Layer(int64(i), 6, 500_000)}})
	}
	data, err := archivetest.BuildBytes(images, archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	sys := func(user, pass string) *types.SystemContext {
		s := insecureSys()
		s.DockerAuthConfig = &types.DockerAuthConfig{Username: user, Password: pass}
		s.AuthFilePath = filepath.Join(t.TempDir(), "auth.json") // ignore the machine's auth files
		return s
	}
	dest := mustDest(t, "docker://"+reg.Addr+"/team")
	in := &countingReader{r: bytes.NewReader(data)}
	_, err = dcopy.LoadStream(context.Background(), in, dest, nil, dcopy.WithSystemContext(sys("darc", "wrong")))
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authentication required") {
		t.Fatalf("bad password: got %v, want an authentication error", err)
	}
	if in.n == int64(len(data)) {
		t.Error("bad password: the whole archive was read before giving up")
	}
	results, err := dcopy.LoadStream(context.Background(), bytes.NewReader(data), dest, nil, dcopy.WithSystemContext(sys("darc", "s3cret")))
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 3 || len(results[2].Destinations) != 1 {
		t.Errorf("got %+v", results)
	}
}
