package layout

import (
	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one image of an archive being written, as its metadata lists it.
type Image struct {
	// Config is the config member.
	Config string
	// Layers are the image's layers, base first.
	Layers []Layer
	// Tags are the tags the image carries, in order; a tag belongs to one image.
	Tags []Tag
	// TopID is what repositories maps the image's tags to; "" leaves them out of it.
	TopID string
	// Manifests are the image's manifests in the OCI layout, each listed in index.json:
	// with the tags that point at it, or once on its own when no tag does.
	Manifests []imgspecv1.Descriptor
}

// Layer is one layer of an Image.
type Layer struct {
	// Name is the layer member.
	Name string
	// DiffID is the digest of the uncompressed layer.
	DiffID digest.Digest
	// Blob describes the stored blob: manifest.json's LayerSources in the OCI layout.
	Blob imgspecv1.Descriptor
}

// Tag is a tag of an Image and, in the OCI layout, the manifest it points at.
type Tag struct {
	Name     distref.NamedTagged
	Manifest imgspecv1.Descriptor
}

// Compose returns the metadata files of an archive holding images, in the order they are
// written: for the OCI layout (oci set) oci-layout and index.json, then, for both layouts,
// manifest.json (one entry per image) and repositories.
func Compose(images []Image, oci bool) ([]File, error) {
	var files []File
	if oci {
		layoutJSON, err := marshalImageLayout()
		if err != nil {
			return nil, err
		}
		index, err := marshalIndex(indexDescriptors(images))
		if err != nil {
			return nil, err
		}
		files = append(files, File{Name: OCILayoutFile, Data: layoutJSON}, File{Name: IndexFile, Data: index})
	}
	items := make([]ManifestItem, 0, len(images))
	repos := Repositories{}
	for _, img := range images {
		items = append(items, manifestItem(img, oci))
		if img.TopID != "" {
			for _, t := range img.Tags {
				repos.Add(t.Name, img.TopID)
			}
		}
	}
	manifestJSON, err := marshalManifest(items)
	if err != nil {
		return nil, err
	}
	reposJSON, err := marshalRepositories(repos)
	if err != nil {
		return nil, err
	}
	return append(files, File{Name: ManifestFile, Data: manifestJSON}, File{Name: RepositoriesFile, Data: reposJSON}), nil
}

// manifestItem is img's manifest.json entry; with sources set it has LayerSources, as
// Docker 25+ writes them.
func manifestItem(img Image, sources bool) ManifestItem {
	it := ManifestItem{Config: img.Config, RepoTags: []string{}, Layers: []string{}}
	for _, l := range img.Layers {
		it.Layers = append(it.Layers, l.Name)
		if sources {
			if it.LayerSources == nil {
				it.LayerSources = map[digest.Digest]imgspecv1.Descriptor{}
			}
			it.LayerSources[l.DiffID] = l.Blob
		}
	}
	for _, t := range img.Tags {
		it.RepoTags = append(it.RepoTags, t.Name.String())
	}
	return it
}

// indexDescriptors lists index.json's descriptors: per image, one per tag, pointing at the
// manifest the tag names, so a manifest kept from a source keeps its digest even when the
// image came twice, differently compressed; then each manifest no tag points at.
func indexDescriptors(images []Image) []imgspecv1.Descriptor {
	descs := []imgspecv1.Descriptor{}
	for _, img := range images {
		pointed := map[digest.Digest]bool{}
		for _, t := range img.Tags {
			descs = append(descs, tagDescriptor(t.Manifest, t.Name))
			pointed[t.Manifest.Digest] = true
		}
		for _, m := range img.Manifests {
			if !pointed[m.Digest] {
				descs = append(descs, m)
				pointed[m.Digest] = true
			}
		}
	}
	return descs
}
