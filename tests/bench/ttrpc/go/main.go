// ttrpc-bench: containerd's Go ttrpc as the baseline of the ttrpc benchmark.
//
//	ttrpc-bench server -socket PATH
//	ttrpc-bench load -socket PATH -conc N -size BYTES -warmup MS -duration MS
//
// The server answers pp.test.Echo/Echo with the request payload. The load
// generator keeps `conc` calls in flight on one connection, discards the
// warm-up, then records every call started and finished inside the measured
// window, and prints one RESULT line in the format of the C load generator
// (bench_client.c).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
)

const serviceName = "pp.test.Echo"

// raw is a message that is its own encoding (gogo's proto.Marshal and
// Unmarshal use these methods), so both sides move plain bytes.
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

func serve(sock string) error {
	_ = os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	s, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	s.Register(serviceName, map[string]ttrpc.Method{
		"Echo": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var in raw
			if err := unmarshal(&in); err != nil {
				return nil, err
			}
			return &in, nil
		},
	})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		s.Close()
	}()
	if err := s.Serve(context.Background(), l); err != ttrpc.ErrServerClosed {
		return err
	}
	return nil
}

const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

func load(sock string, conc, size int, warmup, duration time.Duration) error {
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	cl := ttrpc.NewClient(conn)
	defer cl.Close()

	payload := bytes.Repeat([]byte{'x'}, size)
	var phase int32
	var errs int64
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
				err := cl.Call(context.Background(), serviceName, "Echo", &raw{b: payload}, &out)
				el := time.Since(t0)
				if err != nil || !bytes.Equal(out.b, payload) {
					atomic.AddInt64(&errs, 1)
					continue
				}
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
		return fmt.Errorf("no call completed in the measured window (%d errors)", errs)
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	pct := func(q float64) float64 {
		return float64(all[int(float64(len(all)-1)*q)].Nanoseconds()) / 1e3
	}
	fmt.Printf("RESULT calls=%d seconds=%.3f cps=%.0f p50_us=%.1f p99_us=%.1f errors=%d\n",
		len(all), window.Seconds(), float64(len(all))/window.Seconds(), pct(0.50), pct(0.99), errs)
	if errs > 0 {
		return fmt.Errorf("%d calls failed", errs)
	}
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: ttrpc-bench server|load -socket PATH [...]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	sock := fs.String("socket", "", "unix socket path")
	conc := fs.Int("conc", 1, "calls in flight on the connection")
	size := fs.Int("size", 64, "payload bytes")
	warmup := fs.Int("warmup", 1000, "warm-up, ms")
	duration := fs.Int("duration", 3000, "measured window, ms")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "server":
		err = serve(*sock)
	case "load":
		err = load(*sock, *conc, *size, time.Duration(*warmup)*time.Millisecond,
			time.Duration(*duration)*time.Millisecond)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ttrpc-bench: %v\n", err)
		os.Exit(1)
	}
}
