//go:build linux

package archive_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	distref "github.com/distribution/reference"
	cicopy "go.podman.io/image/v5/copy"
	ciarchive "go.podman.io/image/v5/docker/archive"
	cireference "go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/benchwork"
)

// The write benchmarks (issue 3, point 9): 12 images that share 3 base layers, stored
// gzip-compressed in an OCI layout as a registry serves them (about 1.2 GB of unique layers
// uncompressed; see internal/benchwork), written into one archive with containers/image's
// copy.Image. Each variant runs in a child process (benchwork.RunChild) that reports wall
// time, temp-file bytes, peak RSS and how often each layer was read from the source. Run:
//
//	go test -tags containers_image_openpgp -run '^$' -bench 'Write12' -benchtime 1x -count 2 ./archive/
//
// or scripts/bench.sh. The workload is generated once into $DARC_BENCH_DIR (default
// $TMPDIR/darc-bench-v1) and reused.

func BenchmarkWrite12(b *testing.B) {
	w, err := benchwork.Ensure(context.Background(), b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	opts := benchwork.ChildOptions{Bytes: w.Uncompressed, InputBytes: w.Compressed}
	for _, v := range []string{"darc-docker", "darc-docker-save", "darc-oci", "ci-docker"} {
		b.Run(v, func(b *testing.B) { benchwork.RunChild(b, "write/"+v, opts) })
	}
}

// BenchmarkSave12Multi (issue 11): the 12 images saved with darc's Save into one archive of
// layout oci, as single images from the workload's layout, and as 3-platform indexes
// (WithAllPlatforms) from benchwork's MultiLayout, whose variants share the images' layers:
// the same layer bytes, so the ratio is the cost of the lists. Each layer must be read once
// in both (reads/layer). Run:
//
//	go test -tags containers_image_openpgp -run '^$' -bench 'Save12Multi' -benchtime 1x -count 2 ./archive/
func BenchmarkSave12Multi(b *testing.B) {
	ctx := context.Background()
	w, err := benchwork.Ensure(ctx, b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	multi, err := w.MultiLayout(ctx)
	if err != nil {
		b.Fatal(err)
	}
	opts := benchwork.ChildOptions{Args: map[string]string{"multi": multi}, Bytes: w.Uncompressed, InputBytes: w.Compressed}
	for _, v := range []string{"darc-oci-single", "darc-oci-multi"} {
		b.Run(v, func(b *testing.B) { benchwork.RunChild(b, "save/"+v, opts) })
	}
}

// saveMulti saves the 12 images into an archive of layout oci with Save: as single images,
// or as the 3-platform indexes of the multi layout (env.Args["multi"]).
func saveMulti(ctx context.Context, env *benchwork.Env, lists bool) (benchwork.Outcome, error) {
	out := filepath.Join(env.OutDir, "out.tar")
	a, err := archive.Create(out, archive.WithLayout(archive.LayoutOCI), archive.WithWriteTempDir(env.TempDir))
	if err != nil {
		return benchwork.Outcome{}, err
	}
	defer a.Close()
	opts := []dcopy.Option{dcopy.WithSystemContext(env.Sys)}
	if lists {
		opts = append(opts, dcopy.WithAllPlatforms())
	}
	var sources []dcopy.Source
	for i := range env.Work.Images {
		ref, tag, err := writeSource(env, i)
		if err != nil {
			return benchwork.Outcome{}, err
		}
		if lists {
			if ref, err = env.Work.MultiSourceRef(env.Args["multi"], i); err != nil {
				return benchwork.Outcome{}, err
			}
			ref = env.Layers.Wrap(ref)
		}
		sources = append(sources, dcopy.Source{Ref: ref, Tags: []distref.NamedTagged{tag}})
	}
	if _, err := dcopy.Save(ctx, a, sources, opts...); err != nil {
		return benchwork.Outcome{}, err
	}
	if err := a.Commit(); err != nil {
		return benchwork.Outcome{}, err
	}
	return benchwork.Outcome{Outputs: []string{out}, Spooled: a.Stats().Spooled, Check: func() error { return checkMulti(env, out, lists) }}, nil
}

// checkMulti checks the saved archive's images and, for lists, that each is a complete
// 3-platform list.
func checkMulti(env *benchwork.Env, out string, lists bool) error {
	if err := env.Work.CheckArchive(out); err != nil {
		return err
	}
	a, err := archive.Open(out)
	if err != nil {
		return err
	}
	defer a.Close()
	for _, img := range a.Images() {
		if got := img.List != nil; got != lists || (lists && len(img.List.Complete) != 3) {
			return fmt.Errorf("image @%d: list %+v, want a complete 3-platform list: %v", img.Index, img.List, lists)
		}
	}
	return nil
}

// TestBenchChild runs one benchmark variant when the test binary is started by
// benchwork.RunChild; in a normal test run it skips.
func TestBenchChild(t *testing.T) {
	benchwork.ChildMain(t, map[string]benchwork.Variant{
		"write/darc-docker": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return writeDarc(ctx, env, archive.LayoutDocker, false)
		},
		"write/darc-docker-save": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return writeDarc(ctx, env, archive.LayoutDocker, true)
		},
		"write/darc-oci": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return writeDarc(ctx, env, archive.LayoutOCI, false)
		},
		"write/ci-docker": writeContainersImage,
		"save/darc-oci-single": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return saveMulti(ctx, env, false)
		},
		"save/darc-oci-multi": func(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
			return saveMulti(ctx, env, true)
		},
	})
}

