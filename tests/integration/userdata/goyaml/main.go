// Command goyaml runs Go's gopkg.in/yaml.v2, the library upstream uses for
// user data, over batches of documents for yaml_interop.py:
//
//	goyaml marshal IN.json   JSON array of [{"path","content"}] lists in;
//	                         "#cloud-config\n" + yaml.Marshal of each out,
//	                         separated by NUL bytes
//	goyaml unmarshal IN      NUL-separated documents in; one JSON line out
//	                         per document: the list, or {"error": msg}
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/ioutil"
	"os"

	"gopkg.in/yaml.v2"
)

type writeFile struct {
	Path    string `yaml:"path" json:"path"`
	Content string `yaml:"content" json:"content"`
}

type cloudConfig struct {
	WriteFiles []writeFile `yaml:"write_files"`
}

func marshal(in []byte) error {
	var cases [][]writeFile
	if err := json.Unmarshal(in, &cases); err != nil {
		return err
	}
	var out bytes.Buffer
	for i, files := range cases {
		if i > 0 {
			out.WriteByte(0)
		}
		doc, err := yaml.Marshal(&cloudConfig{WriteFiles: files})
		if err != nil {
			return err
		}
		out.WriteString("#cloud-config\n")
		out.Write(doc)
	}
	_, err := os.Stdout.Write(out.Bytes())
	return err
}

func unmarshal(in []byte) error {
	enc := json.NewEncoder(os.Stdout)
	for _, doc := range bytes.Split(in, []byte{0}) {
		var cc cloudConfig
		if err := yaml.UnmarshalStrict(doc, &cc); err != nil {
			if err := enc.Encode(map[string]string{"error": err.Error()}); err != nil {
				return err
			}
			continue
		}
		if cc.WriteFiles == nil {
			cc.WriteFiles = []writeFile{}
		}
		if err := enc.Encode(cc.WriteFiles); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: goyaml marshal|unmarshal FILE")
		os.Exit(2)
	}
	in, err := ioutil.ReadFile(os.Args[2])
	if err == nil {
		switch os.Args[1] {
		case "marshal":
			err = marshal(in)
		case "unmarshal":
			err = unmarshal(in)
		default:
			err = fmt.Errorf("unknown mode %q", os.Args[1])
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "goyaml:", err)
		os.Exit(1)
	}
}
