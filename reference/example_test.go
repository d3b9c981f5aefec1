package reference_test

import (
	"errors"
	"fmt"

	"github.com/darc-dev/darc/reference"
)

func ExampleParse() {
	for _, s := range []string{
		"docker-archive:images.tar",
		"docker-archive:images.tar:busybox",
		"docker-archive:-:localhost:5000/app:v2",
		"docker-archive:images.tar:@2",
		"docker-archive:images.tar:@0123456789ab",
	} {
		r, err := reference.Parse(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%-9s path=%s canonical=%s\n", r.Selector().Kind(), r.Path(), r)
	}
	// Output:
	// none      path=images.tar canonical=docker-archive:images.tar
	// tag       path=images.tar canonical=docker-archive:images.tar:docker.io/library/busybox:latest
	// tag       path=- canonical=docker-archive:-:localhost:5000/app:v2
	// index     path=images.tar canonical=docker-archive:images.tar:@2
	// id-prefix path=images.tar canonical=docker-archive:images.tar:@0123456789ab
}

func ExampleParse_error() {
	_, err := reference.Parse("docker-archive:images.tar:@01")
	fmt.Println(errors.Is(err, reference.ErrInvalidReference))
	fmt.Println(err)
	// Output:
	// true
	// reference: invalid docker-archive reference: "docker-archive:images.tar:@01": index must not have leading zeros
}

func ExampleReference_ForWriting() {
	r, _ := reference.Parse("docker-archive:out.tar:@1")
	err := r.ForWriting()
	fmt.Println(errors.Is(err, reference.ErrSelectorNotAllowed))
	// Output:
	// true
}

func ExampleSelector_MatchTag() {
	sel, _ := reference.ParseSelector("busybox")
	// RepoTags as Docker, podman and another registry would write them.
	for _, repoTag := range []string{"busybox:latest", "docker.io/library/busybox:latest", "quay.io/busybox:latest"} {
		fmt.Println(repoTag, sel.MatchTag(repoTag))
	}
	// Output:
	// busybox:latest true
	// docker.io/library/busybox:latest true
	// quay.io/busybox:latest false
}
