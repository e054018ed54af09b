// Command upstream-compat reads what this project writes the way upstream's
// cloud-api-adaptor reads it, and calls its PodVMInfo service the way
// upstream's clients do. The types below re-declare upstream's shapes (JSON
// and YAML keys, field types, enumerations) from its sources, as facts:
//
//	upstream-compat apf FILE        apf.json, as upstream's forwarder decodes it
//	upstream-compat userdata FILE   user data, as upstream's process-user-data
//	                                decodes it (yaml.v2, strict), its apf.json too
//	upstream-compat podvminfo SOCKET NAMESPACE NAME [-wait] [-timeout D]
//	                                podvminfo.PodVMInfo/GetInfo over containerd's
//	                                ttrpc: prints `VMID <id>` or `CODE <code> <message>`
//
// apf and userdata print a JSON summary on stdout and exit 1 with the
// reason when upstream's reader would fail.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/ioutil"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v2"
)

// ---- apf.json: upstream's forwarder Config and tunneler Config ------------

type named map[string]bool

// enum is a string that must be one of upstream's names for the field.
type enum struct {
	what  string
	names named
	value string
}

var (
	routeProtocols = named{"static": true, "boot": true, "dhcp": true, "kernel": true}
	routeScopes    = named{"universe": true, "site": true, "link": true, "host": true, "nowhere": true}
	neighborStates = named{"none": true, "incomplete": true, "reachable": true, "stale": true,
		"delay": true, "probe": true, "failed": true, "noarp": true, "permanent": true}
)

func (e *enum) unmarshal(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("invalid %s: %s: %w", e.what, data, err)
	}
	if !e.names[s] {
		return fmt.Errorf("unknown %s: %s", e.what, s)
	}
	e.value = s
	return nil
}

type routeProtocol struct{ enum }
type routeScope struct{ enum }
type neighborState struct{ enum }

func (p *routeProtocol) UnmarshalJSON(b []byte) error {
	p.enum = enum{what: "route protocol", names: routeProtocols}
	return p.unmarshal(b)
}
func (s *routeScope) UnmarshalJSON(b []byte) error {
	s.enum = enum{what: "route scope", names: routeScopes}
	return s.unmarshal(b)
}
func (s *neighborState) UnmarshalJSON(b []byte) error {
	s.enum = enum{what: "neighbor state", names: neighborStates}
	return s.unmarshal(b)
}

type route struct {
	Dst      netip.Prefix  `json:"dst,omitempty"`
	GW       netip.Addr    `json:"gw,omitempty"`
	Dev      string        `json:"dev,omitempty"`
	Protocol routeProtocol `json:"protocol,omitempty"`
	Scope    routeScope    `json:"scope,omitempty"`
}

type neighbor struct {
	IP           netip.Addr    `json:"ip,omitempty"`
	HardwareAddr string        `json:"hw-addr,omitempty"`
	Dev          string        `json:"dev,omitempty"`
	State        neighborState `json:"state,omitempty"`
}

type podNetwork struct {
	PodIP               netip.Prefix `json:"podip"`
	PodHwAddr           string       `json:"pod-hw-addr"`
	InterfaceName       string       `json:"interface"`
	WorkerNodeIP        netip.Prefix `json:"worker-node-ip"`
	TunnelType          string       `json:"tunnel-type"`
	Routes              []*route     `json:"routes"`
	Neighbors           []*neighbor  `json:"neighbors"`
	MTU                 int          `json:"mtu"`
	Index               int          `json:"index"`
	VXLANPort           int          `json:"vxlan-port,omitempty"`
	VXLANID             int          `json:"vxlan-id,omitempty"`
	Dedicated           bool         `json:"dedicated"`
	ExternalNetViaPodVM bool         `json:"external-net-via-pod-vm"`
}

type apfConfig struct {
	PodNetwork    *podNetwork `json:"pod-network"`
	PodNamespace  string      `json:"pod-namespace"`
	PodName       string      `json:"pod-name"`
	TLSServerKey  string      `json:"tls-server-key,omitempty"`
	TLSServerCert string      `json:"tls-server-cert,omitempty"`
	TLSClientCA   string      `json:"tls-client-ca,omitempty"`
	MinTLSVersion string      `json:"tls-min-version,omitempty"`
	CipherSuites  []string    `json:"tls-cipher-suites,omitempty"`
	PpPrivateKey  []byte      `json:"sc-pp-prv,omitempty"`
	WnPublicKey   []byte      `json:"sc-wn-pub,omitempty"`
}

// checkTLS applies upstream's checks of a TLS profile: VersionTLS12 or
// VersionTLS13, suites Go knows by name, and none with TLS 1.3.
func checkTLS(c *apfConfig) error {
	switch c.MinTLSVersion {
	case "", "VersionTLS12", "VersionTLS13":
	default:
		return fmt.Errorf("tls-min-version %q: upstream takes VersionTLS12 or VersionTLS13", c.MinTLSVersion)
	}
	known := map[string]bool{}
	for _, s := range tls.CipherSuites() {
		known[s.Name] = true
	}
	for _, s := range c.CipherSuites {
		if !known[strings.TrimSpace(s)] {
			return fmt.Errorf("tls-cipher-suites: %q is no suite Go's crypto/tls offers", s)
		}
	}
	if c.MinTLSVersion == "VersionTLS13" && len(c.CipherSuites) > 0 {
		return errors.New("tls-cipher-suites with VersionTLS13: upstream refuses the pair")
	}
	return nil
}

func decodeAPF(data []byte) (*apfConfig, error) {
	var c apfConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	// Upstream ignores keys it does not know; refusing them here catches a
	// key of ours that upstream would silently miss.
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode apf.json: %w", err)
	}
	if err := checkTLS(&c); err != nil {
		return nil, err
	}
	return &c, nil
}

