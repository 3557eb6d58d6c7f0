package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// RuntimeDir returns the directory of the agent's default socket and secret
// file: $XDG_RUNTIME_DIR/tokenkeeper when XDG_RUNTIME_DIR is set (a private,
// per-login directory on Linux), else tokenkeeper under the user's cache
// directory.
func RuntimeDir(lookupEnv func(string) (string, bool)) (string, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	if d, ok := lookupEnv("XDG_RUNTIME_DIR"); ok && filepath.IsAbs(d) {
		return filepath.Join(d, "tokenkeeper"), nil
	}
	d, err := userDir(lookupEnv, "XDG_CACHE_HOME", ".cache", os.UserCacheDir)
	if err != nil {
		return "", fmt.Errorf("no directory for the agent's socket: %w", err)
	}
	return filepath.Join(d, "tokenkeeper"), nil
}

// DefaultListen returns the default listen address: the Unix socket
// agent.sock in RuntimeDir.
func DefaultListen(lookupEnv func(string) (string, bool)) (Listen, error) {
	d, err := RuntimeDir(lookupEnv)
	if err != nil {
		return Listen{}, err
	}
	return Listen{Network: "unix", Address: filepath.Join(d, "agent.sock")}, nil
}

// DefaultSecretFile returns the default bearer secret file: agent.secret in
// RuntimeDir.
func DefaultSecretFile(lookupEnv func(string) (string, bool)) (string, error) {
	d, err := RuntimeDir(lookupEnv)
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "agent.secret"), nil
}

// DefaultStorePath returns the default token database:
// $XDG_STATE_HOME/tokenkeeper/tokens.db, else ~/.local/state/tokenkeeper/tokens.db
// on Unix systems, else tokenkeeper/tokens.db under the user's config
// directory.
func DefaultStorePath(lookupEnv func(string) (string, bool)) (string, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	if d, ok := lookupEnv("XDG_STATE_HOME"); ok && filepath.IsAbs(d) {
		return filepath.Join(d, "tokenkeeper", "tokens.db"), nil
	}
	if runtime.GOOS != "windows" && runtime.GOOS != "darwin" {
		if h, err := home(lookupEnv); err == nil {
			return filepath.Join(h, ".local", "state", "tokenkeeper", "tokens.db"), nil
		}
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no directory for the token store: %w", err)
	}
	return filepath.Join(d, "tokenkeeper", "tokens.db"), nil
}

func userDir(lookupEnv func(string) (string, bool), xdg, fallback string, osDir func() (string, error)) (string, error) {
	if d, ok := lookupEnv(xdg); ok && filepath.IsAbs(d) {
		return d, nil
	}
	if runtime.GOOS != "windows" && runtime.GOOS != "darwin" {
		if h, err := home(lookupEnv); err == nil {
			return filepath.Join(h, fallback), nil
		}
	}
	return osDir()
}

func home(lookupEnv func(string) (string, bool)) (string, error) {
	if h, ok := lookupEnv("HOME"); ok && filepath.IsAbs(h) {
		return h, nil
	}
	return os.UserHomeDir()
}

// expandPath expands a leading "~/" and $VAR or ${VAR}, and makes a relative
// path absolute against dir.
func expandPath(p, dir string, lookupEnv func(string) (string, bool)) (string, error) {
	if p == "" {
		return "", nil
	}
	var missing []string
	p = os.Expand(p, func(name string) string {
		v, ok := lookupEnv(name)
		if !ok || v == "" {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %s is not set", missing[0])
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		h, err := home(lookupEnv)
		if err != nil {
			return "", err
		}
		p = filepath.Join(h, p[1:])
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	return filepath.Clean(p), nil
}

// maxSocketPath is the longest Unix socket path the kernel accepts
// (sun_path is 108 bytes on Linux, 104 on the BSDs, with a final NUL).
const maxSocketPath = 103

// ParseListen parses a listen address: "unix:PATH" (or an absolute path) for
// a Unix socket, or HOST:PORT where HOST is a loopback IP address or
// "localhost". dir resolves a relative socket path. Any other host is
// refused: the agent hands out tokens and must not be reachable from
// another machine.
func ParseListen(s, dir string, lookupEnv func(string) (string, bool)) (Listen, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	s = strings.TrimSpace(s)
	if path, ok := strings.CutPrefix(s, "unix:"); ok || strings.HasPrefix(s, "/") || strings.HasPrefix(s, "~/") {
		if !ok {
			path = s
		}
		if path == "" {
			return Listen{}, fmt.Errorf("empty socket path in %q", s)
		}
		p, err := expandPath(path, dir, lookupEnv)
		if err != nil {
			return Listen{}, err
		}
		if len(p) > maxSocketPath {
			return Listen{}, fmt.Errorf("socket path %s is %d bytes long; Unix sockets allow at most %d", p, len(p), maxSocketPath)
		}
		return Listen{Network: "unix", Address: p}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Listen{}, fmt.Errorf("listen address %q is neither unix:PATH nor HOST:PORT", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return Listen{}, fmt.Errorf("bad port %q in listen address %q", port, s)
	}
	if host == "localhost" {
		return Listen{Network: "tcp", Address: net.JoinHostPort("127.0.0.1", port)}, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return Listen{}, fmt.Errorf("listen host %q must be a loopback IP address (127.0.0.1, ::1) or localhost", host)
	}
	if !ip.Unmap().IsLoopback() {
		return Listen{}, fmt.Errorf("listen address %q is not a loopback address: the agent only listens on a Unix socket or on loopback (127.0.0.1, ::1)", s)
	}
	return Listen{Network: "tcp", Address: net.JoinHostPort(ip.Unmap().String(), port)}, nil
}

// DefaultPath returns the default config file:
// $XDG_CONFIG_HOME/tokenkeeper/agent.yaml, else tokenkeeper/agent.yaml
// under the user's config directory (~/.config on Linux).
func DefaultPath(lookupEnv func(string) (string, bool)) string {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	d, err := userDir(lookupEnv, "XDG_CONFIG_HOME", ".config", os.UserConfigDir)
	if err != nil {
		return "agent.yaml"
	}
	return filepath.Join(d, "tokenkeeper", "agent.yaml")
}
