module github.com/darc-dev/darc

go 1.26.8

require (
	github.com/distribution/reference v0.6.0
	github.com/klauspost/compress v1.20.3
	github.com/opencontainers/go-digest v1.0.0
	github.com/opencontainers/image-spec v1.1.1
	github.com/spf13/cobra v1.10.2
	github.com/ulikunitz/xz v0.5.17
	go.podman.io/image/v5 v5.42.0
	golang.org/x/sync v0.24.0
)

require (
	github.com/containers/libtrust v0.0.0-20230121012942-c1716e8a8d01 // indirect
	github.com/containers/ocicrypt v1.3.2 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/moby/moby/client v0.6.2 // indirect
	github.com/sirupsen/logrus v1.10.2 // indirect
	github.com/spf13/pflag v1.0.10 // indirect
	go.podman.io/storage v1.65.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
