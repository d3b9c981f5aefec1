//go:build linux

package copy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	cicopy "go.podman.io/image/v5/copy"
	ciarchive "go.podman.io/image/v5/docker/archive"
	cireference "go.podman.io/image/v5/docker/reference"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/benchwork"
)

// The load and merge benchmarks (issue 4, point 6), each beside containers/image alone (its
// own docker/archive reader or writer with copy.Image). The inputs are made once from the
// benchmark workload (internal/benchwork): a 12-image docker-archive of about 1.26 GB (3
// shared base layers, uncompressed as LayoutDocker stores them), the same compressed with
// zstd, and two 6-image halves of it for merging. Each variant runs in a child process
// (benchwork.RunChild), which reports wall time, temp-file bytes, extra writes, bytes read
// per input byte and peak RSS. Run:
//
//	go test -tags containers_image_openpgp -run '^$' -bench 'Load12|Merge' -benchtime 1x -count 2 ./copy/
//
// or scripts/bench.sh.

func benchWorkload(b *testing.B) *benchwork.Workload {
	w, err := benchwork.Ensure(context.Background(), b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	return w
}

func fileSize(b *testing.B, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}

// BenchmarkLoad12 loads all 12 images of the docker-archive into an OCI layout.
func BenchmarkLoad12(b *testing.B) {
	w := benchWorkload(b)
	path, err := w.DockerArchive(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	opts := benchwork.ChildOptions{Args: map[string]string{"archive": path}, Bytes: w.Uncompressed, InputBytes: fileSize(b, path)}
	for _, v := range []string{"darc", "ci"} {
		b.Run(v, func(b *testing.B) { benchwork.RunChild(b, "load/"+v, opts) })
	}
}

// BenchmarkLoad12ZstdStdin loads all 12 images of the zstd-compressed docker-archive, read
// from standard input (a pipe), into an OCI layout.
func BenchmarkLoad12ZstdStdin(b *testing.B) {
	w := benchWorkload(b)
	path, err := w.ZstdArchive(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	opts := benchwork.ChildOptions{Stdin: path, Bytes: w.Uncompressed, InputBytes: fileSize(b, path)}
	for _, v := range []string{"darc-stream", "darc-spool", "ci"} {
		b.Run(v, func(b *testing.B) { benchwork.RunChild(b, "loadzst/"+v, opts) })
	}
}

// BenchmarkMerge merges two 6-image archives (both holding the 3 shared base layers) into
// one 12-image archive, beside `cat a b > out` and containers/image.
func BenchmarkMerge(b *testing.B) {
	w := benchWorkload(b)
	a, bb, err := w.MergeInputs(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	in := fileSize(b, a) + fileSize(b, bb)
	opts := benchwork.ChildOptions{Args: map[string]string{"a": a, "b": bb}, Bytes: in, InputBytes: in}
	for _, v := range []string{"darc", "cat", "ci"} {
		b.Run(v, func(b *testing.B) { benchwork.RunChild(b, "merge/"+v, opts) })
	}
}

// TestBenchChild runs one benchmark variant when the test binary is started by
// benchwork.RunChild; in a normal test run it skips.
func TestBenchChild(t *testing.T) {
	v := map[string]benchwork.Variant{
		"load/darc": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			a, err := archive.Open(env.Args["archive"])
			if err != nil {
				return benchwork.Outcome{}, err
			}
			defer a.Close()
			return loadDarc(ctx, env, a)
		},
		"load/ci": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return loadContainersImage(ctx, env, env.Args["archive"])
		},
		"loadzst/darc-stream": loadStreamDarc,
		"loadzst/darc-spool": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			a, err := archive.OpenStream(os.Stdin, archive.WithTempDir(env.TempDir))
			if err != nil {
				return benchwork.Outcome{}, err
			}
			defer a.Close()
			return loadDarc(ctx, env, a)
		},
		"loadzst/ci": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return loadContainersImage(ctx, env, "/dev/stdin")
		},
		"merge/darc": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return mergeDarc(ctx, env)
		},
		"merge/cat": mergeCat,
		"merge/ci":  mergeContainersImage,
	}
	benchwork.ChildMain(t, v)
}

// loadDarc is copy.Load of every image of a into oci:OUT/layout.
func loadDarc(ctx context.Context, env *benchwork.Env, a *archive.ReadableArchive) (benchwork.Outcome, error) {
	layout := filepath.Join(env.OutDir, "layout")
	dest, err := dcopy.ParseDestination("oci:" + layout)
	if err != nil {
		return benchwork.Outcome{}, err
	}
	if _, err := dcopy.Load(ctx, a, dest, nil, dcopy.WithSystemContext(env.Sys)); err != nil {
		return benchwork.Outcome{}, err
	}
	return benchwork.Outcome{Outputs: []string{layout}, Spooled: -1, Check: func() error { return checkLayout(env, layout) }}, nil
}

