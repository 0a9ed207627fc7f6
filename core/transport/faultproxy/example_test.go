package faultproxy_test

import (
	"fmt"
	"io"
	"log"
	"net"

	"github.com/sluicehq/sluice/core/transport/faultproxy"
)

func ExampleProxy_ResetAll() {
	// An echo server to proxy to.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()

	p, err := faultproxy.New(ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 5)
	_, _ = c.Write([]byte("hello"))
	_, _ = io.ReadFull(c, buf)
	fmt.Printf("echo: %s\n", buf)

	fmt.Println("reset:", p.ResetAll())
	_, err = c.Read(buf)
	fmt.Println("read after reset fails:", err != nil)
	// Output:
	// echo: hello
	// reset: 1
	// read after reset fails: true
}
