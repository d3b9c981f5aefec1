package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"go.podman.io/image/v5/docker"

	dcopy "github.com/darc-dev/darc/copy"
)

// reportError prints a command's error. A failure of several images is printed as each
// distinct root cause once, with the images it affected; a cause darc recognizes (a registry
// that cannot be reached, that speaks plain HTTP, whose certificate is not trusted, that
// refuses the credentials) is said in a sentence, with what to do about it.
func reportError(w io.Writer, err error) {
	type cause struct {
		text   string
		images []string
	}
	var causes []*cause
	byKey := map[string]*cause{}
	var given credentialsGiven
	credentialed := errors.As(err, &given)
	if credentialed {
		err = given.error
	}
	for _, e := range failures(err) {
		key, text := explain(e, credentialed)
		c := byKey[key]
		if c == nil {
			c = &cause{text: text}
			byKey[key] = c
			causes = append(causes, c)
		}
		var ie *dcopy.ImageError
		if errors.As(e, &ie) {
			c.images = append(c.images, fmt.Sprintf("@%d", ie.Index))
		}
	}
	for _, c := range causes {
		if len(c.images) > 1 {
			fmt.Fprintf(w, "darc: %s (images %s)\n", plain(c.text), strings.Join(c.images, ", "))
		} else {
			fmt.Fprintf(w, "darc: %s\n", plain(c.text))
		}
	}
}

// packagePrefixes are the package names darc's own error values start with ("archive:
// member not found"): useful to a program reading the error, noise to a person.
var packagePrefixes = []string{"archive: ", "copy: ", "reference: ", "tarfile: "}

// plain removes darc's package prefixes from a message for printing.
func plain(msg string) string {
	for _, p := range packagePrefixes {
		msg = strings.TrimPrefix(msg, p)
		msg = strings.ReplaceAll(msg, ": "+p, ": ")
	}
	return msg
}

// failures splits a joined error into its parts.
func failures(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// explain returns the key two failures share when they have one root cause, and the text to
// print for it: a sentence with a hint for causes darc recognizes, else the error as it is.
// credentialed says whether the command gave registries credentials.
func explain(err error, credentialed bool) (key, text string) {
	var op *net.OpError
	var unauthorized docker.ErrUnauthorizedForCredentials
	var cert *tls.CertificateVerificationError
	msg := err.Error()
	switch {
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		host := hostOf(op, err)
		return "http:" + host, fmt.Sprintf("the registry %s speaks plain HTTP: pass --tls-verify=false to use it", host)
	case errors.As(err, &cert), strings.Contains(msg, "x509: "):
		return "cert:" + hostOf(op, err), fmt.Sprintf("the registry's certificate is not trusted (%s): pass --tls-verify=false to use it anyway", innermost(err))
	case errors.As(err, &unauthorized),
		credentialed && (strings.Contains(msg, "authentication required") || strings.Contains(msg, "unauthorized")):
		return "creds", "the registry rejected the credentials (invalid username or password); check --creds or --authfile"
	case strings.Contains(msg, "authentication required"), strings.Contains(msg, "unauthorized"):
		return "noauth", "the registry asks for credentials and none were given: pass --creds USER[:PASSWORD] or --authfile FILE"
	case errors.As(err, &op) && (op.Op == "dial" || op.Op == "read"):
		host := hostOf(op, err)
		return "unreachable:" + host, fmt.Sprintf("registry unreachable at %s: %v", host, op.Err)
	}
	return innermost(err), msg
}

// hostOf is the address a network failure was about: the peer of a network error, or the
// host of the first URL the message quotes.
func hostOf(op *net.OpError, err error) string {
	if (op != nil || errors.As(err, &op)) && op.Addr != nil {
		return op.Addr.String()
	}
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, "://"); ok {
		host, _, _ := strings.Cut(rest, "/")
		return strings.Trim(host, `"`)
	}
	return "the destination"
}

// innermost is the message of the deepest error err wraps: what two failures with the same
// root cause share.
func innermost(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
