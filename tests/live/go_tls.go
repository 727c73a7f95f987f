// An HTTPS server and client in Go (crypto/tls, linked into the binary: no OpenSSL), HTTP/1.1
// with keep-alive (HTTP/2 when GO_TLS_H2 is set, for both). Used by tests/live_capture.rs to check that l7tap sees Go's TLS plaintext.
//
//	go_tls server PORT CERT KEY   serves until killed; prints "ready" once listening
//	go_tls client BASE PATH...    one keep-alive connection; GETs each path ("post:/p" POSTs
//	                              3,000 bytes to /p); prints "status body_bytes" per request
//	go_tls bench BASE N           N GETs of BASE/ on one keep-alive connection; prints the
//	                              wall-clock ns per request (scripts/bench-go-tls.sh)
//
// The server answers /large with 40,000 bytes and anything else with "hello from Go <path>".
package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) >= 5 && os.Args[1] == "server" {
		serve(os.Args[2], os.Args[3], os.Args[4])
		return
	}
	if len(os.Args) >= 3 && os.Args[1] == "client" {
		client(os.Args[2], os.Args[3:])
		return
	}
	if len(os.Args) == 4 && os.Args[1] == "bench" {
		n, err := strconv.Atoi(os.Args[3])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		bench(os.Args[2], n)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: go_tls server PORT CERT KEY | go_tls client BASE PATH...")
	os.Exit(2)
}

func serve(port, cert, key string) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/large" {
			w.Write(bytes.Repeat([]byte("0123456789"), 4000))
			return
		}
		fmt.Fprintf(w, "hello from Go %s\n", r.URL.Path)
	})
	srv := &http.Server{Handler: h}
	if os.Getenv("GO_TLS_H2") == "" {
		// HTTP/1.1 only (an empty map turns HTTP/2 off).
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	if err := srv.ServeTLS(ln, cert, key); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func newClient() *http.Client {
	t := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	if os.Getenv("GO_TLS_H2") == "" {
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	} else {
		t.ForceAttemptHTTP2 = true
	}
	return &http.Client{Transport: t}
}

func bench(base string, n int) {
	c := newClient()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		resp, err := c.Get(base + "/")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	fmt.Printf("%.0f\n", float64(time.Since(t0).Nanoseconds())/float64(n))
}

func client(base string, paths []string) {
	c := newClient()
	for _, p := range paths {
		var resp *http.Response
		var err error
		if strings.HasPrefix(p, "post:") {
			body := bytes.Repeat([]byte("p"), 3000)
			resp, err = c.Post(base+strings.TrimPrefix(p, "post:"), "text/plain", bytes.NewReader(body))
		} else {
			resp, err = c.Get(base + p)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Printf("%d %d\n", resp.StatusCode, n)
	}
}
