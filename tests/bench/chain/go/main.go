// chain-bench: the Go side of the agent-path benchmark, built on containerd's
// Go ttrpc (Debian's v1.1.1).
//
//	chain-bench certs -dir DIR
//	chain-bench proxy -listen ADDR -upstream ADDR [-certs DIR] [-ready FILE]
//	chain-bench load -socket PATH -conc N -size BYTES -warmup MS -duration MS -timeout MS
//	chain-bench hold -timeout MS [-burst N] SOCKET...
//
// ADDR is unix:PATH, tcp:HOST:PORT or tls:HOST:PORT.
//
// `certs` writes a CA and a server and a client certificate (ECDSA P-256)
// into DIR, for the TCP hop of the reference chain: a tls: listener serves
// with the server certificate and requires a client certificate from the CA,
// a tls: upstream presents the client certificate and verifies the server's
// (mutual TLS, as between the upstream cloud-api-adaptor and forwarder).
//
// `proxy` is one hop of the reference chain: a ttrpc server that forwards
// every call it receives with one ttrpc client (one connection, multiplexed)
// to the upstream address, the way the upstream cloud-api-adaptor (shim
// socket -> TCP) and agent-protocol-forwarder (TCP -> agent socket) each put
// a ttrpc server in front of a ttrpc client. Requests and responses are moved
// as raw bytes, without decoding them; the caller's deadline and metadata
// travel on through the context, as they do upstream.
//
// `load` keeps N calls of grpc.Health/Check in flight on one connection (the
// request carries a service name sized so that the payload is BYTES long;
// each call has a deadline of -timeout ms, as the kata shim's health checks
// do), checks that each answer is SERVING, discards the warm-up, then records
// every call that started and finished inside the measured window. It prints
// one RESULT line in the format of tests/bench/ttrpc, plus `total`: the calls
// answered, warm-up included.
//
// `hold` opens one connection to each socket, makes one grpc.Health/Check on
// each (as a kata shim does when its sandbox starts), then with -burst N, N
// more at once on every connection; prints "HELD n" and keeps them open
// until SIGTERM/SIGINT or stdin closes.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
)

// raw is a message that is its own encoding (gogo's proto.Marshal and
// Unmarshal use these methods), so requests and answers pass as bytes.
type raw struct {
	b []byte
}

func (r *raw) Reset()                   { r.b = nil }
func (r *raw) String() string           { return fmt.Sprintf("raw(%d bytes)", len(r.b)) }
func (r *raw) ProtoMessage()            {}
func (r *raw) Marshal() ([]byte, error) { return r.b, nil }
func (r *raw) Unmarshal(p []byte) error {
	r.b = append([]byte(nil), p...)
	return nil
}

// The methods the proxy serves: the kata agent API (agent.proto, health.proto).
// ttrpc v1.1.1 dispatches on registered names only, so the list is explicit.
var services = map[string][]string{
	"grpc.Health": {"Check", "Version"},
	"grpc.AgentService": {
		"CreateContainer", "StartContainer", "RemoveContainer", "ExecProcess",
		"SignalProcess", "WaitProcess", "UpdateContainer", "UpdateEphemeralMounts",
		"StatsContainer", "PauseContainer", "ResumeContainer", "WriteStdin", "ReadStdout",
		"ReadStderr", "CloseStdin", "TtyWinResize", "UpdateInterfaces", "UpdateRoutes",
		"ListInterfaces", "ListRoutes", "AddARPNeighbors", "GetIPTables", "SetIPTables",
		"GetMetrics", "CreateSandbox", "DestroySandbox", "OnlineCPUMem", "ReseedRandomDev",
		"GetGuestDetails", "MemHotplugByProbe", "SetGuestDateTime", "CopyFile", "GetOOMEvent",
		"AddSwap", "GetVolumeStats", "ResizeVolume", "SetPolicy", "PullImage",
	},
}

// The server name in the server certificate, checked by the tls: client.
const serverName = "podvm"

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

func certs(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bench CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if err := writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER); err != nil {
		return err
	}
	for i, role := range []string{"server", "client"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)),
			Subject:      pkix.Name{CommonName: role},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
		}
		if role == "server" {
			tmpl.DNSNames = []string{serverName}
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		} else {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, role+".pem"), "CERTIFICATE", der); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, role+".key"), "EC PRIVATE KEY", kder); err != nil {
			return err
		}
	}
	return nil
}

