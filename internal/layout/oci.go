package layout

import (
	"encoding/json"
	"fmt"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	imgspecs "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// The metadata files of an OCI image layout, at the archive root.
const (
	IndexFile     = "index.json"
	OCILayoutFile = imgspecv1.ImageLayoutFile // "oci-layout"
)

// SHA256BlobPrefix starts the name of every sha256 blob of an OCI image layout.
const SHA256BlobPrefix = "blobs/sha256/"

// annotationImageName is containerd's annotation of an index.json descriptor with the image's
// full name; Docker 25+ sets it beside the OCI ref name, which holds only the tag.
const annotationImageName = "io.containerd.image.name"

// BlobName is the member that holds a blob in an OCI image layout: "blobs/<alg>/<hex>".
func BlobName(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// ParseIndex decodes an OCI index: index.json or an index blob. maxSize bounds the strings of
// index.json as for ParseManifest (0: no bound).
func ParseIndex(data []byte, maxSize int64) (*imgspecv1.Index, error) {
	if err := checkStrings(IndexFile, data, maxSize); err != nil {
		return nil, err
	}
	var idx imgspecv1.Index
	if err := strictUnmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%w: index: %w", ErrInvalidManifest, err)
	}
	return &idx, nil
}

// marshalIndex encodes index.json listing descs, in order.
func marshalIndex(descs []imgspecv1.Descriptor) ([]byte, error) {
	if descs == nil {
		descs = []imgspecv1.Descriptor{}
	}
	return json.Marshal(imgspecv1.Index{
		Versioned: imgspecs.Versioned{SchemaVersion: 2},
		MediaType: imgspecv1.MediaTypeImageIndex,
		Manifests: descs,
	})
}

// marshalImageLayout encodes the oci-layout file.
func marshalImageLayout() ([]byte, error) {
	return json.Marshal(imgspecv1.ImageLayout{Version: imgspecv1.ImageLayoutVersion})
}

// tagDescriptor returns d annotated as Docker 25+ annotates the index.json descriptor of a
// tag: the full name for containerd, the tag alone as the OCI ref name.
func tagDescriptor(d imgspecv1.Descriptor, tag distref.NamedTagged) imgspecv1.Descriptor {
	d.Annotations = map[string]string{
		annotationImageName:         tag.String(),
		imgspecv1.AnnotationRefName: tag.Tag(),
	}
	return d
}

// AnnotationNames returns the image name a top-level index.json descriptor carries:
// containerd's full name annotation, else the OCI ref name (which the caller checks is a full
// reference).
func AnnotationNames(d imgspecv1.Descriptor) []string {
	if n := d.Annotations[annotationImageName]; n != "" {
		return []string{n}
	}
	if n := d.Annotations[imgspecv1.AnnotationRefName]; n != "" {
		return []string{n}
	}
	return nil
}
