package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	distref "github.com/distribution/reference"
	units "github.com/docker/go-units"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"go.podman.io/image/v5/types"
	"golang.org/x/term"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/reference"
)

// transferFlags are the flags shared by cp, save, load and merge.
type transferFlags struct {
	// credentialed is set once systemContext has credentials to give registries (--creds,
	// --authfile, $REGISTRY_AUTH_FILE): a refusal then means they were rejected.
	credentialed bool
	authfile     string
	creds        string
	tlsVerify    bool
	quiet        bool
	asJSON       bool
	parallel     int
	platform     string
}

// register registers the flags; registry and parallel say whether the command reaches
// registries and copies images in parallel, so that it offers no flag that does nothing.
func (f *transferFlags) register(fs *pflag.FlagSet, registry, parallel bool) {
	f.tlsVerify = true
	if registry {
		fs.StringVar(&f.authfile, "authfile", "", "registry credentials file (default: $REGISTRY_AUTH_FILE, else the containers auth.json, then ~/.docker/config.json)")
		fs.StringVar(&f.creds, "creds", "", "registry credentials as USER[:PASSWORD] (without :PASSWORD, asked for on the terminal)")
		fs.BoolVar(&f.tlsVerify, "tls-verify", true, "require HTTPS and verify certificates for registries (--tls-verify=false for plain-HTTP registries)")
	}
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "print nothing but errors")
	fs.BoolVar(&f.asJSON, "json", false, "print a JSON summary of every image on standard output")
	fs.StringVar(&f.platform, "platform", "", "platform to copy, os/arch[/variant]; several, comma-separated, or all, keep a manifest list of them; not in the source is an error (default: from a registry or OCI layout, this machine's; from an archive, see the command's help)")
	if parallel {
		registerParallel(fs, &f.parallel, 2, "images copied at once")
	}
}

// systemContext turns the registry flags into containers/image settings.
// The credentials file, as skopeo and podman take it: --authfile, else $REGISTRY_AUTH_FILE,
// else containers/image's defaults. A file named but missing is an error, not ignored.
func (f *transferFlags) systemContext() (*types.SystemContext, error) {
	authfile, from := f.authfile, "--authfile"
	if authfile == "" {
		authfile, from = os.Getenv("REGISTRY_AUTH_FILE"), "REGISTRY_AUTH_FILE"
	}
	if authfile != "" {
		if _, err := os.Stat(authfile); err != nil {
			return nil, fmt.Errorf("%s: %w", from, err)
		}
	}
	sys := &types.SystemContext{AuthFilePath: authfile, DockerRegistryUserAgent: "darc"}
	f.credentialed = authfile != "" || f.creds != ""
	if f.creds != "" {
		user, pass, hasPass := strings.Cut(f.creds, ":")
		if user == "" {
			return nil, errors.New("--creds: expected USER[:PASSWORD]")
		}
		if !hasPass {
			var err error
			if pass, err = askPassword(user); err != nil {
				return nil, err
			}
		}
		sys.DockerAuthConfig = &types.DockerAuthConfig{Username: user, Password: pass}
	}
	if !f.tlsVerify {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
		sys.OCIInsecureSkipTLSVerify = true
	}
	return sys, nil
}

// withCredentials marks err, when the command gave registries credentials, so that an
// authentication failure is reported as credentials rejected rather than missing.
func (f *transferFlags) withCredentials(err error) error {
	if err == nil || !f.credentialed {
		return err
	}
	return credentialsGiven{err}
}

// credentialsGiven wraps the error of a command that gave registries credentials.
type credentialsGiven struct{ error }

func (c credentialsGiven) Unwrap() error { return c.error }

// askPassword asks for user's password on the terminal, as skopeo does for --creds USER.
func askPassword(user string) (string, error) {
	in := int(os.Stdin.Fd())
	if !term.IsTerminal(in) {
		return "", fmt.Errorf("--creds %s: no password, and standard input is not a terminal to ask for one: give USER:PASSWORD", user)
	}
	fmt.Fprintf(os.Stderr, "Password for %s: ", user)
	b, err := term.ReadPassword(in)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return "", fmt.Errorf("--creds %s: reading the password: %w", user, err)
	}
	return string(b), nil
}

// options builds the copy options, with progress output to stderr: bars on a terminal,
// plain lines otherwise, nothing with --quiet.
func (f *transferFlags) options(stderr io.Writer, labels func(int) string) ([]dcopy.Option, func(), error) {
	sys, err := f.systemContext()
	if err != nil {
		return nil, nil, err
	}
	opts := []dcopy.Option{dcopy.WithSystemContext(sys)}
	if f.parallel > 0 {
		opts = append(opts, dcopy.WithParallel(f.parallel))
	}
	if popt, err := platformOption(f.platform); err != nil {
		return nil, nil, err
	} else if popt != nil {
		opts = append(opts, popt)
	}
	if f.quiet {
		return opts, func() {}, nil
	}
	if file, ok := stderr.(*os.File); ok && term.IsTerminal(int(file.Fd())) {
		bars := newBars(file, labels)
		return append(opts, dcopy.WithProgress(bars.event)), bars.wait, nil
	}
	return append(opts, dcopy.WithProgress(func(e dcopy.Event) { plainEvent(stderr, labels, e) })), func() {}, nil
}