// tlsConfig loads the material `certs` wrote, for role "server" or "client".
func tlsConfig(dir, role string) (*tls.Config, error) {
	if dir == "" {
		return nil, errors.New("tls: address without -certs")
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, role+".pem"), filepath.Join(dir, role+".key"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("tls: no CA certificate")
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if role == "server" {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = pool
	} else {
		c.RootCAs = pool
		c.ServerName = serverName
	}
	return c, nil
}

func dial(addr, certDir string) (net.Conn, error) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		return net.Dial("unix", addr[5:])
	case strings.HasPrefix(addr, "tcp:"):
		return net.Dial("tcp", addr[4:])
	case strings.HasPrefix(addr, "tls:"):
		c, err := tlsConfig(certDir, "client")
		if err != nil {
			return nil, err
		}
		conn, err := tls.Dial("tcp", addr[4:], c)
		if err != nil {
			return nil, err
		}
		// Handshake now, so that a TLS failure is the dial's.
		if err := conn.Handshake(); err != nil {
			conn.Close()
			return nil, err
		}
		st := conn.ConnectionState()
		version := map[uint16]string{tls.VersionTLS12: "TLSv1.2", tls.VersionTLS13: "TLSv1.3"}[st.Version]
		fmt.Fprintf(os.Stderr, "connected to %s: %s %s\n", addr[4:], version,
			tls.CipherSuiteName(st.CipherSuite))
		return conn, nil
	}
	return nil, fmt.Errorf("address %q: expected unix:PATH, tcp:HOST:PORT or tls:HOST:PORT", addr)
}

func listen(addr, certDir string) (net.Listener, error) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		_ = os.Remove(addr[5:])
		return net.Listen("unix", addr[5:])
	case strings.HasPrefix(addr, "tcp:"):
		return net.Listen("tcp", addr[4:])
	case strings.HasPrefix(addr, "tls:"):
		c, err := tlsConfig(certDir, "server")
		if err != nil {
			return nil, err
		}
		return tls.Listen("tcp", addr[4:], c)
	}
	return nil, fmt.Errorf("address %q: expected unix:PATH, tcp:HOST:PORT or tls:HOST:PORT", addr)
}

// upstream is the proxy's one client connection, dialled on first use and
// again after it breaks.
type upstream struct {
	addr    string
	certDir string
	mu      sync.Mutex
	cl      *ttrpc.Client
}

func (u *upstream) client() (*ttrpc.Client, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cl != nil {
		return u.cl, nil
	}
	conn, err := dial(u.addr, u.certDir)
	if err != nil {
		return nil, err
	}
	u.cl = ttrpc.NewClient(conn)
	return u.cl, nil
}

func (u *upstream) drop(cl *ttrpc.Client) {
	u.mu.Lock()
	if u.cl == cl {
		u.cl = nil
	}
	u.mu.Unlock()
	cl.Close()
}

func (u *upstream) forward(service, method string) ttrpc.Method {
	return func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
		var in, out raw
		if err := unmarshal(&in); err != nil {
			return nil, err
		}
		cl, err := u.client()
		if err != nil {
			return nil, err
		}
		err = cl.Call(ctx, service, method, &in, &out)
		if errors.Is(err, ttrpc.ErrClosed) {
			u.drop(cl)
		}
		if err != nil {
			return nil, err
		}
		return &out, nil
	}
}

func proxy(listenAddr, upstreamAddr, certDir, ready string) error {
	l, err := listen(listenAddr, certDir)
	if err != nil {
		return err
	}
	s, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	up := &upstream{addr: upstreamAddr, certDir: certDir}
	for svc, methods := range services {
		m := make(map[string]ttrpc.Method, len(methods))
		for _, name := range methods {
			m[name] = up.forward(svc, name)
		}
		s.Register(svc, m)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		s.Close()
	}()
	if ready != "" {
		if err := os.WriteFile(ready, []byte("ready\n"), 0o644); err != nil {
			return err
		}
	}
	if err := s.Serve(context.Background(), l); err != ttrpc.ErrServerClosed {
		return err
	}
	return nil
}

// checkRequest is a grpc.CheckRequest{service} whose encoding is `size`
// bytes long (at least 2, at most 129).
func checkRequest(size int) []byte {
	if size < 2 {
		size = 2
	}
	if size > 129 {
		size = 129
	}
	b := []byte{0x0a, byte(size - 2)}
	return append(b, bytes.Repeat([]byte{'x'}, size-2)...)
}

// A HealthCheckResponse{status: SERVING}.
var serving = []byte{0x08, 0x01}

const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

