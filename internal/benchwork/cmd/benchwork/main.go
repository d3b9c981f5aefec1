//go:build linux

// Command benchwork prepares the benchmark workload and formats benchmark results.
//
//	benchwork prepare        generate the OCI layout and the archives made from it (cached)
//	benchwork table [FILE…]  read `go test -bench` output and print darc against its peers
//	benchwork big FILE       write the 10,000-image, 100,000-member archive of BenchmarkLsBig,
//	                         to time `darc ls FILE` as a command
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/benchwork"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "prepare":
		err = prepare()
	case "table":
		err = table(os.Args[2:])
	case "big":
		if len(os.Args) != 3 {
			usage()
		}
		err = big(os.Args[2])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchwork:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: benchwork prepare | benchwork table [FILE…] | benchwork big FILE")
	os.Exit(2)
}

func prepare() error {
	ctx := context.Background()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	start := time.Now()
	w, err := benchwork.Ensure(ctx, logf)
	if err != nil {
		return err
	}
	logf("layout: %s: %d images, %d unique layers, %.1f MB uncompressed, %.1f MB gzip (ratio %.2f) [%s]",
		w.Layout, len(w.Images), len(w.Layers), float64(w.Uncompressed)/1e6, float64(w.Compressed)/1e6,
		float64(w.Uncompressed)/float64(w.Compressed), time.Since(start).Round(time.Millisecond))
	steps := []struct {
		name string
		f    func() ([]string, error)
	}{
		{"docker-archive", func() ([]string, error) { p, err := w.DockerArchive(ctx); return []string{p}, err }},
		{"zstd archive", func() ([]string, error) { p, err := w.ZstdArchive(ctx); return []string{p}, err }},
		{"seekable zstd bundle", func() ([]string, error) { p, err := w.BundleArchive(ctx); return []string{p}, err }},
		{"merge inputs", func() ([]string, error) { a, b, err := w.MergeInputs(ctx); return []string{a, b}, err }},
	}
	for _, s := range steps {
		t := time.Now()
		paths, err := s.f()
		if err != nil {
			return err
		}
		for _, p := range paths {
			st, err := os.Stat(p)
			if err != nil {
				return err
			}
			logf("%s: %s: %.1f MB [%s]", s.name, p, float64(st.Size())/1e6, time.Since(t).Round(time.Millisecond))
		}
	}
	return nil
}

func table(files []string) error {
	var in io.Reader = os.Stdin
	if len(files) > 0 {
		var rs []io.Reader
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				return err
			}
			defer fh.Close()
			rs = append(rs, fh)
		}
		in = io.MultiReader(rs...)
	}
	return benchwork.Table(in, os.Stdout)
}

func big(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := archivetest.BigArchive(f, 10_000, 100_000); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
