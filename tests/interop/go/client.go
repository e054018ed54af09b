// The interop cases, run with containerd's Go ttrpc client against a server
// (ours or Go's). Each check prints "ok" or "FAIL" and what it saw.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/gogo/protobuf/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type checker struct {
	sock   string
	peer   string
	failed int
	passed int
}

func (c *checker) ok(name, format string, args ...interface{}) {
	c.passed++
	fmt.Printf("ok   %-44s %s\n", name, fmt.Sprintf(format, args...))
}

func (c *checker) fail(name, format string, args ...interface{}) {
	c.failed++
	fmt.Printf("FAIL %-44s %s\n", name, fmt.Sprintf(format, args...))
}

func (c *checker) note(name, format string, args ...interface{}) {
	fmt.Printf("note %-44s %s\n", name, fmt.Sprintf(format, args...))
}

// forcedTimeout lets a check send a timeout_nano that differs from the
// context's deadline, so that server-side and client-side enforcement can be
// told apart.
type forcedTimeoutKey struct{}

func withForcedTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, forcedTimeoutKey{}, d.Nanoseconds())
}

func forceTimeout(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response,
	_ *ttrpc.UnaryClientInfo, invoker ttrpc.Invoker) error {
	if v, ok := ctx.Value(forcedTimeoutKey{}).(int64); ok {
		req.TimeoutNano = v
	}
	return invoker(ctx, req, resp)
}

func (c *checker) dial() (*ttrpc.Client, error) {
	conn, err := net.Dial("unix", c.sock)
	if err != nil {
		return nil, err
	}
	return ttrpc.NewClient(conn, ttrpc.WithUnaryClientInterceptor(forceTimeout)), nil
}

// guard is a context without a deadline (so no timeout_nano is sent) that is
// cancelled after `d`, so a server that never answers cannot hang a check.
func guard(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t := time.AfterFunc(d, cancel)
	return ctx, func() { t.Stop(); cancel() }
}

func call(ctx context.Context, cl *ttrpc.Client, service, method string, in []byte) ([]byte, error) {
	var out raw
	err := cl.Call(ctx, service, method, &raw{b: in}, &out)
	return out.b, err
}

// codeOf maps an error from Call to a gRPC code; a local context error is
// reported as the code it stands for.
func codeOf(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return status.Code(err)
}

func describe(err error) string {
	if err == nil {
		return "OK"
	}
	if s, ok := status.FromError(err); ok {
		m := s.Message()
		if len(m) > 160 {
			m = fmt.Sprintf("%s... (%d B)", m[:160], len(m))
		}
		return fmt.Sprintf("%s %q", s.Code(), m)
	}
	return fmt.Sprintf("local error %v", err)
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	r.Read(b)
	return b
}

// requestPayloadFor is the Echo payload size whose encoded ttrpc.Request
// (no deadline, no metadata) is exactly `frame` bytes.
func requestPayloadFor(frame int) int {
	probe := frame - 64
	size := proto.Size(&ttrpc.Request{Service: serviceName, Method: "Echo", Payload: make([]byte, probe)})
	return probe + frame - size
}

// responseOverhead measures, on the wire, how many bytes an OK Big answer
// adds to a payload of `probe` bytes (whether the server emits an empty
// status on success changes it).
func (c *checker) responseOverhead(probe int) (int, error) {
	w, err := dialWire(c.sock)
	if err != nil {
		return 0, err
	}
	defer w.close()
	if err := w.sendRequest(1, "Big", []byte(strconv.Itoa(probe))); err != nil {
		return 0, err
	}
	f, err := w.recv(30 * time.Second)
	if err != nil {
		return 0, err
	}
	return int(f.length) - probe, nil
}

func (c *checker) alive(name string, cl *ttrpc.Client) {
	ctx, cancel := guard(10 * time.Second)
	defer cancel()
	out, err := call(ctx, cl, serviceName, "Echo", []byte("still alive"))
	if err != nil || string(out) != "still alive" {
		c.fail(name, "connection unusable afterwards: %s, payload %q", describe(err), out)
		return
	}
	c.ok(name, "connection still serves calls")
}

