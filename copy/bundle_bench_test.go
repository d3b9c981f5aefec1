//go:build linux

package copy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	distref "github.com/distribution/reference"
	ciarchive "go.podman.io/image/v5/docker/archive"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/benchwork"
	"github.com/darc-dev/darc/reference"
)

// The benchmarks of seekable .tar.zst bundles (issue 13). The bundle is the workload's
// 12-image docker-archive compressed by darc's seekable zstd writer (benchwork's
// BundleArchive: the same tar bytes, frames cut where members start, a header view and a
// seek table at the end). Each variant runs in a child process (benchwork.RunChild); the
// table (scripts/bench.sh, or `benchwork table FILE`) checks the targets:
//
//   - BundleList: listing the bundle (and inspecting every image, as a listing that shows
//     configs does) in under 5 % of the time `zstd -dc` takes to decompress it, writing no
//     temp file; containers/image's reader beside it.
//   - BundleLoadOne: loading image @11 alone in at most 0.05 + 1.3 × its share of the
//     bytes of loading all 12 from the same bundle.
//   - BundleSave: saving the 12 images as a bundle in at most 1.3 × the time of saving them
//     as a plain tar, to at most 1.03 × the size `zstd -3 -T0` makes of the plain archive.
//   - BundleLoadFull: loading all 12 from the bundle in place no slower than loading the
//     plain .tar.zst in one pass (copy.LoadStream).
//
// Run:
//
//	go test -tags containers_image_openpgp -run '^$' -bench 'Bundle' -benchtime 1x -count 2 ./copy/

// bundleImage is the image BundleLoadOne loads: the last, whose own layers are among the
// smallest, so that most of its bytes are the shared base layers.
const bundleImage = 11

