package copy

import (
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	distref "github.com/distribution/reference"
	"go.podman.io/image/v5/directory"
	"go.podman.io/image/v5/docker"
	cireference "go.podman.io/image/v5/docker/reference"
	ociarchive "go.podman.io/image/v5/oci/archive"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/reference"
)

// transportNames lists the transport prefixes ParseSource and ParseReference accept.
var transportNames = []string{"docker-archive", "docker", "oci", "oci-archive", "dir"}

// ParseSource parses "TRANSPORT:REF", the reference of an image to copy from, for the
// transports darc supports (see ParseReference). Its errors wrap ErrInvalidSource.
func ParseSource(s string) (types.ImageReference, error) {
	return parseReference(s, ErrInvalidSource)
}

// ParseReference parses "TRANSPORT:REF" for the transports darc supports: darc's own
// docker-archive, and containers/image's docker (a registry, "docker://HOST/NAME:TAG"), oci (a
// layout directory), oci-archive and dir. containers/image's global transport registry is not
// used, so its own docker-archive transport never shadows darc's. Its errors wrap
// ErrInvalidDestination; parse a source with ParseSource, whose errors say so.
func ParseReference(s string) (types.ImageReference, error) {
	return parseReference(s, ErrInvalidDestination)
}

// parseReference parses s; its errors wrap invalid, which says the reference's role.
func parseReference(s string, invalid error) (types.ImageReference, error) {
	prefix, rest, ok := strings.Cut(s, ":")
	if !ok || rest == "" {
		return nil, fmt.Errorf("%w: %q: expected TRANSPORT:REFERENCE, TRANSPORT one of %s", invalid, s, strings.Join(transportNames, ", "))
	}
	var t types.ImageTransport
	switch prefix {
	case reference.Transport:
		t = archive.Transport
	case "docker":
		t = docker.Transport
	case "oci":
		t = ocilayout.Transport
	case "oci-archive":
		t = ociarchive.Transport
	case "dir":
		t = directory.Transport
	default:
		return nil, fmt.Errorf("%w: %q: unknown transport %q, expected one of %s", invalid, s, prefix, strings.Join(transportNames, ", "))
	}
	ref, err := t.ParseReference(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", invalid, s, err)
	}
	return ref, nil
}

// Destination says where Load puts the images of an archive: a transport prefix, from which
// each image's references are derived from its tags.
//
//   - docker://HOST[:PORT][/PREFIX]: NAME:TAG is pushed as HOST[:PORT]/PREFIX/<path of NAME>:TAG,
//     where the path is NAME without its registry (docker.io/library/busybox → library/busybox);
//     with WithBaseNameOnly only the last path element is kept (HOST/PREFIX/busybox:TAG).
//   - oci:DIR: one OCI layout; each tag is stored under its full name as the ref name
//     ("example.com/app:1").
//   - dir:DIR: one directory per image, DIR/<index>, because dir: holds a single image.
//     Load creates DIR if it does not exist, as an oci: layout's directory is created.
//
// An untagged image has no name to derive: it needs WithNames, or it is skipped and
// reported.
type Destination struct {
	transport string // "docker", "oci" or "dir"
	// host and prefix for docker; dir for oci and dir.
	host, prefix, dir string
}

