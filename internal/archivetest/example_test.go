package archivetest_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"

	"github.com/darc-dev/darc/internal/archivetest"
)

// Build an archive as skopeo or podman save writes it, list its members, and print what a
// reader must find in it.
func ExampleBuild() {
	images := []archivetest.Image{{
		Tags:   []string{"busybox:latest", "example.com/busybox:1"},
		Layers: [][]byte{archivetest.Layer(1, 1, 16)},
	}}
	data, err := archivetest.BuildBytes(images, archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		panic(err)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		if h.Typeflag == tar.TypeSymlink {
			fmt.Printf("%04o %s -> %s\n", h.Mode, h.Name, h.Linkname)
		} else {
			fmt.Printf("%04o %s\n", h.Mode, h.Name)
		}
	}
	for _, x := range archivetest.Expect(images, archivetest.Options{Layout: archivetest.ContainersImage}) {
		fmt.Println(x.Tags, x.ID, x.Sizes)
	}
	// Output:
	// 0444 d48f0b46645d3ab115874c504d805affab3368059e4180d4addc76e7d49c79ec.tar
	// 0444 3597cd73019adf56bf836caaf33b2cd7790f5473920578c925ed2384ed8a8b8d.json
	// 0000 90f6f09e05a0ebd02cecefff0cd02fae18eea412757b4fa0e756a22dfe3066a0/layer.tar -> ../d48f0b46645d3ab115874c504d805affab3368059e4180d4addc76e7d49c79ec.tar
	// 0444 90f6f09e05a0ebd02cecefff0cd02fae18eea412757b4fa0e756a22dfe3066a0/VERSION
	// 0444 90f6f09e05a0ebd02cecefff0cd02fae18eea412757b4fa0e756a22dfe3066a0/json
	// 0444 manifest.json
	// 0444 repositories
	// [docker.io/library/busybox:latest example.com/busybox:1] sha256:3597cd73019adf56bf836caaf33b2cd7790f5473920578c925ed2384ed8a8b8d [2048]
}
