package archive

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Listings: the catalog, a repository's tags, the referrers of a digest.

// maxPage bounds n in tag and catalog listings.
const maxPage = 10000

// page answers a listing: the items after ?last=, at most ?n= of them, with a Link header to
// the next page when there is one.
func page(w http.ResponseWriter, r *http.Request, items []string) ([]string, bool) {
	q := r.URL.Query()
	limit := len(items)
	if ns := q.Get("n"); ns != "" {
		n, err := strconv.Atoi(ns)
		if err != nil || n < 0 {
			writeError(w, r, http.StatusBadRequest, codePagination, "invalid number of results requested", map[string]string{"n": truncate(ns, 20)})
			return nil, false
		}
		limit = min(n, maxPage)
	}
	if last := q.Get("last"); last != "" {
		i, _ := slices.BinarySearch(items, last)
		if i < len(items) && items[i] == last {
			i++
		}
		items = items[i:]
	}
	if limit < len(items) {
		items = items[:limit]
		if limit > 0 {
			next := *r.URL
			nq := next.Query()
			nq.Set("n", strconv.Itoa(limit))
			nq.Set("last", items[len(items)-1])
			next.RawQuery = nq.Encode()
			next.Scheme, next.Host = "", ""
			w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="next"`, next.String()))
		}
	}
	return items, true
}

func (reg *registry) catalog(w http.ResponseWriter, r *http.Request) {
	names, ok := page(w, r, reg.names)
	if !ok {
		return
	}
	body, _ := json.Marshal(struct {
		Repositories []string `json:"repositories"`
	}{append([]string{}, names...)})
	writeJSON(w, r, http.StatusOK, "application/json", body)
}

func (reg *registry) tagsList(w http.ResponseWriter, r *http.Request, rp *repo, name string) {
	tags, ok := page(w, r, rp.tags)
	if !ok {
		return
	}
	body, _ := json.Marshal(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{name, append([]string{}, tags...)})
	writeJSON(w, r, http.StatusOK, "application/json", body)
}

func (reg *registry) referrers(w http.ResponseWriter, r *http.Request, rp *repo, ref string) {
	d, err := digest.Parse(ref)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, codeDigestInvalid, "provided digest did not match uploaded content", map[string]string{"digest": ref})
		return
	}
	reg.index(rp)
	descs := []imgspecv1.Descriptor{}
	at := r.URL.Query().Get("artifactType")
	for _, desc := range rp.referrers[d] {
		if at == "" || desc.ArtifactType == at {
			descs = append(descs, desc)
		}
	}
	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	body, err := json.Marshal(imgspecv1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex, Manifests: descs})
	if err != nil {
		writeError(w, r, http.StatusInternalServerError, codeUnknown, err.Error(), nil)
		return
	}
	writeJSON(w, r, http.StatusOK, imgspecv1.MediaTypeImageIndex, body)
}