func (c *checker) payloadSizes(cl *ttrpc.Client) {
	r := rand.New(rand.NewSource(1))
	exact := requestPayloadFor(maxFrame)
	for _, n := range []int{0, 1, 2, 127, 128, 1000, 4096, 65535, 65536, 1 << 20, 3 << 20, exact} {
		in := randomBytes(r, n)
		ctx, cancel := guard(30 * time.Second)
		out, err := call(ctx, cl, serviceName, "Echo", in)
		cancel()
		name := fmt.Sprintf("echo %d B", n)
		switch {
		case err != nil:
			c.fail(name, "got %s", describe(err))
		case !bytes.Equal(in, out):
			c.fail(name, "payload differs: sent %d B, got %d B", len(in), len(out))
		default:
			c.ok(name, "round trip intact")
		}
	}
}

func (c *checker) requestLimit(cl *ttrpc.Client) {
	exact := requestPayloadFor(maxFrame)
	sz := proto.Size(&ttrpc.Request{Service: serviceName, Method: "Echo", Payload: make([]byte, exact)})
	if sz != maxFrame {
		c.fail("request frame size arithmetic", "payload %d encodes to %d, want %d", exact, sz, maxFrame)
		return
	}
	in := bytes.Repeat([]byte{0x5a}, exact+1)
	ctx, cancel := guard(30 * time.Second)
	_, err := call(ctx, cl, serviceName, "Echo", in)
	cancel()
	name := fmt.Sprintf("request frame 4 MiB + 1 (payload %d B)", exact+1)
	if codeOf(err) != codes.ResourceExhausted {
		c.fail(name, "got %s, want ResourceExhausted", describe(err))
	} else {
		c.ok(name, "rejected: %s", describe(err))
	}
	c.alive("request frame 4 MiB + 1: afterwards", cl)
}

func (c *checker) responseLimit(cl *ttrpc.Client) {
	overhead, err := c.responseOverhead(maxFrame - 64)
	if err != nil {
		c.fail("response frame size", "probe: %v", err)
		return
	}
	exact := maxFrame - overhead
	ctx, cancel := guard(30 * time.Second)
	out, err := call(ctx, cl, serviceName, "Big", []byte(strconv.Itoa(exact)))
	cancel()
	name := fmt.Sprintf("response frame 4 MiB (payload %d B)", exact)
	switch {
	case err != nil:
		c.fail(name, "got %s", describe(err))
	case !bytes.Equal(out, pattern(exact)):
		c.fail(name, "payload differs: got %d B", len(out))
	default:
		c.ok(name, "accepted, payload intact")
	}

	// A response over the limit must not reach the client as a frame: Go's
	// v1.1.1 client panics on an oversize frame (it slices the nil buffer the
	// channel returns). Look at the wire first.
	name = fmt.Sprintf("response frame 4 MiB + 1 (payload %d B)", exact+1)
	w, err := dialWire(c.sock)
	if err != nil {
		c.fail(name, "dial: %v", err)
		return
	}
	defer w.close()
	if err := w.sendRequest(1, "Big", []byte(strconv.Itoa(exact+1))); err != nil {
		c.fail(name, "send: %v", err)
		return
	}
	f, err := w.recv(30 * time.Second)
	if err != nil {
		c.fail(name, "recv: %v", err)
		return
	}
	if f.length > maxFrame {
		if c.peer == "go" {
			c.note(name, "Go's server sends it anyway (%d-byte frame); skipped for the Go client", f.length)
			return
		}
		c.fail(name, "server sent a %d-byte frame (over 4 MiB); want a RESOURCE_EXHAUSTED answer", f.length)
		return
	}
	resp, err := decodeResponse(f)
	if err != nil {
		c.fail(name, "bad response: %v", err)
		return
	}
	if resp.Status == nil || codes.Code(resp.Status.Code) != codes.ResourceExhausted {
		c.fail(name, "wire: got status %v, want ResourceExhausted", resp.Status)
		return
	}
	c.ok(name+" (wire)", "answered ResourceExhausted %q in a %d-byte frame", resp.Status.Message, f.length)

	ctx, cancel = guard(30 * time.Second)
	_, err = call(ctx, cl, serviceName, "Big", []byte(strconv.Itoa(exact+1)))
	cancel()
	if codeOf(err) != codes.ResourceExhausted {
		c.fail(name, "got %s, want ResourceExhausted", describe(err))
	} else {
		c.ok(name, "rejected: %s", describe(err))
	}
	c.alive("response frame 4 MiB + 1: afterwards", cl)
}

