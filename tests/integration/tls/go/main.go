// tls-go-peer: Go's crypto/tls with mutual authentication, speaking just
// enough ttrpc (frames, and the Request/Response protobuf fields an echo
// needs, encoded by hand: standard library only) to test our TLS under
// ttrpc against an independent TLS stack.
//
//	tls-go-peer server -listen 127.0.0.1:0 -cert c -key k -ca ca [-min 1.3] [-ciphers a,b]
//	    prints "LISTENING <port>", then per connection "ACCEPTED <version> <peer CN>"
//	    or "HANDSHAKE_ERROR <error>"; answers every request with its payload.
//	tls-go-peer client -addr host:port -name n -ca ca [-cert c -key k] [-min|-max v]
//	    [-calls n] [-size bytes]
//	    prints "HANDSHAKE <version> <cipher>", then "OK calls=<n>" or "ERROR <error>".
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
)

const (
	headerSize   = 10
	maxMessage   = 4 << 20
	typeRequest  = 1
	typeResponse = 2
)

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendBytes(b []byte, field int, data []byte) []byte {
	b = appendVarint(b, uint64(field)<<3|2)
	b = appendVarint(b, uint64(len(data)))
	return append(b, data...)
}

// fields returns the length-delimited and varint fields of a message.
func fields(msg []byte) (map[int][]byte, map[int]uint64, error) {
	lens := map[int][]byte{}
	ints := map[int]uint64{}
	for len(msg) > 0 {
		key, n := binary.Uvarint(msg)
		if n <= 0 {
			return nil, nil, errors.New("bad tag")
		}
		msg = msg[n:]
		field, wire := int(key>>3), key&7
		switch wire {
		case 0:
			v, n := binary.Uvarint(msg)
			if n <= 0 {
				return nil, nil, errors.New("bad varint")
			}
			ints[field] = v
			msg = msg[n:]
		case 2:
			l, n := binary.Uvarint(msg)
			if n <= 0 || uint64(len(msg)-n) < l {
				return nil, nil, errors.New("bad length")
			}
			lens[field] = msg[n : n+int(l)]
			msg = msg[n+int(l):]
		case 1:
			msg = msg[8:]
		case 5:
			msg = msg[4:]
		default:
			return nil, nil, fmt.Errorf("wire type %d", wire)
		}
	}
	return lens, ints, nil
}

func writeFrame(w io.Writer, id uint32, typ byte, payload []byte) error {
	var h [headerSize]byte
	binary.BigEndian.PutUint32(h[0:], uint32(len(payload)))
	binary.BigEndian.PutUint32(h[4:], id)
	h[8] = typ
	_, err := w.Write(append(h[:], payload...))
	return err
}

func readFrame(r io.Reader) (uint32, byte, []byte, error) {
	var h [headerSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[0:])
	if n > maxMessage {
		return 0, 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, 0, nil, err
	}
	return binary.BigEndian.Uint32(h[4:]), h[8], p, nil
}

func version(s string) uint16 {
	switch strings.ToLower(s) {
	case "1.3":
		return tls.VersionTLS13
	case "1.2", "":
		return tls.VersionTLS12
	}
	fmt.Fprintf(os.Stderr, "unknown version %q\n", s)
	os.Exit(2)
	return 0
}

func versionName(v uint16) string {
	if v == tls.VersionTLS13 {
		return "TLSv1.3"
	}
	return "TLSv1.2"
}

func ciphers(list string) []uint16 {
	if list == "" {
		return nil
	}
	var out []uint16
	for _, name := range strings.Split(list, ",") {
		found := false
		for _, c := range tls.CipherSuites() {
			if c.Name == name {
				out = append(out, c.ID)
				found = true
			}
		}
		if !found {
			fmt.Fprintf(os.Stderr, "unknown cipher suite %q\n", name)
			os.Exit(2)
		}
	}
	return out
}

func pool(file string) *x509.CertPool {
	pem, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		fmt.Fprintf(os.Stderr, "no certificate in %s\n", file)
		os.Exit(2)
	}
	return p
}

var out = struct {
	sync.Mutex
	w *bufio.Writer
}{w: bufio.NewWriter(os.Stdout)}

func say(format string, args ...interface{}) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(out.w, format+"\n", args...)
	out.w.Flush()
}