// ParseDestination parses a Load destination such as "docker://127.0.0.1:5000/team",
// "oci:./layout" or "dir:./images".
func ParseDestination(s string) (Destination, error) {
	prefix, rest, ok := strings.Cut(s, ":")
	if !ok || rest == "" {
		return Destination{}, fmt.Errorf("%w: %q: expected docker://HOST[/PREFIX], oci:DIR or dir:DIR", ErrInvalidDestination, s)
	}
	switch prefix {
	case "docker":
		if !strings.HasPrefix(rest, "//") {
			return Destination{}, fmt.Errorf("%w: %q: expected docker://HOST[:PORT][/PREFIX]", ErrInvalidDestination, s)
		}
		hostPath := strings.Trim(strings.TrimPrefix(rest, "//"), "/")
		host, pfx, _ := strings.Cut(hostPath, "/")
		if host == "" {
			return Destination{}, fmt.Errorf("%w: %q: no registry host", ErrInvalidDestination, s)
		}
		d := Destination{transport: "docker", host: host, prefix: pfx}
		// Check that host and prefix make valid names, with a probe repository.
		if _, err := d.dockerName("probe", "latest"); err != nil {
			return Destination{}, fmt.Errorf("%w: %q: %w", ErrInvalidDestination, s, err)
		}
		return d, nil
	case "oci", "dir":
		if strings.Contains(rest, ":") {
			return Destination{}, fmt.Errorf("%w: %q: give the directory only; names come from the images' tags", ErrInvalidDestination, s)
		}
		return Destination{transport: prefix, dir: rest}, nil
	}
	return Destination{}, fmt.Errorf("%w: %q: a load destination is docker://HOST[/PREFIX], oci:DIR or dir:DIR", ErrInvalidDestination, s)
}

// Transport is the destination's transport: "docker", "oci" or "dir".
func (d Destination) Transport() string { return d.transport }

func (d Destination) String() string {
	switch d.transport {
	case "docker":
		if d.prefix != "" {
			return "docker://" + d.host + "/" + d.prefix
		}
		return "docker://" + d.host
	default:
		return d.transport + ":" + d.dir
	}
}

// makeDir creates the directory of a dir: destination, as containers/image creates an oci:
// layout's: once, before any image, so that one that cannot be created is one error rather
// than each image's.
func (d Destination) makeDir() error {
	if d.transport != "dir" {
		return nil
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return fmt.Errorf("destination %s: %w", d, err)
	}
	return nil
}

// dockerName is HOST/PREFIX/repoPath:tag, checked.
func (d Destination) dockerName(repoPath, tag string) (cireference.NamedTagged, error) {
	parts := []string{d.host}
	if d.prefix != "" {
		parts = append(parts, d.prefix)
	}
	parts = append(parts, repoPath)
	n, err := cireference.ParseNormalizedNamed(strings.Join(parts, "/") + ":" + tag)
	if err != nil {
		return nil, err
	}
	nt, ok := n.(cireference.NamedTagged)
	if !ok {
		return nil, fmt.Errorf("%q is not a tagged reference", n.String())
	}
	return nt, nil
}

// references returns the destination references for an image with the given tags (already
// normalized) at position index. baseOnly keeps only the last element of the repository
// path for registries.
func (d Destination) references(index int, tags []distref.NamedTagged, baseOnly bool) ([]types.ImageReference, error) {
	switch d.transport {
	case "dir":
		ref, err := directory.NewReference(path.Join(d.dir, fmt.Sprint(index)))
		if err != nil {
			return nil, err
		}
		return []types.ImageReference{ref}, nil
	case "oci":
		var refs []types.ImageReference
		for _, t := range tags {
			ref, err := ocilayout.NewReference(d.dir, t.String())
			if err != nil {
				return nil, err
			}
			refs = append(refs, ref)
		}
		return refs, nil
	}
	var refs []types.ImageReference
	var seen []string
	for _, t := range tags {
		p := distref.Path(t)
		if baseOnly {
			p = path.Base(p)
		}
		n, err := d.dockerName(p, t.Tag())
		if err != nil {
			return nil, fmt.Errorf("tag %q: %w", t.String(), err)
		}
		if slices.Contains(seen, n.String()) {
			continue // two source names collapsing to one destination name
		}
		seen = append(seen, n.String())
		ref, err := docker.NewReference(n)
		if err != nil {
			return nil, err
		}
		refs = append(refs, ref)
	}
	return refs, nil
}

// parallel is how many images may be copied into d at once when n are asked for: one into an
// OCI layout, whose destination reads index.json when it is created and writes it back on
// Commit, so that two images written at once would lose one's refs.
func (d Destination) parallel(n int) int {
	if d.transport == "oci" {
		return 1
	}
	return n
}