func (c *checker) concurrent(cl *ttrpc.Client) {
	const n = 256
	var wg sync.WaitGroup
	errs := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			in := []byte(strings.Repeat(fmt.Sprintf("call-%d;", i), i*5))
			ctx, cancel := guard(30 * time.Second)
			defer cancel()
			out, err := call(ctx, cl, serviceName, "Echo", in)
			if err != nil {
				errs[i] = describe(err)
			} else if !bytes.Equal(in, out) {
				errs[i] = fmt.Sprintf("payload differs (%d B sent, %d B back)", len(in), len(out))
			}
		}(i)
	}
	wg.Wait()
	bad := 0
	for i, e := range errs {
		if e != "" {
			if bad < 5 {
				c.fail("256 concurrent echoes", "call %d: %s", i, e)
			}
			bad++
		}
	}
	if bad == 0 {
		c.ok("256 concurrent echoes", "all answered, each with its own payload")
	}

	// 256 calls of 300 ms each finish in about 300 ms only if the server runs
	// them at the same time.
	start := time.Now()
	var failed int32
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := guard(30 * time.Second)
			defer cancel()
			out, err := call(ctx, cl, serviceName, "Sleep", []byte("300"))
			if err != nil || string(out) != "slept" {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	switch {
	case failed > 0:
		c.fail("256 concurrent sleeps", "%d calls failed", failed)
	case el > 3*time.Second:
		c.fail("256 concurrent sleeps", "took %v: calls were not served concurrently", el)
	default:
		c.ok("256 concurrent sleeps", "256 x 300 ms in %v", el.Round(time.Millisecond))
	}
}

func (c *checker) deadlines(cl *ttrpc.Client) {
	// timeout_nano reaches the server with the right unit.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	out, err := call(ctx, cl, serviceName, "Deadline", nil)
	cancel()
	left, perr := strconv.Atoi(string(out))
	switch {
	case err != nil:
		c.fail("deadline: timeout_nano reaches server", "got %s", describe(err))
	case perr != nil || left <= 3000 || left > 5000:
		c.fail("deadline: timeout_nano reaches server", "server sees %q ms left, want (3000, 5000]", out)
	default:
		c.ok("deadline: timeout_nano reaches server", "5 s sent, server sees %d ms left", left)
	}

	gctx, gcancel := guard(10 * time.Second)
	out, err = call(gctx, cl, serviceName, "Deadline", nil)
	gcancel()
	if err != nil || string(out) != "none" {
		c.fail("deadline: none sent", "got %s %q, want \"none\"", describe(err), out)
	} else {
		c.ok("deadline: none sent", "server sees no deadline")
	}

	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	out, err = call(ctx, cl, serviceName, "Sleep", []byte("20"))
	cancel()
	if err != nil || string(out) != "slept" {
		c.fail("deadline: call within deadline", "got %s %q", describe(err), out)
	} else {
		c.ok("deadline: call within deadline", "20 ms call under a 2 s deadline answered")
	}

	// The server enforces timeout_nano: 300 ms sent, no local deadline.
	gctx, gcancel = guard(10 * time.Second)
	start := time.Now()
	_, err = call(withForcedTimeout(gctx, 300*time.Millisecond), cl, serviceName, "Sleep", []byte("3000"))
	el := time.Since(start)
	gcancel()
	_, isStatus := status.FromError(err)
	switch {
	case err == nil || !isStatus || status.Code(err) != codes.DeadlineExceeded:
		c.fail("deadline: server enforces timeout_nano", "got %s after %v, want DeadlineExceeded from the server", describe(err), el)
	case el < 250*time.Millisecond || el > 2*time.Second:
		c.fail("deadline: server enforces timeout_nano", "answered after %v, want about 300 ms", el)
	default:
		c.ok("deadline: server enforces timeout_nano", "%s after %v", describe(err), el.Round(time.Millisecond))
	}

	// The client enforces its own deadline: 300 ms locally while the server
	// is told 10 s, so only the client can end the call early.
	ctx, cancel = context.WithTimeout(withForcedTimeout(context.Background(), 10*time.Second), 300*time.Millisecond)
	start = time.Now()
	_, err = call(ctx, cl, serviceName, "Sleep", []byte("1500"))
	el = time.Since(start)
	cancel()
	switch {
	case !errors.Is(err, context.DeadlineExceeded):
		c.fail("deadline: client enforces its own", "got %s after %v, want a local deadline error", describe(err), el)
	case el > 1200*time.Millisecond:
		c.fail("deadline: client enforces its own", "returned after %v, want about 300 ms", el)
	default:
		c.ok("deadline: client enforces its own", "%v after %v", err, el.Round(time.Millisecond))
	}
	c.alive("deadline: client enforces its own: afterwards", cl)
	// The late answer arrives for a call the client gave up on.
	time.Sleep(1500 * time.Millisecond)
	c.alive("deadline: late answer ignored", cl)
}