// platformOption reads --platform: all, os/arch[/variant] (one platform, one manifest), or a
// comma-separated list of them (those platforms of each manifest list).
func platformOption(s string) (dcopy.Option, error) {
	switch {
	case s == "":
		return nil, nil
	case s == "all":
		return dcopy.WithAllPlatforms(), nil
	case !strings.Contains(s, ","):
		p, err := dcopy.ParsePlatform(s)
		if err != nil {
			return nil, err
		}
		return dcopy.WithPlatform(p), nil
	}
	var ps []dcopy.Platform
	for _, part := range strings.Split(s, ",") {
		p, err := dcopy.ParsePlatform(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return dcopy.WithPlatforms(ps...), nil
}

// plainEvent prints one line per image event.
func plainEvent(w io.Writer, labels func(int) string, e dcopy.Event) {
	switch e.Kind {
	case dcopy.ImageStarted:
		fmt.Fprintf(w, "copying %s\n", labels(e.Image))
	case dcopy.ImageDone:
		fmt.Fprintf(w, "done    %s\n", labels(e.Image))
	case dcopy.ImageFailed:
		fmt.Fprintf(w, "failed  %s: %v\n", labels(e.Image), e.Err)
	case dcopy.ImageSkipped:
		fmt.Fprintf(w, "skipped %s: %v\n", labels(e.Image), e.Err)
	}
}

// bars draws one progress bar per image with mpb, the library containers/image uses. A bar's
// total is the size of the image's blobs seen so far (what was read of those whose size is
// not known), so it fills as they are read; it ends marked done, failed or skipped.
type bars struct {
	p      *mpb.Progress
	labels func(int) string
	mu     sync.Mutex
	bars   map[int]*mpb.Bar
	blobs  map[int]map[string]blobState
}

// blobState is how far a blob has been read, of its size (-1: unknown).
type blobState struct{ done, size int64 }

func newBars(w io.Writer, labels func(int) string) *bars {
	return &bars{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithAutoRefresh()), labels: labels, bars: map[int]*mpb.Bar{}, blobs: map[int]map[string]blobState{}}
}

func (b *bars) event(e dcopy.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bar := b.bars[e.Image]
	if bar == nil {
		bar = b.p.AddBar(0,
			mpb.PrependDecorators(decor.Name(b.labels(e.Image), decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.OnAbort(decor.OnComplete(barCounters(), "done"), "failed or skipped"),
				decor.Name(" "), decor.AverageSpeed(decor.SizeB1024(0), "% .1f")))
		b.bars[e.Image] = bar
		b.blobs[e.Image] = map[string]blobState{}
	}
	switch e.Kind {
	case dcopy.BlobProgress, dcopy.BlobDone:
		b.blobs[e.Image][e.Digest.String()] = blobState{done: e.Offset, size: e.Size}
		done, total := b.progressLocked(e.Image)
		bar.SetTotal(max(total, 1), false)
		bar.SetCurrent(done)
	case dcopy.ImageDone:
		bar.SetTotal(-1, true)
	case dcopy.ImageFailed, dcopy.ImageSkipped:
		bar.Abort(false)
	}
}

func (b *bars) wait() { b.p.Wait() }

// barCounters shows "read / total" in KiB, MiB and so on.
func barCounters() decor.Decorator { return decor.CountersKibiByte("% .1f / % .1f") }

// progressLocked is how many bytes of image's blobs were read, of how many seen so far: the
// sizes of the blobs, and what was read of those whose size is not known.
func (b *bars) progressLocked(image int) (done, total int64) {
	for _, st := range b.blobs[image] {
		done += st.done
		total += max(st.size, st.done)
	}
	return done, total
}

// resultJSON is one image of the --json summary.
type resultJSON struct {
	Index        int      `json:"index"`
	Source       string   `json:"source"`
	Destinations []string `json:"destinations"`
	Tags         []string `json:"tags"`
	ID           string   `json:"id,omitempty"`
	Manifest     string   `json:"manifest,omitempty"`
	Bytes        int64    `json:"bytes"`
	Skipped      bool     `json:"skipped,omitempty"`
	Error        string   `json:"error,omitempty"`
}

// printLeftPlatforms notes, for each image copied from a manifest list, the platforms of
// the list it did not copy.
func printLeftPlatforms(w io.Writer, results []dcopy.Result) {
	for _, r := range results {
		if r.Err == nil && len(r.Left) > 0 {
			fmt.Fprintf(w, "note: image @%d: of manifest list %s, copied %s as %s, not %s\n", r.Index, r.List, strings.Join(r.Platforms, ", "), r.Manifest, strings.Join(r.Left, ", "))
		}
	}
}

func printResults(w io.Writer, asJSON bool, results []dcopy.Result) error {
	if !asJSON {
		return nil
	}
	out := make([]resultJSON, len(results))
	for i, r := range results {
		out[i] = resultJSON{Index: r.Index, Source: r.Source, Destinations: r.Destinations, Tags: r.Tags,
			ID: r.ImageID.String(), Manifest: r.Manifest.String(), Bytes: r.Bytes, Skipped: r.Skipped}
		if out[i].Destinations == nil {
			out[i].Destinations = []string{}
		}
		if out[i].Tags == nil {
			out[i].Tags = []string{}
		}
		if r.Err != nil {
			out[i].Error = r.Err.Error()
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// createOutput opens the archive to write: a path (written to a temp file beside it and
// renamed on commit) or "-" for standard output.
func createOutput(path string, opts ...archive.CreateOption) (*archive.WritableArchive, error) {
	if path == "" {
		return nil, errors.New("no output: give -o FILE (or -o - for standard output)")
	}
	if path == "-" {
		if term.IsTerminal(int(os.Stdout.Fd())) {
			return nil, errors.New("refusing to write an archive to a terminal; redirect standard output or use -o FILE")
		}
		return archive.NewWriter(os.Stdout, opts...)
	}
	w, err := archive.Create(path, opts...)
	if errors.Is(err, archive.ErrExists) {
		existing := path
		if _, serr := os.Stat(path); serr != nil {
			existing += ".000" // a split archive's first part
		}
		return nil, fmt.Errorf("%s already exists; pass --overwrite to replace it", existing)
	}
	return w, err
}

// storesCompressed reports whether any image of the archives has a compressed layer member.
// It reads the images' configs, not their layers.
func storesCompressed(archives []*archive.ReadableArchive) bool {
	for _, a := range archives {
		for _, img := range a.Images() {
			sel, _ := reference.IndexSelector(img.Index)
			d, err := a.Inspect(sel)
			if err != nil {
				continue // the copy reports it
			}
			for _, l := range d.Layers {
				if l.Compression != "none" {
					return true
				}
			}
		}
	}
	return false
}

// holdsLists reports whether any image of the archives is one platform of a manifest list.
func holdsLists(archives []*archive.ReadableArchive) bool {
	for _, a := range archives {
		if slices.ContainsFunc(a.Images(), func(i archive.ImageInfo) bool { return i.List != nil }) {
			return true
		}
	}
	return false
}

// outputFlags are save's and merge's flags for the archive they write.
type outputFlags struct {
	output, layout, compress, split string
	level                           int
	overwrite                       bool
}

func (o *outputFlags) register(fs *pflag.FlagSet, layoutDefault, layoutHelp string) {
	fs.StringVarP(&o.output, "output", "o", "", "archive to write (- for standard output)")
	fs.StringVar(&o.layout, "layout", layoutDefault, layoutHelp)
	fs.BoolVar(&o.overwrite, "overwrite", false, "replace OUT if it exists")
	fs.StringVar(&o.compress, "compress", "", "compress the archive: zstd (seekable .tar.zst), gzip or none (default: from OUT's suffix, .zst/.tzst or .gz/.tgz)")
	fs.IntVar(&o.level, "compress-level", 0, "compression level: zstd 1-19 (default 3), gzip 1-9 (default 6)")
	fs.StringVar(&o.split, "split-size", "", "cut a zstd archive into OUT.000, OUT.001, … of at most SIZE each (as split(1) reads sizes: 4G = 4 GiB, 4GB = 4×10⁹; at least 8M)")
}

// options are the archive options: the layout, the compression (--compress, or OUT's suffix),
// --overwrite (which means nothing for standard output), and the member time from
// SOURCE_DATE_EPOCH when it is set, as reproducible-build tools expect.
func (o *outputFlags) options() ([]archive.CreateOption, error) {
	lo, err := layoutOption(o.layout)
	if err != nil {
		return nil, err
	}
	c := archive.CompressionFor(o.output)
	if o.compress != "" {
		c = archive.Compression(o.compress)
	}
	if o.level != 0 && c == archive.CompressNone {
		return nil, fmt.Errorf("--compress-level %d: the archive is not compressed (give --compress zstd or gzip, or OUT ending in .zst or .gz)", o.level)
	}
	opts := []archive.CreateOption{lo, archive.WithCompression(c, o.level)}
	if o.split != "" {
		n, err := parseSplitSize(o.split)
		switch {
		case err != nil:
			return nil, fmt.Errorf("--split-size %q: %w", o.split, err)
		case o.output == "-":
			return nil, errors.New("--split-size: standard output cannot be split; give -o FILE")
		case c != archive.CompressZstd:
			return nil, errors.New("--split-size: only a zstd archive is split (give --compress zstd, or OUT ending in .zst)")
		case n < archive.MinSplitSize:
			return nil, fmt.Errorf("--split-size %q: at least 8M, so that a part holds a compressed frame", o.split)
		}
		opts = append(opts, archive.WithSplit(n))
	}
	if o.overwrite && o.output != "-" {
		opts = append(opts, archive.WithOverwrite(true))
	}
	if v, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok && v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs < 0 {
			return nil, fmt.Errorf("SOURCE_DATE_EPOCH=%q: expected seconds since 1970", v)
		}
		opts = append(opts, archive.WithSourceDateEpoch(time.Unix(secs, 0)))
	}
	return opts, nil
}

// parseSplitSize reads a size as split(1) does: a suffix K, M, G, T (or KiB, MiB, …) is a
// power of 1024, KB, MB, GB, TB a power of 1000; no suffix is bytes.
func parseSplitSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if strings.HasSuffix(strings.ToUpper(t), "B") && !strings.HasSuffix(strings.ToUpper(t), "IB") {
		return units.FromHumanSize(t)
	}
	return units.RAMInBytes(t)
}

func layoutOption(s string) (archive.CreateOption, error) {
	switch s {
	case "docker":
		return archive.WithLayout(archive.LayoutDocker), nil
	case "oci":
		return archive.WithLayout(archive.LayoutOCI), nil
	}
	return nil, fmt.Errorf("--layout %q: expected docker or oci", s)
}

// writeArchive creates the output, runs the copies into it, commits it when they all
// succeeded, and prints the summary. With -o - the summary is not printed: standard output
// holds the archive.
func (f *transferFlags) writeArchive(cmd *cobra.Command, out *outputFlags, wopts []archive.CreateOption, labels func(int) string,
	copyInto func(*archive.WritableArchive, []dcopy.Option) ([]dcopy.Result, error)) error {
	opts, wait, err := f.options(cmd.ErrOrStderr(), labels)
	if err != nil {
		return err
	}
	output, shown := out.output, out.output
	if out.split != "" {
		shown = output + ".000" // the first part stands for the set in the report
	}
	_, statErr := os.Stat(shown)
	existed := output != "-" && statErr == nil
	w, err := createOutput(output, wopts...)
	if err != nil {
		return err
	}
	results, copyErr := copyInto(w, opts)
	wait()
	err = finishWrite(cmd.Context(), w, copyErr)
	if !f.quiet {
		printLeftPlatforms(cmd.ErrOrStderr(), results)
	}
	if perr := printResults(cmd.OutOrStdout(), f.asJSON && output != "-", results); err == nil {
		err = perr
	}
	if cmd.Context().Err() != nil {
		return writeReport(shown, err == nil, existed)
	}
	return f.withCredentials(err)
}

// finishWrite commits w when the copies succeeded, unless ctx is done before the rename
// (see archive.WritableArchive.CommitContext), and always closes it; on failure nothing is
// left at the output path.
func finishWrite(ctx context.Context, w *archive.WritableArchive, copyErr error) error {
	if copyErr == nil {
		copyErr = w.CommitContext(pauseBeforeRename(ctx))
	}
	if err := w.Close(); copyErr == nil {
		copyErr = err
	}
	return copyErr
}

// pauseBeforeRenameEnv is a test hook: when set, the commit stops where it is about to
// rename the complete temp file into place, prints pausedBeforeRename on stderr and waits
// there, up to a minute, for a signal. crash_test.go interrupts it at that moment.
const (
	pauseBeforeRenameEnv = "DARC_TEST_PAUSE_BEFORE_RENAME"
	pausedBeforeRename   = "darc-test: paused before rename"
)

// pauseBeforeRename returns ctx, or with the test hook set a context whose Err, which
// CommitContext calls once just before the rename, waits first (see pauseBeforeRenameEnv).
func pauseBeforeRename(ctx context.Context) context.Context {
	if os.Getenv(pauseBeforeRenameEnv) == "" {
		return ctx
	}
	return pausingContext{ctx}
}

type pausingContext struct{ context.Context }

func (p pausingContext) Err() error {
	fmt.Fprintln(os.Stderr, pausedBeforeRename)
	select {
	case <-p.Done():
	case <-time.After(time.Minute):
	}
	return p.Context.Err()
}

// writeReport says what an interrupted save or merge left at output: the archive was
// complete and renamed into place (committed), or nothing was written there.
func writeReport(output string, committed, existed bool) error {
	switch {
	case output == "-" && committed:
		return interruptReport("the archive on standard output was complete before the interrupt")
	case output == "-":
		return interruptReport("the archive on standard output is incomplete")
	case committed:
		return interruptReport(fmt.Sprintf("%s was complete and renamed into place before the interrupt: it is done", output))
	case existed:
		return interruptReport(fmt.Sprintf("nothing was written to %s: the file there is unchanged", output))
	}
	return interruptReport(fmt.Sprintf("nothing was written to %s", output))
}

// skippedError fails a load that skipped images (untagged ones, which a registry or an OCI
// layout cannot name), even under --quiet: a load that leaves images behind has not done what
// was asked. It prints, once, how to name them.
func skippedError(w io.Writer, results []dcopy.Result) error {
	var skipped []string
	for _, r := range results {
		if r.Skipped {
			skipped = append(skipped, fmt.Sprintf("@%d", r.Index))
		}
	}
	if skipped == nil {
		return nil
	}
	fmt.Fprintf(w, "darc: %d image(s) not loaded, having no tag: %s; name each with --name @INDEX=NAME:TAG (e.g. --name %s=example.com/app:1)\n",
		len(skipped), strings.Join(skipped, ", "), skipped[0])
	return errProblems
}

// loadReport says which images an interrupted load or cp had copied to dest, and which not,
// each named by label. results is nil when the interrupt came before any image was copied (a
// stream not read to its end).
func loadReport(dest string, results []dcopy.Result, label func(dcopy.Result) string) error {
	var done, notDone []string
	for _, r := range results {
		label := label(r)
		if r.Err == nil && !r.Skipped {
			done = append(done, label)
		} else {
			notDone = append(notDone, label)
		}
	}
	var b strings.Builder
	if len(done) == 0 {
		fmt.Fprintf(&b, "no image was copied to %s", dest)
	} else {
		fmt.Fprintf(&b, "copied to %s: %s", dest, strings.Join(done, ", "))
	}
	if len(notDone) > 0 {
		fmt.Fprintf(&b, "; not copied: %s", strings.Join(notDone, ", "))
	}
	if len(notDone) > 0 || results == nil {
		b.WriteString(" (blobs already sent for them may remain there)")
	}
	return interruptReport(b.String())
}

func newSaveCommand() *cobra.Command {
	var f transferFlags
	var out outputFlags
	var names, lists []string
	cmd := &cobra.Command{
		Use:   "save -o OUT [-f FILE] SRC...",
		Short: "Save images from registries, layouts or archives into one archive",
		Long: `Save images into one multi-image docker-archive. Each SRC is a reference in one of
the supported transports: docker://HOST/NAME:TAG (a registry), oci:DIR:REF, oci-archive:FILE,
dir:DIR, docker-archive:FILE[:SELECTOR]. Layers shared by several images are fetched and
written once. An image keeps its tag (a registry reference's NAME:TAG, an archive image's
tags, an OCI layout's ref name when it is a NAME:TAG reference); the same image given twice
is stored once with both tags. --name @INDEX=NAME:TAG tags the INDEX-th SRC (from 0) instead.

-f FILE reads more SRCs from an image list (one per line; "#" starts a comment): a line
with a transport prefix is that reference, any other a registry image as docker pull takes
it (docker.io/rancher/mirrored-pause:3.6, busybox), so k3s's images.txt and skopeo sync
lists work as they are. The list's SRCs follow the arguments; an image given twice is saved
once. A bad line is an error naming the file and line, before anything is fetched.

Multi-platform images: from a registry or an OCI layout the host's platform is saved, or
--platform's; --platform all saves every platform with the manifest list (and makes --layout
oci the default, the layout that holds lists: Docker 25+'s shape, with manifest.json naming
the host's platform for docker ≤24 and podman). An archive's image that is one platform of a
manifest list keeps the list in --layout oci (the platforms the archive holds completely),
and in --layout docker is saved as the platform manifest.json names, with a note.

The archive is written to a temp file beside OUT and renamed into place only when every
image was saved: a failure or Ctrl-C leaves nothing at OUT. "-o -" writes to standard output.
--split-size cuts a zstd archive into parts OUT.000, OUT.001, … for media or uploads with a
size limit; darc reads the set given OUT.000 (or OUT), and "cat OUT.0* | zstd -d" is the tar.
Member times are 1970-01-01, or SOURCE_DATE_EPOCH when it is set, so the same images always
give the same bytes.`,
		Example: `  darc save -o bundle.tar docker://127.0.0.1:5000/app:1 docker://127.0.0.1:5000/db:2
  darc save --tls-verify=false --layout oci -o bundle.tar docker://localhost:5000/app:1
  darc save -o subset.tar docker-archive:bundle.tar:@0 docker-archive:bundle.tar:@2
  darc save -o - oci:./layout:app | zstd > app.tar.zst
  darc save -o airgap.tar -f k3s-images.txt
  darc save -o airgap.tar.zst --split-size 4G -f k3s-images.txt`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (f.platform == "all" || strings.Contains(f.platform, ",")) && !cmd.Flags().Changed("layout") {
				out.layout = "oci" // the layout that holds manifest lists
			}
			wopts, err := out.options()
			if err != nil {
				return err
			}
			listed, err := imageListSources(lists, cmd.InOrStdin())
			if err != nil {
				return err
			}
			args = append(args, listed...)
			for i := 0; i < len(args); i++ {
				if slices.Contains(args[:i], args[i]) { // one image listed twice is saved once
					args = slices.Delete(args, i, i+1)
					i--
				}
			}
			if len(args) == 0 {
				return errors.New("no image to save: give SRC arguments or -f FILE")
			}
			var sources []dcopy.Source
			for _, a := range args {
				ref, err := parseSource(a)
				if err != nil {
					return err
				}
				sources = append(sources, dcopy.Source{Ref: ref})
			}
			for _, n := range names {
				idx, nt, err := parseName(n)
				if err != nil {
					return err
				}
				if idx >= len(sources) {
					return fmt.Errorf("--name %q: @%d is past the %d source(s), @0 to @%d", n, idx, len(sources), len(sources)-1)
				}
				sources[idx].Tags = append(sources[idx].Tags, nt)
			}
			return f.writeArchive(cmd, &out, wopts, func(i int) string { return args[i] },
				func(w *archive.WritableArchive, opts []dcopy.Option) ([]dcopy.Result, error) {
					return dcopy.Save(cmd.Context(), w, sources, opts...)
				})
		},
	}
	out.register(cmd.Flags(), "docker", "archive layout: docker (what podman save writes) or oci (what Docker 25+ writes)")
	cmd.Flags().StringArrayVarP(&lists, "file", "f", nil, "read SRCs from FILE (- for standard input): one per line, # comments; a line without TRANSPORT: is a registry image, as in k3s's images.txt (repeatable)")
	cmd.Flags().StringArrayVar(&names, "name", nil, "tag the source at position INDEX (from 0) as NAME:TAG instead of its own tags: @INDEX=NAME:TAG (repeatable)")
	f.register(cmd.Flags(), true, true)
	return cmd
}

func newMergeCommand() *cobra.Command {
	var f transferFlags
	var out outputFlags
	cmd := &cobra.Command{
		Use:   "merge -o OUT IN...",
		Short: "Combine the images of several archives into one",
		Long: `Combine every image of the input archives, in order, into one archive. Blobs are
copied as stored and verified on the way; a layer present in several inputs is written
once. To take only some images, use "darc save -o OUT docker-archive:IN:@INDEX ...".

The default layout, auto, is oci when an input stores compressed layers (crane's archives,
Docker 25+ with the containerd store), so they are kept as they are, or holds manifest lists
(multi-platform images, kept whole with the platforms the input holds completely), and
docker otherwise; the docker layout holds plain tars and one platform per image. Images go one after
the other, each new blob read straight from its input once and hashed as it is written.
Merge reads local archives only: it has no registry flags and no --parallel.`,
		Example: `  darc merge -o all.tar base.tar apps.tar
  darc merge -o all.tar --layout oci a.tar.gz b.tar.zst`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var inputs []*archive.ReadableArchive
			defer func() {
				for _, a := range inputs {
					a.Close()
				}
			}()
			var labels []string
			for _, p := range args {
				a, err := openArchive(cmd.ErrOrStderr(), p)
				if err != nil {
					return err
				}
				inputs = append(inputs, a)
				for _, img := range a.Images() {
					labels = append(labels, fmt.Sprintf("%s:@%d", p, img.Index))
				}
			}
			if out.layout == "auto" {
				out.layout = "docker"
				if storesCompressed(inputs) || holdsLists(inputs) {
					out.layout = "oci"
				}
			}
			wopts, err := out.options()
			if err != nil {
				return err
			}
			return f.writeArchive(cmd, &out, wopts, func(i int) string { return labels[i] },
				func(w *archive.WritableArchive, opts []dcopy.Option) ([]dcopy.Result, error) {
					return dcopy.Merge(cmd.Context(), w, inputs, opts...)
				})
		},
	}
	out.register(cmd.Flags(), "auto", "archive layout: auto, docker or oci")
	f.register(cmd.Flags(), false, false)
	return cmd
}

func newLoadCommand() *cobra.Command {
	var f transferFlags
	var names []string
	var baseOnly, spool bool
	var input string
	cmd := &cobra.Command{
		Use:   "load [-i] ARCHIVE DEST [SELECTOR...]",
		Short: "Push the images of an archive to a registry, an OCI layout or directories",
		Long: `Copy all images of ARCHIVE, or those the selectors pick (NAME[:TAG], @INDEX, @ID), to
DEST. Each image's destination names come from its tags:

  docker://HOST[:PORT][/PREFIX]  NAME:TAG goes to HOST[:PORT]/PREFIX/<repository path>:TAG
                                 (docker.io/library/busybox:1 -> HOST/PREFIX/library/busybox:1)
  oci:DIR                        one OCI layout; each tag is a ref name (example.com/app:1)
  dir:DIR                        one directory per image: DIR/<index>

Every tag of an image is written and its blobs are transferred once. An untagged image
needs --name @INDEX=NAME:TAG, or it is skipped with a message.

An image that is one platform of a manifest list (Docker 25+ and containerd archives; see
darc ls) goes into a registry or an OCI layout as the whole list, with every platform the
archive holds completely; a list that names platforms the archive lacks is written without
them (a new digest) and a note says so. Into dir:, the platform manifest.json names goes.
--platform os/arch[/variant] copies that platform alone (an error if the archive does not
hold it completely); --platform all insists on whole lists.

ARCHIVE may be "-" for standard input, and may be given as -i/--input ARCHIVE, as with
docker and podman load. Standard input, a pipe and a compressed archive
(gzip, zstd, xz, bzip2) are loaded into a registry or an OCI layout in a single pass: the
archive is read once, front to back, layers go to the destination as they pass (to a
registry, into the staging repository PREFIX/darc-staging, from which every image's
repository mounts them), and nothing is written to a temp file. --spool copies such an
input to a temp file first (in $TMPDIR) and loads from there, as dir: destinations always do.
A single pass copies manifest lists as a load from the file does; with --platform it spools
the input first.`,
		Example: `  darc load bundle.tar docker://mirror.local:5000/team
  darc load --tls-verify=false bundle.tar docker://127.0.0.1:5000 @0 example.com/app:1
  darc load --name @2=example.com/tools:v1 bundle.tar oci:./layout
  zstd -dc bundle.tar.zst | darc load - oci:./layout
  darc load bundle.tar.zst docker://mirror.local:5000/team
  darc load -i bundle.tar oci:./layout`,
		Args: loadArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if input != "" {
				args = append([]string{input}, args...)
			}
			dest, err := loadDestination(args[1], args[0])
			if err != nil {
				return err
			}
			var sels []reference.Selector
			for _, s := range args[2:] {
				sel, err := reference.ParseSelector(s)
				if err != nil {
					return err
				}
				sels = append(sels, sel)
			}
			stream := false
			if !spool && dest.Transport() != "dir" {
				if stream, err = archive.NeedsSpool(args[0]); err != nil {
					return err
				}
			}
			labels := func(i int) string {
				if i < 0 {
					return args[0]
				}
				return fmt.Sprintf("%s:@%d", args[0], i)
			}
			opts, wait, err := f.options(cmd.ErrOrStderr(), labels)
			if err != nil {
				return err
			}
			for _, n := range names {
				idx, nt, err := parseName(n)
				if err != nil {
					return err
				}
				opts = append(opts, dcopy.WithNames(idx, nt))
			}
			if baseOnly {
				opts = append(opts, dcopy.WithBaseNameOnly())
			}
			var results []dcopy.Result
			if stream {
				results, err = loadStream(cmd, args[0], dest, sels, opts)
				if results == nil && errors.Is(err, dcopy.ErrStreamUnsupported) {
					// Refused before reading anything: the input is still whole.
					fmt.Fprintf(cmd.ErrOrStderr(), "note: %v; spooling the archive instead\n", err)
					stream = false
				}
			}
			if !stream {
				results, err = loadSpooled(cmd, args[0], dest, sels, opts)
			}
			wait()
			if !f.quiet {
				printLeftPlatforms(cmd.ErrOrStderr(), results)
			}
			if perr := printResults(cmd.OutOrStdout(), f.asJSON, results); err == nil {
				err = perr
			}
			if cmd.Context().Err() != nil {
				return loadReport(args[1], results, func(r dcopy.Result) string { return fmt.Sprintf("@%d", r.Index) })
			}
			if err == nil {
				err = skippedError(cmd.ErrOrStderr(), results)
			}
			return f.withCredentials(err)
		},
	}
	cmd.Flags().StringArrayVar(&names, "name", nil, "name an image: @INDEX=NAME:TAG (repeatable; replaces the image's tags)")
	cmd.Flags().BoolVar(&baseOnly, "base-name-only", false, "under a registry prefix, keep only the last element of each repository path")
	cmd.Flags().StringVarP(&input, "input", "i", "", "the archive to load, instead of the first argument (- for standard input)")
	cmd.Flags().BoolVar(&spool, "spool", false, "copy a stream or compressed archive to a temp file and load from there, instead of in a single pass")
	f.register(cmd.Flags(), true, true)
	return cmd
}

