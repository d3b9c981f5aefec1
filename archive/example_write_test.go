package archive_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/signature"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/reference"
)

// Copy every image of one archive into a new one, retagging the first. Each image goes
// through containers/image's copy.Image; the new archive appears only at Commit.
func ExampleCreate() {
	ctx := context.Background()
	policy, err := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		log.Fatal(err)
	}
	defer policy.Destroy()

	src, err := archive.Open("../testdata/archives/podman-save-m.tar")
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	dir, err := os.MkdirTemp("", "darc-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "bundle.tar")

	dst, err := archive.Create(out, archive.WithLayout(archive.LayoutDocker))
	if err != nil {
		log.Fatal(err)
	}
	defer dst.Close() // removes the temp file unless Commit succeeded

	for i, img := range src.Images() {
		tags := img.Tags
		if i == 0 {
			t, err := reference.NormalizeTag("registry.example/team/app:2.0")
			if err != nil {
				log.Fatal(err)
			}
			tags = append(tags, t)
		}
		ref, err := dst.NewReference(tags...)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := copy.Image(ctx, policy, ref, src.References()[i], nil); err != nil {
			log.Fatal(err)
		}
	}
	if err := dst.Commit(); err != nil {
		log.Fatal(err)
	}

	written, err := archive.Open(out)
	if err != nil {
		log.Fatal(err)
	}
	defer written.Close()
	for _, img := range written.Images() {
		fmt.Println(img.Index, img.ID.Encoded()[:12], img.Tags)
	}
	// Output:
	// 0 c6d2678473c4 [example.com/darc/a:1 example.com/darc/a:latest registry.example/team/app:2.0]
	// 1 6db4b5db8139 [docker.io/library/busybox-like:1]
	// 2 b2aca20d3f23 [localhost/c:v1]
}