func server(args []string) {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	cert := fs.String("cert", "", "certificate file")
	key := fs.String("key", "", "key file")
	ca := fs.String("ca", "", "CA file for client certificates")
	min := fs.String("min", "1.2", "minimum version")
	cs := fs.String("ciphers", "", "TLS 1.2 cipher suites")
	fs.Parse(args)
	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool(*ca),
		MinVersion:   version(*min),
		CipherSuites: ciphers(*cs),
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	say("LISTENING %d", l.Addr().(*net.TCPAddr).Port)
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go serve(tls.Server(c, cfg))
	}
}

func serve(c *tls.Conn) {
	defer c.Close()
	if err := c.Handshake(); err != nil {
		say("HANDSHAKE_ERROR %v", err)
		return
	}
	st := c.ConnectionState()
	say("ACCEPTED %s %s", versionName(st.Version), st.PeerCertificates[0].Subject.CommonName)
	r := bufio.NewReaderSize(c, 64<<10)
	var wmu sync.Mutex
	for {
		id, typ, p, err := readFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				say("CONN_ERROR %v", err)
			}
			return
		}
		if typ != typeRequest {
			continue
		}
		lens, _, err := fields(p)
		if err != nil {
			say("CONN_ERROR %v", err)
			return
		}
		resp := appendBytes(nil, 1, nil) // status, always present
		resp = appendBytes(resp, 2, lens[3])
		wmu.Lock()
		err = writeFrame(c, id, typeResponse, resp)
		wmu.Unlock()
		if err != nil {
			return
		}
	}
}

func pattern(n int, seed uint32) []byte {
	p := make([]byte, n)
	x := seed*2654435761 + 1
	for i := range p {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		p[i] = byte(x)
	}
	return p
}

func client(args []string) {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port")
	name := fs.String("name", "", "server name")
	cert := fs.String("cert", "", "certificate file")
	key := fs.String("key", "", "key file")
	ca := fs.String("ca", "", "CA file")
	min := fs.String("min", "1.2", "minimum version")
	max := fs.String("max", "1.3", "maximum version")
	calls := fs.Int("calls", 10, "calls")
	size := fs.Int("size", 1000, "payload bytes")
	fs.Parse(args)
	cfg := &tls.Config{
		RootCAs:    pool(*ca),
		ServerName: *name,
		MinVersion: version(*min),
		MaxVersion: version(*max),
	}
	if *cert != "" {
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	c, err := tls.Dial("tcp", *addr, cfg)
	if err != nil {
		say("ERROR %v", err)
		os.Exit(1)
	}
	defer c.Close()
	st := c.ConnectionState()
	say("HANDSHAKE %s %s", versionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	if err := run(c, *calls, *size); err != nil {
		say("ERROR %v", err)
		os.Exit(1)
	}
	say("OK calls=%d", *calls)
}

// run sends all calls at once (odd stream ids) and checks every answer.
func run(c *tls.Conn, calls, size int) error {
	errc := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(c, 64<<10)
		for i := 0; i < calls; i++ {
			req := appendBytes(nil, 1, []byte("pp.test.Echo"))
			req = appendBytes(req, 2, []byte("Echo"))
			req = appendBytes(req, 3, pattern(size+i, uint32(i)))
			if err := writeFrame(w, uint32(2*i+1), typeRequest, req); err != nil {
				errc <- err
				return
			}
		}
		errc <- w.Flush()
	}()
	r := bufio.NewReaderSize(c, 64<<10)
	for got := 0; got < calls; got++ {
		id, typ, p, err := readFrame(r)
		if err != nil {
			return err
		}
		if typ != typeResponse || id%2 != 1 {
			return fmt.Errorf("unexpected frame type %d id %d", typ, id)
		}
		lens, _, err := fields(p)
		if err != nil {
			return err
		}
		_, status, err := fields(lens[1])
		if err != nil {
			return err
		}
		if status[1] != 0 {
			return fmt.Errorf("call %d: status %d", id, status[1])
		}
		i := int(id-1) / 2
		if !bytes.Equal(lens[2], pattern(size+i, uint32(i))) {
			return fmt.Errorf("call %d: answer differs", id)
		}
	}
	return <-errc
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tls-go-peer server|client [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "server":
		server(os.Args[2:])
	case "client":
		client(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}