// loadStream loads path ("-": standard input) in a single pass.
func loadStream(cmd *cobra.Command, path string, dest dcopy.Destination, sels []reference.Selector, opts []dcopy.Option) ([]dcopy.Result, error) {
	in := io.Reader(cmd.InOrStdin())
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	return dcopy.LoadStream(cmd.Context(), in, dest, sels, append(opts, dcopy.WithSourceName(path))...)
}

// loadSpooled opens path (spooling it if it is a stream or compressed) and loads from it.
func loadSpooled(cmd *cobra.Command, path string, dest dcopy.Destination, sels []reference.Selector, opts []dcopy.Option) ([]dcopy.Result, error) {
	var a *archive.ReadableArchive
	var err error
	if path == "-" {
		a, err = archive.OpenStream(cmd.InOrStdin())
	} else {
		a, err = openArchive(cmd.ErrOrStderr(), path)
	}
	if err != nil {
		return nil, err
	}
	defer a.Close()
	return dcopy.Load(cmd.Context(), a, dest, sels, opts...)
}

// parseName parses "@INDEX=NAME:TAG".
func parseName(s string) (int, distref.NamedTagged, error) {
	left, right, ok := strings.Cut(s, "=")
	if !ok || !strings.HasPrefix(left, "@") {
		return 0, nil, fmt.Errorf("--name %q: expected @INDEX=NAME:TAG", s)
	}
	idx, err := strconv.Atoi(left[1:])
	if err != nil || idx < 0 {
		return 0, nil, fmt.Errorf("--name %q: %q is not an image index", s, left)
	}
	nt, err := reference.NormalizeTag(right)
	if err != nil {
		return 0, nil, fmt.Errorf("--name %q: %w", s, err)
	}
	return idx, nt, nil
}