func (c *checker) statuses(cl *ttrpc.Client) {
	type tc struct {
		code codes.Code
		msg  string
	}
	var cases []tc
	for code := codes.Canceled; code <= codes.Unauthenticated; code++ {
		cases = append(cases, tc{code, fmt.Sprintf("status %d: ünïcødé ✓ \"quoted\" \\ 100%%s", code)})
	}
	cases = append(cases, tc{codes.Internal, ""}, tc{codes.NotFound, strings.Repeat("long message ", 300)})
	for _, t := range cases {
		name := fmt.Sprintf("status %s (%d B message)", t.code, len(t.msg))
		ctx, cancel := guard(10 * time.Second)
		_, err := call(ctx, cl, serviceName, "Fail", []byte(fmt.Sprintf("%d:%s", t.code, t.msg)))
		cancel()
		s, isStatus := status.FromError(err)
		switch {
		case err == nil || !isStatus:
			c.fail(name, "got %s", describe(err))
		case s.Code() != t.code || s.Message() != t.msg:
			c.fail(name, "got %s (%d B message), want %s (%d B)", describe(err), len(s.Message()), t.code, len(t.msg))
		default:
			c.ok(name, "code and message round trip")
		}
	}
}

func (c *checker) metadata(cl *ttrpc.Client) {
	md := ttrpc.MD{}
	md.Set("pp-key", "v1")
	md.Set("pp-multi", "a", "b", "c")
	md.Set("pp-empty", "")
	md.Set("pp-sym", "x=y z\t€")
	want := "pp-empty=\npp-key=v1\npp-multi=a\npp-multi=b\npp-multi=c\npp-sym=x=y z\t€\n"
	ctx, cancel := guard(10 * time.Second)
	out, err := call(ttrpc.WithMetadata(ctx, md), cl, serviceName, "Metadata", nil)
	cancel()
	if err != nil || string(out) != want {
		c.fail("metadata round trip", "got %s %q, want %q", describe(err), out, want)
	} else {
		c.ok("metadata round trip", "4 keys, 6 values, order within a key kept")
	}

	ctx, cancel = guard(10 * time.Second)
	out, err = call(ctx, cl, serviceName, "Metadata", nil)
	cancel()
	if err != nil || len(out) != 0 {
		c.fail("metadata: none", "got %s %q", describe(err), out)
	} else {
		c.ok("metadata: none", "server sees none")
	}
}

func (c *checker) unknown(cl *ttrpc.Client) {
	for _, t := range []struct{ service, method string }{
		{"pp.test.Nope", "Echo"}, {serviceName, "Nope"}, {"", ""},
	} {
		name := fmt.Sprintf("unknown %s/%s", t.service, t.method)
		ctx, cancel := guard(10 * time.Second)
		_, err := call(ctx, cl, t.service, t.method, []byte("x"))
		cancel()
		if codeOf(err) != codes.Unimplemented {
			c.fail(name, "got %s, want Unimplemented", describe(err))
		} else {
			c.ok(name, "%s", describe(err))
		}
	}
	c.alive("unknown method: afterwards", cl)
}

