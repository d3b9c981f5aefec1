package archivetest

import (
	"archive/tar"
	"bufio"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
)

// bigSharedBases is the number of shared base layers in BigArchive.
const bigSharedBases = 3

// bigShape is how BigArchive spreads layers: every image has one shared base (image i gets
// base i%bases) and unique[i] unique tiny layers on top of it.
type bigShape struct {
	bases  int
	unique func(i int) int
	total  int // members
}

func newBigShape(nImages, nMembers int) bigShape {
	if nImages <= 0 {
		return bigShape{unique: func(int) int { return 0 }, total: 2}
	}
	bases := min(bigSharedBases, nImages)
	// Members: per base 4 (layer, legacy symlink, VERSION, json), per image 1 (config),
	// per unique layer 4, plus manifest.json and repositories.
	sumUnique := max(nImages, (nMembers-2-4*bases-nImages)/4)
	per, extra := sumUnique/nImages, sumUnique%nImages
	return bigShape{
		bases: bases,
		unique: func(i int) int {
			if i < extra {
				return per + 1
			}
			return per
		},
		total: 4*bases + nImages + 4*sumUnique + 2,
	}
}

// BigArchiveMembers is the exact number of tar members BigArchive(w, nImages, nMembers) writes:
// nMembers rounded down to the layout's granularity of 4 (so within 3 of it), but never fewer
// than 5 per image, 4 per shared base layer and 2 (manifest.json, repositories).
func BigArchiveMembers(nImages, nMembers int) int {
	return newBigShape(nImages, nMembers).total
}

// BigArchive streams a large archive in the ContainersImage layout to w: nImages images tagged
// "example.com/big/img-<i>:latest", each with one of three shared base layers at the bottom and
// its own config and unique tiny layers (one small file each) on top, so that the archive has
// about nMembers members (exactly BigArchiveMembers(nImages, nMembers)). Nothing but the
// manifest.json being built is kept in memory. It returns the number of images in the archive,
// nImages; 10,000 images and 100,000 members make about 100 MB.
func BigArchive(w io.Writer, nImages, nMembers int) (int, error) {
	shape := newBigShape(nImages, nMembers)
	bw := bufio.NewWriterSize(w, 1<<20)
	tw := tar.NewWriter(bw)
	put := func(m member) error {
		m.hdr.Size = int64(len(m.body))
		if err := tw.WriteHeader(&m.hdr); err != nil {
			return fmt.Errorf("archivetest: big archive: member %q: %w", m.hdr.Name, err)
		}
		if _, err := tw.Write(m.body); err != nil {
			return fmt.Errorf("archivetest: big archive: member %q: %w", m.hdr.Name, err)
		}
		return nil
	}

	bases := make([]*blob, shape.bases)
	for b := range bases {
		raw := Layer(-1-int64(b), 1, 64)
		d := digest.FromBytes(raw)
		bases[b] = &blob{diffID: d, raw: raw, stored: raw, storedDigest: d}
	}
	baseWritten := make([]bool, shape.bases)
	legacyWritten := map[string]bool{} // lookup only; holds the bases' legacy ids
	items := make([]ManifestItem, 0, nImages)
	repos := map[string]map[string]string{}
	seed := int64(0)
	for i := 0; i < nImages; i++ {
		b := i % shape.bases
		layers := []*blob{bases[b]}
		if !baseWritten[b] {
			baseWritten[b] = true
			if err := put(ciReg(bases[b].diffID.Encoded()+".tar", bases[b].raw)); err != nil {
				return 0, err
			}
		}
		for k := 0; k < shape.unique(i); k++ {
			seed++
			raw := Layer(seed, 1, 16)
			d := digest.FromBytes(raw)
			l := &blob{diffID: d, raw: raw, stored: raw, storedDigest: d}
			layers = append(layers, l)
			if err := put(ciReg(d.Encoded()+".tar", raw)); err != nil {
				return 0, err
			}
		}
		diffIDs := make([]digest.Digest, len(layers))
		for k, l := range layers {
			diffIDs[k] = l.diffID
		}
		config := GenerateConfig(diffIDs)
		id := digest.FromBytes(config)
		if err := put(ciReg(id.Encoded()+".json", config)); err != nil {
			return 0, err
		}
		legacy, err := ciLegacyLayers(config, layers)
		if err != nil {
			return 0, err
		}
		for k, l := range legacy {
			if k == 0 {
				if legacyWritten[l.id] {
					continue
				}
				legacyWritten[l.id] = true
			}
			for _, m := range []member{
				ciSymlink(l.id+"/layer.tar", "../"+layers[k].diffID.Encoded()+".tar"),
				ciReg(l.id+"/VERSION", []byte("1.0")),
				ciReg(l.id+"/json", l.json),
			} {
				if err := put(m); err != nil {
					return 0, err
				}
			}
		}
		name := fmt.Sprintf("example.com/big/img-%d", i)
		item := ManifestItem{Config: id.Encoded() + ".json", RepoTags: []string{name + ":latest"}, Layers: make([]string, len(layers))}
		for k, l := range layers {
			item.Layers[k] = l.diffID.Encoded() + ".tar"
		}
		items = append(items, item)
		addRepo(repos, name, "latest", legacy[len(legacy)-1].id)
	}
	if err := put(ciReg("manifest.json", ManifestJSON(items))); err != nil {
		return 0, err
	}
	if err := put(ciReg("repositories", mustJSON(repos))); err != nil {
		return 0, err
	}
	if err := tw.Close(); err != nil {
		return 0, fmt.Errorf("archivetest: big archive: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("archivetest: big archive: %w", err)
	}
	return nImages, nil
}
