package copy_test

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/archivetest"
)

// Benchmarks of loading a compressed archive into an OCI layout: in one pass (LoadStream)
// and by spooling it to a temp file and loading from there (archive.Open + Load). Run with
//
//	go test -tags containers_image_openpgp -run '^$' -bench LoadCompressed -benchtime 3x ./copy/
//
// The archive (12 images sharing three base layers, about 310 MB uncompressed, compressible
// content) is generated once per process, whole-archive compressed with zstd and gzip. The
// temp-B/op metric is what each path writes to TMPDIR: the decompressed archive for the
// spool path; LoadStream runs with TMPDIR pointing at a directory that does not exist.

var (
	benchOnce  sync.Once
	benchDir   string
	benchPaths map[string]string
	benchSize  int64 // uncompressed
	benchErr   error
)

// compressibleLayer is a layer of n files of size bytes whose content compresses about 3:1
// (64-byte pieces drawn from a small random dictionary), closer to real layers than random
// bytes.
func compressibleLayer(seed int64, n, size int) []byte {
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	dict := make([][]byte, 2048)
	for i := range dict {
		dict[i] = make([]byte, 64)
		for j := range dict[i] {
			dict[i][j] = byte(rng.UintN(256))
		}
	}
	var buf writerBuf
	tw := tar.NewWriter(&buf)
	body := make([]byte, size)
	for i := 0; i < n; i++ {
		for j := 0; j < size; j += 64 {
			copy(body[j:], dict[rng.IntN(len(dict))])
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("f%04d", i), Mode: 0o644, Size: int64(size), Format: tar.FormatUSTAR}); err != nil {
			panic(err)
		}
		if _, err := tw.Write(body); err != nil {
			panic(err)
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	return buf.b
}

type writerBuf struct{ b []byte }

func (w *writerBuf) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

func benchArchives(b *testing.B) (map[string]string, int64) {
	benchOnce.Do(func() {
		bases := [][]byte{compressibleLayer(1, 24, 4<<20), compressibleLayer(2, 16, 4<<20), compressibleLayer(3, 8, 4<<20)}
		var imgs []archivetest.Image
		for i := 0; i < 12; i++ {
			app := compressibleLayer(int64(10+i), 5, 2<<20)
			imgs = append(imgs, archivetest.Image{Tags: []string{fmt.Sprintf("example.com/bench/app%d:1", i)}, Layers: [][]byte{bases[i%3], app}})
		}
		if benchDir, benchErr = os.MkdirTemp("", "darc-stream-bench-"); benchErr != nil {
			return
		}
		plain := filepath.Join(benchDir, "bundle.tar")
		f, err := os.Create(plain)
		if err != nil {
			benchErr = err
			return
		}
		if benchErr = archivetest.Build(f, imgs, archivetest.Options{Layout: archivetest.ContainersImage}); benchErr != nil {
			return
		}
		if benchErr = f.Close(); benchErr != nil {
			return
		}
		st, err := os.Stat(plain)
		if err != nil {
			benchErr = err
			return
		}
		benchSize = st.Size()
		benchPaths = map[string]string{}
		for _, c := range []string{"zstd", "gzip"} {
			p := plain + "." + c
			if benchErr = compressFile(plain, p, c); benchErr != nil {
				return
			}
			benchPaths[c] = p
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchPaths, benchSize
}

// TestMain removes the benchmark archives, if a benchmark made them.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		_ = os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

func compressFile(src, dst, c string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	var zw io.WriteCloser
	if c == "zstd" {
		zw, err = zstd.NewWriter(bw)
	} else {
		zw, err = gzip.NewWriterLevel(bw, gzip.DefaultCompression)
	}
	if err != nil {
		return err
	}
	if _, err := io.Copy(zw, in); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return out.Close()
}

func BenchmarkLoadCompressed(b *testing.B) {
	paths, size := benchArchives(b)
	ctx := context.Background()
	for _, c := range []string{"zstd", "gzip"} {
		for _, keep := range []bool{false, true} {
			layers := "gzip-layers" // what an OCI layout gets by default: layers compressed
			sys := &types.SystemContext{}
			if keep {
				layers, sys.OCIAcceptUncompressedLayers = "keep-layers", true
			}
			b.Run(fmt.Sprintf("%s/%s/spool", c, layers), func(b *testing.B) {
				b.SetBytes(size)
				tmp := b.TempDir()
				for i := 0; i < b.N; i++ {
					dir := filepath.Join(b.TempDir(), "layout")
					a, err := archive.Open(paths[c], archive.WithTempDir(tmp))
					if err != nil {
						b.Fatal(err)
					}
					_, err = dcopy.Load(ctx, a, mustDestB(b, "oci:"+dir), nil, dcopy.WithSystemContext(sys))
					a.Close()
					if err != nil {
						b.Fatal(err)
					}
					_ = os.RemoveAll(dir)
				}
				b.ReportMetric(float64(size), "temp-B/op")
			})
			b.Run(fmt.Sprintf("%s/%s/stream", c, layers), func(b *testing.B) {
				b.SetBytes(size)
				work := b.TempDir()
				b.Setenv("TMPDIR", filepath.Join(work, "does-not-exist"))
				for i := 0; i < b.N; i++ {
					dir := filepath.Join(work, fmt.Sprint(i))
					f, err := os.Open(paths[c])
					if err != nil {
						b.Fatal(err)
					}
					_, err = dcopy.LoadStream(ctx, f, mustDestB(b, "oci:"+dir), nil, dcopy.WithSystemContext(sys))
					f.Close()
					if err != nil {
						b.Fatal(err)
					}
					_ = os.RemoveAll(dir)
				}
				b.ReportMetric(0, "temp-B/op")
			})
		}
	}
}

func mustDestB(b *testing.B, s string) dcopy.Destination {
	b.Helper()
	d, err := dcopy.ParseDestination(s)
	if err != nil {
		b.Fatal(err)
	}
	return d
}