func newCpCommand() *cobra.Command {
	var f transferFlags
	cmd := &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy one image between two references",
		Long: `Copy one image. SRC and DST are references in the supported transports:
docker-archive:FILE[:SELECTOR] (darc's own), docker://HOST/NAME:TAG, oci:DIR:REF,
oci-archive:FILE:REF and dir:DIR. Writing docker-archive:FILE[:NAME:TAG] creates a
single-image archive; the file must not exist yet.`,
		Example: `  darc cp oci:./layout:app docker-archive:out.tar:example.com/app:1
  darc cp docker-archive:bundle.tar:@2 oci:./layout:tools
  darc cp --tls-verify=false docker-archive:bundle.tar:busybox docker://localhost:5000/busybox:1`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := parseSource(args[0])
			if err != nil {
				return err
			}
			dst, err := dcopy.ParseReference(args[1])
			if err != nil {
				return err
			}
			if err := checkArchiveDestination(dst); err != nil {
				return err
			}
			opts, wait, err := f.options(cmd.ErrOrStderr(), func(int) string { return args[0] })
			if err != nil {
				return err
			}
			res, err := dcopy.Image(cmd.Context(), src, dst, opts...)
			wait()
			if perr := printResults(cmd.OutOrStdout(), f.asJSON, []dcopy.Result{res}); err == nil {
				err = perr
			}
			if cmd.Context().Err() != nil {
				if res.Err == nil {
					res.Err = err
				}
				return loadReport(args[1], []dcopy.Result{res}, func(dcopy.Result) string { return args[0] })
			}
			return f.withCredentials(err)
		},
	}
	f.register(cmd.Flags(), true, false)
	return cmd
}

