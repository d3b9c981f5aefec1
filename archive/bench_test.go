package archive_test

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	ciarchive "go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/archivetest"
)

// Benchmarks. Run them with
//
//	go test -tags containers_image_openpgp -run '^$' -bench . -benchtime 5x ./archive/
//
// The generated archives are written once per process to a temp directory.

var (
	// benchDirs are the temp directories the generated archives live in, removed by TestMain.
	benchDirs   []string
	benchDirsMu sync.Mutex

	bigOnce sync.Once
	bigPath string
	bigErr  error

	blobsOnce sync.Once
	blobsPath string
	blobsSize int64
	blobsErr  error
)

// TestMain removes the benchmarks' generated archives when the package's tests end.
func TestMain(m *testing.M) {
	code := m.Run()
	benchDirsMu.Lock()
	for _, d := range benchDirs {
		_ = os.RemoveAll(d)
	}
	benchDirsMu.Unlock()
	os.Exit(code)
}

// benchDir makes a temp directory that TestMain removes.
func benchDir() (string, error) {
	dir, err := os.MkdirTemp("", "darc-bench-")
	if err == nil {
		benchDirsMu.Lock()
		benchDirs = append(benchDirs, dir)
		benchDirsMu.Unlock()
	}
	return dir, err
}

// bigArchive is 10,000 images and 100,000 members (about 100 MB).
func bigArchive(b *testing.B) string {
	bigOnce.Do(func() {
		dir, err := benchDir()
		if err != nil {
			bigErr = err
			return
		}
		bigPath = filepath.Join(dir, "big.tar")
		f, err := os.Create(bigPath)
		if err != nil {
			bigErr = err
			return
		}
		if _, err := archivetest.BigArchive(f, 10_000, 100_000); err != nil {
			bigErr = err
		}
		if err := f.Close(); err != nil && bigErr == nil {
			bigErr = err
		}
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return bigPath
}

// blobArchive is 4 images sharing 3 base layers (96, 48 and 16 MiB of random file content)
// with one 8 MiB app layer each: 192 MiB of unique layer data, uncompressed as docker save
// writes it.
func blobArchive(b *testing.B) (string, int64) {
	blobsOnce.Do(func() {
		bases := [][]byte{archivetest.Layer(1, 24, 4<<20), archivetest.Layer(2, 12, 4<<20), archivetest.Layer(3, 4, 4<<20)}
		var imgs []archivetest.Image
		for i := 0; i < 4; i++ {
			app := archivetest.Layer(int64(10+i), 2, 4<<20)
			imgs = append(imgs, archivetest.Image{Tags: []string{"example.com/bench/app" + string(rune('a'+i)) + ":1"}, Layers: [][]byte{bases[0], bases[1], bases[2], app}})
			blobsSize += int64(len(app))
		}
		for _, l := range bases {
			blobsSize += int64(len(l))
		}
		dir, err := benchDir()
		if err != nil {
			blobsErr = err
			return
		}
		blobsPath = filepath.Join(dir, "blobs.tar")
		f, err := os.Create(blobsPath)
		if err != nil {
			blobsErr = err
			return
		}
		blobsErr = archivetest.Build(f, imgs, archivetest.Options{Layout: archivetest.ContainersImage})
		if err := f.Close(); err != nil && blobsErr == nil {
			blobsErr = err
		}
	})
	if blobsErr != nil {
		b.Fatal(blobsErr)
	}
	return blobsPath, blobsSize
}

// BenchmarkOpenListBig opens the 10,000-image, 100,000-member archive and lists it.
func BenchmarkOpenListBig(b *testing.B) {
	path := bigArchive(b)
	b.ResetTimer()
	for b.Loop() {
		a, err := archive.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if n := len(a.Images()); n != 10_000 {
			b.Fatalf("listed %d images", n)
		}
		if err := a.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPeerContainersImageListBig is the same with containers/image's own docker-archive
// reader (NewReader + List), for comparison.
func BenchmarkPeerContainersImageListBig(b *testing.B) {
	path := bigArchive(b)
	b.ResetTimer()
	for b.Loop() {
		r, err := ciarchive.NewReader(&types.SystemContext{}, path)
		if err != nil {
			// containers/image caps manifest.json at 1 MiB; this one is several MiB.
			b.Skipf("containers/image cannot open the archive: %v", err)
		}
		refs, err := r.List()
		if err != nil {
			b.Fatal(err)
		}
		if len(refs) != 10_000 {
			b.Fatalf("listed %d images", len(refs))
		}
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// readAllBlobs reads every distinct layer of every image through the ImageSource, verified.
func readAllBlobs(b *testing.B, refs []types.ImageReference) int64 {
	ctx := context.Background()
	seen := map[string]bool{}
	var n int64
	for _, ref := range refs {
		src, err := ref.NewImageSource(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		img, err := ref.NewImage(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range img.LayerInfos() {
			if seen[l.Digest.String()] {
				continue
			}
			seen[l.Digest.String()] = true
			rc, _, err := src.GetBlob(ctx, l, nil)
			if err != nil {
				b.Fatal(err)
			}
			m, err := io.Copy(io.Discard, rc)
			if err != nil {
				b.Fatal(err)
			}
			n += m
			rc.Close()
		}
		img.Close()
		src.Close()
	}
	return n
}

// BenchmarkReadAllBlobs reads and verifies every layer of a 192 MiB archive once; compare
// its MB/s with BenchmarkSHA256 (the floor: every byte is hashed once).
func BenchmarkReadAllBlobs(b *testing.B) {
	path, size := blobArchive(b)
	a, err := archive.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	refs := a.References()
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if n := readAllBlobs(b, refs); n != size {
			b.Fatalf("read %d bytes, want %d", n, size)
		}
	}
}

// BenchmarkPeerContainersImageReadAllBlobs does the same through containers/image's reader.
func BenchmarkPeerContainersImageReadAllBlobs(b *testing.B) {
	path, size := blobArchive(b)
	r, err := ciarchive.NewReader(&types.SystemContext{}, path)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	lists, err := r.List()
	if err != nil {
		b.Fatal(err)
	}
	var refs []types.ImageReference
	for _, l := range lists {
		refs = append(refs, l[0])
	}
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if n := readAllBlobs(b, refs); n != size {
			b.Fatalf("read %d bytes, want %d", n, size)
		}
	}
}

// BenchmarkSHA256 is single-core sha256 over a cached buffer on this machine, the reference
// for BenchmarkReadAllBlobs.
func BenchmarkSHA256(b *testing.B) {
	buf := make([]byte, 64<<20)
	b.SetBytes(int64(len(buf)))
	h := sha256.New()
	for b.Loop() {
		h.Write(buf)
	}
}
