package testenv

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// ModulePath is the module whose root holds .bin.
const ModulePath = "github.com/mdmauth/mdmauth"

// Pinned third-party binaries and this repository's Caddy.
const (
	// NanoMDMName is the file name of NanoMDM in .bin.
	NanoMDMName = "nanomdm"
	// NanoMDMPackage is NanoMDM's main package.
	NanoMDMPackage = "github.com/micromdm/nanomdm/cmd/nanomdm"
	// NanoMDMVersion is the pinned NanoMDM version.
	NanoMDMVersion = "v0.9.0"

	// OIDCServerName is the file name of the zitadel example provider in .bin ("go install"
	// names it "server").
	OIDCServerName = "oidc-example-server"
	// OIDCServerPackage is the example provider's main package.
	OIDCServerPackage = "github.com/zitadel/oidc/v3/example/server"
	// OIDCServerVersion is the pinned zitadel/oidc version.
	OIDCServerVersion = "v3.52.0"

	// CaddyName is the file name of this repository's Caddy in .bin.
	CaddyName = "caddy"
	// CaddyPackage is its main package, relative to the repository root.
	CaddyPackage = "./cmd/caddy"
)

// installTimeout bounds one "go install" or "go build"; a cold Caddy build takes minutes.
const installTimeout = 20 * time.Minute

// binMu serializes installs inside this process; the lock file serializes processes.
var binMu sync.Mutex

// EnvVar returns the environment variable that overrides the binary called name: the name in
// upper case, "-" turned into "_", followed by "_BIN" (NANOMDM_BIN, OIDC_EXAMPLE_SERVER_BIN,
// CADDY_BIN).
func EnvVar(name string) string {
	return strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_BIN"
}

// RepoRoot returns the root of the mdmauth module: the first directory, from the working
// directory upwards (then from this source file upwards), whose go.mod declares ModulePath.
func RepoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if isModuleRoot(dir) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("testenv: no go.mod of module %s above the working directory", ModulePath)
}

