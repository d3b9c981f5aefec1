package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/reference"
)

// stdinSelectorFlag is the hidden flag behind "-:SELECTOR", standard input with a selector.
// pflag reads any argument that starts with "-" as flags, so "-:@2" would be the unknown
// shorthand ':'; registered as the shorthand of a flag that takes a value, ':' reads the
// rest of the argument ("@2") as that value instead.
const stdinSelectorFlag = "stdin-selector"

// registerStdinSelector lets the command's ARCHIVE[:SELECTOR] argument be "-:SELECTOR".
func registerStdinSelector(fs *pflag.FlagSet) {
	fs.StringP(stdinSelectorFlag, ":", "", `"-:SELECTOR": standard input, with a selector`)
	_ = fs.MarkHidden(stdinSelectorFlag)
}

// archiveArg is the one ARCHIVE[:SELECTOR] argument of cmd, "-:SELECTOR" included.
func archiveArg(cmd *cobra.Command, args []string) (string, error) {
	sel, err := cmd.Flags().GetString(stdinSelectorFlag)
	if err != nil {
		return "", err
	}
	stdin := cmd.Flags().Changed(stdinSelectorFlag)
	switch {
	case stdin && len(args) == 0:
		return "-:" + sel, nil
	case !stdin && len(args) == 1:
		return args[0], nil
	case len(args) == 0:
		return "", fmt.Errorf("%s needs ARCHIVE[:SELECTOR] (- for standard input)", cmd.Name())
	}
	return "", fmt.Errorf("%s takes one ARCHIVE[:SELECTOR], not %d", cmd.Name(), len(args)+btoi(stdin))
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// oneArchiveArg is the Args check of a command that takes one ARCHIVE[:SELECTOR].
func oneArchiveArg(cmd *cobra.Command, args []string) error {
	_, err := archiveArg(cmd, args)
	return err
}

// destForms says what load's DEST can be.
const destForms = `DEST is one of:
  docker://HOST[:PORT][/PREFIX]  a registry; each image goes under PREFIX by its own name and tag
  oci:DIR                        an OCI layout; each tag is a ref name
  dir:DIR                        one directory per image, DIR/<index>`

// loadArgs is the Args check of load: ARCHIVE (or -i ARCHIVE) and DEST, then selectors.
func loadArgs(cmd *cobra.Command, args []string) error {
	input, _ := cmd.Flags().GetString("input")
	switch {
	case input != "" && len(args) == 0:
		return fmt.Errorf("load -i %s needs DEST\n%s", input, destForms)
	case input == "" && len(args) == 0:
		return fmt.Errorf("load needs ARCHIVE (or -i ARCHIVE; - for standard input) and DEST\n%s", destForms)
	case input == "" && len(args) == 1:
		return fmt.Errorf("load %s needs DEST after ARCHIVE\n%s", args[0], destForms)
	}
	return nil
}

// loadDestination parses load's DEST. A registry reference with a tag or digest is refused
// with what to do instead: DEST is a prefix, under which each image keeps its own name.
func loadDestination(arg, archivePath string) (dcopy.Destination, error) {
	if hostPath, ok := strings.CutPrefix(arg, "docker://"); ok {
		host, repo, _ := strings.Cut(strings.Trim(hostPath, "/"), "/")
		prefix, last := "", repo
		if i := strings.LastIndex(repo, "/"); i >= 0 {
			prefix, last = repo[:i], repo[i+1:]
		}
		if name, tag, ok := strings.Cut(last, ":"); ok && name != "" && !strings.Contains(last, "@") {
			under := "docker://" + host
			if prefix != "" {
				under += "/" + prefix
			}
			return dcopy.Destination{}, fmt.Errorf(`DEST %q names a tag, but load's DEST is a registry prefix, docker://HOST[:PORT][/PREFIX], under which each image keeps its own name and tag.
To push one image as %s:
  darc cp docker-archive:%s:@INDEX %s
  darc load --base-name-only --name @INDEX=%s:%s %s %s @INDEX`,
				arg, strings.TrimPrefix(arg, "docker://"), archivePath, arg, name, tag, archivePath, under)
		}
		if repoName, _, ok := strings.Cut(last, "@"); ok && repoName != "" {
			return dcopy.Destination{}, fmt.Errorf(`DEST %q names a digest, but load's DEST is a registry prefix, docker://HOST[:PORT][/PREFIX], under which each image keeps its own name and tag.
To push one image under a tag:
  darc cp docker-archive:%s:@INDEX docker://%s/%s:TAG`,
				arg, archivePath, strings.TrimSuffix(host+"/"+prefix, "/"), repoName)
		}
	}
	return dcopy.ParseDestination(arg)
}

// parallelValue is the value of -p/--parallel: a count of at least 1. 0 and negative counts
// are refused when the flag is parsed, rather than quietly meaning the default.
type parallelValue int

func newParallelValue(p *int, def int) *parallelValue {
	*p = def
	return (*parallelValue)(p)
}

func (v *parallelValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not a number")
	}
	if n < 1 {
		return errors.New("must be at least 1")
	}
	*v = parallelValue(n)
	return nil
}

func (v *parallelValue) String() string { return strconv.Itoa(int(*v)) }

func (v *parallelValue) Type() string { return "int" }

// registerParallel registers -p/--parallel, at least 1.
func registerParallel(fs *pflag.FlagSet, p *int, def int, usage string) {
	fs.VarP(newParallelValue(p, def), "parallel", "p", usage)
}

// openArchive opens the archive at path, telling stderr what it works around (a seekable
// bundle's damaged seek table).
func openArchive(stderr io.Writer, path string) (*archive.ReadableArchive, error) {
	return archive.Open(path, archive.WithWarnings(func(s string) { fmt.Fprintf(stderr, "warning: %s\n", s) }))
}

// openArchiveArg opens the archive of an ARCHIVE[:SELECTOR] argument (or "-:SELECTOR") and
// returns it with the parsed argument and its text.
func openArchiveArg(cmd *cobra.Command, args []string) (*archive.ReadableArchive, reference.Reference, string, error) {
	arg, err := archiveArg(cmd, args)
	if err != nil {
		return nil, reference.Reference{}, "", err
	}
	ref, err := parseArchiveArg(arg)
	if err != nil {
		return nil, reference.Reference{}, "", err
	}
	a, err := openArchive(cmd.ErrOrStderr(), ref.Path())
	return a, ref, arg, err
}
