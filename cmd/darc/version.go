package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// imageModule is containers/image's module, whose version decides what darc reads from and
// writes to registries and layouts.
const imageModule = "go.podman.io/image/v5"

// versionText is what `darc version` and `darc --version` print: darc's module version from
// the build info ("(devel)" when built from a checkout, with the commit when the build
// recorded it), containers/image's module version, and the Go version and platform.
func versionText() string {
	darc, image := "(unknown)", "(unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		darc = moduleVersion(bi.Main)
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			darc += ", commit " + rev
			if modified == "true" {
				darc += " (modified)"
			}
		}
		for _, m := range bi.Deps {
			if m.Path == imageModule {
				image = moduleVersion(*m)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "darc %s\n", darc)
	fmt.Fprintf(&b, "containers/image %s (%s)\n", image, imageModule)
	fmt.Fprintf(&b, "%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return b.String()
}

// moduleVersion is m's version, and what replaces it, if anything does.
func moduleVersion(m debug.Module) string {
	v := m.Version
	if v == "" {
		v = "(devel)" // a test binary records no version for its main module
	}
	if r := m.Replace; r != nil {
		if r.Version != "" {
			return fmt.Sprintf("%s => %s %s", v, r.Path, r.Version)
		}
		return fmt.Sprintf("%s => %s", v, r.Path)
	}
	return v
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the versions of darc, containers/image and Go",
		Long: `Print darc's version (its module version, "(devel)" when built from a checkout, with
the commit the build recorded), the version of containers/image it was built with, and the
Go version and platform. "darc --version" prints the same.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), versionText())
			return err
		},
	}
}
