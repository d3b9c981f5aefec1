package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"

	"github.com/darc-dev/darc/archive"
)

// Server timeouts: a connection that sends no request header within readHeaderTimeout, or
// stays idle between requests longer than idleTimeout, is closed, so idle connections cannot
// pile up. There is no write timeout: a large layer to a slow client takes what it takes.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 64 << 10
	// shutdownGrace is how long a signalled server waits for requests in flight.
	shutdownGrace = 10 * time.Second
)

func newServeCommand() *cobra.Command {
	var addr, prefix, certFile, keyFile, htpasswdFile string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "serve [--addr HOST:PORT] [--prefix P] [--cert F --key F] [--htpasswd F] ARCHIVE...",
		Short: "Serve archives as a read-only OCI registry, straight from the files",
		Long: `Serve the images of one or more archives as a read-only registry (the pull side of the
OCI Distribution API v1.1), read from the archive files as they are: docker pull, podman
pull, skopeo, crane and containerd pull from it without anything being unpacked or pushed.

Names: an image tagged REGISTRY/PATH:TAG is served as PATH:TAG. docker.io/library/busybox:1.36
is pulled as HOST:PORT/library/busybox:1.36, example.com/team/app:2 as HOST:PORT/team/app:2.
Two aliases are served too: the short name of a docker.io official image
(HOST:PORT/busybox:1.36, as docker shortens it) and the name with its registry
(HOST:PORT/example.com/team/app:2), unless an image is really named so. --prefix P puts
everything under P (HOST:PORT/P/library/busybox:1.36). Untagged images are not served. A
NAME:TAG in several archives is served from the first one on the command line.

A multi-platform image (an OCI index in the archive, as Docker 25+ and containerd write) is
served as its index. Manifests are the archive's own bytes where it has them, else the
manifest darc builds (the same every run; see "darc inspect"). Blobs are read from the file
by range; each blob is checked against its digest once, before it is first sent, and
answered with 500 if it does not match. If an archive file changes while it is served, its
requests are answered with 500. A plain tar and a seekable .tar.zst are read in place; any other
compressed archive is decompressed once to a temp file (TMPDIR) first.

--cert and --key serve HTTPS; --htpasswd requires HTTP basic authentication against an
htpasswd file of bcrypt entries (htpasswd -B). --verbose logs one line per request on
standard error. SIGINT or SIGTERM stops the server after the requests in flight.`,
		Example: `  darc serve bundle.tar.zst
  docker pull 127.0.0.1:5000/library/busybox:1.36

  darc serve --addr 0.0.0.0:5443 --cert server.crt --key server.key --htpasswd users bundle.tar
  darc serve --prefix mirror base.tar apps.tar --verbose
  crane catalog --insecure 127.0.0.1:5000`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("serve needs at least one ARCHIVE")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if (certFile == "") != (keyFile == "") {
				return errors.New("--cert and --key go together: give both to serve HTTPS, or neither")
			}
			stderr := cmd.ErrOrStderr()
			var users *htpasswd
			if htpasswdFile != "" {
				var err error
				if users, err = readHtpasswd(htpasswdFile); err != nil {
					return err
				}
			}
			var tlsConfig *tls.Config
			if certFile != "" {
				cert, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					return fmt.Errorf("--cert %q --key %q: %w", certFile, keyFile, err)
				}
				tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			archives, err := openServed(stderr, args)
			defer func() {
				for _, a := range archives {
					_ = a.Close()
				}
			}()
			if err != nil {
				return err
			}
			logger := log.New(stderr, "", log.LstdFlags)
			h, err := archive.NewHandler(archives, archive.WithPrefix(prefix), archive.WithServeLog(func(s string) { logger.Print(plain(s)) }))
			if err != nil {
				return fmt.Errorf("--prefix: %w", err)
			}
			var served atomic.Int64
			h = countRequests(h, &served)
			if users != nil {
				h = users.require(h)
			}
			if verbose {
				h = logRequests(h, logger)
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("--addr %s: %w", addr, err)
			}
			srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
				IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes, ErrorLog: logger, TLSConfig: tlsConfig}
			scheme := "http"
			if tlsConfig != nil {
				scheme = "https"
				ln = tls.NewListener(ln, tlsConfig)
			}
			fmt.Fprintf(stderr, "darc: serving %s on %s://%s/v2/\n", servedSummary(archives), scheme, ln.Addr())
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
			case <-cmd.Context().Done():
			}
			ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				_ = srv.Close()
				return interruptReport(fmt.Sprintf("stopped serving after %d request(s); requests still running after %s were cut off", served.Load(), shutdownGrace))
			}
			return interruptReport(fmt.Sprintf("stopped serving after %d request(s)", served.Load()))
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:5000", "address to listen on (HOST:PORT; port 0 picks a free one)")
	f.StringVar(&prefix, "prefix", "", "serve every repository under this path (e.g. mirror)")
	f.StringVar(&certFile, "cert", "", "TLS certificate file (PEM); serve HTTPS with --key")
	f.StringVar(&keyFile, "key", "", "TLS private key file (PEM)")
	f.StringVar(&htpasswdFile, "htpasswd", "", "require basic authentication against this htpasswd file (bcrypt entries)")
	f.BoolVar(&verbose, "verbose", false, "log one line per request on standard error")
	return cmd
}