// writeDarc writes the 12 images into one darc archive: with copy.Image one image after the
// other (the same calls as the containers/image variant), or with darc's copy.Save.
func writeDarc(ctx context.Context, env *benchwork.Env, layout archive.Layout, save bool) (benchwork.Outcome, error) {
	out := filepath.Join(env.OutDir, "out.tar")
	a, err := archive.Create(out, archive.WithLayout(layout), archive.WithWriteTempDir(env.TempDir))
	if err != nil {
		return benchwork.Outcome{}, err
	}
	defer a.Close()
	if save {
		var sources []dcopy.Source
		for i := range env.Work.Images {
			ref, tag, err := writeSource(env, i)
			if err != nil {
				return benchwork.Outcome{}, err
			}
			sources = append(sources, dcopy.Source{Ref: ref, Tags: []distref.NamedTagged{tag}})
		}
		if _, err := dcopy.Save(ctx, a, sources, dcopy.WithSystemContext(env.Sys)); err != nil {
			return benchwork.Outcome{}, err
		}
	} else {
		pc, err := env.Policy()
		if err != nil {
			return benchwork.Outcome{}, err
		}
		defer pc.Destroy()
		for i := range env.Work.Images {
			src, tag, err := writeSource(env, i)
			if err != nil {
				return benchwork.Outcome{}, err
			}
			dst, err := a.NewReference(tag)
			if err != nil {
				return benchwork.Outcome{}, err
			}
			if _, err := cicopy.Image(ctx, pc, dst, src, &cicopy.Options{SourceCtx: env.Sys, DestinationCtx: env.Sys}); err != nil {
				return benchwork.Outcome{}, fmt.Errorf("image %d: %w", i, err)
			}
		}
	}
	if err := a.Commit(); err != nil {
		return benchwork.Outcome{}, err
	}
	return benchwork.Outcome{Outputs: []string{out}, Spooled: a.Stats().Spooled, Check: func() error { return env.Work.CheckArchive(out) }}, nil
}

// writeContainersImage does the same with containers/image alone: its docker/archive Writer,
// one reference per image, copy.Image one image after the other. The Writer does not sync
// the file; the variant does, as darc's Commit does.
func writeContainersImage(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
	out := filepath.Join(env.OutDir, "out.tar")
	w, err := ciarchive.NewWriter(env.Sys, out)
	if err != nil {
		return benchwork.Outcome{}, err
	}
	pc, err := env.Policy()
	if err != nil {
		return benchwork.Outcome{}, err
	}
	defer pc.Destroy()
	for i := range env.Work.Images {
		src, tag, err := writeSource(env, i)
		if err != nil {
			_ = w.Close()
			return benchwork.Outcome{}, err
		}
		citag, err := cireference.ParseNormalizedNamed(tag.String())
		if err != nil {
			_ = w.Close()
			return benchwork.Outcome{}, err
		}
		dst, err := w.NewReference(citag.(cireference.NamedTagged))
		if err != nil {
			_ = w.Close()
			return benchwork.Outcome{}, err
		}
		if _, err := cicopy.Image(ctx, pc, dst, src, &cicopy.Options{SourceCtx: env.Sys, DestinationCtx: env.Sys}); err != nil {
			_ = w.Close()
			return benchwork.Outcome{}, fmt.Errorf("image %d: %w", i, err)
		}
	}
	if err := w.Close(); err != nil {
		return benchwork.Outcome{}, err
	}
	if err := benchwork.SyncFile(out); err != nil {
		return benchwork.Outcome{}, err
	}
	return benchwork.Outcome{Outputs: []string{out}, Spooled: -1, Check: func() error { return env.Work.CheckArchive(out) }}, nil
}

// writeSource is image i of the layout, its reads counted, and its tag.
func writeSource(env *benchwork.Env, i int) (types.ImageReference, distref.NamedTagged, error) {
	ref, err := env.Work.SourceRef(i)
	if err != nil {
		return nil, nil, err
	}
	tag, err := env.Work.Tag(i)
	if err != nil {
		return nil, nil, err
	}
	return env.Layers.Wrap(ref), tag, nil
}