// loadStreamDarc is copy.LoadStream of every image on standard input into oci:OUT/layout: one
// pass over the stream, nothing spooled.
func loadStreamDarc(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
	return loadStreamFrom(ctx, env, os.Stdin)
}

// loadStreamFrom is copy.LoadStream of every image read from r into oci:OUT/layout.
func loadStreamFrom(ctx context.Context, env *benchwork.Env, r io.Reader) (benchwork.Outcome, error) {
	layout := filepath.Join(env.OutDir, "layout")
	dest, err := dcopy.ParseDestination("oci:" + layout)
	if err != nil {
		return benchwork.Outcome{}, err
	}
	// As `darc load` runs it: no blob-info cache directory named (LoadStream's copies then
	// keep their cache in memory, as before they went through copy.Image).
	sys := *env.Sys
	sys.BlobInfoCacheDir = ""
	if _, err := dcopy.LoadStream(ctx, r, dest, nil, dcopy.WithSystemContext(&sys)); err != nil {
		return benchwork.Outcome{}, err
	}
	return benchwork.Outcome{Outputs: []string{layout}, Spooled: -1, Check: func() error { return checkLayout(env, layout) }}, nil
}

// loadContainersImage is containers/image's docker/archive reader, List, and copy.Image of
// each image, one after the other, into oci:OUT/layout:TAG.
func loadContainersImage(ctx context.Context, env *benchwork.Env, path string) (benchwork.Outcome, error) {
	layout := filepath.Join(env.OutDir, "layout")
	r, err := ciarchive.NewReader(env.Sys, path)
	if err != nil {
		return benchwork.Outcome{}, err
	}
	defer r.Close()
	lists, err := r.List()
	if err != nil {
		return benchwork.Outcome{}, err
	}
	pc, err := env.Policy()
	if err != nil {
		return benchwork.Outcome{}, err
	}
	defer pc.Destroy()
	for i, refs := range lists {
		for _, src := range refs {
			named := src.DockerReference()
			if named == nil {
				return benchwork.Outcome{}, fmt.Errorf("image %d is untagged", i)
			}
			dst, err := ocilayout.NewReference(layout, named.String())
			if err != nil {
				return benchwork.Outcome{}, err
			}
			if _, err := cicopy.Image(ctx, pc, dst, src, &cicopy.Options{SourceCtx: env.Sys, DestinationCtx: env.Sys}); err != nil {
				return benchwork.Outcome{}, fmt.Errorf("image %d: %w", i, err)
			}
		}
	}
	return benchwork.Outcome{Outputs: []string{layout}, Spooled: -1, Check: func() error { return checkLayout(env, layout) }}, nil
}

// checkLayout checks that the OCI layout names every image by its tag, with the right config.
func checkLayout(env *benchwork.Env, layout string) error {
	all := make([]int, len(env.Work.Images))
	for i := range all {
		all[i] = i
	}
	return checkLayoutImages(env, layout, all)
}

// checkLayoutImages checks that the OCI layout names the workload's images which (indexes)
// by their tags, with the right config, and no other.
func checkLayoutImages(env *benchwork.Env, layout string, which []int) error {
	data, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		return err
	}
	var index imgspecv1.Index
	if err := json.Unmarshal(data, &index); err != nil {
		return err
	}
	var names []string
	for _, d := range index.Manifests {
		names = append(names, d.Annotations[imgspecv1.AnnotationRefName])
	}
	if len(names) != len(which) {
		return fmt.Errorf("index.json has %d refs %q, want %d", len(names), names, len(which))
	}
	var missing []string
	for _, i := range which {
		img := env.Work.Images[i]
		if !slices.Contains(names, img.Tag) {
			missing = append(missing, img.Tag)
			continue
		}
		ref, err := ocilayout.NewReference(layout, img.Tag)
		if err != nil {
			return err
		}
		img2, err := ref.NewImage(context.Background(), &types.SystemContext{})
		if err != nil {
			return fmt.Errorf("image %d: %w", i, err)
		}
		// Converting to an OCI manifest rewrites the config (so its digest changes) but
		// not the layers' diffIDs.
		cfg, err := img2.OCIConfig(context.Background())
		_ = img2.Close()
		if err != nil {
			return fmt.Errorf("image %d: %w", i, err)
		}
		if want := env.Work.DiffIDs(i); !slices.Equal(cfg.RootFS.DiffIDs, want) {
			return fmt.Errorf("image %s: diffIDs %v, want %v", img.Tag, cfg.RootFS.DiffIDs, want)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("index.json has %d refs %q; missing %q", len(names), names, missing)
	}
	return nil
}