func summaryAPF(c *apfConfig) map[string]interface{} {
	s := map[string]interface{}{
		"pod-name":          c.PodName,
		"pod-namespace":     c.PodNamespace,
		"tls-min-version":   c.MinTLSVersion,
		"tls-cipher-suites": c.CipherSuites,
		"has-tls":           c.TLSServerKey != "" && c.TLSServerCert != "" && c.TLSClientCA != "",
	}
	if n := c.PodNetwork; n != nil {
		s["podip"] = n.PodIP.String()
		s["worker-node-ip"] = n.WorkerNodeIP.String()
		s["interface"] = n.InterfaceName
		s["tunnel-type"] = n.TunnelType
		s["vxlan-id"] = n.VXLANID
		s["routes"] = len(n.Routes)
	}
	return s
}

// ---- user data: upstream's process-user-data -------------------------------

type writeFile struct {
	Path    string `yaml:"path"`
	Content string `yaml:"content"`
}

type cloudConfig struct {
	WriteFiles []writeFile `yaml:"write_files"`
}

// The paths upstream's process-user-data writes; anything else it skips.
var writeFilesList = named{
	"/run/peerpod/aa.toml": true, "/run/peerpod/cdh.toml": true,
	"/run/peerpod/apf.json": true, "/run/peerpod/auth.json": true,
	"/run/peerpod/initdata": true, "/run/peerpod/scratch-space.marker": true,
}

func checkUserData(data []byte) (map[string]interface{}, error) {
	if !bytes.HasPrefix(data, []byte("#cloud-config\n")) {
		return nil, errors.New("user data does not start with #cloud-config")
	}
	var cc cloudConfig
	if err := yaml.UnmarshalStrict(data, &cc); err != nil {
		return nil, fmt.Errorf("yaml.v2 strict: %w", err)
	}
	var paths []string
	s := map[string]interface{}{}
	for _, f := range cc.WriteFiles {
		if !writeFilesList[f.Path] {
			return nil, fmt.Errorf("path %q is not one upstream's process-user-data writes", f.Path)
		}
		paths = append(paths, f.Path)
		if f.Path == "/run/peerpod/apf.json" {
			c, err := decodeAPF([]byte(f.Content))
			if err != nil {
				return nil, err
			}
			s["apf"] = summaryAPF(c)
		}
	}
	s["paths"] = paths
	return s, nil
}

// ---- PodVMInfo over ttrpc ----------------------------------------------------

// The messages of podvminfo.proto, with the struct tags gogo's proto
// reflects on (field numbers and names are upstream's).
type getInfoRequest struct {
	PodName      string `protobuf:"bytes,1,opt,name=PodName,proto3" json:"PodName,omitempty"`
	PodNamespace string `protobuf:"bytes,2,opt,name=PodNamespace,proto3" json:"PodNamespace,omitempty"`
	Wait         bool   `protobuf:"varint,3,opt,name=Wait,proto3" json:"Wait,omitempty"`
}

func (m *getInfoRequest) Reset()         { *m = getInfoRequest{} }
func (m *getInfoRequest) String() string { return fmt.Sprintf("%+v", *m) }
func (*getInfoRequest) ProtoMessage()    {}

type getInfoResponse struct {
	VMID string `protobuf:"bytes,1,opt,name=VMID,proto3" json:"VMID,omitempty"`
}

func (m *getInfoResponse) Reset()         { *m = getInfoResponse{} }
func (m *getInfoResponse) String() string { return fmt.Sprintf("%+v", *m) }
func (*getInfoResponse) ProtoMessage()    {}

func podVMInfo(args []string) error {
	fs := flag.NewFlagSet("podvminfo", flag.ContinueOnError)
	wait := fs.Bool("wait", false, "set Wait")
	timeout := fs.Duration("timeout", 10*time.Second, "the call's deadline")
	if len(args) < 3 {
		return errors.New("podvminfo SOCKET NAMESPACE NAME [-wait] [-timeout D]")
	}
	if err := fs.Parse(args[3:]); err != nil {
		return err
	}
	conn, err := net.Dial("unix", args[0])
	if err != nil {
		return err
	}
	cl := ttrpc.NewClient(conn)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req := &getInfoRequest{PodNamespace: args[1], PodName: args[2], Wait: *wait}
	var resp getInfoResponse
	err = cl.Call(ctx, "podvminfo.PodVMInfo", "GetInfo", req, &resp)
	switch {
	case err == nil:
		fmt.Printf("VMID %s\n", resp.VMID)
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Printf("CODE %s %s\n", codes.DeadlineExceeded, err)
	default:
		st, _ := status.FromError(err)
		fmt.Printf("CODE %s %s\n", st.Code(), st.Message())
	}
	return nil
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: upstream-compat apf|userdata FILE | podvminfo SOCKET NAMESPACE NAME [-wait] [-timeout D]")
		os.Exit(2)
	}
	var out interface{}
	var err error
	switch os.Args[1] {
	case "apf", "userdata":
		var data []byte
		if data, err = ioutil.ReadFile(os.Args[2]); err != nil {
			break
		}
		if os.Args[1] == "apf" {
			var c *apfConfig
			if c, err = decodeAPF(data); err == nil {
				out = summaryAPF(c)
			}
		} else {
			out, err = checkUserData(data)
		}
	case "podvminfo":
		err = podVMInfo(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "upstream-compat: %v\n", err)
		os.Exit(1)
	}
	if out != nil {
		if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
			os.Exit(1)
		}
	}
}
