package archive_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/archivetest"
)

// TestConcurrentReaders opens archives of several kinds (a real podman fixture, Docker 25+
// with its own manifests, crane zstd layers, gzip members whose digest the archive does not
// state, so that reading them also decompresses them to check the diffID, a legacy archive,
// and a whole-archive zstd stream read from its spool file) and, for each, in several rounds
// on a freshly opened archive, starts 32 goroutines at once that each read every blob of every
// image through the image source, twice, while two more run Verify. Every read must verify,
// return the size announced and content hashing to the digest asked for, and every goroutine
// must see the same content for every blob. Run under -race by CI.
func TestConcurrentReaders(t *testing.T) {
	const goroutines, rounds, passes = 32, 3, 2
	podman, err := os.ReadFile(filepath.Join(fixtureDir, "podman-save-m.tar"))
	if err != nil {
		t.Fatal(err)
	}
	inputs := []damageInput{{name: "podman-save-m.tar", data: podman}}
	for _, g := range []struct {
		name string
		opts archivetest.Options
	}{
		{"docker25", archivetest.Options{Layout: archivetest.Docker25}},
		{"crane-zstd", archivetest.Options{Layout: archivetest.Crane, ZstdLayers: true}},
		{"docker24-gzip-members", archivetest.Options{Layout: archivetest.Docker24, GzipMembers: true}},
		{"legacy", archivetest.Options{Layout: archivetest.Legacy}},
		{"buildkit.tar.zst", archivetest.Options{Layout: archivetest.BuildKit, Compression: "zstd"}},
	} {
		data, err := archivetest.BuildBytes(archivetest.SharedImages(), g.opts)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, damageInput{name: g.name, data: data})
	}
	ctx := context.Background()
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			path := writeTemp(t, in.data)
			spool := t.TempDir()
			blobs, reads := 0, 0
			for round := 0; round < rounds; round++ {
				a, err := archive.Open(path, archive.WithTempDir(spool))
				if err != nil {
					t.Fatal(err)
				}
				refs := a.References()
				results := make([]map[string]digest.Digest, goroutines)
				start := make(chan struct{})
				var wg sync.WaitGroup
				errs := make(chan error, goroutines+2)
				for g := 0; g < goroutines; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						got, err := hashAllBlobs(ctx, refs, passes)
						results[g] = got
						if err != nil {
							errs <- fmt.Errorf("goroutine %d: %w", g, err)
						}
					}()
				}
				for v := 0; v < 2; v++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						for _, p := range a.Verify(ctx, 4) {
							if !p.Warning {
								errs <- fmt.Errorf("verify: %v", p)
							}
						}
					}()
				}
				close(start)
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
				for g := 1; g < goroutines; g++ {
					if !reflect.DeepEqual(results[g], results[0]) {
						t.Fatalf("round %d: goroutine %d read %v, goroutine 0 %v", round, g, results[g], results[0])
					}
				}
				if len(results[0]) == 0 {
					t.Fatal("no blob read")
				}
				blobs = len(results[0])
				reads += goroutines * passes * blobs
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
				if left, _ := os.ReadDir(spool); len(left) != 0 {
					t.Fatalf("spool directory holds %d entries after Close", len(left))
				}
			}
			t.Logf("CONCURRENCY %s: %d rounds × %d goroutines × %d passes over %d blobs = %d verified reads, all identical",
				in.name, rounds, goroutines, passes, blobs, reads)
		})
	}
}

// hashAllBlobs reads every blob (config and layers) of every image passes times through image
// sources and returns, per "@index digest", the sha256 of what was read; content that does not
// hash to its digest, or not as long as GetBlob said, is an error, as is a difference between
// passes.
func hashAllBlobs(ctx context.Context, refs []types.ImageReference, passes int) (map[string]digest.Digest, error) {
	out := map[string]digest.Digest{}
	for pass := 0; pass < passes; pass++ {
		for i, ref := range refs {
			img, err := ref.NewImage(ctx, nil)
			if err != nil {
				return nil, err
			}
			src, err := ref.NewImageSource(ctx, nil)
			if err != nil {
				img.Close()
				return nil, err
			}
			for _, bi := range append(img.LayerInfos(), img.ConfigInfo()) {
				rc, size, err := src.GetBlob(ctx, bi, nil)
				if err != nil {
					return nil, err
				}
				h := sha256.New()
				n, err := io.Copy(h, rc)
				rc.Close()
				if err != nil {
					return nil, err
				}
				got := digest.NewDigest(digest.SHA256, h)
				if got != bi.Digest || (size >= 0 && n != size) {
					return nil, fmt.Errorf("@%d blob %s: read %d bytes hashing to %s, GetBlob said %d bytes", i, bi.Digest, n, got, size)
				}
				key := fmt.Sprintf("@%d %s", i, bi.Digest)
				if prev, ok := out[key]; ok && prev != got {
					return nil, fmt.Errorf("@%d blob %s: pass %d read %s, an earlier pass %s", i, bi.Digest, pass, got, prev)
				}
				out[key] = got
			}
			src.Close()
			img.Close()
		}
	}
	return out, nil
}