func bundleArchive(b *testing.B, w *benchwork.Workload) string {
	path, err := w.BundleArchive(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if spool, err := archive.NeedsSpool(path); err != nil || spool {
		b.Fatalf("%s: NeedsSpool %v, %v: want it read in place", path, spool, err)
	}
	return path
}

// BenchmarkBundleList lists the bundle: darc's Open, Images and Inspect of each image
// (darc), and Open and Images alone (darc-images: what `darc ls` prints needs no more),
// beside decompressing it with the zstd command and containers/image's reader.
func BenchmarkBundleList(b *testing.B) {
	w := benchWorkload(b)
	path := bundleArchive(b, w)
	opts := benchwork.ChildOptions{Test: "TestBenchChildBundle", Args: map[string]string{"archive": path}, InputBytes: fileSize(b, path)}
	for _, v := range []string{"darc", "darc-images", "zstd-dc", "ci"} {
		b.Run(v, func(b *testing.B) {
			if v == "zstd-dc" {
				skipWithoutZstd(b)
			}
			benchwork.RunChild(b, "bundlelist/"+v, opts)
		})
	}
}

// BenchmarkBundleLoadOne loads image @11 alone from the bundle into an OCI layout, beside
// loading all 12 from it. The darc-one row reports @11's share of the workload's bytes
// (share), from which the table computes the time bound.
func BenchmarkBundleLoadOne(b *testing.B) {
	w := benchWorkload(b)
	path := bundleArchive(b, w)
	oneBytes := imageBytes(w, bundleImage)
	share := float64(oneBytes) / float64(w.Uncompressed)
	for _, v := range []string{"darc-one", "darc-all"} {
		b.Run(v, func(b *testing.B) {
			opts := benchwork.ChildOptions{Test: "TestBenchChildBundle", Args: map[string]string{"archive": path}, Bytes: w.Uncompressed, InputBytes: fileSize(b, path)}
			if v == "darc-one" {
				opts.Bytes = oneBytes
			}
			benchwork.RunChild(b, "bundleload/"+v, opts)
			if v == "darc-one" {
				// Logged here: a parent benchmark's log is not printed.
				b.Logf("image @%d: %d of %d bytes of layers (share %.3f): bound %.3fx the full load", bundleImage, oneBytes, w.Uncompressed, share, 0.05+1.3*share)
				b.ReportMetric(share, "share")
			}
		})
	}
}

// imageBytes is the uncompressed size of image i's layers.
func imageBytes(w *benchwork.Workload, i int) int64 {
	var n int64
	for _, d := range w.Images[i].Layers {
		for _, l := range w.Layers {
			if l.Digest == d {
				n += l.UncompressedSize
			}
		}
	}
	return n
}

// BenchmarkBundleSave saves the 12 images of the workload's OCI layout with Save, as a
// seekable .tar.zst and as a plain tar. It reports each output's size (out-MB) and, for the
// bundle, its ratio to what `zstd -3 -T0` makes of the plain docker-archive (size-x), which
// it measures once per run.
func BenchmarkBundleSave(b *testing.B) {
	w := benchWorkload(b)
	var ref int64
	refNote := "no zstd command: the bundle's size is not compared"
	if _, err := exec.LookPath("zstd"); err == nil {
		plain, err := w.DockerArchive(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if ref, err = zstdCLISize(plain); err != nil {
			b.Fatal(err)
		}
		refNote = fmt.Sprintf("zstd -3 -T0 of %s: %d bytes (%.1f MB)", plain, ref, float64(ref)/1e6)
	}
	opts := benchwork.ChildOptions{Test: "TestBenchChildBundle", Bytes: w.Uncompressed, InputBytes: w.Compressed}
	for _, v := range []string{"darc-zstd", "plain"} {
		b.Run(v, func(b *testing.B) {
			rs := benchwork.RunChild(b, "bundlesave/"+v, opts)
			var out float64
			for _, r := range rs {
				out += float64(r.OutputBytes) / float64(len(rs))
			}
			b.ReportMetric(out/1e6, "out-MB")
			if v == "darc-zstd" {
				// Logged here: a parent benchmark's log is not printed.
				b.Logf("%s; the bundle: %.0f bytes", refNote, out)
				if ref > 0 {
					b.ReportMetric(out/float64(ref), "size-x")
				}
			}
		})
	}
}

// zstdCLISize is the size of `zstd -3 -T0` of the file at path, counted, not stored.
func zstdCLISize(path string) (int64, error) {
	cmd := exec.Command("zstd", "-3", "-T0", "-c", path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	n, err := io.Copy(io.Discard, out)
	if werr := cmd.Wait(); err == nil {
		err = werr
	}
	return n, err
}

// BenchmarkBundleLoadFull loads all 12 images into an OCI layout: from the bundle, opened in
// place (random access), and from the plain .tar.zst of the same tar in one pass.
func BenchmarkBundleLoadFull(b *testing.B) {
	w := benchWorkload(b)
	bundle := bundleArchive(b, w)
	stream, err := w.ZstdArchive(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []string{"darc-seekable", "darc-stream"} {
		b.Run(v, func(b *testing.B) {
			path := bundle
			if v == "darc-stream" {
				path = stream
			}
			opts := benchwork.ChildOptions{Test: "TestBenchChildBundle", Args: map[string]string{"archive": path}, Bytes: w.Uncompressed, InputBytes: fileSize(b, path)}
			benchwork.RunChild(b, "bundlefull/"+v, opts)
		})
	}
}

func skipWithoutZstd(b *testing.B) {
	if _, err := exec.LookPath("zstd"); err != nil {
		b.Skip("no zstd command")
	}
}

// TestBenchChildBundle runs one bundle benchmark variant when the test binary is started by
// benchwork.RunChild; in a normal test run it skips.
func TestBenchChildBundle(t *testing.T) {
	benchwork.ChildMain(t, map[string]benchwork.Variant{
		"bundlelist/darc": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return listBundleDarc(ctx, env, true)
		},
		"bundlelist/darc-images": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return listBundleDarc(ctx, env, false)
		},
		"bundlelist/zstd-dc": listBundleZstd,
		"bundlelist/ci":      listBundleContainersImage,
		"bundleload/darc-one": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return loadBundle(ctx, env, []int{bundleImage})
		},
		"bundleload/darc-all": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return loadBundle(ctx, env, nil)
		},
		"bundlesave/darc-zstd": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return saveBundle(ctx, env, "out.tar.zst", archive.CompressZstd)
		},
		"bundlesave/plain": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return saveBundle(ctx, env, "out.tar", archive.CompressNone)
		},
		"bundlefull/darc-seekable": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return loadBundle(ctx, env, nil)
		},
		"bundlefull/darc-stream": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			f, err := os.Open(env.Args["archive"])
			if err != nil {
				return benchwork.Outcome{}, err
			}
			defer f.Close()
			return loadStreamFrom(ctx, env, f)
		},
	})
}

