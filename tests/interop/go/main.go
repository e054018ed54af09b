// ttrpc-go-peer: containerd's Go ttrpc as the reference peer for our C
// implementation.
//
//	ttrpc-go-peer server -socket PATH
//	ttrpc-go-peer client -socket PATH -peer go|c
//
// The server serves pp.test.Echo (service.go) until SIGTERM. The client runs
// every interop case against a server, prints one line per check and exits 1
// if any failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/ttrpc"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: ttrpc-go-peer server -socket PATH")
	fmt.Fprintln(os.Stderr, "       ttrpc-go-peer client -socket PATH -peer go|c")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	sock := fs.String("socket", "", "unix socket path")
	peer := fs.String("peer", "c", "implementation of the server: go or c")
	_ = fs.Parse(os.Args[2:])
	if *sock == "" {
		usage()
	}
	switch os.Args[1] {
	case "server":
		if err := serve(*sock); err != nil {
			fmt.Fprintf(os.Stderr, "go server: %v\n", err)
			os.Exit(1)
		}
	case "client":
		if *peer != "go" && *peer != "c" {
			usage()
		}
		os.Exit(runClient(*sock, *peer))
	default:
		usage()
	}
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
	s.Register(serviceName, methods())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		s.Close()
	}()

	fmt.Printf("go server: listening on %s\n", sock)
	err = s.Serve(context.Background(), l)
	if err == ttrpc.ErrServerClosed {
		return nil
	}
	return err
}