// isModuleRoot reports whether dir/go.mod declares ModulePath.
func isModuleRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`) == ModulePath
		}
	}
	return false
}

// BinDir returns <repo>/.bin, creating it.
func BinDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, ".bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	return dir, nil
}

// Binary returns the path of the binary called name, built from the main package pkg at
// module version. In order: the environment variable EnvVar(name), which must name an
// executable; <repo>/.bin/<name> when its build information says it is pkg at version;
// otherwise "go install pkg@version" into <repo>/.bin, renamed to name. Concurrent calls, also
// from other processes, are serialized with a lock file.
func Binary(name, pkg, version string) (string, error) {
	if p, ok, err := fromEnv(name); ok || err != nil {
		return p, err
	}
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	target := filepath.Join(dir, name)
	if isBuildOf(target, pkg, version) {
		return target, nil
	}

	unlock, err := lockBin(dir, name)
	if err != nil {
		return "", err
	}
	defer unlock()
	if isBuildOf(target, pkg, version) { // someone else installed it while we waited
		return target, nil
	}

	tmp, err := os.MkdirTemp(dir, ".install-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := goCmd(dir, map[string]string{"GOBIN": tmp}, "install", pkg+"@"+version); err != nil {
		return "", err
	}
	built := filepath.Join(tmp, installName(pkg)+exeSuffix())
	if err := os.Rename(built, target); err != nil {
		return "", fmt.Errorf("testenv: installing %s: %w", name, err)
	}
	return target, nil
}

// NanoMDMBinary returns the pinned NanoMDM binary (see [Binary]).
func NanoMDMBinary() (string, error) {
	return Binary(NanoMDMName, NanoMDMPackage, NanoMDMVersion)
}

// OIDCServerBinary returns the pinned zitadel example OpenID provider (see [Binary]).
func OIDCServerBinary() (string, error) {
	return Binary(OIDCServerName, OIDCServerPackage, OIDCServerVersion)
}

// BuildCaddy returns CADDY_BIN when set, otherwise builds <repo>/cmd/caddy into
// <repo>/.bin/caddy. It always runs "go build", which is quick when nothing changed.
func BuildCaddy() (string, error) {
	return BuildPackage(CaddyName, CaddyPackage)
}

// BuildPackage returns EnvVar(name) when set, otherwise builds the main package pkg (an import
// path or a ./path relative to the repository root) inside the mdmauth module into
// <repo>/.bin/<name>, replacing the previous build atomically.
func BuildPackage(name, pkg string) (string, error) {
	if p, ok, err := fromEnv(name); ok || err != nil {
		return p, err
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	unlock, err := lockBin(dir, name)
	if err != nil {
		return "", err
	}
	defer unlock()

	tmp, err := os.MkdirTemp(dir, ".build-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, name+exeSuffix())
	if err := goCmd(root, nil, "build", "-o", out, pkg); err != nil {
		return "", err
	}
	// Renaming (not overwriting) lets a running copy keep its file.
	target := filepath.Join(dir, name+exeSuffix())
	if err := os.Rename(out, target); err != nil {
		return "", fmt.Errorf("testenv: installing %s: %w", name, err)
	}
	return target, nil
}

// fromEnv looks up the override for name. ok is false when the variable is unset.
func fromEnv(name string) (path string, ok bool, err error) {
	v := os.Getenv(EnvVar(name))
	if v == "" {
		return "", false, nil
	}
	st, err := os.Stat(v)
	if err != nil {
		return "", true, fmt.Errorf("testenv: %s: %w", EnvVar(name), err)
	}
	if st.IsDir() || (runtime.GOOS != "windows" && st.Mode().Perm()&0o111 == 0) {
		return "", true, fmt.Errorf("testenv: %s=%s is not an executable file", EnvVar(name), v)
	}
	abs, err := filepath.Abs(v)
	if err != nil {
		return "", true, fmt.Errorf("testenv: %s: %w", EnvVar(name), err)
	}
	return abs, true, nil
}

// isBuildOf reports whether the executable at file was built from pkg at module version.
func isBuildOf(file, pkg, version string) bool {
	info, err := buildinfo.ReadFile(file)
	if err != nil {
		return false
	}
	return info.Path == pkg && info.Main.Version == version
}

// installName is the file name "go install" gives pkg: its last element, skipping a major
// version suffix such as /v2.
func installName(pkg string) string {
	base := path.Base(pkg)
	if len(base) > 1 && base[0] == 'v' && strings.Trim(base[1:], "0123456789") == "" {
		base = path.Base(path.Dir(pkg))
	}
	return base
}

// exeSuffix is ".exe" on Windows.
func exeSuffix() string {
	if runtime.GOOS == "windows" {
		return ".exe"
	}
	return ""
}

// goCmd runs the go command in dir with extra environment, returning its output in the error.
func goCmd(dir string, env map[string]string, args ...string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("testenv: the go command is needed to build test binaries: %w", err)
	}
	set := map[string]string{"GOWORK": "off"}
	for k, v := range env {
		set[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir = dir
	// Cross-compilation settings would make "go install" refuse GOBIN or build the wrong binary.
	cmd.Env = dropExact(childEnv(nil, set), "GOOS", "GOARCH")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("testenv: go %s: %w\n%s", strings.Join(args, " "), err, lastLines(out.String(), tailLines))
	}
	return nil
}

// dropExact removes the variables named names from env.
func dropExact(env []string, names ...string) []string {
	out := env[:0]
next:
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		for _, n := range names {
			if name == n {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// lockBin takes the lock for name in dir and returns its release.
func lockBin(dir, name string) (unlock func(), err error) {
	binMu.Lock()
	f, err := os.OpenFile(filepath.Join(dir, "."+name+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		binMu.Unlock()
		return nil, fmt.Errorf("testenv: lock: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		binMu.Unlock()
		return nil, fmt.Errorf("testenv: lock %s: %w", f.Name(), err)
	}
	// Work directories left by an interrupted install or build of name are ours now.
	for _, pat := range []string{".install-" + name + "-*", ".build-" + name + "-*"} {
		stale, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, d := range stale {
			_ = os.RemoveAll(d)
		}
	}
	return func() {
		_ = unlockFile(f)
		f.Close()
		binMu.Unlock()
	}, nil
}
