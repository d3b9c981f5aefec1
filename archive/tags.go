package archive

import (
	"strings"

	distref "github.com/distribution/reference"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/reference"
)

// ImageTags returns the tags an image reached through ref carries: for a docker-archive
// reference of this package, the selected image's tags in the archive; for an OCI layout
// (oci:DIR:REF, oci-archive:FILE:REF), its ref name when that is a reference with a tag
// (example.com/app:1, as skopeo and buildah write them; not a bare "1" or "latest"); for
// any other reference, its Docker reference when that is tagged (a registry's NAME:TAG). An
// image with no tag gives an empty list.
func ImageTags(ref types.ImageReference) ([]distref.NamedTagged, error) {
	if ar, ok := ref.(archiveReference); ok {
		a := ar.reader
		if a == nil {
			var err error
			if a, err = Open(ar.path); err != nil {
				return nil, err
			}
			defer a.Close()
		}
		img, err := a.r.Select(ar.sel)
		if err != nil {
			return nil, err
		}
		return append([]distref.NamedTagged{}, img.Tags...), nil
	}
	n := ref.DockerReference()
	if n == nil {
		return refNameTag(ref), nil
	}
	parsed, err := distref.ParseNormalizedNamed(n.String())
	if err != nil {
		return nil, err
	}
	if nt, ok := parsed.(distref.NamedTagged); ok {
		return []distref.NamedTagged{nt}, nil
	}
	return []distref.NamedTagged{}, nil
}

// refNameTag is the tag an OCI layout reference's ref name gives, if it is one.
func refNameTag(ref types.ImageReference) []distref.NamedTagged {
	if t := ref.Transport().Name(); t != "oci" && t != "oci-archive" {
		return []distref.NamedTagged{}
	}
	// containers/image splits DIR:REF at the first colon: a directory has none.
	_, name, ok := strings.Cut(ref.StringWithinTransport(), ":")
	if !ok {
		return []distref.NamedTagged{}
	}
	nt, err := reference.ParseRepoTag(name)
	if err != nil {
		return []distref.NamedTagged{}
	}
	return []distref.NamedTagged{nt}
}
