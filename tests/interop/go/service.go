// The test service shared by the interop peers: `pp.test.Echo`, whose
// requests and responses are raw bytes (the ttrpc payload is passed through
// untouched, so both sides agree on it without generated code).
package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const serviceName = "pp.test.Echo"

// raw is a message that is its own encoding. gogo's proto.Marshal and
// proto.Unmarshal use the Marshal/Unmarshal methods when a type has them,
// which is how ttrpc's codec and service dispatch reach it.
type raw struct {
	b []byte
}

func (r *raw) Reset()         { r.b = nil }
func (r *raw) String() string { return fmt.Sprintf("raw(%d bytes)", len(r.b)) }
func (r *raw) ProtoMessage()  {}

func (r *raw) Marshal() ([]byte, error) { return r.b, nil }

// Unmarshal copies: ttrpc reuses its receive buffers.
func (r *raw) Unmarshal(p []byte) error {
	r.b = append([]byte(nil), p...)
	return nil
}

type handler func(ctx context.Context, in []byte) ([]byte, error)

func wrap(h handler) ttrpc.Method {
	return func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
		var in raw
		if err := unmarshal(&in); err != nil {
			return nil, err
		}
		out, err := h(ctx, in.b)
		if err != nil {
			return nil, err
		}
		return &raw{b: out}, nil
	}
}

// pattern is the content of a Big answer: byte i is i % 251, so truncation
// or reordering anywhere shows up.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// formatMetadata renders metadata as "k=v\n" lines, keys sorted, values of a
// key in the order received.
func formatMetadata(md map[string][]string) string {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		for _, v := range md[k] {
			sb.WriteString(k + "=" + v + "\n")
		}
	}
	return sb.String()
}

func methods() map[string]ttrpc.Method {
	return map[string]ttrpc.Method{
		// Echo answers the payload.
		"Echo": wrap(func(ctx context.Context, in []byte) ([]byte, error) {
			return in, nil
		}),
		// Sleep waits the number of milliseconds in the payload (decimal),
		// unless the caller's deadline passes first.
		"Sleep": wrap(func(ctx context.Context, in []byte) ([]byte, error) {
			ms, err := strconv.Atoi(string(in))
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "bad duration %q", in)
			}
			t := time.NewTimer(time.Duration(ms) * time.Millisecond)
			defer t.Stop()
			select {
			case <-t.C:
				return []byte("slept"), nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}),
		// Fail answers with the status "code:message" from the payload.
		"Fail": wrap(func(ctx context.Context, in []byte) ([]byte, error) {
			s := string(in)
			i := strings.IndexByte(s, ':')
			if i < 0 {
				return nil, status.Errorf(codes.InvalidArgument, "bad status %q", s)
			}
			code, err := strconv.Atoi(s[:i])
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "bad code %q", s[:i])
			}
			return nil, status.Error(codes.Code(code), s[i+1:])
		}),
		// Metadata answers the request metadata (formatMetadata).
		"Metadata": wrap(func(ctx context.Context, in []byte) ([]byte, error) {
			md, _ := ttrpc.GetMetadata(ctx)
			return []byte(formatMetadata(md)), nil
		}),
		// Big answers a payload of the size in the payload (decimal).
		"Big": wrap(func(ctx context.Context, in []byte) ([]byte, error) {
			n, err := strconv.Atoi(string(in))
			if err != nil || n < 0 {
				return nil, status.Errorf(codes.InvalidArgument, "bad size %q", in)
			}
			return pattern(n), nil
		}),
		// Deadline answers the time left before the caller's deadline, in
		// milliseconds, or "none".
		"Deadline": wrap(func(ctx context.Context, in []byte) ([]byte, error) {
			dl, ok := ctx.Deadline()
			if !ok {
				return []byte("none"), nil
			}
			return []byte(strconv.FormatInt(time.Until(dl).Milliseconds(), 10)), nil
		}),
	}
}