// openServed opens each archive; one that must be decompressed to a temp file first is
// announced, since that takes a while and the disk space of the decompressed tar.
func openServed(stderr io.Writer, paths []string) ([]*archive.ReadableArchive, error) {
	var out []*archive.ReadableArchive
	for _, p := range paths {
		spool, err := archive.NeedsSpool(p)
		if err != nil {
			return out, fmt.Errorf("archive %q: %w", p, err)
		}
		if spool {
			fmt.Fprintf(stderr, "darc: %s is not a plain tar or a seekable .tar.zst: decompressing it once to a temp file (TMPDIR) before serving\n", p)
		}
		a, err := openArchive(stderr, p)
		if err != nil {
			return out, err
		}
		out = append(out, a)
		untagged := 0
		for _, img := range a.Images() {
			if len(img.Tags) == 0 {
				untagged++
			}
		}
		if untagged > 0 {
			fmt.Fprintf(stderr, "warning: %s: %d untagged image(s) are not served (a registry names images by tag)\n", p, untagged)
		}
	}
	return out, nil
}

// servedSummary says how many tags of how many archives are served.
func servedSummary(archives []*archive.ReadableArchive) string {
	tags := 0
	for _, a := range archives {
		for _, img := range a.Images() {
			tags += len(img.Tags)
		}
	}
	return fmt.Sprintf("%d tag(s) from %d archive(s)", tags, len(archives))
}

func countRequests(h http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

// statusWriter records what a handler answered, for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

// logRequests logs one line per request: client, request line, status, bytes sent, time
// taken, user; "aborted" for a response the handler cut off.
func logRequests(h http.Handler, logger *log.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		user, _, _ := r.BasicAuth()
		if user == "" {
			user = "-"
		}
		defer func() {
			status := fmt.Sprint(sw.status)
			p := recover()
			if p != nil {
				status = "aborted"
			}
			logger.Printf("%s %s %q %s %dB %s %s", r.RemoteAddr, r.Method, r.URL.RequestURI(), status, sw.bytes,
				time.Since(start).Round(time.Microsecond), user)
			if p != nil {
				panic(p)
			}
		}()
		h.ServeHTTP(sw, r)
	})
}

// htpasswd holds the bcrypt hash of each user's password, and the passwords already checked
// against it (as their SHA-256), so that bcrypt's deliberate slowness is paid once per user
// and password, not on each of the dozens of requests of one pull.
type htpasswd struct {
	hashes map[string][]byte
	// decoy is a hash of the file, compared with for an unknown user, so that timing does not
	// tell known users from unknown ones.
	decoy []byte

	mu   sync.Mutex
	good map[string][sha256.Size]byte // guarded by mu
}

// readHtpasswd reads an htpasswd file of "user:hash" lines. Only bcrypt hashes ($2y$, $2a$,
// $2b$; htpasswd -B) are accepted: the others (MD5 $apr1$, SHA-1 {SHA}, crypt) are weak,
// and refused by name at start-up rather than failing every login later.
func readHtpasswd(path string) (*htpasswd, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--htpasswd: %w", err)
	}
	defer f.Close()
	h := &htpasswd{hashes: map[string][]byte{}, good: map[string][sha256.Size]byte{}}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("--htpasswd %s:%d: not a user:hash line", path, line)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("--htpasswd %s:%d: user %q: %s; only bcrypt entries are supported (htpasswd -B)", path, line, user, hashKind(hash))
		}
		h.hashes[user] = []byte(hash)
		h.decoy = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--htpasswd %s: %w", path, err)
	}
	if len(h.hashes) == 0 {
		return nil, fmt.Errorf("--htpasswd %s: no user in the file", path)
	}
	return h, nil
}

// hashKind names an htpasswd hash that is not bcrypt.
func hashKind(hash string) string {
	switch {
	case strings.HasPrefix(hash, "$apr1$"):
		return "an MD5 (apr1) hash"
	case strings.HasPrefix(hash, "{SHA}"):
		return "a SHA-1 hash"
	case strings.HasPrefix(hash, "$2"):
		return "a malformed bcrypt hash"
	case strings.HasPrefix(hash, "$5$"), strings.HasPrefix(hash, "$6$"):
		return "a SHA-crypt hash"
	}
	return "not a bcrypt hash (crypt or plain text?)"
}

func (h *htpasswd) check(user, password string) bool {
	hash, ok := h.hashes[user]
	if !ok {
		_ = bcrypt.CompareHashAndPassword(h.decoy, []byte(password))
		return false
	}
	sum := sha256.Sum256([]byte(password))
	h.mu.Lock()
	known, cached := h.good[user]
	h.mu.Unlock()
	if cached && subtle.ConstantTimeCompare(known[:], sum[:]) == 1 {
		return true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return false
	}
	h.mu.Lock()
	h.good[user] = sum
	h.mu.Unlock()
	return true
}

// require answers 401, with the distribution spec's error body, to a request without a
// valid user and password.
func (h *htpasswd) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, password, ok := r.BasicAuth()
		if ok && h.check(user, password) {
			next.ServeHTTP(w, r)
			return
		}
		body := `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`
		w.Header().Set("WWW-Authenticate", `Basic realm="darc"`)
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusUnauthorized)
		if r.Method != http.MethodHead {
			_, _ = io.WriteString(w, body)
		}
	})
}