// listBundleDarc opens the bundle and lists its images and, with inspect, inspects each
// (config and layers, as `darc inspect` reads them).
func listBundleDarc(_ context.Context, env *benchwork.Env, inspect bool) (benchwork.Outcome, error) {
	a, err := archive.Open(env.Args["archive"])
	if err != nil {
		return benchwork.Outcome{}, err
	}
	defer a.Close()
	imgs := a.Images()
	if len(imgs) != len(env.Work.Images) {
		return benchwork.Outcome{}, fmt.Errorf("%d images, want %d", len(imgs), len(env.Work.Images))
	}
	if !inspect {
		return benchwork.Outcome{Spooled: -1}, nil
	}
	for _, img := range imgs {
		sel, err := reference.IndexSelector(img.Index)
		if err != nil {
			return benchwork.Outcome{}, err
		}
		d, err := a.Inspect(sel)
		if err != nil {
			return benchwork.Outcome{}, fmt.Errorf("image @%d: %w", img.Index, err)
		}
		if len(d.Config) == 0 {
			return benchwork.Outcome{}, fmt.Errorf("image @%d: no config", img.Index)
		}
	}
	return benchwork.Outcome{Spooled: -1}, nil
}

// listBundleZstd is `zstd -dc BUNDLE > /dev/null`: decompressing the whole bundle, what
// listing a plain .tar.zst costs at least.
func listBundleZstd(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
	cmd := exec.CommandContext(ctx, "zstd", "-dc", env.Args["archive"])
	var stderr bytes.Buffer
	cmd.Stderr = &stderr // Stdout stays nil: the null device
	if err := cmd.Run(); err != nil {
		return benchwork.Outcome{}, fmt.Errorf("zstd -dc: %w: %s", err, stderr.Bytes())
	}
	return benchwork.Outcome{Spooled: -1}, nil
}

// listBundleContainersImage is containers/image's docker/archive reader and List: it
// decompresses the bundle to a temp file in BigFilesTemporaryDir first.
func listBundleContainersImage(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
	r, err := ciarchive.NewReader(env.Sys, env.Args["archive"])
	if err != nil {
		return benchwork.Outcome{}, err
	}
	defer r.Close()
	lists, err := r.List()
	if err != nil {
		return benchwork.Outcome{}, err
	}
	if len(lists) != len(env.Work.Images) {
		return benchwork.Outcome{}, fmt.Errorf("%d images, want %d", len(lists), len(env.Work.Images))
	}
	return benchwork.Outcome{Spooled: -1}, nil // the deferred Close removes the temp file, timed
}

// loadBundle opens the bundle in place and loads the images at the given indexes (all for
// nil) into oci:OUT/layout.
func loadBundle(ctx context.Context, env *benchwork.Env, which []int) (benchwork.Outcome, error) {
	a, err := archive.Open(env.Args["archive"])
	if err != nil {
		return benchwork.Outcome{}, err
	}
	defer a.Close()
	if which == nil {
		return loadDarc(ctx, env, a)
	}
	var sels []reference.Selector
	for _, i := range which {
		sel, err := reference.IndexSelector(i)
		if err != nil {
			return benchwork.Outcome{}, err
		}
		sels = append(sels, sel)
	}
	layout := filepath.Join(env.OutDir, "layout")
	dest, err := dcopy.ParseDestination("oci:" + layout)
	if err != nil {
		return benchwork.Outcome{}, err
	}
	if _, err := dcopy.Load(ctx, a, dest, sels, dcopy.WithSystemContext(env.Sys)); err != nil {
		return benchwork.Outcome{}, err
	}
	return benchwork.Outcome{Outputs: []string{layout}, Spooled: -1, Check: func() error { return checkLayoutImages(env, layout, which) }}, nil
}

// saveBundle is Save of the 12 images of the workload's OCI layout into OUT/name with the
// given whole-archive compression, committed (and so synced), as `darc save -o` runs it.
func saveBundle(ctx context.Context, env *benchwork.Env, name string, c archive.Compression) (benchwork.Outcome, error) {
	out := filepath.Join(env.OutDir, name)
	a, err := archive.Create(out, archive.WithLayout(archive.LayoutDocker), archive.WithWriteTempDir(env.TempDir), archive.WithCompression(c, 0))
	if err != nil {
		return benchwork.Outcome{}, err
	}
	defer a.Close()
	var sources []dcopy.Source
	for i := range env.Work.Images {
		ref, err := env.Work.SourceRef(i)
		if err != nil {
			return benchwork.Outcome{}, err
		}
		tag, err := env.Work.Tag(i)
		if err != nil {
			return benchwork.Outcome{}, err
		}
		sources = append(sources, dcopy.Source{Ref: env.Layers.Wrap(ref), Tags: []distref.NamedTagged{tag}})
	}
	if _, err := dcopy.Save(ctx, a, sources, dcopy.WithSystemContext(env.Sys)); err != nil {
		return benchwork.Outcome{}, err
	}
	if err := a.Commit(); err != nil {
		return benchwork.Outcome{}, err
	}
	return benchwork.Outcome{Outputs: []string{out}, Spooled: a.Stats().Spooled, Check: func() error { return env.Work.CheckArchive(out) }}, nil
}
