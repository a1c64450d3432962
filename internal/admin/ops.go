package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/inventory"
	"github.com/mdmauth/mdmauth/internal/store"
)

// Stats is the answer of GET stats: the inventory, taken at At (UTC).
type Stats = inventory.Stats

// stats: GET stats
func (c *call) stats(_ []string) {
	if _, err := c.query(); c.clientError(err) {
		return
	}
	s, err := inventory.Compute(c.r.Context(), c.st, c.h.now(), c.h.StallAfter)
	if err != nil {
		c.storeError("statistics", err)
		return
	}
	s.At = s.At.UTC()
	c.json(http.StatusOK, s)
}

// Health is the answer of GET health.
type Health struct {
	Status     string `json:"status"` // ok or unavailable
	StoreBytes int64  `json:"store_bytes,omitempty"`
	Error      string `json:"error,omitempty"`
}

// health: GET health → 200 when the store answers, 503 otherwise.
func (c *call) health(_ []string) {
	if _, err := c.query(); c.clientError(err) {
		return
	}
	ctx, cancel := context.WithTimeout(c.r.Context(), 10*time.Second)
	defer cancel()
	err := c.st.Ping(ctx)
	var size int64
	if err == nil {
		size, err = c.st.Size(ctx)
	}
	if err != nil {
		c.log.Warn("admin api: store health check failed", zap.Error(err))
		c.json(http.StatusServiceUnavailable, Health{Status: "unavailable", Error: err.Error()})
		return
	}
	c.json(http.StatusOK, Health{Status: "ok", StoreBytes: size})
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n += int64(n)
	return n, err
}

// backup: GET backup streams the store's backup. A complete stream ends
// with the trailer BackupTrailer: complete; a failure after the first
// byte aborts the connection so that no client takes a cut stream for a
// backup.
func (c *call) backup(_ []string) {
	if _, err := c.query(); c.clientError(err) {
		return
	}
	b, ok := c.st.(store.Backuper)
	if !ok {
		c.fail(http.StatusNotImplemented, "this store cannot stream a backup: back up its database with the database's own tools (e.g. pg_dump of the mdmauth schema)")
		return
	}
	now := c.h.now().UTC()
	h := c.w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="mdm_auth-%s.backup"`, now.Format("20060102T150405Z")))
	h.Set("Trailer", BackupTrailer)
	cw := &countingWriter{w: c.w}
	err := b.Backup(c.r.Context(), cw)
	fields := []zap.Field{zap.Int64("bytes", cw.n)}
	if err != nil {
		c.audit("backup failed", audit.AdminBackup, append(fields, zap.String("result", "failed"), zap.Error(err))...)
		if cw.n == 0 {
			h.Del("Trailer")
			h.Del("Content-Disposition")
			c.storeError("backup", err)
			return
		}
		panic(http.ErrAbortHandler)
	}
	if cw.n == 0 {
		c.w.WriteHeader(http.StatusOK) // so that the trailer goes out as one
	}
	h.Set(BackupTrailer, "complete")
	c.audit("backup streamed", audit.AdminBackup, append(fields, zap.String("result", "complete"))...)
}

// renderProfile: POST enrollments/{id}/profile?site=…
func (c *call) renderProfile(args []string) {
	q, err := c.query("site")
	if c.clientError(err) {
		return
	}
	var none struct{}
	if err := c.readJSON(&none, false); c.clientError(err) {
		return
	}
	site, status, err := pickSite(c.sites, q.get("site"))
	if err != nil {
		c.fail(status, "%v", err)
		return
	}
	prof, err := site.Profiles.RenderProfile(c.r.Context(), args[0])
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.fail(http.StatusNotFound, "enrollment not found")
		return
	case errors.Is(err, ErrProfileConflict):
		c.fail(http.StatusConflict, "%v", err)
		return
	case err != nil:
		c.storeError("enrollment", err)
		return
	}
	h := c.w.Header()
	h.Set("Content-Type", "application/x-apple-aspen-config")
	h.Set("Content-Disposition", `attachment; filename="enrollment.mobileconfig"`)
	h.Set("Content-Length", strconv.Itoa(len(prof)))
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(prof)
	c.audit("enrollment profile rendered", audit.AdminProfileRendered, zap.String("enrollment_id", args[0]),
		zap.String("site", site.name()))
}

// pickSite chooses the site the name selects; without a name, the only
// one.
func pickSite(sites []Site, name string) (Site, int, error) {
	var all []string
	for _, s := range sites {
		all = append(all, s.name())
	}
	if name == "" {
		switch len(sites) {
		case 0:
			return Site{}, http.StatusServiceUnavailable, errors.New("no mdm_auth handler is configured")
		case 1:
			return sites[0], 0, nil
		}
		return Site{}, http.StatusBadRequest, fmt.Errorf("several mdm_auth sites are configured; choose one with site= (%s)", strings.Join(all, ", "))
	}
	var found []Site
	for _, s := range sites {
		for _, n := range s.Names {
			if strings.EqualFold(n, name) {
				found = append(found, s)
				break
			}
		}
	}
	switch len(found) {
	case 0:
		return Site{}, http.StatusBadRequest, fmt.Errorf("no mdm_auth site is named %q (sites: %s)", name, strings.Join(all, ", "))
	case 1:
		return found[0], 0, nil
	}
	return Site{}, http.StatusBadRequest, fmt.Errorf("%d mdm_auth sites answer to %q; name one by its public host (sites: %s)", len(found), name, strings.Join(all, ", "))
}

// name is the site's first name, or "(unnamed)".
func (s Site) name() string {
	if len(s.Names) == 0 {
		return "(unnamed)"
	}
	return s.Names[0]
}
