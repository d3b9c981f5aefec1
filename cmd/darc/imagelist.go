package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	distref "github.com/distribution/reference"
)

// transportPrefixes are the prefixes that make a line of an image list a reference of that
// transport; any other line is a registry image, as k3s's images.txt lists them.
var transportPrefixes = []string{"docker://", "docker-archive:", "oci:", "oci-archive:", "dir:"}

// readImageList reads an image list: one image per line, "#" starting a comment, blank lines
// ignored. A line is a reference in a transport darc knows (docker://…, oci:DIR:REF, …) or a
// registry image as docker pull takes it (docker.io/rancher/pause:3.6, busybox), which becomes
// docker://NAME with ":latest" when it has no tag or digest. A line that is neither is an
// error naming name and the line number. Duplicate lines are kept once.
func readImageList(r io.Reader, name string) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		ref, err := listedReference(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		if !slices.Contains(out, ref) {
			out = append(out, ref)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// listedReference is one line of an image list as a TRANSPORT:REFERENCE string.
func listedReference(line string) (string, error) {
	if slices.ContainsFunc(transportPrefixes, func(p string) bool { return strings.HasPrefix(line, p) }) {
		if _, err := parseSource(line); err != nil {
			return "", err
		}
		return line, nil
	}
	named, err := distref.ParseNormalizedNamed(line)
	if err != nil {
		return "", fmt.Errorf("%q is neither TRANSPORT:REFERENCE nor an image name: %w", line, err)
	}
	return "docker://" + distref.TagNameOnly(named).String(), nil
}

// imageListSources reads the image lists files ("-": standard input) in order.
func imageListSources(files []string, stdin io.Reader) ([]string, error) {
	var out []string
	for _, f := range files {
		var r io.Reader = stdin
		if f != "-" {
			fh, err := os.Open(f)
			if err != nil {
				return nil, err
			}
			defer fh.Close()
			r = fh
		}
		refs, err := readImageList(r, f)
		if err != nil {
			return nil, err
		}
		out = append(out, refs...)
	}
	return out, nil
}
