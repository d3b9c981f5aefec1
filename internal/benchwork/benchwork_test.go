//go:build linux

package benchwork

import (
	"bytes"
	"crypto/sha256"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// The tests here are cheap: they check the generator on a few MiB, never the full workload.

// TestSpec checks the shape the issues ask for: 3 base layers of about 150, 60 and 20 MB
// shared by 12 images with 2 or 3 app layers of 1-40 MB each, about 1.2 GB in all.
func TestSpec(t *testing.T) {
	layers, images := spec()
	if len(images) != 12 {
		t.Fatalf("%d images, want 12", len(images))
	}
	var total int64
	for _, l := range layers {
		total += l.size
	}
	if total < 1150e6 || total > 1300e6 {
		t.Errorf("%d bytes of layers, want about 1.2 GB", total)
	}
	for i, img := range images {
		if len(img.layers) < 5 || len(img.layers) > 6 || img.layers[0] != 0 || img.layers[1] != 1 || img.layers[2] != 2 {
			t.Errorf("image %d: layers %v, want the 3 bases and 2 or 3 app layers", i, img.layers)
		}
		for _, li := range img.layers[3:] {
			if s := layers[li].size; s < 1*MiB || s > 40*MiB {
				t.Errorf("image %d: app layer %s is %d bytes", i, layers[li].name, s)
			}
		}
	}
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// TestLayerContent checks that a layer is a function of its seed, is a valid tar, and
// compresses about as real layers do (2-3x with gzip -6 over the whole workload).
func TestLayerContent(t *testing.T) {
	voc := newVocabulary(42)
	p := profile{text: 0.65, binary: 0.25, asset: 0.10}
	gen := func() []byte {
		var buf bytes.Buffer
		if err := newGenerator(7, voc).writeLayer(&buf, 8*MiB, p); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b := gen(), gen()
	if sha256.Sum256(a) != sha256.Sum256(b) {
		t.Fatal("two layers from the same seed differ")
	}
	if len(a) < 8*MiB {
		t.Errorf("layer is %d bytes, want at least %d", len(a), 8*MiB)
	}
	c := &counter{}
	zw, _ := gzip.NewWriterLevel(c, gzip.DefaultCompression)
	if _, err := io.Copy(zw, bytes.NewReader(a)); err != nil {
		t.Fatal(err)
	}
	_ = zw.Close()
	if r := float64(len(a)) / float64(c.n); r < 1.8 || r > 4 {
		t.Errorf("gzip ratio %.2f, want 1.8 to 4 (on 8 MiB; the whole workload is about 2.3)", r)
	}
}

// TestTable checks the benchmark table on a made-up `go test -bench` output.
func TestTable(t *testing.T) {
	in := `BenchmarkWrite12/darc-docker-2   1   6000000000 ns/op   200 MB/s   0 temp-B   40 peak-MB   1.000 reads/layer   1.000 maxreads/layer
BenchmarkWrite12/darc-docker-2   1   8000000000 ns/op   150 MB/s   0 temp-B   41 peak-MB   1.000 reads/layer   1.000 maxreads/layer
BenchmarkWrite12/ci-docker-2     1   28000000000 ns/op  43 MB/s    3900000000 temp-B   43 peak-MB   1.943 reads/layer   12.00 maxreads/layer
BenchmarkMerge/darc-2            1   5000000000 ns/op   300 MB/s   0 temp-B   34 peak-MB
BenchmarkMerge/cat-2             1   4000000000 ns/op   375 MB/s   0 temp-B   29 peak-MB
`
	var out bytes.Buffer
	if err := Table(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"7.00 (6.00-8.00)", "4.67x faster than ci-docker (median 4.00x)", "met", "3900.0", "1.25x cat time (median 1.25x)"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

// TestTableBundle checks the bundle targets of issue 13: a time bound computed from the
// variant's share of the work, and an output-size bound.
func TestTableBundle(t *testing.T) {
	in := `BenchmarkBundleLoadOne/darc-one-2   1   3000000000 ns/op   0 temp-B   40 peak-MB   0.25 share
BenchmarkBundleLoadOne/darc-all-2   1   10000000000 ns/op  0 temp-B   40 peak-MB
BenchmarkBundleSave/darc-zstd-2     1   12000000000 ns/op  0 temp-B   40 peak-MB   500 out-MB   1.05 size-x
BenchmarkBundleSave/plain-2         1   10000000000 ns/op  0 temp-B   40 peak-MB   1256 out-MB
`
	var out bytes.Buffer
	if err := Table(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"0.30x darc-all time (median 0.30x), bound 0.38x", // 0.05 + 1.3 × 0.25
		"1.20x plain time (median 1.20x); out 500.0 MB = 1.050x reference",
		"MISSED: size>1.03x",
		"out 1256.0 MB",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "met") != 1 {
		t.Errorf("want darc-one met and darc-zstd missed:\n%s", got)
	}
}
