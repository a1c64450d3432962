package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mdmauth/mdmauth/internal/lab"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

// env is the running deployment the phases share: the PKI, the fast
// upstream, NanoMDM, the OpenID provider and the ports every Caddy of the
// run listens on (one Caddy at a time).
type env struct {
	o    *Options
	tb   testenv.TB
	dir  string // work directory (certificates, stores)
	temp string // where stores are preloaded (tmpfs when available)

	ca                     *testenv.CA
	caPath, cert, key      string
	template               string
	caddyBin               string
	admin, httpPort, https int
	base                   string
	tls                    *tls.Config
	client                 *http.Client

	upstream     *testenv.Program
	upstreamAddr string
	nano         *testenv.NanoMDM
	idp          *testenv.OIDC
	// pg is configuration C's database server (nil without C), of
	// version pgVersion with shared_buffers pgBuffers; the fleet took
	// pgStoreBytes in it.
	pg                   *testenv.PG
	pgVersion, pgBuffers string
	pgStoreBytes         int64
}

// benchPassword is the password of the provider's benchmark users.
const benchPassword = "correct horse"

// benchUsers are the provider's accounts; enrollments take turns.
func benchUsers(n int) []testenv.User {
	return testenv.NumberedUsers("bench", "Bench", 2, n, benchPassword)
}

// startEnv builds Caddy and starts everything but Caddy.
func startEnv(o *Options) (*env, error) {
	e := &env{o: o, tb: o.TB, dir: o.TB.TempDir()}
	var err error
	e.temp = e.dir
	if o.PreloadDir != "" {
		if e.temp, err = os.MkdirTemp(o.PreloadDir, "mdmbench-"); err != nil {
			return nil, err
		}
		o.TB.Cleanup(func() { os.RemoveAll(e.temp) })
	}
	if e.caddyBin = o.CaddyBinary; e.caddyBin == "" {
		o.logf("Caddy with mdm_auth: building ./cmd/caddy (quick when nothing changed)")
		if e.caddyBin, err = testenv.BuildCaddy(); err != nil {
			return nil, err
		}
	}
	tlsFiles, err := testenv.NewLoopbackTLS(e.dir, "mdmbench CA")
	if err != nil {
		return nil, err
	}
	e.ca, e.caPath, e.cert, e.key = tlsFiles.CA, tlsFiles.CAPath, tlsFiles.CertPath, tlsFiles.KeyPath
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = testenv.FreePort(); err != nil {
			return nil, err
		}
	}
	e.https, e.httpPort, e.admin = ports[0], ports[1], ports[2]
	e.base = "https://127.0.0.1:" + strconv.Itoa(e.https)
	e.tls = &tls.Config{RootCAs: e.ca.Pool(), MinVersion: tls.VersionTLS12}
	e.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: e.tls, MaxIdleConnsPerHost: 64, ForceAttemptHTTP2: false,
	}}
	e.template = filepath.Join(e.dir, "enroll.mobileconfig")
	if err := lab.WriteProfileTemplate(e.template, e.base); err != nil {
		return nil, err
	}

	if contains(o.Upstreams, UpstreamFast) || len(o.ScaleSizes) > 0 || o.ProfileDir != "" {
		exe := o.UpstreamExecutable
		if exe == "" {
			if exe, err = os.Executable(); err != nil {
				return nil, err
			}
		}
		e.upstreamAddr = "127.0.0.1:" + strconv.Itoa(ports[3])
		o.logf("starting the fast upstream on %s", e.upstreamAddr)
		e.upstream, err = testenv.StartProgram(e.tb, testenv.ProgramOptions{
			Name: "upstream", Path: exe, Env: map[string]string{UpstreamEnv: e.upstreamAddr},
			ReadyURL: "http://" + e.upstreamAddr + UpstreamHealthPath,
		})
		if err != nil {
			return nil, err
		}
	}
	o.logf("starting NanoMDM %s and the OpenID provider", testenv.NanoMDMVersion)
	// NanoMDM's debug log would cost it a line per request: the benchmark
	// measures it as an operator would run it.
	if e.nano, err = testenv.StartNanoMDM(e.tb, testenv.NanoMDMOptions{CAPath: e.caPath, Args: []string{"-debug=false"}}); err != nil {
		return nil, err
	}
	if e.idp, err = testenv.StartOIDC(e.tb, benchUsers(o.EnrollUsers), []string{e.base + "/mdmauth/oidc/callback"}); err != nil {
		return nil, err
	}
	if o.Postgres && len(o.Upstreams) > 0 {
		if e.pg, e.pgVersion, e.pgBuffers, err = startPostgres(e.tb, o.logf); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// caddy is one running Caddy of the run.
type caddy struct {
	*testenv.Caddy
	// Ready is the time from start until it served.
	Ready time.Duration
	// postgres: the store is e.pg's database (configuration C).
	postgres bool
}

// startCaddy starts a fresh Caddy in configuration cfg in front of up,
// with the token store in storage (configuration B) or in e.pg's
// database (C).
func (e *env) startCaddy(cfg Config, up Upstream, storage string) (*caddy, error) {
	target := e.upstreamAddr
	if up == UpstreamNanoMDM {
		target = e.nano.Addr
	}
	env := map[string]string{"MDMAUTH_OIDC_SECRET": e.idp.ClientSecret}
	if cfg == ConfigC {
		if e.pg == nil {
			return nil, errors.New("bench: configuration C without a PostgreSQL server")
		}
		env[PostgresDSNEnv] = e.pg.DSN()
	}
	cf, err := renderCaddyfile(caddyfileData{
		Gateway: cfg != ConfigA, Postgres: cfg == ConfigC, Admin: e.admin, HTTP: e.httpPort, HTTPS: e.https,
		Storage: storage, Cert: e.cert, Key: e.key, Issuer: e.idp.Issuer, ClientID: e.idp.ClientID,
		Template: e.template, Upstream: target, TTL: "90d",
	})
	if err != nil {
		return nil, err
	}
	start := time.Now()
	c, err := testenv.StartCaddy(e.tb, testenv.CaddyOptions{
		Caddyfile: cf,
		Env:       env,
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", e.admin),
		ReadyURL:  e.base + "/",
		Binary:    e.caddyBin,
	})
	if err != nil {
		return nil, err
	}
	return &caddy{Caddy: c, Ready: time.Since(start), postgres: cfg == ConfigC}, nil
}

// target is where the load generator connects.
func (e *env) target() Target {
	return Target{Addr: "127.0.0.1:" + strconv.Itoa(e.https), TLS: e.tls}
}

// upstreamPID is the process behind up.
func (e *env) upstreamPID(up Upstream) int {
	if up == UpstreamNanoMDM {
		return e.nano.PID()
	}
	return e.upstream.PID()
}

// pprof fetches a profile from Caddy's admin endpoint into path.
func (e *env) pprof(name string, seconds int, path string) error {
	u := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/%s?seconds=%d", e.admin, name, seconds)
	c := &http.Client{Timeout: time.Duration(seconds)*time.Second + time.Minute}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("bench: %s: status %d: %s", u, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