// wire checks bytes and framing on a plain socket.
func (c *checker) wire() {
	w, err := dialWire(c.sock)
	if err != nil {
		c.fail("wire", "dial: %v", err)
		return
	}
	defer w.close()

	expect := func(name string, stream uint32, want []byte) {
		f, err := w.recv(10 * time.Second)
		switch {
		case err != nil:
			c.fail(name, "recv: %v", err)
		case f.streamID != stream || f.typ != 2 || f.flags != 0:
			c.fail(name, "header stream %d type %d flags %d, want %d 2 0", f.streamID, f.typ, f.flags, stream)
		case want != nil && !bytes.Equal(f.payload, want):
			c.fail(name, "payload % x, want % x", f.payload, want)
		default:
			c.ok(name, "frame % x", f.payload)
		}
	}

	// design.md: an OK response carries an empty status (0a 00). Go's
	// v1.1.1 server leaves the status out on success.
	okStatus := []byte{0x0a, 0x00}
	if c.peer == "go" {
		okStatus = nil
		c.note("wire: OK response bytes", "Go's server omits the status on success")
	}
	okResp := func(payload string) []byte {
		b := append([]byte{}, okStatus...)
		if payload != "" {
			b = append(b, 0x12, byte(len(payload)))
			b = append(b, payload...)
		}
		return b
	}
	_ = w.sendRequest(1, "Echo", []byte("hi"))
	expect("wire: OK response bytes", 1, okResp("hi"))
	_ = w.sendRequest(3, "Echo", nil)
	expect("wire: OK response, empty payload", 3, okResp(""))

	// Stream ids need only be odd: answers go back on the id asked.
	_ = w.sendRequest(101, "Echo", []byte("a"))
	expect("wire: non-consecutive stream id", 101, nil)
	_ = w.sendRequest(5, "Echo", []byte("b"))
	expect("wire: lower stream id afterwards", 5, nil)

	// Frames of other types are ignored (ttrpc keeps them for later use).
	_ = w.send(7, 3, []byte("data"))
	_ = w.sendRequest(9, "Echo", []byte("c"))
	expect("wire: data frame ignored", 9, nil)

	// Go's server answers a request on an even stream id with
	// INVALID_ARGUMENT on that id.
	_ = w.sendRequest(10, "Echo", []byte("even"))
	f, err := w.recv(10 * time.Second)
	if err != nil {
		c.fail("wire: even stream id", "recv: %v", err)
	} else if resp, derr := decodeResponse(f); derr != nil || f.streamID != 10 ||
		resp.Status == nil || codes.Code(resp.Status.Code) != codes.InvalidArgument {
		c.fail("wire: even stream id", "stream %d, response %v %v; want InvalidArgument on stream 10", f.streamID, resp, derr)
	} else {
		c.ok("wire: even stream id", "InvalidArgument %q", resp.Status.Message)
	}

	// A request that does not decode: Go answers INVALID_ARGUMENT and goes
	// on; ours drops the connection.
	_ = w.send(11, 1, []byte{0x0a, 0xff})
	f, err = w.recv(10 * time.Second)
	if err != nil && c.peer == "c" {
		c.note("wire: undecodable request", "the server closed the connection (%v); Go's answers InvalidArgument and keeps it", err)
		return
	}
	if err != nil {
		c.fail("wire: undecodable request", "recv: %v", err)
	} else if resp, derr := decodeResponse(f); derr != nil || f.streamID != 11 || resp.Status == nil ||
		codes.Code(resp.Status.Code) != codes.InvalidArgument {
		c.fail("wire: undecodable request", "stream %d, response %v %v; want InvalidArgument on stream 11", f.streamID, resp, derr)
	} else {
		c.ok("wire: undecodable request", "InvalidArgument %q", resp.Status.Message)
	}
	_ = w.sendRequest(13, "Echo", []byte("d"))
	expect("wire: afterwards", 13, okResp("d"))
}

// disconnect closes a connection with calls in flight; the server must drop
// them and go on serving others.
func (c *checker) disconnect(main *ttrpc.Client) {
	cl, err := c.dial()
	if err != nil {
		c.fail("disconnect with calls in flight", "dial: %v", err)
		return
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := guard(10 * time.Second)
			defer cancel()
			_, errs[i] = call(ctx, cl, serviceName, "Sleep", []byte("2000"))
		}(i)
	}
	time.Sleep(100 * time.Millisecond)
	cl.Close()
	wg.Wait()
	bad := 0
	for _, e := range errs {
		if !errors.Is(e, ttrpc.ErrClosed) {
			bad++
		}
	}
	if bad > 0 {
		c.fail("disconnect with calls in flight", "%d calls did not end with ErrClosed: %v", bad, errs)
	} else {
		c.ok("disconnect with calls in flight", "4 calls ended with %v", ttrpc.ErrClosed)
	}
	c.alive("disconnect with calls in flight: server", main)
}

func runClient(sock, peer string) int {
	c := &checker{sock: sock, peer: peer}
	fmt.Printf("go client: server at %s (%s implementation)\n", sock, peer)
	cl, err := c.dial()
	if err != nil {
		c.fail("connect", "%v", err)
		return 1
	}
	defer cl.Close()

	c.wire()
	c.payloadSizes(cl)
	c.requestLimit(cl)
	c.responseLimit(cl)
	c.concurrent(cl)
	c.statuses(cl)
	c.metadata(cl)
	c.unknown(cl)
	c.deadlines(cl)
	c.disconnect(cl)

	fmt.Printf("go client: %d passed, %d failed\n", c.passed, c.failed)
	if c.failed > 0 {
		return 1
	}
	return 0
}