func mergeInputs(env *benchwork.Env) []string { return []string{env.Args["a"], env.Args["b"]} }

// mergeDarc is copy.Merge of both inputs into a new archive, committed (and so synced).
func mergeDarc(ctx context.Context, env *benchwork.Env, opts ...dcopy.Option) (benchwork.Outcome, error) {
	var ins []*archive.ReadableArchive
	defer func() {
		for _, a := range ins {
			_ = a.Close()
		}
	}()
	for _, p := range mergeInputs(env) {
		a, err := archive.Open(p)
		if err != nil {
			return benchwork.Outcome{}, err
		}
		ins = append(ins, a)
	}
	out := filepath.Join(env.OutDir, "merged.tar")
	w, err := archive.Create(out, archive.WithWriteTempDir(env.TempDir))
	if err != nil {
		return benchwork.Outcome{}, err
	}
	defer w.Close()
	// As `darc merge` runs it: no blob-info cache directory named, so the copies into the
	// archive keep their cache in memory (a named one is an SQLite file committed per blob).
	sys := *env.Sys
	sys.BlobInfoCacheDir = ""
	if _, err := dcopy.Merge(ctx, w, ins, append([]dcopy.Option{dcopy.WithSystemContext(&sys)}, opts...)...); err != nil {
		return benchwork.Outcome{}, err
	}
	if err := w.Commit(); err != nil {
		return benchwork.Outcome{}, err
	}
	return benchwork.Outcome{Outputs: []string{out}, Spooled: w.Stats().Spooled, Check: func() error { return env.Work.CheckArchive(out) }}, nil
}

// mergeCat is `cat a b > out` and an fsync of out (darc's Commit syncs too). The result is
// not a valid archive (the first input's end-of-archive blocks hide the second), only the
// floor for moving the bytes.
func mergeCat(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
	out := filepath.Join(env.OutDir, "cat.tar")
	f, err := os.Create(out)
	if err != nil {
		return benchwork.Outcome{}, err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "cat", mergeInputs(env)...)
	cmd.Stdout = f
	if err := cmd.Run(); err != nil {
		return benchwork.Outcome{}, err
	}
	if err := f.Sync(); err != nil {
		return benchwork.Outcome{}, err
	}
	// cat's writes count in this process's /proc/self/io once it has been waited for.
	return benchwork.Outcome{Outputs: []string{out}, Spooled: -1}, f.Close()
}

// mergeContainersImage copies every image of both inputs with containers/image alone: its
// docker/archive reader and writer and copy.Image, then syncs the output.
func mergeContainersImage(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
	out := filepath.Join(env.OutDir, "merged.tar")
	w, err := ciarchive.NewWriter(env.Sys, out)
	if err != nil {
		return benchwork.Outcome{}, err
	}
	pc, err := env.Policy()
	if err != nil {
		_ = w.Close()
		return benchwork.Outcome{}, err
	}
	defer pc.Destroy()
	for _, p := range mergeInputs(env) {
		r, err := ciarchive.NewReader(env.Sys, p)
		if err != nil {
			_ = w.Close()
			return benchwork.Outcome{}, err
		}
		lists, err := r.List()
		if err != nil {
			_ = r.Close()
			_ = w.Close()
			return benchwork.Outcome{}, err
		}
		for i, refs := range lists {
			if err := mergeOne(ctx, env, pc, w, refs[0]); err != nil {
				_ = r.Close()
				_ = w.Close()
				return benchwork.Outcome{}, fmt.Errorf("%s: image %d: %w", p, i, err)
			}
		}
		_ = r.Close()
	}
	if err := w.Close(); err != nil {
		return benchwork.Outcome{}, err
	}
	if err := benchwork.SyncFile(out); err != nil {
		return benchwork.Outcome{}, err
	}
	return benchwork.Outcome{Outputs: []string{out}, Spooled: -1, Check: func() error { return env.Work.CheckArchive(out) }}, nil
}

func mergeOne(ctx context.Context, env *benchwork.Env, pc *signature.PolicyContext, w *ciarchive.Writer, src types.ImageReference) error {
	named, ok := src.DockerReference().(cireference.NamedTagged)
	if !ok {
		return fmt.Errorf("untagged")
	}
	dst, err := w.NewReference(named)
	if err != nil {
		return err
	}
	_, err = cicopy.Image(ctx, pc, dst, src, &cicopy.Options{SourceCtx: env.Sys, DestinationCtx: env.Sys})
	return err
}
