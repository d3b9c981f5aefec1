package archive

import (
	distref "github.com/distribution/reference"
	"go.podman.io/image/v5/types"
)

// ImageTags returns the tags an image reached through ref carries: for a docker-archive
// reference of this package, the selected image's tags in the archive; for any other
// reference, its Docker reference when that is tagged (a registry's NAME:TAG). An image
// with no tag gives an empty list.
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
		return []distref.NamedTagged{}, nil
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
