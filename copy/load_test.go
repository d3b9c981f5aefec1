package copy_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	cicopy "go.podman.io/image/v5/copy"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/archivetest"
)

// TestLoadOCIMatchesCopyImage loads every generated layout and a real-tool fixture into an
// OCI layout, and copies the same images with containers/image's copy.Image alone into
// another: the manifests (so every layer digest) and configs must be the same. Load
// compresses layers itself (ociReuse) instead of leaving it to copy.Image; this is what
// says its bytes are copy.Image's. One run asks for compression level 1.
func TestLoadOCIMatchesCopyImage(t *testing.T) {
	srcs := map[string]string{"podman-save-m.tar": filepath.Join(fixtures, "podman-save-m.tar")}
	for _, v := range archivetest.Variants() {
		data, err := archivetest.BuildBytes(streamImages(), v.Opts)
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
				pc, err := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Destroy()
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
