package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotLoopback is returned (wrapped) by [Listen] for an address that is not
// a loopback address, a Unix socket, or "localhost".
var ErrNotLoopback = errors.New("tokenkeeper: agent listens only on a Unix socket or a loopback address")

// ErrSocketInUse is returned (wrapped) by [Listen] when another process
// already listens on the Unix socket.
var ErrSocketInUse = errors.New("tokenkeeper: another process listens on the socket")

// Listen returns a listener for the agent's API.
//
// An address of the form "unix:/path/to.sock" is a Unix socket. The socket
// file is created with mode 0600, atomically: it is bound in a private
// directory beside the final path, given its mode, then renamed into place,
// so it is never reachable by others, whatever the umask. A socket file left
// by a dead agent is removed first; if a process still listens on it,
// Listen fails with an error wrapping [ErrSocketInUse], and a path that
// exists but is not a socket is never touched. Closing the listener removes
// the socket file.
//
// Any other address is TCP "host:port" where host is a loopback IP address
// ("127.0.0.1", "[::1]") or "localhost" (bound to 127.0.0.1, without asking
// a resolver). Everything else, including an empty host, fails with an error
// wrapping [ErrNotLoopback].
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return listenUnix(path)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("tokenkeeper: listen address %q: %w", addr, err)
	}
	ip, err := loopbackIP(host)
	if err != nil {
		return nil, fmt.Errorf("tokenkeeper: listen address %q: %w", addr, err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), port))
	if err != nil {
		return nil, fmt.Errorf("tokenkeeper: %w", err)
	}
	return ln, nil
}

// loopbackIP resolves a listen host without DNS.
func loopbackIP(host string) (netip.Addr, error) {
	if strings.EqualFold(host, "localhost") {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" || !ip.Unmap().IsLoopback() {
		return netip.Addr{}, ErrNotLoopback
	}
	return ip.Unmap(), nil
}

func listenUnix(path string) (net.Listener, error) {
	if path == "" {
		return nil, fmt.Errorf("tokenkeeper: empty Unix socket path")
	}
	path = filepath.Clean(path)
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".tk")
	if err != nil {
		return nil, fmt.Errorf("tokenkeeper: socket directory: %w", err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("tokenkeeper: %w", err)
	}
	ln.SetUnlinkOnClose(false) // the file moves; unixListener.Close removes it
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		return nil, fmt.Errorf("tokenkeeper: socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(tmp)
	if err != nil {
		return fail(err)
	}
	// Rename does not replace a socket created meanwhile by another agent
	// silently: Link fails if the path exists.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fail(ErrSocketInUse)
		}
		return fail(err)
	}
	return &unixListener{UnixListener: ln, path: path, fi: fi}, nil
}

// removeStaleSocket removes a socket file that nothing listens on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tokenkeeper: socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("tokenkeeper: %s exists and is not a socket; not removing it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("tokenkeeper: socket %s: %w", path, ErrSocketInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tokenkeeper: socket %s: cannot tell whether it is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tokenkeeper: removing stale socket %s: %w", path, err)
	}
	return nil
}

// unixListener reports its final path and removes the socket file on Close,
// unless another socket has replaced it.
type unixListener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo
	once sync.Once
}

func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.fi) {
			os.Remove(l.path)
		}
	})
	return err
}

// secretBytes is the length of a generated secret before hex encoding.
const secretBytes = 32

// LoadOrCreateSecret returns the bearer secret kept in the file at path. If
// the file does not exist, it is created (with its directory, mode 0700)
// with mode 0600 and a random 32-byte secret, hex-encoded. An existing file
// is refused if its mode grants any access to group or others, or if it
// does not hold a secret of at least 32 printable characters without spaces
// (surrounding whitespace is ignored).
func LoadOrCreateSecret(path string) (string, error) {
	for range 3 {
		s, err := readSecret(path)
		if !errors.Is(err, fs.ErrNotExist) {
			return s, err
		}
		s, err = createSecret(path)
		if !errors.Is(err, fs.ErrExist) {
			return s, err
		}
		// Another process created it meanwhile: read it.
	}
	return "", fmt.Errorf("tokenkeeper: secret file %s: created and removed concurrently", path)
}

func readSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return "", fmt.Errorf("tokenkeeper: secret file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("tokenkeeper: secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("tokenkeeper: secret file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("tokenkeeper: secret file %s has mode %04o: it must not be accessible by group or others (chmod 600 %s)", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 4097))
	if err != nil {
		return "", fmt.Errorf("tokenkeeper: secret file: %w", err)
	}
	if len(data) > 4096 {
		return "", fmt.Errorf("tokenkeeper: secret file %s is too large to be a secret", path)
	}
	s := strings.TrimSpace(string(data))
	if len(s) < secretBytes {
		return "", fmt.Errorf("tokenkeeper: secret in %s is too short (%d characters, at least %d needed)", path, len(s), secretBytes)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return "", fmt.Errorf("tokenkeeper: secret in %s contains a space, a control character or a non-ASCII byte", path)
		}
	}
	return s, nil
}

func createSecret(path string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("tokenkeeper: secret file: %w", err)
	}
	var raw [secretBytes]byte
	rand.Read(raw[:]) // never fails (crypto/rand)
	s := hex.EncodeToString(raw[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", err
		}
		return "", fmt.Errorf("tokenkeeper: creating secret file: %w", err)
	}
	_, err = f.WriteString(s + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("tokenkeeper: writing secret file: %w", err)
	}
	return s, nil
}
