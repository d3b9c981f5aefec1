package tarfile

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/darc-dev/darc/internal/archivetest"
)

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// countReads counts the bytes read through it.
type countReads struct {
	r io.Reader
	n int64
}

func (c *countReads) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// readAhead bounds what a reader may take from its input beyond what it uses: the 1 MiB
// buffer in front of the decompressor.
const inputReadAhead = 1 << 20

// TestSpoolStopsAtTarEnd: whatever follows the end of the tar (padding, 256 MiB of zeros,
// data) is neither spooled nor read past trailLimit, by OpenStream and by ReadStream, and
// Trailer describes it. The archive opens the same way in every case.
func TestSpoolStopsAtTarEnd(t *testing.T) {
	tarData, err := archivetest.BuildBytes([]archivetest.Image{archivetest.EdgeImage()}, archivetest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, 4096)
	_, _ = rand.Read(garbage)
	const lots = 256 << 20
	tests := []struct {
		name string
		tar  []byte // the tar, up to where it ends
		tail func() io.Reader
		want Trailer
	}{
		{"nothing after the end blocks", tarData, func() io.Reader { return bytes.NewReader(nil) }, Trailer{}},
		// GNU tar pads to a 10 KiB record.
		{"record padding", tarData, func() io.Reader { return io.LimitReader(zeros{}, 9216) }, Trailer{Read: 9216}},
		{"256 MiB of zeros", tarData, func() io.Reader { return io.LimitReader(zeros{}, lots) }, Trailer{Read: trailLimit, More: true}},
		{"data after the end blocks", tarData, func() io.Reader { return bytes.NewReader(garbage) }, Trailer{Read: 4096, NonZero: true}},
		// archive/tar ends a tar at the end of its input on a header boundary.
		{"no end blocks", tarData[:len(tarData)-1024], func() io.Reader { return bytes.NewReader(nil) }, Trailer{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("spooled", func(t *testing.T) {
				in := &countReads{r: io.MultiReader(bytes.NewReader(tc.tar), tc.tail())}
				r, err := OpenStream("test", in, OpenOptions{TempDir: t.TempDir()})
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				st, err := r.closer.(*os.File).Stat()
				if err != nil {
					t.Fatal(err)
				}
				if st.Size() != int64(len(tc.tar)) {
					t.Errorf("spooled %d bytes, the tar is %d", st.Size(), len(tc.tar))
				}
				checkBounded(t, r, in.n, int64(len(tc.tar)), tc.want)
			})
			t.Run("streamed", func(t *testing.T) {
				in := &countReads{r: io.MultiReader(bytes.NewReader(tc.tar), tc.tail())}
				r, err := ReadStream(context.Background(), "test", in, StreamOptions{})
				if err != nil {
					t.Fatal(err)
				}
				checkBounded(t, r, in.n, int64(len(tc.tar)), tc.want)
			})
			t.Run("in place", func(t *testing.T) {
				tail, err := io.ReadAll(io.LimitReader(tc.tail(), 2*trailLimit))
				if err != nil {
					t.Fatal(err)
				}
				data := append(bytes.Clone(tc.tar), tail...)
				r, err := newReader("test", bytes.NewReader(data), int64(len(data)), Limits{})
				if err != nil {
					t.Fatal(err)
				}
				checkBounded(t, r, 0, 0, tc.want)
			})
		})
	}
}

// checkBounded checks that r has its image and trail, and that no more than the tar, the
// trailer bound and a read-ahead window was read from the input (read; 0: not counted).
func checkBounded(t *testing.T, r *Reader, read, tarSize int64, want Trailer) {
	t.Helper()
	if len(r.Images()) != 1 {
		t.Fatalf("%d images, want 1", len(r.Images()))
	}
	if _, err := r.Images()[0].Resolve(); err != nil {
		t.Error(err)
	}
	if got, err := r.Trailer(); err != nil || got != want {
		t.Errorf("Trailer() = %+v, %v; want %+v", got, err, want)
	}
	if limit := tarSize + trailLimit + inputReadAhead + 1; read > 0 && read > limit {
		t.Errorf("read %d bytes of the input, more than the tar (%d), the trailer bound and the read-ahead", read, tarSize)
	}
}

// TestZstdTrailingZeros: a .tar.zst whose zstd stream goes on with 256 MiB of zeros after the
// tar (a few KB compressed) spools only the tar and reads 1 MiB past it.
func TestZstdTrailingZeros(t *testing.T) {
	tarData, err := archivetest.BuildBytes([]archivetest.Image{archivetest.EdgeImage()}, archivetest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(tarData); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(zw, io.LimitReader(zeros{}, 256<<20)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes compressed", buf.Len())
	want := Trailer{Read: trailLimit, More: true}
	r, err := OpenStream("test", bytes.NewReader(buf.Bytes()), OpenOptions{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if st, err := r.closer.(*os.File).Stat(); err != nil || st.Size() != int64(len(tarData)) {
		t.Errorf("spool file: %v, %v; want the tar's %d bytes", st.Size(), err, len(tarData))
	}
	checkBounded(t, r, 0, 0, want)
	rs, err := ReadStream(context.Background(), "test", bytes.NewReader(buf.Bytes()), StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkBounded(t, rs, 0, 0, want)
}