// parseSource parses a source reference. When it is not one, and the argument names an
// existing file or reads as an image name, the error suggests the reference the user likely
// meant: docker-archive:FILE, or docker://NAME.
func parseSource(arg string) (types.ImageReference, error) {
	ref, err := dcopy.ParseSource(arg)
	if err == nil {
		return ref, nil
	}
	var hint string
	if st, serr := os.Stat(arg); serr == nil && st.Mode().IsRegular() {
		hint = reference.Transport + ":" + arg
	} else if _, perr := distref.ParseNormalizedNamed(arg); perr == nil {
		hint = "docker://" + arg
	}
	if hint != "" {
		return nil, fmt.Errorf("%w (did you mean %s?)", err, hint)
	}
	return ref, err
}

// checkArchiveDestination refuses, before anything is copied, a docker-archive destination
// that cp would fail on at the end: an existing file (cp writes a new single-image archive)
// or standard output on a terminal.
func checkArchiveDestination(dst types.ImageReference) error {
	_, path, _, ok := archive.SourceOf(dst)
	if !ok {
		return nil
	}
	if path == "-" {
		if term.IsTerminal(int(os.Stdout.Fd())) {
			return errors.New("refusing to write an archive to a terminal; redirect standard output")
		}
		return nil
	}
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s already exists; cp writes a new archive: remove the file first, or use darc save --overwrite -o %s SRC", path, path)
	}
	return nil
}
