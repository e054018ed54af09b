// Raw frames on a plain socket, for the checks that the ttrpc client cannot
// express (exact bytes, odd stream ids, oversize answers).
package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/gogo/protobuf/proto"
)

const (
	headerSize = 10
	maxFrame   = 4 << 20
)

type frame struct {
	length   uint32
	streamID uint32
	typ      uint8
	flags    uint8
	payload  []byte // nil when length > maxFrame (the bytes are discarded)
}

type wireConn struct {
	c net.Conn
}

func dialWire(sock string) (*wireConn, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	return &wireConn{c: c}, nil
}

func (w *wireConn) close() { w.c.Close() }

func (w *wireConn) send(streamID uint32, typ uint8, payload []byte) error {
	var h [headerSize]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(h[4:8], streamID)
	h[8] = typ
	_ = w.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := w.c.Write(append(h[:], payload...)); err != nil {
		return err
	}
	return nil
}

func (w *wireConn) sendRequest(streamID uint32, method string, payload []byte) error {
	p, err := proto.Marshal(&ttrpc.Request{Service: serviceName, Method: method, Payload: payload})
	if err != nil {
		return err
	}
	return w.send(streamID, 1, p)
}

// recv reads one frame within `timeout`.
func (w *wireConn) recv(timeout time.Duration) (*frame, error) {
	_ = w.c.SetReadDeadline(time.Now().Add(timeout))
	var h [headerSize]byte
	if _, err := io.ReadFull(w.c, h[:]); err != nil {
		return nil, err
	}
	f := &frame{
		length:   binary.BigEndian.Uint32(h[0:4]),
		streamID: binary.BigEndian.Uint32(h[4:8]),
		typ:      h[8],
		flags:    h[9],
	}
	if f.length > maxFrame {
		if _, err := io.CopyN(io.Discard, w.c, int64(f.length)); err != nil {
			return nil, err
		}
		return f, nil
	}
	f.payload = make([]byte, f.length)
	if _, err := io.ReadFull(w.c, f.payload); err != nil {
		return nil, err
	}
	return f, nil
}

func decodeResponse(f *frame) (*ttrpc.Response, error) {
	if f.typ != 2 {
		return nil, fmt.Errorf("frame type %d, want 2 (response)", f.typ)
	}
	if f.payload == nil && f.length > 0 {
		return nil, fmt.Errorf("oversize response frame (%d bytes)", f.length)
	}
	var r ttrpc.Response
	if err := proto.Unmarshal(f.payload, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