func load(sock string, conc, size int, warmup, duration, timeout time.Duration) error {
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	cl := ttrpc.NewClient(conn)
	defer cl.Close()

	payload := checkRequest(size)
	var phase int32
	var errs, total int64
	var firstErr atomic.Value
	samples := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for {
				p := atomic.LoadInt32(&phase)
				if p == phaseStop {
					return
				}
				var out raw
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				err := cl.Call(ctx, "grpc.Health", "Check", &raw{b: payload}, &out)
				el := time.Since(t0)
				cancel()
				if err == nil && !bytes.Equal(out.b, serving) {
					err = fmt.Errorf("unexpected answer %x", out.b)
				}
				if err != nil {
					atomic.AddInt64(&errs, 1)
					firstErr.CompareAndSwap(nil, err.Error())
					time.Sleep(time.Millisecond)
					continue
				}
				atomic.AddInt64(&total, 1)
				if p == phaseMeasure && atomic.LoadInt32(&phase) == phaseMeasure {
					samples[i] = append(samples[i], el)
				}
			}
		}(i)
	}
	time.Sleep(warmup)
	start := time.Now()
	atomic.StoreInt32(&phase, phaseMeasure)
	time.Sleep(duration)
	atomic.StoreInt32(&phase, phaseStop)
	window := time.Since(start)
	wg.Wait()

	var all []time.Duration
	for _, s := range samples {
		all = append(all, s...)
	}
	if len(all) == 0 {
		return fmt.Errorf("no call completed in the measured window (%d errors, first: %v)",
			errs, firstErr.Load())
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	pct := func(q float64) float64 {
		return float64(all[int(float64(len(all)-1)*q)].Nanoseconds()) / 1e3
	}
	fmt.Printf("RESULT calls=%d seconds=%.3f cps=%.0f p50_us=%.1f p99_us=%.1f errors=%d total=%d\n",
		len(all), window.Seconds(), float64(len(all))/window.Seconds(), pct(0.50), pct(0.99), errs,
		atomic.LoadInt64(&total))
	if errs > 0 {
		return fmt.Errorf("%d calls failed, first: %v", errs, firstErr.Load())
	}
	return nil
}

func hold(socks []string, timeout time.Duration, burst int) error {
	var clients []*ttrpc.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	check := func(cl *ttrpc.Client, size int) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var out raw
		err := cl.Call(ctx, "grpc.Health", "Check", &raw{b: checkRequest(size)}, &out)
		if err == nil && !bytes.Equal(out.b, serving) {
			err = fmt.Errorf("unexpected answer %x", out.b)
		}
		return err
	}
	for _, s := range socks {
		conn, err := net.Dial("unix", s)
		if err != nil {
			return err
		}
		cl := ttrpc.NewClient(conn)
		clients = append(clients, cl)
		if err := check(cl, 2); err != nil {
			return fmt.Errorf("%s: %v", s, err)
		}
	}
	// Then `burst` calls at once on every connection, so that each hop has
	// had many frames in flight on it, as under real traffic.
	if burst > 0 {
		errs := make(chan error, len(clients)*burst)
		var wg sync.WaitGroup
		for _, cl := range clients {
			for i := 0; i < burst; i++ {
				wg.Add(1)
				go func(cl *ttrpc.Client) {
					defer wg.Done()
					if err := check(cl, 129); err != nil {
						errs <- err
					}
				}(cl)
			}
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return fmt.Errorf("burst: %v", err)
		}
	}
	fmt.Printf("HELD %d\n", len(clients))
	os.Stdout.Sync()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	eof := make(chan struct{})
	go func() {
		buf := make([]byte, 64)
		for {
			if _, err := os.Stdin.Read(buf); err != nil {
				close(eof)
				return
			}
		}
	}()
	select {
	case <-sigs:
	case <-eof:
	}
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: chain-bench certs|proxy|load|hold [...]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listenAddr := fs.String("listen", "", "proxy: unix:PATH or tcp:HOST:PORT")
	upstreamAddr := fs.String("upstream", "", "proxy: unix:PATH or tcp:HOST:PORT")
	ready := fs.String("ready", "", "proxy: file written once listening")
	certDir := fs.String("certs", "", "proxy: directory `certs` wrote; certs: where to write")
	dir := fs.String("dir", "", "certs: directory to write")
	sock := fs.String("socket", "", "load: unix socket path")
	conc := fs.Int("conc", 1, "load: calls in flight on the connection")
	size := fs.Int("size", 64, "load: request payload bytes (2..129)")
	warmup := fs.Int("warmup", 1000, "load: warm-up, ms")
	duration := fs.Int("duration", 3000, "load: measured window, ms")
	timeout := fs.Int("timeout", 10000, "load, hold: deadline of each call, ms")
	burst := fs.Int("burst", 0, "hold: calls at once on every connection after the first")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "certs":
		err = certs(*dir)
	case "proxy":
		err = proxy(*listenAddr, *upstreamAddr, *certDir, *ready)
	case "load":
		err = load(*sock, *conc, *size, time.Duration(*warmup)*time.Millisecond,
			time.Duration(*duration)*time.Millisecond, time.Duration(*timeout)*time.Millisecond)
	case "hold":
		err = hold(fs.Args(), time.Duration(*timeout)*time.Millisecond, *burst)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "chain-bench: %v\n", err)
		os.Exit(1)
	}
}
