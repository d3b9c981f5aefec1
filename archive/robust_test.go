package archive_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/darc-dev/darc/archive"
)

// TestTruncatedFixtures cuts real archives at every 512-byte boundary and a few odd offsets:
// each cut either fails to open with an error, or opens and then either verifies completely
// (a cut that only lost the end-of-archive blocks) or reports errors; nothing panics.
func TestTruncatedFixtures(t *testing.T) {
	for _, name := range []string{"podman-save-m.tar", "docker20-save-multi.tar", "crane-pull-multi.tar"} {
		data, err := os.ReadFile(filepath.Join(fixtureDir, name))
		if err != nil {
			t.Fatal(err)
		}
		whole, err := archive.Open(filepath.Join(fixtureDir, name))
		if err != nil {
			t.Fatal(err)
		}
		full := listing(whole)
		whole.Close()
		var cuts []int
		for c := 0; c < len(data); c += 512 {
			cuts = append(cuts, c, c+1, c+511)
		}
		opened, failed := 0, 0
		for _, c := range cuts {
			if c >= len(data) {
				continue
			}
			p := filepath.Join(t.TempDir(), "cut.tar")
			if err := os.WriteFile(p, data[:c], 0o644); err != nil {
				t.Fatal(err)
			}
			a, err := archive.Open(p)
			if err != nil {
				failed++
				continue
			}
			opened++
			// Whatever opened and verifies clean must be the whole archive's images: a cut may
			// only have lost what no image needs (the trailer, the redundant repositories).
			probs := a.Verify(context.Background(), 2)
			clean := true
			for _, pr := range probs {
				if !pr.Warning {
					clean = false
				}
			}
			if clean && !reflect.DeepEqual(listing(a), full) {
				t.Errorf("%s cut at %d of %d: verified clean but lists %+v, want %+v", name, c, len(data), listing(a), full)
			}
			a.Close()
		}
		t.Logf("%s: %d cuts failed to open, %d opened", name, failed, opened)
	}
}

// TestConcurrentReaders reads every blob of every image of one open archive from 32
// goroutines at once, repeatedly; every read must verify and return the same bytes count.
func TestConcurrentReaders(t *testing.T) {
	a, err := archive.Open(filepath.Join(fixtureDir, "podman-save-m.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	refs := a.References()
	var wg sync.WaitGroup
	totals := make([]int64, 32)
	errs := make(chan error, 32)
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rep := 0; rep < 5; rep++ {
				var n int64
				for _, ref := range refs {
					img, err := ref.NewImage(ctx, nil)
					if err != nil {
						errs <- err
						return
					}
					src, err := ref.NewImageSource(ctx, nil)
					if err != nil {
						errs <- err
						return
					}
					for _, l := range append(img.LayerInfos(), img.ConfigInfo()) {
						rc, _, err := src.GetBlob(ctx, l, nil)
						if err != nil {
							errs <- err
							return
						}
						m, err := io.Copy(io.Discard, rc)
						rc.Close()
						if err != nil {
							errs <- err
							return
						}
						n += m
					}
					src.Close()
					img.Close()
				}
				if rep == 0 {
					totals[g] = n
				} else if n != totals[g] {
					errs <- io.ErrShortBuffer
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for g := 1; g < 32; g++ {
		if totals[g] != totals[0] || totals[0] == 0 {
			t.Fatalf("goroutine %d read %d bytes, goroutine 0 %d", g, totals[g], totals[0])
		}
	}
}
