package copy_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	distref "github.com/distribution/reference"
	cicopy "go.podman.io/image/v5/copy"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/testtools"
)

// TestLoadOCIMatchesCopyImage loads every generated layout and a real-tool fixture into an
// OCI layout, and copies the same images with containers/image's copy.Image alone into
// another: the manifests (so every layer digest) and configs must be the same. Load
// compresses layers itself (layerReuse) instead of leaving it to copy.Image; this is what
// says its bytes are copy.Image's. One run asks for compression level 1.
func TestLoadOCIMatchesCopyImage(t *testing.T) {
	srcs := map[string]string{"podman-save-m.tar": filepath.Join(fixtures, "podman-save-m.tar")}
	for _, v := range archivetest.Variants() {
		data, err := archivetest.BuildBytes(archivetest.SharedImages(), v.Opts)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		srcs[v.Name] = filepath.Join(t.TempDir(), "in.tar")
		writeFile(t, srcs[v.Name], data)
	}
	level1 := 1
	for name, path := range srcs {
		for _, sys := range []*types.SystemContext{nil, {CompressionLevel: &level1}} {
			t.Run(name, func(t *testing.T) {
				a, err := archive.Open(path, archive.WithTempDir(t.TempDir()))
				if err != nil {
					t.Fatal(err)
				}
				defer a.Close()
				loaded, plain := filepath.Join(t.TempDir(), "load"), filepath.Join(t.TempDir(), "plain")
				dest, err := dcopy.ParseDestination("oci:" + loaded)
				if err != nil {
					t.Fatal(err)
				}
				results, _ := dcopy.Load(context.Background(), a, dest, nil, dcopy.WithSystemContext(sys))
				pc := acceptAnything(t)
				refs := a.References()
				copied := 0
				for _, res := range results {
					if res.Err != nil {
						if !res.Skipped {
							t.Errorf("image %d: %v", res.Index, res.Err)
						}
						continue
					}
					for _, tag := range res.Tags {
						dst, err := ocilayout.NewReference(plain, tag)
						if err != nil {
							t.Fatal(err)
						}
						if _, err := cicopy.Image(context.Background(), pc, dst, refs[res.Index], &cicopy.Options{SourceCtx: sys, DestinationCtx: sys}); err != nil {
							t.Fatal(err)
						}
						copied++
					}
				}
				if copied == 0 {
					t.Fatal("no image loaded")
				}
				want, got := readLayout(t, plain), readLayout(t, loaded)
				if len(got) != len(want) {
					t.Errorf("Load wrote %d refs, copy.Image %d", len(got), len(want))
				}
				for ref, w := range want {
					if g := got[ref]; g != w {
						t.Errorf("ref %q: Load wrote %+v, copy.Image %+v", ref, g, w)
					}
				}
			})
		}
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadRegistryMatchesCopyImage loads archives into a real registry, and pushes the same
// images with containers/image's copy.Image alone into another namespace: the manifests
// must have the same digests. Load compresses layers itself on the way to a registry too.
func TestLoadRegistryMatchesCopyImage(t *testing.T) {
	reg := testtools.StartRegistry(t, "")
	data, err := archivetest.BuildBytes(archivetest.SharedImages(), archivetest.Options{Layout: archivetest.Docker24})
	if err != nil {
		t.Fatal(err)
	}
	generated := filepath.Join(t.TempDir(), "gen.tar")
	writeFile(t, generated, data)
	pc := acceptAnything(t)
	for i, path := range []string{filepath.Join(fixtures, "podman-save-m.tar"), generated} {
		a, err := archive.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		ns := fmt.Sprintf("load%d", i)
		dest, err := dcopy.ParseDestination("docker://" + reg.Addr + "/" + ns)
		if err != nil {
			t.Fatal(err)
		}
		results, _ := dcopy.Load(context.Background(), a, dest, nil, dcopy.WithSystemContext(insecureSys()))
		refs := a.References()
		compared := 0
		for _, res := range results {
			if res.Err != nil {
				if !res.Skipped {
					t.Errorf("%s image %d: %v", path, res.Index, res.Err)
				}
				continue
			}
			for k, tag := range res.Tags {
				nt := tagged(t, tag)
				repoTag := distref.Path(nt) + ":" + nt.Tag()
				plain, err := dcopy.ParseReference(fmt.Sprintf("docker://%s/plain%d/%s", reg.Addr, i, repoTag))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := cicopy.Image(context.Background(), pc, plain, refs[res.Index], &cicopy.Options{SourceCtx: insecureSys(), DestinationCtx: insecureSys()}); err != nil {
					t.Fatal(err)
				}
				wantM, wantC := remoteDigests(t, reg.Addr, fmt.Sprintf("plain%d/%s", i, distref.Path(nt)), nt.Tag())
				gotM, gotC := remoteDigests(t, reg.Addr, fmt.Sprintf("%s/%s", ns, distref.Path(nt)), nt.Tag())
				if gotM != wantM || gotC != wantC {
					t.Errorf("%s: Load pushed manifest %s config %s, copy.Image %s %s", tag, gotM, gotC, wantM, wantC)
				}
				if k == 0 && res.Manifest != gotM {
					t.Errorf("%s: result says manifest %s, the registry has %s", tag, res.Manifest, gotM)
				}
				compared++
			}
		}
		if compared == 0 {
			t.Errorf("%s: nothing loaded", path)
		}
	}
}

// TestImageOCIMatchesCopyImage: copy.Image from an archive into an OCI layout (darc cp)
// compresses layers itself, as Load does; the manifest must be copy.Image's own.
func TestImageOCIMatchesCopyImage(t *testing.T) {
	src, err := dcopy.ParseReference("docker-archive:" + filepath.Join(fixtures, "podman-save-m.tar") + ":@1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ours, err := dcopy.ParseReference("oci:" + filepath.Join(dir, "ours") + ":x")
	if err != nil {
		t.Fatal(err)
	}
	res, err := dcopy.Image(context.Background(), src, ours)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := ocilayout.NewReference(filepath.Join(dir, "plain"), "x")
	if err != nil {
		t.Fatal(err)
	}
	pc := acceptAnything(t)
	if _, err := cicopy.Image(context.Background(), pc, plain, src, nil); err != nil {
		t.Fatal(err)
	}
	want, got := readLayout(t, filepath.Join(dir, "plain")), readLayout(t, filepath.Join(dir, "ours"))
	if got["x"] != want["x"] || res.Manifest != want["x"].manifest {
		t.Errorf("darc wrote %+v (result %s), copy.Image %+v", got["x"], res.Manifest, want["x"])
	}
}

// TestImageArchiveMatchesCopyImage: `darc cp` from one archive into a new one pairs the
// destination with its source, and writes the archive plain copy.Image writes, byte for byte;
// the result counts the bytes read.
func TestImageArchiveMatchesCopyImage(t *testing.T) {
	src, err := dcopy.ParseReference("docker-archive:" + filepath.Join(fixtures, "podman-save-m.tar") + ":@1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ours, err := dcopy.ParseReference("docker-archive:" + filepath.Join(dir, "ours.tar"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := dcopy.Image(context.Background(), src, ours)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := dcopy.ParseReference("docker-archive:" + filepath.Join(dir, "plain.tar"))
	if err != nil {
		t.Fatal(err)
	}
	pc := acceptAnything(t)
	if _, err := cicopy.Image(context.Background(), pc, plain, src, nil); err != nil {
		t.Fatal(err)
	}
	a, errA := os.ReadFile(filepath.Join(dir, "ours.tar"))
	b, errB := os.ReadFile(filepath.Join(dir, "plain.tar"))
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("darc cp wrote %d bytes, copy.Image %d: not the same archive", len(a), len(b))
	}
	in, err := archive.Open(filepath.Join(fixtures, "podman-save-m.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	d, err := in.Inspect(mustIndex(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	want := int64(len(d.Config))
	for _, l := range d.Layers {
		want += l.Size
	}
	if res.Bytes != want {
		t.Errorf("result counts %d bytes read, the image has %d", res.Bytes, want)
	}
}

// acceptAnything is a policy context accepting every image, as darc's default policy does;
// the test destroys it.
func acceptAnything(t *testing.T) *signature.PolicyContext {
	t.Helper()
	pc, err := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Destroy() })
	return pc
}
