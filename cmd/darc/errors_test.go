package main

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/darc-dev/darc/internal/testtools"
)

// TestErrorsOncePerCause: a load that fails for every image for one reason says it once,
// naming the images, in a sentence that says what to do: a registry that is down, one that
// speaks plain HTTP, one that wants credentials, one that rejects them.
func TestErrorsOncePerCause(t *testing.T) {
	plain := testtools.StartRegistry(t, "")
	locked := testtools.StartAuthRegistry(t, "darc", "s3cret")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	t.Setenv("REGISTRY_AUTH_FILE", "")
	archive := "../../testdata/archives/podman-save-m.tar" // 3 images
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"down", []string{"--tls-verify=false", archive, "docker://" + down + "/team"},
			"darc: registry unreachable at " + down + ": connect: connection refused (images @0, @1, @2)\n"},
		{"plain HTTP", []string{archive, "docker://" + plain.Addr + "/team"},
			fmt.Sprintf("darc: the registry %s speaks plain HTTP: pass --tls-verify=false to use it (images @0, @1, @2)\n", plain.Addr)},
		{"no credentials", []string{"--tls-verify=false", archive, "docker://" + locked.Addr + "/team"},
			"darc: the registry asks for credentials and none were given: pass --creds USER[:PASSWORD] or --authfile FILE (images @0, @1, @2)\n"},
		{"wrong credentials", []string{"--tls-verify=false", "--creds", "darc:wrong", archive, "docker://" + locked.Addr + "/team"},
			"darc: the registry rejected the credentials (invalid username or password); check --creds or --authfile (images @0, @1, @2)\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, append([]string{"load", "-q"}, tc.args...)...)
			if err == nil {
				t.Fatal("load succeeded")
			}
			var buf bytes.Buffer
			reportError(&buf, err)
			if buf.String() != tc.want {
				t.Errorf("printed\n%s\nwant\n%s\nfrom %v", buf.String(), tc.want, strings.ReplaceAll(err.Error(), "\n", "\n  "))
			}
		})
	}
}

// TestNoPackagePrefixes: darc's package prefixes are left out of what a person reads, in an
// error and in verify's findings, not in the archive's path label.
func TestNoPackagePrefixes(t *testing.T) {
	_, _, err := run(t, "inspect", "../../testdata/archives/podman-save-m.tar:@7")
	var buf bytes.Buffer
	reportError(&buf, err)
	if want := "darc: archive \"../../testdata/archives/podman-save-m.tar\": image not found: no @7, the archive holds 3 images\n"; buf.String() != want {
		t.Errorf("printed %q, want %q", buf.String(), want)
	}
	out, _, _ := run(t, "verify", "-q", "../../testdata/archives/ctr/foreign-layer.tar")
	if strings.Contains(out, ": archive: member not found") || !strings.Contains(out, ": member not found: a foreign layer") {
		t.Errorf("verify printed %q", out)
	}
}
